//! What the switch reports: counters of events and drops, FDB rows, and the trace of a frame's
//! way through it.

use std::time::Duration;

use serde::Serialize;

use crate::frame::MacAddr;
use crate::ids::{NetworkId, PortId};
use crate::reason::{DropCounters, DropReason};

use super::Egress;

/// What the switch did with frames and MACs, counted switch-wide and per network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Events {
    /// Frames sent to a single known port.
    pub forwarded: u64,
    /// Frames flooded (broadcast, multicast, unknown unicast).
    pub flooded: u64,
    /// New MAC entries learned.
    pub learned: u64,
    /// MACs that moved to another port.
    pub moved: u64,
    /// Learned entries forgotten after idling.
    pub aged: u64,
    /// Source MACs not learned because their port was at its limit.
    pub limit_reached: u64,
}

impl Events {
    pub(super) fn add(&mut self, other: &Events) {
        self.forwarded += other.forwarded;
        self.flooded += other.flooded;
        self.learned += other.learned;
        self.moved += other.moved;
        self.aged += other.aged;
        self.limit_reached += other.limit_reached;
    }
}

/// Switch-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Events of all networks together.
    pub events: Events,
    /// Drops by reason, all ports together.
    pub drops: DropCounters,
}

/// Counters of one network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetworkStats {
    /// What happened on it.
    pub events: Events,
    /// Entries in the MAC table now.
    pub fdb_entries: u64,
    /// Flows tracked by policy now.
    pub flows: u64,
    /// Flows evicted from a full flow table.
    pub flow_evictions: u64,
}

/// What learning the source of a frame would do (see `Switch::trace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WouldLearn {
    /// The source is new here.
    New,
    /// The source is known on this port.
    Refresh,
    /// The source is known on another port and would move.
    Move {
        /// Where it is now.
        from: PortId,
    },
    /// The source is pinned by a static entry.
    Static,
}

/// A frame's way through the switch, decided without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// 802.1Q tag the frame arrived with.
    pub ingress_vlan: Option<u16>,
    /// Network it belongs to, once that is known.
    pub network: Option<NetworkId>,
    /// What learning its source would do.
    pub learn: Option<WouldLearn>,
    /// Where its destination is known to be (`None`: unknown, group address, or not reached).
    pub fdb_hit: Option<PortId>,
    /// Output ports with their egress tags (empty when dropped).
    pub egress: Vec<Egress>,
    /// Whether the frame is flooded.
    pub flooded: bool,
    /// Why it is dropped, if it is.
    pub drop: Option<DropReason>,
    /// What the network's policy says of it (`None`: no policy, or not an IP packet).
    pub policy: Option<policy::Explanation>,
}

/// One row of an FDB listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbRow {
    /// The station's address.
    pub mac: MacAddr,
    /// Where it lives.
    pub port: PortId,
    /// Time since last seen; `None` for static entries.
    pub age: Option<Duration>,
}
