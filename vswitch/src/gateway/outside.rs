//! What lies beyond a network and what crosses its edge: which destinations are outside
//! (`Beyond`, `is_outside`), a frame a container sent to the gateway parsed once for both
//! egress paths (`Routed`), the packets built back to a container (`reply_builder`, ICMP
//! `unreachable`), and the counters both paths keep.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use etherparse::{
    icmpv4, icmpv6, Icmpv4Type, Icmpv6Type, LinkSlice, NetSlice, PacketBuilder, SlicedPacket,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::DNS_PORT;

/// Counters of a network's egress.
#[derive(Debug, Default)]
pub struct EgressCounters {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) flows: AtomicU64,
    pub(super) blocked: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) limited: AtomicU64,
    pub(super) expired: AtomicU64,
}

/// A snapshot of them, as `network inspect` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EgressStats {
    /// Datagrams (and reads of TCP streams) carried out of the network.
    pub sent: u64,
    /// Answers (and reads of TCP streams) carried back in.
    pub received: u64,
    /// Flows opened so far (UDP, ICMP echo and TCP).
    pub flows: u64,
    /// Packets to outside addresses refused: the network is `--internal`.
    pub blocked: u64,
    /// Packets dropped or connections refused: no socket allowed (ping sockets), an outside
    /// end refused or unreachable, a send or an answer that did not fit.
    pub dropped: u64,
    /// Flows not opened: the network or the container holds as many as it may.
    #[serde(default)]
    pub limited: u64,
    /// Flows closed for being idle.
    #[serde(default)]
    pub expired: u64,
}

impl EgressCounters {
    /// Current values.
    pub fn snapshot(&self) -> EgressStats {
        EgressStats {
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
            flows: self.flows.load(Relaxed),
            blocked: self.blocked.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            limited: self.limited.load(Relaxed),
            expired: self.expired.load(Relaxed),
        }
    }
}

/// Which destinations lie beyond a network, and where sockets reach them.
#[derive(Debug, Clone)]
pub struct Beyond {
    /// The network's subnets: nothing in them is beyond.
    pub local: Vec<IpNet>,
    /// The gateway's addresses.
    pub gateways: Vec<IpAddr>,
    /// The gateway's addresses lead to the daemon's loopback (except DNS, the gateway's own).
    pub host_loopback: bool,
}

impl Beyond {
    /// Where a socket reaches `dst`, as a container addressed it: `dst` itself if it lies
    /// beyond the network; the daemon's loopback for a gateway address under `host_loopback`;
    /// None if it stays in the network.
    pub fn target(&self, dst: SocketAddr) -> Option<SocketAddr> {
        if is_outside(&self.local, dst.ip()) {
            return Some(dst);
        }
        let to_loopback =
            self.host_loopback && dst.port() != DNS_PORT && self.gateways.contains(&dst.ip());
        let loopback = match dst {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        to_loopback.then_some(SocketAddr::new(loopback, dst.port()))
    }
}

/// A frame a container sent to the gateway's MAC, parsed as far as IP.
pub struct Routed<'a> {
    /// The frame.
    pub frame: &'a [u8],
    /// The frame, sliced.
    pub packet: SlicedPacket<'a>,
    /// Who sent it.
    pub container_mac: [u8; 6],
    /// Its IP source.
    pub src: IpAddr,
    /// Its IP destination.
    pub dst: IpAddr,
    /// Where its IP header starts in the frame (after Ethernet and any VLAN tags).
    pub ip_start: usize,
}

impl<'a> Routed<'a> {
    /// `frame` if it is IP for `gateway_mac`.
    pub fn parse(frame: &'a [u8], gateway_mac: [u8; 6]) -> Option<Routed<'a>> {
        let packet = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(LinkSlice::Ethernet2(ethernet)) = &packet.link else {
            return None;
        };
        if ethernet.destination() != gateway_mac {
            return None;
        }
        let container_mac = ethernet.source();
        let (src, dst, header) = match &packet.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::from(ip.header().source_addr()),
                IpAddr::from(ip.header().destination_addr()),
                ip.header().slice(),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                IpAddr::from(ip.header().source_addr()),
                IpAddr::from(ip.header().destination_addr()),
                ip.header().slice(),
            ),
            _ => return None,
        };
        let ip_start = header.as_ptr() as usize - frame.as_ptr() as usize;
        Some(Routed {
            frame,
            packet,
            container_mac,
            src,
            dst,
            ip_start,
        })
    }
}

/// What an ICMP destination unreachable says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The port is closed.
    Port,
    /// The host cannot be reached.
    Host,
}

/// ICMP (v4 or v6) destination unreachable on `ip`, quoting `quote` (the offending packet).
pub fn unreachable(
    ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    ipv4: bool,
    why: Unreachable,
    quote: &[u8],
) -> Option<Vec<u8>> {
    let mut frame = Vec::with_capacity(quote.len() + 64);
    if ipv4 {
        let header = match why {
            Unreachable::Port => icmpv4::DestUnreachableHeader::Port,
            Unreachable::Host => icmpv4::DestUnreachableHeader::Host,
        };
        ip.icmpv4(Icmpv4Type::DestinationUnreachable(header))
            .write(&mut frame, quote)
            .ok()?;
    } else {
        let code = match why {
            Unreachable::Port => icmpv6::DestUnreachableCode::Port,
            Unreachable::Host => icmpv6::DestUnreachableCode::Address,
        };
        ip.icmpv6(Icmpv6Type::DestinationUnreachable(code))
            .write(&mut frame, quote)
            .ok()?;
    }
    Some(frame)
}

/// A packet from `from` (an outside address) to a container, from the gateway's MAC.
pub fn reply_builder(
    gateway_mac: [u8; 6],
    container_mac: [u8; 6],
    from: IpAddr,
    to: IpAddr,
) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    let link = PacketBuilder::ethernet2(gateway_mac, container_mac);
    Some(match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => link.ipv4(from.octets(), to.octets(), 64),
        (IpAddr::V6(from), IpAddr::V6(to)) => link.ipv6(from.octets(), to.octets(), 64),
        _ => return None,
    })
}

/// The next watch id from `next` that `taken` does not hold, `next` moved past it. Ids keep
/// to 31 bits: the gateway marks the TCP terminator's with the 32nd.
pub fn free_watch_id(next: &mut u32, taken: impl Fn(u32) -> bool) -> u32 {
    loop {
        let id = *next;
        *next = (*next + 1) & 0x7FFF_FFFF;
        if !taken(id) {
            return id;
        }
    }
}

/// Whether `ip` lies beyond a network of `local` subnets: not in one of them, and a unicast
/// address a socket may send to.
pub fn is_outside(local: &[IpNet], ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => {
            v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified() || v4.is_loopback()
        }
        IpAddr::V6(v6) => {
            v6.is_multicast()
                || v6.is_unspecified()
                || v6.is_loopback()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    !special && !local.iter().any(|net| net.contains(&ip))
}
