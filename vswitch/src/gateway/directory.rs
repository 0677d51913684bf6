//! The name directory behind the embedded DNS: every endpoint's name and aliases with its
//! addresses, per network. Rebuilt from the state whenever an endpoint connects, disconnects
//! or a DHCP lease changes, so names appear and vanish at once. A query sees only the networks
//! of the container that asked (isolation), all of them if it is on several.

use std::collections::HashMap;
use std::net::IpAddr;

use super::dns;
use super::ndp::eui64_address;
use crate::model::State;

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
                .chain(network.remote.iter().map(|e| {
                    Entry {
                        names: std::iter::once(&e.name)
                            .chain(&e.aliases)
                            .map(|n| n.to_ascii_lowercase())
                            .collect(),
                        addresses: e.addresses.iter().map(|a| a.addr()).collect(),
                        // On another host: in no namespace here.
                        netns: String::new(),
                    }
                }))
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
    /// Every address under `name` on the first network (own first) where it is known: an
    /// alias shared by several endpoints answers with all of them (round robin, as Docker).
    fn addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.visible.iter().find_map(|entries| {
            let found: Vec<IpAddr> = entries
                .iter()
                .filter(|e| e.names.iter().any(|n| n == name))
                .flat_map(|e| e.addresses.iter().copied())
                .collect();
            (!found.is_empty()).then_some(found)
        })
    }

    fn name_of(&self, ip: IpAddr) -> Option<String> {
        self.visible
            .iter()
            .flat_map(|entries| entries.iter())
            .find(|e| e.addresses.contains(&ip))
            .map(|e| e.names[0].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::dns::Names;
    use crate::model::{plan_network, EndpointRecord, LeaseRecord, NetworkCreate};
    use vswitch_core::frame::MacAddr;

    fn endpoint(name: &str, netns: &str, ip: &str, aliases: &[&str]) -> EndpointRecord {
        EndpointRecord {
            name: name.into(),
            netns: netns.into(),
            netns_inode: 0,
            ifname: "eth0".into(),
            mac: MacAddr::local_from_seed(name.as_bytes()),
            addresses: if ip.is_empty() {
                vec![]
            } else {
                vec![ip.parse().unwrap()]
            },
            offload: true,
            mtu: None,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            dhcp: ip.is_empty(),
            dhcp_leases: None,
            port_security: true,
            labels: Default::default(),
            rate_limit: None,
            published: Vec::new(),
            docker_endpoint: None,
            cni_container: None,
            foreign_namespace: false,
        }
    }

    fn state() -> State {
        let mut state = State::default();
        for (name, subnets) in [
            ("app", vec!["10.1.0.0/24", "fd01::/64"]),
            ("other", vec!["10.2.0.0/24"]),
        ] {
            let req = NetworkCreate {
                name: name.into(),
                subnets: subnets.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            let net = plan_network(&req, &state.networks).unwrap();
            state.networks.insert(name.into(), net);
        }
        let app = state.networks.get_mut("app").unwrap();
        for e in [
            endpoint("web", "ns-web", "10.1.0.2/24", &["www", "lb"]),
            endpoint("api", "ns-api", "10.1.0.3/24", &["lb"]),
            endpoint("dyn", "ns-dyn", "", &[]),
        ] {
            app.endpoints.insert(e.name.clone(), e);
        }
        app.leases.push(LeaseRecord {
            mac: MacAddr::local_from_seed(b"dyn"),
            ip: "10.1.0.9".parse().unwrap(),
            expires: 1000,
            hostname: None,
            endpoint: None,
            offered: false,
        });
        let other = state.networks.get_mut("other").unwrap();
        for e in [
            endpoint("x", "ns-x", "10.2.0.2/24", &[]),
            endpoint("web2", "ns-web", "10.2.0.3/24", &[]),
        ] {
            other.endpoints.insert(e.name.clone(), e);
        }
        state
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_aliases_and_shared_aliases() {
        let dir = Directory::from_state(&state(), 500);
        let view = dir.view("app", ip("10.1.0.3"));
        assert_eq!(view.addresses("www"), Some(vec![ip("10.1.0.2")]));
        let mut lb = view.addresses("lb").unwrap();
        lb.sort();
        assert_eq!(lb, vec![ip("10.1.0.2"), ip("10.1.0.3")]);
        assert_eq!(view.name_of(ip("10.1.0.2")), Some("web".into()));
    }

    #[test]
    fn other_networks_are_visible_only_to_their_members() {
        let dir = Directory::from_state(&state(), 500);
        assert_eq!(dir.view("app", ip("10.1.0.3")).addresses("x"), None);
        // web is on both networks (same namespace): it sees x.
        assert_eq!(
            dir.view("app", ip("10.1.0.2")).addresses("x"),
            Some(vec![ip("10.2.0.2")])
        );
        assert_eq!(dir.view("other", ip("10.2.0.2")).addresses("web"), None);
    }

    #[test]
    fn dhcp_clients_are_known_by_lease_and_slaac_address_until_expiry() {
        let mac = MacAddr::local_from_seed(b"dyn");
        let slaac = IpAddr::V6(eui64_address("fd01::".parse().unwrap(), mac));
        let dir = Directory::from_state(&state(), 500);
        let view = dir.view("app", ip("10.1.0.2"));
        assert_eq!(view.addresses("dyn"), Some(vec![ip("10.1.0.9"), slaac]));
        let later = Directory::from_state(&state(), 2000);
        assert_eq!(
            later.view("app", ip("10.1.0.2")).addresses("dyn"),
            Some(vec![slaac])
        );
    }
}
