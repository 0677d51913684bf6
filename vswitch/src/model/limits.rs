//! Upper bounds of every list and number a request may carry: far above any real use, low
//! enough that no request can make the daemon allocate or work without bound. A request past
//! one is refused with the bound in the message.

use super::error::{invalid, ModelError};

/// Subnets (and gateways) of one network.
pub const MAX_SUBNETS: usize = 16;
/// `--ip-range`s of one network.
pub const MAX_IP_RANGES: usize = 64;
/// Upstream DNS servers of one network.
pub const MAX_DNS_SERVERS: usize = 8;
/// Broadcast and multicast packets/s storm control may allow.
pub const MAX_STORM_PPS: u64 = 10_000_000;
/// Flows one network's policy may track.
pub const MAX_FLOWS: usize = 16 << 20;
/// Rules of one network's policy.
pub const MAX_RULES: usize = 65_536;
/// Addresses given to one endpoint.
pub const MAX_ADDRESSES: usize = 16;
/// Aliases of one endpoint.
pub const MAX_ALIASES: usize = 32;
/// Labels of one endpoint.
pub const MAX_LABELS: usize = 64;
/// Networks one trunk carries.
pub const MAX_TRUNK_NETWORKS: usize = 64;
/// Rate limit: bits per second.
pub const MAX_BITS_PER_SEC: u64 = 10_000_000_000_000;
/// Rate limit: packets per second.
pub const MAX_PACKETS_PER_SEC: u64 = 1_000_000_000;
/// Rate limit: burst in bytes.
pub const MAX_BURST_BYTES: u64 = 1 << 30;
/// Rate limit: burst in packets.
pub const MAX_BURST_PACKETS: u64 = 10_000_000;

/// Refuses a list of `what` longer than `max`.
pub fn check_count(what: &str, len: usize, max: usize) -> Result<(), ModelError> {
    if len > max {
        return Err(invalid(format!(
            "too many {what}: {len} given, at most {max}"
        )));
    }
    Ok(())
}

/// Refuses a `what` above `max`.
pub fn check_at_most(what: &str, value: u64, max: u64) -> Result<(), ModelError> {
    if value > max {
        return Err(invalid(format!("invalid {what} {value}: at most {max}")));
    }
    Ok(())
}
/// Static peers of one overlay network.
pub const MAX_PEERS: usize = 1024;
