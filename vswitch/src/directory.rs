//! The name directory behind the embedded DNS: every endpoint's name and aliases with its
//! addresses, per network. Rebuilt from the state whenever an endpoint connects, disconnects
//! or a DHCP lease changes, so names appear and vanish at once. A query sees only the networks
//! of the container that asked (isolation), all of them if it is on several.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::gateway::dns;
use crate::gateway::ndp::eui64_address;
use crate::state::State;

/// One endpoint as DNS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Name first, then aliases; lower-case.
    names: Vec<String>,
    addresses: Vec<IpAddr>,
    /// The container's namespace, to find its other networks.
    netns: String,
}

/// Names of every network.
#[derive(Debug, Default)]
pub struct Directory {
    networks: HashMap<String, Vec<Entry>>,
}

impl Directory {
    /// The directory of `state` at `now` (seconds since the Unix epoch; expired leases give
    /// no address).
    pub fn from_state(state: &State, now: u64) -> Directory {
        let mut networks = HashMap::new();
        for (name, network) in &state.networks {
            let entries = network
                .endpoints
                .values()
                .map(|e| {
                    let mut addresses: Vec<IpAddr> = e.addresses.iter().map(|a| a.addr()).collect();
                    if e.dhcp {
                        // A DHCP client's IPv4 is its lease; its IPv6 is what SLAAC gives it.
                        let lease = network
                            .leases
                            .iter()
                            .find(|l| l.mac == e.mac && l.expires > now);
                        addresses.extend(lease.map(|l| IpAddr::V4(l.ip)));
                        addresses.extend(network.subnets.iter().filter_map(|s| match s.subnet {
                            ipnet::IpNet::V6(net) if net.prefix_len() == 64 => {
                                Some(IpAddr::V6(eui64_address(net.network(), e.mac)))
                            }
                            _ => None,
                        }));
                    }
                    Entry {
                        names: std::iter::once(&e.name)
                            .chain(&e.aliases)
                            .map(|n| n.to_ascii_lowercase())
                            .collect(),
                        addresses,
                        netns: e.netns.clone(),
                    }
                })
                .collect();
            networks.insert(name.clone(), entries);
        }
        Directory { networks }
    }

    /// What a client with address `client` on `network` may resolve: the names of every network
    /// its container is on (just `network` for a client that is not an endpoint).
    pub fn view<'a>(&'a self, network: &'a str, client: IpAddr) -> View<'a> {
        let own = self.networks.get(network).map_or(&[][..], |e| &e[..]);
        let netns = own
            .iter()
            .find(|e| e.addresses.contains(&client))
            .map(|e| e.netns.as_str());
        let mut visible: Vec<&[Entry]> = vec![own];
        if let Some(netns) = netns {
            for (name, entries) in &self.networks {
                if name != network && entries.iter().any(|e| e.netns == netns) {
                    visible.push(entries);
                }
            }
        }
        View { visible }
    }
}

/// The names one client may resolve, its own network first.
pub struct View<'a> {
    visible: Vec<&'a [Entry]>,
}

impl dns::Names for View<'_> {
    fn addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.visible
            .iter()
            .flat_map(|entries| entries.iter())
            .find(|e| e.names.iter().any(|n| n == name))
            .map(|e| e.addresses.clone())
    }

    fn name_of(&self, ip: IpAddr) -> Option<String> {
        self.visible
            .iter()
            .flat_map(|entries| entries.iter())
            .find(|e| e.addresses.contains(&ip))
            .map(|e| e.names[0].clone())
    }
}
