//! A data path worker: one thread waiting on its queue of every port with epoll (mio), reading
//! frames in batches and carrying out the core's decisions in the same wake-up. With no traffic
//! it sleeps (after a short busy-poll window following traffic, and for the FDB sweep while
//! the table has entries). The switch lock is held only for the decision, never across a
//! syscall.

use std::collections::VecDeque;
use std::io;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use vswitch_core::coalesce::Coalescer;
use vswitch_core::frame::{egress_parts, vlan_tag};
use vswitch_core::ids::PortId;
use vswitch_core::offload::{Offload, Segmenter, VNET_HDR_LEN};
use vswitch_core::reason::DropReason;
use vswitch_core::switch::{Action, Egress, Switch};

use super::fanout::Fanout;
use super::link::{outside_token, Link};
use super::lock;
use super::port::{dispatch_frame, PortCounters, PortIo, PortQueue};
use crate::capture::Direction;
use crate::overlay::wireguard::WireGuard;
use crate::overlay::Underlay;

/// Frames read from one queue before the others get a turn.
const BATCH: usize = 64;
/// How often idle MACs are swept while the table is not empty.
const AGING_SWEEP: Duration = Duration::from_secs(15);
/// Large enough for any frame a TAP can hand us (64 KiB IP packet, headers, virtio_net_hdr).
const FRAME_BUF_LEN: usize = 65_536 + 64;
/// The token of the waker the control plane uses to hand a worker commands.
pub(super) const WAKER: Token = Token(usize::MAX);
/// The token of the overlay's VXLAN socket.
const UNDERLAY: Token = Token(usize::MAX - 1);
/// Stands for the underlay in the queue of ready ports (no switch port has this id).
const UNDERLAY_PORT: PortId = PortId(u32::MAX);
/// The token of the encrypted overlays' WireGuard socket, and its stand-in port.
const WIREGUARD: Token = Token(usize::MAX - 2);
const WIREGUARD_PORT: PortId = PortId(u32::MAX - 1);

/// A request from the control plane to one worker.
pub(super) enum Command {
    /// Take this queue of a port; read from it only if `read`.
    AttachQueue(PortId, Box<PortIo>, oneshot::Sender<()>),
    /// Close this worker's queue of a port.
    DetachQueue(PortId, oneshot::Sender<()>),
    /// This worker's share of the port counters.
    Counters(oneshot::Sender<Vec<(PortId, PortCounters)>>),
    /// Read the overlay's VXLAN socket.
    AttachUnderlay(Arc<Underlay>, oneshot::Sender<()>),
    /// Read the encrypted overlays' WireGuard socket.
    AttachWireGuard(Arc<WireGuard>, oneshot::Sender<()>),
}

/// One data path thread: its queues of every port, and the buffers it reuses for every frame.
pub(super) struct Worker {
    /// This worker runs the FDB sweep.
    sweeps: bool,
    switch: Arc<Mutex<Switch>>,
    fanout: Arc<Fanout>,
    /// Mirror targets of the frame at hand.
    mirror_targets: Vec<PortId>,
    ports: Vec<Option<PortIo>>,
    /// The overlay's VXLAN socket, if this worker reads it.
    underlay: Option<Arc<Underlay>>,
    /// The encrypted overlays' WireGuard socket, if this worker reads it.
    wireguard: Option<Arc<WireGuard>>,
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    /// Ports whose queue may still hold frames (edge-triggered: drain until WouldBlock).
    ready: VecDeque<PortId>,
    buf: Vec<u8>,
    /// Joins segments that arrive one by one from the underlay into large frames.
    coalescer: Coalescer,
    /// Output ports of the frame at hand, copied out so the lock is not held while writing.
    targets: Vec<Egress>,
    /// In-process ports that answered the frame at hand on this thread.
    answered: Vec<PortId>,
    segmenter: Segmenter,
    /// Copy of the answer to a rejected frame, sent after the switch lock is released.
    reply: Vec<u8>,
    last_sweep: Instant,
    /// When a frame was last read: polling continues without sleeping for `spin` after it.
    last_traffic: Instant,
    spin: Duration,
}

/// Whether a queue may hold more frames after a batch.
enum Drain {
    Empty,
    More,
}

/// What one read from a queue gave.
enum Received {
    /// A frame at `buf[start..end]`, after its offload header (if the port has them).
    Frame {
        offload: Offload,
        start: usize,
        end: usize,
    },
    /// Nothing to forward this time (interrupted, or a counted runt); read again.
    Skipped,
    /// The queue is empty (or gone).
    Nothing,
}

/// The core's decision, with what it needs copied out of the switch lock.
enum Decided {
    /// Send to `Worker::targets`.
    Forward { ingress_tag_len: usize },
    /// Dropped (counted by the core).
    Dropped(DropReason),
    /// Dropped, and `Worker::reply` goes back out of the ingress port.
    Rejected(DropReason),
    /// Answered by the switch: `Worker::reply` goes back out of the ingress port.
    Answered,
}

impl Worker {
    /// A worker taking `commands`; the first one (`index` 0) also sweeps the FDB.
    pub(super) fn new(
        index: usize,
        switch: Arc<Mutex<Switch>>,
        fanout: Arc<Fanout>,
        poll: Poll,
        commands: mpsc::Receiver<Command>,
        busy_poll: Duration,
    ) -> Worker {
        Worker {
            sweeps: index == 0,
            switch,
            fanout,
            mirror_targets: Vec::new(),
            ports: Vec::new(),
            underlay: None,
            wireguard: None,
            poll,
            commands,
            ready: VecDeque::new(),
            buf: vec![0; FRAME_BUF_LEN],
            coalescer: Coalescer::default(),
            targets: Vec::new(),
            answered: Vec::new(),
            segmenter: Segmenter::default(),
            reply: Vec::new(),
            last_sweep: Instant::now(),
            last_traffic: Instant::now(),
            spin: busy_poll,
        }
    }

    /// Runs until the control plane goes away.
    pub(super) fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let spinning = self.last_traffic.elapsed() < self.spin;
            if spinning && self.ready.is_empty() {
                // A process this worker just woke (a container reading what was written to
                // its TAP) is often queued on this very CPU: spinning must not keep it waiting
                // for the whole window, so each turn with no port left to drain offers the CPU
                // first.
                std::thread::yield_now();
            }
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
                } else if event.token() == UNDERLAY {
                    self.ready.push_back(UNDERLAY_PORT);
                } else if event.token() == WIREGUARD {
                    self.ready.push_back(WIREGUARD_PORT);
                } else if let Some((port, id)) = outside_token(event.token()) {
                    // A socket an in-process port had this worker watch.
                    if let Some(Some(PortIo {
                        queue: PortQueue::Gateway(end),
                        read,
                        ..
                    })) = self.ports.get_mut(port.index())
                    {
                        end.outside_ready(id);
                        // What it queued (this worker reads the queue) goes out now too.
                        if *read && end.link.has_queued() {
                            self.ready.push_back(port);
                        }
                        let now = Instant::now();
                        self.last_traffic = now;
                        self.forward_answers(now, port);
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
        if port == UNDERLAY_PORT {
            return self.drain_underlay();
        }
        if port == WIREGUARD_PORT {
            return self.drain_wireguard();
        }
        if let Some(Some(PortIo {
            queue: PortQueue::Gateway(end),
            ..
        })) = self.ports.get(port.index())
        {
            let link = end.link.clone();
            return self.drain_link(port, &link);
        }
        let now = Instant::now();
        // The buffer is lent out for the batch so the frame can be read while ports are written.
        let mut buf = std::mem::take(&mut self.buf);
        let mut drained = Drain::More;
        for _ in 0..BATCH {
            match self.receive(port, &mut buf) {
                Received::Frame {
                    offload,
                    start,
                    end,
                } => {
                    self.last_traffic = now;
                    self.forward(now, port, offload, &buf[start..end]);
                }
                Received::Skipped => continue,
                Received::Nothing => {
                    drained = Drain::Empty;
                    break;
                }
            }
        }
        self.buf = buf;
        drained
    }

    /// Forwards up to `BATCH` frames an in-process port queued, each from its own buffer.
    fn drain_link(&mut self, port: PortId, link: &Link) -> Drain {
        let now = Instant::now();
        for _ in 0..BATCH {
            let Some(frame) = link.recv() else {
                return Drain::Empty;
            };
            self.last_traffic = now;
            self.forward_from_link(now, port, &frame);
        }
        Drain::More
    }

    /// Counts and forwards one frame (virtio header first) of an in-process port.
    fn forward_from_link(&mut self, now: Instant, port: PortId, frame: &[u8]) {
        let Some(Some(io)) = self.ports.get_mut(port.index()) else {
            return;
        };
        if frame.len() < VNET_HDR_LEN {
            io.counters.drops.count(&DropReason::Runt);
            return;
        }
        io.counters.rx_packets += 1;
        io.counters.rx_bytes += (frame.len() - VNET_HDR_LEN) as u64;
        let offload = Offload::parse(&frame[..VNET_HDR_LEN]);
        self.forward(now, port, offload, &frame[VNET_HDR_LEN..]);
    }

    /// Reads up to `BATCH` VXLAN datagrams, forwarding each inner frame as if it came in on
    /// the tunnel port of its sender and VNI; the others are counted by the underlay.
    fn drain_underlay(&mut self) -> Drain {
        let Some(underlay) = self.underlay.clone() else {
            return Drain::Empty;
        };
        let now = Instant::now();
        let mut buf = std::mem::take(&mut self.buf);
        let mut run = std::mem::take(&mut self.coalescer);
        // The tunnel port the run under way came in on.
        let mut run_port = None;
        let mut drained = Drain::More;
        for _ in 0..BATCH {
            let (len, from, segment) = match underlay.recv(&mut buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        debug!(error = %e, "underlay read failed");
                    }
                    drained = Drain::Empty;
                    break;
                }
            };
            self.last_traffic = now;
            // One datagram, or a burst of them of `segment` bytes each (UDP GRO).
            for at in (0..len).step_by(segment.max(1)) {
                let datagram = &buf[at..(at + segment).min(len)];
                let Ok((port, start)) = underlay.route(from, datagram) else {
                    continue;
                };
                if let Some(Some(io)) = self.ports.get_mut(port.index()) {
                    io.counters.rx_packets += 1;
                    io.counters.rx_bytes += (datagram.len() - start) as u64;
                }
                let frame = &datagram[start..];
                if run_port == Some(port) && run.push(frame) {
                    continue;
                }
                if let Some(ingress) = run_port.take() {
                    self.forward_run(now, ingress, &mut run);
                }
                if run.push(frame) {
                    run_port = Some(port);
                } else {
                    self.forward(now, port, Offload::default(), frame);
                }
            }
        }
        if let Some(ingress) = run_port {
            self.forward_run(now, ingress, &mut run);
        }
        self.buf = buf;
        self.coalescer = run;
        drained
    }

    /// Reads up to `BATCH` WireGuard datagrams, forwarding each frame one opens as if it came
    /// in on the tunnel port of its sender and VNI; what does not open is counted.
    fn drain_wireguard(&mut self) -> Drain {
        let (Some(wireguard), Some(underlay)) = (self.wireguard.clone(), self.underlay.clone())
        else {
            return Drain::Empty;
        };
        let now = Instant::now();
        let mut buf = std::mem::take(&mut self.buf);
        let mut drained = Drain::More;
        for _ in 0..BATCH {
            let (from, len) = match wireguard.recv(&mut buf) {
                Ok(Some(opened)) => opened,
                // A handshake or keepalive, answered.
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = Drain::Empty;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    underlay.count_drop(&DropReason::MalformedTunnel);
                    continue;
                }
            };
            self.last_traffic = now;
            underlay.count_received(len);
            let Ok((vni, start)) = vswitch_core::vxlan::parse(&buf[..len]) else {
                underlay.count_drop(&DropReason::MalformedTunnel);
                continue;
            };
            let Some(port) = underlay.port_of(from, vni) else {
                continue;
            };
            if let Some(Some(io)) = self.ports.get_mut(port.index()) {
                io.counters.rx_packets += 1;
                io.counters.rx_bytes += (len - start) as u64;
            }
            self.forward(now, port, Offload::default(), &buf[start..len]);
        }
        self.buf = buf;
        drained
    }

    /// Forwards the frame a run of coalesced segments became.
    fn forward_run(&mut self, now: Instant, port: PortId, run: &mut Coalescer) {
        if let Some((offload, frame)) = run.finish() {
            self.forward(now, port, offload, frame);
        }
    }

    /// Reads one frame of `port` into `buf` and counts it; a read shorter than the virtio
    /// header it must carry is dropped and counted as a runt.
    fn receive(&mut self, port: PortId, buf: &mut [u8]) -> Received {
        let Some(Some(io)) = self.ports.get_mut(port.index()) else {
            return Received::Nothing;
        };
        let len = match io.queue.recv(buf) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Received::Skipped,
            Err(e) => {
                debug!(port = %port, error = %e, "read failed");
                return Received::Nothing;
            }
        };
        let (offload, start) = if io.vnet_hdr {
            if len < VNET_HDR_LEN {
                io.counters.drops.count(&DropReason::Runt);
                return Received::Skipped;
            }
            (Offload::parse(&buf[..VNET_HDR_LEN]), VNET_HDR_LEN)
        } else {
            (Offload::default(), 0)
        };
        io.counters.rx_packets += 1;
        io.counters.rx_bytes += (len - start) as u64;
        Received::Frame {
            offload,
            start,
            end: len,
        }
    }

    /// Carries out the core's decision on one frame: its output ports (tagged as each needs),
    /// a reject answer, and copies for captures and mirrors.
    fn forward(&mut self, now: Instant, port: PortId, offload: Offload, frame: &[u8]) {
        // One relaxed load when nothing is captured or mirrored.
        let copying = self.fanout.is_active();
        let ingress_tag_len = match self.decide(now, port, frame, offload.wire_len(frame.len())) {
            Decided::Forward { ingress_tag_len } => ingress_tag_len,
            Decided::Dropped(reason) => {
                if copying {
                    self.fanout
                        .offer(port, Direction::In, &[frame], Some(reason));
                }
                return;
            }
            Decided::Rejected(reason) => {
                if copying {
                    self.fanout
                        .offer(port, Direction::In, &[frame], Some(reason));
                }
                self.dispatch_reply(port, copying);
                return;
            }
            Decided::Answered => {
                if copying {
                    self.fanout.offer(port, Direction::In, &[frame], None);
                }
                self.dispatch_reply(port, copying);
                return;
            }
        };
        self.mirror_targets.clear();
        if copying {
            self.fanout.offer(port, Direction::In, &[frame], None);
            self.fanout
                .mirror_targets(port, Direction::In, &mut self.mirror_targets);
        }
        for egress in &self.targets {
            let Some(Some(out)) = self.ports.get_mut(egress.port.index()) else {
                continue;
            };
            let tag = egress.vlan.map(vlan_tag);
            let tag: &[u8] = tag.as_ref().map_or(&[], |t| &t[..]);
            let parts = egress_parts(frame, ingress_tag_len, tag);
            let offload = offload.shifted(tag.len() as isize - ingress_tag_len as isize);
            let dropped = dispatch_frame(out, parts, offload, &mut self.segmenter);
            if copying {
                self.fanout
                    .offer(egress.port, Direction::Out, &parts, dropped);
                self.fanout
                    .mirror_targets(egress.port, Direction::Out, &mut self.mirror_targets);
            }
            if matches!(&out.queue, PortQueue::Gateway(end) if !end.answers.is_empty()) {
                self.answered.push(egress.port);
            }
        }
        self.dispatch_mirrors(frame, offload, ingress_tag_len);
        // A gateway answered on this thread: its answers go out now. (They never go back to
        // a gateway, so this goes no deeper.)
        while let Some(port) = self.answered.pop() {
            self.forward_answers(now, port);
        }
    }

    /// Forwards what an in-process port answered on this thread, as if read from its link.
    fn forward_answers(&mut self, now: Instant, port: PortId) {
        let Some(Some(PortIo {
            queue: PortQueue::Gateway(end),
            ..
        })) = self.ports.get_mut(port.index())
        else {
            return;
        };
        let mut answers = std::mem::take(&mut end.answers);
        for frame in &answers {
            self.forward_from_link(now, port, frame);
        }
        answers.clear();
        if let Some(Some(PortIo {
            queue: PortQueue::Gateway(end),
            ..
        })) = self.ports.get_mut(port.index())
        {
            // Its buffer is kept for the next call.
            end.answers = answers;
        }
    }

    /// Asks the core, under the switch lock, what to do with a frame, and copies out what
    /// carrying it out needs (output ports, a reject answer) so no syscall runs under the lock.
    fn decide(&mut self, now: Instant, port: PortId, frame: &[u8], wire_len: usize) -> Decided {
        let mut switch = lock(&self.switch);
        match switch.process_gso(now, port, frame, wire_len) {
            Action::Drop(reason) => Decided::Dropped(reason),
            Action::Reject { reason, reply } => {
                self.reply.clear();
                self.reply.extend_from_slice(reply);
                Decided::Rejected(reason)
            }
            Action::Answer { reply } => {
                self.reply.clear();
                self.reply.extend_from_slice(reply);
                Decided::Answered
            }
            action => {
                self.targets.clear();
                self.targets.extend(action.targets());
                Decided::Forward {
                    ingress_tag_len: action.ingress_tag_len(),
                }
            }
        }
    }

    /// Sends mirrored copies of a frame: untagged, once per target.
    fn dispatch_mirrors(&mut self, frame: &[u8], offload: Offload, ingress_tag_len: usize) {
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

    /// Sends the answer of a rejected frame back out of its ingress port.
    fn dispatch_reply(&mut self, port: PortId, copying: bool) {
        let Some(Some(out)) = self.ports.get_mut(port.index()) else {
            return;
        };
        let parts = [&self.reply[..], &[][..], &[][..]];
        let dropped = dispatch_frame(out, parts, Offload::default(), &mut self.segmenter);
        if copying {
            self.fanout.offer(port, Direction::Out, &parts, dropped);
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
                    self.attach(id, *io);
                    let _ = reply.send(());
                }
                Command::DetachQueue(id, reply) => {
                    self.detach(id);
                    let _ = reply.send(());
                }
                Command::AttachUnderlay(underlay, reply) => {
                    let fd = underlay.as_raw_fd();
                    if let Err(e) = self.poll.registry().register(
                        &mut SourceFd(&fd),
                        UNDERLAY,
                        Interest::READABLE,
                    ) {
                        warn!(error = %e, "cannot watch the underlay socket");
                    }
                    self.underlay = Some(underlay);
                    self.ready.push_back(UNDERLAY_PORT);
                    let _ = reply.send(());
                }
                Command::AttachWireGuard(wireguard, reply) => {
                    let fd = wireguard.as_raw_fd();
                    if let Err(e) = self.poll.registry().register(
                        &mut SourceFd(&fd),
                        WIREGUARD,
                        Interest::READABLE,
                    ) {
                        warn!(error = %e, "cannot watch the WireGuard socket");
                    }
                    self.wireguard = Some(wireguard);
                    self.ready.push_back(WIREGUARD_PORT);
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
