use etherparse::{LaxNetSlice, LaxSlicedPacket, PacketBuilder, TransportSlice};
use proptest::prelude::*;

use super::*;

/// The same fields read with etherparse's lax slicing: the specification of `Packet::parse`,
/// which is stricter in one way: the IP version must be the one the ethertype says (etherparse
/// goes by the version nibble; a kernel drops such a packet).
fn reference(frame: &[u8]) -> Option<Packet> {
    let (ethertype, l3) = ethertype(frame)?;
    let version = frame.get(l3)? >> 4;
    if (ethertype, version) != (ETHERTYPE_IPV4, 4) && (ethertype, version) != (ETHERTYPE_IPV6, 6) {
        return None;
    }
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
        quoted: None,
    };
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            packet.sport = tcp.source_port();
            packet.dport = tcp.destination_port();
            packet.tcp_flags = tcp.slice()[13];
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

fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut f = Vec::new();
    eth()
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1, 2, 3, 4)
        .syn()
        .write(&mut f, b"x")
        .unwrap();
    out.push(f);
    let mut f = Vec::new();
    eth()
        .ipv6([1; 16], [2; 16], 64)
        .udp(53, 5353)
        .write(&mut f, b"dns")
        .unwrap();
    out.push(f);
    let mut f = Vec::new();
    eth()
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut f, b"p")
        .unwrap();
    out.push(f);
    let mut f = Vec::new();
    eth()
        .ipv6([1; 16], [2; 16], 64)
        .icmpv6_echo_reply(9, 1)
        .write(&mut f, b"p")
        .unwrap();
    out.push(f);
    let mut f = Vec::new();
    eth()
        .single_vlan(etherparse::VlanId::try_new(5).unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000)
        .write(&mut f, &[0; 20])
        .unwrap();
    out.push(f);
    // IPv6 with a hop-by-hop options header before TCP.
    let mut f = Vec::new();
    eth()
        .ipv6([1; 16], [2; 16], 64)
        .tcp(80, 81, 1, 1)
        .write(&mut f, &[])
        .unwrap();
    let tcp = f.split_off(14 + 40);
    f[14 + 6] = 0;
    f.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&tcp);
    let len = (f.len() - 54) as u16;
    f[18..20].copy_from_slice(&len.to_be_bytes());
    out.push(f);
    out
}

#[test]
fn reads_what_etherparse_reads() {
    for frame in frames() {
        let ours = Packet::parse(&frame).map(|p| Packet { quoted: None, ..p });
        assert!(ours.is_some());
        assert_eq!(ours, reference(&frame), "{frame:02x?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Truncated and corrupted frames: the same answer as etherparse, never a panic.
    #[test]
    fn agrees_with_etherparse_on_damaged_frames(
        which in 0usize..6,
        cut in 0usize..200,
        flips in prop::collection::vec((0usize..120, any::<u8>()), 0..4),
    ) {
        let mut frame = frames()[which].clone();
        for (at, byte) in flips {
            if let Some(b) = frame.get_mut(at) {
                *b = byte;
            }
        }
        frame.truncate(cut);
        // etherparse does not read quoted packets: compare the rest.
        let ours = Packet::parse(&frame).map(|p| Packet { quoted: None, ..p });
        let theirs = reference(&frame);
        // Where etherparse rejects an IP header we do too; where it reads one, we read the same.
        prop_assert_eq!(ours, theirs, "{:02x?}", frame);
    }
}

#[test]
fn icmp_errors_name_the_flow_they_quote() {
    for (tcp_or_udp, v6) in [(true, false), (false, false), (false, true), (true, true)] {
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = if v6 {
            eth.ipv6([1; 16], [2; 16], 64)
        } else {
            eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let mut frame = Vec::new();
        if tcp_or_udp {
            ip.tcp(40000, 5432, 1, 1000)
                .ack(5)
                .write(&mut frame, b"x")
                .unwrap();
        } else {
            ip.udp(40000, 9999).write(&mut frame, b"x").unwrap();
        }
        let original = Packet::parse(&frame).unwrap();
        // The reject answer to a TCP segment is a reset; make it an ICMP error regardless.
        let mut error = Vec::new();
        if tcp_or_udp {
            let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
            let quote = &frame[14..14 + if v6 { 48 } else { 28 }];
            if v6 {
                eth.ipv6([2; 16], [1; 16], 64)
                    .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
                    .write(&mut error, quote)
                    .unwrap();
            } else {
                eth.ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
                    .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                            next_hop_mtu: 1400,
                        },
                    ))
                    .write(&mut error, quote)
                    .unwrap();
            }
        } else {
            assert!(crate::reject::build(&frame, &original, &mut error));
        }
        let quoted = Packet::parse(&error).unwrap().quoted.expect("quoted flow");
        assert_eq!(
            (
                quoted.src,
                quoted.dst,
                quoted.proto,
                quoted.sport,
                quoted.dport
            ),
            (
                original.src,
                original.dst,
                original.proto,
                original.sport,
                original.dport
            )
        );
        // Truncated anywhere: no quoted flow or the right one, never a panic.
        for len in 0..error.len() {
            if let Some(q) = Packet::parse(&error[..len]).and_then(|p| p.quoted) {
                assert_eq!(q, quoted);
            }
        }
    }
}
