//! The data path: worker threads (`worker`), one per TAP queue index, each carrying out the
//! core's decisions on its queue of every port (`port`), with copies for captures and mirrors
//! (`fanout`). The kernel spreads a container's flows over the queues of its multi-queue TAP,
//! one flow per queue, so TCP is never reordered. Workers share the one `Switch` (so every
//! worker sees every learned MAC) behind a mutex held only for a decision. `DataPlane` is the
//! control plane's handle: changes to the switch are plain calls under that mutex; only adding,
//! removing and counting ports wait for the workers.

pub mod fanout;
pub mod link;
mod port;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::{Poll, Registry, Waker};
use tokio::sync::oneshot;

use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::switch::{
    ConfigError, FdbRow, NetworkStats, PortConfig, Switch, SwitchConfig, SwitchStats, Trace,
};

use crate::overlay::{Tunnel, Underlay};
use fanout::Fanout;
pub use port::PortCounters;
use port::{PortIo, PortQueue};
use worker::{Command, Worker, WAKER};

/// How the data path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPathConfig {
    /// The switching core's tuning.
    pub switch: SwitchConfig,
    /// After a frame, keep polling without sleeping this long: a frame arriving meanwhile is
    /// taken without a wake-up (tens of µs on a virtual machine). Zero sleeps at once.
    pub busy_poll: Duration,
    /// Worker threads, and so queues per TAP device.
    pub workers: usize,
    /// Where the overlay's VXLAN socket binds, once an overlay network needs it.
    pub underlay: SocketAddr,
}

impl Default for DataPathConfig {
    fn default() -> Self {
        DataPathConfig {
            switch: SwitchConfig::default(),
            busy_poll: DEFAULT_BUSY_POLL,
            workers: default_workers(),
            underlay: DEFAULT_UNDERLAY,
        }
    }
}

/// Default busy-poll window: costs 50 µs of CPU per burst of traffic, nothing when idle.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// The VXLAN socket's default address: every address of the daemon's namespace, VXLAN's port.
pub const DEFAULT_UNDERLAY: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    vswitch_core::vxlan::DEFAULT_PORT,
);

/// One worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Why the data path could not do what the control plane asked.
#[derive(Debug, thiserror::Error)]
pub enum DataPathError {
    /// A worker thread is gone (it panicked); nothing can be forwarded any more.
    #[error("the data path thread has stopped")]
    Gone,
    /// The switch refused the change.
    #[error(transparent)]
    Switch(#[from] ConfigError),
    /// The overlay's VXLAN socket could not be bound.
    #[error("cannot bind the overlay's VXLAN socket to {address} (see the daemon's --underlay): {error}")]
    Underlay {
        address: SocketAddr,
        error: io::Error,
    },
}

struct WorkerHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    /// Its epoll, for sockets of in-process ports it reads (`Link::watch`).
    registry: Arc<Registry>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The control plane's handle on the data path. Dropping it stops the workers, which closes
/// every TAP device.
pub struct DataPlane {
    switch: Arc<Mutex<Switch>>,
    workers: Vec<WorkerHandle>,
    fanout: Arc<Fanout>,
    underlay_addr: SocketAddr,
    /// The overlay's VXLAN socket, bound when the first overlay network starts.
    underlay: tokio::sync::OnceCell<Arc<Underlay>>,
}

/// The switch, whoever holds it: the core never panics mid-decision, so a poisoned lock still
/// holds a consistent switch.
fn lock(switch: &Mutex<Switch>) -> MutexGuard<'_, Switch> {
    switch.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DataPlane {
    /// Starts the worker threads.
    pub fn start(config: DataPathConfig) -> io::Result<DataPlane> {
        let switch = Arc::new(Mutex::new(Switch::new(config.switch)));
        let fanout = Arc::new(Fanout::default());
        let mut workers = Vec::new();
        for index in 0..config.workers.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let registry = Arc::new(poll.registry().try_clone()?);
            let (commands, receiver) = mpsc::channel();
            let mut worker = Worker::new(
                index,
                switch.clone(),
                fanout.clone(),
                poll,
                receiver,
                config.busy_poll,
            );
            let thread = std::thread::Builder::new()
                .name(format!("dataplane{index}"))
                .spawn(move || worker.run())?;
            workers.push(WorkerHandle {
                commands,
                waker,
                registry,
                thread: Some(thread),
            });
        }
        Ok(DataPlane {
            switch,
            workers,
            fanout,
            underlay_addr: config.underlay,
            underlay: tokio::sync::OnceCell::new(),
        })
    }

    /// Captures and mirrors on the data path.
    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    /// What `process` would do with `frame` arriving on `port`, changing nothing.
    pub fn trace(&self, port: PortId, frame: &[u8]) -> Trace {
        lock(&self.switch).trace(Instant::now(), port, frame)
    }

    /// Number of workers: the queues each TAP device should have.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    async fn ask<T>(
        &self,
        worker: &WorkerHandle,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DataPathError> {
        let (reply, answer) = oneshot::channel();
        worker
            .commands
            .send(command(reply))
            .map_err(|_| DataPathError::Gone)?;
        worker.waker.wake().map_err(|_| DataPathError::Gone)?;
        answer.await.map_err(|_| DataPathError::Gone)
    }

    /// Adds an isolated network.
    pub fn add_network(&self) -> NetworkId {
        lock(&self.switch).add_network()
    }

    /// Removes a network without ports.
    pub fn remove_network(&self, id: NetworkId) -> Result<(), ConfigError> {
        lock(&self.switch).remove_network(id)
    }

    /// Hands a TAP device to the switch as a new port: queue i to worker i. A device with fewer
    /// queues than workers shares them: every worker can write to it, its owner reads.
    pub async fn add_port(
        &self,
        tap: tap::Tap,
        config: PortConfig,
    ) -> Result<PortId, DataPathError> {
        let vnet_hdr = tap.vnet_hdr();
        let mtu = config.mtu as usize;
        let queues: Vec<Arc<tap::Queue>> = tap.into_queues().into_iter().map(Arc::new).collect();
        self.add_queues(config, |index, _| PortIo {
            queue: PortQueue::Tap(queues[index % queues.len()].clone()),
            read: index < queues.len(),
            vnet_hdr,
            mtu,
            counters: PortCounters::default(),
            batch: Vec::new(),
        })
        .await
    }

    /// Adds the port of a network's gateway, which lives inside this process: it exchanges
    /// frames behind virtio headers (offloads kept, as a TAP with IFF_VNET_HDR) over `link`,
    /// whose other side is the gateway's. The first worker reads it; every worker may write to
    /// it.
    pub async fn add_gateway_port(
        &self,
        link: Arc<link::Link>,
        config: PortConfig,
    ) -> Result<PortId, DataPathError> {
        let mtu = config.mtu as usize;
        let id = self
            .add_queues(config, |index, id| PortIo {
                queue: PortQueue::Gateway(Box::new(link::LinkEnd {
                    link: link.clone(),
                    watcher: link::Watcher {
                        registry: self.workers[index].registry.clone(),
                        port: id,
                    },
                    answers: Vec::new(),
                })),
                read: index == 0,
                vnet_hdr: true,
                mtu,
                counters: PortCounters::default(),
                batch: Vec::new(),
            })
            .await?;
        link.set_reader(link::Watcher {
            registry: self.workers[0].registry.clone(),
            port: id,
        });
        Ok(id)
    }

    /// Adds the port of one remote host of an overlay network: every worker writes to it; its
    /// frames come in through the underlay (`attach_underlay`).
    pub async fn add_tunnel_port(
        &self,
        tunnel: Arc<Tunnel>,
        config: PortConfig,
    ) -> Result<PortId, DataPathError> {
        let mtu = config.mtu as usize;
        self.add_queues(config, |_, _| PortIo {
            queue: PortQueue::Tunnel(tunnel.clone()),
            read: false,
            vnet_hdr: false,
            mtu,
            counters: PortCounters::default(),
            batch: Vec::new(),
        })
        .await
    }

    /// The overlay's VXLAN socket: bound, and read by the first worker, when the first
    /// overlay network asks for it.
    pub async fn underlay(&self) -> Result<Arc<Underlay>, DataPathError> {
        self.underlay
            .get_or_try_init(|| async {
                let underlay = Underlay::bind(self.underlay_addr).map_err(|error| {
                    DataPathError::Underlay {
                        address: self.underlay_addr,
                        error,
                    }
                })?;
                let underlay = Arc::new(underlay);
                let first = self.workers.first().ok_or(DataPathError::Gone)?;
                let attached = underlay.clone();
                self.ask(first, |r| Command::AttachUnderlay(attached, r))
                    .await?;
                Ok(underlay)
            })
            .await
            .cloned()
    }

    /// Has the first worker read the encrypted overlays' WireGuard socket.
    pub async fn attach_wireguard(
        &self,
        wireguard: Arc<crate::overlay::wireguard::WireGuard>,
    ) -> Result<(), DataPathError> {
        let first = self.workers.first().ok_or(DataPathError::Gone)?;
        self.ask(first, |r| Command::AttachWireGuard(wireguard, r))
            .await
    }

    /// The overlay's VXLAN socket, if one is bound.
    pub fn bound_underlay(&self) -> Option<&Arc<Underlay>> {
        self.underlay.get()
    }

    /// Adds a port to the switch and hands worker `i` its queue `queue_of(i)`.
    async fn add_queues(
        &self,
        config: PortConfig,
        queue_of: impl Fn(usize, PortId) -> PortIo,
    ) -> Result<PortId, DataPathError> {
        let id = lock(&self.switch).add_port(config)?;
        for (index, worker) in self.workers.iter().enumerate() {
            let io = queue_of(index, id);
            self.ask(worker, |r| Command::AttachQueue(id, Box::new(io), r))
                .await?;
        }
        Ok(id)
    }

    /// Removes a port; once every worker has let go of its queue, the TAP device is deleted.
    pub async fn remove_port(&self, id: PortId) -> Result<(), DataPathError> {
        lock(&self.switch).remove_port(id)?;
        for worker in &self.workers {
            self.ask(worker, |r| Command::DetachQueue(id, r)).await?;
        }
        Ok(())
    }

    /// Switch-wide and per-port counters, every worker's share added up.
    pub async fn counters(
        &self,
    ) -> Result<(SwitchStats, Vec<(PortId, PortCounters)>), DataPathError> {
        let mut ports: Vec<(PortId, PortCounters)> = Vec::new();
        for worker in &self.workers {
            for (id, counters) in self.ask(worker, Command::Counters).await? {
                match ports.iter_mut().find(|(p, _)| *p == id) {
                    Some((_, total)) => total.merge(&counters),
                    None => ports.push((id, counters)),
                }
            }
        }
        let switch = lock(&self.switch);
        let mut stats = switch.stats();
        // Datagrams the underlay refused never reached a port: they count switch-wide.
        if let Some(underlay) = self.underlay.get() {
            stats.drops.merge(&underlay.counters().2);
        }
        for (id, counters) in &mut ports {
            // Egress drops happen in the workers, not in the core: add them to the switch total.
            stats.drops.merge(&counters.drops);
            if let Some(ingress) = switch.port_drops(*id) {
                counters.drops.merge(&ingress);
            }
        }
        Ok((stats, ports))
    }

    /// Counters of a network.
    pub fn network_stats(&self, network: NetworkId) -> Option<NetworkStats> {
        lock(&self.switch).network_stats(network)
    }

    /// Replaces what a port may send as.
    pub fn set_port_security(
        &self,
        port: PortId,
        security: Option<policy::PortSecurity>,
    ) -> Result<(), ConfigError> {
        lock(&self.switch).set_port_security(port, security)
    }

    /// Replaces a port's ingress rate limit.
    pub fn set_rate_limit(
        &self,
        port: PortId,
        limit: Option<policy::RateLimit>,
    ) -> Result<(), ConfigError> {
        lock(&self.switch).set_rate_limit(port, limit)
    }

    /// Installs a network's compiled policy (built beforehand, so the lock is held only for
    /// the swap).
    pub fn set_policy(
        &self,
        network: NetworkId,
        engine: Option<policy::Engine>,
    ) -> Result<(), ConfigError> {
        lock(&self.switch).set_policy(network, engine)
    }

    /// Sets a network's storm control (broadcast/multicast packets/s, `None`: off).
    pub fn set_storm_control(
        &self,
        network: NetworkId,
        pps: Option<u64>,
    ) -> Result<(), ConfigError> {
        lock(&self.switch).set_storm_control(network, pps)
    }

    /// A network's rule counters, then the default's (empty without a policy).
    pub fn rule_stats(&self, network: NetworkId) -> Vec<policy::RuleStats> {
        lock(&self.switch)
            .policy(network)
            .map_or_else(Vec::new, policy::Engine::rule_stats)
    }

    /// A network's tracked flows (empty without a policy).
    pub fn flows(&self, network: NetworkId) -> Vec<policy::FlowRow> {
        lock(&self.switch)
            .policy(network)
            .map_or_else(Vec::new, |engine| engine.flows(Instant::now()))
    }

    /// Pins `mac` in `network` to `port` (a station the store says is behind another host).
    pub fn add_static(
        &self,
        network: NetworkId,
        mac: vswitch_core::frame::MacAddr,
        port: PortId,
    ) -> Result<(), ConfigError> {
        lock(&self.switch).add_static(network, mac, port)
    }

    /// Sets the addresses whose ARP requests the switch answers in `network` itself.
    pub fn set_neighbours(
        &self,
        network: NetworkId,
        neighbours: vswitch_core::suppress::Neighbours,
    ) -> Result<(), ConfigError> {
        lock(&self.switch).set_neighbours(network, neighbours)
    }

    /// Unpins `mac` in `network`.
    pub fn remove_static(&self, network: NetworkId, mac: vswitch_core::frame::MacAddr) {
        lock(&self.switch).remove_static(network, mac);
    }

    /// The port `mac` was last seen on in `network`, if known.
    pub fn port_of(&self, network: NetworkId, mac: vswitch_core::frame::MacAddr) -> Option<PortId> {
        lock(&self.switch).port_of(Instant::now(), network, mac)
    }

    /// Live FDB entries of a network.
    pub fn fdb(&self, network: NetworkId) -> Vec<FdbRow> {
        lock(&self.switch).fdb_rows(Instant::now(), network)
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        // Closing a worker's channel and waking it makes it exit.
        for worker in &mut self.workers {
            let (closed, _) = mpsc::channel();
            drop(std::mem::replace(&mut worker.commands, closed));
            let _ = worker.waker.wake();
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
