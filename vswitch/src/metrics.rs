//! Prometheus metrics (`vswitch daemon --metrics-addr`): per port, per network, per gateway.
//! The data path keeps plain per-worker counters and takes no lock or allocation for them; the
//! values are gathered from it when Prometheus scrapes, handed to the `metrics` facade as
//! absolute counter values, and rendered by metrics-exporter-prometheus. Names follow
//! Prometheus conventions: base units, `_total` on counters, one HELP line each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::control::{Control, PortInfo};
use crate::gateway::GatewayStats;
use vswitch_core::reason::DropReason;
use vswitch_core::switch::NetworkStats;

/// A series not refreshed for this long (its port or network is gone) leaves the output.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// The process's metrics recorder.
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the process-wide recorder and describes every metric.
    pub fn install() -> anyhow::Result<Metrics> {
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::ALL, Some(STALE_AFTER))
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .context("a metrics recorder is already installed")?;
        describe();
        Ok(Metrics { handle })
    }

    /// Gathers the current values from the control plane and renders the text format.
    pub async fn render(&self, control: &Control) -> anyhow::Result<String> {
        let ports = control.ports().await?;
        let networks = control.network_counters().await;
        publish_ports(&ports);
        for (name, stats, gateway) in &networks {
            publish_network(name, stats);
            publish_gateway(name, gateway);
        }
        for (network, rules) in control.policy_counters().await {
            for rule in rules {
                let labels = [("network", network.clone()), ("rule", rule.name)];
                counter!("vswitch_policy_rule_hits_total", &labels).absolute(rule.hits);
                // The network default cannot be staged: no series for it.
                if labels[1].1 != policy::rules::DEFAULT_RULE {
                    counter!("vswitch_policy_rule_staged_hits_total", &labels)
                        .absolute(rule.staged_hits);
                }
            }
        }
        counter!("vswitch_capture_skipped_frames_total").absolute(control.capture_skipped());
        publish_process();
        self.handle.run_upkeep();
        Ok(sorted(&self.handle.render()))
    }
}

/// The process metrics every Prometheus client library exports, from /proc/self.
fn publish_process() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command (which may hold spaces): utime and stime are the 12th and
        // 13th, rss the 22nd.
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100.0, |t| t as f64);
        if let (Some(user), Some(system)) = (number(11), number(12)) {
            counter!("process_cpu_seconds_total").absolute(((user + system) / ticks) as u64);
        }
        if let Some(pages) = number(21) {
            let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .map_or(4096.0, |p| p as f64);
            gauge!("process_resident_memory_bytes").set(pages * page);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
}

/// The exporter's text with its families sorted by name, and each counter's and gauge's
/// series by their labels: the same order on every scrape (the exporter's follows its hash
/// maps), as diffs and eyes expect.
fn sorted(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>)> = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines: Vec<&str> = block.lines().collect();
        let name = lines
            .iter()
            .find_map(|l| {
                let l = l
                    .strip_prefix("# HELP ")
                    .or(l.strip_prefix("# TYPE "))
                    .unwrap_or(l);
                l.split([' ', '{']).next()
            })
            .unwrap_or_default()
            .to_string();
        let plain = lines.iter().any(|l| {
            l.starts_with("# TYPE ") && (l.ends_with(" counter") || l.ends_with(" gauge"))
        });
        if plain {
            let series = lines
                .iter()
                .position(|l| !l.starts_with('#'))
                .unwrap_or(lines.len());
            lines[series..].sort_unstable();
        }
        families.push((name, lines));
    }
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for (_, lines) in families {
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (control, metrics) = (control.clone(), metrics.clone());
            async move {
                match metrics.render(&control).await {
                    Ok(text) => (
                        axum::http::StatusCode::OK,
                        [("content-type", "text/plain; version=0.0.4")],
                        text,
                    ),
                    Err(e) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [("content-type", "text/plain")],
                        format!("{e:#}\n"),
                    ),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .await
        .context("metrics server failed")
}

const PORT_COUNTERS: [(&str, &str, Unit); 4] = [
    (
        "vswitch_port_rx_frames_total",
        "Frames received from the port's device (an offloaded segment of up to 64 KB counts once).",
        Unit::Count,
    ),
    (
        "vswitch_port_rx_bytes_total",
        "Bytes received from the port's device.",
        Unit::Bytes,
    ),
    (
        "vswitch_port_tx_frames_total",
        "Frames sent to the port's device (an offloaded segment of up to 64 KB counts once).",
        Unit::Count,
    ),
    (
        "vswitch_port_tx_bytes_total",
        "Bytes sent to the port's device.",
        Unit::Bytes,
    ),
];

fn describe() {
    describe_gauge!(
        "vswitch_build_info",
        "Always 1; the labels say which vswitch this is."
    );
    gauge!("vswitch_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "CPU time the daemon used, user and system (whole seconds)."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "The daemon's resident memory."
    );
    describe_gauge!("process_open_fds", "Open file descriptors of the daemon.");
    for (name, help, unit) in PORT_COUNTERS {
        describe_counter!(name, unit, help);
    }
    describe_counter!(
        "vswitch_port_drops_total",
        Unit::Count,
        "Frames dropped on the port, by reason and direction (ingress: arriving from the port; egress: leaving through it)."
    );
    for (name, help) in NETWORK_COUNTERS {
        describe_counter!(name, Unit::Count, help);
    }
    describe_gauge!(
        "vswitch_network_fdb_entries",
        Unit::Count,
        "MAC addresses in the network's forwarding table."
    );
    describe_gauge!(
        "vswitch_network_flows",
        Unit::Count,
        "Flows the network's policy tracks."
    );
    describe_counter!(
        "vswitch_network_flow_evictions_total",
        Unit::Count,
        "Tracked flows evicted because the flow table was full."
    );
    describe_counter!(
        "vswitch_policy_rule_hits_total",
        Unit::Count,
        "Packets a policy rule (or `default`, the network default) decided."
    );
    describe_counter!(
        "vswitch_policy_rule_staged_hits_total",
        Unit::Count,
        "Packets a staged rule would have decided."
    );
    for (name, help) in GATEWAY_COUNTERS.into_iter().chain(EGRESS_COUNTERS) {
        describe_counter!(name, Unit::Count, help);
    }
    describe_counter!(
        "vswitch_capture_skipped_frames_total",
        Unit::Count,
        "Frames live captures skipped because their reader was too slow."
    );
}

fn publish_ports(ports: &[PortInfo]) {
    for p in ports {
        let labels = [
            ("network", p.network.clone()),
            ("endpoint", p.endpoint.clone()),
            ("kind", p.kind.clone()),
        ];
        let values = [p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes];
        for ((name, _, _), value) in PORT_COUNTERS.iter().zip(values) {
            counter!(*name, &labels).absolute(value);
        }
        for reason in DropReason::NAMES {
            let value = p.drops_by_reason.get(reason).copied().unwrap_or(0);
            let mut labels = labels.to_vec();
            labels.push(("reason", reason.to_string()));
            labels.push(("direction", DropReason::direction_of(reason).to_string()));
            counter!("vswitch_port_drops_total", &labels).absolute(value);
        }
    }
}

const NETWORK_COUNTERS: [(&str, &str); 6] = [
    (
        "vswitch_network_forwarded_frames_total",
        "Frames sent to one known port.",
    ),
    (
        "vswitch_network_flooded_frames_total",
        "Frames flooded: broadcast, multicast, unknown unicast.",
    ),
    (
        "vswitch_network_fdb_learned_total",
        "MAC addresses learned.",
    ),
    (
        "vswitch_network_fdb_moved_total",
        "MAC addresses that moved to another port.",
    ),
    (
        "vswitch_network_fdb_aged_total",
        "MAC addresses forgotten after idling.",
    ),
    (
        "vswitch_network_fdb_limit_reached_total",
        "Source MACs not learned: their port held its limit.",
    ),
];

fn publish_network(name: &str, s: &NetworkStats) {
    let labels = [("network", name.to_string())];
    let e = &s.events;
    let values = [
        e.forwarded,
        e.flooded,
        e.learned,
        e.moved,
        e.aged,
        e.limit_reached,
    ];
    for ((metric, _), value) in NETWORK_COUNTERS.iter().zip(values) {
        counter!(*metric, &labels).absolute(value);
    }
    gauge!("vswitch_network_fdb_entries", &labels).set(s.fdb_entries as f64);
    gauge!("vswitch_network_flows", &labels).set(s.flows as f64);
    counter!("vswitch_network_flow_evictions_total", &labels).absolute(s.flow_evictions);
}

const GATEWAY_COUNTERS: [(&str, &str); 10] = [
    (
        "vswitch_gateway_dns_queries_total",
        "DNS queries received by the gateway (UDP and TCP).",
    ),
    (
        "vswitch_gateway_dns_forwarded_total",
        "DNS queries forwarded to upstream servers.",
    ),
    (
        "vswitch_gateway_dns_servfail_total",
        "Forwarded DNS queries answered SERVFAIL.",
    ),
    (
        "vswitch_gateway_dns_dropped_total",
        "Malformed or non-query DNS messages dropped.",
    ),
    (
        "vswitch_gateway_dns_unsent_total",
        "DNS answers that could not be sent: the gateway's send buffer was full.",
    ),
    (
        "vswitch_gateway_dhcp_requests_total",
        "DHCP client messages handled.",
    ),
    ("vswitch_gateway_dhcp_replies_total", "DHCP replies sent."),
    (
        "vswitch_gateway_dhcp_dropped_total",
        "Malformed DHCP messages dropped, and those asking in another station's name.",
    ),
    (
        "vswitch_gateway_dhcp_refused_total",
        "DHCP requests refused: the client's port holds all the offers and leases it may.",
    ),
    (
        "vswitch_gateway_frames_dropped_total",
        "Frames dropped: the gateway's queue was full.",
    ),
];

const EGRESS_COUNTERS: [(&str, &str); 7] = [
    (
        "vswitch_gateway_egress_sent_total",
        "Datagrams (and reads of TCP streams) carried out of the network.",
    ),
    (
        "vswitch_gateway_egress_received_total",
        "Answers (and reads of TCP streams) carried back into the network.",
    ),
    (
        "vswitch_gateway_egress_flows_total",
        "Egress and published-port flows opened (UDP, ICMP echo, TCP).",
    ),
    (
        "vswitch_gateway_egress_blocked_total",
        "Packets to outside addresses refused: the network is --internal.",
    ),
    (
        "vswitch_gateway_egress_dropped_total",
        "Egress packets dropped or connections refused or unreachable outside.",
    ),
    (
        "vswitch_gateway_egress_limited_total",
        "Flows not opened: the network or the container holds as many as it may.",
    ),
    (
        "vswitch_gateway_egress_expired_total",
        "Flows closed for being idle.",
    ),
];

fn publish_gateway(name: &str, g: &GatewayStats) {
    let labels = [("network", name.to_string())];
    let values = [
        g.dns_queries,
        g.dns_forwarded,
        g.dns_servfail,
        g.dns_dropped,
        g.dns_unsent,
        g.dhcp_requests,
        g.dhcp_replies,
        g.dhcp_dropped,
        g.dhcp_refused,
        g.frames_dropped,
    ];
    for ((metric, _), value) in GATEWAY_COUNTERS.iter().zip(values) {
        counter!(*metric, &labels).absolute(value);
    }
    let e = &g.egress;
    let values = [
        e.sent, e.received, e.flows, e.blocked, e.dropped, e.limited, e.expired,
    ];
    for ((metric, _), value) in EGRESS_COUNTERS.iter().zip(values) {
        counter!(*metric, &labels).absolute(value);
    }
}
