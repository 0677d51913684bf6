//! How ports and the switch are configured, and why a configuration change is refused.

use std::time::Duration;

use policy::RateLimit;

use crate::fdb;
use crate::ids::{NetworkId, PortId};

/// How a port carries networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMode {
    /// Untagged frames of one network; tagged frames are refused.
    Access(NetworkId),
    /// Several networks, each under its 802.1Q VLAN ID; untagged frames belong to `native`.
    Trunk {
        /// (VLAN ID, network) pairs.
        vlans: Vec<(u16, NetworkId)>,
        /// Network of untagged frames, if any.
        native: Option<NetworkId>,
    },
}

impl PortMode {
    /// Networks this port belongs to.
    pub(super) fn networks(&self) -> Vec<NetworkId> {
        match self {
            PortMode::Access(net) => vec![*net],
            PortMode::Trunk { vlans, native } => {
                vlans.iter().map(|(_, n)| *n).chain(*native).collect()
            }
        }
    }

    /// The network of a frame arriving with tag `vlan`.
    pub(super) fn ingress_network(&self, vlan: Option<u16>) -> Option<NetworkId> {
        match (self, vlan) {
            (PortMode::Access(net), None) => Some(*net),
            (PortMode::Access(_), Some(_)) => None,
            (PortMode::Trunk { native, .. }, None) => *native,
            (PortMode::Trunk { vlans, .. }, Some(vid)) => {
                vlans.iter().find(|(v, _)| *v == vid).map(|(_, n)| *n)
            }
        }
    }

    /// The tag a frame of `network` must carry when it leaves through this port.
    pub(super) fn egress_vlan(&self, network: NetworkId) -> Option<u16> {
        match self {
            PortMode::Access(_) => None,
            PortMode::Trunk { vlans, native } => {
                if *native == Some(network) {
                    None
                } else {
                    vlans.iter().find(|(_, n)| *n == network).map(|(v, _)| *v)
                }
            }
        }
    }
}

/// A port's configuration as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Networks it carries and how.
    pub mode: PortMode,
    /// Largest L3 payload accepted, in bytes (the Ethernet header and tag come on top).
    pub mtu: u32,
    /// What the port may send as (None: anything, as trunks and gateways).
    pub security: Option<policy::PortSecurity>,
    /// Ingress rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Which other ports its frames may reach (split horizon for overlay tunnels).
    pub reach: Reach,
}

/// Where a port sits in an overlay, for split horizon: every host of an overlay sends its own
/// frames to every other host (head-end replication), so a frame from one host's tunnel must
/// never go on to another's, or broadcasts would loop; and each host's gateway (the same
/// address and MAC on every host, an anycast gateway) serves only its own containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reach {
    /// A container or trunk: reaches and is reached by every port.
    #[default]
    Any,
    /// This host's own (a gateway): never to or from a tunnel.
    HostOnly,
    /// A tunnel to another host: reaches only ports of this host that are not `HostOnly`.
    Tunnel,
}

impl Reach {
    /// Whether a frame from a port of this kind may leave through a port of kind `to`.
    pub fn may_reach(self, to: Reach) -> bool {
        matches!(
            (self, to),
            (Reach::Any, _)
                | (Reach::HostOnly, Reach::Any | Reach::HostOnly)
                | (Reach::Tunnel, Reach::Any)
        )
    }
}

/// Switch-wide tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Idle time after which a learned MAC is forgotten.
    pub aging: Duration,
    /// Learned MACs a single port may hold.
    pub mac_limit: u32,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            aging: fdb::DEFAULT_AGING,
            mac_limit: fdb::DEFAULT_MAC_LIMIT,
        }
    }
}

/// Why a configuration change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The port does not exist.
    #[error("no such port {0}")]
    UnknownPort(PortId),
    /// The network does not exist.
    #[error("no such network {0:?}")]
    UnknownNetwork(NetworkId),
    /// A network still has ports.
    #[error("network {0:?} still has ports")]
    NetworkInUse(NetworkId),
}
