//! A network's gateway: a port of the switch inside this process, holding the gateway
//! addresses on a smoltcp interface. smoltcp answers ARP, ICMP echo and neighbour discovery;
//! the gateway adds router advertisements (`ndp`), a DHCPv4 server (`dhcp`, leases decided by
//! the control plane) and the embedded DNS server (`dns`, names from the `Directory`,
//! everything else forwarded upstream from the daemon's own namespace). It sees only frames
//! the switch delivers to it: those for its MAC, broadcasts and multicasts, never traffic
//! between two containers. Its port keeps offloads: every frame crosses it behind a virtio
//! header, so a container's 64 KB TSO segment reaches the TCP terminator whole; whatever else
//! comes offloaded is cut into wire frames (checksums filled in) before the rest looks at it.
//!
//! Its work is done where the traffic is: a frame for it is handled by the data path worker
//! that read it, on that thread (`handler`, through the link's `Port`), and so are the answers
//! from its egress sockets; its tokio task (`Task`) handles what comes from elsewhere (upstream
//! DNS answers, the host interface, published ports' clients, connections opened) and the
//! stacks' timers. Both lock the one `Handler`.

pub mod device;
pub mod dhcp;
pub mod directory;
pub mod dns;
mod dns_service;
pub mod egress;
mod handler;
pub mod host;
pub mod ndp;
pub mod outside;
pub mod resolv;
pub mod segments;
pub mod tcp_egress;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpListenEndpoint};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, warn};

use crate::datapath::link::{Call, Link, Port};
use crate::model::leases::{Decision, LeaseQuery};
use crate::model::SubnetRecord;
use device::FrameQueues;
use directory::Directory;
use dns_service::{Answer, TcpConn};
use handler::{send_plain, Handler};
use vswitch_core::frame::MacAddr;
use vswitch_core::offload::{Segmenter, VNET_HDR_LEN};

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
/// Marks the watch ids of the TCP terminator's connections (the rest are datagram flows').
const TCP_WATCH: u32 = 1 << 31;
/// Egress events handled before the stack is polled.
const EVENTS_PER_POLL: usize = 32;

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
    link: Arc<Link>,
    /// Its counters.
    pub counters: Arc<GatewayCounters>,
    /// Where published TCP ports hand in their clients.
    pub inbound: mpsc::Sender<tcp_egress::Event>,
    /// Where published UDP ports hand in their datagrams.
    pub datagrams: mpsc::Sender<egress::Answer>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.link.set_receiver(None);
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
    let beyond = outside::Beyond {
        local: config.subnets.iter().map(|s| s.subnet).collect(),
        gateways: config.subnets.iter().map(|s| s.gateway).collect(),
        host_loopback: config.host_loopback,
    };
    let (egress, answers) = egress::Egress::new(
        config.mac.0,
        config.mtu,
        beyond.clone(),
        config.internal,
        counters.egress.clone(),
    );
    let datagrams = egress.sender();
    let (tcp_egress, tcp_events) = tcp_egress::TcpEgress::new(
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
        {
            let link = link.clone();
            Box::new(move |fd, id| link.watch(fd, id | TCP_WATCH))
        },
    );
    let inbound = tcp_egress.sender();
    let (done_tx, done_rx) = mpsc::channel(MAX_FORWARDS);
    let host = host.map(Arc::new);
    let retime = Arc::new(Notify::new());
    let handler = Arc::new(Mutex::new(Handler {
        gateway_ips: config.subnets.iter().map(|s| s.gateway).collect(),
        host: host.clone(),
        ipv6_prefix: config.subnets.iter().find_map(|s| match s.subnet {
            IpNet::V6(net) => Some(net),
            IpNet::V4(_) => None,
        }),
        config,
        link: link.clone(),
        names,
        leases,
        counters: counters.clone(),
        queues,
        iface,
        sockets,
        udp,
        tcp,
        done_tx,
        forwards: 0,
        egress,
        tcp_egress,
        segmenter: Segmenter::default(),
        runtime: tokio::runtime::Handle::current(),
        answers: None,
        task_wakes_at: std::time::Instant::now(),
        retime: retime.clone(),
    }));
    link.set_receiver(Some(Arc::new(OnWorker {
        handler: Arc::downgrade(&handler),
        runtime: tokio::runtime::Handle::current(),
    })));
    let task = Task {
        handler,
        link: link.clone(),
        host,
        done: done_rx,
        tcp_events,
        answers,
        retime,
    };
    Ok(Gateway {
        task: tokio::spawn(task.run()),
        link,
        counters,
        inbound,
        datagrams,
    })
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

/// The gateway as the switch's workers call it: a worker that has a frame for the gateway, or
/// finds one of its egress sockets readable, handles it on its own thread.
struct OnWorker {
    /// Weak: the link must not keep the gateway alive.
    handler: Weak<Mutex<Handler>>,
    /// Tasks and sockets a frame starts belong to the daemon's runtime.
    runtime: tokio::runtime::Handle,
}

impl Port for OnWorker {
    fn receive(&self, frame: &[u8], call: &mut Call<'_>) {
        if let Some(handler) = self.handler.upgrade() {
            let _entered = self.runtime.enter();
            lock(&handler).receive(frame, call);
        }
    }

    fn outside_ready(&self, id: u32, call: &mut Call<'_>) {
        if let Some(handler) = self.handler.upgrade() {
            lock(&handler).outside_ready(id, call);
        }
    }
}

/// The gateway's task: what comes from outside the switch (the host interface, upstream DNS
/// answers, egress sockets) and the stacks' timers.
struct Task {
    handler: Arc<Mutex<Handler>>,
    link: Arc<Link>,
    host: Option<Arc<AsyncFd<tap::Queue>>>,
    done: mpsc::Receiver<Answer>,
    tcp_events: mpsc::Receiver<tcp_egress::Event>,
    answers: mpsc::Receiver<egress::Answer>,
    retime: Arc<Notify>,
}

impl Task {
    async fn run(mut self) {
        // A 64 KB IP packet behind Ethernet, VLAN and virtio headers.
        let mut buf = vec![0u8; VNET_HDR_LEN + 65_536 + 64];
        {
            let mut handler = lock(&self.handler);
            if handler.ipv6_prefix.is_some() {
                handler.send_router_advert();
            }
        }
        let mut next_ra = tokio::time::Instant::now() + RA_INTERVAL;
        let mut next_expiry = std::time::Instant::now() + EGRESS_EXPIRY_INTERVAL;
        loop {
            self.link.room().await;
            let delay = {
                let mut handler = lock(&self.handler);
                let now = std::time::Instant::now();
                if now >= next_expiry {
                    handler.egress.expire(now);
                    handler.tcp_egress.expire(now);
                    next_expiry = now + EGRESS_EXPIRY_INTERVAL;
                }
                handler.poll_stack();
                let delay = handler.poll_delay();
                handler.task_wakes_at = std::time::Instant::now() + delay;
                delay
            };
            let wake = (tokio::time::Instant::now() + delay).min(next_ra);
            tokio::select! {
                ready = host_readable(self.host.as_deref()) => {
                    let Ok(mut guard) = ready else {
                        warn!(network = %lock(&self.handler).config.network, "host interface failed");
                        return;
                    };
                    // Frames the host kernel sends to the containers.
                    while let Ok(result) = guard.try_io(|host| host.get_ref().recv(&mut buf)) {
                        match result {
                            Ok(len) => send_plain(&self.link, &buf[..len]),
                            Err(e) => {
                                debug!(error = %e, "host interface read failed");
                                break;
                            }
                        }
                    }
                }
                Some(answer) = self.done.recv() => {
                    let mut handler = lock(&self.handler);
                    handler.forwards -= 1;
                    handler.deliver(answer);
                }
                Some(event) = self.tcp_events.recv() => {
                    let mut handler = lock(&self.handler);
                    handler.tcp_egress.handle(event);
                    // Those already waiting too, before the stack is polled.
                    for _ in 1..EVENTS_PER_POLL {
                        let Ok(event) = self.tcp_events.try_recv() else {
                            break;
                        };
                        handler.tcp_egress.handle(event);
                    }
                }
                Some(answer) = self.answers.recv() => {
                    let mut handler = lock(&self.handler);
                    if let Some(frame) = handler.egress.answer(answer) {
                        handler.send(&frame);
                    }
                }
                _ = self.retime.notified() => {}
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= next_ra {
                        let mut handler = lock(&self.handler);
                        if handler.ipv6_prefix.is_some() {
                            handler.send_router_advert();
                        }
                        next_ra = tokio::time::Instant::now() + RA_INTERVAL;
                    }
                }
            }
        }
    }
}

fn lock(handler: &Mutex<Handler>) -> MutexGuard<'_, Handler> {
    handler
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rand_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
