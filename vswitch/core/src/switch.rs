//! The sans-IO switching core: `Switch::process(now, in_port, frame)` decides where one frame
//! goes. It never blocks, never touches a device and allocates nothing per frame (only when it
//! learns a new MAC); time is a parameter, so tests age entries without sleeping.

use std::time::Instant;

use policy::{Decision as PolicyDecision, Engine, Limiter, Packet, RateLimit, TokenBucket};

use crate::fdb::{Fdb, Learned};
use crate::frame::{Header, MacAddr, ETH_HEADER_LEN};
use crate::ids::{NetworkId, PortId};
use crate::reason::{DropCounters, DropReason};
use crate::suppress::{self, Neighbours};

mod config;
mod stats;

pub use config::{ConfigError, PortConfig, PortMode, Reach, SwitchConfig};
pub use stats::{Events, FdbRow, NetworkStats, SwitchStats, Trace, WouldLearn};

/// Where a frame leaves: a port, and the tag it must carry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    /// Output port.
    pub port: PortId,
    /// 802.1Q VLAN ID to push, or `None` to send untagged.
    pub vlan: Option<u16>,
}

/// A port of a network, with the tag it needs there and its place in an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Where and how frames of the network leave through it.
    pub egress: Egress,
    /// Which ports' frames may leave through it.
    pub reach: Reach,
}

/// The core's decision for one frame. `ingress_tag_len` bytes after the MAC addresses are the
/// ingress tag, to be removed before the egress tag (if any) is inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'s> {
    /// Send to one port.
    Forward { to: Egress, ingress_tag_len: usize },
    /// Send to every member of the network except `except` (the ingress port) and those a
    /// frame from a port of kind `from` may not reach.
    Flood {
        to: &'s [Member],
        except: PortId,
        from: Reach,
        ingress_tag_len: usize,
    },
    /// Drop, for this reason (already counted).
    Drop(DropReason),
    /// Answered by the switch (ARP suppression): send `reply` back out of the ingress port.
    Answer {
        /// The answer.
        reply: &'s [u8],
    },
    /// Drop (a `reject` rule, already counted) and send `reply` back out of the ingress port.
    Reject {
        /// Why the frame was dropped.
        reason: DropReason,
        /// The TCP reset or ICMP unreachable answering it.
        reply: &'s [u8],
    },
}

impl Action<'_> {
    /// Output ports of this decision, in order.
    pub fn targets(&self) -> impl Iterator<Item = Egress> + '_ {
        let (one, many, except, from) = match self {
            Action::Forward { to, .. } => (Some(*to), &[][..], None, Reach::Any),
            Action::Flood {
                to, except, from, ..
            } => (None, *to, Some(*except), *from),
            Action::Drop(_) | Action::Reject { .. } | Action::Answer { .. } => {
                (None, &[][..], None, Reach::Any)
            }
        };
        one.into_iter().chain(
            many.iter()
                .filter(move |m| Some(m.egress.port) != except && from.may_reach(m.reach))
                .map(|m| m.egress),
        )
    }

    /// Bytes of the ingress tag to remove before the frame leaves (0 for a drop).
    pub fn ingress_tag_len(&self) -> usize {
        match self {
            Action::Forward {
                ingress_tag_len, ..
            }
            | Action::Flood {
                ingress_tag_len, ..
            } => *ingress_tag_len,
            Action::Drop(_) | Action::Reject { .. } | Action::Answer { .. } => 0,
        }
    }
}

#[derive(Debug)]
struct Port {
    config: PortConfig,
    drops: DropCounters,
    limiter: Option<Limiter>,
}

#[derive(Debug)]
struct Network {
    /// Every port carrying this network, with the tag it needs there.
    members: Vec<Member>,
    events: Events,
    /// Rules and tracked flows; `None` lets everything through untracked.
    policy: Option<Engine>,
    /// Broadcast and multicast allowance.
    storm: Option<TokenBucket>,
    /// Addresses whose ARP requests the switch answers itself.
    neighbours: Neighbours,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            members: Vec::new(),
            events: Events::default(),
            policy: None,
            storm: Some(storm_bucket(policy::ratelimit::DEFAULT_STORM_PPS)),
            neighbours: Neighbours::new(),
        }
    }
}

/// Storm control at `pps`, with a second's worth of burst.
fn storm_bucket(pps: u64) -> TokenBucket {
    TokenBucket::new(pps, pps)
}

/// What policy concluded about a frame whose destination is known.
enum Policed {
    Pass,
    Drop(DropReason),
}

/// The learning switch.
#[derive(Debug)]
pub struct Switch {
    ports: Vec<Option<Port>>,
    networks: Vec<Option<Network>>,
    fdb: Fdb,
    stats: SwitchStats,
    /// Answer of the last rejected frame, lent out by `Action::Reject`.
    reply: Vec<u8>,
}

/// A frame's fate as `classify` finds it.
struct Classified {
    network: NetworkId,
    src: MacAddr,
    /// Port the destination is known on (its own port for a frame to its sender).
    dst_port: Option<PortId>,
    decision: Result<Decision, DropReason>,
    tag_len: usize,
}

/// Where a frame goes, before it is tied to the switch's member lists.
enum Decision {
    Forward(Egress, NetworkId),
    Flood(NetworkId, PortId, Reach),
    /// Answered by the switch: `Switch::reply` goes back out of the ingress port.
    Answer,
}

impl Switch {
    /// A switch with no ports and no networks.
    pub fn new(config: SwitchConfig) -> Switch {
        Switch {
            ports: Vec::new(),
            networks: Vec::new(),
            fdb: Fdb::new(config.aging, config.mac_limit),
            stats: SwitchStats::default(),
            reply: Vec::new(),
        }
    }

    /// Adds an isolated network.
    pub fn add_network(&mut self) -> NetworkId {
        let id = first_free(&self.networks);
        put(&mut self.networks, id, Network::default());
        NetworkId(id as u32)
    }

    /// Removes a network that has no ports left.
    pub fn remove_network(&mut self, id: NetworkId) -> Result<(), ConfigError> {
        let net = self.network(id)?;
        if !net.members.is_empty() {
            return Err(ConfigError::NetworkInUse(id));
        }
        // Its events stay in the switch-wide totals.
        if let Some(net) = self.networks[id.0 as usize].take() {
            self.stats.events.add(&net.events);
        }
        self.fdb.flush_network(id);
        Ok(())
    }

    fn network(&self, id: NetworkId) -> Result<&Network, ConfigError> {
        self.networks
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(ConfigError::UnknownNetwork(id))
    }

    /// Adds a port; every network it names must exist.
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, ConfigError> {
        for net in config.mode.networks() {
            self.network(net)?;
        }
        let id = PortId(first_free(&self.ports) as u32);
        for net in config.mode.networks() {
            let vlan = config.mode.egress_vlan(net);
            if let Some(Some(n)) = self.networks.get_mut(net.0 as usize) {
                n.members.push(Member {
                    egress: Egress { port: id, vlan },
                    reach: config.reach,
                });
            }
        }
        put(
            &mut self.ports,
            id.index(),
            Port {
                limiter: config.rate_limit.as_ref().map(Limiter::new),
                config,
                drops: DropCounters::default(),
            },
        );
        Ok(id)
    }

    /// Removes a port and forgets every MAC learned on it.
    pub fn remove_port(&mut self, id: PortId) -> Result<(), ConfigError> {
        let slot = self
            .ports
            .get_mut(id.index())
            .ok_or(ConfigError::UnknownPort(id))?;
        slot.take().ok_or(ConfigError::UnknownPort(id))?;
        for net in self.networks.iter_mut().flatten() {
            net.members.retain(|m| m.egress.port != id);
        }
        self.fdb.flush_port(id);
        Ok(())
    }

    /// Replaces what `port` may send as.
    pub fn set_port_security(
        &mut self,
        port: PortId,
        security: Option<policy::PortSecurity>,
    ) -> Result<(), ConfigError> {
        self.port_mut(port)?.config.security = security;
        Ok(())
    }

    /// Replaces `port`'s ingress rate limit (buckets start full).
    pub fn set_rate_limit(
        &mut self,
        port: PortId,
        limit: Option<RateLimit>,
    ) -> Result<(), ConfigError> {
        let slot = self.port_mut(port)?;
        slot.limiter = limit.as_ref().map(Limiter::new);
        slot.config.rate_limit = limit;
        Ok(())
    }

    /// Installs `engine` as `network`'s policy (`None`: let everything through). Tracked flows
    /// carry over and are each decided again by the new rules on their next packet.
    pub fn set_policy(
        &mut self,
        network: NetworkId,
        engine: Option<Engine>,
    ) -> Result<(), ConfigError> {
        let net = self.network_mut(network)?;
        net.policy = match (engine, net.policy.take()) {
            (Some(mut new), Some(old)) => {
                new.succeed(old);
                Some(new)
            }
            (new, _) => new,
        };
        Ok(())
    }

    /// Sets `network`'s broadcast/multicast allowance in packets/s (`None`: unlimited).
    pub fn set_storm_control(
        &mut self,
        network: NetworkId,
        pps: Option<u64>,
    ) -> Result<(), ConfigError> {
        self.network_mut(network)?.storm = pps.map(storm_bucket);
        Ok(())
    }

    /// `network`'s policy, if it has one.
    pub fn policy(&self, network: NetworkId) -> Option<&Engine> {
        self.network(network).ok()?.policy.as_ref()
    }

    fn port_mut(&mut self, id: PortId) -> Result<&mut Port, ConfigError> {
        self.ports
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .ok_or(ConfigError::UnknownPort(id))
    }

    fn network_mut(&mut self, id: NetworkId) -> Result<&mut Network, ConfigError> {
        self.networks
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(ConfigError::UnknownNetwork(id))
    }

    /// Pins `mac` in `network` to `port`.
    pub fn add_static(
        &mut self,
        network: NetworkId,
        mac: MacAddr,
        port: PortId,
    ) -> Result<(), ConfigError> {
        self.network(network)?;
        self.port(port)?;
        self.fdb.add_static(network, mac, port);
        Ok(())
    }

    /// Unpins `mac` in `network`; returns whether it was pinned.
    pub fn remove_static(&mut self, network: NetworkId, mac: MacAddr) -> bool {
        self.fdb.remove_static(network, mac)
    }

    fn port(&self, id: PortId) -> Result<&Port, ConfigError> {
        self.ports
            .get(id.index())
            .and_then(Option::as_ref)
            .ok_or(ConfigError::UnknownPort(id))
    }

    /// Decides the fate of `frame`, which arrived on `in_port` at `now`, learning its source.
    pub fn process(&mut self, now: Instant, in_port: PortId, frame: &[u8]) -> Action<'_> {
        self.process_gso(now, in_port, frame, frame.len())
    }

    /// As `process`, for a frame that crosses the switch as one offloaded (GSO) frame but goes
    /// on the wire as segments of at most `wire_len` bytes: the MTU applies to those.
    pub fn process_gso(
        &mut self,
        now: Instant,
        in_port: PortId,
        frame: &[u8],
        wire_len: usize,
    ) -> Action<'_> {
        let (decision, tag_len) = match self.decide(now, in_port, frame, wire_len.min(frame.len()))
        {
            Ok(decided) => decided,
            Err(reason) => {
                self.stats.drops.count(&reason);
                if let Some(Some(port)) = self.ports.get_mut(in_port.index()) {
                    port.drops.count(&reason);
                }
                if matches!(reason, DropReason::Rejected(_)) && !self.reply.is_empty() {
                    return Action::Reject {
                        reason,
                        reply: &self.reply,
                    };
                }
                return Action::Drop(reason);
            }
        };
        match decision {
            Decision::Forward(to, network) => {
                self.count(network, |e| e.forwarded += 1);
                Action::Forward {
                    to,
                    ingress_tag_len: tag_len,
                }
            }
            Decision::Answer => Action::Answer { reply: &self.reply },
            Decision::Flood(net, except, from) => {
                self.count(net, |e| e.flooded += 1);
                let to = self.networks[net.0 as usize]
                    .as_ref()
                    .map_or(&[][..], |n| &n.members[..]);
                Action::Flood {
                    to,
                    except,
                    from,
                    ingress_tag_len: tag_len,
                }
            }
        }
    }

    #[inline(always)]
    fn decide(
        &mut self,
        now: Instant,
        in_port: PortId,
        frame: &[u8],
        wire_len: usize,
    ) -> Result<(Decision, usize), DropReason> {
        self.admit(now, in_port, frame.len(), wire_len)?;
        let classified = self.classify(now, in_port, frame, wire_len)?;
        let network = classified.network;
        match self.fdb.learn(now, network, classified.src, in_port) {
            Learned::New => self.count(network, |e| e.learned += 1),
            Learned::Moved { .. } => self.count(network, |e| e.moved += 1),
            Learned::LimitReached => self.count(network, |e| e.limit_reached += 1),
            Learned::Refreshed | Learned::Static => {}
        }
        let decision = classified.decision?;
        if self.answers(&decision, classified.tag_len, frame) {
            return Ok((Decision::Answer, 0));
        }
        if let Policed::Drop(reason) = self.police(now, network, frame, classified.dst_port) {
            return Err(reason);
        }
        Ok((decision, classified.tag_len))
    }

    /// Whether the switch answers a frame it would flood (an untagged ARP request from a port
    /// of this host for an address it knows), the answer then in `self.reply`.
    #[inline(always)]
    fn answers(&mut self, decision: &Decision, tag_len: usize, frame: &[u8]) -> bool {
        let Decision::Flood(network, _, from) = decision else {
            return false;
        };
        if tag_len != 0 || *from == Reach::Tunnel {
            return false;
        }
        let Some(Some(net)) = self.networks.get(network.0 as usize) else {
            return false;
        };
        suppress::answer(&net.neighbours, frame, &mut self.reply)
    }

    /// Sets the addresses whose ARP requests the switch answers in `network`.
    pub fn set_neighbours(
        &mut self,
        network: NetworkId,
        neighbours: Neighbours,
    ) -> Result<(), ConfigError> {
        self.network_mut(network)?.neighbours = neighbours;
        Ok(())
    }

    /// The ingress port's rate limit; a GSO frame counts as the packets it stands for.
    #[inline(always)]
    fn admit(
        &mut self,
        now: Instant,
        in_port: PortId,
        len: usize,
        wire_len: usize,
    ) -> Result<(), DropReason> {
        if let Some(Some(Port {
            limiter: Some(limiter),
            ..
        })) = self.ports.get_mut(in_port.index())
        {
            let packets = len.div_ceil(wire_len.max(1)) as u64;
            if !limiter.admit(now, len, packets) {
                return Err(DropReason::RateLimited);
            }
        }
        Ok(())
    }

    /// Storm control for group frames (and unknown unicast), then the network's policy for IP.
    #[inline(always)]
    fn police(
        &mut self,
        now: Instant,
        network: NetworkId,
        frame: &[u8],
        dst_port: Option<PortId>,
    ) -> Policed {
        let Some(Some(net)) = self.networks.get_mut(network.0 as usize) else {
            return Policed::Pass;
        };
        if dst_port.is_none() {
            if let Some(storm) = &mut net.storm {
                if !storm.take(now, 1) {
                    return Policed::Drop(DropReason::Storm);
                }
            }
        }
        let Some(engine) = &mut net.policy else {
            return Policed::Pass;
        };
        let Some(packet) = Packet::parse(frame) else {
            // Rules cannot judge an IP packet they cannot read; anything else is not theirs.
            return if Packet::is_ip(frame) {
                Policed::Drop(DropReason::MalformedIp)
            } else {
                Policed::Pass
            };
        };
        match engine.process(now, &packet) {
            PolicyDecision::Allow => Policed::Pass,
            PolicyDecision::Deny(rule) => Policed::Drop(DropReason::Denied(rule)),
            PolicyDecision::Reject(rule) => {
                policy::reject::build(frame, &packet, &mut self.reply);
                Policed::Drop(DropReason::Rejected(rule))
            }
        }
    }

    /// Everything about a frame's fate that does not change the switch: the checks, its
    /// network, and where it goes as if its source were learned first. An `Err` is a drop
    /// before the network is known; `decision` holds drops after it (the source is still
    /// learned then, as a hardware switch does).
    #[inline(always)]
    fn classify(
        &self,
        now: Instant,
        in_port: PortId,
        frame: &[u8],
        wire_len: usize,
    ) -> Result<Classified, DropReason> {
        let port = self.port(in_port).map_err(|_| DropReason::UnknownPort)?;
        let header = Header::parse(frame)?;
        if wire_len.saturating_sub(header.l2_len()) > port.config.mtu as usize {
            return Err(DropReason::OverMtu);
        }
        if let Some(security) = &port.config.security {
            security.check(frame).map_err(|_| DropReason::Spoofed)?;
        }
        if header.src.is_multicast() {
            return Err(DropReason::MulticastSource);
        }
        let network = port
            .config
            .mode
            .ingress_network(header.vlan)
            .ok_or(DropReason::VlanNotAllowed)?;
        // Learning the source first means a frame to its own sender comes back to its port.
        let dst_port = if header.dst == header.src {
            Some(in_port)
        } else {
            self.lookup_unicast(now, network, header.dst)
        };
        let from = port.config.reach;
        let decision = match dst_port {
            None => Ok(Decision::Flood(network, in_port, from)),
            Some(out) if out == in_port => Err(DropReason::SameSegment),
            Some(out) => match self.port(out) {
                Ok(to) if !from.may_reach(to.config.reach) => Err(DropReason::SplitHorizon),
                to => {
                    let vlan = to.ok().and_then(|p| p.config.mode.egress_vlan(network));
                    Ok(Decision::Forward(Egress { port: out, vlan }, network))
                }
            },
        };
        Ok(Classified {
            network,
            src: header.src,
            dst_port,
            decision,
            tag_len: header.tag_len(),
        })
    }

    /// Counts an event of `network` (switch-wide totals are summed when asked for).
    #[inline(always)]
    fn count(&mut self, network: NetworkId, bump: impl Fn(&mut Events)) {
        if let Some(Some(net)) = self.networks.get_mut(network.0 as usize) {
            bump(&mut net.events);
        }
    }

    /// The way `frame` arriving on `in_port` at `now` would take, step by step, without
    /// learning, counting or changing anything: the same checks and lookups as `process`.
    pub fn trace(&self, now: Instant, in_port: PortId, frame: &[u8]) -> Trace {
        let mut trace = Trace {
            ingress_vlan: None,
            network: None,
            learn: None,
            fdb_hit: None,
            egress: Vec::new(),
            flooded: false,
            drop: None,
            policy: None,
        };
        if let Ok(header) = Header::parse(frame) {
            trace.ingress_vlan = header.vlan;
        }
        let classified = match self.classify(now, in_port, frame, frame.len()) {
            Ok(c) => c,
            Err(reason) => {
                trace.drop = Some(reason);
                return trace;
            }
        };
        trace.network = Some(classified.network);
        trace.learn = Some(match self.fdb.get(classified.network, classified.src) {
            None => WouldLearn::New,
            Some(e) if e.last_seen.is_none() => WouldLearn::Static,
            Some(e) if e.port == in_port => WouldLearn::Refresh,
            Some(e) => WouldLearn::Move { from: e.port },
        });
        trace.fdb_hit = classified.dst_port;
        match classified.decision {
            Ok(Decision::Forward(to, _)) => trace.egress.push(to),
            // `classify` floods what `decide` may then answer.
            Ok(Decision::Answer) => {}
            Ok(Decision::Flood(net, except, from)) => {
                trace.flooded = true;
                if let Some(n) = self.networks.get(net.0 as usize).and_then(Option::as_ref) {
                    trace.egress.extend(
                        n.members
                            .iter()
                            .filter(|m| m.egress.port != except && from.may_reach(m.reach))
                            .map(|m| m.egress),
                    );
                }
            }
            Err(reason) => trace.drop = Some(reason),
        }
        let engine = self
            .networks
            .get(classified.network.0 as usize)
            .and_then(Option::as_ref)
            .and_then(|n| n.policy.as_ref());
        if let (Some(engine), Some(packet), None) = (engine, Packet::parse(frame), &trace.drop) {
            let why = engine.explain(now, &packet);
            trace.drop = match &why.decision {
                PolicyDecision::Allow => None,
                PolicyDecision::Deny(rule) => Some(DropReason::Denied(rule.clone())),
                PolicyDecision::Reject(rule) => Some(DropReason::Rejected(rule.clone())),
            };
            if trace.drop.is_some() {
                trace.egress.clear();
                trace.flooded = false;
            }
            trace.policy = Some(why);
        }
        trace
    }

    fn lookup_unicast(&self, now: Instant, network: NetworkId, dst: MacAddr) -> Option<PortId> {
        if dst.is_multicast() {
            None
        } else {
            self.fdb.lookup(now, network, dst)
        }
    }

    /// Forgets idle MACs. Call now and then; lookups already ignore expired entries.
    pub fn handle_aging(&mut self, now: Instant) {
        for network in self.fdb.handle_aging(now) {
            self.count(network, |e| e.aged += 1);
        }
        for net in self.networks.iter_mut().flatten() {
            if let Some(engine) = &mut net.policy {
                engine.sweep(now);
            }
        }
    }

    /// Counters of `network`, with its current MAC table size.
    pub fn network_stats(&self, network: NetworkId) -> Option<NetworkStats> {
        let net = self.network(network).ok()?;
        let (flows, flow_evictions) = net.policy.as_ref().map_or((0, 0), Engine::flow_counts);
        Some(NetworkStats {
            events: net.events,
            fdb_entries: self.fdb.len_in(network) as u64,
            flows: flows as u64,
            flow_evictions,
        })
    }

    /// Whether any learned state could expire (so a timer is worth arming).
    pub fn has_fdb_entries(&self) -> bool {
        !self.fdb.is_empty() || self.networks.iter().flatten().any(|n| n.policy.is_some())
    }

    /// The port `mac` was last seen on in `network`, if it is known (and not aged out).
    pub fn port_of(&self, now: Instant, network: NetworkId, mac: MacAddr) -> Option<PortId> {
        self.fdb.lookup(now, network, mac)
    }

    /// Switch-wide counters.
    pub fn stats(&self) -> SwitchStats {
        let mut stats = self.stats;
        for net in self.networks.iter().flatten() {
            stats.events.add(&net.events);
        }
        stats
    }

    /// Drops counted on `port`.
    pub fn port_drops(&self, port: PortId) -> Option<DropCounters> {
        self.port(port).ok().map(|p| p.drops)
    }

    /// Live FDB entries of `network`, sorted by MAC.
    pub fn fdb_rows(&self, now: Instant, network: NetworkId) -> Vec<FdbRow> {
        let mut rows: Vec<FdbRow> = self
            .fdb
            .entries(now, network)
            .map(|(mac, e)| FdbRow {
                mac,
                port: e.port,
                age: e.last_seen.map(|seen| now.saturating_duration_since(seen)),
            })
            .collect();
        rows.sort_by_key(|r| r.mac);
        rows
    }

    /// Largest frame `port` accepts: MTU plus Ethernet header (and a tag on trunks).
    pub fn max_frame_len(&self, port: PortId) -> Option<usize> {
        self.port(port).ok().map(|p| {
            let tag = if matches!(p.config.mode, PortMode::Trunk { .. }) {
                4
            } else {
                0
            };
            p.config.mtu as usize + ETH_HEADER_LEN + tag
        })
    }
}

fn first_free<T>(slots: &[Option<T>]) -> usize {
    slots
        .iter()
        .position(Option::is_none)
        .unwrap_or(slots.len())
}

fn put<T>(slots: &mut Vec<Option<T>>, index: usize, value: T) {
    if index == slots.len() {
        slots.push(Some(value));
    } else {
        slots[index] = Some(value);
    }
}

#[cfg(test)]
mod tests;
