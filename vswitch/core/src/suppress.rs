//! ARP suppression: an ARP request for an address the control plane knows (a station on
//! another host of an overlay) is answered by the switch itself, out of the port it came in
//! on, instead of being flooded to every host. Docker's overlay and EVPN do the same.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::frame::MacAddr;

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// An untagged Ethernet frame holding an ARP packet for IPv4 over Ethernet.
const ARP_FRAME_LEN: usize = 14 + 28;
/// htype 1 (Ethernet), ptype 0x0800 (IPv4), hlen 6, plen 4.
const ARP_ETHERNET_IPV4: [u8; 6] = [0, 1, 8, 0, 6, 4];
const OP_REQUEST: [u8; 2] = [0, 1];
const OP_REPLY: [u8; 2] = [0, 2];

/// Addresses the switch answers ARP for, and with which MAC.
pub type Neighbours = HashMap<Ipv4Addr, MacAddr>;

/// If `frame` is an untagged ARP request for an address of `neighbours` (not a gratuitous
/// one), writes the reply into `out` and returns true.
pub fn answer(neighbours: &Neighbours, frame: &[u8], out: &mut Vec<u8>) -> bool {
    if neighbours.is_empty()
        || frame.len() < ARP_FRAME_LEN
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
    let Some(target_mac) = neighbours.get(&target_ip) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::fixtures::{bytes, ARP_REQUEST};

    #[test]
    fn a_request_for_a_known_address_is_answered_for_its_owner() {
        let request = bytes(ARP_REQUEST);
        let target = Ipv4Addr::new(request[38], request[39], request[40], request[41]);
        let owner = MacAddr([2, 0, 0, 0, 0, 0x42]);
        let neighbours: Neighbours = [(target, owner)].into();
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
        let elsewhere: Neighbours = [(Ipv4Addr::new(192, 0, 2, 9), MacAddr([2; 6]))].into();
        assert!(
            !answer(&elsewhere, &request, &mut reply),
            "an address nobody named"
        );
        let target = Ipv4Addr::new(request[38], request[39], request[40], request[41]);
        let known: Neighbours = [(target, MacAddr([2; 6]))].into();
        let mut reply_op = request.clone();
        reply_op[21] = 2;
        assert!(!answer(&known, &reply_op, &mut reply), "a reply");
        assert!(!answer(&known, &request[..30], &mut reply), "a runt");
    }
}
