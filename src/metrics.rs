//! Every metric sockpulse exports is named here, and only here. Labels are
//! bounded: per target (from config), per closed-set reason or state, never
//! per session, peer port or error text.

use prometheus::{
    histogram_opts, opts, Encoder, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry, TextEncoder,
};

use crate::kernel::owned::Mismatch;
use crate::kernel::{Diagnosis, TcpState};
use crate::labels::label_enum;
use crate::session::{DisconnectReason, FailureReason, Phase};

pub const TARGET_UP: &str = "sockpulse_target_up";
pub const SESSIONS: &str = "sockpulse_sessions";
pub const CONNECT_ATTEMPTS: &str = "sockpulse_connect_attempts_total";
pub const CONNECT_FAILURES: &str = "sockpulse_connect_failures_total";
pub const SESSIONS_OPENED: &str = "sockpulse_sessions_opened_total";
pub const DISCONNECTS: &str = "sockpulse_disconnects_total";
pub const PING_RTT: &str = "sockpulse_ping_rtt_seconds";
pub const PONG_TIMEOUTS: &str = "sockpulse_pong_timeouts_total";
pub const STRAY_PONGS: &str = "sockpulse_stray_pongs_total";
pub const LAST_PONG_AGE: &str = "sockpulse_last_pong_age_seconds";
pub const LAST_MESSAGE_AGE: &str = "sockpulse_last_message_age_seconds";
pub const CONNECT_DURATION: &str = "sockpulse_connect_duration_seconds";
pub const TLS_CERT_EXPIRY: &str = "sockpulse_tls_cert_expiry_timestamp_seconds";
pub const BUILD_INFO: &str = "sockpulse_build_info";
pub const DIAGNOSES: &str = "sockpulse_diagnoses_total";
pub const TCP_SOCKETS: &str = "sockpulse_tcp_sockets";
pub const TCP_QUEUE_BYTES: &str = "sockpulse_tcp_queue_bytes";
pub const TCP_LISTEN_QUEUE: &str = "sockpulse_tcp_listen_queue";
pub const TCP_LISTEN_QUEUE_RATIO: &str = "sockpulse_tcp_listen_queue_ratio";
pub const TCP_CLOSE_WAIT_OLDEST_AGE: &str = "sockpulse_tcp_close_wait_oldest_age_seconds";
pub const TCP_CLOSE_WAIT_OVER_AGE: &str = "sockpulse_tcp_close_wait_over_age";
pub const TCP_TIME_WAIT_PORT_RATIO: &str = "sockpulse_tcp_time_wait_port_ratio";
pub const LOOP_READ_DELAY: &str = "sockpulse_loop_read_delay_seconds";
pub const KERNEL_SCAN_DURATION: &str = "sockpulse_kernel_scan_duration_seconds";
pub const KERNEL_SCAN_ERRORS: &str = "sockpulse_kernel_scan_errors_total";
pub const SESSION_KERNEL_STATE: &str = "sockpulse_session_kernel_state";
pub const KERNEL_MISMATCHES: &str = "sockpulse_kernel_mismatches_total";
pub const CONFIG_RELOAD_SUCCESSFUL: &str = "sockpulse_config_last_reload_successful";
pub const CONFIG_RELOAD_TIMESTAMP: &str = "sockpulse_config_last_reload_success_timestamp_seconds";

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

label_enum! {
    /// Connect phases: values of the `phase` label.
    pub enum ConnectPhase {
        Tcp,
        Tls,
        /// The HTTP upgrade.
        Handshake,
    }
}

label_enum! {
    /// Socket queues: values of the `queue` label.
    pub enum Queue {
        Send,
        Receive,
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub target_up: IntGaugeVec,
    pub sessions: IntGaugeVec,
    pub connect_attempts: IntCounterVec,
    pub connect_failures: IntCounterVec,
    pub sessions_opened: IntCounterVec,
    pub disconnects: IntCounterVec,
    pub ping_rtt: HistogramVec,
    pub pong_timeouts: IntCounterVec,
    pub stray_pongs: IntCounterVec,
    pub last_pong_age: GaugeVec,
    pub last_message_age: GaugeVec,
    pub connect_duration: HistogramVec,
    pub tls_cert_expiry: GaugeVec,
    pub diagnoses: IntCounterVec,
    pub tcp_sockets: IntGaugeVec,
    pub tcp_queue_bytes: IntGaugeVec,
    pub tcp_listen_queue: IntGaugeVec,
    pub tcp_listen_queue_ratio: GaugeVec,
    pub tcp_close_wait_oldest_age: GaugeVec,
    pub tcp_close_wait_over_age: IntGaugeVec,
    pub tcp_time_wait_port_ratio: prometheus::Gauge,
    pub kernel_scan_duration: HistogramVec,
    pub loop_read_delay: prometheus::Histogram,
    pub kernel_scan_errors: prometheus::IntCounter,
    pub session_kernel_state: IntGaugeVec,
    pub kernel_mismatches: IntCounterVec,
    pub config_reload_successful: prometheus::IntGauge,
    pub config_reload_timestamp: prometheus::Gauge,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // Names are fixed at compile time and registered once per registry, so
    // a failure here is a programming error caught by the tests.
    registry.register(Box::new(c.clone())).expect("metric registered twice");
    c
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let t = &["target"];
        let m = Metrics {
            target_up: register(
                r,
                IntGaugeVec::new(
                    opts!(
                        TARGET_UP,
                        "1 when at least one session to the target is open and answering probes"
                    ),
                    t,
                )
                .expect("valid"),
            ),
            sessions: register(
                r,
                IntGaugeVec::new(opts!(SESSIONS, "Sessions by state"), &["target", "state"]).expect("valid"),
            ),
            connect_attempts: register(
                r,
                IntCounterVec::new(opts!(CONNECT_ATTEMPTS, "Connection attempts started"), t).expect("valid"),
            ),
            connect_failures: register(
                r,
                IntCounterVec::new(
                    opts!(
                        CONNECT_FAILURES,
                        "Connection attempts that failed before the session opened, by reason"
                    ),
                    &["target", "reason"],
                )
                .expect("valid"),
            ),
            sessions_opened: register(
                r,
                IntCounterVec::new(
                    opts!(SESSIONS_OPENED, "Connection attempts that reached the open state"),
                    t,
                )
                .expect("valid"),
            ),
            disconnects: register(
                r,
                IntCounterVec::new(
                    opts!(DISCONNECTS, "Open sessions that ended, by reason"),
                    &["target", "reason"],
                )
                .expect("valid"),
            ),
            ping_rtt: register(
                r,
                HistogramVec::new(
                    histogram_opts!(
                        PING_RTT,
                        "Round trip of WebSocket pings and TCP probes",
                        RTT_BUCKETS.to_vec()
                    ),
                    t,
                )
                .expect("valid"),
            ),
            pong_timeouts: register(
                r,
                IntCounterVec::new(opts!(PONG_TIMEOUTS, "Probes not answered within pong_timeout"), t).expect("valid"),
            ),
            stray_pongs: register(
                r,
                IntCounterVec::new(opts!(STRAY_PONGS, "Pongs that answered no outstanding ping"), t).expect("valid"),
            ),
            last_pong_age: register(
                r,
                GaugeVec::new(
                    opts!(
                        LAST_PONG_AGE,
                        "Seconds since the last answered probe, worst open session"
                    ),
                    t,
                )
                .expect("valid"),
            ),
            last_message_age: register(
                r,
                GaugeVec::new(
                    opts!(
                        LAST_MESSAGE_AGE,
                        "Seconds since the last data message or bytes received, worst open session"
                    ),
                    t,
                )
                .expect("valid"),
            ),
            connect_duration: register(
                r,
                HistogramVec::new(
                    histogram_opts!(
                        CONNECT_DURATION,
                        "Time spent in each connect phase",
                        RTT_BUCKETS.to_vec()
                    ),
                    &["target", "phase"],
                )
                .expect("valid"),
            ),
            tls_cert_expiry: register(
                r,
                GaugeVec::new(
                    opts!(TLS_CERT_EXPIRY, "notAfter of the peer's leaf certificate, Unix seconds"),
                    t,
                )
                .expect("valid"),
            ),
            diagnoses: register(
                r,
                IntCounterVec::new(
                    opts!(
                        DIAGNOSES,
                        "Failed sessions by what the kernel's TCP state says caused it"
                    ),
                    &["target", "diagnosis"],
                )
                .expect("valid"),
            ),
            tcp_sockets: register(
                r,
                IntGaugeVec::new(
                    opts!(
                        TCP_SOCKETS,
                        "Host TCP sockets (IPv4 and IPv6) by state and watched port (\"other\" for the rest)"
                    ),
                    &["state", "port"],
                )
                .expect("valid"),
            ),
            tcp_queue_bytes: register(
                r,
                IntGaugeVec::new(
                    opts!(
                        TCP_QUEUE_BYTES,
                        "Bytes in send and receive queues, summed per watched port"
                    ),
                    &["port", "queue"],
                )
                .expect("valid"),
            ),
            tcp_listen_queue: register(
                r,
                IntGaugeVec::new(
                    opts!(
                        TCP_LISTEN_QUEUE,
                        "Connections waiting in accept queues of LISTEN sockets, per watched port"
                    ),
                    &["port"],
                )
                .expect("valid"),
            ),
            tcp_listen_queue_ratio: register(
                r,
                GaugeVec::new(
                    opts!(
                        TCP_LISTEN_QUEUE_RATIO,
                        "Fullest accept queue per watched port against its backlog (netlink scans only)"
                    ),
                    &["port"],
                )
                .expect("valid"),
            ),
            tcp_close_wait_oldest_age: register(
                r,
                GaugeVec::new(
                    opts!(
                        TCP_CLOSE_WAIT_OLDEST_AGE,
                        "Age of the oldest CLOSE_WAIT socket per watched port, tracked across scans"
                    ),
                    &["port"],
                )
                .expect("valid"),
            ),
            tcp_close_wait_over_age: register(
                r,
                IntGaugeVec::new(
                    opts!(
                        TCP_CLOSE_WAIT_OVER_AGE,
                        "CLOSE_WAIT sockets older than kernel.close_wait_age_alert, per watched port"
                    ),
                    &["port"],
                )
                .expect("valid"),
            ),
            tcp_time_wait_port_ratio: register(
                r,
                prometheus::Gauge::with_opts(opts!(
                    TCP_TIME_WAIT_PORT_RATIO,
                    "TIME_WAIT sockets over the size of the ephemeral port range"
                ))
                .expect("valid"),
            ),
            kernel_scan_duration: register(
                r,
                HistogramVec::new(
                    histogram_opts!(
                        KERNEL_SCAN_DURATION,
                        "Time to read and summarize the host TCP table",
                        SCAN_BUCKETS.to_vec()
                    ),
                    &["method"],
                )
                .expect("valid"),
            ),
            loop_read_delay: register(
                r,
                prometheus::Histogram::with_opts(histogram_opts!(
                    LOOP_READ_DELAY,
                    "Time received bytes waited in the kernel (by its receive timestamp) before the loop read them",
                    READ_DELAY_BUCKETS.to_vec()
                ))
                .expect("valid"),
            ),
            kernel_scan_errors: register(
                r,
                prometheus::IntCounter::with_opts(opts!(KERNEL_SCAN_ERRORS, "Host TCP table scans that failed"))
                    .expect("valid"),
            ),
            session_kernel_state: register(
                r,
                IntGaugeVec::new(
                    opts!(
                        SESSION_KERNEL_STATE,
                        "The agent's own sockets by the state the kernel's TCP table gives them"
                    ),
                    &["target", "state"],
                )
                .expect("valid"),
            ),
            kernel_mismatches: register(
                r,
                IntCounterVec::new(
                    opts!(
                        KERNEL_MISMATCHES,
                        "Scans that found a session the agent thinks open in another kernel state, or gone"
                    ),
                    &["target", "kind"],
                )
                .expect("valid"),
            ),
            config_reload_successful: register(
                r,
                prometheus::IntGauge::with_opts(opts!(
                    CONFIG_RELOAD_SUCCESSFUL,
                    "1 if the last configuration load succeeded"
                ))
                .expect("valid"),
            ),
            config_reload_timestamp: register(
                r,
                prometheus::Gauge::with_opts(opts!(
                    CONFIG_RELOAD_TIMESTAMP,
                    "When the configuration was last loaded successfully, Unix seconds"
                ))
                .expect("valid"),
            ),
            registry,
        };
        let build = register(
            &m.registry,
            IntGaugeVec::new(opts!(BUILD_INFO, "Build information; always 1"), &["version"]).expect("valid"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = m.registry.register(Box::new(pc)) {
                log::warn!("process metrics unavailable: {e}");
            }
        }
        m
    }

    /// Creates every series of a target at zero, so that dashboards and
    /// `rate()` see it before the first event.
    pub fn init_target(&self, target: &str) {
        self.target_up.with_label_values(&[target]).set(0);
        for phase in Phase::EXPORTED {
            self.sessions.with_label_values(&[target, phase.as_str()]).set(0);
        }
        self.connect_attempts.with_label_values(&[target]);
        self.sessions_opened.with_label_values(&[target]);
        for r in FailureReason::ALL {
            self.connect_failures.with_label_values(&[target, r.as_str()]);
        }
        for r in DisconnectReason::ALL {
            self.disconnects.with_label_values(&[target, r.as_str()]);
        }
        self.ping_rtt.with_label_values(&[target]);
        self.pong_timeouts.with_label_values(&[target]);
        self.stray_pongs.with_label_values(&[target]);
        for d in Diagnosis::ALL {
            self.diagnoses.with_label_values(&[target, d.as_str()]);
        }
        for kind in Mismatch::ALL {
            self.kernel_mismatches.with_label_values(&[target, kind.as_str()]);
        }
    }

    /// Drops every series of a target (after a reload removed it).
    pub fn remove_target(&self, target: &str) {
        let one = [target];
        let _ = self.target_up.remove_label_values(&one);
        let _ = self.connect_attempts.remove_label_values(&one);
        let _ = self.sessions_opened.remove_label_values(&one);
        let _ = self.ping_rtt.remove_label_values(&one);
        let _ = self.pong_timeouts.remove_label_values(&one);
        let _ = self.stray_pongs.remove_label_values(&one);
        let _ = self.last_pong_age.remove_label_values(&one);
        let _ = self.last_message_age.remove_label_values(&one);
        let _ = self.tls_cert_expiry.remove_label_values(&one);
        for phase in Phase::EXPORTED {
            let _ = self.sessions.remove_label_values(&[target, phase.as_str()]);
        }
        for r in FailureReason::ALL {
            let _ = self.connect_failures.remove_label_values(&[target, r.as_str()]);
        }
        for r in DisconnectReason::ALL {
            let _ = self.disconnects.remove_label_values(&[target, r.as_str()]);
        }
        for phase in ConnectPhase::ALL {
            let _ = self.connect_duration.remove_label_values(&[target, phase.as_str()]);
        }
        for d in Diagnosis::ALL {
            let _ = self.diagnoses.remove_label_values(&[target, d.as_str()]);
        }
        for state in TcpState::ALL {
            let _ = self.session_kernel_state.remove_label_values(&[target, state.as_str()]);
        }
        for kind in Mismatch::ALL {
            let _ = self.kernel_mismatches.remove_label_values(&[target, kind.as_str()]);
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
        m.ping_rtt.with_label_values(&["gone"]).observe(0.001);
        m.connect_duration
            .with_label_values(&["gone", ConnectPhase::Tls.as_str()])
            .observe(0.01);
        m.last_pong_age.with_label_values(&["gone"]).set(1.0);
        m.tls_cert_expiry.with_label_values(&["gone"]).set(1.0);
        m.session_kernel_state
            .with_label_values(&["gone", "established"])
            .set(2);
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
            "sockpulse_ping_rtt_seconds_bucket{target=\"a\",le=\"0.0001\"} 0",
            "sockpulse_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
    }
}
