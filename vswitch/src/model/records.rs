//! The records of networks, endpoints, trunks and mirrors, as persisted and as the API shows
//! them, and the requests that create them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use policy::{NetworkPolicy, RateLimit};
use serde::{Deserialize, Serialize};

use vswitch_core::frame::MacAddr;

use super::error::ModelError;

/// Default MTU of a network, as Docker's bridge.
pub const DEFAULT_MTU: u32 = 1500;
/// The name a network's gateway answers to, which no endpoint may take.
pub const GATEWAY_NAME: &str = "gateway";

/// The gateway MAC of a network: stable across restarts.
pub fn gateway_mac(network: &str) -> MacAddr {
    MacAddr::local_from_seed(format!("gateway/{network}").as_bytes())
}

/// A network: an isolated L2 segment with its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Unique name.
    pub name: String,
    /// Unique ID, 64 hex digits as Docker's (Docker's own for a network Docker made; the same
    /// on every host for an overlay defined in the store). Empty in state saved before IDs.
    #[serde(default)]
    pub id: String,
    /// Address ranges with their gateways.
    pub subnets: Vec<SubnetRecord>,
    /// MTU of every interface on the network.
    pub mtu: u32,
    /// 802.1Q VLAN ID carrying this network on trunk ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Attached endpoints by name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// Part of the subnets from which addresses are handed out (Docker's `--ip-range`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<IpNet>,
    /// Upstream DNS servers for names that are not the network's own (empty: the daemon's
    /// `/etc/resolv.conf`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<SocketAddr>,
    /// Interface in the daemon's namespace carrying the gateway addresses (Docker's `docker0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_iface: Option<String>,
    /// No traffic beyond the network (Docker's `--internal`): containers reach each other and
    /// the gateway only.
    #[serde(default)]
    pub internal: bool,
    /// The gateway's address leads to the daemon's loopback (slirp4netns and pasta's mapping).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_loopback: bool,
    /// DHCP leases, live or expired (an expired lease goes back to its client if still free).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseRecord>,
    /// Rules between its endpoints and a default action.
    #[serde(default, skip_serializing_if = "is_default")]
    pub policy: NetworkPolicy,
    /// Broadcast/multicast packets per second allowed (0: no storm control) [default:
    /// `policy::ratelimit::DEFAULT_STORM_PPS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_pps: Option<u64>,
    /// Flows tracked at most [default: `policy::conntrack::DEFAULT_CAPACITY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flows: Option<usize>,
    /// The ID Docker knows the network by, when Docker made it (`docker network create -d
    /// vswitch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_id: Option<String>,
    /// Labels, for the operator (`network ls --filter label=...`), as Docker's network labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Across hosts: its VNI and peers (`None`: this host's network alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<super::overlay::OverlayRecord>,
    /// Endpoints of an overlay network on other hosts, as the store says (not persisted: the
    /// store holds them).
    #[serde(skip)]
    pub remote: Vec<super::overlay::RemoteEndpoint>,
}

impl NetworkRecord {
    /// Its driver, as Docker names them: one host's network is a `bridge`, one across hosts an
    /// `overlay`.
    pub fn driver(&self) -> &'static str {
        if self.overlay.is_some() {
            "overlay"
        } else {
            "bridge"
        }
    }

    /// Its scope, as Docker names them: `local` to this host or `global` across hosts.
    pub fn scope(&self) -> &'static str {
        if self.overlay.is_some() {
            "global"
        } else {
            "local"
        }
    }

    /// Whether the network passes every `--filter` of `network ls` (Docker's semantics: the
    /// same key given twice matches either, different keys must all match): `name=TEXT` (part
    /// of the name), `driver=NAME`, `label=KEY` or `label=KEY=VALUE`.
    pub fn passes(&self, filters: &[NetworkFilter]) -> bool {
        filters_pass(
            &["name", "label", "driver"],
            filters,
            |f| f.key(),
            |f| f.matches(self),
        )
    }

    /// Its endpoints on other hosts (an overlay's, as the store says), without the stand-ins
    /// for addresses held elsewhere.
    pub fn remote_endpoints(&self) -> impl Iterator<Item = &super::overlay::RemoteEndpoint> {
        self.remote.iter().filter(|e| !e.is_placeholder())
    }
    /// The interface `endpoint` gets on this network: its name, MAC, MTU and addresses, default
    /// routes through the gateway (none for a DHCP client, which learns them), IPv6 off on an
    /// IPv4-only network. One queue, made and configured inside the namespace.
    pub fn tap_config(&self, endpoint: &EndpointRecord) -> tap::TapConfig {
        tap::TapConfig {
            ifname: endpoint.ifname.clone(),
            mac: endpoint.mac.0,
            mtu: endpoint.mtu.unwrap_or(self.mtu),
            addresses: endpoint.addresses.clone(),
            gateways: if endpoint.dhcp {
                Vec::new()
            } else {
                self.default_gateways()
            },
            offload: endpoint.offload,
            queues: 1,
            disable_ipv6: !self.subnets.iter().any(|s| s.subnet.addr().is_ipv6()),
            ipv6_autoconf: endpoint.dhcp,
            handover: false,
        }
    }

    /// The default route next hops: the gateway of the first subnet of each family.
    pub fn default_gateways(&self) -> Vec<IpAddr> {
        let v4 = self.subnets.iter().find(|s| s.gateway.is_ipv4());
        let v6 = self.subnets.iter().find(|s| s.gateway.is_ipv6());
        v4.into_iter().chain(v6).map(|s| s.gateway).collect()
    }

    /// The DNS servers of the network's containers: its gateway addresses.
    pub fn dns_servers(&self) -> Vec<IpAddr> {
        self.subnets.iter().map(|s| s.gateway).collect()
    }

    /// The name of the endpoint `target` names (its name, or its namespace as given to
    /// connect).
    pub fn endpoint_name(&self, target: &str) -> Result<String, ModelError> {
        self.endpoints
            .values()
            .find(|e| is_target(target, &e.name, &e.netns))
            .map(|e| e.name.clone())
            .ok_or_else(|| ModelError::UnknownEndpoint {
                target: target.to_string(),
                network: self.name.clone(),
            })
    }

    /// The endpoint `target` names, to change.
    pub fn endpoint_mut(&mut self, target: &str) -> Result<&mut EndpointRecord, ModelError> {
        let name = self.endpoint_name(target)?;
        self.endpoints
            .get_mut(&name)
            .ok_or(ModelError::UnknownEndpoint {
                target: name,
                network: self.name.clone(),
            })
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An address leased by the network's DHCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Client hardware address.
    pub mac: MacAddr,
    /// Leased address.
    pub ip: Ipv4Addr,
    /// End of the lease, seconds since the Unix epoch.
    pub expires: u64,
    /// Host name the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The endpoint whose port the client sent from, which the lease counts against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Only offered, not yet taken: held in memory for the client, never persisted.
    #[serde(skip)]
    pub offered: bool,
}

/// A subnet and its gateway address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    /// The range, e.g. 10.89.0.0/24.
    pub subnet: IpNet,
    /// Gateway address, never given to an endpoint.
    pub gateway: IpAddr,
}

/// A container's interface on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Name, unique on its network.
    pub name: String,
    /// The namespace as the user gave it (`ip netns` name, path or pid:PID).
    pub netns: String,
    /// Inode of the namespace when attached: a restarted daemon re-attaches only if the
    /// reference still names that namespace (a pid may have been reused). 0 before attaching.
    #[serde(default)]
    pub netns_inode: u64,
    /// Interface name inside the namespace.
    pub ifname: String,
    /// Interface MAC.
    pub mac: MacAddr,
    /// Addresses with prefix length, one per subnet.
    pub addresses: Vec<IpNet>,
    /// Checksum and segmentation offloads on the TAP device (IFF_VNET_HDR).
    #[serde(default = "yes")]
    pub offload: bool,
    /// MTU of this interface when it differs from the network's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Further DNS names of this endpoint on its network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The container configures itself: DHCPv4 and SLAAC, no address set on its interface.
    #[serde(default)]
    pub dhcp: bool,
    /// DHCP offers and leases the clients behind its port may hold at once, if not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_leases: Option<u32>,
    /// Frames must come from the endpoint's own MAC and addresses (anti-spoofing).
    #[serde(default = "yes")]
    pub port_security: bool,
    /// Labels that policy rules select endpoints by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Ingress rate limit of its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Host ports forwarded to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<super::publish::PortMapping>,
    /// The endpoint ID Docker knows it by, when Docker attached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_endpoint: Option<String>,
    /// The container ID a CNI runtime (Podman) attached it for (`CNI_CONTAINERID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_container: Option<String>,
    /// Its namespace is out of the daemon's reach (a rootless runtime's, in mount and user
    /// namespaces of its own): the runtime's plugin made the device and handed it over, and
    /// only the runtime's DEL (or GC) removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign_namespace: bool,
}

fn yes() -> bool {
    true
}

/// Docker's `--filter` semantics over `keys`: for each key given, one of its filters matches
/// (the same key twice: either; different keys: all).
pub(crate) fn filters_pass<F>(
    keys: &[&str],
    filters: &[F],
    key_of: impl for<'f> Fn(&'f F) -> &'f str,
    matches: impl Fn(&F) -> bool,
) -> bool {
    keys.iter().all(|key| {
        let mut wanted = filters.iter().filter(|f| key_of(f) == *key).peekable();
        wanted.peek().is_none() || wanted.any(&matches)
    })
}

/// One `network ls --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFilter {
    /// `name=TEXT`: the name contains TEXT.
    Name(String),
    /// `label=KEY` (any value) or `label=KEY=VALUE`.
    Label(String, Option<String>),
    /// `driver=NAME`.
    Driver(String),
}

impl NetworkFilter {
    fn key(&self) -> &'static str {
        match self {
            NetworkFilter::Name(_) => "name",
            NetworkFilter::Label(..) => "label",
            NetworkFilter::Driver(_) => "driver",
        }
    }

    fn matches(&self, network: &NetworkRecord) -> bool {
        match self {
            NetworkFilter::Name(text) => network.name.contains(text.as_str()),
            NetworkFilter::Driver(driver) => network.driver() == driver,
            NetworkFilter::Label(key, value) => match (network.labels.get(key), value) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
        }
    }
}

impl std::str::FromStr for NetworkFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<NetworkFilter, String> {
        match text.split_once('=') {
            Some(("name", value)) => Ok(NetworkFilter::Name(value.to_string())),
            Some(("driver", value)) => Ok(NetworkFilter::Driver(value.to_string())),
            Some(("label", label)) => Ok(match label.split_once('=') {
                Some((k, v)) => NetworkFilter::Label(k.to_string(), Some(v.to_string())),
                None => NetworkFilter::Label(label.to_string(), None),
            }),
            _ => Err(format!(
                "invalid filter {text:?}: expected name=TEXT, driver=NAME, label=KEY or label=KEY=VALUE"
            )),
        }
    }
}

/// What the daemon says of itself (`GET /v1/info`, `vswitch version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// vswitch version of the daemon.
    pub version: String,
    /// Version of the API (the `/v1/` of its paths).
    pub api_version: String,
    /// The daemon's process ID (a rootless client joins its user namespace through it).
    pub pid: u32,
    /// Whether the daemon runs unprivileged, as root of a user namespace of its own.
    pub rootless: bool,
}

/// The answer to a connect: the endpoint, and what the container should use as resolver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// The new endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointRecord,
    /// DNS servers for the container's resolv.conf: the gateway addresses.
    pub dns: Vec<IpAddr>,
    /// The resolv.conf written for an `ip netns` namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
}

/// A trunk: one interface carrying several networks, each under its network's 802.1Q VLAN ID
/// (and at most one untagged, the native network), as a switch port facing another switch or a
/// VM with VLAN subinterfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkRecord {
    /// Name, unique among trunks.
    pub name: String,
    /// The namespace as the user gave it.
    pub netns: String,
    /// Inode of the namespace when attached: a restarted daemon re-attaches only if the
    /// reference still names that namespace (a pid may have been reused). 0 before attaching.
    #[serde(default)]
    pub netns_inode: u64,
    /// Interface name inside the namespace.
    pub ifname: String,
    /// Interface MAC.
    pub mac: MacAddr,
    /// Networks carried tagged, each under its VLAN ID.
    pub networks: Vec<String>,
    /// Network carried untagged, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<String>,
}

impl TrunkRecord {
    /// Whether the trunk carries `network`, tagged or untagged.
    pub fn carries(&self, network: &str) -> bool {
        self.networks
            .iter()
            .chain(&self.native)
            .any(|n| n == network)
    }
}

/// Body of `POST /v1/trunks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct TrunkCreate {
    /// `ip netns` name, namespace path (/proc/PID/ns/net) or pid:PID.
    pub netns: String,
    /// Network to carry tagged with its VLAN ID (repeat); each needs a VLAN ID.
    #[serde(default)]
    #[arg(long = "network")]
    pub networks: Vec<String>,
    /// Network to carry untagged.
    #[serde(default)]
    #[arg(long)]
    pub native: Option<String>,
    /// MAC address [default: stable, derived from the trunk name].
    #[serde(default)]
    #[arg(long)]
    pub mac: Option<String>,
    /// Interface name inside the namespace [default: trunk0, trunk1, ...].
    #[serde(default)]
    #[arg(long)]
    pub ifname: Option<String>,
    /// Trunk name [default: the namespace's name].
    #[serde(default)]
    #[arg(long)]
    pub name: Option<String>,
}

/// Body of `POST /v1/networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct NetworkCreate {
    /// Network name.
    pub name: String,
    /// Driver, as Docker's `-d`: `bridge`, one host's network, or `overlay`, one network
    /// across the hosts given by --peer [default: bridge].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long, short = 'd')]
    pub driver: Option<String>,
    /// Overlay: VXLAN network identifier, the same on every host [default: derived from the
    /// name].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub vni: Option<u32>,
    /// Overlay: another host's underlay address, IP or IP:PORT (repeatable); frames for
    /// stations not yet learned are flooded to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Overlay: seal frames between hosts with WireGuard (each --peer then gives
    /// `,key=PUBLIC_KEY,inner=TUNNEL_IPV4`; the daemon needs --tunnel-address).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[arg(long)]
    pub encrypt: bool,
    /// Subnet in CIDR notation (repeat for dual stack) [default: a free /24 of 10.89.0.0/16].
    #[serde(default)]
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Gateway address (one per subnet) [default: first host of the subnet].
    #[serde(default)]
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// MTU of the network's interfaces [default: 1500].
    #[serde(default)]
    #[arg(long)]
    pub mtu: Option<u32>,
    /// 802.1Q VLAN ID carrying the network on trunk ports.
    #[serde(default)]
    #[arg(long)]
    pub vlan: Option<u16>,
    /// Hand out addresses (static and DHCP) only from this part of a subnet (repeatable).
    #[serde(default)]
    #[arg(long = "ip-range")]
    pub ip_ranges: Vec<String>,
    /// Upstream DNS server, IP or IP:PORT, for names that are not the network's own
    /// (repeatable) [default: the daemon's /etc/resolv.conf].
    #[serde(default)]
    #[arg(long)]
    pub dns: Vec<String>,
    /// Dual stack: add an IPv6 /64 from fd00:89::/48 unless an IPv6 subnet is given.
    #[serde(default)]
    #[arg(long)]
    pub ipv6: bool,
    /// Create this interface in the daemon's own namespace with the gateway addresses, so
    /// processes beside the daemon reach the containers (Docker's docker0).
    #[serde(default)]
    #[arg(long)]
    pub host_iface: Option<String>,
    /// No traffic beyond the network (Docker's `--internal`): containers reach each other and
    /// the gateway, nothing outside.
    #[serde(default)]
    #[arg(long)]
    pub internal: bool,
    /// Let containers reach the daemon's loopback (127.0.0.1, ::1) at the gateway's address,
    /// as slirp4netns and pasta do; DNS on port 53 stays the gateway's own.
    #[serde(default)]
    #[arg(long)]
    pub host_loopback: bool,
    /// The network's policy [default: allow everything]. On the command line only its default
    /// action: what traffic no rule matches gets, allow (Docker's default) or deny (Docker's
    /// icc=false).
    #[serde(default)]
    #[arg(long = "default-action", value_name = "allow|deny", value_parser = parse_default_policy)]
    pub policy: Option<NetworkPolicy>,
    /// Broadcast/multicast packets per second allowed on the network; 0 turns storm control
    /// off [default: 5000].
    #[serde(default)]
    #[arg(long)]
    pub storm_pps: Option<u64>,
    /// Most flows the policy tracks [default: 262144].
    #[serde(default)]
    #[arg(long)]
    pub max_flows: Option<usize>,
    /// Docker's ID of the network, when its driver asks (not a flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub docker_id: Option<String>,
    /// The network's ID, when it is given (an overlay's definition in the store; not a flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub id: Option<String>,
    /// Label, key=value (repeatable), as Docker's `network create --label`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

/// A policy that only sets the default action, from `allow` or `deny`.
fn parse_default_policy(text: &str) -> Result<NetworkPolicy, String> {
    Ok(NetworkPolicy {
        default: text.parse()?,
        rules: Vec::new(),
    })
}

/// Body of `POST /v1/networks/NAME/endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct ConnectRequest {
    /// `ip netns` name, namespace path (/proc/PID/ns/net) or pid:PID (on the command line: a
    /// positional argument of `connect`; `run` makes it).
    #[arg(skip)]
    pub netns: String,
    /// Address to use (repeat for IPv4 and IPv6) [default: the next free one of each subnet].
    #[serde(default)]
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// IPv6 address to use (Docker's `--ip6`; `--ip` takes either family too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long = "ip6")]
    pub ip6: Option<String>,
    /// MAC address [default: stable, derived from network and endpoint name].
    #[serde(default)]
    #[arg(long)]
    pub mac: Option<String>,
    /// Interface name inside the namespace [default: eth0, eth1, ... per network it is on].
    #[serde(default)]
    #[arg(long)]
    pub ifname: Option<String>,
    /// Endpoint name [default: the namespace's name].
    #[serde(default)]
    #[arg(long)]
    pub name: Option<String>,
    /// Checksum and segmentation offloads on the interface [default: on]. `--no-offload`
    /// turns them off: every frame then crosses at wire size, and the switch segments what
    /// other containers send it.
    #[serde(default)]
    #[arg(long = "no-offload", action = clap::ArgAction::SetFalse)]
    pub offload: Option<bool>,
    /// MTU of this interface [default: the network's].
    #[serde(default)]
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Further DNS name of this endpoint on the network (repeatable).
    #[serde(default)]
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Configure no address: the container runs a DHCP client (and SLAAC for IPv6).
    #[serde(default)]
    #[arg(long, conflicts_with = "ips")]
    pub dhcp: bool,
    /// DHCP offers and leases the clients behind this port may hold at once (raise it for a
    /// port that fronts VMs) [default: 4; at most 1024].
    #[serde(default)]
    #[arg(long)]
    pub dhcp_leases: Option<u32>,
    /// Port security [default: on]: frames must come from the endpoint's own MAC and
    /// addresses, and it may not answer DHCP. `--no-port-security` lets it send as anyone.
    #[serde(default)]
    #[arg(long = "no-port-security", action = clap::ArgAction::SetFalse)]
    pub port_security: Option<bool>,
    /// Label for policy selectors, key=value (repeatable), e.g. --label app=web.
    #[serde(default)]
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Forward a host port to the container, [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp]
    /// (repeatable; ranges such as 8000-8009:80-89). The container sees each client's own
    /// address and port.
    #[serde(default)]
    #[arg(long = "publish", short = 'p')]
    pub publish: Vec<String>,
    /// Ingress rate limit of the port (on the command line: the --rate-limit flags).
    #[serde(default)]
    #[arg(skip)]
    pub rate_limit: Option<RateLimit>,
    /// Docker's ID of the endpoint, when its driver asks (not a flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub docker_endpoint: Option<String>,
    /// The CNI container ID, when the CNI plugin asks (not a flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(skip)]
    pub cni_container: Option<String>,
}

/// A port mirror (SPAN): copies of an endpoint's or a network's frames go to another endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct MirrorRecord {
    /// Mirror name.
    pub name: String,
    /// A network (frames entering the switch from any of its ports) or an endpoint (both
    /// directions): a network of that name first, else an endpoint name, `NETWORK/NAME` or
    /// namespace.
    #[arg(long)]
    pub from: String,
    /// The endpoint that receives the copies (a capture box, an IDS).
    #[arg(long)]
    pub to: String,
}

/// Body of `POST /v1/captures`: what to capture. The answer streams pcapng.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct CaptureRequest {
    /// One endpoint, both directions: its name, NETWORK/NAME, or its namespace.
    #[serde(default)]
    #[arg(long, conflicts_with = "network", required_unless_present = "network")]
    pub port: Option<String>,
    /// Every port of a network, frames as they enter the switch.
    #[serde(default)]
    #[arg(long)]
    pub network: Option<String>,
    /// Bytes kept of each frame [default: 65535].
    #[serde(default)]
    #[arg(short = 's', long = "snaplen")]
    pub snaplen: Option<u32>,
    /// Stop after this many frames.
    #[serde(default)]
    #[arg(short = 'c', long = "count")]
    pub count: Option<u64>,
    /// Include frames the switch dropped, each with a comment naming the reason.
    #[serde(default)]
    #[arg(long)]
    pub drops: bool,
    /// tcpdump filter expression (on the command line: the words after the flags).
    #[serde(default)]
    #[arg(skip)]
    pub filter: Option<String>,
}

/// Everything the daemon persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Networks by name, each with its endpoints.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Trunk ports by name.
    #[serde(default)]
    pub trunks: BTreeMap<String, TrunkRecord>,
    /// Port mirrors by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, MirrorRecord>,
}

/// Whether `target` names the endpoint called `name` in namespace `netns`.
pub fn is_target(target: &str, name: &str, netns: &str) -> bool {
    name == target
        || target
            .parse::<tap::NetnsRef>()
            .is_ok_and(|n| n.to_string() == netns)
}

/// Body of `POST /v1/networks/{name}/policy/rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleAdd {
    /// The rule.
    pub rule: policy::Rule,
    /// Where it goes in the order, 0 first [default: last].
    #[serde(default)]
    pub position: Option<usize>,
}

/// Body of `PUT /v1/networks/{name}/policy/default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultActionChange {
    /// What happens to traffic no rule matches.
    pub default: policy::DefaultAction,
}

/// Body of `POST /v1/networks/{name}/trace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct TraceRequest {
    /// Sending endpoint (name or namespace).
    #[arg(long)]
    pub from: String,
    /// Receiving endpoint (name or namespace).
    #[serde(default)]
    #[arg(long, required_unless_present_any = ["dst", "dst_mac"])]
    pub to: Option<String>,
    /// Destination address (an endpoint's, the gateway's, or beyond it).
    #[serde(default)]
    #[arg(long)]
    pub dst: Option<IpAddr>,
    /// Destination MAC, overriding what the address implies.
    #[serde(default)]
    #[arg(long)]
    pub dst_mac: Option<String>,
    /// tcp, udp or icmp [default: tcp with --dport, else icmp].
    #[serde(default)]
    #[arg(long)]
    pub proto: Option<String>,
    /// Destination port (tcp, udp).
    #[serde(default)]
    #[arg(long)]
    pub dport: Option<u16>,
}
