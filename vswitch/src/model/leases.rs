//! DHCP lease decisions: which address a client gets, as a pure function over the network's
//! record (endpoints, ranges, leases) and the time. The gateway parses and answers DHCP; the
//! control plane runs this under its lock, so leases and static addresses never collide, and
//! persists the result, so leases survive a restart.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::ipam;
use super::{taken_addresses, LeaseRecord, NetworkRecord};
use vswitch_core::frame::MacAddr;

/// Default lease time, seconds.
pub const DEFAULT_LEASE_SECS: u64 = 3600;
/// How long an offered address is held for the client that was offered it, seconds.
const OFFER_HOLD_SECS: u64 = 60;
/// How long an expired lease is remembered, so its client gets the same address back.
const EXPIRED_KEPT_SECS: u64 = 86_400;
/// Offers and leases one port's clients may hold at once unless its endpoint says otherwise:
/// a container is one client, a port fronting VMs a few; enough that no port can exhaust a
/// pool.
pub const DEFAULT_LEASES_PER_PORT: u32 = 4;

/// What the client asks (DHCP message type and the fields that matter for the decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseQuery {
    /// Message type.
    pub kind: QueryKind,
    /// Client hardware address.
    pub mac: MacAddr,
    /// Client's current address (renewing, rebinding, releasing, informing).
    pub ciaddr: Ipv4Addr,
    /// Address asked for (option 50).
    pub requested: Option<Ipv4Addr>,
    /// Server the client chose (option 54).
    pub server_id: Option<Ipv4Addr>,
    /// Host name the client sent.
    pub hostname: Option<String>,
    /// The endpoint whose port the client sent from, if known, and how many offers and leases
    /// that port's clients may hold: a new client past that is refused.
    pub port: Option<(String, u32)>,
}

/// DHCP client message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// Looking for servers and an address.
    Discover,
    /// Taking an offer, renewing, rebinding or rebooting.
    Request,
    /// The offered address is in use by someone else.
    Decline,
    /// Giving the address back.
    Release,
    /// Configuration only, the client has an address.
    Inform,
}

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// DHCPOFFER of this address.
    Offer(Ipv4Addr),
    /// DHCPACK of this address.
    Ack(Ipv4Addr),
    /// DHCPNAK: the client must start over.
    Nak,
    /// DHCPACK to an INFORM: configuration without an address.
    InformAck,
    /// No answer: the client's port holds all the offers and leases it may.
    Refused,
    /// No answer.
    Ignore,
}

/// The DHCP subnet of a network (its first IPv4 subnet) and the server's address on it.
fn dhcp_subnet(network: &NetworkRecord) -> Option<(IpNet, Ipv4Addr)> {
    network.subnets.iter().find_map(|s| match s.gateway {
        IpAddr::V4(gw) => Some((s.subnet, gw)),
        IpAddr::V6(_) => None,
    })
}

/// Decides the answer to `query` at `now` (Unix seconds), updating `network.leases`. Returns
/// the decision and whether the leases changed (and must be saved).
pub fn decide(
    network: &mut NetworkRecord,
    query: &LeaseQuery,
    now: u64,
    lease_secs: u64,
) -> (Decision, bool) {
    let Some((subnet, server)) = dhcp_subnet(network) else {
        return (Decision::Ignore, false);
    };
    let (decision, changed) = decide_for(network, query, subnet, server, now, lease_secs);
    let before = network.leases.len();
    network
        .leases
        .retain(|l| l.expires.saturating_add(EXPIRED_KEPT_SECS) > now);
    (decision, changed || network.leases.len() != before)
}

fn decide_for(
    network: &mut NetworkRecord,
    query: &LeaseQuery,
    subnet: IpNet,
    server: Ipv4Addr,
    now: u64,
    lease_secs: u64,
) -> (Decision, bool) {
    let own = network.leases.iter().position(|l| l.mac == query.mac);
    let new_client =
        own.is_none() && matches!(query.kind, QueryKind::Discover | QueryKind::Request);
    if new_client {
        if let Some((endpoint, allowed)) = &query.port {
            let held = network
                .leases
                .iter()
                .filter(|l| l.expires > now && l.endpoint.as_ref() == Some(endpoint))
                .count();
            if held >= *allowed as usize {
                return (Decision::Refused, false);
            }
        }
    }
    match query.kind {
        QueryKind::Discover => {
            let current = own.map(|i| network.leases[i].ip);
            let candidates = current.into_iter().chain(query.requested);
            let ip = candidates
                .into_iter()
                .find(|ip| is_free_for(network, &subnet, server, *ip, query.mac, now))
                .or_else(|| allocate(network, &subnet, query.mac, now));
            let Some(ip) = ip else {
                return (Decision::Ignore, false);
            };
            let expires = own
                .map(|i| network.leases[i].expires)
                .unwrap_or(0)
                .max(now + OFFER_HOLD_SECS);
            // An offer to a client that holds a lease keeps it a lease.
            let offered = own.is_none_or(|i| network.leases[i].offered);
            let changed = commit(network, query, ip, expires, offered);
            (Decision::Offer(ip), changed)
        }
        QueryKind::Request => {
            if query.server_id.is_some_and(|s| s != server) {
                // The client took another server's offer: release what we held for it.
                let offered_only =
                    own.filter(|i| network.leases[*i].expires <= now + OFFER_HOLD_SECS);
                if let Some(i) = offered_only {
                    network.leases.remove(i);
                    return (Decision::Ignore, true);
                }
                return (Decision::Ignore, false);
            }
            let asked = query
                .requested
                .or((!query.ciaddr.is_unspecified()).then_some(query.ciaddr));
            let Some(ip) = asked else {
                return (Decision::Nak, false);
            };
            let ours_already = own.is_some_and(|i| network.leases[i].ip == ip);
            let in_ranges = ours_already || in_ranges(network, &subnet, ip);
            if !in_ranges || !is_free_for(network, &subnet, server, ip, query.mac, now) {
                return (Decision::Nak, false);
            }
            commit(network, query, ip, now + lease_secs, false);
            (Decision::Ack(ip), true)
        }
        QueryKind::Release => match own {
            Some(i) if network.leases[i].ip == query.ciaddr => {
                network.leases.remove(i);
                (Decision::Ignore, true)
            }
            _ => (Decision::Ignore, false),
        },
        QueryKind::Decline => match own {
            Some(i) => {
                network.leases.remove(i);
                (Decision::Ignore, true)
            }
            None => (Decision::Ignore, false),
        },
        QueryKind::Inform => (Decision::InformAck, false),
    }
}

/// Records that `query.mac` holds `ip` (taken, or only `offered`) until `expires`, replacing
/// its previous lease and any expired lease of another client on that address.
fn commit(
    network: &mut NetworkRecord,
    query: &LeaseQuery,
    ip: Ipv4Addr,
    expires: u64,
    offered: bool,
) -> bool {
    let lease = LeaseRecord {
        mac: query.mac,
        ip,
        expires,
        hostname: query.hostname.clone(),
        endpoint: query.port.as_ref().map(|(endpoint, _)| endpoint.clone()),
        offered,
    };
    let before = network.leases.clone();
    network.leases.retain(|l| l.mac != query.mac && l.ip != ip);
    network.leases.push(lease);
    network.leases.sort_by_key(|l| l.ip);
    network.leases != before
}

fn in_ranges(network: &NetworkRecord, subnet: &IpNet, ip: Ipv4Addr) -> bool {
    let ranges: Vec<&IpNet> = network
        .ip_ranges
        .iter()
        .filter(|r| subnet.contains(&r.network()))
        .collect();
    ranges.is_empty() || ranges.iter().any(|r| r.contains(&IpAddr::V4(ip)))
}

/// Whether `mac` may hold `ip`: a host address of the subnet that is not the gateway, no
/// endpoint's, and not under another client's live lease.
fn is_free_for(
    network: &NetworkRecord,
    subnet: &IpNet,
    server: Ipv4Addr,
    ip: Ipv4Addr,
    mac: MacAddr,
    now: u64,
) -> bool {
    let addr = IpAddr::V4(ip);
    ipam::is_host_address(subnet, addr)
        && ip != server
        && !network.subnets.iter().any(|s| s.gateway == addr)
        && !network
            .endpoints
            .values()
            .any(|e| e.addresses.iter().any(|a| a.addr() == addr))
        && !network
            .leases
            .iter()
            .any(|l| l.ip == ip && l.mac != mac && l.expires > now)
}

/// A new address for `mac`: the lowest free one in the ranges, reusing expired leases of
/// others only when nothing else is left.
fn allocate(network: &NetworkRecord, subnet: &IpNet, mac: MacAddr, now: u64) -> Option<Ipv4Addr> {
    let mut taken = taken_addresses(network);
    let fresh = ipam::allocate_in(subnet, &network.ip_ranges, &taken);
    let fresh = fresh.or_else(|| {
        for lease in &network.leases {
            if lease.mac != mac && lease.expires <= now {
                taken.remove(&IpAddr::V4(lease.ip));
            }
        }
        ipam::allocate_in(subnet, &network.ip_ranges, &taken)
    });
    match fresh {
        Some(IpAddr::V4(ip)) => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{plan_network, NetworkCreate};
    use std::collections::BTreeMap;

    fn network(ranges: &[&str]) -> NetworkRecord {
        let req = NetworkCreate {
            name: "app".into(),
            subnets: vec!["10.9.0.0/29".into()],
            ip_ranges: ranges.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        plan_network(&req, &BTreeMap::new()).unwrap()
    }

    fn query(kind: QueryKind, mac: u8) -> LeaseQuery {
        LeaseQuery {
            kind,
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server_id: None,
            hostname: None,
            port: None,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn offer_then_ack(net: &mut NetworkRecord, mac: u8, now: u64) -> Ipv4Addr {
        let (Decision::Offer(offered), _) =
            decide(net, &query(QueryKind::Discover, mac), now, 3600)
        else {
            panic!("no offer");
        };
        let mut req = query(QueryKind::Request, mac);
        req.requested = Some(offered);
        req.server_id = Some(ip("10.9.0.1"));
        assert_eq!(decide(net, &req, now, 3600).0, Decision::Ack(offered));
        offered
    }

    #[test]
    fn two_clients_get_different_addresses_and_keep_theirs() {
        let mut net = network(&[]);
        let a = offer_then_ack(&mut net, 1, 100);
        let b = offer_then_ack(&mut net, 2, 100);
        assert_eq!((a, b), (ip("10.9.0.2"), ip("10.9.0.3")));
        assert_eq!(offer_then_ack(&mut net, 1, 200), a);
    }

    #[test]
    fn renew_by_ciaddr_and_release_frees() {
        let mut net = network(&[]);
        let a = offer_then_ack(&mut net, 1, 100);
        let mut renew = query(QueryKind::Request, 1);
        renew.ciaddr = a;
        assert_eq!(decide(&mut net, &renew, 2000, 3600).0, Decision::Ack(a));
        assert_eq!(net.leases[0].expires, 5600);
        let mut release = query(QueryKind::Release, 1);
        release.ciaddr = a;
        assert_eq!(
            decide(&mut net, &release, 2001, 3600),
            (Decision::Ignore, true)
        );
        assert!(net.leases.is_empty());
        assert_eq!(offer_then_ack(&mut net, 2, 2002), a);
    }

    #[test]
    fn request_for_someone_elses_address_is_refused() {
        let mut net = network(&[]);
        let a = offer_then_ack(&mut net, 1, 100);
        let mut steal = query(QueryKind::Request, 2);
        steal.requested = Some(a);
        assert_eq!(decide(&mut net, &steal, 101, 3600).0, Decision::Nak);
        let mut gateway = query(QueryKind::Request, 2);
        gateway.requested = Some(ip("10.9.0.1"));
        assert_eq!(decide(&mut net, &gateway, 101, 3600).0, Decision::Nak);
        let mut outside = query(QueryKind::Request, 2);
        outside.requested = Some(ip("192.168.1.5"));
        assert_eq!(decide(&mut net, &outside, 101, 3600).0, Decision::Nak);
    }

    #[test]
    fn static_endpoints_are_skipped() {
        let mut net = network(&[]);
        net.endpoints.insert(
            "web".into(),
            crate::model::EndpointRecord {
                name: "web".into(),
                netns: "web".into(),
                netns_inode: 0,
                ifname: "eth0".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                addresses: vec!["10.9.0.2/29".parse().unwrap()],
                offload: true,
                mtu: None,
                aliases: vec![],
                dhcp: false,
                dhcp_leases: None,
                port_security: true,
                labels: Default::default(),
                rate_limit: None,
                published: Vec::new(),
                docker_endpoint: None,
                cni_container: None,
                foreign_namespace: false,
            },
        );
        assert_eq!(offer_then_ack(&mut net, 1, 100), ip("10.9.0.3"));
    }

    #[test]
    fn ranges_bound_the_pool_and_exhaustion_reuses_expired_leases() {
        let mut net = network(&["10.9.0.4/31"]);
        assert_eq!(offer_then_ack(&mut net, 1, 100), ip("10.9.0.4"));
        assert_eq!(offer_then_ack(&mut net, 2, 100), ip("10.9.0.5"));
        assert_eq!(
            decide(&mut net, &query(QueryKind::Discover, 3), 100, 3600).0,
            Decision::Ignore
        );
        // Client 1's lease ran out: its address goes to client 3.
        assert_eq!(offer_then_ack(&mut net, 3, 10_000), ip("10.9.0.4"));
        assert!(!net
            .leases
            .iter()
            .any(|l| l.mac == MacAddr([2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn long_expired_leases_are_forgotten() {
        let mut net = network(&[]);
        offer_then_ack(&mut net, 1, 100);
        decide(
            &mut net,
            &query(QueryKind::Inform, 2),
            100 + 3600 + 86_400 + 1,
            3600,
        );
        assert!(net.leases.is_empty());
    }

    #[test]
    fn rebinding_by_broadcast_keeps_the_address() {
        let mut net = network(&[]);
        let a = offer_then_ack(&mut net, 1, 100);
        let mut rebind = query(QueryKind::Request, 1);
        rebind.ciaddr = a;
        assert_eq!(decide(&mut net, &rebind, 3300, 3600).0, Decision::Ack(a));
    }

    #[test]
    fn choosing_another_server_drops_the_offer() {
        let mut net = network(&[]);
        decide(&mut net, &query(QueryKind::Discover, 1), 100, 3600);
        assert_eq!(net.leases.len(), 1);
        let mut other = query(QueryKind::Request, 1);
        other.server_id = Some(ip("10.9.0.6"));
        other.requested = Some(ip("10.9.0.2"));
        assert_eq!(
            decide(&mut net, &other, 101, 3600),
            (Decision::Ignore, true)
        );
        assert!(net.leases.is_empty());
    }

    #[test]
    fn a_port_holds_at_most_its_quota_of_offers_and_leases() {
        let mut net = network(&[]);
        let from_web = |kind, mac| LeaseQuery {
            port: Some(("web".to_string(), 2)),
            ..query(kind, mac)
        };
        assert!(matches!(
            decide(&mut net, &from_web(QueryKind::Discover, 1), 100, 3600).0,
            Decision::Offer(_)
        ));
        let mut take = from_web(QueryKind::Request, 2);
        take.requested = Some(ip("10.9.0.3"));
        assert_eq!(
            decide(&mut net, &take, 100, 3600).0,
            Decision::Ack(ip("10.9.0.3"))
        );
        // A third client behind the same port is refused, by DISCOVER and by REQUEST alike.
        assert_eq!(
            decide(&mut net, &from_web(QueryKind::Discover, 3), 100, 3600).0,
            Decision::Refused
        );
        let mut direct = from_web(QueryKind::Request, 4);
        direct.requested = Some(ip("10.9.0.4"));
        assert_eq!(decide(&mut net, &direct, 100, 3600).0, Decision::Refused);
        // Clients already holding something renew as before; other ports are not affected.
        assert!(matches!(
            decide(&mut net, &from_web(QueryKind::Discover, 1), 101, 3600).0,
            Decision::Offer(_)
        ));
        let from_db = LeaseQuery {
            port: Some(("db".to_string(), 2)),
            ..query(QueryKind::Discover, 5)
        };
        assert!(matches!(
            decide(&mut net, &from_db, 101, 3600).0,
            Decision::Offer(_)
        ));
        // Once the offer's hold has passed, it no longer counts.
        assert!(matches!(
            decide(&mut net, &from_web(QueryKind::Discover, 3), 100 + 61, 3600).0,
            Decision::Offer(_)
        ));
        // Offers are held as offers; the taken lease is not.
        let offered: Vec<bool> = net.leases.iter().map(|l| l.offered).collect();
        assert_eq!(
            offered.iter().filter(|o| !**o).count(),
            1,
            "{:?}",
            net.leases
        );
    }
}
