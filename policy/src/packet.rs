//! What policy looks at in a frame: addresses, protocol, ports or ICMP type, TCP flags. Parsed
//! laxly (a truncated transport header leaves ports at zero), without allocating or panicking.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// IP protocol numbers policy knows by name.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// TCP flags policy tracks.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The fields of an IP packet that rules and connection tracking use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (the last IPv6 extension header's next header).
    pub proto: u8,
    /// TCP/UDP source port, ICMP echo identifier, else 0.
    pub sport: u16,
    /// TCP/UDP destination port, ICMP echo identifier, else 0.
    pub dport: u16,
    /// ICMP/ICMPv6 type, for ICMP.
    pub icmp_type: Option<u8>,
    /// TCP flags, for TCP.
    pub tcp_flags: u8,
}

impl Packet {
    /// The IP packet in an Ethernet frame (with or without 802.1Q tags); `None` for anything
    /// else (ARP, LLDP, a header too short to hold addresses).
    pub fn parse(frame: &[u8]) -> Option<Packet> {
        let sliced = LaxSlicedPacket::from_ethernet(frame).ok()?;
        let (src, dst, proto) = match sliced.net? {
            LaxNetSlice::Ipv4(ip) => {
                let h = ip.header();
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    ip.payload().ip_number.0,
                )
            }
            LaxNetSlice::Ipv6(ip) => {
                let h = ip.header();
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    ip.payload().ip_number.0,
                )
            }
            _ => return None,
        };
        let mut packet = Packet {
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            icmp_type: None,
            tcp_flags: 0,
        };
        match sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                packet.sport = tcp.source_port();
                packet.dport = tcp.destination_port();
                // Byte 13 of the TCP header holds CWR..FIN.
                packet.tcp_flags = tcp.slice().get(13).copied().unwrap_or(0);
            }
            Some(TransportSlice::Udp(udp)) => {
                packet.sport = udp.source_port();
                packet.dport = udp.destination_port();
            }
            Some(TransportSlice::Icmpv4(icmp)) => packet.set_icmp(icmp.slice()),
            Some(TransportSlice::Icmpv6(icmp)) => packet.set_icmp(icmp.slice()),
            None => {}
        }
        Some(packet)
    }

    fn set_icmp(&mut self, header: &[u8]) {
        self.icmp_type = header.first().copied();
        if self.is_echo_request() || self.is_echo_reply() {
            // The identifier pairs requests with replies, as ports do.
            let id = header
                .get(4..6)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            self.sport = id;
            self.dport = id;
        }
    }

    /// An ICMP or ICMPv6 echo request.
    pub fn is_echo_request(&self) -> bool {
        matches!(
            (self.proto, self.icmp_type),
            (proto::ICMP, Some(8)) | (proto::ICMPV6, Some(128))
        )
    }

    /// An ICMP or ICMPv6 echo reply.
    pub fn is_echo_reply(&self) -> bool {
        matches!(
            (self.proto, self.icmp_type),
            (proto::ICMP, Some(0)) | (proto::ICMPV6, Some(129))
        )
    }

    /// Whether the TCP flag `flag` is set.
    pub fn has_flag(&self, flag: u8) -> bool {
        self.proto == proto::TCP && self.tcp_flags & flag != 0
    }
}
