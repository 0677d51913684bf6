//! Networks: creating one (its switch network, storm control, policy and gateway), removing an
//! empty one, and showing them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use vswitch_core::frame::MacAddr;
use vswitch_core::ids::NetworkId;
use vswitch_core::switch::{PortConfig, PortMode, Reach};

use super::{rules, unix_now, Control, ControlError, Inner, LiveGateway, Network};
use crate::datapath::link::Link;
use crate::gateway::{self, GatewayConfig, GatewayStats};
use crate::model::{
    gateway_mac, leases, plan_network_with, DaemonInfo, NetworkCreate, NetworkRecord,
};

/// A network as `vswitch network inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkView {
    /// The network.
    #[serde(flatten)]
    pub network: NetworkRecord,
    /// MAC of its gateway.
    pub gateway_mac: MacAddr,
    /// What its gateway served and dropped.
    pub gateway: GatewayStats,
    /// An overlay's other hosts: name (with a store) and underlay address, as `name@address`
    /// or the address alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Endpoints on other hosts, as the store says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_endpoints: Vec<crate::model::RemoteEndpoint>,
}

impl Control {
    /// Creates a network.
    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        self.create_network_in(&mut inner, req, true).await
    }

    /// Creates a network, the control plane's lock held; an overlay is defined in the store
    /// too (`define`), unless the store is where its definition came from.
    pub(super) async fn create_network_in(
        &self,
        inner: &mut Inner,
        req: NetworkCreate,
        define: bool,
    ) -> Result<NetworkRecord, ControlError> {
        let records = inner.state().networks;
        let mut req = req;
        if req.id.is_none() && req.docker_id.is_none() {
            req.id = Some(new_network_id()?);
        }
        let pools = self
            .address_pools
            .get_or_init(crate::model::pools::default_pools);
        let mut record = plan_network_with(&req, &records, pools)?;
        // Compiled before anything is created, so an unusable policy changes nothing.
        let engine = rules::policy_engine(&record, unix_now())?;
        if define {
            if let Some(id) = self.define_network(&req, &record).await? {
                record.id = id;
            }
        }
        let network = self.start_network(record.clone()).await?;
        if let Err(e) = self.dataplane.set_policy(network.id, engine) {
            self.stop_network(network).await?;
            return Err(e.into());
        }
        inner.networks.insert(record.name.clone(), network);
        if let Err(e) = self.commit(inner) {
            if let Some(network) = inner.networks.remove(&record.name) {
                self.stop_network(network).await?;
            }
            return Err(e);
        }
        info!(network = %record.name, "network created");
        let name = record.name.as_str();
        let attributes = [
            ("name", name),
            ("network", name),
            ("driver", record.driver()),
        ];
        self.emit("network", "create", &record.id, &attributes);
        Ok(record)
    }

    /// Removes a network that has no endpoints.
    pub async fn remove_network(&self, name: &str) -> Result<(), ControlError> {
        let mut inner = self.inner.lock().await;
        let network = inner.network(name)?;
        let trunks = inner
            .trunks
            .values()
            .filter(|t| t.record.carries(name))
            .map(|t| format!("trunk {}", t.record.name));
        let endpoints: Vec<String> = network
            .record
            .endpoints
            .keys()
            .cloned()
            .chain(trunks)
            .collect();
        if !endpoints.is_empty() {
            return Err(ControlError::NetworkInUse {
                network: name.to_string(),
                endpoints: endpoints.join(", "),
            });
        }
        if network.record.overlay.is_some() {
            self.undefine_network(name).await?;
        }
        let id = network.record.id.clone();
        if let Some(network) = inner.networks.remove(name) {
            self.stop_network(network).await?;
        }
        self.commit(&inner)?;
        info!(network = %name, "network removed");
        self.emit(
            "network",
            "remove",
            &id,
            &[("name", name), ("network", name)],
        );
        Ok(())
    }

    /// What the daemon says of itself.
    pub fn info(&self) -> DaemonInfo {
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: "1".to_string(),
            pid: std::process::id(),
            rootless: tap::in_user_namespace(),
        }
    }

    /// Every network.
    pub async fn networks(&self) -> Vec<NetworkRecord> {
        let inner = self.inner.lock().await;
        inner.networks.values().map(|n| n.record.clone()).collect()
    }

    /// One network.
    pub async fn network(&self, name: &str) -> Result<NetworkRecord, ControlError> {
        Ok(self.inner.lock().await.network(name)?.record.clone())
    }

    /// One network with its gateway's counters, as `network inspect` shows it.
    pub async fn inspect_network(&self, name: &str) -> Result<NetworkView, ControlError> {
        let inner = self.inner.lock().await;
        let network = inner.network(name)?;
        Ok(NetworkView {
            gateway_mac: gateway_mac(name),
            network: network.record.clone(),
            gateway: network.gateway.gateway.counters.snapshot(),
            hosts: network
                .tunnels
                .iter()
                .map(|t| match &t.host {
                    Some(host) => format!("{host}@{}", t.peer),
                    None => t.peer.to_string(),
                })
                .collect(),
            remote_endpoints: network.record.remote.clone(),
        })
    }

    /// Adds a network to the switch with its storm control and starts its gateway; endpoints
    /// are attached afterwards.
    pub(super) async fn start_network(
        &self,
        record: NetworkRecord,
    ) -> Result<Network, ControlError> {
        let id = self.dataplane.add_network();
        let started = async {
            self.dataplane.set_storm_control(id, storm_pps(&record))?;
            let gateway = self.start_gateway(&record, id).await?;
            match self.start_tunnels(&record, id).await {
                Ok(tunnels) => Ok((gateway, tunnels)),
                Err(e) => {
                    drop(gateway.gateway);
                    self.dataplane.remove_port(gateway.port).await?;
                    Err(e)
                }
            }
        };
        match started.await {
            Ok((gateway, tunnels)) => Ok(Network {
                record,
                id,
                gateway,
                tunnels,
                pinned: HashMap::new(),
                ports: HashMap::new(),
            }),
            Err(e) => {
                self.dataplane.remove_network(id)?;
                Err(e)
            }
        }
    }

    /// Stops a network's gateway and tunnels and removes it from the switch (it has no other
    /// ports).
    pub(super) async fn stop_network(&self, network: Network) -> Result<(), ControlError> {
        if let Some(overlay) = &network.record.overlay {
            self.stop_tunnels(overlay, network.tunnels).await?;
        }
        drop(network.gateway.gateway);
        self.dataplane.remove_port(network.gateway.port).await?;
        self.dataplane.remove_network(network.id)?;
        Ok(())
    }

    /// Adds the gateway port of a network and starts its gateway.
    async fn start_gateway(
        &self,
        network: &NetworkRecord,
        id: NetworkId,
    ) -> Result<LiveGateway, ControlError> {
        let io = |what| move |error| ControlError::Io { what, error };
        let link = Arc::new(Link::new().map_err(io("create the gateway link"))?);
        let port = self
            .dataplane
            .add_gateway_port(
                link.clone(),
                PortConfig {
                    mode: PortMode::Access(id),
                    mtu: network.mtu,
                    // The gateway is the switch's own: it may answer for any address it serves.
                    security: None,
                    rate_limit: None,
                    // One gateway per host, the same on every host of an overlay: it serves only its own.
                    reach: Reach::HostOnly,
                },
            )
            .await?;
        let config = gateway_config(network);
        let host = match &network.host_iface {
            Some(ifname) => match self.open_host_iface(network, ifname, config.mac).await {
                Ok(device) => Some(device),
                Err(e) => {
                    self.dataplane.remove_port(port).await?;
                    return Err(e);
                }
            },
            None => None,
        };
        debug!(network = %network.name, upstreams = ?config.upstreams, "gateway started");
        let gateway = gateway::spawn(config, link, host, self.names.clone(), self.leases.clone())
            .map_err(io("start the gateway"))?;
        Ok(LiveGateway { port, gateway })
    }

    /// Creates a network's host interface in the daemon's own namespace, with the gateway's
    /// MAC and addresses.
    async fn open_host_iface(
        &self,
        network: &NetworkRecord,
        ifname: &str,
        mac: MacAddr,
    ) -> Result<tap::Queue, ControlError> {
        let config = tap::TapConfig {
            ifname: ifname.to_string(),
            mac: mac.0,
            mtu: network.mtu,
            addresses: network
                .subnets
                .iter()
                .map(|s| ipnet::IpNet::new(s.gateway, s.subnet.prefix_len()).expect("valid prefix"))
                .collect(),
            gateways: Vec::new(),
            offload: false,
            queues: 1,
            disable_ipv6: !network.subnets.iter().any(|s| s.gateway.is_ipv6()),
            ipv6_autoconf: false,
            handover: false,
        };
        let own = tap::NetnsRef::Pid(std::process::id());
        let tap = tokio::task::spawn_blocking(move || {
            let ns = tap::Namespace::open(&own)?;
            tap::attach(&ns, &config)
        })
        .await
        .expect("attach does not panic")?;
        Ok(tap.into_queues().remove(0))
    }
}

/// What a network's gateway serves.
fn gateway_config(network: &NetworkRecord) -> GatewayConfig {
    let upstreams = if network.dns.is_empty() {
        gateway::resolv::system_upstreams()
    } else {
        network.dns.clone()
    };
    let mac = gateway_mac(&network.name);
    let dhcp = network
        .subnets
        .iter()
        .find_map(|s| match (s.gateway, s.subnet) {
            (IpAddr::V4(gw), ipnet::IpNet::V4(net)) => Some(gateway::dhcp::ServerConfig {
                server_mac: mac.0,
                server_ip: gw,
                prefix_len: net.prefix_len(),
                router: Some(gw),
                dns: vec![gw],
                mtu: u16::try_from(network.mtu).ok(),
                lease_time: Duration::from_secs(leases::DEFAULT_LEASE_SECS),
                domain_name: None,
            }),
            _ => None,
        });
    GatewayConfig {
        network: network.name.clone(),
        mac,
        mtu: network.mtu,
        subnets: network.subnets.clone(),
        upstreams,
        dhcp,
        internal: network.internal,
        host_loopback: network.host_loopback,
    }
}

/// Storm control of a network as the switch takes it: `None` is off.
fn storm_pps(network: &NetworkRecord) -> Option<u64> {
    match network.storm_pps {
        None => Some(policy::ratelimit::DEFAULT_STORM_PPS),
        Some(0) => None,
        pps => pps,
    }
}

/// A fresh network ID: 32 random bytes in hex, as Docker's.
pub(super) fn new_network_id() -> Result<String, ControlError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ControlError::Io {
        what: "drawing random bytes for a network ID",
        error: e.into(),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Control {
    /// Sets where networks created without a subnet get one (before any is created; the
    /// defaults otherwise).
    pub fn set_address_pools(&self, pools: Vec<crate::model::pools::AddressPool>) {
        if !pools.is_empty() {
            let _ = self.address_pools.set(pools);
        }
    }
}
