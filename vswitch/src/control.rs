//! The control plane: owns the networks and endpoints, checks every request before changing
//! anything, drives the data path, persists the result, and notices containers that went away.
//! Requests are serialized by one async mutex, so each is applied whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, info, warn};

use crate::dataplane::{DataPathConfig, DataPlane, PortCounters};
use crate::directory::Directory;
use crate::error::{invalid, ControlError};
use crate::gateway::{self, Gateway, GatewayConfig, GatewayStats, LeaseCall};
use crate::leases;
use crate::model::{
    plan_endpoint, plan_network, plan_trunk, CaptureRequest, ConnectRequest, Connected,
    EndpointRecord, MirrorRecord, NetworkCreate, NetworkRecord, TrunkCreate, TrunkRecord,
};
use crate::resolv;
use crate::state::{is_target, State, StateStore};
use vswitch_core::frame::MacAddr;
use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::switch::{NetworkStats, PortConfig, PortMode};

/// How often attached namespaces are checked for having gone away.
pub const NAMESPACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A port as `vswitch ports` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortInfo {
    /// Switch port number.
    pub port: u32,
    /// `container`, `trunk` or `gateway`.
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

/// A network's policy and how often each rule (and the default) decided a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The policy as configured.
    #[serde(flatten)]
    pub policy: policy::NetworkPolicy,
    /// Counters per rule, in rule order, then `default`.
    pub stats: Vec<policy::RuleStats>,
}

struct LiveEndpoint {
    port: PortId,
    ns: tap::Namespace,
}

struct LiveNetwork {
    id: NetworkId,
    endpoints: HashMap<String, LiveEndpoint>,
    gateway: LiveGateway,
}

/// A network's gateway: its switch port and the task serving it.
struct LiveGateway {
    port: PortId,
    gateway: Gateway,
}

struct Inner {
    state: State,
    live: HashMap<String, LiveNetwork>,
    trunks: HashMap<String, LiveEndpoint>,
}

/// A running capture's output: pcapng bytes as they are written.
pub struct CaptureStream {
    /// Its id, for `stop_capture`.
    pub id: u64,
    /// The bytes; the stream ends when the capture does.
    pub bytes: mpsc::Receiver<bytes::Bytes>,
}

/// The daemon's state and the data path it drives.
pub struct Control {
    /// Drop counts at the last drop summary.
    drops_logged: std::sync::Mutex<vswitch_core::reason::DropCounters>,
    /// Stop flags of running captures by id.
    captures: std::sync::Mutex<HashMap<u64, Arc<std::sync::atomic::AtomicBool>>>,
    inner: Mutex<Inner>,
    dataplane: DataPlane,
    store: StateStore,
    /// What the gateways' DNS servers answer from, rebuilt after every change.
    names: Arc<RwLock<Directory>>,
    /// Where gateways ask for DHCP lease decisions.
    leases: mpsc::Sender<LeaseCall>,
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Control {
    /// Starts the data path and restores saved networks; endpoints whose namespace still exists
    /// are attached again, the others are forgotten.
    pub async fn start(store: StateStore, config: DataPathConfig) -> anyhow::Result<Arc<Control>> {
        let loaded = store.load()?;
        if let Some((aside, error)) = &loaded.damaged {
            tracing::error!(%error, kept = %aside.display(), "state file damaged: starting with no networks; the damaged copy is kept");
        }
        let saved = loaded.state;
        let (leases, lease_calls) = mpsc::channel(256);
        let control = Arc::new(Control {
            inner: Mutex::new(Inner {
                state: State::default(),
                live: HashMap::new(),
                trunks: HashMap::new(),
            }),
            dataplane: DataPlane::start(config)?,
            store,
            names: Arc::default(),
            leases,
            captures: Default::default(),
            drops_logged: Default::default(),
        });
        tokio::spawn(serve_leases(Arc::downgrade(&control), lease_calls));
        control.restore(saved).await?;
        Ok(control)
    }

    async fn restore(&self, saved: State) -> Result<(), ControlError> {
        let mut inner = self.inner.lock().await;
        for (name, mut network) in saved.networks {
            let id = self.dataplane.add_network().await?;
            self.dataplane
                .set_storm_control(id, storm_pps(&network))
                .await??;
            let endpoints = std::mem::take(&mut network.endpoints);
            let gateway = self.start_gateway(&network, id).await?;
            inner.live.insert(
                name.clone(),
                LiveNetwork {
                    id,
                    endpoints: HashMap::new(),
                    gateway,
                },
            );
            inner.state.networks.insert(name.clone(), network);
            for (_, endpoint) in endpoints {
                match self.attach(&mut inner, &name, endpoint.clone()).await {
                    Ok(_) => {
                        info!(network = %name, endpoint = %endpoint.name, "endpoint restored")
                    }
                    Err(e) => {
                        warn!(network = %name, endpoint = %endpoint.name, error = %e, "endpoint not restored")
                    }
                }
            }
            if let Err(e) = self.apply_policy(&inner, &name).await {
                warn!(network = %name, error = %e, "policy not restored");
            }
        }
        for (name, trunk) in saved.trunks {
            match self.attach_trunk(&mut inner, trunk).await {
                Ok(_) => info!(trunk = %name, "trunk restored"),
                Err(e) => warn!(trunk = %name, error = %e, "trunk not restored"),
            }
        }
        self.save(&inner)
    }

    /// Persists the state, publishes the names it holds to the gateways, and points the
    /// mirrors at the ports as they are now.
    fn save(&self, inner: &Inner) -> Result<(), ControlError> {
        self.dataplane.taps().set_mirrors(
            inner
                .state
                .mirrors
                .values()
                .filter_map(|m| inner.resolve_mirror(m).ok())
                .collect(),
        );
        let directory = Directory::from_state(&inner.state, unix_now());
        *self
            .names
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = directory;
        self.store
            .save(&inner.state)
            .map_err(|e| ControlError::State(e.to_string()))
    }

    /// Adds the gateway port of a network and starts its gateway.
    async fn start_gateway(
        &self,
        network: &NetworkRecord,
        id: NetworkId,
    ) -> Result<LiveGateway, ControlError> {
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair()
            .and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ok((a, b))
            })
            .map_err(|e| ControlError::Internal(format!("cannot create gateway socket: {e}")))?;
        let socket = tokio::net::UnixDatagram::from_std(theirs)
            .map_err(|e| ControlError::Internal(format!("cannot register gateway socket: {e}")))?;
        let port = self
            .dataplane
            .add_local_port(
                ours,
                PortConfig {
                    mode: PortMode::Access(id),
                    mtu: network.mtu,
                    // The gateway is the switch's own: it may answer for any address it serves.
                    security: None,
                    rate_limit: None,
                },
            )
            .await??;
        let config = gateway_config(network);
        let host = match &network.host_iface {
            Some(ifname) => match self.open_host_iface(network, ifname, config.mac).await {
                Ok(device) => Some(device),
                Err(e) => {
                    self.dataplane.remove_port(port).await??;
                    return Err(e);
                }
            },
            None => None,
        };
        debug!(network = %network.name, upstreams = ?config.upstreams, "gateway started");
        let gateway = gateway::spawn(
            config,
            socket,
            host,
            self.names.clone(),
            self.leases.clone(),
        )
        .map_err(|e| ControlError::Internal(format!("cannot start the gateway: {e}")))?;
        Ok(LiveGateway { port, gateway })
    }

    /// Creates a network's host interface in the daemon's own namespace, with the gateway's
    /// MAC and addresses.
    async fn open_host_iface(
        &self,
        network: &NetworkRecord,
        ifname: &str,
        mac: MacAddr,
    ) -> Result<tun_rs::SyncDevice, ControlError> {
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

    /// Points the resolv.conf of an `ip netns` namespace at the gateways of the networks it is
    /// on (removes it when it is on none). Other namespace references have no such file.
    fn write_resolv_conf(&self, inner: &Inner, netns: &str) -> Option<String> {
        let Ok(tap::NetnsRef::Name(name)) = netns.parse() else {
            return None;
        };
        let servers: Vec<IpAddr> = inner
            .state
            .networks
            .values()
            .filter(|n| n.endpoints.values().any(|e| e.netns == netns))
            .flat_map(dns_servers)
            .collect();
        match resolv::update(&name, &servers) {
            Ok(text) => text,
            Err(e) => {
                warn!(netns, error = %e, "cannot write resolv.conf");
                None
            }
        }
    }

    /// Decides a DHCP request of a network's gateway and persists the lease.
    async fn handle_lease(&self, call: LeaseCall) {
        let mut inner = self.inner.lock().await;
        let Some(network) = inner.state.networks.get_mut(&call.network) else {
            return;
        };
        let (decision, changed) =
            leases::decide(network, &call.query, unix_now(), leases::DEFAULT_LEASE_SECS);
        if changed {
            if let Err(e) = self.save(&inner) {
                warn!(error = %e, "cannot save DHCP lease");
            }
            // The client may now send from its new address (or no longer from its old one).
            let network = &inner.state.networks[&call.network];
            if let Some(endpoint) = network.endpoints.values().find(|e| e.mac == call.query.mac) {
                let security = port_security(network, endpoint, unix_now());
                if let Some(live) = inner.live[&call.network].endpoints.get(&endpoint.name) {
                    if let Ok(Err(e)) = self.dataplane.set_port_security(live.port, security).await
                    {
                        warn!(error = %e, "cannot update port security");
                    }
                }
            }
            if let Err(e) = self.apply_policy(&inner, &call.network).await {
                warn!(error = %e, "cannot update policy");
            }
        }
        debug!(network = %call.network, mac = %call.query.mac, kind = ?call.query.kind, ?decision, "DHCP");
        let _ = call.reply.send(decision);
    }

    /// Creates a network.
    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let record = plan_network(&req, &inner.state.networks)?;
        // Compiled before anything is created, so an unusable policy changes nothing.
        let engine = policy_engine(&record, unix_now()).map_err(|e| invalid(e.to_string()))?;
        let id = self.dataplane.add_network().await?;
        self.dataplane
            .set_storm_control(id, storm_pps(&record))
            .await??;
        self.dataplane.set_policy(id, engine).await??;
        let gateway = match self.start_gateway(&record, id).await {
            Ok(gateway) => gateway,
            Err(e) => {
                self.dataplane.remove_network(id).await??;
                return Err(e);
            }
        };
        inner.live.insert(
            record.name.clone(),
            LiveNetwork {
                id,
                endpoints: HashMap::new(),
                gateway,
            },
        );
        inner
            .state
            .networks
            .insert(record.name.clone(), record.clone());
        if let Err(e) = self.save(&inner) {
            let live = inner.live.remove(&record.name).expect("inserted above");
            inner.state.networks.remove(&record.name);
            self.dataplane.remove_port(live.gateway.port).await??;
            self.dataplane.remove_network(id).await??;
            return Err(e);
        }
        info!(network = %record.name, "network created");
        Ok(record)
    }

    /// Removes a network that has no endpoints.
    pub async fn remove_network(&self, name: &str) -> Result<(), ControlError> {
        let mut inner = self.inner.lock().await;
        let network = inner
            .state
            .networks
            .get(name)
            .ok_or_else(|| ControlError::UnknownNetwork(name.to_string()))?;
        let trunks = inner
            .state
            .trunks
            .values()
            .filter(|t| t.networks.iter().chain(&t.native).any(|n| n == name))
            .map(|t| format!("trunk {}", t.name));
        let endpoints: Vec<String> = network.endpoints.keys().cloned().chain(trunks).collect();
        if !endpoints.is_empty() {
            return Err(ControlError::NetworkInUse {
                network: name.to_string(),
                endpoints: endpoints.join(", "),
            });
        }
        let live = inner.live.remove(name).expect("every network is live");
        inner.state.networks.remove(name);
        drop(live.gateway.gateway);
        self.dataplane.remove_port(live.gateway.port).await??;
        self.dataplane.remove_network(live.id).await??;
        self.save(&inner)?;
        info!(network = %name, "network removed");
        Ok(())
    }

    /// Every network.
    pub async fn networks(&self) -> Vec<NetworkRecord> {
        self.inner
            .lock()
            .await
            .state
            .networks
            .values()
            .cloned()
            .collect()
    }

    /// One network.
    pub async fn network(&self, name: &str) -> Result<NetworkRecord, ControlError> {
        let inner = self.inner.lock().await;
        inner
            .state
            .networks
            .get(name)
            .cloned()
            .ok_or_else(|| ControlError::UnknownNetwork(name.to_string()))
    }

    /// One network with its gateway's counters, as `network inspect` shows it.
    pub async fn inspect_network(&self, name: &str) -> Result<NetworkView, ControlError> {
        let inner = self.inner.lock().await;
        let record = inner
            .state
            .networks
            .get(name)
            .cloned()
            .ok_or_else(|| ControlError::UnknownNetwork(name.to_string()))?;
        let gateway = inner.live[name].gateway.gateway.counters.snapshot();
        Ok(NetworkView {
            gateway_mac: gateway::gateway_mac(name),
            network: record,
            gateway,
        })
    }

    /// Attaches a namespace to a network.
    pub async fn connect(
        &self,
        network: &str,
        req: ConnectRequest,
    ) -> Result<Connected, ControlError> {
        let mut inner = self.inner.lock().await;
        let netns: tap::NetnsRef = req.netns.parse()?;
        let record = inner
            .state
            .networks
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        let endpoint = plan_endpoint(&req, &netns, record, &inner.state)?;
        let endpoint = self.attach(&mut inner, network, endpoint).await?;
        if let Err(e) = self.save(&inner) {
            self.detach(&mut inner, network, &endpoint.name).await?;
            return Err(e);
        }
        // Its labels and addresses now count in the network's rules.
        self.apply_policy(&inner, network).await?;
        let resolv_conf = self.write_resolv_conf(&inner, &endpoint.netns);
        info!(network, endpoint = %endpoint.name, netns = %endpoint.netns, "connected");
        Ok(Connected {
            dns: dns_servers(&inner.state.networks[network]),
            endpoint,
            resolv_conf,
        })
    }

    /// Creates the TAP device for `endpoint` and adds its port; records it on success.
    async fn attach(
        &self,
        inner: &mut Inner,
        network: &str,
        mut endpoint: EndpointRecord,
    ) -> Result<EndpointRecord, ControlError> {
        let record = &inner.state.networks[network];
        let mtu = endpoint.mtu.unwrap_or(record.mtu);
        let config = tap::TapConfig {
            ifname: endpoint.ifname.clone(),
            mac: endpoint.mac.0,
            mtu,
            addresses: endpoint.addresses.clone(),
            // A DHCP client learns its routes from DHCP and router advertisements.
            gateways: if endpoint.dhcp {
                Vec::new()
            } else {
                default_gateways(record)
            },
            offload: endpoint.offload,
            queues: self.dataplane.workers(),
            disable_ipv6: !record.subnets.iter().any(|s| s.subnet.addr().is_ipv6()),
            ipv6_autoconf: endpoint.dhcp,
        };
        let port_config = PortConfig {
            mode: PortMode::Access(inner.live[network].id),
            mtu,
            security: port_security(record, &endpoint, unix_now()),
            rate_limit: endpoint.rate_limit,
        };
        let port = self
            .open_port(&endpoint.netns, endpoint.netns_inode, config, port_config)
            .await?;
        endpoint.netns_inode = port.ns.identity().ino;
        let live = inner.live.get_mut(network).expect("every network is live");
        live.endpoints.insert(endpoint.name.clone(), port);
        let record = inner
            .state
            .networks
            .get_mut(network)
            .expect("checked above");
        record
            .endpoints
            .insert(endpoint.name.clone(), endpoint.clone());
        Ok(endpoint)
    }

    /// Creates a TAP device in `netns` and hands it to the data path as a port. A non-zero
    /// `expected_inode` (from the saved record) must match: after a restart, `pid:PID` may
    /// name some other process's namespace.
    async fn open_port(
        &self,
        netns: &str,
        expected_inode: u64,
        config: tap::TapConfig,
        port_config: PortConfig,
    ) -> Result<LiveEndpoint, ControlError> {
        let reference: tap::NetnsRef = netns.parse()?;
        let started = std::time::Instant::now();
        // Entering a namespace and waiting on netlink blocks: keep it off the async workers.
        let (ns, device) = tokio::task::spawn_blocking(move || {
            let ns = tap::Namespace::open(&reference)?;
            if expected_inode != 0 && ns.identity().ino != expected_inode {
                return Err(ControlError::Invalid(format!(
                    "{} is no longer the namespace the endpoint was connected to",
                    ns.describe()
                )));
            }
            let device = tap::attach(&ns, &config)?;
            Ok::<_, ControlError>((ns, device))
        })
        .await
        .expect("attach does not panic")?;
        let attached = started.elapsed();
        let port = self.dataplane.add_port(device, port_config).await??;
        debug!(netns, ?attached, total = ?started.elapsed(), "port opened");
        Ok(LiveEndpoint { port, ns })
    }

    async fn detach(
        &self,
        inner: &mut Inner,
        network: &str,
        endpoint: &str,
    ) -> Result<EndpointRecord, ControlError> {
        let live = inner
            .live
            .get_mut(network)
            .and_then(|n| n.endpoints.remove(endpoint));
        let net = inner
            .state
            .networks
            .get_mut(network)
            .expect("caller checked the network exists");
        let record = net
            .endpoints
            .remove(endpoint)
            .expect("caller checked the endpoint exists");
        // The interface is gone: so is what its DHCP client leased.
        if record.dhcp {
            net.leases.retain(|l| l.mac != record.mac);
        }
        if let Some(live) = live {
            // Removing the port closes the TAP fd: the kernel deletes the device.
            self.dataplane.remove_port(live.port).await??;
        }
        Ok(record)
    }

    /// Detaches an endpoint, given by name or by namespace, from a network.
    pub async fn disconnect(
        &self,
        network: &str,
        target: &str,
    ) -> Result<EndpointRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let name = inner.state.endpoint_name(network, target)?;
        let endpoint = self.detach(&mut inner, network, &name).await?;
        self.save(&inner)?;
        self.apply_policy(&inner, network).await?;
        self.write_resolv_conf(&inner, &endpoint.netns);
        info!(network, endpoint = %name, "disconnected");
        Ok(endpoint)
    }

    /// Adds a trunk port carrying several networks.
    pub async fn add_trunk(&self, req: TrunkCreate) -> Result<TrunkRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let netns: tap::NetnsRef = req.netns.parse()?;
        let trunk = plan_trunk(&req, &netns, &inner.state)?;
        let trunk = self.attach_trunk(&mut inner, trunk).await?;
        if let Err(e) = self.save(&inner) {
            self.detach_trunk(&mut inner, &trunk.name).await?;
            return Err(e);
        }
        info!(trunk = %trunk.name, netns = %trunk.netns, "trunk added");
        Ok(trunk)
    }

    async fn attach_trunk(
        &self,
        inner: &mut Inner,
        mut trunk: TrunkRecord,
    ) -> Result<TrunkRecord, ControlError> {
        let network = |name: &String| {
            let record = inner
                .state
                .networks
                .get(name)
                .ok_or_else(|| ControlError::UnknownNetwork(name.clone()))?;
            Ok::<_, ControlError>((record, inner.live[name].id))
        };
        let mut vlans = Vec::new();
        let mut mtu = 0;
        for name in &trunk.networks {
            let (record, id) = network(name)?;
            let vlan = record
                .vlan
                .ok_or_else(|| ControlError::Invalid(format!("network {name} has no VLAN ID")))?;
            vlans.push((vlan, id));
            mtu = mtu.max(record.mtu);
        }
        let native = match &trunk.native {
            Some(name) => {
                let (record, id) = network(name)?;
                mtu = mtu.max(record.mtu);
                Some(id)
            }
            None => None,
        };
        let config = tap::TapConfig {
            ifname: trunk.ifname.clone(),
            mac: trunk.mac.0,
            mtu,
            addresses: Vec::new(),
            gateways: Vec::new(),
            offload: true,
            queues: self.dataplane.workers(),
            // A trunk carries whatever its peer runs over the VLANs.
            disable_ipv6: false,
            ipv6_autoconf: false,
        };
        let port_config = PortConfig {
            mode: PortMode::Trunk { vlans, native },
            mtu,
            // A trunk faces another switch: many stations legitimately send through it.
            security: None,
            rate_limit: None,
        };
        let port = self
            .open_port(&trunk.netns, trunk.netns_inode, config, port_config)
            .await?;
        trunk.netns_inode = port.ns.identity().ino;
        inner.trunks.insert(trunk.name.clone(), port);
        inner.state.trunks.insert(trunk.name.clone(), trunk.clone());
        Ok(trunk)
    }

    async fn detach_trunk(
        &self,
        inner: &mut Inner,
        name: &str,
    ) -> Result<TrunkRecord, ControlError> {
        let record = inner
            .state
            .trunks
            .remove(name)
            .expect("caller checked the trunk exists");
        if let Some(live) = inner.trunks.remove(name) {
            self.dataplane.remove_port(live.port).await??;
        }
        Ok(record)
    }

    /// Removes a trunk, given by name or by namespace.
    pub async fn remove_trunk(&self, target: &str) -> Result<TrunkRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let name = inner
            .state
            .trunks
            .values()
            .find(|t| is_target(target, &t.name, &t.netns))
            .map(|t| t.name.clone())
            .ok_or_else(|| ControlError::UnknownTrunk(target.to_string()))?;
        let trunk = self.detach_trunk(&mut inner, &name).await?;
        self.save(&inner)?;
        info!(trunk = %name, "trunk removed");
        Ok(trunk)
    }

    /// Every trunk.
    pub async fn trunks(&self) -> Vec<TrunkRecord> {
        self.inner
            .lock()
            .await
            .state
            .trunks
            .values()
            .cloned()
            .collect()
    }

    /// Disconnects every endpoint whose namespace has gone away (the container exited).
    pub async fn handle_gone_namespaces(&self) {
        let mut inner = self.inner.lock().await;
        let gone: Vec<(String, String)> = inner
            .live
            .iter()
            .flat_map(|(net, live)| {
                live.endpoints
                    .iter()
                    .filter(|(_, e)| !e.ns.is_alive())
                    .map(move |(name, _)| (net.clone(), name.clone()))
            })
            .collect();
        let gone_trunks: Vec<String> = inner
            .trunks
            .iter()
            .filter(|(_, t)| !t.ns.is_alive())
            .map(|(name, _)| name.clone())
            .collect();
        if gone.is_empty() && gone_trunks.is_empty() {
            return;
        }
        for trunk in gone_trunks {
            match self.detach_trunk(&mut inner, &trunk).await {
                Ok(_) => info!(trunk = %trunk, "namespace gone, trunk removed"),
                Err(e) => warn!(trunk = %trunk, error = %e, "cannot remove trunk"),
            }
        }
        for (network, endpoint) in gone {
            match self.detach(&mut inner, &network, &endpoint).await {
                Ok(record) => {
                    self.write_resolv_conf(&inner, &record.netns);
                    if let Err(e) = self.apply_policy(&inner, &network).await {
                        warn!(network = %network, error = %e, "cannot update policy");
                    }
                    info!(network = %network, endpoint = %endpoint, "namespace gone, endpoint removed")
                }
                Err(e) => {
                    warn!(network = %network, endpoint = %endpoint, error = %e, "cannot remove endpoint")
                }
            }
        }
        if let Err(e) = self.save(&inner) {
            warn!(error = %e, "cannot save state");
        }
    }

    /// Compiles `network`'s policy against its endpoints as they are now and installs it.
    async fn apply_policy(&self, inner: &Inner, network: &str) -> Result<(), ControlError> {
        let record = &inner.state.networks[network];
        let engine = policy_engine(record, unix_now()).map_err(|e| invalid(e.to_string()))?;
        self.dataplane
            .set_policy(inner.live[network].id, engine)
            .await??;
        Ok(())
    }

    /// A network's policy with its rule counters.
    pub async fn policy(&self, network: &str) -> Result<PolicyView, ControlError> {
        let inner = self.inner.lock().await;
        self.policy_view(&inner, network).await
    }

    async fn policy_view(&self, inner: &Inner, network: &str) -> Result<PolicyView, ControlError> {
        let record = inner
            .state
            .networks
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        let mut stats = self.dataplane.rule_stats(inner.live[network].id).await?;
        if stats.is_empty() {
            // No engine (nothing to enforce): every rule and the default at zero.
            stats = record
                .policy
                .rules
                .iter()
                .map(|r| r.name.clone())
                .chain([policy::rules::DEFAULT_RULE.to_string()])
                .map(|name| policy::RuleStats {
                    name,
                    hits: 0,
                    staged_hits: 0,
                })
                .collect();
        }
        Ok(PolicyView {
            policy: record.policy.clone(),
            stats,
        })
    }

    /// Changes a network's policy with `change`; the result is checked and compiled before it
    /// replaces the running one in one step, else nothing changes.
    pub async fn change_policy(
        &self,
        network: &str,
        change: impl FnOnce(&mut policy::NetworkPolicy) -> Result<(), ControlError>,
    ) -> Result<PolicyView, ControlError> {
        let mut inner = self.inner.lock().await;
        let record = inner
            .state
            .networks
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        let mut candidate = record.clone();
        change(&mut candidate.policy)?;
        let engine = policy_engine(&candidate, unix_now()).map_err(|e| invalid(e.to_string()))?;
        let old = std::mem::replace(
            &mut inner
                .state
                .networks
                .get_mut(network)
                .expect("checked above")
                .policy,
            candidate.policy,
        );
        if let Err(e) = self.save(&inner) {
            inner
                .state
                .networks
                .get_mut(network)
                .expect("checked above")
                .policy = old;
            return Err(e);
        }
        self.dataplane
            .set_policy(inner.live[network].id, engine)
            .await??;
        info!(network, "policy changed");
        self.policy_view(&inner, network).await
    }

    /// A network's tracked flows.
    pub async fn conntrack(&self, network: &str) -> Result<Vec<policy::FlowRow>, ControlError> {
        let inner = self.inner.lock().await;
        let live = inner
            .live
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        Ok(self.dataplane.flows(live.id).await?)
    }

    /// Every port with its counters.
    pub async fn ports(&self) -> Result<Vec<PortInfo>, ControlError> {
        let inner = self.inner.lock().await;
        let (_, counters) = self.dataplane.counters().await?;
        let counters: HashMap<PortId, PortCounters> = counters.into_iter().collect();
        let mut ports = Vec::new();
        for (net_name, live) in &inner.live {
            for (name, endpoint) in &live.endpoints {
                let record = &inner.state.networks[net_name].endpoints[name];
                let c = counters.get(&endpoint.port).copied().unwrap_or_default();
                ports.push(port_info(
                    endpoint.port,
                    "container",
                    net_name.clone(),
                    name,
                    &record.netns,
                    &record.ifname,
                    record.mac,
                    c,
                ));
            }
            let gateway = &live.gateway;
            let c = counters.get(&gateway.port).copied().unwrap_or_default();
            let host_iface = inner.state.networks[net_name].host_iface.as_deref();
            ports.push(port_info(
                gateway.port,
                "gateway",
                net_name.clone(),
                "gateway",
                "",
                host_iface.unwrap_or(""),
                gateway::gateway_mac(net_name),
                c,
            ));
        }
        for (name, trunk) in &inner.trunks {
            let record = &inner.state.trunks[name];
            let c = counters.get(&trunk.port).copied().unwrap_or_default();
            let networks: Vec<String> = record
                .networks
                .iter()
                .map(|n| format!("{n}/{}", inner.state.networks[n].vlan.unwrap_or(0)))
                .chain(record.native.iter().map(|n| format!("{n}/untagged")))
                .collect();
            ports.push(port_info(
                trunk.port,
                "trunk",
                networks.join(","),
                name,
                &record.netns,
                &record.ifname,
                record.mac,
                c,
            ));
        }
        ports.sort_by_key(|p| p.port);
        Ok(ports)
    }

    /// Starts a live capture; its pcapng output streams from the returned receiver until the
    /// count is reached, `stop_capture` is called, or the receiver is dropped.
    pub async fn start_capture(&self, req: CaptureRequest) -> Result<CaptureStream, ControlError> {
        use crate::capture::{write_pcapng, Filter, TapScope, WriterConfig, DEFAULT_SNAPLEN};
        let (ports, both_directions) = {
            let inner = self.inner.lock().await;
            match (&req.port, &req.network) {
                (Some(port), None) => (vec![inner.endpoint_port(port)?], true),
                (None, Some(network)) => (inner.network_ports(network)?, false),
                _ => {
                    return Err(ControlError::Invalid(
                        "capture either one endpoint (--port) or a network (--network)".into(),
                    ))
                }
            }
        };
        if let Some(filter) = &req.filter {
            Filter::compile(filter).map_err(|e| ControlError::Invalid(e.to_string()))?;
        }
        let snaplen = req
            .snaplen
            .unwrap_or(DEFAULT_SNAPLEN)
            .clamp(1, DEFAULT_SNAPLEN);
        let config = WriterConfig {
            interfaces: ports.iter().map(|p| p.name.clone()).collect(),
            snaplen,
            filter: req.filter.clone(),
            count: req.count,
        };
        let scope = TapScope {
            ports: ports.iter().map(|p| p.port).collect(),
            both_directions,
        };
        let taps = self.dataplane.taps().clone();
        let (id, frames) = taps.start_capture(scope, req.drops, snaplen);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.captures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, stopped.clone());
        let (bytes_tx, bytes) = mpsc::channel(64);
        let spawned = std::thread::Builder::new()
            .name(format!("capture{id}"))
            .spawn(move || {
                let finish = || taps.stop_capture(id).unwrap_or_default();
                let emit = |b: Vec<u8>| bytes_tx.blocking_send(bytes::Bytes::from(b)).is_ok();
                let (ended, written) = write_pcapng(&config, &frames, &stopped, finish, emit);
                taps.stop_capture(id);
                debug!(capture = id, ?ended, written, "capture ended");
            });
        if let Err(e) = spawned {
            self.dataplane.taps().stop_capture(id);
            return Err(ControlError::Internal(format!(
                "cannot start a capture thread: {e}"
            )));
        }
        info!(capture = id, port = ?req.port, network = ?req.network, "capture started");
        Ok(CaptureStream { id, bytes })
    }

    /// Stops a capture: its stream ends with the interface statistics.
    pub fn stop_capture(&self, id: u64) -> Result<(), ControlError> {
        let stopped = self
            .captures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id)
            .ok_or_else(|| ControlError::Invalid(format!("no capture {id}")))?;
        stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Runs a frame built from `req` through the switch's decision, changing nothing.
    pub async fn trace(
        &self,
        network: &str,
        req: vswitch_core::trace::TraceRequest,
    ) -> Result<vswitch_core::trace::TraceReport, ControlError> {
        use vswitch_core::switch::WouldLearn;
        use vswitch_core::trace::{build_frame, describe_frame, Proto, TraceReport, TraceStep};
        let inner = self.inner.lock().await;
        let record = inner
            .state
            .networks
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        let live = &inner.live[network];
        let find = |target: &str| {
            record
                .endpoints
                .values()
                .find(|e| is_target(target, &e.name, &e.netns))
                .ok_or_else(|| ControlError::UnknownEndpoint {
                    target: target.to_string(),
                    network: network.to_string(),
                })
        };
        let from = find(&req.from)?;
        let to = req.to.as_deref().map(find).transpose()?;
        let proto = Proto::parse(req.proto.as_deref(), req.dport).map_err(ControlError::Invalid)?;
        let gateway_mac = gateway::gateway_mac(network);
        // The destination address, and which family the sender uses for it.
        let dst_ip = match (req.dst, to) {
            (Some(ip), _) => ip,
            (None, Some(to)) => to
                .addresses
                .first()
                .map(|a| a.addr())
                .ok_or_else(|| ControlError::Invalid(format!("{} has no address", to.name)))?,
            (None, None) if req.dst_mac.is_some() => IpAddr::from([255, 255, 255, 255]),
            (None, None) => {
                return Err(ControlError::Invalid(
                    "say where to: --to ENDPOINT, --dst IP or --dst-mac MAC".into(),
                ))
            }
        };
        let src_ip = from
            .addresses
            .iter()
            .map(|a| a.addr())
            .find(|a| a.is_ipv4() == dst_ip.is_ipv4())
            .ok_or_else(|| {
                ControlError::Invalid(format!("{} has no address of {dst_ip}'s family", from.name))
            })?;
        let owner = record
            .endpoints
            .values()
            .find(|e| e.addresses.iter().any(|a| a.addr() == dst_ip));
        let (dst_mac, resolved) = match (&req.dst_mac, to, owner) {
            (Some(text), _, _) => (
                text.parse::<MacAddr>()
                    .map_err(|e| ControlError::Invalid(e.to_string()))?,
                "as given".to_string(),
            ),
            (None, Some(to), _) => (to.mac, format!("{}'s MAC", to.name)),
            (None, None, Some(owner)) => (
                owner.mac,
                format!("{}'s MAC, owner of {dst_ip}", owner.name),
            ),
            (None, None, None) if record.subnets.iter().any(|s| s.gateway == dst_ip) => {
                (gateway_mac, "the gateway's MAC".to_string())
            }
            (None, None, None) if !record.subnets.iter().any(|s| s.subnet.contains(&dst_ip)) => (
                gateway_mac,
                format!("the gateway's MAC: {dst_ip} is off the network"),
            ),
            (None, None, None) => (
                MacAddr([0xff; 6]),
                format!("broadcast: no endpoint has {dst_ip} (the container would ask by ARP)"),
            ),
        };
        let frame =
            build_frame(from.mac, dst_mac, src_ip, dst_ip, proto).map_err(ControlError::Invalid)?;
        let port = live.endpoints[&from.name].port;
        let trace = self.dataplane.trace(port, &frame).await?;
        let name_of = |port: PortId| -> String {
            if port == live.gateway.port {
                return "gateway".into();
            }
            live.endpoints
                .iter()
                .find(|(_, e)| e.port == port)
                .map(|(n, _)| n.clone())
                .or_else(|| {
                    inner
                        .trunks
                        .iter()
                        .find(|(_, t)| t.port == port)
                        .map(|(n, _)| format!("trunk {n}"))
                })
                .unwrap_or_else(|| port.to_string())
        };
        let step = |stage: &str, detail: String| TraceStep {
            stage: stage.into(),
            detail,
        };
        let mut steps = vec![
            step(
                "ingress",
                format!(
                    "{port} ({}), network {network}, {}",
                    from.name,
                    trace
                        .ingress_vlan
                        .map_or("untagged".into(), |v| format!("VLAN {v}"))
                ),
            ),
            step(
                "frame",
                format!(
                    "{}; destination MAC is {resolved}",
                    describe_frame(from.mac, dst_mac, src_ip, dst_ip, proto)
                ),
            ),
            step(
                "port security",
                if from.port_security {
                    let allowed = if from.dhcp {
                        "its DHCP lease and link-local addresses".to_string()
                    } else {
                        let ips: Vec<String> = from
                            .addresses
                            .iter()
                            .map(|a| a.addr().to_string())
                            .collect();
                        ips.join(", ")
                    };
                    format!("on: this port may send only as {} with {allowed}", from.mac)
                } else {
                    "off for this endpoint".into()
                },
            ),
        ];
        if let Some(learn) = trace.learn {
            steps.push(step(
                "learn",
                match learn {
                    WouldLearn::New => format!("{} would be learned on {port}", from.mac),
                    WouldLearn::Refresh => format!("{} is known on {port}: refreshed", from.mac),
                    WouldLearn::Move { from: old } => {
                        format!(
                            "{} would move from {old} ({}) to {port}",
                            from.mac,
                            name_of(old)
                        )
                    }
                    WouldLearn::Static => format!("{} is pinned by a static entry", from.mac),
                },
            ));
        }
        if trace.network.is_some() {
            steps.push(step(
                "fdb",
                match trace.fdb_hit {
                    Some(hit) => format!("{dst_mac} is on {hit} ({})", name_of(hit)),
                    None if dst_mac.is_multicast() => {
                        format!("{dst_mac} is a group address: flood")
                    }
                    None => format!("{dst_mac} is unknown: flood"),
                },
            ));
        }
        // Policy looks at the frame once its destination is known, as in the switch.
        steps.push(step("policy", describe_policy(&trace, &record.policy)));
        let egress: Vec<String> = trace
            .egress
            .iter()
            .map(|e| match e.vlan {
                Some(v) => format!("{} ({}, VLAN {v})", name_of(e.port), e.port),
                None => format!("{} ({})", name_of(e.port), e.port),
            })
            .collect();
        let verdict = match (&trace.drop, trace.flooded) {
            (Some(reason), _) => {
                steps.push(step("output", format!("dropped: {reason}")));
                "dropped"
            }
            (None, true) => {
                steps.push(step("output", format!("flooded to {}", egress.join(", "))));
                "flooded"
            }
            (None, false) => {
                steps.push(step(
                    "output",
                    format!("forwarded to {}", egress.join(", ")),
                ));
                "forwarded"
            }
        };
        Ok(TraceReport {
            steps,
            verdict: verdict.into(),
            egress,
            drop_reason: trace.drop.map(|r| r.name().to_string()),
            policy_rule: trace.policy.as_ref().map(|why| why.rule.to_string()),
        })
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

    /// Frames captures had to skip (slow readers), all captures so far.
    pub fn capture_skipped(&self) -> u64 {
        self.dataplane.taps().skipped_total()
    }

    /// Adds a port mirror.
    pub async fn add_mirror(&self, mirror: MirrorRecord) -> Result<MirrorRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        crate::model::check_name("mirror", &mirror.name)?;
        if inner.state.mirrors.contains_key(&mirror.name) {
            return Err(ControlError::Invalid(format!(
                "mirror {} already exists",
                mirror.name
            )));
        }
        inner.resolve_mirror(&mirror)?;
        inner
            .state
            .mirrors
            .insert(mirror.name.clone(), mirror.clone());
        if let Err(e) = self.save(&inner) {
            inner.state.mirrors.remove(&mirror.name);
            self.save(&inner)?;
            return Err(e);
        }
        info!(mirror = %mirror.name, from = %mirror.from, to = %mirror.to, "mirror added");
        Ok(mirror)
    }

    /// Removes a port mirror.
    pub async fn remove_mirror(&self, name: &str) -> Result<MirrorRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let mirror = inner
            .state
            .mirrors
            .remove(name)
            .ok_or_else(|| ControlError::Invalid(format!("no mirror {name}")))?;
        self.save(&inner)?;
        info!(mirror = %name, "mirror removed");
        Ok(mirror)
    }

    /// Every port mirror.
    pub async fn mirrors(&self) -> Vec<MirrorRecord> {
        let inner = self.inner.lock().await;
        inner.state.mirrors.values().cloned().collect()
    }

    /// Every network's switching and gateway counters, for metrics.
    pub async fn network_counters(
        &self,
    ) -> Result<Vec<(String, NetworkStats, GatewayStats)>, ControlError> {
        let inner = self.inner.lock().await;
        let mut out = Vec::new();
        for (name, live) in &inner.live {
            let stats = self
                .dataplane
                .network_stats(live.id)
                .await?
                .unwrap_or_default();
            out.push((
                name.clone(),
                stats,
                live.gateway.gateway.counters.snapshot(),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Replaces an endpoint's ingress rate limit at run time (`None`: unlimited).
    pub async fn set_rate_limit(
        &self,
        network: &str,
        target: &str,
        limit: Option<policy::RateLimit>,
    ) -> Result<EndpointRecord, ControlError> {
        let limit = crate::model::check_rate_limit(limit)?;
        let mut inner = self.inner.lock().await;
        let name = inner.state.endpoint_name(network, target)?;
        let endpoint = inner
            .state
            .networks
            .get_mut(network)
            .and_then(|n| n.endpoints.get_mut(&name))
            .expect("endpoint_name found it");
        let old = std::mem::replace(&mut endpoint.rate_limit, limit);
        let updated = endpoint.clone();
        if let Err(e) = self.save(&inner) {
            if let Some(e) = inner
                .state
                .networks
                .get_mut(network)
                .and_then(|n| n.endpoints.get_mut(&updated.name))
            {
                e.rate_limit = old;
            }
            return Err(e);
        }
        if let Some(live) = inner.live[network].endpoints.get(&updated.name) {
            self.dataplane.set_rate_limit(live.port, limit).await??;
        }
        info!(network, endpoint = %updated.name, ?limit, "rate limit changed");
        Ok(updated)
    }

    /// Rule counters of every network that has a policy to enforce, by network name.
    pub async fn policy_counters(
        &self,
    ) -> Result<Vec<(String, Vec<policy::RuleStats>)>, ControlError> {
        let inner = self.inner.lock().await;
        let mut out = Vec::new();
        for (name, live) in &inner.live {
            let stats = self.dataplane.rule_stats(live.id).await?;
            if !stats.is_empty() {
                out.push((name.clone(), stats));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The FDB of a network.
    pub async fn fdb(&self, network: &str) -> Result<Vec<FdbInfo>, ControlError> {
        let inner = self.inner.lock().await;
        let live = inner
            .live
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        let endpoint_of: HashMap<PortId, &str> = live
            .endpoints
            .iter()
            .map(|(n, e)| (e.port, n.as_str()))
            .chain([(live.gateway.port, "(gateway)")])
            .collect();
        let rows = self.dataplane.fdb(live.id).await?;
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
}

/// A port the way a capture or mirror names it.
struct NamedPort {
    port: PortId,
    name: String,
}

impl Inner {
    /// Finds an endpoint's port by name, `NETWORK/NAME`, or namespace.
    fn endpoint_port(&self, target: &str) -> Result<NamedPort, ControlError> {
        let (network, name) = match target.split_once('/') {
            Some((n, e)) if self.live.contains_key(n) => (Some(n), e),
            _ => (None, target),
        };
        let matches: Vec<NamedPort> = self
            .state
            .networks
            .iter()
            .filter(|(n, _)| network.is_none_or(|want| want == n.as_str()))
            .flat_map(|(n, record)| {
                record
                    .endpoints
                    .values()
                    .filter(|e| is_target(name, &e.name, &e.netns))
                    .filter_map(move |e| {
                        let live = self.live.get(n)?.endpoints.get(&e.name)?;
                        Some(NamedPort {
                            port: live.port,
                            name: e.name.clone(),
                        })
                    })
            })
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one")),
            0 => Err(ControlError::Invalid(format!("no endpoint {target}"))),
            _ => Err(ControlError::Invalid(format!(
                "endpoint {target} is on several networks: name it NETWORK/{name}"
            ))),
        }
    }

    /// The ports a mirror copies from and to, as they are now.
    fn resolve_mirror(
        &self,
        mirror: &MirrorRecord,
    ) -> Result<crate::capture::MirrorTap, ControlError> {
        let target = self.endpoint_port(&mirror.to)?;
        let (ports, both_directions) = if self.live.contains_key(&mirror.from) {
            (self.network_ports(&mirror.from)?, false)
        } else {
            (vec![self.endpoint_port(&mirror.from)?], true)
        };
        let ports: Vec<PortId> = ports
            .into_iter()
            .map(|p| p.port)
            .filter(|p| *p != target.port)
            .collect();
        if ports.is_empty() {
            return Err(ControlError::Invalid(format!(
                "mirror {}: {} would mirror onto itself",
                mirror.name, mirror.to
            )));
        }
        Ok(crate::capture::MirrorTap {
            name: mirror.name.clone(),
            scope: crate::capture::TapScope {
                ports,
                both_directions,
            },
            target: target.port,
        })
    }

    /// Every port of a network: its endpoints, its gateway and the trunks carrying it.
    fn network_ports(&self, network: &str) -> Result<Vec<NamedPort>, ControlError> {
        let live = self
            .live
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        let mut ports: Vec<NamedPort> = live
            .endpoints
            .iter()
            .map(|(name, e)| NamedPort {
                port: e.port,
                name: name.clone(),
            })
            .collect();
        ports.push(NamedPort {
            port: live.gateway.port,
            name: "gateway".into(),
        });
        for (name, trunk) in &self.trunks {
            let record = &self.state.trunks[name];
            if record
                .networks
                .iter()
                .chain(&record.native)
                .any(|n| n == network)
            {
                ports.push(NamedPort {
                    port: trunk.port,
                    name: format!("trunk {name}"),
                });
            }
        }
        ports.sort_by_key(|p| p.port);
        Ok(ports)
    }
}

/// What an endpoint may send as: its MAC and addresses, a DHCP client's live lease and SLAAC
/// address; None when port security is off for it.
fn port_security(
    network: &NetworkRecord,
    endpoint: &EndpointRecord,
    now: u64,
) -> Option<policy::PortSecurity> {
    if !endpoint.port_security {
        return None;
    }
    let (ipv4, ipv6) = endpoint_addresses(network, endpoint, now);
    Some(policy::PortSecurity {
        mac: endpoint.mac.0,
        ipv4,
        ipv6,
    })
}

/// Keeps a loop answering the gateways' DHCP lease requests while the control plane lives.
async fn serve_leases(control: Weak<Control>, mut calls: mpsc::Receiver<LeaseCall>) {
    while let Some(call) = calls.recv().await {
        let Some(control) = control.upgrade() else {
            return;
        };
        control.handle_lease(call).await;
    }
}

/// The DNS servers of a network's containers: its gateway addresses.
fn dns_servers(network: &NetworkRecord) -> Vec<IpAddr> {
    network.subnets.iter().map(|s| s.gateway).collect()
}

/// What a network's gateway serves.
fn gateway_config(network: &NetworkRecord) -> GatewayConfig {
    let upstreams = if network.dns.is_empty() {
        resolv::system_upstreams()
    } else {
        network.dns.clone()
    };
    let mac = gateway::gateway_mac(&network.name);
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
    }
}

/// Whether `target`, as a user names an attachment (its name, or its namespace in any of the
/// forms `connect` takes), is the one called `name` in `netns`.
#[allow(clippy::too_many_arguments)]
fn port_info(
    port: PortId,
    kind: &str,
    network: String,
    endpoint: &str,
    netns: &str,
    ifname: &str,
    mac: MacAddr,
    c: PortCounters,
) -> PortInfo {
    PortInfo {
        port: port.0,
        kind: kind.to_string(),
        network,
        endpoint: endpoint.to_string(),
        netns: netns.to_string(),
        ifname: ifname.to_string(),
        mac,
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

/// The default route next hops of a network: the gateway of its first subnet of each family.
fn default_gateways(network: &NetworkRecord) -> Vec<IpAddr> {
    let v4 = network.subnets.iter().find(|s| s.gateway.is_ipv4());
    let v6 = network.subnets.iter().find(|s| s.gateway.is_ipv6());
    v4.into_iter().chain(v6).map(|s| s.gateway).collect()
}

/// The trace step of policy: what decided the frame, or why policy did not look at it.
fn describe_policy(trace: &vswitch_core::switch::Trace, policy: &policy::NetworkPolicy) -> String {
    use policy::Decision;
    let Some(why) = &trace.policy else {
        return if policy.is_open() {
            "no policy: allowed (the default)".into()
        } else if trace.network.is_none() || trace.drop.is_some() {
            "not reached".into()
        } else {
            "not an IP packet: policy does not apply".into()
        };
    };
    if why.infrastructure {
        return "infrastructure (DHCP, neighbour discovery, DNS to the gateway): always allowed"
            .into();
    }
    let action = match why.decision {
        Decision::Allow => "allowed",
        Decision::Deny(_) => "denied",
        Decision::Reject(_) => "rejected",
    };
    let mut text = if why.tracked {
        format!(
            "{action}: part of a tracked flow that rule {} allowed",
            why.rule
        )
    } else if why.rule.as_str() == policy::rules::DEFAULT_RULE {
        format!("{action}: no rule matches, the network default")
    } else {
        format!("{action} by rule {}", why.rule)
    };
    if let Some((staged, action)) = &why.staged {
        let verb = match action {
            policy::RuleAction::Allow => "allow",
            policy::RuleAction::Deny => "deny",
            policy::RuleAction::Reject => "reject",
        };
        text.push_str(&format!("; staged rule {staged} would {verb} it"));
    }
    text
}

/// The addresses an endpoint holds now: static ones, a DHCP client's live lease and SLAAC
/// address, as IPv4 and IPv6.
fn endpoint_addresses(
    network: &NetworkRecord,
    endpoint: &EndpointRecord,
    now: u64,
) -> (Vec<std::net::Ipv4Addr>, Vec<std::net::Ipv6Addr>) {
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    for address in &endpoint.addresses {
        match address.addr() {
            IpAddr::V4(ip) => ipv4.push(ip),
            IpAddr::V6(ip) => ipv6.push(ip),
        }
    }
    if endpoint.dhcp {
        ipv4.extend(
            network
                .leases
                .iter()
                .filter(|l| l.mac == endpoint.mac && l.expires > now)
                .map(|l| l.ip),
        );
        for subnet in &network.subnets {
            if let ipnet::IpNet::V6(net) = subnet.subnet {
                if net.prefix_len() == 64 {
                    ipv6.push(gateway::ndp::eui64_address(net.network(), endpoint.mac));
                }
            }
        }
    }
    (ipv4, ipv6)
}

/// `network`'s policy compiled against its endpoints as they are now (labels, addresses);
/// `None` when it lets everything through, so the data path tracks nothing.
fn policy_engine(
    network: &NetworkRecord,
    now: u64,
) -> Result<Option<policy::Engine>, policy::RuleError> {
    if network.policy.is_open() {
        return Ok(None);
    }
    let endpoints: Vec<policy::Endpoint> = network
        .endpoints
        .values()
        .map(|e| {
            let (v4, v6) = endpoint_addresses(network, e, now);
            let link_local = gateway::ndp::link_local(e.mac);
            policy::Endpoint {
                name: e.name.clone(),
                labels: e.labels.clone(),
                addrs: v4
                    .into_iter()
                    .map(IpAddr::V4)
                    .chain(v6.into_iter().chain([link_local]).map(IpAddr::V6))
                    .collect(),
            }
        })
        .collect();
    let gateway = network.subnets.iter().map(|s| s.gateway).collect();
    let capacity = network
        .max_flows
        .unwrap_or(policy::conntrack::DEFAULT_CAPACITY);
    policy::Engine::new(&network.policy, &endpoints, gateway, capacity).map(Some)
}

/// Storm control of a network as the switch takes it: `None` is off.
fn storm_pps(network: &NetworkRecord) -> Option<u64> {
    match network.storm_pps {
        None => Some(policy::ratelimit::DEFAULT_STORM_PPS),
        Some(0) => None,
        pps => pps,
    }
}
