#!/usr/bin/env python3
"""Writes dashboards/sockpulse.json (Grafana). Edit the panel list here, then
run: python3 scripts/gen-dashboard.py. Tests check the output's structure
and run every query against a real Prometheus."""
import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance", target=~"$target"'
HOST = 'instance=~"$instance"'
RI = "$__rate_interval"

# (title, type, unit, [(expr, legend)], width)
ROWS = [
    ("Targets", [
        ("Targets up", "stat", "none", [(f"sockpulse_target_up{{{SEL}}}", "{{target}}")], 6),
        ("Sessions by state", "timeseries", "none", [(f"sum by (target, state) (sockpulse_sessions{{{SEL}}})", "{{target}} {{state}}")], 9),
        # Per probe: RFC 6455 ping (probe="ping") or application heartbeat (probe="app").
        ("Probe RTT p50 / p99", "timeseries", "s", [
            (f"histogram_quantile(0.5, sum by (target, probe, le) (rate(sockpulse_ping_rtt_seconds_bucket{{{SEL}}}[{RI}])))", "{{target}} {{probe}} p50"),
            (f"histogram_quantile(0.99, sum by (target, probe, le) (rate(sockpulse_ping_rtt_seconds_bucket{{{SEL}}}[{RI}])))", "{{target}} {{probe}} p99"),
        ], 9),
        ("Ping RTT distribution", "heatmap", "s", [(f"sum by (le) (rate(sockpulse_ping_rtt_seconds_bucket{{{SEL}}}[{RI}]))", "{{le}}")], 12),
        ("Seconds since last pong (worst session)", "timeseries", "s", [(f"max by (target) (sockpulse_last_pong_age_seconds{{{SEL}}})", "{{target}}")], 12),
    ]),
    ("Failures", [
        ("Disconnects by reason", "timeseries", "ops", [(f"sum by (target, reason) (rate(sockpulse_disconnects_total{{{SEL}, reason!=\"local_close\"}}[{RI}]))", "{{target}} {{reason}}")], 8),
        ("Connect failures by reason", "timeseries", "ops", [(f"sum by (target, reason) (rate(sockpulse_connect_failures_total{{{SEL}}}[{RI}]))", "{{target}} {{reason}}")], 8),
        ("Diagnoses of failures", "timeseries", "ops", [(f"sum by (target, diagnosis) (rate(sockpulse_diagnoses_total{{{SEL}}}[{RI}]))", "{{target}} {{diagnosis}}")], 8),
        ("Unanswered probes and heartbeats", "timeseries", "none", [(f"sum by (target, probe) (increase(sockpulse_pong_timeouts_total{{{SEL}}}[{RI}]))", "{{target}} {{probe}}")], 8),
        ("Connect phase p99", "timeseries", "s", [(f"histogram_quantile(0.99, sum by (target, phase, le) (rate(sockpulse_connect_duration_seconds_bucket{{{SEL}}}[{RI}])))", "{{target}} {{phase}}")], 8),
        ("TLS certificate days left", "stat", "d", [(f"(sockpulse_tls_cert_expiry_timestamp_seconds{{{SEL}}} - time()) / 86400", "{{target}}")], 8),
        # A load balancer's maximum connection duration shows as a flat line.
        ("Session lifetime p50 and limit found", "timeseries", "s", [
            (f"histogram_quantile(0.5, sum by (target, le) (rate(sockpulse_session_duration_seconds_bucket{{{SEL}}}[{RI}])))", "{{target}} p50"),
            (f"sockpulse_session_lifetime_limit_seconds{{{SEL}}}", "{{target}} limit"),
        ], 24),
    ]),
    ("Traffic", [
        ("Received message size p50 / p99", "timeseries", "bytes", [
            (f"histogram_quantile(0.5, sum by (target, le) (rate(sockpulse_received_message_size_bytes_bucket{{{SEL}}}[{RI}])))", "{{target}} p50"),
            (f"histogram_quantile(0.99, sum by (target, le) (rate(sockpulse_received_message_size_bytes_bucket{{{SEL}}}[{RI}])))", "{{target}} p99"),
        ], 12),
        # A reconnect storm that pays full handshakes shows here.
        ("TLS handshakes by kind", "timeseries", "ops", [(f"sum by (target, kind) (rate(sockpulse_tls_handshakes_total{{{SEL}}}[{RI}]))", "{{target}} {{kind}}")], 12),
    ]),
    # endpoints = "all": one row per path. With packaging/kubernetes/mesh.yaml,
    # source agent (instance) x destination agent (endpoint).
    ("Mesh (endpoints behind a name)", [
        ("Endpoint up by source", "stat", "none", [(f"max by (instance, endpoint) (sockpulse_endpoint_up{{{SEL}}})", "{{instance}} → {{endpoint}}")], 8),
        ("Endpoint RTT p99 by source", "timeseries", "s", [(f"histogram_quantile(0.99, sum by (instance, endpoint, le) (rate(sockpulse_endpoint_ping_rtt_seconds_bucket{{{SEL}}}[{RI}])))", "{{instance}} → {{endpoint}}")], 8),
        ("Endpoint diagnoses by source", "timeseries", "ops", [(f"sum by (instance, endpoint, diagnosis) (rate(sockpulse_endpoint_diagnoses_total{{{SEL}}}[{RI}]))", "{{instance}} → {{endpoint}} {{diagnosis}}")], 8),
    ]),
    ("Kernel view", [
        ("Own sockets by kernel state", "timeseries", "none", [(f"sum by (target, state) (sockpulse_session_kernel_state{{{SEL}}}) > 0", "{{target}} {{state}}")], 12),
        ("Agent/kernel mismatches", "timeseries", "none", [(f"sum by (target, kind) (increase(sockpulse_kernel_mismatches_total{{{SEL}}}[{RI}]))", "{{target}} {{kind}}")], 12),
        ("Host TCP sockets by state", "timeseries", "none", [(f"sum by (state) (sockpulse_tcp_sockets{{{HOST}}}) > 0", "{{state}}")], 8),
        ("Oldest CLOSE_WAIT by port", "timeseries", "s", [(f"sockpulse_tcp_close_wait_oldest_age_seconds{{{HOST}}}", "{{port}}")], 8),
        ("TIME_WAIT / ephemeral ports", "timeseries", "percentunit", [(f"sockpulse_tcp_time_wait_port_ratio{{{HOST}}}", "{{instance}}")], 8),
        ("Accept queue saturation", "timeseries", "percentunit", [(f"sockpulse_tcp_listen_queue_ratio{{{HOST}}}", "{{port}}")], 12),
        ("Host scan duration p99", "timeseries", "s", [(f"histogram_quantile(0.99, sum by (method, le) (rate(sockpulse_kernel_scan_duration_seconds_bucket{{{HOST}}}[{RI}])))", "{{method}}")], 12),
    ]),
    ("Agent", [
        ("Loop read delay p50 / p99 (the agent's own stalls)", "timeseries", "s", [
            (f"histogram_quantile(0.5, sum by (instance, le) (rate(sockpulse_loop_read_delay_seconds_bucket{{{HOST}}}[{RI}])))", "{{instance}} p50"),
            (f"histogram_quantile(0.99, sum by (instance, le) (rate(sockpulse_loop_read_delay_seconds_bucket{{{HOST}}}[{RI}])))", "{{instance}} p99"),
        ], 12),
        # process_* is every exporter's: keep the jobs that are sockpulse.
        ("Agent CPU (share of one core)", "timeseries", "percentunit", [(f"rate(process_cpu_seconds_total{{{HOST}}}[{RI}]) * on (instance, job) group_left sockpulse_build_info{{{HOST}}}", "{{instance}}")], 12),
    ]),
]


def main():
    panels, pid, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x = pid + 1, y + 1, 0
        for title, kind, unit, targets, w in row_panels:
            if x + w > 24:
                x, y = 0, y + 8
            panel = {
                "id": pid, "type": kind, "title": title, "datasource": DS,
                "gridPos": {"h": 8, "w": w, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": lg,
                             **({"format": "heatmap"} if kind == "heatmap" else {})}
                            for i, (e, lg) in enumerate(targets)],
            }
            panels.append(panel)
            pid, x = pid + 1, x + w
        y += 8
    dash = {
        "title": "sockpulse", "uid": "sockpulse-overview", "schemaVersion": 39, "version": 1,
        "tags": ["sockpulse", "websocket", "tcp"], "timezone": "", "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "instance", "type": "query", "datasource": DS, "query": "label_values(sockpulse_build_info, instance)",
             "multi": True, "includeAll": True, "refresh": 2},
            # Targets' own labels live on sockpulse_target_info only: pick by
            # team there (a label named `team` in the targets' `labels`).
            {"name": "team", "type": "query", "datasource": DS,
             "query": "label_values(sockpulse_target_info{instance=~\"$instance\"}, team)",
             "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2},
            {"name": "target", "type": "query", "datasource": DS,
             "query": "label_values(sockpulse_target_info{instance=~\"$instance\", team=~\"$team\"}, target)",
             "multi": True, "includeAll": True, "refresh": 2},
        ]},
        "panels": panels,
    }
    out = Path(__file__).resolve().parent.parent / "dashboards/sockpulse.json"
    out.write_text(json.dumps(dash, indent=2) + "\n")
    print(f"wrote {out} ({sum(1 for p in panels if p['type'] != 'row')} panels)")


main()
