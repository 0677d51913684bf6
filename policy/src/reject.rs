//! The answer a `reject` rule sends back so the client fails at once: a TCP reset for TCP, an
//! ICMP or ICMPv6 port unreachable for anything else, from the address the client tried to
//! reach. Never an answer to an answer: no reset for a reset, no error for an ICMP error.

use std::net::IpAddr;

use etherparse::{
    icmpv4, icmpv6, Icmpv4Type, Icmpv6Type, LaxNetSlice, LaxSlicedPacket, PacketBuilder, TcpHeader,
    TransportSlice,
};

use crate::packet::{proto, tcp_flags, Packet};

/// Bytes of the offending packet quoted in an ICMPv4 error (its header and 8 bytes, RFC 792).
const ICMPV4_QUOTE: usize = 28;
/// ICMPv6 errors quote as much as fits the minimum MTU (RFC 4443).
const ICMPV6_QUOTE: usize = 1280 - 40 - 8;

/// Writes into `out` the frame answering `frame` (whose fields are `packet`), tagged as
/// `frame` is; returns false (and leaves `out` empty) when nothing should be sent back.
pub fn build(frame: &[u8], packet: &Packet, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some((dst_mac, src_mac)) = frame.get(0..6).zip(frame.get(6..12)) else {
        return false;
    };
    if dst_mac[0] & 1 == 1 || is_group(packet.dst) {
        return false;
    }
    let Ok(sliced) = LaxSlicedPacket::from_ethernet(frame) else {
        return false;
    };
    let (Some(net), Some(transport)) = (&sliced.net, &sliced.transport) else {
        return false;
    };
    if !matches!(net, LaxNetSlice::Ipv4(_) | LaxNetSlice::Ipv6(_)) {
        return false;
    }
    let ip_offset = l2_len(frame);
    let builder = PacketBuilder::ethernet2(mac(dst_mac), mac(src_mac));
    let builder = match (packet.dst, packet.src) {
        (IpAddr::V4(me), IpAddr::V4(them)) => builder.ipv4(me.octets(), them.octets(), 64),
        (IpAddr::V6(me), IpAddr::V6(them)) => builder.ipv6(me.octets(), them.octets(), 64),
        _ => return false,
    };
    let written = match transport {
        TransportSlice::Tcp(tcp) => {
            if packet.has_flag(tcp_flags::RST) {
                return false;
            }
            let seg_len = tcp.payload().len() as u32
                + u32::from(packet.has_flag(tcp_flags::SYN))
                + u32::from(packet.has_flag(tcp_flags::FIN));
            let mut reset = TcpHeader::new(packet.dport, packet.sport, 0, 0);
            reset.rst = true;
            if packet.has_flag(tcp_flags::ACK) {
                // RFC 793: the reset takes its sequence number from the segment's ACK field.
                reset.sequence_number = tcp.acknowledgment_number();
            } else {
                reset.ack = true;
                reset.acknowledgment_number = tcp.sequence_number().wrapping_add(seg_len);
            }
            builder.tcp_header(reset).write(out, &[])
        }
        _ if is_icmp_error(packet) => return false,
        _ => {
            let offending = frame.get(ip_offset..).unwrap_or_default();
            match packet.src {
                IpAddr::V4(_) => builder
                    .icmpv4(Icmpv4Type::DestinationUnreachable(
                        icmpv4::DestUnreachableHeader::Port,
                    ))
                    .write(out, &offending[..offending.len().min(ICMPV4_QUOTE)]),
                IpAddr::V6(_) => builder
                    .icmpv6(Icmpv6Type::DestinationUnreachable(
                        icmpv6::DestUnreachableCode::Port,
                    ))
                    .write(out, &offending[..offending.len().min(ICMPV6_QUOTE)]),
            }
        }
    };
    if written.is_err() {
        out.clear();
        return false;
    }
    splice_tag(frame, out)
}

/// Length of the Ethernet header with its 802.1Q/802.1ad tags.
fn l2_len(frame: &[u8]) -> usize {
    let mut len = 14;
    while matches!(frame.get(len - 2..len), Some([0x81, 0x00] | [0x88, 0xa8])) {
        len += 4;
    }
    len
}

/// Puts `frame`'s 802.1Q tag (if it has one) into `out` after the MAC addresses.
fn splice_tag(frame: &[u8], out: &mut Vec<u8>) -> bool {
    if frame.len() >= 16 && matches!([frame[12], frame[13]], [0x81, 0x00] | [0x88, 0xa8]) {
        let tag: [u8; 4] = [frame[12], frame[13], frame[14], frame[15]];
        out.splice(12..12, tag);
    }
    !out.is_empty()
}

fn mac(bytes: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(bytes);
    m
}

fn is_group(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// ICMP messages that are not requests: errors and replies get no error back.
fn is_icmp_error(packet: &Packet) -> bool {
    match packet.proto {
        proto::ICMP => !matches!(packet.icmp_type, Some(8 | 13 | 15 | 17)),
        proto::ICMPV6 => !matches!(packet.icmp_type, Some(128)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SERVER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn syn() -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(CLIENT, SERVER)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5432, 1000, 64000)
            .syn()
            .write(&mut frame, &[])
            .unwrap();
        frame
    }

    #[test]
    fn tcp_syn_gets_a_reset_acking_it() {
        let frame = syn();
        let packet = Packet::parse(&frame).unwrap();
        let mut out = Vec::new();
        assert!(build(&frame, &packet, &mut out));
        let reply = Packet::parse(&out).unwrap();
        assert_eq!((reply.src, reply.dst), (packet.dst, packet.src));
        assert_eq!((reply.sport, reply.dport), (5432, 40000));
        assert!(reply.has_flag(tcp_flags::RST) && reply.has_flag(tcp_flags::ACK));
        assert_eq!(&out[0..6], &CLIENT);
        let sliced = LaxSlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!()
        };
        assert_eq!(tcp.acknowledgment_number(), 1001);
        // Checksums verified by a full (strict) parse and recomputation.
        let ip = sliced.net.unwrap();
        let LaxNetSlice::Ipv4(ip) = ip else { panic!() };
        let header = tcp.to_header();
        assert_eq!(
            header
                .calc_checksum_ipv4(&ip.header().to_header(), &[])
                .unwrap(),
            header.checksum
        );
        // A reset gets no answer.
        let rst = Packet::parse(&out).unwrap();
        assert!(!build(&out, &rst, &mut Vec::new()));
    }

    #[test]
    fn tcp_ack_gets_a_reset_with_its_ack_as_sequence() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(CLIENT, SERVER)
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 80, 5, 64000)
            .ack(777)
            .write(&mut frame, b"data")
            .unwrap();
        let packet = Packet::parse(&frame).unwrap();
        let mut out = Vec::new();
        assert!(build(&frame, &packet, &mut out));
        let sliced = LaxSlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!()
        };
        assert!(tcp.rst() && !tcp.ack());
        assert_eq!(tcp.sequence_number(), 777);
        let Some(LaxNetSlice::Ipv6(ip)) = sliced.net else {
            panic!()
        };
        let header = tcp.to_header();
        assert_eq!(
            header
                .calc_checksum_ipv6(&ip.header().to_header(), &[])
                .unwrap(),
            header.checksum
        );
    }

    #[test]
    fn udp_gets_port_unreachable_quoting_it_and_keeps_the_tag() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(CLIENT, SERVER)
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 53)
            .write(&mut frame, &[0; 100])
            .unwrap();
        let packet = Packet::parse(&frame).unwrap();
        let mut out = Vec::new();
        assert!(build(&frame, &packet, &mut out));
        assert_eq!(&out[12..16], &frame[12..16]);
        let reply = Packet::parse(&out).unwrap();
        assert_eq!((reply.proto, reply.icmp_type), (proto::ICMP, Some(3)));
        assert_eq!(out.len(), 18 + 20 + 8 + ICMPV4_QUOTE);
        // An ICMP error gets nothing back.
        assert!(!build(&out, &reply, &mut Vec::new()));
    }

    #[test]
    fn truncated_frames_are_answered_or_refused_without_panicking() {
        let frame = syn();
        for len in 0..frame.len() {
            if let Some(p) = Packet::parse(&frame[..len]) {
                let _ = build(&frame[..len], &p, &mut Vec::new());
            }
        }
    }
}
