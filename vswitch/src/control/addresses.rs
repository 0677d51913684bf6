//! The addresses an endpoint holds now (static ones, a DHCP client's live lease, its SLAAC
//! address), which port security and policy selectors both follow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::gateway;
use crate::model::{EndpointRecord, NetworkRecord};

/// What an endpoint may send as: its MAC and addresses, a DHCP client's live lease and SLAAC
/// address; None when port security is off for it.
pub(super) fn port_security(
    network: &NetworkRecord,
    endpoint: &EndpointRecord,
    now: u64,
) -> Option<policy::PortSecurity> {
    if !endpoint.port_security {
        return None;
    }
    let (ipv4, ipv6) = endpoint_addresses(network, endpoint, now);
    Some(policy::PortSecurity {
        mac: endpoint.mac.0,
        ipv4,
        ipv6,
    })
}

/// The addresses an endpoint holds now: static ones, a DHCP client's live lease and SLAAC
/// address, as IPv4 and IPv6.
pub(super) fn endpoint_addresses(
    network: &NetworkRecord,
    endpoint: &EndpointRecord,
    now: u64,
) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    for address in &endpoint.addresses {
        match address.addr() {
            IpAddr::V4(ip) => ipv4.push(ip),
            IpAddr::V6(ip) => ipv6.push(ip),
        }
    }
    if endpoint.dhcp {
        ipv4.extend(
            network
                .leases
                .iter()
                .filter(|l| l.mac == endpoint.mac && l.expires > now)
                .map(|l| l.ip),
        );
        for subnet in &network.subnets {
            if let ipnet::IpNet::V6(net) = subnet.subnet {
                if net.prefix_len() == 64 {
                    ipv6.push(gateway::ndp::eui64_address(net.network(), endpoint.mac));
                }
            }
        }
    }
    (ipv4, ipv6)
}
