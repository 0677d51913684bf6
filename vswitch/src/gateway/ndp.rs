//! Router advertisements (RFC 4861), built with smoltcp's wire types: they tell IPv6 hosts on
//! the network their default router, MTU and the /64 to autoconfigure from (SLAAC). smoltcp's
//! interface answers neighbour solicitations and echo itself but does not act as a router.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Packet, Ipv6Repr, NdiscPrefixInfoFlags, NdiscPrefixInformation, NdiscRepr,
    NdiscRouterFlags,
};

use vswitch_core::frame::{MacAddr, ETH_HEADER_LEN};

/// How long hosts may use the gateway as their default router after an advertisement.
const ROUTER_LIFETIME: Duration = Duration::from_secs(1800);
/// How long autoconfigured addresses stay valid / preferred without a new advertisement.
const VALID_LIFETIME: Duration = Duration::from_secs(86_400);
const PREFERRED_LIFETIME: Duration = Duration::from_secs(14_400);
/// The all-nodes group every advertisement goes to.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMPV6_ROUTER_SOLICIT: u8 = 133;

/// The modified EUI-64 interface identifier of `mac` under `prefix` (its first 64 bits): the
/// address the kernel autoconfigures by default (`addr_gen_mode` eui64).
pub fn eui64_address(prefix: Ipv6Addr, mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    let p = prefix.octets();
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&p[..8]);
    a[8..].copy_from_slice(&[m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(a)
}

/// The link-local address of an interface with `mac`.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    eui64_address(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), mac)
}

/// Whether `frame` (untagged Ethernet) is an ICMPv6 router solicitation.
pub fn is_router_solicit(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return false;
    }
    let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
        return false;
    };
    ip.next_header() == IpProtocol::Icmpv6 && ip.payload().first() == Some(&ICMPV6_ROUTER_SOLICIT)
}

/// A router advertisement from the gateway (`mac`, link-local source) to all nodes: default
/// router, `mtu`, and `prefix` for autoconfiguration when it is a /64.
pub fn router_advert(mac: MacAddr, mtu: u32, prefix: Option<Ipv6Net>) -> Vec<u8> {
    let prefix_info = prefix
        .filter(|p| p.prefix_len() == 64)
        .map(|p| NdiscPrefixInformation {
            prefix_len: 64,
            flags: NdiscPrefixInfoFlags::ON_LINK | NdiscPrefixInfoFlags::ADDRCONF,
            valid_lifetime: VALID_LIFETIME,
            preferred_lifetime: PREFERRED_LIFETIME,
            prefix: p.network(),
        });
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
        hop_limit: 64,
        flags: NdiscRouterFlags::empty(),
        router_lifetime: ROUTER_LIFETIME,
        reachable_time: Duration::ZERO,
        retrans_time: Duration::ZERO,
        lladdr: Some(EthernetAddress(mac.0).into()),
        mtu: Some(mtu),
        prefix_info,
    });
    let src = link_local(mac);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: ALL_NODES,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac.0),
        dst_addr: EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut frame = vec![0; ETH_HEADER_LEN + ip.buffer_len() + icmp.buffer_len()];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    let (_, rest) = frame.split_at_mut(ETH_HEADER_LEN);
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut rest[..]));
    let (_, icmp_bytes) = rest.split_at_mut(ip.buffer_len());
    icmp.emit(
        &src,
        &ALL_NODES,
        &mut Icmpv6Packet::new_unchecked(icmp_bytes),
        &ChecksumCapabilities::default(),
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);

    /// The ICMPv6 message of an advertisement frame, its checksum verified.
    fn parse_icmp(frame: &[u8]) -> Icmpv6Repr<'_> {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.dst_addr(), ALL_NODES);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        Icmpv6Repr::parse(
            &ip.src_addr(),
            &ip.dst_addr(),
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap()
    }

    #[test]
    fn eui64_flips_the_universal_bit_and_inserts_fffe() {
        assert_eq!(
            link_local(MAC),
            "fe80::42:acff:fe11:2".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn advert_parses_back_with_prefix_and_mtu() {
        let prefix: Ipv6Net = "fd00:1:2:3::/64".parse().unwrap();
        let frame = router_advert(MAC, 1500, Some(prefix));
        let repr = parse_icmp(&frame);
        let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
            mtu, prefix_info, ..
        }) = repr
        else {
            panic!("not a router advertisement: {repr:?}");
        };
        assert_eq!(mtu, Some(1500));
        assert_eq!(prefix_info.unwrap().prefix, prefix.network());
        assert!(!is_router_solicit(&frame));
    }

    #[test]
    fn only_a_64_is_offered_for_autoconfiguration() {
        let frame = router_advert(MAC, 1500, Some("fd00:1::/80".parse().unwrap()));
        let repr = parse_icmp(&frame);
        assert!(matches!(
            repr,
            Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
                prefix_info: None,
                ..
            })
        ));
    }
}
