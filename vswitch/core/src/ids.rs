//! Ports and networks are indices into the switch's tables, not objects: the core, the FDB and
//! the data path name them by number.

use serde::Serialize;

/// Index of a port in the switch's port table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PortId(pub u32);

impl PortId {
    /// Position in per-port tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// Index of a network (an isolated broadcast domain) in the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NetworkId(pub u32);
