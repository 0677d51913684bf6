//! Egress for TCP: connections from containers to addresses beyond their network, terminated in
//! the gateway — a smoltcp interface of bare IP packets in any-IP mode answers as the outside
//! address — and carried on ordinary sockets of the daemon's namespace (no NAT, no privilege).
//! The outside connection is made first while the container's SYN waits, so a refused
//! connection reaches the container as a reset and an unreachable host as ICMP host
//! unreachable, as if the switch were not there. Half-closes pass both ways. A flow holds at
//! most its socket buffers: bytes move between the outside connection and the container-facing
//! socket's buffers directly, read only as far as the buffer has room; flows per network and
//! per container are bounded, and idle ones reset after RFC 5382's timeouts for NATs.
//!
//! The outside connections are watched by the data path worker that reads the gateway's link
//! (`Watch`): what the outside sends is read, segmented and written to the container's TAP by
//! that one thread, as pasta does it, with no hand-off between threads. (Tasks relaying each
//! connection cost two thread wake-ups per 64 KB and a copy: 9.2 against pasta's 12.5 Gbit/s
//! here.)
//!
//! Offloads are kept end to end: a container's 64 KB TSO segments reach the stack whole
//! (`FrameQueues::offloaded`), and the stack sends 64 KB segments back, which leave as GSO
//! frames cut to the container's own MSS by whoever must (the container's TAP, or the switch
//! for a port without offloads). For that the stack is told the container's MSS is as large as
//! an IP packet allows (`raise_mss` rewrites it in the container's SYN), and the real one
//! becomes each frame's `gso_size`.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::TransportSlice;
// Its default hasher (foldhash), not SipHash: a flow is looked up per datagram or segment.
use hashbrown::HashMap;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpCidr, IpListenEndpoint};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::warn;

use tun_rs::VirtioNetHdr;
use vswitch_core::frame::ETH_HEADER_LEN;
use vswitch_core::offload::{Offload, VNET_HDR_LEN};

use super::device::FrameQueues;
use super::outside::{
    free_watch_id, reply_builder, unreachable, Beyond, EgressCounters, Routed, Unreachable,
};
use super::segments::{self, plain, raise_mss};

/// Connections open or being opened at once on one network.
pub const MAX_FLOWS: usize = 512;
/// Connections open or being opened at once by (or to) one container address.
pub const MAX_FLOWS_PER_ADDRESS: usize = 128;
/// An established connection idle this long is reset (RFC 5382 REQ-5: no less than 2 h 4 min).
pub const IDLE: Duration = Duration::from_secs(2 * 3600 + 4 * 60);
/// A connection opening or closing, idle this long, is reset (RFC 5382's transitory 4 min).
pub const TRANSITORY_IDLE: Duration = Duration::from_secs(4 * 60);
/// How long the outside connection may take before the container hears "unreachable".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The container-facing socket's buffers. What the outside sends waits in the send buffer
/// until the container acknowledges it, so that buffer bounds the bytes in flight to the
/// container: outside -> container in `bench/egress.py` went 12 -> 15 -> 18 -> 22 Gbit/s at 256
/// KB, 512 KB, 1 MB and 2 MB (Linux lets a socket's buffers grow to 4 MB). A larger receive
/// buffer gained nothing. They are allocated whole but touched only as used (glibc maps
/// blocks this large from the kernel lazily), and freed with the flow.
const RX_BUFFER: usize = 256 * 1024;
const TX_BUFFER: usize = 2048 * 1024;

/// A connection: the container's end and the outside end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    inside: SocketAddr,
    outside: SocketAddr,
}

/// What the outside side of a flow reports, or a published port hands in.
pub enum Event {
    /// A client connected to a published port: connect it to the container, from the
    /// client's own address.
    Inbound {
        stream: TcpStream,
        client: SocketAddr,
        container: SocketAddr,
        container_mac: [u8; 6],
    },
    Connected(u32, TcpStream),
    Failed(u32, ErrorKind),
}

/// Has an outside connection (non-blocking) watched, as the given flow id, by the worker that
/// reads the gateway's queue (so the terminator's segments keep their order); it then calls
/// `TcpEgress::outside_ready` when the connection may be readable or writable. Kept for the
/// terminator's life.
pub type ReaderWatch = Box<dyn Fn(RawFd, u32) -> std::io::Result<()> + Send>;

/// A connection waiting for its outside end.
struct Pending {
    key: FlowKey,
    syn: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

struct Flow {
    key: FlowKey,
    handle: SocketHandle,
    /// The outside connection (non-blocking, watched).
    stream: std::net::TcpStream,
    /// It may have data (or EOF): cleared when a read would block.
    readable: bool,
    /// It may take data: cleared when a write would block.
    writable: bool,
    outside_eof: bool,
    /// The container's FIN was passed on (the outside connection shut for writing).
    outside_shut: bool,
    fin_sent: bool,
    /// When a segment or outside data last came.
    last_active: Instant,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Room in front of each packet the stack emits: its frame's virtio and Ethernet headers.
const HEADROOM: usize = VNET_HDR_LEN + ETH_HEADER_LEN;

/// A network's TCP egress.
pub struct TcpEgress {
    gateway_mac: [u8; 6],
    /// The network's MTU: a container's MSS if its SYN named none.
    mtu: usize,
    /// Each connection's MSS as its container asked for it (the stack sees a larger one).
    mss: HashMap<FlowKey, u16>,
    beyond: Beyond,
    internal: bool,
    queues: FrameQueues,
    iface: Interface,
    sockets: SocketSet<'static>,
    next_id: u32,
    pending: HashMap<u32, Pending>,
    flows: HashMap<u32, Flow>,
    by_key: HashMap<FlowKey, u32>,
    watch: ReaderWatch,
    /// Containers' MACs by address, for the frames that carry packets back.
    macs: HashMap<IpAddr, [u8; 6]>,
    events_tx: mpsc::Sender<Event>,
    counters: Arc<EgressCounters>,
    /// Frames ready for the switch.
    out: Vec<Vec<u8>>,
}

impl TcpEgress {
    /// TCP egress for a network whose gateway holds `gateways` (addresses with their prefix),
    /// outside connections watched by `watch`; and where connections opened and published
    /// ports' clients come, for `handle`.
    pub fn new(
        gateway_mac: [u8; 6],
        mtu: u32,
        gateways: &[(IpAddr, u8)],
        beyond: Beyond,
        internal: bool,
        counters: Arc<EgressCounters>,
        watch: ReaderWatch,
    ) -> (TcpEgress, mpsc::Receiver<Event>) {
        let mut queues = FrameQueues::offloaded(HEADROOM);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = super::rand_seed();
        let mut iface = Interface::new(config, &mut queues, smoltcp::time::Instant::now());
        // Any destination is its own: it answers as whatever outside address was asked for.
        iface.set_any_ip(true);
        iface.update_ip_addrs(|addrs| {
            for (ip, prefix) in gateways {
                let _ = addrs.push(IpCidr::new((*ip).into(), *prefix));
            }
        });
        let (events_tx, events) = mpsc::channel(1024);
        let egress = TcpEgress {
            gateway_mac,
            mtu: mtu as usize,
            mss: HashMap::new(),
            beyond,
            internal,
            queues,
            iface,
            sockets: SocketSet::new(Vec::new()),
            next_id: 0,
            watch,
            pending: HashMap::new(),
            flows: HashMap::new(),
            by_key: HashMap::new(),
            macs: HashMap::new(),
            events_tx,
            counters,
            out: Vec::new(),
        };
        (egress, events)
    }

    /// Takes the frame if it is TCP for an address beyond the network (true: taken).
    pub fn take(&mut self, routed: &Routed) -> bool {
        let (src, dst, ip_start) = (routed.src, routed.dst, routed.ip_start);
        let (packet, container_mac, frame) = (&routed.packet, routed.container_mac, routed.frame);
        let Some(TransportSlice::Tcp(tcp)) = &packet.transport else {
            return false;
        };
        let key = FlowKey {
            inside: SocketAddr::new(src, tcp.source_port()),
            outside: SocketAddr::new(dst, tcp.destination_port()),
        };
        // Flows of published ports may come from the gateway's own address (loopback clients).
        let target = self.beyond.target(key.outside);
        if target.is_none() && !self.by_key.contains_key(&key) {
            return false;
        }
        if self.internal {
            self.counters.blocked.fetch_add(1, Relaxed);
            return true;
        }
        let mut ip_packet = frame[ip_start..].to_vec();
        if tcp.syn() {
            let tcp_start = tcp.slice().as_ptr() as usize - frame[ip_start..].as_ptr() as usize;
            if let Some(mss) = raise_mss(&mut ip_packet, tcp_start) {
                self.mss.insert(key, mss);
            }
        }
        self.macs.insert(src, container_mac);
        if let Some(id) = self.by_key.get(&key) {
            if let Some(flow) = self.flows.get_mut(id) {
                flow.last_active = Instant::now();
            }
            if !self.queues.push_rx(ip_packet) {
                self.counters.dropped.fetch_add(1, Relaxed);
            }
            return true;
        }
        if self.pending.values().any(|p| p.key == key) {
            // The SYN again: its first copy waits for the outside connection.
            return true;
        }
        if let (true, false, Some(target)) = (tcp.syn(), tcp.ack(), target) {
            self.open(key, target, ip_packet);
        } else if !tcp.rst() {
            // Not a connection this gateway knows (e.g. from before a restart): reset it.
            let seq_len = tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
            let frame = self.reset(
                key,
                tcp.acknowledgment_number(),
                tcp.ack(),
                tcp.sequence_number().wrapping_add(seq_len),
            );
            self.out.extend(frame.as_deref().map(plain));
        }
        true
    }

    /// Whether one more connection of the container at `inside` stays within the limits;
    /// counted if not.
    fn has_room(&self, inside: IpAddr) -> bool {
        let keys = || {
            let pending = self.pending.values().map(|p| &p.key);
            pending.chain(self.flows.values().map(|f| &f.key))
        };
        let room = keys().count() < MAX_FLOWS
            && keys().filter(|k| k.inside.ip() == inside).count() < MAX_FLOWS_PER_ADDRESS;
        if !room {
            self.counters.limited.fetch_add(1, Relaxed);
        }
        room
    }

    /// Starts the outside connection of a new flow, to `target`; the SYN waits for it.
    fn open(&mut self, key: FlowKey, target: SocketAddr, syn: Vec<u8>) {
        if !self.has_room(key.inside.ip()) {
            return;
        }
        let id = self.free_id();
        let events = self.events_tx.clone();
        let task = tokio::spawn(async move {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
            let event = match connected {
                Ok(Ok(stream)) => Event::Connected(id, stream),
                Ok(Err(e)) => Event::Failed(id, e.kind()),
                Err(_) => Event::Failed(id, std::io::ErrorKind::TimedOut),
            };
            let _ = events.send(event).await;
        });
        self.pending.insert(id, Pending { key, syn, task });
    }

    /// Handles what an outside side reported.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Inbound {
                stream,
                client,
                container,
                container_mac,
            } => self.inbound(stream, client, container, container_mac),
            Event::Connected(id, stream) => self.connected(id, stream),
            Event::Failed(id, kind) => {
                let Some(pending) = self.pending.remove(&id) else {
                    return;
                };
                self.mss.remove(&pending.key);
                self.counters.dropped.fetch_add(1, Relaxed);
                let frame = if kind == std::io::ErrorKind::ConnectionRefused {
                    syn_sequence(&pending.syn)
                        .and_then(|seq| self.reset(pending.key, 0, false, seq.wrapping_add(1)))
                } else {
                    self.unreachable(pending.key, &pending.syn)
                };
                self.out.extend(frame.as_deref().map(plain));
            }
        }
    }

    /// An id no flow, open or opening, has.
    fn free_id(&mut self) -> u32 {
        let (flows, pending) = (&self.flows, &self.pending);
        free_watch_id(&mut self.next_id, |id| {
            flows.contains_key(&id) || pending.contains_key(&id)
        })
    }

    /// The outside connection of flow `id` may be readable or writable: `pump` tries.
    pub fn outside_ready(&mut self, id: u32) {
        if let Some(flow) = self.flows.get_mut(&id) {
            flow.readable = true;
            flow.writable = true;
        }
    }

    fn connected(&mut self, id: u32, stream: TcpStream) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let mut socket = flow_socket();
        let listen = IpListenEndpoint {
            addr: Some(pending.key.outside.ip().into()),
            port: pending.key.outside.port(),
        };
        if socket.listen(listen).is_err() {
            return;
        }
        let handle = self.sockets.add(socket);
        let _ = self.queues.push_rx(pending.syn.clone());
        // The SYN is answered now, before another listener could take it.
        self.poll();
        self.start_flow(id, pending.key, handle, stream);
    }

    /// Relays the flow `id` between its socket `handle` and its outside connection, which is
    /// watched from now on (it leaves tokio's reactor); if it cannot be, the flow is reset.
    fn start_flow(&mut self, id: u32, key: FlowKey, handle: SocketHandle, stream: TcpStream) {
        let stream = match stream
            .into_std()
            .and_then(|stream| (self.watch)(stream.as_raw_fd(), id).map(|()| stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                warn!(error = %e, "cannot watch an egress connection");
                self.sockets.get_mut::<tcp::Socket>(handle).abort();
                self.counters.dropped.fetch_add(1, Relaxed);
                return;
            }
        };
        self.counters.flows.fetch_add(1, Relaxed);
        self.by_key.insert(key, id);
        self.flows.insert(
            id,
            Flow {
                key,
                handle,
                stream,
                readable: true,
                writable: true,
                outside_eof: false,
                outside_shut: false,
                fin_sent: false,
                last_active: Instant::now(),
            },
        );
    }

    /// The sender published ports hand their clients to.
    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.events_tx.clone()
    }

    /// A client of a published port: the gateway connects to the container as the client.
    /// A client on the host's loopback is shown as the gateway (the container would drop
    /// packets from a loopback address).
    fn inbound(
        &mut self,
        stream: TcpStream,
        client: SocketAddr,
        container: SocketAddr,
        container_mac: [u8; 6],
    ) {
        if self.internal {
            self.counters.blocked.fetch_add(1, Relaxed);
            return;
        }
        if !self.has_room(container.ip()) {
            return;
        }
        let shown = if client.ip().is_loopback() {
            let gateway = self.iface.ip_addrs().iter().find_map(|cidr| {
                let ip: IpAddr = cidr.address().into();
                (ip.is_ipv4() == container.is_ipv4()).then_some(ip)
            });
            match gateway {
                Some(ip) => SocketAddr::new(ip, client.port()),
                None => return,
            }
        } else {
            client
        };
        let key = FlowKey {
            inside: container,
            outside: shown,
        };
        if self.by_key.contains_key(&key) {
            return;
        }
        self.macs.insert(container.ip(), container_mac);
        let mut socket = flow_socket();
        let local = IpListenEndpoint {
            addr: Some(shown.ip().into()),
            port: shown.port(),
        };
        if socket
            .connect(
                self.iface.context(),
                (container.ip(), container.port()),
                local,
            )
            .is_err()
        {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let handle = self.sockets.add(socket);
        let id = self.free_id();
        self.start_flow(id, key, handle, stream);
    }

    /// Moves data between the flows' sockets and their outside ends, polls the stack, and
    /// returns the frames to send to the containers.
    pub fn pump(&mut self) -> Vec<Vec<u8>> {
        self.poll();
        let mut closed = Vec::new();
        for (id, flow) in &mut self.flows {
            let socket = self.sockets.get_mut::<tcp::Socket>(flow.handle);
            relay(flow, socket, &self.counters);
            // (Not before the connection is up: closing a socket still opening aborts it.)
            let open = matches!(
                socket.state(),
                tcp::State::Established | tcp::State::CloseWait
            );
            if open && flow.outside_eof && !flow.fin_sent {
                socket.close();
                flow.fin_sent = true;
            }
            if socket.state() == tcp::State::Closed {
                closed.push(*id);
            }
        }
        for id in closed {
            if let Some(flow) = self.flows.remove(&id) {
                self.by_key.remove(&flow.key);
                self.mss.remove(&flow.key);
                self.sockets.remove(flow.handle);
            }
        }
        self.poll();
        std::mem::take(&mut self.out)
    }

    /// Resets connections idle past their timeout (`IDLE` established, else
    /// `TRANSITORY_IDLE`); `pump` then sends the resets and forgets them.
    pub fn expire(&mut self, now: Instant) {
        for flow in self.flows.values_mut() {
            let socket = self.sockets.get_mut::<tcp::Socket>(flow.handle);
            let limit = match socket.state() {
                tcp::State::Established => IDLE,
                _ => TRANSITORY_IDLE,
            };
            if now.saturating_duration_since(flow.last_active) >= limit {
                socket.abort();
                self.counters.expired.fetch_add(1, Relaxed);
            }
        }
    }

    /// When the stack next needs polling.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        self.iface
            .poll_delay(smoltcp::time::Instant::now(), &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    fn poll(&mut self) {
        self.iface.poll(
            smoltcp::time::Instant::now(),
            &mut self.queues,
            &mut self.sockets,
        );
        for packet in self.queues.take_tx() {
            if let Some(frame) = self.frame_for(packet) {
                self.out.push(frame);
            }
        }
    }

    /// The frame, behind its virtio header, carrying the packet the stack emitted in `buf`
    /// (after `HEADROOM` bytes) to the container it is addressed to. A TCP segment leaves its
    /// checksum to the receiver, and one longer than the container's MSS is a GSO frame.
    fn frame_for(&self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        let packet = buf.get(HEADROOM..)?;
        let (dst, src, ethertype, ip_len, protocol) = match packet.first()? >> 4 {
            4 => (
                IpAddr::from(<[u8; 4]>::try_from(packet.get(16..20)?).ok()?),
                IpAddr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?),
                [0x08, 0x00],
                usize::from(packet[0] & 0x0f) * 4,
                packet.get(9).copied()?,
            ),
            6 => (
                IpAddr::from(<[u8; 16]>::try_from(packet.get(24..40)?).ok()?),
                IpAddr::from(<[u8; 16]>::try_from(packet.get(8..24)?).ok()?),
                [0x86, 0xdd],
                40,
                packet.get(6).copied()?,
            ),
            _ => return None,
        };
        let header = if protocol == 6 {
            let tcp = packet.get(ip_len..ip_len + 20)?;
            let key = FlowKey {
                inside: SocketAddr::new(dst, u16::from_be_bytes([tcp[2], tcp[3]])),
                outside: SocketAddr::new(src, u16::from_be_bytes([tcp[0], tcp[1]])),
            };
            let mss = self
                .mss
                .get(&key)
                .map_or(self.mtu.saturating_sub(ip_len + 20), |mss| {
                    usize::from(*mss)
                });
            segments::offload(buf.get_mut(HEADROOM..)?, ip_len, src, dst, mss)?
        } else {
            VirtioNetHdr::default()
        };
        let mac = self.macs.get(&dst)?;
        buf[..VNET_HDR_LEN].copy_from_slice(&Offload(header).emit());
        let ethernet = &mut buf[VNET_HDR_LEN..HEADROOM];
        ethernet[..6].copy_from_slice(mac);
        ethernet[6..12].copy_from_slice(&self.gateway_mac);
        ethernet[12..].copy_from_slice(&ethertype);
        Some(buf)
    }

    fn link(&self, key: FlowKey) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
        let mac = *self.macs.get(&key.inside.ip())?;
        reply_builder(self.gateway_mac, mac, key.outside.ip(), key.inside.ip())
    }

    /// A reset from the outside end of `key`: with `seq` if the segment it answers had an
    /// ACK, else acknowledging up to `ack`.
    fn reset(&self, key: FlowKey, seq: u32, had_ack: bool, ack: u32) -> Option<Vec<u8>> {
        let ip = self.link(key)?;
        let mut tcp = ip.tcp(
            key.outside.port(),
            key.inside.port(),
            if had_ack { seq } else { 0 },
            0,
        );
        tcp = tcp.rst();
        if !had_ack {
            tcp = tcp.ack(ack);
        }
        let mut frame = Vec::new();
        tcp.write(&mut frame, &[]).ok()?;
        Some(frame)
    }

    /// ICMP host unreachable from the outside address, quoting the SYN.
    fn unreachable(&self, key: FlowKey, syn: &[u8]) -> Option<Vec<u8>> {
        unreachable(
            self.link(key)?,
            key.inside.is_ipv4(),
            Unreachable::Host,
            syn,
        )
    }
}

/// A container-facing socket for a new flow.
fn flow_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
    )
}

/// The sequence number of the SYN in IP packet `syn`.
fn syn_sequence(syn: &[u8]) -> Option<u32> {
    match etherparse::SlicedPacket::from_ip(syn).ok()?.transport? {
        TransportSlice::Tcp(tcp) => Some(tcp.sequence_number()),
        _ => None,
    }
}

/// Moves a flow's bytes between its outside connection and its container-facing socket,
/// straight from one's buffer to the other's: what the container sent, as far as the outside
/// takes it, then its FIN; what the outside sends, as far as the socket has room (the rest
/// waits in the kernel, which tells the sender to wait). A failed connection resets the flow.
fn relay(flow: &mut Flow, socket: &mut tcp::Socket<'static>, counters: &EgressCounters) {
    while flow.writable && socket.can_recv() {
        let written = socket.recv(|buf| match (&flow.stream).write(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match written {
            Ok(Ok(_)) => {
                counters.sent.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => flow.writable = false,
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                socket.abort();
                return;
            }
            Err(_) => break,
        }
    }
    // The container closed its side: so does the outside, once it has everything.
    let fin_received = matches!(
        socket.state(),
        tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::Closed
    );
    if fin_received && socket.recv_queue() == 0 && !flow.outside_shut {
        let _ = flow.stream.shutdown(std::net::Shutdown::Write);
        flow.outside_shut = true;
    }
    while flow.readable && !flow.outside_eof && socket.can_send() {
        let read = socket.send(|buf| match (&flow.stream).read(buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match read {
            Ok(Ok(0)) => flow.outside_eof = true,
            Ok(Ok(_)) => {
                flow.last_active = Instant::now();
                counters.received.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => flow.readable = false,
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Ok(Err(_)) => {
                socket.abort();
                return;
            }
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests;
