//! Connection tracking: the flows a policy allowed, keyed by their 5-tuple in either direction,
//! so replies pass and an established flow costs one hash lookup. TCP follows SYN, FIN and RST;
//! UDP and ICMP echo live on timeouts. The table is bounded: when full, the least recently
//! seen of a few sampled flows is evicted (and counted), so a flood of new flows cannot grow it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::packet::{proto, tcp_flags, Packet};

/// Flows kept unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 256 * 1024;

/// Flows sampled to pick one to evict.
const EVICTION_SAMPLE: usize = 8;

/// A flow's identity, the same for both directions: the lower (address, port) end first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
    proto: u8,
}

impl FlowKey {
    /// The key of `packet`'s flow, and whether the packet goes from the lower end.
    pub fn of(packet: &Packet) -> (FlowKey, bool) {
        let a = (packet.src, packet.sport);
        let b = (packet.dst, packet.dport);
        let from_lo = a <= b;
        let (lo, hi) = if from_lo { (a, b) } else { (b, a) };
        let key = FlowKey {
            lo,
            hi,
            proto: packet.proto,
        };
        (key, from_lo)
    }
}

/// Where a flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// TCP: SYN seen, no answer yet.
    SynSent,
    /// TCP: answered; UDP/ICMP: a reply was seen.
    Established,
    /// UDP/ICMP: no reply yet.
    Unreplied,
    /// TCP: a FIN was seen.
    Closing,
    /// TCP: reset.
    Closed,
}

impl FlowState {
    /// Lower-case name for listings.
    pub fn name(self) -> &'static str {
        match self {
            FlowState::SynSent => "syn_sent",
            FlowState::Established => "established",
            FlowState::Unreplied => "unreplied",
            FlowState::Closing => "closing",
            FlowState::Closed => "closed",
        }
    }
}

/// One tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Whether the lower end of the key opened it.
    pub opened_by_lo: bool,
    /// Where it stands.
    pub state: FlowState,
    /// Last packet, either way.
    pub last_seen: Instant,
    /// Policy generation that allowed it (re-checked when the policy changes).
    pub generation: u64,
    /// The rule that allowed it (`None`: the network default).
    pub rule: Option<u32>,
    /// A staged rule that would have decided it.
    pub staged: Option<u32>,
    /// Packets seen.
    pub packets: u64,
}

impl Flow {
    fn timeout(&self, proto_number: u8) -> Duration {
        match (proto_number, self.state) {
            (proto::TCP, FlowState::Established) => Duration::from_secs(2 * 3600),
            (proto::TCP, FlowState::SynSent) => Duration::from_secs(60),
            (proto::TCP, FlowState::Closing) => Duration::from_secs(60),
            (proto::TCP, FlowState::Closed) => Duration::from_secs(10),
            (_, FlowState::Established) => Duration::from_secs(120),
            _ => Duration::from_secs(30),
        }
    }

    fn expired(&self, proto_number: u8, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) > self.timeout(proto_number)
    }

    /// Moves the state along for a packet of this flow (`from_opener`: sent by the opener).
    fn advance(&mut self, packet: &Packet, from_opener: bool) {
        if packet.proto != proto::TCP {
            if !from_opener {
                self.state = FlowState::Established;
            }
            return;
        }
        if packet.has_flag(tcp_flags::RST) {
            self.state = FlowState::Closed;
        } else if packet.has_flag(tcp_flags::FIN) {
            self.state = FlowState::Closing;
        } else if self.state == FlowState::SynSent && !from_opener {
            self.state = FlowState::Established;
        }
    }
}

/// The initial state of a flow opened by `packet`.
fn opening_state(packet: &Packet) -> FlowState {
    match packet.proto {
        proto::TCP if packet.has_flag(tcp_flags::SYN) && !packet.has_flag(tcp_flags::ACK) => {
            FlowState::SynSent
        }
        // Picked up mid-stream (after a restart or a policy change that now allows it).
        proto::TCP => FlowState::Established,
        _ => FlowState::Unreplied,
    }
}

/// Whether `packet` may open a tracked flow: TCP, UDP and ICMP echo requests.
pub fn is_trackable(packet: &Packet) -> bool {
    matches!(packet.proto, proto::TCP | proto::UDP) || packet.is_echo_request()
}

/// What looking a packet up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A live flow; the packet was counted on it.
    Hit {
        /// The flow, after this packet.
        flow: Flow,
        /// Whether the packet comes from the end that opened the flow.
        from_opener: bool,
    },
    /// No flow (or it ended and this packet opens a new one).
    Miss,
}

/// The flow table.
#[derive(Debug)]
pub struct Conntrack {
    flows: IndexMap<FlowKey, Flow, foldhash::fast::RandomState>,
    capacity: usize,
    evictions: u64,
    /// xorshift state for sampling eviction candidates.
    rng: u64,
}

impl Conntrack {
    /// An empty table holding at most `capacity` flows (at least one).
    pub fn new(capacity: usize) -> Conntrack {
        Conntrack {
            flows: IndexMap::default(),
            capacity: capacity.max(1),
            evictions: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Flows tracked now (some may have expired and await a sweep).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows evicted because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Finds `packet`'s live flow and advances it.
    pub fn lookup(&mut self, now: Instant, packet: &Packet) -> Lookup {
        let (key, from_lo) = FlowKey::of(packet);
        let Some(index) = self.flows.get_index_of(&key) else {
            return Lookup::Miss;
        };
        let flow = &mut self.flows[index];
        let from_opener = flow.opened_by_lo == from_lo;
        if packet.is_echo_request() && !from_opener {
            // Echo requests of both ends share identifiers; only the opener's belong here.
            return Lookup::Miss;
        }
        let reopened = from_opener
            && packet.has_flag(tcp_flags::SYN)
            && !packet.has_flag(tcp_flags::ACK)
            && matches!(flow.state, FlowState::Closed | FlowState::Closing);
        if flow.expired(key.proto, now) || reopened {
            self.flows.swap_remove_index(index);
            return Lookup::Miss;
        }
        flow.advance(packet, from_opener);
        flow.last_seen = now;
        flow.packets += 1;
        Lookup::Hit {
            flow: *flow,
            from_opener,
        }
    }

    /// The live flow of `packet`, unchanged (for explaining, not forwarding).
    pub fn peek(&self, now: Instant, packet: &Packet) -> Option<&Flow> {
        let (key, _) = FlowKey::of(packet);
        self.flows.get(&key).filter(|f| !f.expired(key.proto, now))
    }

    /// Starts tracking the flow `packet` opens, allowed by `rule` under `generation`.
    pub fn insert(
        &mut self,
        now: Instant,
        packet: &Packet,
        generation: u64,
        rule: Option<u32>,
        staged: Option<u32>,
    ) {
        let (key, from_lo) = FlowKey::of(packet);
        if self.flows.len() >= self.capacity && !self.flows.contains_key(&key) {
            self.evict_one();
        }
        self.flows.insert(
            key,
            Flow {
                opened_by_lo: from_lo,
                state: opening_state(packet),
                last_seen: now,
                generation,
                rule,
                staged,
                packets: 1,
            },
        );
    }

    /// Re-stamps the flow of `packet` as allowed by `rule` under `generation`.
    pub fn confirm(
        &mut self,
        packet: &Packet,
        generation: u64,
        rule: Option<u32>,
        staged: Option<u32>,
    ) {
        if let Some(flow) = self.flows.get_mut(&FlowKey::of(packet).0) {
            flow.generation = generation;
            flow.rule = rule;
            flow.staged = staged;
        }
    }

    /// Forgets the flow of `packet`.
    pub fn remove(&mut self, packet: &Packet) {
        self.flows.swap_remove(&FlowKey::of(packet).0);
    }

    fn evict_one(&mut self) {
        let len = self.flows.len();
        let mut victim = None;
        for _ in 0..EVICTION_SAMPLE.min(len) {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = (self.rng % len as u64) as usize;
            let seen = self.flows[i].last_seen;
            if victim.is_none_or(|(_, s)| seen < s) {
                victim = Some((i, seen));
            }
        }
        if let Some((i, _)) = victim {
            self.flows.swap_remove_index(i);
            self.evictions += 1;
        }
    }

    /// Forgets expired flows.
    pub fn sweep(&mut self, now: Instant) {
        self.flows.retain(|key, flow| !flow.expired(key.proto, now));
    }

    /// Live flows as (opener packet, flow): source and destination as the opener sent them.
    pub fn flows(&self, now: Instant) -> impl Iterator<Item = (FlowEnds, &Flow)> + '_ {
        self.flows
            .iter()
            .filter(move |(k, f)| !f.expired(k.proto, now))
            .map(|(k, f)| {
                let (src, dst) = if f.opened_by_lo {
                    (k.lo, k.hi)
                } else {
                    (k.hi, k.lo)
                };
                (
                    FlowEnds {
                        proto: k.proto,
                        src,
                        dst,
                    },
                    f,
                )
            })
    }
}

/// A flow's ends as its opener sent its first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEnds {
    /// IP protocol number.
    pub proto: u8,
    /// Opener's address and port (echo identifier for ICMP).
    pub src: (IpAddr, u16),
    /// Other end.
    pub dst: (IpAddr, u16),
}

impl FlowEnds {
    /// The packet that opened the flow, as far as rules care.
    pub fn opener(&self) -> Packet {
        let icmp_type = match self.proto {
            proto::ICMP => Some(8),
            proto::ICMPV6 => Some(128),
            _ => None,
        };
        Packet {
            src: self.src.0,
            dst: self.dst.0,
            proto: self.proto,
            sport: self.src.1,
            dport: self.dst.1,
            icmp_type,
            tcp_flags: tcp_flags::SYN,
            quoted: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn tcp(src: u8, sport: u16, dst: u8, dport: u16, flags: u8) -> Packet {
        Packet {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, src)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, dst)),
            proto: proto::TCP,
            sport,
            dport,
            icmp_type: None,
            tcp_flags: flags,
            quoted: None,
        }
    }

    #[test]
    fn tcp_handshake_replies_and_reset() {
        let now = Instant::now();
        let mut ct = Conntrack::new(16);
        let syn = tcp(2, 40000, 3, 5432, tcp_flags::SYN);
        ct.insert(now, &syn, 1, Some(0), None);
        let synack = tcp(3, 5432, 2, 40000, tcp_flags::SYN | tcp_flags::ACK);
        let Lookup::Hit { flow, .. } = ct.lookup(now, &synack) else {
            panic!("reply not tracked");
        };
        assert_eq!(flow.state, FlowState::Established);
        // The same ports the other way round open nothing: db:40000 -> web:5432 is new.
        assert_eq!(
            ct.lookup(now, &tcp(3, 40000, 2, 5432, tcp_flags::SYN)),
            Lookup::Miss
        );
        ct.lookup(now, &tcp(2, 40000, 3, 5432, tcp_flags::RST));
        assert!(
            matches!(ct.lookup(now, &synack), Lookup::Hit { flow, .. } if flow.state == FlowState::Closed)
        );
        assert_eq!(
            ct.lookup(now + Duration::from_secs(11), &synack),
            Lookup::Miss
        );
        let (ends, _) = {
            ct.insert(now, &syn, 1, None, None);
            ct.flows(now).next().unwrap()
        };
        assert_eq!(ends.opener().src, syn.src);
        assert_eq!(ends.opener().dport, 5432);
    }

    #[test]
    fn unreplied_udp_expires() {
        let now = Instant::now();
        let mut ct = Conntrack::new(16);
        let mut udp = tcp(2, 5000, 3, 53, 0);
        udp.proto = proto::UDP;
        ct.insert(now, &udp, 1, None, None);
        assert!(matches!(
            ct.lookup(now + Duration::from_secs(20), &udp),
            Lookup::Hit { .. }
        ));
        ct.sweep(now + Duration::from_secs(100));
        assert!(ct.is_empty());
    }

    #[test]
    fn full_table_evicts_and_counts() {
        let now = Instant::now();
        let mut ct = Conntrack::new(100);
        for port in 0..1000u16 {
            ct.insert(
                now + Duration::from_millis(port.into()),
                &tcp(2, port, 3, 80, tcp_flags::SYN),
                1,
                None,
                None,
            );
        }
        assert_eq!(ct.len(), 100);
        assert_eq!(ct.evictions(), 900);
        // The newest flow is still there.
        let last = tcp(2, 999, 3, 80, tcp_flags::ACK);
        assert!(matches!(
            ct.lookup(now + Duration::from_secs(1), &last),
            Lookup::Hit { .. }
        ));
    }
}
