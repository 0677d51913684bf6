//! ARP and neighbour discovery suppression: an ARP request or IPv6 neighbour solicitation for
//! an address the control plane knows (a station on another host of an overlay) is answered by
//! the switch itself, out of the port it came in on, instead of being flooded to every host.
//! Docker's overlay and EVPN do the same.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::frame::MacAddr;

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// An untagged Ethernet frame holding an ARP packet for IPv4 over Ethernet.
const ARP_FRAME_LEN: usize = 14 + 28;
/// htype 1 (Ethernet), ptype 0x0800 (IPv4), hlen 6, plen 4.
const ARP_ETHERNET_IPV4: [u8; 6] = [0, 1, 8, 0, 6, 4];
const OP_REQUEST: [u8; 2] = [0, 1];
const OP_REPLY: [u8; 2] = [0, 2];

/// Addresses the switch answers ARP or neighbour solicitations for, and with which MAC.
pub type Neighbours = HashMap<IpAddr, MacAddr>;

const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Ethernet + IPv6 + a solicitation (type, code, checksum, reserved, target).
const NS_MIN_LEN: usize = 14 + 40 + 24;

/// If `frame` is an untagged ARP request (not a gratuitous one) or neighbour solicitation (not
/// duplicate address detection) for an address of `neighbours`, writes the answer into `out`
/// and returns true.
pub fn answer(neighbours: &Neighbours, frame: &[u8], out: &mut Vec<u8>) -> bool {
    if neighbours.is_empty() || frame.len() < 14 {
        return false;
    }
    match [frame[12], frame[13]] {
        ETHERTYPE_ARP => answer_arp(neighbours, frame, out),
        ETHERTYPE_IPV6 => answer_solicitation(neighbours, frame, out),
        _ => false,
    }
}

fn answer_arp(neighbours: &Neighbours, frame: &[u8], out: &mut Vec<u8>) -> bool {
    if frame.len() < ARP_FRAME_LEN
        || frame[12..14] != ETHERTYPE_ARP
        || frame[14..20] != ARP_ETHERNET_IPV4
        || frame[20..22] != OP_REQUEST
    {
        return false;
    }
    let arp = &frame[14..ARP_FRAME_LEN];
    let (sender_mac, sender_ip) = (&arp[8..14], &arp[14..18]);
    let target_ip = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
    if sender_ip == target_ip.octets() {
        return false;
    }
    let Some(target_mac) = neighbours.get(&IpAddr::V4(target_ip)) else {
        return false;
    };
    out.clear();
    out.extend_from_slice(sender_mac);
    out.extend_from_slice(&target_mac.0);
    out.extend_from_slice(&ETHERTYPE_ARP);
    out.extend_from_slice(&ARP_ETHERNET_IPV4);
    out.extend_from_slice(&OP_REPLY);
    out.extend_from_slice(&target_mac.0);
    out.extend_from_slice(&target_ip.octets());
    out.extend_from_slice(sender_mac);
    out.extend_from_slice(sender_ip);
    true
}

fn answer_solicitation(neighbours: &Neighbours, frame: &[u8], out: &mut Vec<u8>) -> bool {
    if frame.len() < NS_MIN_LEN {
        return false;
    }
    let ip = &frame[14..54];
    let icmp = &frame[54..];
    // Next header ICMPv6 (no extension headers), hop limit 255 as RFC 4861 requires.
    if ip[6] != ICMPV6 || ip[7] != 255 || icmp[0] != NEIGHBOR_SOLICITATION || icmp[1] != 0 {
        return false;
    }
    let source: [u8; 16] = ip[8..24].try_into().expect("16 bytes");
    let target: [u8; 16] = icmp[8..24].try_into().expect("16 bytes");
    // Duplicate address detection (from ::) is the owner's to answer.
    if Ipv6Addr::from(source).is_unspecified() {
        return false;
    }
    let Some(target_mac) = neighbours.get(&IpAddr::V6(Ipv6Addr::from(target))) else {
        return false;
    };
    let mut advertisement = Vec::with_capacity(32);
    advertisement.extend_from_slice(&[NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    // Solicited and override.
    advertisement.extend_from_slice(&[0x60, 0, 0, 0]);
    advertisement.extend_from_slice(&target);
    // Option 2, target link-layer address, 1 unit of 8 bytes.
    advertisement.extend_from_slice(&[2, 1]);
    advertisement.extend_from_slice(&target_mac.0);
    let checksum = icmpv6_checksum(&target, &source, &advertisement);
    advertisement[2..4].copy_from_slice(&checksum.to_be_bytes());
    out.clear();
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&target_mac.0);
    out.extend_from_slice(&ETHERTYPE_IPV6);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(advertisement.len() as u16).to_be_bytes());
    out.extend_from_slice(&[ICMPV6, 255]);
    out.extend_from_slice(&target);
    out.extend_from_slice(&source);
    out.extend_from_slice(&advertisement);
    true
}

/// The ICMPv6 checksum of `message` from `source` to `destination` (RFC 4443, over the IPv6
/// pseudo-header).
fn icmpv6_checksum(source: &[u8; 16], destination: &[u8; 16], message: &[u8]) -> u16 {
    let words = |bytes: &[u8]| -> u32 {
        bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    };
    let length = message.len() as u32;
    let mut sum = words(source) + words(destination) + (length >> 16) + (length & 0xffff);
    sum += u32::from(ICMPV6) + words(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::fixtures::{bytes, ARP_REQUEST};

    #[test]
    fn a_request_for_a_known_address_is_answered_for_its_owner() {
        let request = bytes(ARP_REQUEST);
        let target = Ipv4Addr::new(request[38], request[39], request[40], request[41]);
        let owner = MacAddr([2, 0, 0, 0, 0, 0x42]);
        let neighbours: Neighbours = [(IpAddr::V4(target), owner)].into();
        let mut reply = Vec::new();
        assert!(answer(&neighbours, &request, &mut reply));
        let parsed = etherparse::SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(etherparse::NetSlice::Arp(arp)) = parsed.net else {
            panic!("an ARP packet")
        };
        assert_eq!(arp.operation(), etherparse::ArpOperation::REPLY);
        assert_eq!(arp.sender_hw_addr(), &owner.0[..]);
        assert_eq!(arp.sender_protocol_addr(), &target.octets()[..]);
        assert_eq!(arp.target_hw_addr(), &request[22..28]);
        assert_eq!(&reply[0..6], &request[6..12], "back to the asker");
    }

    #[test]
    fn anything_else_is_left_to_flooding() {
        let request = bytes(ARP_REQUEST);
        let mut reply = Vec::new();
        let elsewhere: Neighbours =
            [(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), MacAddr([2; 6]))].into();
        assert!(
            !answer(&elsewhere, &request, &mut reply),
            "an address nobody named"
        );
        let target = Ipv4Addr::new(request[38], request[39], request[40], request[41]);
        let known: Neighbours = [(IpAddr::V4(target), MacAddr([2; 6]))].into();
        let mut reply_op = request.clone();
        reply_op[21] = 2;
        assert!(!answer(&known, &reply_op, &mut reply), "a reply");
        assert!(!answer(&known, &request[..30], &mut reply), "a runt");
    }

    #[test]
    fn a_solicitation_for_a_known_address_is_advertised_for_its_owner() {
        let asker = [0x02, 0, 0, 0, 0, 0x0a];
        let source: Ipv6Addr = "fd00:89::a".parse().unwrap();
        let target: Ipv6Addr = "fd00:89::b".parse().unwrap();
        let solicited_node: Ipv6Addr = "ff02::1:ff00:b".parse().unwrap();
        let mut solicitation = Vec::new();
        etherparse::PacketBuilder::ethernet2(asker, [0x33, 0x33, 0xff, 0, 0, 0x0b])
            .ipv6(source.octets(), solicited_node.octets(), 255)
            .icmpv6(etherparse::Icmpv6Type::NeighborSolicitation)
            .write(
                &mut solicitation,
                &[target.octets().as_slice(), &[1, 1], &asker].concat(),
            )
            .unwrap();
        let owner = MacAddr([2, 0, 0, 0, 0, 0x0b]);
        let neighbours: Neighbours = [(IpAddr::V6(target), owner)].into();
        let mut reply = Vec::new();
        assert!(answer(&neighbours, &solicitation, &mut reply));
        let parsed = etherparse::SlicedPacket::from_ethernet(&reply).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = parsed.transport else {
            panic!("ICMPv6")
        };
        let etherparse::Icmpv6Type::NeighborAdvertisement(flags) = icmp.icmp_type() else {
            panic!("an advertisement: {:?}", icmp.icmp_type())
        };
        assert!(flags.solicited && flags.r#override && !flags.router);
        let expected = icmp
            .icmp_type()
            .calc_checksum(target.octets(), source.octets(), icmp.payload())
            .unwrap();
        assert_eq!(icmp.checksum(), expected, "checksum");
        assert_eq!(&icmp.payload()[..16], &target.octets());
        assert_eq!(
            &icmp.payload()[18..24],
            &owner.0,
            "target link-layer address"
        );
        assert_eq!(&reply[0..6], &asker);
        // Duplicate address detection is left alone.
        let mut dad = solicitation.clone();
        dad[22..38].fill(0);
        assert!(!answer(&neighbours, &dad, &mut Vec::new()));
    }
}
