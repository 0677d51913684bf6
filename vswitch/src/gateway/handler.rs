//! What a network's gateway does with each frame the switch sends it and each event from
//! outside: the smoltcp interface holding the gateway addresses, DHCP, router advertisements,
//! DNS and both egress terminators. It never waits, so the data path worker that has a frame
//! for the gateway handles it on its own thread (`Link`'s receiver), and the gateway's task
//! handles what comes from outside; they share it behind a mutex.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, warn};

use super::device::FrameQueues;
use super::directory::Directory;
use super::dns_service::{Answer, TcpConn};
use super::segments::plain;
use super::{
    dhcp, egress, host, ndp, outside, tcp_egress, GatewayConfig, GatewayCounters, LeaseCall,
    RA_INTERVAL, TCP_WATCH,
};
use crate::datapath::link::{Call, Link};
use crate::model::leases::{Decision, LeaseQuery};
use vswitch_core::frame::MacAddr;
use vswitch_core::offload::{Offload, Segmenter, VNET_HDR_LEN};

/// A gateway's state and services.
pub(super) struct Handler {
    pub(super) config: GatewayConfig,
    /// The host interface: frames not for the gateway's own services go there.
    pub(super) host: Option<Arc<AsyncFd<tap::Queue>>>,
    /// The gateway addresses, which the host interface shares.
    pub(super) gateway_ips: Vec<IpAddr>,
    pub(super) ipv6_prefix: Option<Ipv6Net>,
    /// The link to its switch port.
    pub(super) link: Arc<Link>,
    pub(super) names: Arc<std::sync::RwLock<Directory>>,
    pub(super) leases: mpsc::Sender<LeaseCall>,
    pub(super) counters: Arc<GatewayCounters>,
    pub(super) queues: FrameQueues,
    pub(super) iface: Interface,
    pub(super) sockets: SocketSet<'static>,
    pub(super) udp: SocketHandle,
    pub(super) tcp: Vec<TcpConn>,
    pub(super) done_tx: mpsc::Sender<Answer>,
    pub(super) forwards: usize,
    /// UDP and ICMP echo to outside addresses (networks without a host interface).
    pub(super) egress: egress::Egress,
    /// TCP to outside addresses.
    pub(super) tcp_egress: tcp_egress::TcpEgress,
    /// Cuts offloaded frames that are not the TCP terminator's into wire frames.
    pub(super) segmenter: Segmenter,
    /// Where tasks are started, also from a worker's thread.
    pub(super) runtime: tokio::runtime::Handle,
    /// While a worker's call is handled: the frames that answer it, for that worker to send.
    pub(super) answers: Option<Vec<Vec<u8>>>,
    /// When the gateway's task next wakes for the stack's timers.
    pub(super) task_wakes_at: Instant,
    /// Wakes the task earlier, when a frame handled on a worker's thread moved a timer closer.
    pub(super) retime: Arc<Notify>,
}

/// Sends `frame` to the switch behind a virtio header that asks nothing of it.
pub(super) fn send_plain(link: &Link, frame: &[u8]) {
    link.push(plain(frame));
}

/// Which of the gateway's stacks a frame from the switch went into: only those need polling
/// after it (a datagram relayed to an outside socket, a DHCP or RS answer, need neither).
#[derive(Clone, Copy)]
struct Fed {
    /// The interface holding the gateway addresses (ARP, ping, DNS).
    stack: bool,
    /// The TCP terminator's.
    terminator: bool,
}

impl Fed {
    const STACK: Fed = Fed {
        stack: true,
        terminator: false,
    };
    const TERMINATOR: Fed = Fed {
        stack: false,
        terminator: true,
    };
    const NONE: Fed = Fed {
        stack: false,
        terminator: false,
    };

    fn and(self, other: Fed) -> Fed {
        Fed {
            stack: self.stack || other.stack,
            terminator: self.terminator || other.terminator,
        }
    }
}

/// Whether `frame` is IPv4 sent to a group (broadcast or multicast MAC).
fn is_ipv4_broadcast(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[0] & 1 == 1 && frame[12..14] == [0x08, 0x00]
}

impl Handler {
    /// A frame from the switch (virtio header first), on a data path worker's thread: handled,
    /// and whatever the stack answers queued for the switch at once.
    pub(super) fn receive(&mut self, datagram: &[u8], call: &mut Call<'_>) {
        self.answers = Some(Vec::new());
        let fed = self.handle_offloaded(datagram, call);
        if fed.stack {
            self.poll_stack();
        } else if fed.terminator {
            self.pump_terminator();
        }
        for frame in self.answers.take().unwrap_or_default() {
            call.answer(frame);
        }
        if fed.stack || fed.terminator {
            self.retime_if_sooner();
        }
    }

    /// Wakes the task if the stacks' timers now want it sooner than it planned.
    fn retime_if_sooner(&mut self) {
        if Instant::now() + self.poll_delay() < self.task_wakes_at {
            self.retime.notify_one();
        }
    }

    /// The egress socket watched as `id` may be readable, on a data path worker's thread:
    /// its answers go to the switch at once.
    pub(super) fn outside_ready(&mut self, id: u32, call: &mut Call<'_>) {
        if id & TCP_WATCH != 0 {
            // Queued: the TCP terminator's frames keep their order there (this worker reads it).
            self.tcp_egress.outside_ready(id & !TCP_WATCH);
            self.pump_terminator();
            self.retime_if_sooner();
            return;
        }
        for frame in self.egress.outside_ready(id) {
            call.answer(plain(&frame));
        }
    }

    /// Lets smoltcp take in queued frames, serves DNS, and sends whatever it emitted.
    pub(super) fn poll_stack(&mut self) {
        let now = smoltcp::time::Instant::now();
        self.iface.poll(now, &mut self.queues, &mut self.sockets);
        self.serve_udp_dns();
        self.serve_tcp_dns();
        self.iface.poll(now, &mut self.queues, &mut self.sockets);
        for frame in self.queues.take_tx() {
            self.send(&frame);
        }
        self.pump_terminator();
    }

    /// Queues what the TCP terminator has to send (behind their virtio headers): through the
    /// link's queue, where its segments keep their order.
    fn pump_terminator(&mut self) {
        for frame in self.tcp_egress.pump() {
            self.link.push(frame);
        }
    }

    /// How long until the stacks' timers want a poll.
    pub(super) fn poll_delay(&mut self) -> Duration {
        let now = smoltcp::time::Instant::now();
        self.iface
            .poll_delay(now, &self.sockets)
            .map_or(RA_INTERVAL, |d| Duration::from_micros(d.total_micros()))
            .min(self.tcp_egress.poll_delay().unwrap_or(RA_INTERVAL))
    }

    /// Sends `frame` to the switch: to the worker whose call is being handled, if one is.
    pub(super) fn send(&mut self, frame: &[u8]) {
        match &mut self.answers {
            Some(answers) => answers.push(plain(frame)),
            None => send_plain(&self.link, frame),
        }
    }

    /// A datagram from the switch: a frame behind its virtio header. TCP for beyond the
    /// network goes to the terminator as it is (a 64 KB segment stays one); any other frame
    /// with offloads is cut into wire frames, checksums filled in, for the rest of the gateway.
    fn handle_offloaded(&mut self, datagram: &[u8], call: &Call<'_>) -> Fed {
        let Some(frame) = datagram.get(VNET_HDR_LEN..) else {
            self.counters.frames_dropped.fetch_add(1, Relaxed);
            return Fed::NONE;
        };
        let offload = Offload::parse(datagram);
        if !offload.is_gso() && !offload.needs_csum() {
            return self.handle_frame(frame, call);
        }
        if self.host.is_none() {
            let routed = outside::Routed::parse(frame, self.config.mac.0);
            if routed.is_some_and(|r| self.tcp_egress.take(&r)) {
                return Fed::TERMINATOR;
            }
        }
        let frames: Vec<Vec<u8>> = match self.segmenter.wire_frames(&[frame], offload) {
            Ok(frames) => frames.map(<[u8]>::to_vec).collect(),
            Err(reason) => {
                self.counters.frames_dropped.fetch_add(1, Relaxed);
                debug!(network = %self.config.network, reason = reason.name(), "offloaded frame dropped");
                return Fed::NONE;
            }
        };
        frames.iter().fold(Fed::NONE, |fed, frame| {
            fed.and(self.handle_frame(frame, call))
        })
    }

    pub(super) fn send_router_advert(&mut self) {
        let frame = ndp::router_advert(self.config.mac, self.config.mtu, self.ipv6_prefix);
        self.send(&frame);
    }

    /// A frame from the switch: DHCP and router solicitations are answered here, the rest
    /// goes to smoltcp.
    fn handle_frame(&mut self, frame: &[u8], call: &Call<'_>) -> Fed {
        if let Some(dhcp_config) = &self.config.dhcp {
            match dhcp::parse_request(frame) {
                Ok(request) => {
                    self.counters.dhcp_requests.fetch_add(1, Relaxed);
                    self.spawn_dhcp_reply(request, dhcp_config.clone());
                    return Fed::NONE;
                }
                Err(dhcp::DhcpDrop::NotDhcp) => {}
                Err(reason) => {
                    self.counters.dhcp_dropped.fetch_add(1, Relaxed);
                    debug!(network = %self.config.network, reason = reason.name(), "DHCP message dropped");
                    return Fed::NONE;
                }
            }
        }
        if self.ipv6_prefix.is_some() && ndp::is_router_solicit(frame) {
            self.send_router_advert();
            return Fed::NONE;
        }
        // With a host interface, the host's kernel routes what leaves the network.
        if self.host.is_none() {
            // Parsed once for both egress paths.
            if let Some(routed) = outside::Routed::parse(frame, self.config.mac.0) {
                let mut answered = Vec::new();
                if self
                    .egress
                    .take(&routed, &|fd, id| call.watch(fd, id), &mut answered)
                {
                    for frame in answered {
                        self.send(&frame);
                    }
                    return Fed::NONE;
                }
                if self.tcp_egress.take(&routed) {
                    return Fed::TERMINATOR;
                }
            }
        }
        let recipient = match &self.host {
            Some(_) => host::recipient(frame, &self.gateway_ips),
            // Like Linux (icmp_echo_ignore_broadcasts), the gateway answers no broadcast ping:
            // of IPv4 broadcasts and multicasts its stack needs only ARP.
            None if is_ipv4_broadcast(frame) => return Fed::NONE,
            None => host::Recipient::Stack,
        };
        if let (Some(host), host::Recipient::Host | host::Recipient::Both) =
            (self.host.as_deref(), recipient)
        {
            if host.get_ref().send(frame).is_err() {
                self.counters.frames_dropped.fetch_add(1, Relaxed);
            }
        }
        if !matches!(recipient, host::Recipient::Stack | host::Recipient::Both) {
            return Fed::NONE;
        }
        if !self.queues.push_rx(frame.to_vec()) {
            self.counters.frames_dropped.fetch_add(1, Relaxed);
        }
        Fed::STACK
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
        self.runtime.spawn(async move {
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
                    send_plain(&link, &frame);
                    counters.dhcp_replies.fetch_add(1, Relaxed);
                }
                Err(e) => warn!(network = %network, error = %e, "cannot build DHCP reply"),
            }
        });
    }
}
