/*
 * The floor for the session loop: a minimal C epoll program doing only the
 * unavoidable work of sockpulse's probes, against the same servers in the
 * same run (benches/bench.py --floor).
 *
 * It holds N WebSocket sessions (an HTTP upgrade with a fixed key, the
 * answer not checked) and pings each every INTERVAL seconds at a fixed
 * phase, sessions evenly spread over the interval as sockpulse spreads
 * them. Per ping: one send of a 14-byte masked ping (sockpulse's size);
 * per readable socket: one recv; one wake per 25 ms grid period (the
 * agent's largest timer grid), which reads what arrived, sends every ping
 * due and checks pong deadlines. Its RTTs include up to a grid period of
 * waiting (the agent's exclude it with kernel receive timestamps): only
 * its CPU is the point. Nothing else: no reconnects, no metrics, no TLS, no frame
 * parsing beyond "this read starts with a pong".
 *
 * FLOOR_TOUCH_LINES=K (default 0) makes every wake also follow a chain of
 * K pointers, each in a cache line and page of its own, the same ones every
 * time: what a program's working set costs per wake-up on this machine
 * (bench.py --footprint). A chain, because code and data structures are
 * reached one after another, not all at once. FLOOR_TOUCH_PAGES=P packs
 * those K lines into P pages instead (K <= 64 P): lines and pages priced
 * apart.
 *
 * Same interface as py_monitor.py: prints `ALL_OPEN <seconds>` once every
 * session is open; on SIGTERM writes each RTT as `unix_ms rtt_us` to
 * RTT_FILE and exits.
 *
 * usage: floor RTT_FILE INTERVAL_S PONG_TIMEOUT_S ws://127.0.0.1:PORT/:COUNT ...
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GRID_NS 25000000LL

struct session {
    int fd;
    int open;
    int64_t sent_ns;  /* 0: no ping in flight */
    int64_t deadline_ns;
};

struct sample {
    int64_t unix_ms;
    int32_t rtt_us;
};

static volatile sig_atomic_t stop;
static volatile size_t touch_end; /* where the FLOOR_TOUCH_LINES chain ends: keeps the walk */
static void on_term(int sig) { (void)sig; stop = 1; }

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char upgrade_fmt[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: floor RTT_FILE INTERVAL_S PONG_TIMEOUT_S ws://127.0.0.1:PORT/:COUNT ...\n");
        return 2;
    }
    const char *rtt_file = argv[1];
    int64_t interval_ns = (int64_t)(atof(argv[2]) * 1e9);
    int64_t pong_timeout_ns = (int64_t)(atof(argv[3]) * 1e9);
    int total = 0;
    for (int a = 4; a < argc; a++) {
        const char *colon = strrchr(argv[a], ':');
        total += colon ? atoi(colon + 1) : 0;
    }
    struct session *s = calloc((size_t)total, sizeof *s);
    int *ports = calloc((size_t)total, sizeof *ports);
    size_t cap = 1 << 16, count = 0;
    struct sample *samples = malloc(cap * sizeof *samples);
    int ep = epoll_create1(0);
    if (!s || !ports || !samples || ep < 0) {
        perror("setup");
        return 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    int64_t started = now_ns(CLOCK_MONOTONIC);

    /* Connect every session (non-blocking). */
    int i = 0;
    for (int a = 4; a < argc; a++) {
        int port = 0, n = 0;
        if (sscanf(argv[a], "ws://127.0.0.1:%d/:%d", &port, &n) != 2) {
            fprintf(stderr, "bad spec %s\n", argv[a]);
            return 2;
        }
        for (int k = 0; k < n; k++, i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fd < 0) {
                perror("socket");
                return 1;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
                perror("connect");
                return 1;
            }
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            s[i].fd = fd;
            ports[i] = port;
        }
    }

    /* The working set of FLOOR_TOUCH_LINES: lines spread over 64 MiB in a
     * fixed pseudo-random order (no prefetcher can guess the next), each in
     * a page of its own, or packed into FLOOR_TOUCH_PAGES pages: on a VM a
     * page costs more than a line (a TLB miss walks two page tables). */
    const char *touch_env = getenv("FLOOR_TOUCH_LINES");
    long touch_lines = touch_env ? atol(touch_env) : 0;
    const char *pages_env = getenv("FLOOR_TOUCH_PAGES");
    long touch_pages = pages_env ? atol(pages_env) : touch_lines;
    if (touch_lines > 0 && (touch_pages < 1 || touch_pages > touch_lines || touch_lines > 64 * touch_pages)) {
        fprintf(stderr, "FLOOR_TOUCH_PAGES must be 1..FLOOR_TOUCH_LINES, at least FLOOR_TOUCH_LINES/64\n");
        return 2;
    }
    const size_t touch_span = (size_t)64 << 20;
    unsigned char *touch_area = NULL;
    size_t *touch_at = NULL;
    if (touch_lines > 0) {
        touch_area = malloc(touch_span);
        touch_at = malloc((size_t)touch_lines * sizeof *touch_at);
        if (!touch_area || !touch_at) {
            perror("FLOOR_TOUCH_LINES");
            return 1;
        }
        memset(touch_area, 0, touch_span);
        uint64_t x = 88172645463325252ULL;
        for (long k = 0; k < touch_lines; k++) {
            if (k < touch_pages) { /* a new page; later lines reuse the first touch_pages */
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                touch_at[k] = (size_t)(x % (touch_span / 4096)) * 4096 + (size_t)(k % 64) * 64;
            } else {
                touch_at[k] = touch_at[k % touch_pages] / 4096 * 4096
                              + (size_t)((touch_at[k % touch_pages] / 64 + k / touch_pages) % 64) * 64;
            }
        }
        for (long k = 0; k < touch_lines; k++) /* each line names the next */
            memcpy(touch_area + touch_at[k], &touch_at[(k + 1) % touch_lines], sizeof(size_t));
    }

    int opened = 0;
    int more = 0;
    int64_t anchor = 0;      /* when session 0's pings are due, once all are open */
    int64_t round = 0;       /* how many intervals since the anchor */
    int next = 0;            /* the next session to ping */
    char buf[4096];
    struct epoll_event events[1024];
    /* The probe: FIN + ping, masked, 8 bytes of payload (sockpulse's size). */
    const unsigned char ping[14] = {0x89, 0x88, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0};

    while (!stop) {
        int timeout_ms = -1;
        if (anchor && more) {
            timeout_ms = 0;
        } else if (anchor) {
            /* Once all are open: one wake per grid period, which reads
             * whatever arrived since (as the agent's loop does). */
            int64_t next_grid = (now_ns(CLOCK_MONOTONIC) / GRID_NS + 1) * GRID_NS;
            struct timespec at = {.tv_sec = next_grid / 1000000000LL, .tv_nsec = next_grid % 1000000000LL};
            if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0)
                continue;
            timeout_ms = 0;
        }
        int n = epoll_wait(ep, events, 1024, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        more = n == 1024; /* the rest are read on the next pass, without sleeping */
        if (touch_lines > 0) {
            size_t at = touch_at[0];
            for (long k = 0; k < touch_lines; k++)
                memcpy(&at, touch_area + at, sizeof at);
            touch_end = at;
        }
        int64_t now = now_ns(CLOCK_MONOTONIC);
        for (int e = 0; e < n; e++) {
            struct session *x = &s[events[e].data.u32];
            if (!x->open) {
                if (events[e].events & EPOLLOUT) {
                    char req[256];
                    int len = snprintf(req, sizeof req, upgrade_fmt, ports[events[e].data.u32]);
                    if (send(x->fd, req, (size_t)len, 0) != len) {
                        perror("send upgrade");
                        return 1;
                    }
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = events[e].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
                } else if (events[e].events & EPOLLIN) {
                    ssize_t got = recv(x->fd, buf, sizeof buf, 0);
                    if (got > 12 && memcmp(buf, "HTTP/1.1 101", 12) == 0) {
                        x->open = 1;
                        if (++opened == total) {
                            printf("ALL_OPEN %.3f\n", (double)(now - started) / 1e9);
                            fflush(stdout);
                            anchor = (now / GRID_NS + 1) * GRID_NS;
                        }
                    } else {
                        fprintf(stderr, "upgrade failed\n");
                        return 1;
                    }
                }
                continue;
            }
            ssize_t got = recv(x->fd, buf, sizeof buf, 0);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN)
                    continue;
                fprintf(stderr, "a session closed\n");
                return 1;
            }
            if ((unsigned char)buf[0] == 0x8A && x->sent_ns) {
                if (count == cap) {
                    cap *= 2;
                    samples = realloc(samples, cap * sizeof *samples);
                    if (!samples)
                        return 1;
                }
                samples[count].unix_ms = now_ns(CLOCK_REALTIME) / 1000000;
                samples[count].rtt_us = (int32_t)((now - x->sent_ns) / 1000);
                count++;
                x->sent_ns = 0;
            }
        }
        if (!anchor)
            continue;
        /* Every ping due: sessions in order, evenly spread over the interval. */
        for (;;) {
            int64_t due = anchor + round * interval_ns + (int64_t)next * interval_ns / total;
            if (due > now)
                break;
            struct session *x = &s[next];
            if (x->sent_ns && now > x->deadline_ns) {
                fprintf(stderr, "pong timeout\n");
            }
            if (send(x->fd, ping, sizeof ping, 0) == (ssize_t)sizeof ping) {
                x->sent_ns = now;
                x->deadline_ns = now + pong_timeout_ns;
            }
            if (++next == total) {
                next = 0;
                round++;
            }
        }
    }
    FILE *f = fopen(rtt_file, "w");
    if (!f)
        return 1;
    for (size_t k = 0; k < count; k++)
        fprintf(f, "%lld %d\n", (long long)samples[k].unix_ms, samples[k].rtt_us);
    fclose(f);
    return 0;
}
