//! IP address management: which address of a subnet an endpoint gets. Pure functions over the
//! set of addresses already taken; the gateway and the subnet's network and broadcast addresses
//! are never handed out.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// Whether two subnets share an address (one holds the other).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether `ip` may be given to a host in `subnet` (not the network or broadcast address).
pub fn is_host_address(subnet: &IpNet, ip: IpAddr) -> bool {
    if !subnet.contains(&ip) || ip == subnet.network() {
        return false;
    }
    match subnet {
        IpNet::V4(net) => net.prefix_len() >= 31 || ip != IpAddr::V4(net.broadcast()),
        IpNet::V6(_) => true,
    }
}

/// The first host address of `subnet`: the default gateway, as Docker picks it.
pub fn first_host(subnet: &IpNet) -> Option<IpAddr> {
    subnet.hosts().find(|ip| is_host_address(subnet, *ip))
}

/// The lowest free host address of `subnet`, skipping `taken`.
pub fn allocate(subnet: &IpNet, taken: &HashSet<IpAddr>) -> Option<IpAddr> {
    // `taken` is small next to the subnet, so this stops after at most |taken| + 2 steps.
    subnet
        .hosts()
        .find(|ip| is_host_address(subnet, *ip) && !taken.contains(ip))
}

/// The lowest free host address of `subnet` inside `ranges` (all of the subnet when no range
/// lies in it), skipping `taken`.
pub fn allocate_in(subnet: &IpNet, ranges: &[IpNet], taken: &HashSet<IpAddr>) -> Option<IpAddr> {
    let inside: Vec<&IpNet> = ranges
        .iter()
        .filter(|r| subnet.contains(&r.network()))
        .collect();
    if inside.is_empty() {
        return allocate(subnet, taken);
    }
    inside.into_iter().find_map(|range| {
        range
            .hosts()
            .chain([range.network(), range.broadcast()])
            .find(|ip| is_host_address(subnet, *ip) && !taken.contains(ip))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_lowest_free_host_skipping_taken() {
        let subnet: IpNet = "10.1.0.0/29".parse().unwrap();
        let mut taken: HashSet<IpAddr> = [ip("10.1.0.1")].into();
        let mut got = Vec::new();
        while let Some(next) = allocate(&subnet, &taken) {
            taken.insert(next);
            got.push(next);
        }
        let want: Vec<IpAddr> = (2..=6).map(|i| ip(&format!("10.1.0.{i}"))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ipv6_never_hands_out_the_subnet_router_anycast() {
        let subnet: IpNet = "fd00:1::/64".parse().unwrap();
        assert_eq!(first_host(&subnet), Some(ip("fd00:1::1")));
        let taken: HashSet<IpAddr> = [ip("fd00:1::1")].into();
        assert_eq!(allocate(&subnet, &taken), Some(ip("fd00:1::2")));
        assert!(!is_host_address(&subnet, ip("fd00:1::")));
    }

    #[test]
    fn ranges_restrict_allocation() {
        let subnet: IpNet = "10.1.0.0/24".parse().unwrap();
        let ranges: Vec<IpNet> = vec!["10.1.0.128/30".parse().unwrap()];
        let mut taken = HashSet::new();
        let mut got = Vec::new();
        while let Some(next) = allocate_in(&subnet, &ranges, &taken) {
            taken.insert(next);
            got.push(next);
        }
        let want: Vec<IpAddr> = (128..=131).map(|i| ip(&format!("10.1.0.{i}"))).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want);
        let other: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(
            allocate_in(&other, &ranges, &HashSet::new()),
            Some(ip("fd00::1"))
        );
    }

    #[test]
    fn network_and_broadcast_are_not_hosts() {
        let subnet: IpNet = "10.1.0.0/24".parse().unwrap();
        assert!(!is_host_address(&subnet, ip("10.1.0.0")));
        assert!(!is_host_address(&subnet, ip("10.1.0.255")));
        assert!(!is_host_address(&subnet, ip("10.1.1.5")));
        assert!(is_host_address(&subnet, ip("10.1.0.254")));
    }
}
