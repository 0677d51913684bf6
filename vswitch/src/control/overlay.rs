//! Overlay networks: a tunnel port of the switch for each other host of the network, on the
//! daemon's one VXLAN socket, so frames for stations behind a host go to that host alone and
//! broadcasts to each (head-end replication); what comes from a host is learned on its port.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::switch::{PortConfig, PortMode, Reach};

use super::{Control, ControlError};
use crate::datapath::PortCounters;
use crate::model::overlay::PeerKey;
use crate::model::{NetworkRecord, OverlayRecord};
use crate::overlay::wireguard::{parse_public_key, Keys, WireGuard};
use crate::overlay::Tunnel;

/// This host inside WireGuard, for encrypted overlays.
#[derive(Debug, Clone)]
pub struct WireGuardConfig {
    /// Its tunnel address: VXLAN inside WireGuard comes from and to it.
    pub inner: std::net::Ipv4Addr,
    /// The WireGuard socket's port.
    pub port: u16,
    /// Where its private key is kept (made on first use).
    pub key_file: std::path::PathBuf,
    /// Its public key, base64.
    pub public_key: String,
}

impl WireGuardConfig {
    /// The configuration, its key made now if there is none yet.
    pub fn new(
        inner: std::net::Ipv4Addr,
        port: u16,
        key_file: std::path::PathBuf,
    ) -> std::io::Result<WireGuardConfig> {
        let public_key = Keys::load_or_create(&key_file)?.public_key();
        Ok(WireGuardConfig {
            inner,
            port,
            key_file,
            public_key,
        })
    }
}

/// The port of one other host of an overlay network.
pub(super) struct LiveTunnel {
    /// The host's underlay address.
    pub peer: SocketAddr,
    pub port: PortId,
    /// The host's name in the store (`None`: a static --peer).
    pub host: Option<String>,
}

/// A host of the overlays as `vswitch hosts` shows it: this one (its underlay socket), or
/// another that overlay networks here reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    /// Underlay address (this host's: where its VXLAN socket is bound).
    pub address: SocketAddr,
    /// Whether it is this host.
    pub local: bool,
    /// Its name in the store (none for a static peer, or without a store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// This host's WireGuard public key (for encrypted overlays), to give the other hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// `local`, or how the host is known: `up` (in the store, its lease renewed), `static` (a
    /// --peer).
    pub state: String,
    /// Overlay networks shared with it (this host: every overlay here).
    pub networks: Vec<String>,
    /// Frames received from it (this host: datagrams its underlay socket read).
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent to it.
    pub tx_packets: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Frames dropped: on the way to it, or (this host) datagrams no overlay here takes.
    pub drops: u64,
    /// Dropped frames by reason (non-zero only).
    pub drops_by_reason: BTreeMap<String, u64>,
}

impl HostInfo {
    fn new(address: SocketAddr, state: &str) -> HostInfo {
        HostInfo {
            address,
            local: state == "local",
            name: None,
            public_key: None,
            state: state.to_string(),
            networks: Vec::new(),
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: 0,
            drops_by_reason: BTreeMap::new(),
        }
    }

    fn add_drops(&mut self, drops: &vswitch_core::reason::DropCounters) {
        self.drops += drops.total();
        for (reason, count) in drops.by_name() {
            *self.drops_by_reason.entry(reason.to_string()).or_default() += count;
        }
    }
}

impl Control {
    /// This host's underlay and the hosts its overlay networks reach, with their counters.
    pub async fn hosts(&self) -> Result<Vec<HostInfo>, ControlError> {
        let inner = self.inner.lock().await;
        let (_, counters) = self.dataplane.counters().await?;
        let counters: HashMap<PortId, PortCounters> = counters.into_iter().collect();
        let mut hosts: Vec<HostInfo> = Vec::new();
        if let Some(underlay) = self.dataplane.bound_underlay() {
            let address = underlay.local_addr().map_err(|error| ControlError::Io {
                what: "read the underlay's address",
                error,
            })?;
            let mut local = HostInfo::new(address, "local");
            local.name = self.host_name();
            local.public_key = self.wireguard_identity().map(|(key, _)| key);
            let (packets, bytes, drops) = underlay.counters();
            local.rx_packets = packets;
            local.rx_bytes = bytes;
            local.add_drops(&drops);
            hosts.push(local);
        }
        for (name, network) in &inner.networks {
            if network.record.overlay.is_some() {
                if let Some(local) = hosts.first_mut().filter(|h| h.local) {
                    local.networks.push(name.clone());
                }
            }
            for tunnel in &network.tunnels {
                let index = match hosts
                    .iter()
                    .position(|h| !h.local && h.address == tunnel.peer)
                {
                    Some(index) => index,
                    None => {
                        let state = if tunnel.host.is_some() {
                            "up"
                        } else {
                            "static"
                        };
                        let mut host = HostInfo::new(tunnel.peer, state);
                        host.name = tunnel.host.clone();
                        hosts.push(host);
                        hosts.len() - 1
                    }
                };
                let host = &mut hosts[index];
                host.networks.push(name.clone());
                let c = counters.get(&tunnel.port).copied().unwrap_or_default();
                host.rx_packets += c.rx_packets;
                host.rx_bytes += c.rx_bytes;
                host.tx_packets += c.tx_packets;
                host.tx_bytes += c.tx_bytes;
                host.add_drops(&c.drops);
            }
        }
        // Hosts of the store that share no network with this one.
        for (name, address) in self.store_hosts().unwrap_or_default() {
            if !hosts.iter().any(|h| h.name.as_ref() == Some(&name)) {
                let mut host = HostInfo::new(address, "up");
                host.name = Some(name);
                hosts.push(host);
            }
        }
        Ok(hosts)
    }

    /// Adds a tunnel port to each of an overlay network's peers (none for a network of one
    /// host); if one cannot be added, none are.
    pub(super) async fn start_tunnels(
        &self,
        record: &NetworkRecord,
        id: NetworkId,
    ) -> Result<Vec<LiveTunnel>, ControlError> {
        let Some(overlay) = &record.overlay else {
            return Ok(Vec::new());
        };
        // Bound now even without peers: hosts found later, or not yet up, send here.
        self.dataplane.underlay().await?;
        let mut tunnels = Vec::new();
        for peer in &overlay.peers {
            let key = overlay.peer_keys.get(&peer.ip());
            match self.add_tunnel(record, overlay, id, *peer, key).await {
                Ok(port) => tunnels.push(LiveTunnel {
                    peer: *peer,
                    port,
                    host: None,
                }),
                Err(e) => {
                    self.stop_tunnels(overlay, tunnels).await?;
                    return Err(e);
                }
            }
        }
        Ok(tunnels)
    }

    /// Adds the tunnel port to one other host of an overlay network.
    pub(super) async fn add_tunnel(
        &self,
        record: &NetworkRecord,
        overlay: &OverlayRecord,
        id: NetworkId,
        peer: SocketAddr,
        key: Option<&PeerKey>,
    ) -> Result<PortId, ControlError> {
        let underlay = self.dataplane.underlay().await?;
        let tunnel = if overlay.encrypt {
            let wireguard = self.wireguard().await?;
            let key = key.ok_or_else(|| {
                super::error::invalid(format!(
                    "host {peer} has no WireGuard key for encrypted network {}",
                    record.name
                ))
            })?;
            let public = parse_public_key(&key.key)
                .ok_or_else(|| super::error::invalid(format!("host {peer}: bad public key")))?;
            let sealed = wireguard.peer(peer, public, key.inner);
            Tunnel::sealed(underlay.clone(), peer, overlay.vni, wireguard, sealed)
        } else {
            Tunnel::new(underlay.clone(), peer, overlay.vni)
        };
        let port = self
            .dataplane
            .add_tunnel_port(
                Arc::new(tunnel),
                PortConfig {
                    mode: PortMode::Access(id),
                    mtu: record.mtu,
                    // Another host's stations: what they may send as is that host's to check.
                    security: None,
                    rate_limit: None,
                    reach: Reach::Tunnel,
                },
            )
            .await?;
        underlay.add_route(peer.ip(), overlay.vni, port);
        Ok(port)
    }

    /// Lets this host take part in encrypted overlays.
    pub fn enable_wireguard(&self, config: WireGuardConfig) {
        let _ = self.wireguard_config.set(config);
    }

    /// This host's WireGuard public key and tunnel address, if it takes part.
    pub(super) fn wireguard_identity(&self) -> Option<(String, std::net::Ipv4Addr)> {
        let config = self.wireguard_config.get()?;
        Some((config.public_key.clone(), config.inner))
    }

    /// The WireGuard socket: bound beside the underlay's, read by the first worker, and its
    /// timers run, when the first encrypted overlay asks for it.
    async fn wireguard(&self) -> Result<Arc<WireGuard>, ControlError> {
        self.wireguard
            .get_or_try_init(|| async {
                let config = self.wireguard_config.get().ok_or_else(|| {
                    super::error::invalid(
                        "encrypted overlays need the daemon's --tunnel-address (this host's address inside WireGuard)",
                    )
                })?;
                let io = |what| move |error| ControlError::Io { what, error };
                let underlay = self.dataplane.underlay().await?;
                let ip = underlay
                    .local_addr()
                    .map_err(io("read the underlay's address"))?
                    .ip();
                let keys = Keys::load_or_create(&config.key_file)
                    .map_err(io("read this host's WireGuard key"))?;
                let wireguard = WireGuard::bind(SocketAddr::new(ip, config.port), keys, config.inner)
                    .map_err(io("bind the WireGuard socket"))?;
                let wireguard = Arc::new(wireguard);
                self.dataplane.attach_wireguard(wireguard.clone()).await?;
                tokio::spawn(run_timers(Arc::downgrade(&wireguard)));
                Ok(wireguard)
            })
            .await
            .cloned()
    }

    /// Removes an overlay network's tunnel ports.
    pub(super) async fn stop_tunnels(
        &self,
        overlay: &OverlayRecord,
        tunnels: Vec<LiveTunnel>,
    ) -> Result<(), ControlError> {
        for tunnel in tunnels {
            if let Some(underlay) = self.dataplane.bound_underlay() {
                underlay.remove_route(tunnel.peer.ip(), overlay.vni);
            }
            self.dataplane.remove_port(tunnel.port).await?;
        }
        Ok(())
    }
}

/// WireGuard's handshakes and keepalives, every 100 ms until the socket goes.
async fn run_timers(wireguard: std::sync::Weak<WireGuard>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        match wireguard.upgrade() {
            Some(wireguard) => wireguard.tick(),
            None => return,
        }
    }
}
