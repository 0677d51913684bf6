//! The host interface of a network (`--host-iface`, Docker's `docker0`): a TAP device in the
//! daemon's own namespace that carries the gateway addresses and the gateway's MAC, so the
//! kernel there is the gateway for everything the gateway itself does not serve. The gateway
//! port splits what containers send it: DNS to the gateway goes to smoltcp, everything else
//! (ARP and neighbour solicitations, ping, connections to host services) to the host kernel;
//! answers to either's ARP and neighbour solicitations go to both.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// DNS, the one service of the gateway's own stack that shares the host's addresses.
const DNS_PORT: u16 = 53;
const ARP_REPLY: u16 = 2;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;

/// Who takes a frame sent to the gateway of a network with a host interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The gateway's own stack (DNS).
    Stack,
    /// The host kernel.
    Host,
    /// Both: replies to address resolution either may have asked for.
    Both,
}

/// Who takes `frame` (untagged Ethernet); `gateway_ips` are the addresses both share.
pub fn recipient(frame: &[u8], gateway_ips: &[IpAddr]) -> Recipient {
    if is_arp_reply(frame) {
        return Recipient::Both;
    }
    let Ok(packet) = SlicedPacket::from_ethernet(frame) else {
        return Recipient::Host;
    };
    let dst: IpAddr = match &packet.net {
        Some(NetSlice::Ipv4(ip)) => ip.header().destination_addr().into(),
        Some(NetSlice::Ipv6(ip)) => ip.header().destination_addr().into(),
        _ => return Recipient::Host,
    };
    match &packet.transport {
        Some(TransportSlice::Icmpv6(icmp)) if icmp.type_u8() == ICMPV6_NEIGHBOR_ADVERT => {
            Recipient::Both
        }
        Some(TransportSlice::Udp(udp))
            if udp.destination_port() == DNS_PORT && gateway_ips.contains(&dst) =>
        {
            Recipient::Stack
        }
        Some(TransportSlice::Tcp(tcp))
            if tcp.destination_port() == DNS_PORT && gateway_ips.contains(&dst) =>
        {
            Recipient::Stack
        }
        _ => Recipient::Host,
    }
}

fn is_arp_reply(frame: &[u8]) -> bool {
    // Ethernet (14) then ARP: htype 2, ptype 2, hlen 1, plen 1, then the 2-byte opcode.
    frame.len() >= 22
        && frame[12..14] == [0x08, 0x06]
        && u16::from_be_bytes([frame[20], frame[21]]) == ARP_REPLY
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const GW: [u8; 4] = [10, 0, 0, 1];

    fn gateway_ips() -> Vec<IpAddr> {
        vec![IpAddr::from(GW), "fd00::1".parse().unwrap()]
    }

    fn udp_to(dst: [u8; 4], port: u16) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4([10, 0, 0, 2], dst, 64)
            .udp(40000, port);
        let mut frame = Vec::new();
        builder.write(&mut frame, b"query").unwrap();
        frame
    }

    fn arp(opcode: u8) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend([2, 0, 0, 0, 0, 2, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, opcode]);
        frame.extend([0; 20]);
        frame
    }

    #[test]
    fn dns_to_the_gateway_goes_to_the_stack() {
        assert_eq!(recipient(&udp_to(GW, 53), &gateway_ips()), Recipient::Stack);
        let tcp = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv6(
                "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                64,
            )
            .tcp(40000, 53, 1, 1000);
        let mut frame = Vec::new();
        tcp.write(&mut frame, &[]).unwrap();
        assert_eq!(recipient(&frame, &gateway_ips()), Recipient::Stack);
    }

    #[test]
    fn everything_else_goes_to_the_host() {
        assert_eq!(recipient(&udp_to(GW, 80), &gateway_ips()), Recipient::Host);
        assert_eq!(
            recipient(&udp_to([10, 0, 0, 9], 53), &gateway_ips()),
            Recipient::Host
        );
        assert_eq!(recipient(&arp(1), &gateway_ips()), Recipient::Host);
        assert_eq!(recipient(&[0u8; 5], &gateway_ips()), Recipient::Host);
    }

    #[test]
    fn address_resolution_answers_go_to_both() {
        assert_eq!(recipient(&arp(2), &gateway_ips()), Recipient::Both);
    }
}
