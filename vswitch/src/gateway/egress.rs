//! Egress for datagrams (TCP is `tcp_egress`'s): UDP and ICMP echo from containers to addresses beyond their network,
//! carried on ordinary sockets of the daemon's own namespace — no NAT, no iptables, no
//! privilege — and their answers built back into frames from the address the container sent
//! to. UDP takes a connected UDP socket per flow; ICMP echo an unprivileged ping socket
//! (allowed to the groups in `net.ipv4.ping_group_range`). A closed UDP port, which the host
//! learns as ECONNREFUSED, reaches the container as ICMP port unreachable. Flows end after
//! `IDLE` without traffic and are bounded per network and per container; what is refused or
//! cannot be sent is counted. Published UDP ports come in the other way: a datagram on the
//! host port opens a flow from the client's own address to the container, whose answers leave
//! through the listening socket to that client.
//!
//! A flow's own socket is watched by the data path worker that sent its first datagram
//! (`CallerWatch`), which reads the answers and forwards their frames itself: a ping through
//! the gateway crosses no other thread. An answer already queued when a send returns (a server
//! on this host) is read at once and goes out with the call (`Egress::read_eagerly`).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{Icmpv4Type, Icmpv6Type, TransportSlice};
// Its default hasher (foldhash), not SipHash: a flow is looked up per datagram or segment.
use hashbrown::HashMap;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::outside::{
    free_watch_id, is_outside, reply_builder, unreachable, Beyond, EgressCounters, Routed,
    Unreachable,
};

/// A flow unused this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// Flows open at once on one network.
pub const MAX_FLOWS: usize = 4096;
/// Flows open at once from one container address.
pub const MAX_FLOWS_PER_ADDRESS: usize = 512;
/// Bytes of the offending datagram quoted in an ICMP error (RFC 1812: as much as fits in 576).
const QUOTE: usize = 548;
/// Reads right after a send that found no answer yet, in a row, before a flow stops trying.
const EAGER_MISSES: u8 = 4;

/// Which datagrams a flow carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Protocol {
    Udp,
    /// ICMP echo; the ports are the container's echo identifier and 0.
    Echo,
}

/// A flow: the container's end and the outside end, as the container sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    protocol: Protocol,
    inside: SocketAddr,
    outside: SocketAddr,
}

/// Has a flow's socket (non-blocking) watched, as the given id, by the worker whose call is
/// being handled; it then calls `Egress::outside_ready` when the socket may be readable. Valid
/// for that call only.
pub type CallerWatch<'a> = &'a dyn Fn(RawFd, u32) -> std::io::Result<()>;

/// Where a flow's datagrams go out.
enum FlowSocket {
    /// Its own, connected to the outside address and watched (`Egress::ids`).
    Own(std::net::UdpSocket),
    /// A published port's, shared by its clients (its task reads it).
    Published(Arc<UdpSocket>),
}

impl FlowSocket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            FlowSocket::Own(socket) => socket.as_raw_fd(),
            FlowSocket::Published(socket) => socket.as_raw_fd(),
        }
    }
}

struct Flow {
    socket: FlowSocket,
    /// A published port's client: the flow shares the port's socket and sends to it.
    client: Option<SocketAddr>,
    container_mac: [u8; 6],
    last_used: Instant,
    /// The start of the last datagram sent, to quote in an ICMP error.
    quote: Vec<u8>,
    /// Reads right after a send that found nothing, in a row (see `Egress::read_eagerly`).
    eager_misses: u8,
}

/// What came back for a flow.
pub struct Answer {
    key: FlowKey,
    kind: AnswerKind,
}

enum AnswerKind {
    Data(Vec<u8>),
    /// The outside port is closed.
    Refused,
    /// A datagram to a published port, from `client`, read on `socket`.
    Inbound {
        socket: Arc<UdpSocket>,
        client: SocketAddr,
        container_mac: [u8; 6],
        data: Vec<u8>,
    },
}

impl Answer {
    /// A datagram a published UDP port received on `socket` from `client`, for the container
    /// at `container`.
    pub fn inbound(
        socket: Arc<UdpSocket>,
        client: SocketAddr,
        container: SocketAddr,
        container_mac: [u8; 6],
        data: Vec<u8>,
    ) -> Answer {
        let key = FlowKey {
            protocol: Protocol::Udp,
            inside: container,
            // Shown as the client until the gateway knows better (`Egress::answer`).
            outside: client,
        };
        let kind = AnswerKind::Inbound {
            socket,
            client,
            container_mac,
            data,
        };
        Answer { key, kind }
    }
}

/// A network's datagram egress.
pub struct Egress {
    gateway_mac: [u8; 6],
    mtu: usize,
    /// What is beyond the network; its gateway addresses are what clients of published ports
    /// on the host's loopback are shown as.
    beyond: Beyond,
    internal: bool,
    flows: HashMap<FlowKey, Flow>,
    /// The flows of watched sockets, by id.
    ids: HashMap<u32, FlowKey>,
    next_id: u32,
    /// Where answers are read (one datagram at most).
    buf: Vec<u8>,
    answers_tx: mpsc::Sender<Answer>,
    /// Its counters.
    pub counters: Arc<EgressCounters>,
    warned_ping: bool,
}

impl Egress {
    /// Egress to what is `beyond` the network; `internal`: none at all, only counted. With
    /// it, where published ports' datagrams and refusals found on sending come, for `answer`.
    pub fn new(
        gateway_mac: [u8; 6],
        mtu: u32,
        beyond: Beyond,
        internal: bool,
        counters: Arc<EgressCounters>,
    ) -> (Egress, mpsc::Receiver<Answer>) {
        let (answers_tx, answers) = mpsc::channel(1024);
        let egress = Egress {
            gateway_mac,
            mtu: mtu as usize,
            beyond,
            internal,
            flows: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            buf: vec![0; 65_536],
            answers_tx,
            counters,
            warned_ping: false,
        };
        (egress, answers)
    }

    /// Takes the frame if it is a UDP or ICMP echo datagram for an address beyond the network
    /// (true: taken, sent or counted); anything else is left to the gateway's stack.
    /// New flows' sockets are watched by `watch`; frames that answer it at once go to
    /// `answers`.
    pub fn take(
        &mut self,
        routed: &Routed,
        watch: CallerWatch<'_>,
        answers: &mut Vec<Vec<u8>>,
    ) -> bool {
        let (src, dst, ip_start) = (routed.src, routed.dst, routed.ip_start);
        let (packet, container_mac, frame) = (&routed.packet, routed.container_mac, routed.frame);
        let (key, payload) = match &packet.transport {
            Some(TransportSlice::Udp(udp)) => (
                FlowKey {
                    protocol: Protocol::Udp,
                    inside: SocketAddr::new(src, udp.source_port()),
                    outside: SocketAddr::new(dst, udp.destination_port()),
                },
                udp.payload(),
            ),
            Some(TransportSlice::Icmpv4(icmp)) => match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(echo) => (echo_key(src, dst, echo.id), icmp.slice()),
                _ => return false,
            },
            Some(TransportSlice::Icmpv6(icmp)) => match icmp.icmp_type() {
                Icmpv6Type::EchoRequest(echo) => (echo_key(src, dst, echo.id), icmp.slice()),
                _ => return false,
            },
            _ => return false,
        };
        // Pings to the gateway are its own to answer.
        let target = match key.protocol {
            Protocol::Echo if !is_outside(&self.beyond.local, dst) => None,
            _ => self.beyond.target(key.outside),
        };
        // Answers to a published port's client on the host's loopback go to the gateway.
        if target.is_none() && !self.flows.contains_key(&key) {
            return false;
        }
        if self.internal {
            self.counters.blocked.fetch_add(1, Relaxed);
            return true;
        }
        let quote = &frame[ip_start..frame.len().min(ip_start + QUOTE)];
        if self.send(key, target, container_mac, payload, quote, watch) {
            self.read_eagerly(key, answers);
        }
        true
    }

    /// Sends `payload` on `key`'s flow, opened to `target` if new; whether it went out.
    fn send(
        &mut self,
        key: FlowKey,
        target: Option<SocketAddr>,
        container_mac: [u8; 6],
        payload: &[u8],
        quote: &[u8],
        watch: CallerWatch<'_>,
    ) -> bool {
        if !self.flows.contains_key(&key) {
            let Some(target) = target else {
                return false;
            };
            match self.open(key, target, container_mac, watch) {
                Some(flow) => {
                    self.flows.insert(key, flow);
                }
                None => return false,
            }
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return false;
        };
        flow.last_used = Instant::now();
        flow.container_mac = container_mac;
        flow.quote.clear();
        flow.quote.extend_from_slice(quote);
        // Straight to the socket, not through tokio's readiness (a fresh socket is not yet
        // known to be writable there); a full socket buffer drops the datagram, as a link would.
        let sent = match flow.client {
            Some(client) => nix::sys::socket::sendto(
                flow.socket.as_raw_fd(),
                payload,
                &nix::sys::socket::SockaddrStorage::from(client),
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ),
            None => nix::sys::socket::send(
                flow.socket.as_raw_fd(),
                payload,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ),
        }
        .map_err(std::io::Error::from);
        match sent {
            Ok(_) => {
                self.counters.sent.fetch_add(1, Relaxed);
                true
            }
            // An earlier datagram met a closed port.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = self.answers_tx.try_send(Answer {
                    key,
                    kind: AnswerKind::Refused,
                });
                false
            }
            Err(e) => {
                debug!(outside = %key.outside, error = %e, "egress datagram not sent");
                self.counters.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Reads `key`'s own socket once, right after a datagram went out on it. An answer from
    /// this host (a server in another namespace, behind a veth) is already queued when `send`
    /// returns: the kernel carried the datagram there and the answer back in that call. Read
    /// now, it goes to the container before the worker polls again (four syscalls fewer before
    /// it: an empty TAP read, a yield, a poll, an empty read); its socket's readiness, read
    /// already, is not reported. A flow whose
    /// answers come later (from afar, or none) stops trying after `EAGER_MISSES` misses in a
    /// row, so a flow that only sends pays no extra read per datagram.
    fn read_eagerly(&mut self, key: FlowKey, answers: &mut Vec<Vec<u8>>) {
        if self
            .flows
            .get(&key)
            .is_none_or(|f| f.eager_misses >= EAGER_MISSES)
        {
            return;
        }
        // None also for a published port's flow (no socket of its own): it soon stops trying.
        let read = self.read_once(key);
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.eager_misses = if read.is_some() {
                0
            } else {
                flow.eager_misses + 1
            };
        }
        if let Some(kind) = read {
            answers.extend(self.answer(Answer { key, kind }));
        }
    }

    /// The sender published UDP ports hand their datagrams to.
    pub fn sender(&self) -> mpsc::Sender<Answer> {
        self.answers_tx.clone()
    }

    /// Whether one more flow of the container at `inside` stays within the limits.
    fn has_room(&self, inside: IpAddr) -> bool {
        let from_address = self
            .flows
            .keys()
            .filter(|k| k.inside.ip() == inside)
            .count();
        self.flows.len() < MAX_FLOWS && from_address < MAX_FLOWS_PER_ADDRESS
    }

    /// A socket for a new flow, connected to `target` and watched; None (counted) past the
    /// limits or when the host allows no such socket.
    fn open(
        &mut self,
        key: FlowKey,
        target: SocketAddr,
        container_mac: [u8; 6],
        watch: CallerWatch<'_>,
    ) -> Option<Flow> {
        if !self.has_room(key.inside.ip()) {
            self.counters.limited.fetch_add(1, Relaxed);
            return None;
        }
        let id = self.free_id();
        let socket = match flow_socket(key.protocol, target)
            .and_then(|socket| watch(socket.as_raw_fd(), id).map(|()| socket))
        {
            Ok(socket) => socket,
            Err(e) => {
                if key.protocol == Protocol::Echo && !self.warned_ping {
                    self.warned_ping = true;
                    warn!(error = %e, "ping to outside addresses needs ping sockets: add this daemon's group to the sysctl net.ipv4.ping_group_range");
                }
                self.counters.dropped.fetch_add(1, Relaxed);
                return None;
            }
        };
        self.counters.flows.fetch_add(1, Relaxed);
        self.ids.insert(id, key);
        Some(Flow {
            socket: FlowSocket::Own(socket),
            client: None,
            container_mac,
            last_used: Instant::now(),
            quote: Vec::new(),
            eager_misses: 0,
        })
    }

    /// An id no open flow's socket has.
    fn free_id(&mut self) -> u32 {
        let ids = &self.ids;
        free_watch_id(&mut self.next_id, |id| ids.contains_key(&id))
    }

    /// Reads what came on the socket watched as `id` until it would block: the frames that
    /// carry it to the container.
    pub fn outside_ready(&mut self, id: u32) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let Some(&key) = self.ids.get(&id) else {
            return frames;
        };
        while let Some(kind) = self.read_once(key) {
            frames.extend(self.answer(Answer { key, kind }));
        }
        frames
    }

    /// One datagram (or refusal) from `key`'s own socket; None once it would block, or if
    /// the flow has no socket of its own.
    fn read_once(&mut self, key: FlowKey) -> Option<AnswerKind> {
        let Some(Flow {
            socket: FlowSocket::Own(socket),
            ..
        }) = self.flows.get(&key)
        else {
            return None;
        };
        loop {
            match socket.recv(&mut self.buf) {
                Ok(len) => return Some(AnswerKind::Data(self.buf[..len].to_vec())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Some(AnswerKind::Refused)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        debug!(outside = %key.outside, error = %e, "egress flow failed");
                    }
                    return None;
                }
            }
        }
    }

    /// The flow a published port's client opens (or keeps using), and its key; None on an
    /// `--internal` network or past the limits.
    fn open_inbound(
        &mut self,
        key: FlowKey,
        socket: Arc<UdpSocket>,
        client: SocketAddr,
        container_mac: [u8; 6],
    ) -> Option<FlowKey> {
        // A client on the host's loopback is shown as the gateway (the container would drop
        // packets from a loopback address).
        let shown = if client.ip().is_loopback() {
            let gateway = self
                .beyond
                .gateways
                .iter()
                .find(|ip| ip.is_ipv4() == key.inside.is_ipv4())?;
            SocketAddr::new(*gateway, client.port())
        } else {
            client
        };
        let key = FlowKey {
            outside: shown,
            ..key
        };
        if self.internal {
            self.counters.blocked.fetch_add(1, Relaxed);
            return None;
        }
        if !self.flows.contains_key(&key) {
            if !self.has_room(key.inside.ip()) {
                self.counters.limited.fetch_add(1, Relaxed);
                return None;
            }
            self.counters.flows.fetch_add(1, Relaxed);
            let flow = Flow {
                socket: FlowSocket::Published(socket),
                client: Some(client),
                container_mac,
                last_used: Instant::now(),
                quote: Vec::new(),
                eager_misses: 0,
            };
            self.flows.insert(key, flow);
        }
        Some(key)
    }

    /// The frame carrying `answer` to its container, if its flow is still open and it fits.
    pub fn answer(&mut self, answer: Answer) -> Option<Vec<u8>> {
        let (key, kind) = match answer.kind {
            AnswerKind::Inbound {
                socket,
                client,
                container_mac,
                data,
            } => (
                self.open_inbound(answer.key, socket, client, container_mac)?,
                AnswerKind::Data(data),
            ),
            kind => (answer.key, kind),
        };
        let flow = self.flows.get_mut(&key)?;
        flow.last_used = Instant::now();
        let built = match kind {
            AnswerKind::Data(data) => self.build_answer(key, &data),
            AnswerKind::Refused => self.build_refused(key),
            AnswerKind::Inbound { .. } => None,
        };
        match built {
            Some(frame) if frame.len() <= self.mtu + 14 => {
                self.counters.received.fetch_add(1, Relaxed);
                Some(frame)
            }
            _ => {
                self.counters.dropped.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Closes flows idle for `IDLE`.
    pub fn expire(&mut self, now: Instant) {
        let before = self.flows.len();
        self.flows
            .retain(|_, flow| now.duration_since(flow.last_used) < IDLE);
        let flows = &self.flows;
        self.ids.retain(|_, key| flows.contains_key(key));
        let expired = (before - self.flows.len()) as u64;
        self.counters.expired.fetch_add(expired, Relaxed);
    }

    fn builder(
        &self,
        key: FlowKey,
    ) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
        let mac = self.flows.get(&key)?.container_mac;
        reply_builder(self.gateway_mac, mac, key.outside.ip(), key.inside.ip())
    }

    fn build_answer(&self, key: FlowKey, data: &[u8]) -> Option<Vec<u8>> {
        let ip = self.builder(key)?;
        let mut frame = Vec::with_capacity(data.len() + 64);
        match key.protocol {
            Protocol::Udp => ip
                .udp(key.outside.port(), key.inside.port())
                .write(&mut frame, data)
                .ok()?,
            Protocol::Echo => {
                // The ping socket's answer: an ICMP echo reply under the kernel's identifier;
                // the container gets its own back.
                let seq = u16::from_be_bytes([*data.get(6)?, *data.get(7)?]);
                let id = key.inside.port();
                let payload = data.get(8..)?;
                match key.inside {
                    SocketAddr::V4(_) => ip
                        .icmpv4_echo_reply(id, seq)
                        .write(&mut frame, payload)
                        .ok()?,
                    SocketAddr::V6(_) => ip
                        .icmpv6_echo_reply(id, seq)
                        .write(&mut frame, payload)
                        .ok()?,
                }
            }
        }
        Some(frame)
    }

    /// ICMP port unreachable, from the outside address, quoting the last datagram sent.
    fn build_refused(&self, key: FlowKey) -> Option<Vec<u8>> {
        let quote = self.flows.get(&key)?.quote.clone();
        let ip = self.builder(key)?;
        unreachable(ip, key.inside.is_ipv4(), Unreachable::Port, &quote)
    }
}

fn echo_key(src: IpAddr, dst: IpAddr, id: u16) -> FlowKey {
    FlowKey {
        protocol: Protocol::Echo,
        inside: SocketAddr::new(src, id),
        outside: SocketAddr::new(dst, 0),
    }
}

/// A non-blocking socket of the daemon's namespace connected to `target`: UDP, or an
/// unprivileged ICMP echo (ping) socket.
fn flow_socket(protocol: Protocol, target: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    let family = match target {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let protocol = match (protocol, target) {
        (Protocol::Udp, _) => SockProtocol::Udp,
        (Protocol::Echo, SocketAddr::V4(_)) => SockProtocol::Icmp,
        (Protocol::Echo, SocketAddr::V6(_)) => SockProtocol::IcmpV6,
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    )?;
    // SAFETY: the descriptor was just made and is owned by nothing else; a datagram socket of
    // any protocol takes std's UDP socket calls (connect, send, recv).
    let std_socket = unsafe { std::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) };
    std_socket.connect(target)?;
    Ok(std_socket)
}

#[cfg(test)]
mod tests;
