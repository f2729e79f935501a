//! Every metric sockpulse exports, declared once in one table from which
//! registration, per-target initialisation and removal are generated.
//! Labels are bounded: per target (from config), per closed-set reason or
//! state, never per session, peer port or error text.

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::kernel::owned::Mismatch;
use crate::kernel::{Diagnosis, TcpState};
use crate::labels::label_enum;
use crate::session::{DisconnectReason, FailureReason, Phase, ProbeKind};

/// The info series of targets' own labels: its label names come from the
/// configuration, so it is built outside the table (`observer::target_info`).
pub const TARGET_INFO: &str = "sockpulse_target_info";

/// The series a `/probe` answer has (not in the registry: each answer is
/// one check's, as blackbox_exporter's are).
pub mod probe_names {
    pub const SUCCESS: &str = "probe_success";
    pub const DURATION: &str = "probe_duration_seconds";
    pub const PHASE_DURATION: &str = "probe_phase_duration_seconds";
    pub const RTT: &str = "probe_rtt_seconds";
    pub const PINGS: &str = "probe_pings_answered";
    /// blackbox_exporter's name for the same.
    pub const CERT_EXPIRY: &str = "probe_ssl_earliest_cert_expiry";
    pub const FAILURE: &str = "probe_failure_info";
    pub const ALL: &[&str] = &[SUCCESS, DURATION, PHASE_DURATION, RTT, PINGS, CERT_EXPIRY, FAILURE];
}

/// Host scans take milliseconds to a second (100k sockets).
pub const SCAN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// RTT buckets from 100 µs (loopback) to 10 s (a dying path).
pub const RTT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Loop read delays from 10 µs (a busy loop) to 1 s (a stall worth paging for).
pub const READ_DELAY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Session lifetimes from 1 s (a crash loop) to 1 day.
pub const SESSION_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

/// Message sizes from 64 bytes (a heartbeat) to 16 MiB (a snapshot).
pub const MESSAGE_SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

label_enum! {
    /// How a TLS handshake went: values of the `kind` label.
    pub enum TlsHandshakeKind {
        /// Certificates verified, keys agreed from scratch.
        Full,
        /// An earlier session's ticket resumed (no certificate check).
        Resumed,
    }
}

label_enum! {
    /// Connect phases: values of the `phase` label.
    pub enum ConnectPhase {
        /// The TCP connect (to the proxy, when there is one).
        Tcp,
        /// The proxy's tunnel: HTTP CONNECT or SOCKS5.
        Proxy,
        Tls,
        /// The HTTP upgrade.
        Handshake,
        /// The application protocol's own handshake.
        App,
    }
}

label_enum! {
    /// Socket queues: values of the `queue` label.
    pub enum Queue {
        Send,
        Receive,
    }
}

/// The table. Per-target metrics have `target` as their first label and at
/// most one more, from a closed set: `init` ones exist (at zero) from the
/// moment a target is added, so dashboards and `rate()` see them before the
/// first event; `lazy` ones appear with their first value. Both go when a
/// reload removes the target.
macro_rules! metric_table {
    (
        per_target { $( $tfield:ident: $tty:ident($tname:literal, $thelp:literal $(, $tbuckets:expr)?)
            $tmode:ident $([$tlabel:literal in $tvalues:expr])?; )* }
        host { $( $hfield:ident: $hty:ident($hname:literal, $hhelp:literal $(, $hbuckets:expr)?)
            [$($hlabel:literal),*]; )* }
    ) => {
        pub struct Metrics {
            pub registry: Registry,
            $( pub $tfield: $tty, )*
            $( pub $hfield: $hty, )*
        }

        impl Metrics {
            pub fn new() -> Metrics {
                let registry = Registry::new();
                let m = Metrics {
                    $( $tfield: register(&registry, <$tty as Build>::build(
                        $tname, $thelp, metric_table!(@buckets $($tbuckets)?), &["target" $(, $tlabel)?])), )*
                    $( $hfield: register(&registry, <$hty as Build>::build(
                        $hname, $hhelp, metric_table!(@buckets $($hbuckets)?), &[$($hlabel),*])), )*
                    registry,
                };
                m.register_process_metrics();
                m
            }

            /// Creates the `init` series of a target at zero.
            pub fn init_target(&self, target: &str) {
                $( metric_table!(@init $tmode, self.$tfield, target $(, $tvalues)?); )*
            }

            /// Drops every series of a target (after a reload removed it).
            pub fn remove_target(&self, target: &str) {
                $( for_each_series(target, metric_table!(@values $($tvalues)?), |labels| self.$tfield.remove_series(labels)); )*
            }
        }

        /// Every metric's name and labels, in table order.
        pub const CATALOGUE: &[(&str, &[&str])] = &[
            $( ($tname, &["target" $(, $tlabel)?]), )*
            $( ($hname, &[$($hlabel),*]), )*
        ];
    };
    (@buckets $b:expr) => { Some($b) };
    (@buckets) => { None };
    (@values $v:expr) => { Some($v.iter().map(|v| v.as_str())) };
    (@values) => { None::<std::iter::Empty<&'static str>> };
    (@init init, $metric:expr, $target:ident $(, $values:expr)?) => {
        for_each_series($target, metric_table!(@values $($values)?), |labels| $metric.touch_series(labels))
    };
    (@init lazy, $metric:expr, $target:ident $(, $values:expr)?) => {};
}

metric_table! {
    per_target {
        target_up: IntGaugeVec("sockpulse_target_up",
            "1 when at least one session to the target is open and answering probes") init;
        sessions: IntGaugeVec("sockpulse_sessions", "Sessions by state") init ["state" in Phase::EXPORTED];
        connect_attempts: IntCounterVec("sockpulse_connect_attempts_total", "Connection attempts started") init;
        connect_failures: IntCounterVec("sockpulse_connect_failures_total",
            "Connection attempts that failed before the session opened, by reason")
            init ["reason" in FailureReason::ALL];
        sessions_opened: IntCounterVec("sockpulse_sessions_opened_total",
            "Connection attempts that reached the open state") init;
        disconnects: IntCounterVec("sockpulse_disconnects_total", "Open sessions that ended, by reason")
            init ["reason" in DisconnectReason::ALL];
        ping_rtt: HistogramVec("sockpulse_ping_rtt_seconds",
            "Round trip of probes: ping = RFC 6455 ping or TCP probe, app = the application protocol's",
            RTT_BUCKETS) lazy ["probe" in ProbeKind::ALL];
        pong_timeouts: IntCounterVec("sockpulse_pong_timeouts_total",
            "Probes (or heartbeats the peer owes) not answered in time") lazy ["probe" in ProbeKind::ALL];
        stray_pongs: IntCounterVec("sockpulse_stray_pongs_total", "Pongs that answered no outstanding ping") init;
        message_size: HistogramVec("sockpulse_received_message_size_bytes",
            "Sizes of WebSocket data messages received (counted as they stream in, never held whole)",
            MESSAGE_SIZE_BUCKETS) init;
        last_pong_age: GaugeVec("sockpulse_last_pong_age_seconds",
            "Seconds since the last answered probe, worst open session") lazy;
        last_message_age: GaugeVec("sockpulse_last_message_age_seconds",
            "Seconds since the last data message or bytes received, worst open session") lazy;
        connect_duration: HistogramVec("sockpulse_connect_duration_seconds", "Time spent in each connect phase",
            RTT_BUCKETS) lazy ["phase" in ConnectPhase::ALL];
        tls_handshakes: IntCounterVec("sockpulse_tls_handshakes_total",
            "TLS handshakes completed, in full or resuming an earlier session")
            lazy ["kind" in TlsHandshakeKind::ALL];
        tls_cert_expiry: GaugeVec("sockpulse_tls_cert_expiry_timestamp_seconds",
            "notAfter of the peer's leaf certificate, Unix seconds") lazy;
        diagnoses: IntCounterVec("sockpulse_diagnoses_total",
            "Failed sessions by what caused it: the kernel's TCP state, or the pattern of the target's session ages")
            init ["diagnosis" in Diagnosis::ALL];
        session_duration: HistogramVec("sockpulse_session_duration_seconds",
            "How long sessions stayed open, observed when each ended", SESSION_DURATION_BUCKETS) init;
        path_idle_timeout: GaugeVec("sockpulse_path_idle_timeout_seconds",
            "How long the path lets a silent connection live, as idle discovery found it") lazy;
        path_idle_pings_keep_alive: IntGaugeVec("sockpulse_path_idle_pings_keep_alive",
            "1 if RFC 6455 pings (or TCP probes) alone kept a connection alive past the path's idle timeout, 0 if not")
            lazy;
        session_lifetime_limit: GaugeVec("sockpulse_session_lifetime_limit_seconds",
            "The age at which the target's sessions keep being ended by the far side (a load balancer's maximum connection duration), while one is seen")
            lazy;
        session_kernel_state: IntGaugeVec("sockpulse_session_kernel_state",
            "The agent's own sockets by the state the kernel's TCP table gives them")
            lazy ["state" in TcpState::ALL];
        kernel_mismatches: IntCounterVec("sockpulse_kernel_mismatches_total",
            "Scans that found a session the agent thinks open in another kernel state, or gone")
            init ["kind" in Mismatch::ALL];
    }
    host {
        tcp_sockets: IntGaugeVec("sockpulse_tcp_sockets",
            "Host TCP sockets (IPv4 and IPv6) by state and watched port (\"other\" for the rest)") ["state", "port"];
        tcp_queue_bytes: IntGaugeVec("sockpulse_tcp_queue_bytes",
            "Bytes in send and receive queues, summed per watched port") ["port", "queue"];
        tcp_listen_queue: IntGaugeVec("sockpulse_tcp_listen_queue",
            "Connections waiting in accept queues of LISTEN sockets, per watched port") ["port"];
        tcp_listen_queue_ratio: GaugeVec("sockpulse_tcp_listen_queue_ratio",
            "Fullest accept queue per watched port against its backlog (netlink scans only)") ["port"];
        tcp_close_wait_oldest_age: GaugeVec("sockpulse_tcp_close_wait_oldest_age_seconds",
            "Age of the oldest CLOSE_WAIT socket per watched port, tracked across scans") ["port"];
        tcp_close_wait_over_age: IntGaugeVec("sockpulse_tcp_close_wait_over_age",
            "CLOSE_WAIT sockets older than kernel.close_wait_age_alert, per watched port") ["port"];
        tcp_time_wait_port_ratio: Gauge("sockpulse_tcp_time_wait_port_ratio",
            "TIME_WAIT sockets over the size of the ephemeral port range") [];
        kernel_scan_duration: HistogramVec("sockpulse_kernel_scan_duration_seconds",
            "Time to read and summarize the host TCP table", SCAN_BUCKETS) ["method"];
        kernel_scan_errors: IntCounter("sockpulse_kernel_scan_errors_total", "Host TCP table scans that failed") [];
        loop_read_delay: Histogram("sockpulse_loop_read_delay_seconds",
            "Time received bytes waited in the kernel (by its receive timestamp) before the loop woke to read them",
            READ_DELAY_BUCKETS) [];
        build_info: IntGaugeVec("sockpulse_build_info", "Build information; always 1") ["version"];
        config_reload_successful: IntGauge("sockpulse_config_last_reload_successful",
            "1 if the last configuration load succeeded") [];
        shards: IntGauge("sockpulse_shards",
            "With --shard INDEX/COUNT: COUNT, the agents that share the target list (0: no sharding)") [];
        shard_index: IntGauge("sockpulse_shard_index", "With --shard INDEX/COUNT: this agent's INDEX") [];
        config_reload_timestamp: Gauge("sockpulse_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully, Unix seconds") [];
        http_connections: IntGauge("sockpulse_http_connections",
            "Connections open to the agent's HTTP endpoint (at most web.max_connections)") [];
        http_dropped: IntCounterVec("sockpulse_http_connections_dropped_total",
            "HTTP connections the agent ended or refused, by reason: header_timeout, write_timeout, \
             evicted (the oldest waiting for a request head, to admit a new one at web.max_connections), \
             limit (503 at web.max_connections), stream_limit (503 at web.max_stream_clients), \
             echo_limit (503 at web.max_echo_clients), stream_too_slow (a stream client that fell behind, closed with 1013)") ["reason"];
        stream_clients: IntGauge("sockpulse_stream_clients",
            "Clients of /api/v1/stream (at most web.max_stream_clients)") [];
        probes_in_flight: IntGauge("sockpulse_probes_in_flight",
            "/probe checks running now (at most probe.max_concurrent)") [];
        // Targets with endpoints = "all": the endpoint label (ip:port) is not
        // a closed set but is bounded by max_endpoints; the observer creates
        // and removes these series with the endpoints.
        endpoints: IntGaugeVec("sockpulse_endpoints",
            "Endpoints (addresses behind the name) with sessions, for targets with endpoints = \"all\"") ["target"];
        endpoints_dropped: IntGaugeVec("sockpulse_endpoints_dropped",
            "Addresses behind the name left without sessions because of max_endpoints") ["target"];
        endpoint_up: IntGaugeVec("sockpulse_endpoint_up",
            "1 when at least one session to the endpoint is open") ["target", "endpoint"];
        endpoint_rtt: HistogramVec("sockpulse_endpoint_ping_rtt_seconds",
            "Round trip of the transport's probes (RFC 6455 ping or TCP probe) per endpoint", RTT_BUCKETS)
            ["target", "endpoint"];
        endpoint_failures: IntCounterVec("sockpulse_endpoint_failures_total",
            "Connect failures and disconnects (not our own closes) of an endpoint's sessions, by reason")
            ["target", "endpoint", "reason"];
        endpoint_diagnoses: IntCounterVec("sockpulse_endpoint_diagnoses_total",
            "An endpoint's failed sessions by diagnosis") ["target", "endpoint", "diagnosis"];
    }
}

/// Calls `f` with the label values of each series of `target`: the target
/// alone, or the target with each value of its second label.
fn for_each_series<'a>(target: &'a str, values: Option<impl Iterator<Item = &'a str>>, mut f: impl FnMut(&[&str])) {
    match values {
        Some(values) => values.for_each(|v| f(&[target, v])),
        None => f(&[target]),
    }
}

/// One constructor for every collector type the table uses.
trait Build: Sized {
    fn build(name: &str, help: &str, buckets: Option<&[f64]>, labels: &[&str]) -> Self;
}

/// Names, help and labels are fixed at compile time: a failure here is a
/// programming error that the unit tests catch.
const VALID: &str = "metric table entries are valid";

fn histogram_opts(name: &str, help: &str, buckets: Option<&[f64]>) -> HistogramOpts {
    let opts = HistogramOpts::new(name, help);
    match buckets {
        Some(b) => opts.buckets(b.to_vec()),
        None => opts,
    }
}

macro_rules! build_vec {
    ($($ty:ident),*) => {$(
        impl Build for $ty {
            fn build(name: &str, help: &str, _: Option<&[f64]>, labels: &[&str]) -> Self {
                $ty::new(Opts::new(name, help), labels).expect(VALID)
            }
        }
    )*};
}
build_vec!(IntGaugeVec, IntCounterVec, GaugeVec);

macro_rules! build_scalar {
    ($($ty:ident),*) => {$(
        impl Build for $ty {
            fn build(name: &str, help: &str, _: Option<&[f64]>, _: &[&str]) -> Self {
                $ty::with_opts(Opts::new(name, help)).expect(VALID)
            }
        }
    )*};
}
build_scalar!(IntGauge, IntCounter, Gauge);

impl Build for HistogramVec {
    fn build(name: &str, help: &str, buckets: Option<&[f64]>, labels: &[&str]) -> Self {
        HistogramVec::new(histogram_opts(name, help, buckets), labels).expect(VALID)
    }
}

impl Build for Histogram {
    fn build(name: &str, help: &str, buckets: Option<&[f64]>, _: &[&str]) -> Self {
        Histogram::with_opts(histogram_opts(name, help, buckets)).expect(VALID)
    }
}

/// Creating and dropping one labelled series, whatever the metric type.
trait Series {
    fn touch_series(&self, labels: &[&str]);
    fn remove_series(&self, labels: &[&str]);
}

impl<T: MetricVecBuilder> Series for MetricVec<T> {
    fn touch_series(&self, labels: &[&str]) {
        // A new series starts at zero.
        let _ = self.with_label_values(labels);
    }

    fn remove_series(&self, labels: &[&str]) {
        // Absent series are fine: lazy ones may never have appeared.
        let _ = self.remove_label_values(labels);
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("every metric name is registered once");
    c
}

impl Metrics {
    fn register_process_metrics(&self) {
        self.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = self.registry.register(Box::new(pc)) {
                log::warn!("process metrics unavailable: {e}");
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("encoding metrics failed: {e}");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_target_removes_every_series_it_had() {
        let m = Metrics::new();
        m.init_target("gone");
        m.init_target("kept");
        for probe in ProbeKind::ALL {
            m.ping_rtt.with_label_values(&["gone", probe.as_str()]).observe(0.001);
            m.pong_timeouts.with_label_values(&["gone", probe.as_str()]).inc();
        }
        for phase in ConnectPhase::ALL {
            m.connect_duration
                .with_label_values(&["gone", phase.as_str()])
                .observe(0.01);
        }
        m.last_pong_age.with_label_values(&["gone"]).set(1.0);
        m.last_message_age.with_label_values(&["gone"]).set(1.0);
        m.tls_cert_expiry.with_label_values(&["gone"]).set(1.0);
        for state in TcpState::ALL {
            m.session_kernel_state
                .with_label_values(&["gone", state.as_str()])
                .set(2);
        }
        m.remove_target("gone");
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            !text.contains("target=\"gone\""),
            "left behind:\n{}",
            text.lines()
                .filter(|l| l.contains("\"gone\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(text.contains("sockpulse_target_up{target=\"kept\"} 0"));
    }

    #[test]
    fn every_series_of_a_target_exists_after_init() {
        let m = Metrics::new();
        m.init_target("a");
        let text = String::from_utf8(m.encode()).unwrap();
        for needle in [
            "sockpulse_target_up{target=\"a\"} 0",
            "sockpulse_sessions{state=\"open\",target=\"a\"} 0",
            "sockpulse_connect_failures_total{reason=\"bad_accept\",target=\"a\"} 0",
            "sockpulse_disconnects_total{reason=\"pong_timeout\",target=\"a\"} 0",
            "sockpulse_diagnoses_total{diagnosis=\"path_dead\",target=\"a\"} 0",
            "sockpulse_kernel_mismatches_total{kind=\"gone\",target=\"a\"} 0",
            "sockpulse_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
        // Lazy series wait for their first value.
        assert!(!text.contains("sockpulse_last_pong_age_seconds{"), "{text}");
        assert!(!text.contains("sockpulse_session_kernel_state{"), "{text}");
    }

    #[test]
    fn names_follow_prometheus_conventions_and_label_values_are_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for (name, labels) in CATALOGUE {
            assert!(seen.insert(name), "{name} declared twice");
            assert!(name.starts_with("sockpulse_"), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert!(!labels.contains(&"le"), "{name}");
        }
        let sets: [&[&str]; 10] = [
            &ProbeKind::ALL.map(ProbeKind::as_str),
            &Phase::EXPORTED.map(Phase::as_str),
            &FailureReason::ALL.map(FailureReason::as_str),
            &DisconnectReason::ALL.map(DisconnectReason::as_str),
            &Diagnosis::ALL.map(Diagnosis::as_str),
            &TcpState::ALL.map(TcpState::as_str),
            &Mismatch::ALL.map(Mismatch::as_str),
            &ConnectPhase::ALL.map(ConnectPhase::as_str),
            &Queue::ALL.map(Queue::as_str),
            &crate::kernel::scan::ScanMethod::ALL.map(crate::kernel::scan::ScanMethod::as_str),
        ];
        for set in sets {
            let unique: std::collections::HashSet<_> = set.iter().collect();
            assert_eq!(unique.len(), set.len(), "{set:?}");
            for v in set {
                assert!(
                    v.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn the_readme_documents_every_metric() {
        let readme = include_str!("../README.md");
        for name in CATALOGUE
            .iter()
            .map(|(name, _)| *name)
            .chain([TARGET_INFO])
            .chain(probe_names::ALL.iter().copied())
        {
            assert!(readme.contains(&format!("`{name}`")), "README does not document {name}");
        }
    }
}
