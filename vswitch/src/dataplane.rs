//! The data path: one thread that owns the `Switch` and every TAP port, waits on all of them with
//! epoll (mio), and carries out the core's actions. A frame is written out in the same wake-up
//! that read it; with no traffic the thread sleeps (the only timer is the FDB sweep, armed only
//! while the table has entries). The control plane talks to it through a command channel and a
//! waker, so the data path takes no lock.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::frame::{egress_parts, vlan_tag, ETH_HEADER_LEN};
use crate::offload::{Offload, Segmenter, VNET_HDR_LEN};
use crate::reason::{DropCounters, DropReason};
use crate::switch::{
    Action, ConfigError, FdbRow, NetworkId, PortConfig, PortId, Switch, SwitchConfig, SwitchStats,
};

/// Frames read from one port before the others get a turn.
const BATCH: usize = 64;
/// How often idle MACs are swept while the table is not empty.
const AGING_SWEEP: Duration = Duration::from_secs(15);
/// Large enough for any frame a TAP can hand us (64 KiB IP packet plus headers).
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
    /// Frames dropped on ingress (by the core) or egress (device refused), by reason.
    pub drops: DropCounters,
}

/// How the data path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPathConfig {
    /// The switching core's tuning.
    pub switch: SwitchConfig,
    /// After a frame, keep polling without sleeping this long: a frame arriving meanwhile is
    /// taken without a wake-up (tens of µs on a virtual machine). Zero sleeps at once.
    pub busy_poll: Duration,
}

impl Default for DataPathConfig {
    fn default() -> Self {
        DataPathConfig {
            switch: SwitchConfig::default(),
            busy_poll: DEFAULT_BUSY_POLL,
        }
    }
}

/// Default busy-poll window: costs 50 µs of CPU per burst of traffic, nothing when idle.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// A request from the control plane.
enum Command {
    AddNetwork(oneshot::Sender<NetworkId>),
    RemoveNetwork(NetworkId, oneshot::Sender<Result<(), ConfigError>>),
    AddPort(
        tap::Tap,
        PortConfig,
        oneshot::Sender<Result<PortId, ConfigError>>,
    ),
    RemovePort(PortId, oneshot::Sender<Result<(), ConfigError>>),
    Counters(oneshot::Sender<(SwitchStats, Vec<(PortId, PortCounters)>)>),
    Fdb(NetworkId, oneshot::Sender<Vec<FdbRow>>),
}

/// The control plane's handle on the data path thread. Dropping it stops the thread, which
/// closes every TAP device.
pub struct DataPlane {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The data path thread is gone (it panicked); nothing can be forwarded any more.
#[derive(Debug, thiserror::Error)]
#[error("the data path thread has stopped")]
pub struct DataPlaneGone;

impl DataPlane {
    /// Starts the data path thread.
    pub fn start(config: DataPathConfig) -> io::Result<DataPlane> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, receiver) = mpsc::channel();
        let mut worker = Worker {
            switch: Switch::new(config.switch),
            ports: Vec::new(),
            poll,
            commands: receiver,
            ready: VecDeque::new(),
            buf: vec![0; FRAME_BUF_LEN],
            segmenter: Segmenter::default(),
            last_traffic: Instant::now(),
            spin: config.busy_poll,
            last_sweep: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("dataplane".into())
            .spawn(move || worker.run())?;
        Ok(DataPlane {
            commands,
            waker,
            thread: Some(thread),
        })
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DataPlaneGone> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| DataPlaneGone)?;
        self.waker.wake().map_err(|_| DataPlaneGone)?;
        answer.await.map_err(|_| DataPlaneGone)
    }

    /// Adds an isolated network.
    pub async fn add_network(&self) -> Result<NetworkId, DataPlaneGone> {
        self.ask(Command::AddNetwork).await
    }

    /// Removes a network without ports.
    pub async fn remove_network(
        &self,
        id: NetworkId,
    ) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        self.ask(|r| Command::RemoveNetwork(id, r)).await
    }

    /// Hands a TAP device to the switch as a new port.
    pub async fn add_port(
        &self,
        tap: tap::Tap,
        config: PortConfig,
    ) -> Result<Result<PortId, ConfigError>, DataPlaneGone> {
        self.ask(|r| Command::AddPort(tap, config, r)).await
    }

    /// Removes a port; its TAP device is closed (and so deleted).
    pub async fn remove_port(&self, id: PortId) -> Result<Result<(), ConfigError>, DataPlaneGone> {
        self.ask(|r| Command::RemovePort(id, r)).await
    }

    /// Switch-wide and per-port counters.
    pub async fn counters(
        &self,
    ) -> Result<(SwitchStats, Vec<(PortId, PortCounters)>), DataPlaneGone> {
        self.ask(Command::Counters).await
    }

    /// Live FDB entries of a network.
    pub async fn fdb(&self, network: NetworkId) -> Result<Vec<FdbRow>, DataPlaneGone> {
        self.ask(|r| Command::Fdb(network, r)).await
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        // Closing the channel and waking the thread makes it exit.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.commands, closed));
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct PortIo {
    tap: tap::Tap,
    /// Largest L3 payload the device takes: larger frames are dropped, never truncated.
    mtu: usize,
    counters: PortCounters,
    /// Frames in both directions carry a virtio_net_hdr.
    vnet_hdr: bool,
}

impl PortIo {
    fn count_tx(&mut self, result: io::Result<usize>) {
        match result {
            Ok(written) => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += written as u64;
            }
            Err(_) => self.counters.drops.count(DropReason::TxError),
        }
    }
}

struct Worker {
    switch: Switch,
    ports: Vec<Option<PortIo>>,
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    /// Ports that may still have frames queued (edge-triggered: drain until WouldBlock).
    ready: VecDeque<PortId>,
    buf: Vec<u8>,
    segmenter: Segmenter,
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
            } else if self.switch.has_fdb_entries() {
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
            let now = Instant::now();
            if now.duration_since(self.last_sweep) >= AGING_SWEEP {
                self.switch.handle_aging(now);
                self.last_sweep = now;
            }
        }
    }

    /// Reads up to `BATCH` frames from `port`, forwarding each as it comes.
    fn drain(&mut self, port: PortId) -> Drain {
        let now = Instant::now();
        for _ in 0..BATCH {
            let Some(Some(io)) = self.ports.get_mut(port.index()) else {
                return Drain::Empty;
            };
            let len = match io.tap.device().recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(port = %port, error = %e, "read failed");
                    return Drain::Empty;
                }
            };
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
            self.last_traffic = now;
            io.counters.rx_packets += 1;
            io.counters.rx_bytes += frame.len() as u64;
            let wire_len = offload.wire_len(frame.len());
            let action = self.switch.process_gso(now, port, frame, wire_len);
            let ingress_tag_len = match action {
                Action::Drop(_) => continue,
                Action::Forward {
                    ingress_tag_len, ..
                }
                | Action::Flood {
                    ingress_tag_len, ..
                } => ingress_tag_len,
            };
            for egress in action.targets() {
                if let Some(Some(out)) = self.ports.get_mut(egress.port.index()) {
                    let tag = egress.vlan.map(vlan_tag);
                    let tag: &[u8] = tag.as_ref().map_or(&[], |t| &t[..]);
                    let parts = egress_parts(frame, ingress_tag_len, tag);
                    let offload = offload.shifted(tag.len() as isize - ingress_tag_len as isize);
                    dispatch_frame(out, parts, offload, &mut self.segmenter);
                }
            }
        }
        Drain::More
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
                Command::AddNetwork(reply) => {
                    let _ = reply.send(self.switch.add_network());
                }
                Command::RemoveNetwork(id, reply) => {
                    let _ = reply.send(self.switch.remove_network(id));
                }
                Command::AddPort(tap, config, reply) => {
                    let _ = reply.send(self.add_port(tap, config));
                }
                Command::RemovePort(id, reply) => {
                    let _ = reply.send(self.remove_port(id));
                }
                Command::Counters(reply) => {
                    let _ = reply.send(self.counters());
                }
                Command::Fdb(network, reply) => {
                    let _ = reply.send(self.switch.fdb_rows(Instant::now(), network));
                }
            }
        }
    }

    fn add_port(&mut self, tap: tap::Tap, config: PortConfig) -> Result<PortId, ConfigError> {
        let mtu = config.mtu as usize;
        let id = self.switch.add_port(config)?;
        let fd = tap.device().as_raw_fd();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE)
        {
            warn!(port = %id, error = %e, "cannot watch TAP device");
            let _ = self.switch.remove_port(id);
            return Err(ConfigError::UnknownPort(id));
        }
        if self.ports.len() <= id.index() {
            self.ports.resize_with(id.index() + 1, || None);
        }
        self.ports[id.index()] = Some(PortIo {
            vnet_hdr: tap.vnet_hdr(),
            mtu,
            tap,
            counters: PortCounters::default(),
        });
        // Frames may already be queued; edge-triggered readiness would not report them.
        self.ready.push_back(id);
        Ok(id)
    }

    fn remove_port(&mut self, id: PortId) -> Result<(), ConfigError> {
        self.switch.remove_port(id)?;
        if let Some(io) = self.ports.get_mut(id.index()).and_then(Option::take) {
            let fd = io.tap.device().as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.ready.retain(|p| *p != id);
        Ok(())
    }

    fn counters(&self) -> (SwitchStats, Vec<(PortId, PortCounters)>) {
        let mut stats = self.switch.stats();
        let ports = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, io)| {
                let io = io.as_ref()?;
                let id = PortId(i as u32);
                let mut counters = io.counters;
                if let Some(ingress) = self.switch.port_drops(id) {
                    counters.drops.merge(&ingress);
                }
                // Egress drops happen here, not in the core: add them to the switch total.
                stats.drops.merge(&io.counters.drops);
                Some((id, counters))
            })
            .collect();
        (stats, ports)
    }
}

/// Writes one frame, given as the parts of its egress form, to `out`: with its offload header
/// if the port takes one, else as wire frames (segmented, checksums filled in) if it must.
fn dispatch_frame(
    out: &mut PortIo,
    parts: [&[u8]; 3],
    offload: Offload,
    segmenter: &mut Segmenter,
) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let l2_len = ETH_HEADER_LEN + parts[1].len();
    if offload.wire_len(len).saturating_sub(l2_len) > out.mtu {
        out.counters.drops.count(DropReason::OverMtu);
        return;
    }
    if out.vnet_hdr {
        let hdr = offload.emit();
        let iov = [
            IoSlice::new(&hdr),
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let result = out.tap.device().send_vectored(&iov);
        out.count_tx(result.map(|n| n.saturating_sub(VNET_HDR_LEN)));
    } else if offload.is_gso() || offload.needs_csum() {
        match segmenter.wire_frames(&parts, offload) {
            Ok(frames) => {
                for frame in frames {
                    let result = out.tap.device().send(frame);
                    out.count_tx(result);
                }
            }
            Err(reason) => out.counters.drops.count(reason),
        }
    } else {
        let iov = [
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let result = out.tap.device().send_vectored(&iov);
        out.count_tx(result);
    }
}
