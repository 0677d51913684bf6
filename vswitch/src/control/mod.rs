//! The control plane: owns the networks and endpoints, checks every request before changing
//! anything, drives the data path, persists the result, and notices containers that went away.
//! Requests are serialized by one async mutex, so each is applied whole or not at all.
//!
//! Its root is one map of networks, each holding its record (what is persisted) and its live
//! parts (switch ids, ports, gateway) together. One module per concern adds its methods to
//! `Control`: `networks`, `overlay` (tunnels to other hosts), `cluster` (overlays shared through a store), `reservations` (their addresses), `endpoints`, `trunks`, `rules` (policy and rate limits), `leases`
//! (DHCP decisions for the gateways), `observe` (ports, FDB, counters), `span` (captures and
//! mirrors), `trace`, and `watch` (namespaces that went away).

mod addresses;
mod cluster;
mod endpoints;
pub mod error;
mod events;
mod leases;
mod networks;
mod observe;
mod overlay;
mod ports;
mod publish;
mod reservations;
mod rules;
mod runtimes;
mod span;
mod trace;
mod trunks;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, Mutex};
use tracing::{info, warn};

use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::reason::DropCounters;

use crate::datapath::{DataPathConfig, DataPlane};
use crate::gateway::directory::Directory;
use crate::gateway::{Gateway, LeaseCall};
use crate::model::store::StateStore;
use crate::model::{MirrorRecord, ModelError, NetworkRecord, State, TrunkRecord};

pub use cluster::ClusterConfig;
pub use error::ControlError;
pub use events::EventSubscription;
pub use networks::NetworkView;
pub use observe::{FdbInfo, PortInfo};
pub use overlay::{HostInfo, WireGuardConfig};
pub(crate) use ports::Creation;
pub use rules::{PolicyChange, PolicyView};
pub use span::CaptureStream;
pub use trace::{TraceReport, TraceStep};
pub use watch::NAMESPACE_CHECK_INTERVAL;

/// A container's or trunk's port: its switch port and the namespace its TAP lives in.
struct LivePort {
    port: PortId,
    ns: tap::Namespace,
    /// A duplicate fd of its TAP device: asks the interface's name now (a runtime may have
    /// renamed it).
    tap_fd: std::os::fd::OwnedFd,
    /// What the TAP keeper holds its device under.
    key: String,
    /// Listeners of its published ports.
    publishers: publish::Publishers,
}

/// A network's gateway: its switch port and the task serving it.
struct LiveGateway {
    port: PortId,
    gateway: Gateway,
}

/// A network: its record and what runs for it.
struct Network {
    record: NetworkRecord,
    id: NetworkId,
    gateway: LiveGateway,
    /// Ports of the other hosts of an overlay network.
    tunnels: Vec<overlay::LiveTunnel>,
    /// Stations the store says are behind another host, pinned to its tunnel port.
    pinned: HashMap<vswitch_core::frame::MacAddr, PortId>,
    /// Ports of the endpoints in `record.endpoints`, by endpoint name.
    ports: HashMap<String, LivePort>,
}

/// A trunk port: its record and its port.
struct Trunk {
    record: TrunkRecord,
    port: LivePort,
}

/// Everything the control plane owns, behind its one lock.
#[derive(Default)]
struct Inner {
    networks: BTreeMap<String, Network>,
    trunks: BTreeMap<String, Trunk>,
    mirrors: BTreeMap<String, MirrorRecord>,
}

impl Inner {
    /// The network called `name`.
    fn network(&self, name: &str) -> Result<&Network, ControlError> {
        self.networks
            .get(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()).into())
    }

    /// The network called `name`, to change.
    fn network_mut(&mut self, name: &str) -> Result<&mut Network, ControlError> {
        self.networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()).into())
    }

    /// The records alone, as persisted and as the model's checks read them: DHCP offers not
    /// taken yet are left out.
    fn state(&self) -> State {
        let record = |n: &Network| {
            let mut record = n.record.clone();
            record.leases.retain(|l| !l.offered);
            record
        };
        State {
            networks: self
                .networks
                .iter()
                .map(|(name, n)| (name.clone(), record(n)))
                .collect(),
            trunks: self
                .trunks
                .iter()
                .map(|(name, t)| (name.clone(), t.record.clone()))
                .collect(),
            mirrors: self.mirrors.clone(),
        }
    }
}

/// The daemon's state and the data path it drives.
pub struct Control {
    inner: Mutex<Inner>,
    dataplane: DataPlane,
    store: StateStore,
    /// What the gateways' DNS servers answer from, rebuilt after every change.
    names: Arc<RwLock<Directory>>,
    /// Where gateways ask for DHCP lease decisions.
    leases: mpsc::Sender<LeaseCall>,
    /// Stop flags of running captures by id.
    captures: std::sync::Mutex<HashMap<u64, Arc<AtomicBool>>>,
    /// Drop counts at the last drop summary.
    drops_logged: std::sync::Mutex<DropCounters>,
    /// Holds a copy of every port's device, so they outlive this daemon (none: they die with
    /// it, as `vswitch up` wants).
    keeper: Option<Arc<tap::keeper::Keeper>>,
    /// The hosts this one shares overlay networks with through a store, once it joined.
    cluster: std::sync::OnceLock<Arc<cluster::Cluster>>,
    /// This host inside WireGuard, if it takes part in encrypted overlays.
    wireguard_config: std::sync::OnceLock<overlay::WireGuardConfig>,
    /// The WireGuard socket, once an encrypted overlay needed it.
    wireguard: tokio::sync::OnceCell<Arc<crate::overlay::wireguard::WireGuard>>,
    /// Where networks created without a subnet get one (the defaults unless configured).
    address_pools: std::sync::OnceLock<Vec<crate::model::pools::AddressPool>>,
    /// What changed, for `vswitch events`.
    events: events::EventBus,
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Control {
    /// Starts the data path and restores saved networks; endpoints whose namespace still exists
    /// are attached again (their devices adopted from `keeper` when it kept them, so the
    /// containers notice nothing), the others are forgotten.
    pub async fn start(
        store: StateStore,
        config: DataPathConfig,
        keeper: Option<tap::keeper::Keeper>,
    ) -> Result<Arc<Control>, ControlError> {
        Control::start_with(store, config, keeper, None).await
    }

    /// `start`, taking part in encrypted overlays as `wireguard` says (before the saved
    /// networks, some maybe encrypted, are restored).
    pub async fn start_with(
        mut store: StateStore,
        config: DataPathConfig,
        keeper: Option<tap::keeper::Keeper>,
        wireguard: Option<WireGuardConfig>,
    ) -> Result<Arc<Control>, ControlError> {
        store.lock()?;
        let saved = store.load()?;
        let kept = match &keeper {
            Some(keeper) => keeper.list().unwrap_or_else(|e| {
                warn!(error = %e, "the TAP keeper's devices cannot be adopted: making them anew");
                Default::default()
            }),
            None => Default::default(),
        };
        let (leases, lease_calls) = mpsc::channel(256);
        let control = Arc::new(Control {
            inner: Mutex::new(Inner::default()),
            dataplane: DataPlane::start(config).map_err(ControlError::DataPathStart)?,
            store,
            names: Arc::default(),
            leases,
            captures: Default::default(),
            drops_logged: Default::default(),
            keeper: keeper.map(Arc::new),
            cluster: std::sync::OnceLock::new(),
            wireguard_config: std::sync::OnceLock::new(),
            wireguard: tokio::sync::OnceCell::new(),
            address_pools: std::sync::OnceLock::new(),
            events: events::EventBus::new(),
        });
        if let Some(wireguard) = wireguard {
            control.enable_wireguard(wireguard);
        }
        tokio::spawn(leases::serve(Arc::downgrade(&control), lease_calls));
        control.restore(saved, kept).await?;
        Ok(control)
    }

    async fn restore(&self, saved: State, mut kept: ports::Kept) -> Result<(), ControlError> {
        let mut inner = self.inner.lock().await;
        for (name, mut record) in saved.networks {
            if record.id.is_empty() {
                // Saved before networks had IDs: Docker's, if Docker made it.
                record.id = match &record.docker_id {
                    Some(id) => id.clone(),
                    None => networks::new_network_id()?,
                };
            }
            let endpoints = std::mem::take(&mut record.endpoints);
            let network = self.start_network(record).await?;
            inner.networks.insert(name.clone(), network);
            for (_, endpoint) in endpoints {
                let kept = kept.remove(&ports::endpoint_key(&name, &endpoint.name));
                let adopted = kept.is_some();
                let creation = match kept {
                    // Out of the daemon's reach: adopted from the keeper, or lost.
                    Some(fds) if endpoint.foreign_namespace => Creation::Given(fds),
                    None if endpoint.foreign_namespace => {
                        warn!(network = %name, endpoint = %endpoint.name, "endpoint not restored: its device was not kept and its namespace is out of reach");
                        continue;
                    }
                    kept => Creation::Adopt(kept),
                };
                match self
                    .attach(&mut inner, &name, endpoint.clone(), creation)
                    .await
                {
                    Ok(_) => {
                        info!(network = %name, endpoint = %endpoint.name, adopted, "endpoint restored")
                    }
                    Err(e) => {
                        warn!(network = %name, endpoint = %endpoint.name, error = %e, "endpoint not restored")
                    }
                }
            }
            if let Err(e) = self.apply_policy(&inner, &name) {
                warn!(network = %name, error = %e, "policy not restored");
            }
        }
        for (name, trunk) in saved.trunks {
            let creation = Creation::Adopt(kept.remove(&ports::trunk_key(&name)));
            match self.attach_trunk(&mut inner, trunk, creation).await {
                Ok(_) => info!(trunk = %name, "trunk restored"),
                Err(e) => warn!(trunk = %name, error = %e, "trunk not restored"),
            }
        }
        // Kept for endpoints the state does not have (a connect the crash cut short): the
        // devices go.
        for key in kept.keys() {
            self.forget(key);
        }
        inner.mirrors = saved.mirrors;
        for netns in crate::gateway::resolv::remove_orphans() {
            info!(netns = %netns, "namespace gone: its resolv.conf removed");
        }
        self.commit(&inner)
    }

    /// Makes a change take effect beyond the switch: persists the state, publishes the names it
    /// holds to the gateways' DNS, points the mirrors at the ports as they are now, and has
    /// the store (if any) told.
    fn commit(&self, inner: &Inner) -> Result<(), ControlError> {
        self.publish_soon();
        self.take_effect(inner)
    }

    /// `commit` without telling the store: for what the store itself just said.
    fn take_effect(&self, inner: &Inner) -> Result<(), ControlError> {
        self.dataplane.fanout().set_mirrors(
            inner
                .mirrors
                .values()
                .filter_map(|m| inner.resolve_mirror(m).ok())
                .collect(),
        );
        let state = inner.state();
        let directory = Directory::from_state(&state, unix_now());
        *self
            .names
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = directory;
        Ok(self.store.save(&state)?)
    }
}
