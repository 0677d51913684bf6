//! The one reason enum for every dropped frame: the core, the data path, metrics, capture and
//! trace all name a drop by the same variant, so a counter, a capture comment and a trace line agree.

use policy::RuleName;
use serde::{Serialize, Serializer};

/// Why a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes, 18 with an 802.1Q tag).
    Runt,
    /// Payload larger than the ingress port's MTU.
    OverMtu,
    /// Source MAC is multicast or broadcast: no station can own it.
    MulticastSource,
    /// Destination was learned on the ingress port itself: the frame is already there.
    SameSegment,
    /// Arrived on a port the switch does not know (removed, or never added).
    UnknownPort,
    /// 802.1Q tag not carried by the port (tagged on an access port, unknown VID on a trunk,
    /// untagged on a trunk without a native network).
    VlanNotAllowed,
    /// Offload metadata (virtio_net_hdr) the switch cannot act on: a GSO frame it cannot
    /// segment, or checksum offsets outside the frame.
    BadOffload,
    /// The egress device refused the frame (its queue was full or it went away).
    TxError,
    /// Port security: the container sent as someone else (another MAC or address, ARP or a
    /// neighbour advertisement for another address, a DHCP server reply).
    Spoofed,
    /// A policy rule (or the network default) denies the flow.
    Denied(RuleName),
    /// A policy rule rejects the flow; the sender got a TCP reset or ICMP unreachable.
    Rejected(RuleName),
    /// Over the ingress port's rate limit.
    RateLimited,
    /// Broadcast or multicast over the network's storm control allowance.
    Storm,
    /// An IP header too short or inconsistent to read, on a network whose policy must read it.
    MalformedIp,
    /// Overlay split horizon: between two hosts' tunnels, or between a tunnel and a port only
    /// this host's containers may use (its gateway).
    SplitHorizon,
    /// A VXLAN packet from the underlay too short or with flags RFC 7348 does not allow.
    MalformedTunnel,
    /// A VXLAN packet from an address or with a VNI that no overlay network here expects.
    UnknownTunnel,
}

impl DropReason {
    /// Every reason's name, in counter order (`index`).
    pub const NAMES: [&'static str; 17] = [
        "runt",
        "over_mtu",
        "multicast_source",
        "same_segment",
        "unknown_port",
        "vlan_not_allowed",
        "bad_offload",
        "tx_error",
        "spoofed",
        "denied",
        "rejected",
        "rate_limited",
        "storm",
        "malformed_ip",
        "split_horizon",
        "malformed_tunnel",
        "unknown_tunnel",
    ];

    /// Which way the dropped frame was going through the port it is counted on: `egress`
    /// (leaving through it: the device refused the write) for `tx_error`, `ingress` (arriving
    /// from it) for every other reason.
    pub fn direction_of(name: &str) -> &'static str {
        if name == "tx_error" {
            "egress"
        } else {
            "ingress"
        }
    }

    /// Number of reasons, for counter arrays.
    pub const COUNT: usize = Self::NAMES.len();

    /// Stable snake_case name used in counters, captures and traces.
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Index into a `[_; DropReason::COUNT]` counter array.
    pub fn index(&self) -> usize {
        match self {
            DropReason::Runt => 0,
            DropReason::OverMtu => 1,
            DropReason::MulticastSource => 2,
            DropReason::SameSegment => 3,
            DropReason::UnknownPort => 4,
            DropReason::VlanNotAllowed => 5,
            DropReason::BadOffload => 6,
            DropReason::TxError => 7,
            DropReason::Spoofed => 8,
            DropReason::Denied(_) => 9,
            DropReason::Rejected(_) => 10,
            DropReason::RateLimited => 11,
            DropReason::Storm => 12,
            DropReason::MalformedIp => 13,
            DropReason::SplitHorizon => 14,
            DropReason::MalformedTunnel => 15,
            DropReason::UnknownTunnel => 16,
        }
    }

    /// The policy rule behind the drop, if a rule decided it.
    pub fn rule(&self) -> Option<&RuleName> {
        match self {
            DropReason::Denied(rule) | DropReason::Rejected(rule) => Some(rule),
            _ => None,
        }
    }
}

/// The counter name, and the rule for policy drops: `denied (rule web-db)`.
impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())?;
        match self.rule() {
            Some(rule) => write!(f, " (rule {rule})"),
            None => Ok(()),
        }
    }
}

impl Serialize for DropReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Drop counters, one per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    /// Counts one drop.
    pub fn count(&mut self, reason: &DropReason) {
        self.0[reason.index()] += 1;
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: &DropReason) -> u64 {
        self.0[reason.index()]
    }

    /// Every counter with its reason's name, in counter order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::NAMES
            .iter()
            .copied()
            .zip(self.0.iter().copied())
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &DropCounters) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counters by name, for listings.
    pub fn by_name(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.iter().filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_indices() {
        let rule = RuleName::new("web-db");
        let reasons = [
            DropReason::Runt,
            DropReason::OverMtu,
            DropReason::MulticastSource,
            DropReason::SameSegment,
            DropReason::UnknownPort,
            DropReason::VlanNotAllowed,
            DropReason::BadOffload,
            DropReason::TxError,
            DropReason::Spoofed,
            DropReason::Denied(rule.clone()),
            DropReason::Rejected(rule),
            DropReason::RateLimited,
            DropReason::Storm,
            DropReason::MalformedIp,
        ];
        for (i, r) in reasons.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
        assert_eq!(reasons[9].to_string(), "denied (rule web-db)");
        assert_eq!(reasons[13].to_string(), "malformed_ip");
    }
}
