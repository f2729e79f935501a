/*
 * What one wake-up of an event loop touches: reads valgrind lackey's
 * `--trace-mem=yes` output on stdin and, at every execution of the
 * instruction at MARKER (the program's call into its wait), prints the
 * distinct 4 KiB pages and 64-byte lines of code and of data used since the
 * previous one (bench.py --pages).
 *
 * On this VM a wake-up's cost follows the pages it touches more than the
 * lines (bench.py --footprint): a TLB miss walks two page tables.
 *
 * usage: valgrind --tool=lackey --trace-mem=yes --log-fd=N PROGRAM ... N>&1 | wake_pages MARKER_HEX
 * prints: `wake CODE_PAGES CODE_LINES DATA_PAGES DATA_LINES` per wake-up
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One wake-up of sockpulse at 1k sessions uses about 500 lines. */
#define SLOTS (1 << 16)

struct set {
    uint64_t key[SLOTS];
    uint8_t used[SLOTS];
    long count;
};

/* Adds `key` (never 0 after tagging); says whether it was new. */
static int set_add(struct set *s, uint64_t key) {
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 48);
    while (s->used[h]) {
        if (s->key[h] == key)
            return 0;
        h = (h + 1) & (SLOTS - 1);
    }
    if (s->count >= SLOTS / 2) /* a wake-up this large is not one: stop rather than loop */
        return 0;
    s->used[h] = 1;
    s->key[h] = key;
    s->count++;
    return 1;
}

static void set_clear(struct set *s) {
    memset(s->used, 0, sizeof s->used);
    s->count = 0;
}

static struct set pages, lines;

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: wake_pages MARKER_HEX < lackey-trace\n");
        return 2;
    }
    uint64_t marker = strtoull(argv[1], NULL, 16);
    const uint64_t code_tag = 1ULL << 62;
    long code_pages = 0, code_lines = 0, data_pages = 0, data_lines = 0, wakes = 0;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        /* "I  addr,size" for an instruction; " L|S|M addr,size" for data */
        char kind = line[0] == ' ' ? line[1] : line[0];
        if (kind != 'I' && kind != 'L' && kind != 'S' && kind != 'M')
            continue;
        uint64_t addr = strtoull(line + 2, NULL, 16);
        if (kind == 'I' && addr == marker) {
            if (wakes++ > 0)
                printf("%ld %ld %ld %ld %ld\n", wakes - 1, code_pages, code_lines, data_pages, data_lines);
            set_clear(&pages);
            set_clear(&lines);
            code_pages = code_lines = data_pages = data_lines = 0;
            continue;
        }
        uint64_t tag = kind == 'I' ? code_tag : 0;
        if (set_add(&pages, (addr >> 12) | tag))
            *(kind == 'I' ? &code_pages : &data_pages) += 1;
        if (set_add(&lines, (addr >> 6) | tag))
            *(kind == 'I' ? &code_lines : &data_lines) += 1;
    }
    if (wakes == 0) {
        fprintf(stderr, "wake_pages: the marker %s never ran\n", argv[1]);
        return 1;
    }
    return 0;
}
