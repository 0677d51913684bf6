//! The data path: worker threads, one per TAP queue index, each waiting on its queue of every
//! port with epoll (mio) and carrying out the core's decisions. The kernel spreads a container's
//! flows over the queues of its multi-queue TAP, one flow per queue, so TCP is never reordered.
//! A frame is written out in the same wake-up that read it; with no traffic every worker sleeps
//! (after a short busy-poll window following traffic, and for the FDB sweep while the table has
//! entries). Workers share the one `Switch` (so every worker sees every learned MAC) behind a
//! mutex held only for the decision, never across a syscall.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::capture::{Direction, Taps};
use vswitch_core::frame::{egress_parts, vlan_tag, ETH_HEADER_LEN};
use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::offload::{Offload, Segmenter, VNET_HDR_LEN};
use vswitch_core::reason::{DropCounters, DropReason};
use vswitch_core::switch::{
    Action, ConfigError, Egress, FdbRow, NetworkStats, PortConfig, Switch, SwitchConfig,
    SwitchStats,
};

/// Frames read from one queue before the others get a turn.
const BATCH: usize = 64;
/// How often idle MACs are swept while the table is not empty.
const AGING_SWEEP: Duration = Duration::from_secs(15);
/// Large enough for any frame a TAP can hand us (64 KiB IP packet, headers, virtio_net_hdr).
const FRAME_BUF_LEN: usize = 65_536 + 64;
const WAKER: Token = Token(usize::MAX);

/// Traffic counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames read from the device.
    pub rx_packets: u64,
    /// Bytes read from the device.
    pub rx_bytes: u64,
    /// Frames written to the device.
    pub tx_packets: u64,
    /// Bytes written to the device.
    pub tx_bytes: u64,
    /// Frames dropped on ingress (by the core) or egress (device refused, too large), by reason.
    pub drops: DropCounters,
}

impl PortCounters {
    fn merge(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.drops.merge(&other.drops);
    }
}

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
}

impl Default for DataPathConfig {
    fn default() -> Self {
        DataPathConfig {
            switch: SwitchConfig::default(),
            busy_poll: DEFAULT_BUSY_POLL,
            workers: default_workers(),
        }
    }
}

/// Default busy-poll window: costs 50 µs of CPU per burst of traffic, nothing when idle.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// One worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A request from the control plane to one worker.
enum Command {
    /// Take this queue of a port; read from it only if `read`.
    AttachQueue(PortId, PortIo, oneshot::Sender<()>),
    /// Close this worker's queue of a port.
    DetachQueue(PortId, oneshot::Sender<()>),
    /// This worker's share of the port counters.
    Counters(oneshot::Sender<Vec<(PortId, PortCounters)>>),
}

struct WorkerHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The control plane's handle on the data path. Dropping it stops the workers, which closes
/// every TAP device.
pub struct DataPlane {
    switch: Arc<Mutex<Switch>>,
    workers: Vec<WorkerHandle>,
    taps: Arc<Taps>,
}

/// A worker thread is gone (it panicked); nothing can be forwarded any more.
#[derive(Debug, thiserror::Error)]
#[error("the data path thread has stopped")]
pub struct DataPlaneGone;

fn lock(switch: &Mutex<Switch>) -> MutexGuard<'_, Switch> {
    // The core never panics mid-decision; a poisoned lock still holds a consistent switch.
    switch.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DataPlane {
    /// Starts the worker threads.
    pub fn start(config: DataPathConfig) -> io::Result<DataPlane> {
        let switch = Arc::new(Mutex::new(Switch::new(config.switch)));
        let taps = Arc::new(Taps::default());
        let mut workers = Vec::new();
        for index in 0..config.workers.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (commands, receiver) = mpsc::channel();
            let mut worker = Worker {
                sweeps: index == 0,
                switch: switch.clone(),
                taps: taps.clone(),
                mirror_targets: Vec::new(),
                ports: Vec::new(),
                poll,
                commands: receiver,
                ready: VecDeque::new(),
                buf: vec![0; FRAME_BUF_LEN],
                targets: Vec::new(),
                segmenter: Segmenter::default(),
                reply: Vec::new(),
                last_sweep: Instant::now(),
                last_traffic: Instant::now(),
                spin: config.busy_poll,
            };
            let thread = std::thread::Builder::new()
                .name(format!("dataplane{index}"))
                .spawn(move || worker.run())?;
            workers.push(WorkerHandle {
                commands,
                waker,
                thread: Some(thread),
            });
        }
        Ok(DataPlane {
            switch,
            workers,
            taps,
        })
    }

    /// Captures and mirrors on the data path.
    pub fn taps(&self) -> &Arc<Taps> {
        &self.taps
    }

    /// What `process` would do with `frame` arriving on `port`, changing nothing.
    pub async fn trace(
        &self,
        port: PortId,
        frame: &[u8],
    ) -> Result<vswitch_core::switch::Trace, DataPlaneGone> {
        Ok(lock(&self.switch).trace(Instant::now(), port, frame))
    }

    /// Number of workers: the queues each TAP device should have.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    async fn ask<T>(
        &self,
        worker: &WorkerHandle,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DataPlaneGone> {
        let (reply, answer) = oneshot::channel();
        worker
            .commands
            .send(command(reply))
            .map_err(|_| DataPlaneGone)?;
        worker.waker.wake().map_err(|_| DataPlaneGone)?;
        answer.await.map_err(|_| DataPlaneGone)
    }

    /// Adds an isolated network.
    pub async fn add_network(&self) -> Result<NetworkId, DataPlaneGone> {
        Ok(lock(&self.switch).add_network())
    }

    /// Removes a network without ports.
    pub async fn remove_network(
        &self,
        id: NetworkId,
    ) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        Ok(lock(&self.switch).remove_network(id))
    }

    /// Hands a TAP device to the switch as a new port: queue i to worker i. A device with fewer
    /// queues than workers shares them: every worker can write to it, its owner reads.
    pub async fn add_port(
        &self,
        tap: tap::Tap,
        config: PortConfig,
    ) -> Result<Result<PortId, ConfigError>, DataPlaneGone> {
        let vnet_hdr = tap.vnet_hdr();
        let mtu = config.mtu as usize;
        let queues: Vec<Arc<tun_rs::SyncDevice>> =
            tap.into_queues().into_iter().map(Arc::new).collect();
        let id = match lock(&self.switch).add_port(config) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        for (index, worker) in self.workers.iter().enumerate() {
            let io = PortIo {
                queue: PortQueue::Tap(queues[index % queues.len()].clone()),
                read: index < queues.len(),
                vnet_hdr,
                mtu,
                counters: PortCounters::default(),
            };
            self.ask(worker, |r| Command::AttachQueue(id, io, r))
                .await?;
        }
        Ok(Ok(id))
    }

    /// Adds a port inside this process (a gateway): it exchanges frames, one per datagram and
    /// without offload headers, over `socket` (non-blocking; its peer is the port's own end).
    /// The first worker reads it; every worker may write to it.
    pub async fn add_local_port(
        &self,
        socket: UnixDatagram,
        config: PortConfig,
    ) -> Result<Result<PortId, ConfigError>, DataPlaneGone> {
        let mtu = config.mtu as usize;
        let socket = Arc::new(socket);
        let id = match lock(&self.switch).add_port(config) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        for (index, worker) in self.workers.iter().enumerate() {
            let io = PortIo {
                queue: PortQueue::Local(socket.clone()),
                read: index == 0,
                vnet_hdr: false,
                mtu,
                counters: PortCounters::default(),
            };
            self.ask(worker, |r| Command::AttachQueue(id, io, r))
                .await?;
        }
        Ok(Ok(id))
    }

    /// Removes a port; once every worker has let go of its queue, the TAP device is deleted.
    pub async fn remove_port(&self, id: PortId) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        if let Err(e) = lock(&self.switch).remove_port(id) {
            return Ok(Err(e));
        }
        for worker in &self.workers {
            self.ask(worker, |r| Command::DetachQueue(id, r)).await?;
        }
        Ok(Ok(()))
    }

    /// Switch-wide and per-port counters, every worker's share added up.
    pub async fn counters(
        &self,
    ) -> Result<(SwitchStats, Vec<(PortId, PortCounters)>), DataPlaneGone> {
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
    pub async fn network_stats(
        &self,
        network: NetworkId,
    ) -> Result<Option<NetworkStats>, DataPlaneGone> {
        Ok(lock(&self.switch).network_stats(network))
    }

    /// Replaces what a port may send as.
    pub async fn set_port_security(
        &self,
        port: PortId,
        security: Option<policy::PortSecurity>,
    ) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        Ok(lock(&self.switch).set_port_security(port, security))
    }

    /// Replaces a port's ingress rate limit.
    pub async fn set_rate_limit(
        &self,
        port: PortId,
        limit: Option<policy::RateLimit>,
    ) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        Ok(lock(&self.switch).set_rate_limit(port, limit))
    }

    /// Installs a network's compiled policy (built beforehand, so the lock is held only for
    /// the swap).
    pub async fn set_policy(
        &self,
        network: NetworkId,
        engine: Option<policy::Engine>,
    ) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        Ok(lock(&self.switch).set_policy(network, engine))
    }

    /// Sets a network's storm control (broadcast/multicast packets/s, `None`: off).
    pub async fn set_storm_control(
        &self,
        network: NetworkId,
        pps: Option<u64>,
    ) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        Ok(lock(&self.switch).set_storm_control(network, pps))
    }

    /// A network's rule counters, then the default's (empty without a policy).
    pub async fn rule_stats(
        &self,
        network: NetworkId,
    ) -> Result<Vec<policy::RuleStats>, DataPlaneGone> {
        Ok(lock(&self.switch)
            .policy(network)
            .map_or_else(Vec::new, policy::Engine::rule_stats))
    }

    /// A network's tracked flows (empty without a policy).
    pub async fn flows(&self, network: NetworkId) -> Result<Vec<policy::FlowRow>, DataPlaneGone> {
        let switch = lock(&self.switch);
        Ok(switch
            .policy(network)
            .map_or_else(Vec::new, |engine| engine.flows(Instant::now())))
    }

    /// Live FDB entries of a network.
    pub async fn fdb(&self, network: NetworkId) -> Result<Vec<FdbRow>, DataPlaneGone> {
        Ok(lock(&self.switch).fdb_rows(Instant::now(), network))
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

/// Where a port's frames come from and go to.
#[derive(Clone)]
enum PortQueue {
    /// One queue of a TAP device in a container's namespace.
    Tap(Arc<tun_rs::SyncDevice>),
    /// A datagram socket whose other end is a port inside this process (a network's gateway):
    /// one datagram per frame, never a virtio_net_hdr.
    Local(Arc<UnixDatagram>),
}

impl PortQueue {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PortQueue::Tap(device) => device.recv(buf),
            PortQueue::Local(socket) => socket.recv(buf),
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        match self {
            PortQueue::Tap(device) => device.send(frame),
            PortQueue::Local(socket) => socket.send(frame),
        }
    }

    fn send_vectored(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            PortQueue::Tap(device) => device.send_vectored(iov),
            // One sendmsg is one datagram: the frame stays whole.
            PortQueue::Local(socket) => nix::sys::socket::sendmsg::<()>(
                socket.as_raw_fd(),
                iov,
                &[],
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from),
        }
    }

    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            PortQueue::Tap(device) => device.as_raw_fd(),
            PortQueue::Local(socket) => socket.as_raw_fd(),
        }
    }
}

/// One worker's view of one port: its queue and its share of the counters.
struct PortIo {
    queue: PortQueue,
    /// This worker reads from the queue (else it only writes to it).
    read: bool,
    /// Frames in both directions carry a virtio_net_hdr.
    vnet_hdr: bool,
    /// Largest L3 payload the device takes: larger frames are dropped, never truncated.
    mtu: usize,
    counters: PortCounters,
}

impl PortIo {
    /// Counts a write; returns the drop if it failed.
    fn count_tx(&mut self, result: io::Result<usize>) -> Option<DropReason> {
        match result {
            Ok(written) => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += written as u64;
                None
            }
            Err(_) => {
                self.counters.drops.count(&DropReason::TxError);
                Some(DropReason::TxError)
            }
        }
    }
}

struct Worker {
    /// This worker runs the FDB sweep.
    sweeps: bool,
    switch: Arc<Mutex<Switch>>,
    taps: Arc<Taps>,
    /// Mirror targets of the frame at hand.
    mirror_targets: Vec<PortId>,
    ports: Vec<Option<PortIo>>,
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    /// Ports whose queue may still hold frames (edge-triggered: drain until WouldBlock).
    ready: VecDeque<PortId>,
    buf: Vec<u8>,
    /// Output ports of the frame at hand, copied out so the lock is not held while writing.
    targets: Vec<Egress>,
    segmenter: Segmenter,
    /// Copy of the answer to a rejected frame, sent after the switch lock is released.
    reply: Vec<u8>,
    last_sweep: Instant,
    /// When a frame was last read: polling continues without sleeping for `spin` after it.
    last_traffic: Instant,
    spin: Duration,
}

enum Drain {
    Empty,
    More,
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let spinning = self.last_traffic.elapsed() < self.spin;
            let timeout = if !self.ready.is_empty() || spinning {
                Some(Duration::ZERO)
            } else if self.sweeps && lock(&self.switch).has_fdb_entries() {
                Some(AGING_SWEEP)
            } else {
                None
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "data path poll failed");
                }
                continue;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    if !self.handle_commands() {
                        return;
                    }
                } else {
                    self.ready.push_back(PortId(event.token().0 as u32));
                }
            }
            for _ in 0..self.ready.len() {
                let Some(port) = self.ready.pop_front() else {
                    break;
                };
                if let Drain::More = self.drain(port) {
                    self.ready.push_back(port);
                }
            }
            if self.sweeps {
                let now = Instant::now();
                if now.duration_since(self.last_sweep) >= AGING_SWEEP {
                    lock(&self.switch).handle_aging(now);
                    self.last_sweep = now;
                }
            }
        }
    }

    /// Reads up to `BATCH` frames from this worker's queue of `port`, forwarding each.
    fn drain(&mut self, port: PortId) -> Drain {
        let now = Instant::now();
        for _ in 0..BATCH {
            let Some(Some(io)) = self.ports.get_mut(port.index()) else {
                return Drain::Empty;
            };
            let len = match io.queue.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(port = %port, error = %e, "read failed");
                    return Drain::Empty;
                }
            };
            self.last_traffic = now;
            let (offload, frame) = if io.vnet_hdr {
                if len < VNET_HDR_LEN {
                    continue;
                }
                (
                    Offload::parse(&self.buf[..VNET_HDR_LEN]),
                    &self.buf[VNET_HDR_LEN..len],
                )
            } else {
                (Offload::default(), &self.buf[..len])
            };
            io.counters.rx_packets += 1;
            io.counters.rx_bytes += frame.len() as u64;
            let wire_len = offload.wire_len(frame.len());
            // One relaxed load when nothing is captured or mirrored.
            let tapped = self.taps.is_active();
            let ingress_tag_len = {
                let mut switch = lock(&self.switch);
                let action = switch.process_gso(now, port, frame, wire_len);
                let ingress_tag_len = match action {
                    Action::Drop(reason) => {
                        drop(switch);
                        if tapped {
                            self.taps.offer(port, Direction::In, &[frame], Some(reason));
                        }
                        continue;
                    }
                    Action::Reject { reason, reply } => {
                        self.reply.clear();
                        self.reply.extend_from_slice(reply);
                        drop(switch);
                        if tapped {
                            self.taps.offer(port, Direction::In, &[frame], Some(reason));
                        }
                        self.dispatch_reply(port, tapped);
                        continue;
                    }
                    Action::Forward {
                        ingress_tag_len, ..
                    }
                    | Action::Flood {
                        ingress_tag_len, ..
                    } => ingress_tag_len,
                };
                self.targets.clear();
                self.targets.extend(action.targets());
                ingress_tag_len
            };
            self.mirror_targets.clear();
            if tapped {
                self.taps.offer(port, Direction::In, &[frame], None);
                self.taps
                    .mirror_targets(port, Direction::In, &mut self.mirror_targets);
            }
            for egress in &self.targets {
                if let Some(Some(out)) = self.ports.get_mut(egress.port.index()) {
                    let tag = egress.vlan.map(vlan_tag);
                    let tag: &[u8] = tag.as_ref().map_or(&[], |t| &t[..]);
                    let parts = egress_parts(frame, ingress_tag_len, tag);
                    let offload = offload.shifted(tag.len() as isize - ingress_tag_len as isize);
                    let dropped = dispatch_frame(out, parts, offload, &mut self.segmenter);
                    if tapped {
                        self.taps
                            .offer(egress.port, Direction::Out, &parts, dropped);
                        self.taps.mirror_targets(
                            egress.port,
                            Direction::Out,
                            &mut self.mirror_targets,
                        );
                    }
                }
            }
            // Mirrored copies leave untagged, once per target.
            self.mirror_targets.sort_unstable();
            self.mirror_targets.dedup();
            for target in &self.mirror_targets {
                if let Some(Some(out)) = self.ports.get_mut(target.index()) {
                    let parts = egress_parts(frame, ingress_tag_len, &[]);
                    let offload = offload.shifted(-(ingress_tag_len as isize));
                    dispatch_frame(out, parts, offload, &mut self.segmenter);
                }
            }
        }
        Drain::More
    }

    /// Sends the answer of a rejected frame back out of its ingress port.
    fn dispatch_reply(&mut self, port: PortId, tapped: bool) {
        let Some(Some(out)) = self.ports.get_mut(port.index()) else {
            return;
        };
        let parts = [&self.reply[..], &[][..], &[][..]];
        let dropped = dispatch_frame(out, parts, Offload::default(), &mut self.segmenter);
        if tapped {
            self.taps.offer(port, Direction::Out, &parts, dropped);
        }
    }

    /// Applies queued commands; returns false once the control plane is gone.
    fn handle_commands(&mut self) -> bool {
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            };
            // A control plane that stopped waiting for an answer is not an error here.
            match command {
                Command::AttachQueue(id, io, reply) => {
                    self.attach(id, io);
                    let _ = reply.send(());
                }
                Command::DetachQueue(id, reply) => {
                    self.detach(id);
                    let _ = reply.send(());
                }
                Command::Counters(reply) => {
                    let counters = self
                        .ports
                        .iter()
                        .enumerate()
                        .filter_map(|(i, io)| Some((PortId(i as u32), io.as_ref()?.counters)))
                        .collect();
                    let _ = reply.send(counters);
                }
            }
        }
    }

    fn attach(&mut self, id: PortId, io: PortIo) {
        if io.read {
            let fd = io.queue.as_raw_fd();
            let token = Token(id.index());
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, Interest::READABLE)
            {
                warn!(port = %id, error = %e, "cannot watch port queue");
            }
            // Frames may already be queued; edge-triggered readiness would not report them.
            self.ready.push_back(id);
        }
        if self.ports.len() <= id.index() {
            self.ports.resize_with(id.index() + 1, || None);
        }
        self.ports[id.index()] = Some(io);
    }

    fn detach(&mut self, id: PortId) {
        if let Some(io) = self.ports.get_mut(id.index()).and_then(Option::take) {
            if io.read {
                let fd = io.queue.as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
        self.ready.retain(|p| *p != id);
    }
}

/// Writes one frame, given as the parts of its egress form, to `out`: with its offload header
/// if the port takes one, else as wire frames (segmented, checksums filled in) if it must.
/// A frame larger than the port's MTU is dropped and counted. Returns the drop, if any.
fn dispatch_frame(
    out: &mut PortIo,
    parts: [&[u8]; 3],
    offload: Offload,
    segmenter: &mut Segmenter,
) -> Option<DropReason> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let l2_len = ETH_HEADER_LEN + parts[1].len();
    if offload.wire_len(len).saturating_sub(l2_len) > out.mtu {
        out.counters.drops.count(&DropReason::OverMtu);
        return Some(DropReason::OverMtu);
    }
    if out.vnet_hdr {
        let hdr = offload.emit();
        let iov = [
            IoSlice::new(&hdr),
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let result = out.queue.send_vectored(&iov);
        out.count_tx(result.map(|n| n.saturating_sub(VNET_HDR_LEN)))
    } else if offload.is_gso() || offload.needs_csum() {
        match segmenter.wire_frames(&parts, offload) {
            Ok(frames) => {
                let mut dropped = None;
                for frame in frames {
                    let result = out.queue.send(frame);
                    dropped = dropped.or(out.count_tx(result));
                }
                dropped
            }
            Err(reason) => {
                out.counters.drops.count(&reason);
                Some(reason)
            }
        }
    } else {
        let iov = [
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let result = out.queue.send_vectored(&iov);
        out.count_tx(result)
    }
}
