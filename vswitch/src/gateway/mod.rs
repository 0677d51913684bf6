//! A network's gateway: a port of the switch inside this process, holding the gateway
//! addresses on a smoltcp interface. smoltcp answers ARP, ICMP echo and neighbour discovery;
//! the gateway adds router advertisements (`ndp`), a DHCPv4 server (`dhcp`, leases decided by
//! the control plane) and the embedded DNS server (`dns`, names from the `Directory`,
//! everything else forwarded upstream from the daemon's own namespace). It sees only frames
//! the switch delivers to it: those for its MAC, broadcasts and multicasts, never traffic
//! between two containers. Its port keeps offloads: every frame crosses it behind a virtio
//! header, so a container's 64 KB TSO segment reaches the TCP terminator whole; whatever else
//! comes offloaded is cut into wire frames (checksums filled in) before the rest looks at it.

pub mod device;
pub mod dhcp;
pub mod directory;
pub mod dns;
mod dns_service;
pub mod egress;
pub mod host;
pub mod ndp;
pub mod outside;
pub mod resolv;
pub mod segments;
pub mod tcp_egress;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};
use serde::Serialize;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpListenEndpoint};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::datapath::link::Link;
use crate::model::leases::{Decision, LeaseQuery};
use crate::model::SubnetRecord;
use device::FrameQueues;
use directory::Directory;
use dns_service::{Answer, TcpConn};
use vswitch_core::frame::MacAddr;
use vswitch_core::offload::{Offload, Segmenter, VNET_HDR_LEN};

/// DNS port.
pub const DNS_PORT: u16 = 53;
/// Concurrent TCP DNS connections.
const TCP_DNS_SOCKETS: usize = 4;
/// Forwarded queries in flight; more are answered SERVFAIL at once.
const MAX_FORWARDS: usize = 256;
/// Total time a forwarded query may take before the client gets SERVFAIL.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Unsolicited router advertisements, as often as RFC 4861's MaxRtrAdvInterval default allows.
const RA_INTERVAL: Duration = Duration::from_secs(200);
/// How often idle egress flows are looked for.
const EGRESS_EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
/// Largest UDP DNS answer without EDNS.
const UDP_DNS_MAX: usize = 512;
/// Frames taken from the switch before the stack is polled: fewer than the UDP socket's 64
/// slots, so smoltcp never drops a query for want of room (it would not count it). What waits
/// beyond stays in the link from the switch, where an overflow is counted (`tx_error`).
const FRAMES_PER_POLL: usize = 32;

/// What a gateway serves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Network name (for logs and lease requests).
    pub network: String,
    /// The gateway's MAC.
    pub mac: MacAddr,
    /// The network's MTU.
    pub mtu: u32,
    /// The network's subnets, with the gateway addresses.
    pub subnets: Vec<SubnetRecord>,
    /// Where names that are not local go.
    pub upstreams: Vec<SocketAddr>,
    /// DHCPv4 service (networks with an IPv4 subnet).
    pub dhcp: Option<dhcp::ServerConfig>,
    /// No egress: datagrams for outside addresses are counted and dropped.
    pub internal: bool,
    /// The gateway's address leads to the daemon's loopback.
    pub host_loopback: bool,
}

/// A lease decision the gateway asks of the control plane.
pub struct LeaseCall {
    /// Network of the gateway asking.
    pub network: String,
    /// What the client asked.
    pub query: LeaseQuery,
    /// Where the decision goes.
    pub reply: oneshot::Sender<Decision>,
}

/// Counters of one gateway; updated with relaxed atomics, read by the API.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    dns_queries: AtomicU64,
    dns_forwarded: AtomicU64,
    dns_servfail: AtomicU64,
    dns_dropped: AtomicU64,
    dns_unsent: AtomicU64,
    dhcp_requests: AtomicU64,
    dhcp_replies: AtomicU64,
    dhcp_dropped: AtomicU64,
    dhcp_refused: AtomicU64,
    frames_dropped: AtomicU64,
    /// Those of its egress.
    pub egress: Arc<outside::EgressCounters>,
}

/// A snapshot of a gateway's counters, as `network inspect` shows it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct GatewayStats {
    /// DNS queries received (UDP and TCP).
    pub dns_queries: u64,
    /// Queries forwarded upstream.
    pub dns_forwarded: u64,
    /// Forwarded queries answered SERVFAIL (upstream failed or timed out).
    pub dns_servfail: u64,
    /// Malformed or non-query DNS messages dropped.
    pub dns_dropped: u64,
    /// DNS answers that could not be sent (the gateway's send buffer was full).
    #[serde(default)]
    pub dns_unsent: u64,
    /// DHCP client messages handled.
    pub dhcp_requests: u64,
    /// DHCP replies sent.
    pub dhcp_replies: u64,
    /// Malformed DHCP messages dropped, and those asking in another station's name.
    pub dhcp_dropped: u64,
    /// DHCP requests refused: the client's port holds all the offers and leases it may.
    #[serde(default)]
    pub dhcp_refused: u64,
    /// Frames dropped because the gateway's queue was full.
    pub frames_dropped: u64,
    /// Datagrams carried to and from addresses beyond the network.
    #[serde(default)]
    pub egress: outside::EgressStats,
}

impl GatewayCounters {
    /// Current values.
    pub fn snapshot(&self) -> GatewayStats {
        GatewayStats {
            dns_queries: self.dns_queries.load(Relaxed),
            dns_forwarded: self.dns_forwarded.load(Relaxed),
            dns_servfail: self.dns_servfail.load(Relaxed),
            dns_dropped: self.dns_dropped.load(Relaxed),
            dns_unsent: self.dns_unsent.load(Relaxed),
            dhcp_requests: self.dhcp_requests.load(Relaxed),
            dhcp_replies: self.dhcp_replies.load(Relaxed),
            dhcp_dropped: self.dhcp_dropped.load(Relaxed),
            dhcp_refused: self.dhcp_refused.load(Relaxed),
            frames_dropped: self.frames_dropped.load(Relaxed),
            egress: self.egress.snapshot(),
        }
    }
}

/// A running gateway; dropping it stops it.
pub struct Gateway {
    task: tokio::task::JoinHandle<()>,
    /// Its counters.
    pub counters: Arc<GatewayCounters>,
    /// Where published TCP ports hand in their clients.
    pub inbound: mpsc::Sender<tcp_egress::Event>,
    /// Where published UDP ports hand in their datagrams.
    pub datagrams: mpsc::Sender<egress::Answer>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the gateway on `link`, whose other side is its switch port; `host` is the network's host
/// interface, if it has one (a non-blocking TAP device without offloads).
pub fn spawn(
    config: GatewayConfig,
    link: Arc<Link>,
    host: Option<tap::Queue>,
    names: Arc<RwLock<Directory>>,
    leases: mpsc::Sender<LeaseCall>,
) -> std::io::Result<Gateway> {
    let host = host
        .map(|device| {
            // SAFETY: the device owns its fd, which stays open and the same for as long as the
            // AsyncFd (which owns the device) lives.
            unsafe { AsyncFd::register_with_interest(device, tokio::io::Interest::READABLE) }
                .map_err(std::io::Error::from)
        })
        .transpose()?;
    let counters = Arc::new(GatewayCounters::default());
    let mut queues = FrameQueues::new(config.mtu as usize);
    let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac.0)));
    iface_config.random_seed = rand_seed();
    let mut iface = Interface::new(iface_config, &mut queues, smoltcp::time::Instant::now());
    iface.update_ip_addrs(|addrs| {
        for s in &config.subnets {
            let _ = addrs.push(IpCidr::new(s.gateway.into(), s.subnet.prefix_len()));
        }
        if config.subnets.iter().any(|s| s.gateway.is_ipv6()) {
            let _ = addrs.push(IpCidr::new(ndp::link_local(config.mac).into(), 64));
        }
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut udp_socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 128 * 1024]),
    );
    udp_socket
        .bind(IpListenEndpoint {
            addr: None,
            port: DNS_PORT,
        })
        .expect("port 53 is not zero");
    let udp = sockets.add(udp_socket);
    let tcp = (0..TCP_DNS_SOCKETS)
        .map(|_| {
            let socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            );
            TcpConn::new(sockets.add(socket))
        })
        .collect();
    let (done_tx, done_rx) = mpsc::channel(MAX_FORWARDS);
    let beyond = outside::Beyond {
        local: config.subnets.iter().map(|s| s.subnet).collect(),
        gateways: config.subnets.iter().map(|s| s.gateway).collect(),
        host_loopback: config.host_loopback,
    };
    let egress = egress::Egress::new(
        config.mac.0,
        config.mtu,
        beyond.clone(),
        config.internal,
        counters.egress.clone(),
    );
    let datagrams = egress.sender();
    let tcp_egress = tcp_egress::TcpEgress::new(
        config.mac.0,
        config.mtu,
        &config
            .subnets
            .iter()
            .map(|s| (s.gateway, s.subnet.prefix_len()))
            .collect::<Vec<_>>(),
        beyond,
        config.internal,
        counters.egress.clone(),
    );
    let inbound = tcp_egress.sender();
    let runner = Runner {
        gateway_ips: config.subnets.iter().map(|s| s.gateway).collect(),
        host,
        ipv6_prefix: config.subnets.iter().find_map(|s| match s.subnet {
            IpNet::V6(net) => Some(net),
            IpNet::V4(_) => None,
        }),
        config,
        link,
        names,
        leases,
        counters: counters.clone(),
        queues,
        iface,
        sockets,
        udp,
        tcp,
        done_tx,
        done_rx,
        forwards: 0,
        egress,
        tcp_egress,
        segmenter: Segmenter::default(),
    };
    Ok(Gateway {
        task: tokio::spawn(runner.run()),
        counters,
        inbound,
        datagrams,
    })
}

/// Sends `frame` to the switch behind a virtio header that asks nothing of it.
async fn send_plain(link: &Link, frame: &[u8]) {
    link.send_frame([&Offload::default().emit()[..], frame].concat())
        .await;
}

/// Whether `frame` is IPv4 sent to a group (broadcast or multicast MAC).
fn is_ipv4_broadcast(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[0] & 1 == 1 && frame[12..14] == [0x08, 0x00]
}

/// Waits until the host interface has frames; never, without one.
async fn host_readable(
    host: Option<&AsyncFd<tap::Queue>>,
) -> std::io::Result<AsyncFdReadyGuard<'_, tap::Queue>> {
    match host {
        Some(host) => host.readable().await,
        None => std::future::pending().await,
    }
}

fn rand_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

struct Runner {
    config: GatewayConfig,
    /// The host interface: frames not for the gateway's own services go there.
    host: Option<AsyncFd<tap::Queue>>,
    /// The gateway addresses, which the host interface shares.
    gateway_ips: Vec<IpAddr>,
    ipv6_prefix: Option<Ipv6Net>,
    /// The link to its switch port.
    link: Arc<Link>,
    names: Arc<RwLock<Directory>>,
    leases: mpsc::Sender<LeaseCall>,
    counters: Arc<GatewayCounters>,
    queues: FrameQueues,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    tcp: Vec<TcpConn>,
    done_tx: mpsc::Sender<Answer>,
    done_rx: mpsc::Receiver<Answer>,
    forwards: usize,
    /// UDP and ICMP echo to outside addresses (networks without a host interface).
    egress: egress::Egress,
    /// TCP to outside addresses.
    tcp_egress: tcp_egress::TcpEgress,
    /// Cuts offloaded frames that are not the TCP terminator's into wire frames.
    segmenter: Segmenter,
}

impl Runner {
    async fn run(mut self) {
        // A 64 KB IP packet behind Ethernet, VLAN and virtio headers.
        let mut buf = vec![0u8; VNET_HDR_LEN + 65_536 + 64];
        if self.ipv6_prefix.is_some() {
            self.send_router_advert().await;
        }
        let mut next_ra = tokio::time::Instant::now() + RA_INTERVAL;
        let mut next_expiry = std::time::Instant::now() + EGRESS_EXPIRY_INTERVAL;
        loop {
            if std::time::Instant::now() >= next_expiry {
                self.egress.expire(std::time::Instant::now());
                self.tcp_egress.expire(std::time::Instant::now());
                next_expiry = std::time::Instant::now() + EGRESS_EXPIRY_INTERVAL;
            }
            self.poll_stack().await;
            let now = smoltcp::time::Instant::now();
            let stack_delay = self
                .iface
                .poll_delay(now, &self.sockets)
                .map_or(RA_INTERVAL, |d| Duration::from_micros(d.total_micros()))
                .min(self.tcp_egress.poll_delay().unwrap_or(RA_INTERVAL));
            let wake = (tokio::time::Instant::now() + stack_delay).min(next_ra);
            tokio::select! {
                frame = self.link.recv_frame() => {
                    self.handle_offloaded(&frame).await;
                    for _ in 1..FRAMES_PER_POLL {
                        let Some(frame) = self.link.try_recv_frame() else {
                            break;
                        };
                        self.handle_offloaded(&frame).await;
                    }
                }
                ready = host_readable(self.host.as_ref()) => {
                    let Ok(mut guard) = ready else {
                        warn!(network = %self.config.network, "host interface failed");
                        return;
                    };
                    // Frames the host kernel sends to the containers.
                    while let Ok(result) = guard.try_io(|host| host.get_ref().recv(&mut buf)) {
                        match result {
                            Ok(len) => self.send(&buf[..len]).await,
                            Err(e) => {
                                debug!(network = %self.config.network, error = %e, "host interface read failed");
                                break;
                            }
                        }
                    }
                }
                Some(answer) = self.done_rx.recv() => {
                    self.forwards -= 1;
                    self.deliver(answer);
                }
                Some(event) = self.tcp_egress.events.recv() => {
                    self.tcp_egress.handle(event);
                }
                Some(answer) = self.egress.answers.recv() => {
                    if let Some(frame) = self.egress.answer(answer) {
                        self.send(&frame).await;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= next_ra {
                        if self.ipv6_prefix.is_some() {
                            self.send_router_advert().await;
                        }
                        next_ra = tokio::time::Instant::now() + RA_INTERVAL;
                    }
                }
            }
        }
    }

    /// Lets smoltcp take in queued frames, serves DNS, and sends whatever it emitted.
    async fn poll_stack(&mut self) {
        let now = smoltcp::time::Instant::now();
        self.iface.poll(now, &mut self.queues, &mut self.sockets);
        self.serve_udp_dns();
        self.serve_tcp_dns();
        self.iface.poll(now, &mut self.queues, &mut self.sockets);
        for frame in self.queues.take_tx() {
            self.send(&frame).await;
        }
        // (These carry their virtio headers.)
        for frame in self.tcp_egress.pump() {
            self.link.send_frame(frame).await;
        }
    }

    async fn send(&self, frame: &[u8]) {
        send_plain(&self.link, frame).await;
    }

    /// A datagram from the switch: a frame behind its virtio header. TCP for beyond the
    /// network goes to the terminator as it is (a 64 KB segment stays one); any other frame
    /// with offloads is cut into wire frames, checksums filled in, for the rest of the gateway.
    async fn handle_offloaded(&mut self, datagram: &[u8]) {
        let Some(frame) = datagram.get(VNET_HDR_LEN..) else {
            self.counters.frames_dropped.fetch_add(1, Relaxed);
            return;
        };
        let offload = Offload::parse(datagram);
        if !offload.is_gso() && !offload.needs_csum() {
            return self.handle_frame(frame).await;
        }
        if self.host.is_none() {
            let routed = outside::Routed::parse(frame, self.config.mac.0);
            if routed.is_some_and(|r| self.tcp_egress.take(&r)) {
                return;
            }
        }
        let frames: Vec<Vec<u8>> = match self.segmenter.wire_frames(&[frame], offload) {
            Ok(frames) => frames.map(<[u8]>::to_vec).collect(),
            Err(reason) => {
                self.counters.frames_dropped.fetch_add(1, Relaxed);
                debug!(network = %self.config.network, reason = reason.name(), "offloaded frame dropped");
                return;
            }
        };
        for frame in frames {
            self.handle_frame(&frame).await;
        }
    }

    async fn send_router_advert(&self) {
        let frame = ndp::router_advert(self.config.mac, self.config.mtu, self.ipv6_prefix);
        self.send(&frame).await;
    }

    /// A frame from the switch: DHCP and router solicitations are answered here, the rest
    /// goes to smoltcp.
    async fn handle_frame(&mut self, frame: &[u8]) {
        if let Some(dhcp_config) = &self.config.dhcp {
            match dhcp::parse_request(frame) {
                Ok(request) => {
                    self.counters.dhcp_requests.fetch_add(1, Relaxed);
                    self.spawn_dhcp_reply(request, dhcp_config.clone());
                    return;
                }
                Err(dhcp::DhcpDrop::NotDhcp) => {}
                Err(reason) => {
                    self.counters.dhcp_dropped.fetch_add(1, Relaxed);
                    debug!(network = %self.config.network, reason = reason.name(), "DHCP message dropped");
                    return;
                }
            }
        }
        if self.ipv6_prefix.is_some() && ndp::is_router_solicit(frame) {
            self.send_router_advert().await;
            return;
        }
        // With a host interface, the host's kernel routes what leaves the network.
        if self.host.is_none() {
            // Parsed once for both egress paths.
            let routed = outside::Routed::parse(frame, self.config.mac.0);
            if routed.is_some_and(|r| self.egress.take(&r) || self.tcp_egress.take(&r)) {
                return;
            }
        }
        let recipient = match &self.host {
            Some(_) => host::recipient(frame, &self.gateway_ips),
            // Like Linux (icmp_echo_ignore_broadcasts), the gateway answers no broadcast ping:
            // of IPv4 broadcasts and multicasts its stack needs only ARP.
            None if is_ipv4_broadcast(frame) => return,
            None => host::Recipient::Stack,
        };
        if let (Some(host), host::Recipient::Host | host::Recipient::Both) = (&self.host, recipient)
        {
            if host.get_ref().send(frame).is_err() {
                self.counters.frames_dropped.fetch_add(1, Relaxed);
            }
        }
        if matches!(recipient, host::Recipient::Stack | host::Recipient::Both)
            && !self.queues.push_rx(frame.to_vec())
        {
            self.counters.frames_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Asks the control plane for a lease decision and sends the reply when it comes, without
    /// holding up the gateway meanwhile.
    fn spawn_dhcp_reply(&self, request: dhcp::DhcpRequest, config: dhcp::ServerConfig) {
        let query = LeaseQuery {
            kind: request.kind,
            mac: MacAddr(request.chaddr),
            ciaddr: request.ciaddr,
            requested: request.requested_ip,
            server_id: request.server_id,
            hostname: request.hostname.clone(),
            // The control plane knows which port the client sent from.
            port: None,
        };
        let leases = self.leases.clone();
        let link = self.link.clone();
        let counters = self.counters.clone();
        let network = self.config.network.clone();
        tokio::spawn(async move {
            let (reply, decision) = oneshot::channel();
            let call = LeaseCall {
                network: network.clone(),
                query,
                reply,
            };
            if leases.send(call).await.is_err() {
                return;
            }
            let reply = match decision.await {
                Ok(Decision::Offer(ip)) => dhcp::Reply::Offer(ip),
                Ok(Decision::Ack(ip)) => dhcp::Reply::Ack(ip),
                Ok(Decision::Nak) => dhcp::Reply::Nak,
                Ok(Decision::InformAck) => dhcp::Reply::InformAck,
                Ok(Decision::Refused) => {
                    counters.dhcp_refused.fetch_add(1, Relaxed);
                    return;
                }
                Ok(Decision::Ignore) | Err(_) => return,
            };
            debug!(network = %network, ?reply, mac = %MacAddr(request.chaddr), "DHCP reply");
            match dhcp::build_reply(&request, reply, &config) {
                Ok(frame) => {
                    send_plain(&link, &frame).await;
                    counters.dhcp_replies.fetch_add(1, Relaxed);
                }
                Err(e) => warn!(network = %network, error = %e, "cannot build DHCP reply"),
            }
        });
    }
}
