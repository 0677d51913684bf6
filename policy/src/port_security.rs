//! Port security: a container may only send as itself. Its frames must carry its own source
//! MAC, an IPv4/IPv6 source address it was given (or its link-local address, or the
//! unspecified address for DHCP discovery and duplicate address detection), ARP and neighbour
//! advertisements only about its own addresses, and it may not act as a DHCP server (rogue
//! DHCP). Other ethertypes pass on their source MAC alone. An IP header too broken to read is
//! refused (its source cannot be checked); a broken transport header does not hide the IP
//! source. The check never panics and allocates nothing; it reads the frame with the same
//! reader as policy rules (`packet`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{proto, Packet};

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const DHCPV6_SERVER_PORT: u16 = 547;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
const ICMPV6_ROUTER_ADVERT: u8 = 134;

/// What one port may send as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSecurity {
    /// The interface's MAC.
    pub mac: [u8; 6],
    /// IPv4 addresses it holds (static, or its DHCP lease).
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses it holds; its EUI-64 link-local address is always allowed.
    pub ipv6: Vec<Ipv6Addr>,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The Ethernet source is not the port's MAC.
    #[error("source MAC is not the port's")]
    SourceMac,
    /// The IP source is not one of the port's addresses.
    #[error("source address is not the port's")]
    SourceIp,
    /// An ARP packet speaks for another MAC or address.
    #[error("ARP sender is not the port's")]
    ArpSender,
    /// A neighbour or router advertisement speaks for an address that is not the port's.
    #[error("neighbour advertisement for an address not the port's")]
    NdpTarget,
    /// A DHCP or DHCPv6 server reply from a container.
    #[error("DHCP server reply from a container")]
    RogueDhcp,
}

impl Violation {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Violation::SourceMac => "source_mac",
            Violation::SourceIp => "source_ip",
            Violation::ArpSender => "arp_sender",
            Violation::NdpTarget => "ndp_target",
            Violation::RogueDhcp => "rogue_dhcp",
        }
    }
}

impl PortSecurity {
    /// Checks one untagged Ethernet frame sent by the port.
    pub fn check(&self, frame: &[u8]) -> Result<(), Violation> {
        if frame.len() < 14 || frame[6..12] != self.mac {
            return Err(Violation::SourceMac);
        }
        if frame[12..14] == ETHERTYPE_ARP {
            return self.check_arp(&frame[14..]);
        }
        // Lax reading: a broken transport header must not hide the IP source behind it.
        let Some((packet, transport)) = Packet::parse_with_transport(frame) else {
            // An IP header too broken to read cannot be let through on trust.
            return if Packet::is_ip(frame) {
                Err(Violation::SourceIp)
            } else {
                Ok(())
            };
        };
        let udp_ports = (packet.proto == proto::UDP && transport.is_some_and(|t| t.len() >= 8))
            .then_some((packet.sport, packet.dport));
        match packet.src {
            IpAddr::V4(src) => {
                if matches!(udp_ports, Some((DHCP_SERVER_PORT, _))) {
                    return Err(Violation::RogueDhcp);
                }
                let discovering =
                    src.is_unspecified() && udp_ports == Some((DHCP_CLIENT_PORT, DHCP_SERVER_PORT));
                if discovering || self.ipv4.contains(&src) {
                    Ok(())
                } else {
                    Err(Violation::SourceIp)
                }
            }
            IpAddr::V6(src) => {
                // Duplicate address detection and router solicitation before an address exists.
                if !src.is_unspecified() && !self.holds_v6(src) {
                    return Err(Violation::SourceIp);
                }
                match (udp_ports, packet.icmp_type, transport) {
                    (Some((DHCPV6_SERVER_PORT, _)), _, _) => Err(Violation::RogueDhcp),
                    (_, Some(_), Some(icmp)) if packet.proto == proto::ICMPV6 => {
                        self.check_icmpv6(icmp)
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn holds_v6(&self, addr: Ipv6Addr) -> bool {
        addr == link_local(self.mac) || self.ipv6.contains(&addr)
    }

    /// ARP over Ethernet/IPv4: the sender MAC must be the port's, the sender address one of
    /// its own (or unspecified: an address probe).
    fn check_arp(&self, arp: &[u8]) -> Result<(), Violation> {
        if arp.len() < 28 || arp[0..2] != [0, 1] || arp[2..4] != [0x08, 0x00] {
            return Ok(());
        }
        let sender_mac = &arp[8..14];
        let sender_ip = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
        if sender_mac != self.mac || !(sender_ip.is_unspecified() || self.ipv4.contains(&sender_ip))
        {
            return Err(Violation::ArpSender);
        }
        Ok(())
    }

    /// A container may not advertise itself as a router, nor answer for others' addresses.
    fn check_icmpv6(&self, icmp: &[u8]) -> Result<(), Violation> {
        match icmp.first() {
            Some(&ICMPV6_ROUTER_ADVERT) => Err(Violation::NdpTarget),
            Some(&ICMPV6_NEIGHBOR_ADVERT) if icmp.len() >= 24 => {
                let mut target = [0u8; 16];
                target.copy_from_slice(&icmp[8..24]);
                if self.holds_v6(Ipv6Addr::from(target)) {
                    Ok(())
                } else {
                    Err(Violation::NdpTarget)
                }
            }
            _ => Ok(()),
        }
    }
}

/// The EUI-64 link-local address of an interface with `mac` (the kernel's default).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 254];

    fn port() -> PortSecurity {
        PortSecurity {
            mac: MAC,
            ipv4: vec![Ipv4Addr::new(10, 0, 0, 2)],
            ipv6: vec!["fd00::2".parse().unwrap()],
        }
    }

    fn udp4(src_mac: [u8; 6], src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(src_mac, GW)
            .ipv4(src, [10, 0, 0, 1], 64)
            .udp(sport, dport)
            .write(&mut frame, b"x")
            .unwrap();
        frame
    }

    fn arp(sender_mac: [u8; 6], sender_ip: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend(MAC);
        frame.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        frame.extend(sender_mac);
        frame.extend(sender_ip);
        frame.extend([0; 6]);
        frame.extend([10, 0, 0, 1]);
        frame
    }

    fn icmpv6(src: &str, icmp: &[u8]) -> Vec<u8> {
        let src: Ipv6Addr = src.parse().unwrap();
        let mut frame = vec![0x33, 0x33, 0, 0, 0, 1];
        frame.extend(MAC);
        frame.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
        frame.extend((icmp.len() as u16).to_be_bytes());
        frame.extend([58, 255]);
        frame.extend(src.octets());
        frame.extend("ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        frame.extend(icmp);
        frame
    }

    fn neighbor_advert(target: &str) -> Vec<u8> {
        let mut icmp = vec![ICMPV6_NEIGHBOR_ADVERT, 0, 0, 0, 0x20, 0, 0, 0];
        icmp.extend(target.parse::<Ipv6Addr>().unwrap().octets());
        icmp
    }

    #[test]
    fn own_traffic_passes() {
        let p = port();
        assert_eq!(p.check(&udp4(MAC, [10, 0, 0, 2], 5000, 53)), Ok(()));
        assert_eq!(
            p.check(&udp4(MAC, [0, 0, 0, 0], 68, 67)),
            Ok(()),
            "DHCP discover"
        );
        assert_eq!(p.check(&arp(MAC, [10, 0, 0, 2])), Ok(()));
        assert_eq!(p.check(&arp(MAC, [0, 0, 0, 0])), Ok(()), "ARP probe");
        let ll = link_local(MAC).to_string();
        assert_eq!(p.check(&icmpv6(&ll, &neighbor_advert(&ll))), Ok(()));
        assert_eq!(
            p.check(&icmpv6("fd00::2", &neighbor_advert("fd00::2"))),
            Ok(())
        );
        assert_eq!(p.check(&icmpv6("::", &[135, 0, 0, 0])), Ok(()), "DAD");
    }

    #[test]
    fn spoofing_is_refused_with_its_reason() {
        let p = port();
        assert_eq!(
            p.check(&udp4(OTHER, [10, 0, 0, 2], 5000, 53)),
            Err(Violation::SourceMac)
        );
        assert_eq!(
            p.check(&udp4(MAC, [10, 0, 0, 3], 5000, 53)),
            Err(Violation::SourceIp)
        );
        assert_eq!(
            p.check(&udp4(MAC, [0, 0, 0, 0], 5000, 53)),
            Err(Violation::SourceIp)
        );
        assert_eq!(
            p.check(&udp4(MAC, [10, 0, 0, 2], 67, 68)),
            Err(Violation::RogueDhcp)
        );
        assert_eq!(p.check(&arp(MAC, [10, 0, 0, 1])), Err(Violation::ArpSender));
        assert_eq!(
            p.check(&arp(OTHER, [10, 0, 0, 2])),
            Err(Violation::ArpSender)
        );
        assert_eq!(
            p.check(&icmpv6("fd00::3", &[128, 0, 0, 0])),
            Err(Violation::SourceIp)
        );
        assert_eq!(
            p.check(&icmpv6("fd00::2", &neighbor_advert("fd00::1"))),
            Err(Violation::NdpTarget)
        );
        assert_eq!(
            p.check(&icmpv6(
                "fd00::2",
                &[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            )),
            Err(Violation::NdpTarget)
        );
        assert_eq!(p.check(&[0u8; 5]), Err(Violation::SourceMac));
        // A truncated transport header does not hide a spoofed source.
        let mut frame = udp4(MAC, [10, 0, 0, 3], 5000, 53);
        frame.truncate(14 + 20 + 3);
        frame[16..18].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(p.check(&frame), Err(Violation::SourceIp));
    }

    #[test]
    fn truncations_of_valid_frames_never_panic() {
        let p = port();
        let ll = link_local(MAC).to_string();
        for frame in [
            udp4(MAC, [10, 0, 0, 2], 5000, 53),
            arp(MAC, [10, 0, 0, 2]),
            icmpv6(&ll, &neighbor_advert(&ll)),
        ] {
            for len in 0..frame.len() {
                let _ = p.check(&frame[..len]);
            }
        }
    }
}
