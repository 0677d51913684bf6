//! What the switch is doing: ports with their counters, a network's MAC table, counters for
//! metrics, and a periodic summary of drops in the log.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tracing::info;

use vswitch_core::frame::MacAddr;
use vswitch_core::ids::PortId;
use vswitch_core::switch::NetworkStats;

use super::{Control, ControlError};
use crate::datapath::PortCounters;
use crate::gateway::GatewayStats;
use crate::model::gateway_mac;

/// A port as `vswitch ports` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortInfo {
    /// Switch port number.
    pub port: u32,
    /// `container`, `trunk`, `gateway` or `tunnel` (to another host of an overlay; its
    /// interface is the host's underlay address).
    pub kind: String,
    /// Network it belongs to.
    pub network: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Namespace of the container.
    pub netns: String,
    /// Interface name in the namespace.
    pub ifname: String,
    /// Interface MAC.
    pub mac: MacAddr,
    /// The addresses behind it now (a container's, a DHCP client's lease among them; a
    /// gateway's); none for trunks and tunnels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<std::net::IpAddr>,
    /// Frames read from the container.
    pub rx_packets: u64,
    /// Bytes read from the container.
    pub rx_bytes: u64,
    /// Frames written to the container.
    pub tx_packets: u64,
    /// Bytes written to the container.
    pub tx_bytes: u64,
    /// Dropped frames, all reasons.
    pub drops: u64,
    /// Dropped frames by reason (non-zero only).
    pub drops_by_reason: BTreeMap<String, u64>,
}

/// An FDB entry as `vswitch fdb` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbInfo {
    /// Station address.
    pub mac: MacAddr,
    /// Switch port.
    pub port: u32,
    /// Endpoint behind the port.
    pub endpoint: String,
    /// `learned` or `static`.
    pub kind: String,
    /// Seconds since last seen (learned entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
}

/// Who is behind a port, as `PortInfo` names it.
struct PortOwner<'a> {
    kind: &'a str,
    network: String,
    endpoint: &'a str,
    netns: &'a str,
    ifname: &'a str,
    mac: MacAddr,
    addresses: Vec<std::net::IpAddr>,
}

impl PortOwner<'_> {
    fn with_counters(self, port: PortId, c: PortCounters) -> PortInfo {
        PortInfo {
            port: port.0,
            kind: self.kind.to_string(),
            network: self.network,
            endpoint: self.endpoint.to_string(),
            netns: self.netns.to_string(),
            ifname: self.ifname.to_string(),
            mac: self.mac,
            addresses: self.addresses,
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            drops: c.drops.total(),
            drops_by_reason: c
                .drops
                .by_name()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

impl Control {
    /// Every port with its counters.
    pub async fn ports(&self) -> Result<Vec<PortInfo>, ControlError> {
        let inner = self.inner.lock().await;
        let (_, counters) = self.dataplane.counters().await?;
        let counters: HashMap<PortId, PortCounters> = counters.into_iter().collect();
        let counters_of = |port: PortId| counters.get(&port).copied().unwrap_or_default();
        let mut ports = Vec::new();
        let now = super::unix_now();
        for (net_name, network) in &inner.networks {
            for endpoint in network.record.endpoints.values() {
                let Some(live) = network.ports.get(&endpoint.name) else {
                    continue;
                };
                let (v4, v6) = super::addresses::endpoint_addresses(&network.record, endpoint, now);
                let owner = PortOwner {
                    kind: "container",
                    network: net_name.clone(),
                    endpoint: &endpoint.name,
                    netns: &endpoint.netns,
                    ifname: &endpoint.ifname,
                    mac: endpoint.mac,
                    addresses: v4
                        .into_iter()
                        .map(std::net::IpAddr::V4)
                        .chain(v6.into_iter().map(std::net::IpAddr::V6))
                        .collect(),
                };
                ports.push(owner.with_counters(live.port, counters_of(live.port)));
            }
            let gateway = PortOwner {
                kind: "gateway",
                network: net_name.clone(),
                endpoint: "gateway",
                netns: "",
                ifname: network.record.host_iface.as_deref().unwrap_or(""),
                mac: gateway_mac(net_name),
                addresses: network.record.subnets.iter().map(|s| s.gateway).collect(),
            };
            let port = network.gateway.port;
            ports.push(gateway.with_counters(port, counters_of(port)));
            for tunnel in &network.tunnels {
                let peer = tunnel.peer.to_string();
                let owner = PortOwner {
                    kind: "tunnel",
                    network: net_name.clone(),
                    endpoint: tunnel.host.as_deref().unwrap_or(&peer),
                    netns: "",
                    ifname: &peer,
                    // Stations of many MACs are behind it: it has none of its own.
                    mac: MacAddr([0; 6]),
                    addresses: Vec::new(),
                };
                ports.push(owner.with_counters(tunnel.port, counters_of(tunnel.port)));
            }
        }
        for (name, trunk) in &inner.trunks {
            let record = &trunk.record;
            let networks: Vec<String> = record
                .networks
                .iter()
                .map(|n| {
                    let vlan = inner.networks.get(n).and_then(|n| n.record.vlan);
                    format!("{n}/{}", vlan.unwrap_or(0))
                })
                .chain(record.native.iter().map(|n| format!("{n}/untagged")))
                .collect();
            let owner = PortOwner {
                kind: "trunk",
                network: networks.join(","),
                endpoint: name,
                netns: &record.netns,
                ifname: &record.ifname,
                mac: record.mac,
                addresses: Vec::new(),
            };
            let port = trunk.port.port;
            ports.push(owner.with_counters(port, counters_of(port)));
        }
        ports.sort_by_key(|p| p.port);
        Ok(ports)
    }

    /// The FDB of a network.
    pub async fn fdb(&self, network: &str) -> Result<Vec<FdbInfo>, ControlError> {
        let inner = self.inner.lock().await;
        let network = inner.network(network)?;
        let endpoint_of: HashMap<PortId, &str> = network
            .ports
            .iter()
            .map(|(n, e)| (e.port, n.as_str()))
            .chain([(network.gateway.port, "(gateway)")])
            .collect();
        let rows = self.dataplane.fdb(network.id);
        Ok(rows
            .into_iter()
            .map(|row| FdbInfo {
                mac: row.mac,
                port: row.port.0,
                endpoint: endpoint_of.get(&row.port).unwrap_or(&"").to_string(),
                kind: if row.age.is_some() {
                    "learned"
                } else {
                    "static"
                }
                .to_string(),
                age_seconds: row.age.map(|a| (a.as_secs_f64() * 10.0).round() / 10.0),
            })
            .collect())
    }

    /// Every network's switching and gateway counters, for metrics.
    pub async fn network_counters(&self) -> Vec<(String, NetworkStats, GatewayStats)> {
        let inner = self.inner.lock().await;
        inner
            .networks
            .iter()
            .map(|(name, network)| {
                (
                    name.clone(),
                    self.dataplane.network_stats(network.id).unwrap_or_default(),
                    network.gateway.gateway.counters.snapshot(),
                )
            })
            .collect()
    }

    /// Logs, at info level, the frames dropped since the last call by reason, if any: drops
    /// are never logged one by one (a flood of bad frames would flood the log too).
    pub async fn log_drop_summary(&self) {
        let Ok((stats, _)) = self.dataplane.counters().await else {
            return;
        };
        let mut last = self
            .drops_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = stats.drops;
        let delta: Vec<String> = now
            .iter()
            .zip(last.iter())
            .filter_map(|((name, now), (_, then))| {
                let n = now.saturating_sub(then);
                (n > 0).then(|| format!("{name} {n}"))
            })
            .collect();
        *last = now;
        if !delta.is_empty() {
            info!(drops = %delta.join(", "), "frames dropped since the last summary");
        }
    }
}
