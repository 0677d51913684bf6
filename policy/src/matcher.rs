//! The compiled matcher: a network's rules resolved against its endpoints into per-endpoint,
//! per-protocol, per-port indexes, so a packet is checked only against the rules that could
//! match it, in rule order (first match wins). `evaluate_naive` is the specification: a linear
//! scan of the same rules, which the matcher must always agree with.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::packet::{proto, Packet};
use crate::rules::{
    DefaultAction, Direction, NetworkPolicy, ParsedRule, Peer, Protocol, RuleAction, RuleError,
};

/// An endpoint as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its name in the network.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Addresses it holds (port security makes them its own).
    pub addrs: Vec<IpAddr>,
}

/// What rule evaluation decided for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The action taken.
    pub action: RuleAction,
    /// The enforcing rule's index, `None` for the network default.
    pub rule: Option<u32>,
    /// The first staged rule that matched before it, if any.
    pub staged: Option<u32>,
}

/// Rules that range over this many ports or fewer are indexed port by port.
const MAX_EXPANDED_RANGE: u32 = 256;

/// Protocol classes with their own index.
const CLASSES: usize = 5;

fn class_of(proto: u8) -> usize {
    match proto {
        proto::TCP => 0,
        proto::UDP => 1,
        proto::ICMP => 2,
        proto::ICMPV6 => 3,
        _ => 4,
    }
}

/// Hash maps of the matcher: keys are addresses and ports, not attacker-chosen strings, and
/// the seed is random per map.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Rules of one protocol class for one endpoint and direction.
#[derive(Debug, Default, Clone)]
struct Bucket {
    /// Where the rules of one destination port (or ICMP type) lie in `keyed`.
    by_key: FastMap<u16, (u32, u32)>,
    /// Rules with a key, grouped by key, each group in rule order.
    keyed: Vec<u32>,
    /// Rules that match any key or a wide range, in rule order.
    general: Vec<u32>,
    /// (key, rule) pairs while compiling; grouped into `by_key` and `keyed` at the end.
    pending: Vec<(u16, u32)>,
}

impl Bucket {
    /// Groups the pending pairs by key (a stable sort keeps rule order within a key).
    fn seal(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|(key, _)| *key);
        self.keyed = pending.iter().map(|(_, rule)| *rule).collect();
        let mut start = 0;
        for group in pending.chunk_by(|a, b| a.0 == b.0) {
            let len = group.len() as u32;
            self.by_key.insert(group[0].0, (start, len));
            start += len;
        }
    }

    /// The rules keyed by `key`, in rule order.
    fn keyed(&self, key: u16) -> &[u32] {
        self.by_key.get(&key).map_or(&[], |&(start, len)| {
            &self.keyed[start as usize..(start + len) as usize]
        })
    }
}

#[derive(Debug, Clone)]
struct Compiled {
    parsed: ParsedRule,
    /// Endpoint indexes the peer selector names (for `Peer::Endpoints`), shared by the
    /// rules with the same peer.
    peer_endpoints: Arc<[bool]>,
}

/// A network's rules compiled against its endpoints.
#[derive(Debug, Clone)]
pub struct Matcher {
    rules: Vec<Compiled>,
    default: DefaultAction,
    by_addr: FastMap<IpAddr, u32>,
    /// Per endpoint: [to, from] buckets of each protocol class.
    index: Vec<[[Bucket; CLASSES]; 2]>,
}

impl Matcher {
    /// Compiles `policy` for `endpoints`; refuses a rule set with any invalid rule.
    pub fn compile(policy: &NetworkPolicy, endpoints: &[Endpoint]) -> Result<Matcher, RuleError> {
        let parsed_rules = policy.parse_rules()?;
        let mut by_addr = FastMap::default();
        for (i, e) in endpoints.iter().enumerate() {
            for addr in &e.addrs {
                by_addr.entry(*addr).or_insert(i as u32);
            }
        }
        // Rules tend to share selectors: each distinct one is resolved once.
        let mut selections: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut peers: HashMap<&str, Arc<[bool]>> = HashMap::new();
        let mut index = vec![<[[Bucket; CLASSES]; 2]>::default(); endpoints.len()];
        let mut rules = Vec::with_capacity(policy.rules.len());
        for (r, (rule, parsed)) in policy.rules.iter().zip(parsed_rules).enumerate() {
            let peer_endpoints = match &parsed.peer {
                Peer::Endpoints(sel) => peers
                    .entry(rule.peer.as_str())
                    .or_insert_with(|| {
                        endpoints
                            .iter()
                            .map(|e| sel.matches(&e.name, &e.labels))
                            .collect()
                    })
                    .clone(),
                _ => Arc::from([]),
            };
            let selected = selections.entry(rule.select.as_str()).or_insert_with(|| {
                (0..endpoints.len() as u32)
                    .filter(|e| {
                        let e = &endpoints[*e as usize];
                        parsed.select.matches(&e.name, &e.labels)
                    })
                    .collect()
            });
            let side = match parsed.direction {
                Direction::To => 0,
                Direction::From => 1,
            };
            let classes: &[usize] = match parsed.proto.number() {
                Some(p) => &[class_of(p)],
                None => &[0, 1, 2, 3, 4],
            };
            let keys: Option<Vec<u16>> = match (parsed.ports, parsed.icmp_type) {
                (Some(range), _) if u32::from(range.last - range.first) < MAX_EXPANDED_RANGE => {
                    Some((range.first..=range.last).collect())
                }
                (_, Some(t)) => Some(vec![u16::from(t)]),
                _ => None,
            };
            for &e in selected.iter() {
                for &class in classes {
                    let bucket = &mut index[e as usize][side][class];
                    match &keys {
                        Some(keys) => {
                            bucket.pending.extend(keys.iter().map(|k| (*k, r as u32)));
                        }
                        None => bucket.general.push(r as u32),
                    }
                }
            }
            rules.push(Compiled {
                parsed,
                peer_endpoints,
            });
        }
        for bucket in index.iter_mut().flatten().flatten() {
            bucket.seal();
        }
        Ok(Matcher {
            rules,
            default: policy.default,
            by_addr,
            index,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The verdict for a packet opening a flow.
    pub fn evaluate(&self, packet: &Packet) -> Verdict {
        let src = self.by_addr.get(&packet.src).copied();
        let dst = self.by_addr.get(&packet.dst).copied();
        let class = class_of(packet.proto);
        let key = match packet.icmp_type {
            Some(t) => u16::from(t),
            None => packet.dport,
        };
        let mut lists: [&[u32]; 4] = [&[]; 4];
        for (slot, (endpoint, side)) in [(dst, 0), (src, 1)].into_iter().enumerate() {
            if let Some(e) = endpoint {
                let bucket = &self.index[e as usize][side][class];
                lists[slot * 2] = bucket.keyed(key);
                lists[slot * 2 + 1] = &bucket.general;
            }
        }
        let mut staged = None;
        // Merge the sorted candidate lists, lowest rule index first.
        while let Some((which, &r)) = lists
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.first().map(|r| (i, r)))
            .min_by_key(|(_, r)| **r)
        {
            lists[which] = &lists[which][1..];
            let rule = &self.rules[r as usize];
            if !self.matches(rule, packet, src, dst) {
                continue;
            }
            if rule.parsed.staged {
                staged = staged.or(Some(r));
                continue;
            }
            return Verdict {
                action: rule.parsed.action,
                rule: Some(r),
                staged,
            };
        }
        Verdict {
            action: default_action(self.default),
            rule: None,
            staged,
        }
    }

    fn matches(
        &self,
        rule: &Compiled,
        packet: &Packet,
        src: Option<u32>,
        dst: Option<u32>,
    ) -> bool {
        let p = &rule.parsed;
        if !transport_matches(p, packet) {
            return false;
        }
        let (peer_ip, peer_endpoint) = match p.direction {
            Direction::To => (packet.src, src),
            Direction::From => (packet.dst, dst),
        };
        match &p.peer {
            Peer::Any => true,
            Peer::Cidr(net) => net.contains(&peer_ip),
            Peer::Endpoints(_) => peer_endpoint.is_some_and(|e| rule.peer_endpoints[e as usize]),
        }
    }
}

fn default_action(default: DefaultAction) -> RuleAction {
    match default {
        DefaultAction::Allow => RuleAction::Allow,
        DefaultAction::Deny => RuleAction::Deny,
    }
}

fn transport_matches(p: &ParsedRule, packet: &Packet) -> bool {
    if p.proto.number().is_some_and(|n| n != packet.proto) {
        return false;
    }
    if p.ports.is_some_and(|range| !range.contains(packet.dport)) {
        return false;
    }
    if p.icmp_type.is_some() && p.icmp_type != packet.icmp_type {
        return false;
    }
    // A rule for "any" protocol with ports cannot exist (validation), so nothing else to check.
    debug_assert!(p.ports.is_none() || p.proto != Protocol::Any);
    true
}

/// The specification of rule evaluation: every rule in order, first non-staged match wins.
pub fn evaluate_naive(policy: &NetworkPolicy, endpoints: &[Endpoint], packet: &Packet) -> Verdict {
    let owner = |ip: IpAddr| {
        endpoints
            .iter()
            .find(|e| e.addrs.contains(&ip))
            .map(|e| (e.name.as_str(), &e.labels))
    };
    let (src, dst) = (owner(packet.src), owner(packet.dst));
    let mut staged = None;
    for (r, rule) in policy.rules.iter().enumerate() {
        let Ok(p) = rule.parse() else {
            continue;
        };
        let (subject, peer_ip, peer) = match p.direction {
            Direction::To => (dst, packet.src, src),
            Direction::From => (src, packet.dst, dst),
        };
        let selected = subject.is_some_and(|(name, labels)| p.select.matches(name, labels));
        if !selected || !transport_matches(&p, packet) || !p.peer.matches(peer_ip, peer) {
            continue;
        }
        if p.staged {
            staged = staged.or(Some(r as u32));
            continue;
        }
        return Verdict {
            action: p.action,
            rule: Some(r as u32),
            staged,
        };
    }
    Verdict {
        action: default_action(policy.default),
        rule: None,
        staged,
    }
}

#[cfg(test)]
mod tests;
