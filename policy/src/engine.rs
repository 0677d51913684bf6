//! A network's policy at work: the compiled matcher, the flow table and the per-rule counters.
//! A packet of a tracked flow costs one lookup; a new flow is decided by the matcher and, if
//! allowed, tracked. Replacing the rules bumps a generation: each tracked flow is decided again
//! on its next packet, so flows the new rules forbid are cut and the others carry on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use crate::conntrack::{is_trackable, Conntrack, Flow, Lookup};
use crate::matcher::{Endpoint, Matcher, Verdict};
use crate::packet::{proto, tcp_flags, Packet};
use crate::rules::{NetworkPolicy, RuleAction, RuleError, DEFAULT_RULE};

/// A rule's name, cheap to clone into a drop reason (a reference count, no allocation). Names
/// are freed with the last engine or drop reason holding them, so names that come and go over
/// the API are not kept forever.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleName(Arc<str>);

impl RuleName {
    /// A rule's name.
    pub fn new(name: &str) -> RuleName {
        RuleName(Arc::from(name))
    }

    /// The name the network default is counted and reported under.
    pub fn network_default() -> RuleName {
        static DEFAULT: LazyLock<RuleName> = LazyLock::new(|| RuleName::new(DEFAULT_RULE));
        DEFAULT.clone()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What policy does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Drop it, by this rule.
    Deny(RuleName),
    /// Drop it and answer (see `reject`), by this rule.
    Reject(RuleName),
}

/// A rule's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleStats {
    /// The rule (or `default`).
    pub name: String,
    /// Packets it decided (staged rules: 0).
    pub hits: u64,
    /// Packets a staged rule would have decided.
    pub staged_hits: u64,
}

/// Why a packet would get its decision, for traces and `policy test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// The deciding rule (`default` for the network default).
    pub rule: RuleName,
    /// Whether a tracked flow decides it (a reply, or a later packet).
    pub tracked: bool,
    /// Whether it is infrastructure traffic that policy always lets through.
    pub infrastructure: bool,
    /// A staged rule that would have decided it, and its action.
    pub staged: Option<(RuleName, RuleAction)>,
}

/// One row of a flow listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowRow {
    /// Protocol name (tcp, udp, icmp, icmpv6) or number.
    pub proto: String,
    /// Opener's address.
    pub src: IpAddr,
    /// Opener's port (echo identifier for ICMP).
    pub sport: u16,
    /// Other end's address.
    pub dst: IpAddr,
    /// Other end's port.
    pub dport: u16,
    /// Where the flow stands.
    pub state: String,
    /// The rule that allowed it.
    pub rule: String,
    /// Packets seen.
    pub packets: u64,
    /// Time since its last packet.
    pub idle_ms: u64,
}

/// Policy state of one network.
#[derive(Debug)]
pub struct Engine {
    matcher: Matcher,
    names: Vec<RuleName>,
    actions: Vec<RuleAction>,
    hits: Vec<u64>,
    staged_hits: Vec<u64>,
    default_hits: u64,
    conntrack: Conntrack,
    generation: u64,
    gateway: Vec<IpAddr>,
}

impl Engine {
    /// Compiles `policy` for `endpoints`; `gateway` holds the network gateway's addresses (its
    /// DNS is always reachable). Keeps at most `capacity` flows.
    pub fn new(
        policy: &NetworkPolicy,
        endpoints: &[Endpoint],
        gateway: Vec<IpAddr>,
        capacity: usize,
    ) -> Result<Engine, RuleError> {
        let matcher = Matcher::compile(policy, endpoints)?;
        Ok(Engine {
            names: policy
                .rules
                .iter()
                .map(|r| RuleName::new(&r.name))
                .collect(),
            actions: policy.rules.iter().map(|r| r.action).collect(),
            hits: vec![0; policy.rules.len()],
            staged_hits: vec![0; policy.rules.len()],
            default_hits: 0,
            matcher,
            conntrack: Conntrack::new(capacity),
            generation: 0,
            gateway,
        })
    }

    /// Takes over `old`'s flows and the counters of rules that kept their names; every flow is
    /// decided again on its next packet.
    pub fn succeed(&mut self, old: Engine) {
        let old_counts: HashMap<&str, (u64, u64)> = old
            .names
            .iter()
            .zip(old.hits.iter().zip(&old.staged_hits))
            .map(|(n, (h, s))| (n.as_str(), (*h, *s)))
            .collect();
        for (i, name) in self.names.iter().enumerate() {
            if let Some((h, s)) = old_counts.get(name.as_str()) {
                self.hits[i] = *h;
                self.staged_hits[i] = *s;
            }
        }
        self.default_hits = old.default_hits;
        self.conntrack = old.conntrack;
        self.generation = old.generation + 1;
    }

    /// Decides `packet` at `now`, tracking the flows it allows.
    #[inline]
    pub fn process(&mut self, now: Instant, packet: &Packet) -> Decision {
        if self.is_infrastructure(packet) {
            return Decision::Allow;
        }
        if let Some(flow) = self.related_flow(now, packet) {
            let (rule, staged) = (flow.rule, flow.staged);
            self.count(rule, staged);
            return Decision::Allow;
        }
        let verdict = match self.conntrack.lookup(now, packet) {
            Lookup::Hit { flow, from_opener } => {
                if flow.generation == self.generation {
                    self.count(flow.rule, flow.staged);
                    return Decision::Allow;
                }
                // The policy changed since this flow was allowed: decide it again as opened.
                let opener = if from_opener {
                    *packet
                } else {
                    reversed(packet)
                };
                let verdict = self.matcher.evaluate(&opener);
                if verdict.action == RuleAction::Allow {
                    self.conntrack
                        .confirm(packet, self.generation, verdict.rule, verdict.staged);
                } else {
                    self.conntrack.remove(packet);
                }
                verdict
            }
            Lookup::Miss => {
                let verdict = self.matcher.evaluate(packet);
                if verdict.action == RuleAction::Allow && is_trackable(packet) {
                    self.conntrack.insert(
                        now,
                        packet,
                        self.generation,
                        verdict.rule,
                        verdict.staged,
                    );
                }
                verdict
            }
        };
        self.count(verdict.rule, verdict.staged);
        self.decision(verdict)
    }

    /// The decision of a verdict; the rule's name is taken (a reference count) only for drops.
    fn decision(&self, verdict: Verdict) -> Decision {
        match verdict.action {
            RuleAction::Allow => Decision::Allow,
            RuleAction::Deny => Decision::Deny(self.name(verdict.rule)),
            RuleAction::Reject => Decision::Reject(self.name(verdict.rule)),
        }
    }

    fn name(&self, rule: Option<u32>) -> RuleName {
        rule.and_then(|r| self.names.get(r as usize).cloned())
            .unwrap_or_else(RuleName::network_default)
    }

    #[inline]
    fn count(&mut self, rule: Option<u32>, staged: Option<u32>) {
        match rule {
            Some(r) => {
                if let Some(h) = self.hits.get_mut(r as usize) {
                    *h += 1;
                }
            }
            None => self.default_hits += 1,
        }
        if let Some(h) = staged.and_then(|s| self.staged_hits.get_mut(s as usize)) {
            *h += 1;
        }
    }

    /// The decision `packet` would get at `now` and why, changing nothing.
    pub fn explain(&self, now: Instant, packet: &Packet) -> Explanation {
        let mut explanation = Explanation {
            decision: Decision::Allow,
            rule: RuleName::network_default(),
            tracked: false,
            infrastructure: false,
            staged: None,
        };
        if self.is_infrastructure(packet) {
            explanation.infrastructure = true;
            return explanation;
        }
        let tracked = self
            .related_flow(now, packet)
            .or_else(|| self.conntrack.peek(now, packet));
        let verdict = match tracked {
            Some(flow) if flow.generation == self.generation => {
                explanation.tracked = true;
                Verdict {
                    action: RuleAction::Allow,
                    rule: flow.rule,
                    staged: flow.staged,
                }
            }
            _ => self.matcher.evaluate(packet),
        };
        explanation.decision = self.decision(verdict);
        explanation.rule = self.name(verdict.rule);
        explanation.staged = verdict
            .staged
            .map(|s| (self.name(Some(s)), self.actions[s as usize]));
        explanation
    }

    /// The tracked flow an ICMP error is about (an unreachable or packet-too-big for one of its
    /// packets): such errors pass as the flow's own packets do, or path MTU discovery breaks.
    fn related_flow(&self, now: Instant, packet: &Packet) -> Option<&Flow> {
        let quoted = packet.quoted?.packet();
        self.conntrack
            .peek(now, &quoted)
            .filter(|flow| flow.generation == self.generation)
    }

    /// Traffic that keeps the network working whatever the rules say: DHCP, neighbour
    /// discovery, and DNS to the gateway.
    fn is_infrastructure(&self, packet: &Packet) -> bool {
        match packet.proto {
            proto::UDP => {
                matches!(packet.dport, 67 | 68 | 546 | 547) || self.is_gateway_dns(packet)
            }
            proto::TCP => self.is_gateway_dns(packet),
            proto::ICMPV6 => matches!(packet.icmp_type, Some(133..=137)),
            _ => false,
        }
    }

    fn is_gateway_dns(&self, packet: &Packet) -> bool {
        (packet.dport == 53 && self.gateway.contains(&packet.dst))
            || (packet.sport == 53 && self.gateway.contains(&packet.src))
    }

    /// Counters of every rule in order, then the default.
    pub fn rule_stats(&self) -> Vec<RuleStats> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| RuleStats {
                name: n.to_string(),
                hits: self.hits[i],
                staged_hits: self.staged_hits[i],
            })
            .chain(std::iter::once(RuleStats {
                name: DEFAULT_RULE.to_string(),
                hits: self.default_hits,
                staged_hits: 0,
            }))
            .collect()
    }

    /// Live flows.
    pub fn flows(&self, now: Instant) -> Vec<FlowRow> {
        self.conntrack
            .flows(now)
            .map(|(ends, flow)| FlowRow {
                proto: proto_name(ends.proto),
                src: ends.src.0,
                sport: ends.src.1,
                dst: ends.dst.0,
                dport: ends.dst.1,
                state: flow.state.name().to_string(),
                rule: if flow.generation == self.generation {
                    self.name(flow.rule).to_string()
                } else {
                    "(to be decided again)".to_string()
                },
                packets: flow.packets,
                idle_ms: now.saturating_duration_since(flow.last_seen).as_millis() as u64,
            })
            .collect()
    }

    /// Flows tracked and flows evicted for room.
    pub fn flow_counts(&self) -> (usize, u64) {
        (self.conntrack.len(), self.conntrack.evictions())
    }

    /// Forgets expired flows.
    pub fn sweep(&mut self, now: Instant) {
        self.conntrack.sweep(now);
    }
}

/// `packet` as its flow's other end would send it (an echo request for an echo reply).
fn reversed(packet: &Packet) -> Packet {
    let icmp_type = match (packet.proto, packet.icmp_type) {
        (proto::ICMP, Some(0)) => Some(8),
        (proto::ICMPV6, Some(129)) => Some(128),
        (_, t) => t,
    };
    Packet {
        src: packet.dst,
        dst: packet.src,
        sport: packet.dport,
        dport: packet.sport,
        icmp_type,
        tcp_flags: tcp_flags::SYN,
        quoted: None,
        ..*packet
    }
}

fn proto_name(number: u8) -> String {
    match number {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests;
