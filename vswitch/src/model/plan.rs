//! The pure checks that turn a request into a record: names, subnets, addresses, MTUs, MACs
//! and interface names, each refused with a sentence naming the problem before anything
//! changes.

use super::publish::{parse_publish, PortMapping, MAX_PUBLISHED};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use policy::{NetworkPolicy, RateLimit};

use vswitch_core::frame::MacAddr;

use super::error::{invalid, ModelError};
use super::ipam;
use super::limits::*;
use super::names::{check_dns_name, check_name, check_names_free};
use super::overlay::{default_overlay_mtu, plan_overlay, OverlayRequest};
use super::records::*;

/// Smallest MTU IPv4 allows.
const MIN_MTU: u32 = 68;
/// Smallest MTU IPv6 allows.
const MIN_MTU_V6: u32 = 1280;
/// Largest MTU a TAP device takes with room for headers.
const MAX_MTU: u32 = 65_520;

fn parse_subnet(text: &str) -> Result<IpNet, ModelError> {
    let subnet: IpNet = text.parse().map_err(|_| {
        invalid(format!(
            "invalid subnet {text:?}: expected a CIDR such as 10.89.0.0/24"
        ))
    })?;
    if subnet.trunc() != subnet {
        return Err(invalid(format!(
            "invalid subnet {text}: host bits are set (did you mean {}?)",
            subnet.trunc()
        )));
    }
    let max_prefix = if subnet.addr().is_ipv4() { 30 } else { 126 };
    if subnet.prefix_len() > max_prefix {
        return Err(invalid(format!(
            "invalid subnet {text}: too small for a gateway and a host"
        )));
    }
    Ok(subnet)
}

/// A `--ip-range`: a CIDR inside one of the network's subnets.
fn parse_ip_range(text: &str, subnets: &[IpNet]) -> Result<IpNet, ModelError> {
    let range: IpNet = text.parse().map_err(|_| {
        invalid(format!(
            "invalid IP range {text:?}: expected a CIDR such as 10.89.0.128/25"
        ))
    })?;
    let range = range.trunc();
    if !subnets
        .iter()
        .any(|s| s.contains(&range.network()) && s.prefix_len() <= range.prefix_len())
    {
        return Err(invalid(format!(
            "IP range {range} is not inside any subnet of the network"
        )));
    }
    Ok(range)
}

/// A `--dns` server: `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
fn parse_dns_server(text: &str) -> Result<SocketAddr, ModelError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse().map_err(|_| {
        invalid(format!(
            "invalid DNS server {text:?}: expected an IP address, optionally with :PORT"
        ))
    })
}

/// Checks an MTU against what the subnets' address families need.
fn check_mtu(mtu: u32, subnets: &[IpNet]) -> Result<(), ModelError> {
    let min_mtu = if subnets.iter().any(|s| s.addr().is_ipv6()) {
        MIN_MTU_V6
    } else {
        MIN_MTU
    };
    if (min_mtu..=MAX_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid MTU {mtu}: must be between {min_mtu} and {MAX_MTU}"
        )))
    }
}

/// Turns a create request into a record, refusing anything invalid or clashing with `networks`;
/// a network without a subnet gets one from the default pools.
pub fn plan_network(
    req: &NetworkCreate,
    networks: &BTreeMap<String, NetworkRecord>,
) -> Result<NetworkRecord, ModelError> {
    plan_network_with(req, networks, &super::pools::default_pools())
}

/// `plan_network`, subnets not given taken from `pools`.
pub fn plan_network_with(
    req: &NetworkCreate,
    networks: &BTreeMap<String, NetworkRecord>,
    pools: &[super::pools::AddressPool],
) -> Result<NetworkRecord, ModelError> {
    check_name("network", &req.name)?;
    match req.driver.as_deref() {
        None | Some("bridge") | Some("overlay") => {}
        Some(other) => {
            return Err(invalid(format!(
                "unknown driver {other:?}: vswitch networks are bridge (one host) or overlay (across hosts)"
            )))
        }
    }
    let overlay = plan_overlay(
        OverlayRequest {
            name: &req.name,
            driver: req.driver.as_deref(),
            vni: req.vni,
            peers: &req.peers,
            encrypt: req.encrypt,
        },
        networks
            .values()
            .filter_map(|n| Some((n.name.as_str(), n.overlay.as_ref()?.vni))),
    )?;
    if networks.contains_key(&req.name) {
        return Err(ModelError::NetworkExists(req.name.clone()));
    }
    check_count("subnets", req.subnets.len(), MAX_SUBNETS)?;
    check_count("gateways", req.gateways.len(), MAX_SUBNETS)?;
    check_count("IP ranges", req.ip_ranges.len(), MAX_IP_RANGES)?;
    check_count("DNS servers", req.dns.len(), MAX_DNS_SERVERS)?;
    if let Some(policy) = &req.policy {
        check_policy_size(policy)?;
    }
    if let Some(pps) = req.storm_pps {
        check_at_most("storm control rate (packets/s)", pps, MAX_STORM_PPS)?;
    }
    if let Some(flows) = req.max_flows {
        check_at_most("flow table size", flows as u64, MAX_FLOWS as u64)?;
    }
    let taken: Vec<(&IpNet, &str)> = networks
        .values()
        .flat_map(|n| n.subnets.iter().map(move |s| (&s.subnet, n.name.as_str())))
        .collect();
    let mut subnets: Vec<IpNet> = req
        .subnets
        .iter()
        .map(|s| parse_subnet(s))
        .collect::<Result<_, _>>()?;
    let taken_subnets: Vec<&IpNet> = taken.iter().map(|(subnet, _)| *subnet).collect();
    if subnets.is_empty() {
        subnets.push(super::pools::free_subnet(pools, false, &taken_subnets)?);
    }
    if req.ipv6 && !subnets.iter().any(|s| s.addr().is_ipv6()) {
        subnets.push(super::pools::free_subnet(pools, true, &taken_subnets)?);
    }
    for (i, subnet) in subnets.iter().enumerate() {
        for (other, network) in taken
            .iter()
            .copied()
            .chain(subnets[..i].iter().map(|s| (s, req.name.as_str())))
        {
            if ipam::overlaps(subnet, other) {
                return Err(ModelError::SubnetOverlap {
                    subnet: subnet.to_string(),
                    other: other.to_string(),
                    network: network.to_string(),
                });
            }
        }
    }
    let mut gateways: Vec<Option<IpAddr>> = vec![None; subnets.len()];
    for text in &req.gateways {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| invalid(format!("invalid gateway {text:?}: expected an IP address")))?;
        let Some(i) = subnets.iter().position(|s| ipam::is_host_address(s, ip)) else {
            return Err(invalid(format!(
                "gateway {ip} is not a host address of any subnet of network {}",
                req.name
            )));
        };
        if gateways[i].replace(ip).is_some() {
            return Err(invalid(format!(
                "more than one gateway given for subnet {}",
                subnets[i]
            )));
        }
    }
    let mtu = req.mtu.unwrap_or_else(|| {
        overlay
            .as_ref()
            .map_or(DEFAULT_MTU, |o| default_overlay_mtu(o, DEFAULT_MTU))
    });
    check_mtu(mtu, &subnets)?;
    if let Some(vlan) = req.vlan {
        if !(1..=4094).contains(&vlan) {
            return Err(invalid(format!(
                "invalid VLAN ID {vlan}: must be between 1 and 4094"
            )));
        }
        if let Some(other) = networks.values().find(|n| n.vlan == Some(vlan)) {
            return Err(ModelError::VlanInUse {
                vlan,
                network: other.name.clone(),
            });
        }
    }
    let ip_ranges = req
        .ip_ranges
        .iter()
        .map(|text| parse_ip_range(text, &subnets))
        .collect::<Result<_, _>>()?;
    let dns = req
        .dns
        .iter()
        .map(|text| parse_dns_server(text))
        .collect::<Result<_, _>>()?;
    if req.host_loopback && req.internal {
        return Err(invalid(
            "--host-loopback and --internal contradict: an internal network reaches nothing beyond it",
        ));
    }
    if req.host_loopback && req.host_iface.is_some() {
        return Err(invalid(
            "--host-loopback and --host-iface contradict: with a host interface, the host's kernel routes what leaves the network",
        ));
    }
    if let Some(ifname) = &req.host_iface {
        check_ifname(ifname)?;
        if let Some(other) = networks
            .values()
            .find(|n| n.host_iface.as_ref() == Some(ifname))
        {
            return Err(invalid(format!(
                "host interface {ifname} is already used by network {}",
                other.name
            )));
        }
    }
    let subnets = subnets
        .into_iter()
        .zip(gateways)
        .map(|(subnet, gateway)| SubnetRecord {
            gateway: gateway
                .or_else(|| ipam::first_host(&subnet))
                .expect("prefix checked above"),
            subnet,
        })
        .collect();
    let id = match req.id.as_ref().or(req.docker_id.as_ref()) {
        Some(id) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            id.to_ascii_lowercase()
        }
        Some(id) => return Err(invalid(format!("network ID {id:?} is not 64 hex digits"))),
        // The control plane gives each new network a random one.
        None => String::new(),
    };
    if let Some(other) = networks.values().find(|n| !id.is_empty() && n.id == id) {
        return Err(invalid(format!(
            "network ID {id} is network {}'s already",
            other.name
        )));
    }
    Ok(NetworkRecord {
        name: req.name.clone(),
        id,
        subnets,
        mtu,
        vlan: req.vlan,
        endpoints: BTreeMap::new(),
        ip_ranges,
        dns,
        host_iface: req.host_iface.clone(),
        internal: req.internal,
        host_loopback: req.host_loopback,
        leases: Vec::new(),
        policy: match &req.policy {
            Some(policy) => {
                policy.validate().map_err(|e| invalid(e.to_string()))?;
                policy.clone()
            }
            None => NetworkPolicy::default(),
        },
        storm_pps: req.storm_pps,
        max_flows: match req.max_flows {
            Some(0) => return Err(invalid("max_flows must be at least 1")),
            n => n,
        },
        docker_id: req.docker_id.clone(),
        labels: {
            check_count("labels", req.labels.len(), MAX_LABELS)?;
            parse_labels(&req.labels)?
        },
        overlay,
        remote: Vec::new(),
    })
}

/// The endpoint name used when none is given: the `ip netns` name, or the process of a
/// `/proc/PID/ns/net` path, or the file name of another path.
pub fn default_endpoint_name(netns: &tap::NetnsRef) -> String {
    match netns {
        tap::NetnsRef::Name(name) => name.clone(),
        tap::NetnsRef::Pid(pid) => format!("pid-{pid}"),
        tap::NetnsRef::Path(path) => {
            let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
            match parts.as_slice() {
                ["/", "proc", pid, "ns", "net"] => format!("pid-{pid}"),
                [.., last] => last.to_string(),
                [] => "endpoint".to_string(),
            }
        }
    }
}

fn check_ifname(ifname: &str) -> Result<(), ModelError> {
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && ifname != "."
        && ifname != ".."
        && ifname
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid interface name {ifname:?}: at most 15 printable characters, no '/', ':' or spaces"
        )))
    }
}

/// Turns a connect request into an endpoint record on `network`, refusing anything invalid or
/// clashing. `state` is everything else, to pick a free interface name.
pub fn plan_endpoint(
    req: &ConnectRequest,
    netns: &tap::NetnsRef,
    network: &NetworkRecord,
    state: &State,
) -> Result<EndpointRecord, ModelError> {
    let netns_text = netns.to_string();
    if let Some(existing) = network.endpoints.values().find(|e| e.netns == netns_text) {
        return Err(ModelError::AlreadyConnected {
            netns: netns_text,
            network: network.name.clone(),
            endpoint: existing.name.clone(),
        });
    }
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| default_endpoint_name(netns));
    check_name("endpoint", &name)?;
    if network.endpoints.contains_key(&name) {
        return Err(ModelError::EndpointExists {
            endpoint: name,
            network: network.name.clone(),
        });
    }
    check_names_free(network, &name, &req.aliases)?;
    let mut ips = req.ips.clone();
    if let Some(ip6) = &req.ip6 {
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(format!("--ip6 {ip6:?}: not an IPv6 address")));
        }
        ips.push(ip6.clone());
    }
    check_count("addresses", ips.len(), MAX_ADDRESSES)?;
    check_count("aliases", req.aliases.len(), MAX_ALIASES)?;
    check_count("labels", req.labels.len(), MAX_LABELS)?;
    let ifname = pick_ifname(req.ifname.as_deref(), "eth", &netns_text, state)?;
    let mac = match &req.mac {
        Some(text) => parse_unicast_mac(text)?,
        None => default_mac(network, &name),
    };
    if mac == gateway_mac(&network.name) {
        return Err(invalid(format!(
            "MAC address {mac} is the gateway's of network {}",
            network.name
        )));
    }
    if let Some(other) = network.endpoints.values().find(|e| e.mac == mac) {
        return Err(invalid(format!(
            "MAC address {mac} is already used by endpoint {} on network {}",
            other.name, network.name
        )));
    }
    if let Some(mtu) = req.mtu {
        let subnets: Vec<IpNet> = network.subnets.iter().map(|s| s.subnet).collect();
        check_mtu(mtu, &subnets)?;
    }
    for alias in &req.aliases {
        check_dns_name(alias)?;
    }
    let addresses = if req.dhcp {
        if !ips.is_empty() {
            return Err(invalid(
                "--ip and --dhcp exclude each other: a DHCP client gets its address from the gateway",
            ));
        }
        if !network.subnets.iter().any(|s| s.subnet.addr().is_ipv4()) {
            return Err(invalid(format!(
                "network {} has no IPv4 subnet to serve DHCP on",
                network.name
            )));
        }
        Vec::new()
    } else {
        plan_addresses(&ips, network)?
    };
    Ok(EndpointRecord {
        name,
        netns: netns_text,
        netns_inode: 0,
        ifname,
        mac,
        addresses,
        offload: req.offload.unwrap_or(true),
        mtu: req.mtu,
        aliases: req.aliases.clone(),
        dhcp: req.dhcp,
        dhcp_leases: check_dhcp_leases(req.dhcp_leases)?,
        port_security: req.port_security.unwrap_or(true),
        labels: parse_labels(&req.labels)?,
        rate_limit: check_rate_limit(req.rate_limit)?,
        published: plan_published(&req.publish, network, state)?,
        docker_endpoint: req.docker_endpoint.clone(),
        cni_container: req.cni_container.clone(),
        foreign_namespace: false,
    })
}

/// An endpoint's MAC when none is given: derived from its network and name (stable across
/// restarts), and past any MAC an endpoint on another host of an overlay holds.
fn default_mac(network: &NetworkRecord, name: &str) -> MacAddr {
    (0..)
        .map(|n: u32| {
            let seed = match n {
                0 => format!("{}/{name}", network.name),
                n => format!("{}/{name}/{n}", network.name),
            };
            MacAddr::local_from_seed(seed.as_bytes())
        })
        .find(|mac| !network.remote.iter().any(|e| e.mac == *mac))
        .expect("a free MAC among 2^32 seeds")
}

/// The mappings `specs` ask for, none taking a host port another endpoint's mapping holds.
fn plan_published(
    specs: &[String],
    network: &NetworkRecord,
    state: &State,
) -> Result<Vec<PortMapping>, ModelError> {
    if network.internal && !specs.is_empty() {
        return Err(invalid(format!(
            "cannot publish ports on network {}: it is --internal (nothing reaches it from beyond)",
            network.name
        )));
    }
    let mut mappings: Vec<PortMapping> = Vec::new();
    for spec in specs {
        for mapping in parse_publish(spec).map_err(invalid)? {
            if mappings.iter().any(|m| m.clashes_with(&mapping)) {
                return Err(invalid(format!(
                    "--publish {spec:?}: host port {} is asked for twice",
                    mapping.host_port
                )));
            }
            let holder = state.networks.values().find_map(|n| {
                n.endpoints.values().find_map(|e| {
                    e.published
                        .iter()
                        .any(|m| m.clashes_with(&mapping))
                        .then(|| format!("endpoint {} on network {}", e.name, n.name))
                })
            });
            if let Some(holder) = holder {
                return Err(invalid(format!(
                    "--publish {spec:?}: host port {} is published already, by {holder}",
                    mapping.host_port
                )));
            }
            mappings.push(mapping);
        }
    }
    check_count("published ports", mappings.len(), MAX_PUBLISHED)?;
    Ok(mappings)
}

/// Refuses a policy with more rules than a network may have.
pub fn check_policy_size(policy: &NetworkPolicy) -> Result<(), ModelError> {
    check_count("policy rules", policy.rules.len(), MAX_RULES)
}

/// Most DHCP offers and leases one port may be allowed.
const MAX_DHCP_LEASES_PER_PORT: u32 = 1024;

fn check_dhcp_leases(leases: Option<u32>) -> Result<Option<u32>, ModelError> {
    match leases {
        Some(n) if !(1..=MAX_DHCP_LEASES_PER_PORT).contains(&n) => Err(invalid(format!(
            "invalid DHCP lease count {n}: between 1 and {MAX_DHCP_LEASES_PER_PORT}"
        ))),
        _ => Ok(leases),
    }
}

/// `key=value` labels; `name` is refused, as selectors use it for the endpoint name.
pub fn parse_labels(texts: &[String]) -> Result<BTreeMap<String, String>, ModelError> {
    let mut labels = BTreeMap::new();
    for text in texts {
        let (k, v) =
            policy::rules::parse_label(text).map_err(|e| invalid(format!("invalid label: {e}")))?;
        if k == policy::rules::NAME_KEY {
            return Err(invalid(format!(
                "invalid label {text:?}: the key `name` is the endpoint name in selectors"
            )));
        }
        labels.insert(k, v);
    }
    Ok(labels)
}

/// A rate limit must limit something, by a positive amount.
pub fn check_rate_limit(limit: Option<RateLimit>) -> Result<Option<RateLimit>, ModelError> {
    let Some(limit) = limit else {
        return Ok(None);
    };
    let fields = [
        ("bits_per_sec", limit.bits_per_sec),
        ("packets_per_sec", limit.packets_per_sec),
        ("burst_bytes", limit.burst_bytes),
        ("burst_packets", limit.burst_packets),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, v)| *v == Some(0)) {
        return Err(invalid(format!(
            "invalid rate limit: {field} must be positive"
        )));
    }
    let maxima = [
        MAX_BITS_PER_SEC,
        MAX_PACKETS_PER_SEC,
        MAX_BURST_BYTES,
        MAX_BURST_PACKETS,
    ];
    for ((field, value), max) in fields.iter().zip(maxima) {
        if let Some(value) = value {
            check_at_most(&format!("rate limit {field}"), *value, max)?;
        }
    }
    Ok(limit.is_set().then_some(limit))
}

/// Interface names already used in the namespace `netns` by endpoints and trunks.
fn ifnames_in<'a>(netns: &'a str, state: &'a State) -> HashSet<&'a str> {
    let endpoints = state.networks.values().flat_map(|n| n.endpoints.values());
    endpoints
        .filter(|e| e.netns == netns)
        .map(|e| e.ifname.as_str())
        .chain(
            state
                .trunks
                .values()
                .filter(|t| t.netns == netns)
                .map(|t| t.ifname.as_str()),
        )
        .collect()
}

/// The interface name to use in `netns`: the requested one if valid and free there, else the
/// first free `PREFIX0`, `PREFIX1`, ...
fn pick_ifname(
    requested: Option<&str>,
    prefix: &str,
    netns: &str,
    state: &State,
) -> Result<String, ModelError> {
    let used = ifnames_in(netns, state);
    let ifname = match requested {
        Some(ifname) => ifname.to_string(),
        None => (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|n| !used.contains(n.as_str()))
            .expect("unbounded"),
    };
    check_ifname(&ifname)?;
    if used.contains(ifname.as_str()) {
        return Err(invalid(format!(
            "interface {ifname} is already used in network namespace {netns}"
        )));
    }
    Ok(ifname)
}

fn parse_unicast_mac(text: &str) -> Result<MacAddr, ModelError> {
    let mac: MacAddr = text
        .parse()
        .map_err(|e: vswitch_core::frame::ParseMacError| invalid(e.to_string()))?;
    if mac.is_multicast() || mac == MacAddr::default() {
        return Err(invalid(format!(
            "invalid MAC address {mac}: must be a unicast address"
        )));
    }
    Ok(mac)
}

/// Turns a trunk request into a record, refusing anything invalid or clashing with `state`.
pub fn plan_trunk(
    req: &TrunkCreate,
    netns: &tap::NetnsRef,
    state: &State,
) -> Result<TrunkRecord, ModelError> {
    let netns_text = netns.to_string();
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| default_endpoint_name(netns));
    check_name("trunk", &name)?;
    if state.trunks.contains_key(&name) {
        return Err(invalid(format!("trunk {name} already exists")));
    }
    check_count("trunk networks", req.networks.len(), MAX_TRUNK_NETWORKS)?;
    if req.networks.is_empty() && req.native.is_none() {
        return Err(invalid(
            "a trunk needs at least one network (--network) or a native network (--native)",
        ));
    }
    let mut seen = HashSet::new();
    for network in req.networks.iter().chain(&req.native) {
        let record = state
            .networks
            .get(network)
            .ok_or_else(|| ModelError::UnknownNetwork(network.clone()))?;
        if !seen.insert(network) {
            return Err(invalid(format!(
                "network {network} is named twice on trunk {name}"
            )));
        }
        if Some(network) != req.native.as_ref() && record.vlan.is_none() {
            return Err(invalid(format!(
                "network {network} has no VLAN ID: create it with --vlan to carry it tagged on a trunk"
            )));
        }
    }
    let ifname = pick_ifname(req.ifname.as_deref(), "trunk", &netns_text, state)?;
    let mac = match &req.mac {
        Some(text) => parse_unicast_mac(text)?,
        None => MacAddr::local_from_seed(format!("trunk/{name}").as_bytes()),
    };
    Ok(TrunkRecord {
        name,
        netns: netns_text,
        netns_inode: 0,
        ifname,
        mac,
        networks: req.networks.clone(),
        native: req.native.clone(),
    })
}

/// Addresses of a network no one else may get: the gateways, endpoints' addresses and every
/// DHCP lease (expired ones too: their client may come back for them until they are reused).
pub fn taken_addresses(network: &NetworkRecord) -> HashSet<IpAddr> {
    network
        .endpoints
        .values()
        .flat_map(|e| e.addresses.iter().map(|a| a.addr()))
        .chain(network.subnets.iter().map(|s| s.gateway))
        .chain(network.leases.iter().map(|l| IpAddr::V4(l.ip)))
        .chain(
            network
                .remote
                .iter()
                .flat_map(|e| e.addresses.iter().map(|a| a.addr())),
        )
        .collect()
}

/// Who holds `ip` on `network`: an endpoint's name, or "DHCP client MAC".
fn address_owner(network: &NetworkRecord, ip: IpAddr) -> Option<String> {
    if let Some(e) = network
        .endpoints
        .values()
        .find(|e| e.addresses.iter().any(|a| a.addr() == ip))
    {
        return Some(e.name.clone());
    }
    if let Some(e) = network
        .remote
        .iter()
        .find(|e| e.addresses.iter().any(|a| a.addr() == ip))
    {
        return Some(format!("{} on host {}", e.name, e.host));
    }
    network
        .leases
        .iter()
        .find(|l| IpAddr::V4(l.ip) == ip)
        .map(|l| format!("DHCP client {}", l.mac))
}

fn plan_addresses(requested: &[String], network: &NetworkRecord) -> Result<Vec<IpNet>, ModelError> {
    let mut chosen: Vec<Option<IpAddr>> = vec![None; network.subnets.len()];
    for text in requested {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| invalid(format!("invalid IP address {text:?}")))?;
        let Some(i) = network.subnets.iter().position(|s| s.subnet.contains(&ip)) else {
            let subnets: Vec<String> = network
                .subnets
                .iter()
                .map(|s| s.subnet.to_string())
                .collect();
            return Err(invalid(format!(
                "address {ip} is outside the subnets of network {} ({})",
                network.name,
                subnets.join(", ")
            )));
        };
        let subnet = &network.subnets[i];
        if ip == subnet.gateway {
            return Err(ModelError::AddressInUse {
                ip: ip.to_string(),
                endpoint: "gateway".into(),
                network: network.name.clone(),
            });
        }
        if !ipam::is_host_address(&subnet.subnet, ip) {
            return Err(invalid(format!(
                "address {ip} is the network or broadcast address of {}",
                subnet.subnet
            )));
        }
        if let Some(owner) = address_owner(network, ip) {
            return Err(ModelError::AddressInUse {
                ip: ip.to_string(),
                endpoint: owner,
                network: network.name.clone(),
            });
        }
        if chosen[i].replace(ip).is_some() {
            return Err(invalid(format!(
                "more than one address given for subnet {}",
                subnet.subnet
            )));
        }
    }
    let taken = taken_addresses(network);
    network
        .subnets
        .iter()
        .zip(chosen)
        .map(|(subnet, ip)| {
            let ip = match ip {
                Some(ip) => ip,
                None => ipam::allocate_in(&subnet.subnet, &network.ip_ranges, &taken)
                    .ok_or_else(|| ModelError::SubnetFull(subnet.subnet.to_string()))?,
            };
            Ok(IpNet::new(ip, subnet.subnet.prefix_len()).expect("prefix of a valid subnet"))
        })
        .collect()
}
