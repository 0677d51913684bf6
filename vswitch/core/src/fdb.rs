//! The forwarding database: which port each MAC was last seen on, per network. Learned entries
//! age out after a configurable idle time measured with the caller's `now`; static entries never
//! age and learning never overrides them; each port may hold only so many learned entries, so a
//! flood of random source MACs cannot grow the table without bound.

// hashbrown's default hasher (foldhash) is several times cheaper than std's SipHash per
// lookup and still seeded per process, so forged source MACs cannot aim at one bucket.
use hashbrown::HashMap;
use std::time::{Duration, Instant};

use crate::frame::MacAddr;
use crate::ids::{NetworkId, PortId};

/// Default idle time after which a learned entry is forgotten (as the Linux bridge).
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);
/// Default number of learned entries a single port may hold.
pub const DEFAULT_MAC_LIMIT: u32 = 1024;

/// One FDB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Where frames to this MAC go.
    pub port: PortId,
    /// `None` for a static entry; else when the MAC was last seen.
    pub last_seen: Option<Instant>,
}

/// What `learn` did, so the switch can count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// An existing entry on the same port was refreshed.
    Refreshed,
    /// The MAC moved here from another port.
    Moved { from: PortId },
    /// A static entry holds this MAC; nothing changed.
    Static,
    /// The port already holds its limit of learned entries; nothing learned.
    LimitReached,
}

/// MAC table keyed by (network, MAC).
#[derive(Debug)]
pub struct Fdb {
    entries: HashMap<(NetworkId, MacAddr), Entry>,
    /// Learned entries per port, indexed by `PortId`, to enforce `mac_limit`.
    learned_per_port: Vec<u32>,
    aging: Duration,
    mac_limit: u32,
}

impl Fdb {
    /// An empty table.
    pub fn new(aging: Duration, mac_limit: u32) -> Fdb {
        Fdb {
            entries: HashMap::new(),
            learned_per_port: Vec::new(),
            aging,
            mac_limit,
        }
    }

    fn is_live(&self, entry: &Entry, now: Instant) -> bool {
        match entry.last_seen {
            None => true,
            Some(seen) => now.saturating_duration_since(seen) < self.aging,
        }
    }

    fn learned_count(&mut self, port: PortId) -> &mut u32 {
        let i = port.index();
        if self.learned_per_port.len() <= i {
            self.learned_per_port.resize(i + 1, 0);
        }
        &mut self.learned_per_port[i]
    }

    /// Records that `mac` was seen on `port` in `network` at `now`.
    pub fn learn(
        &mut self,
        now: Instant,
        network: NetworkId,
        mac: MacAddr,
        port: PortId,
    ) -> Learned {
        let key = (network, mac);
        // The common case, a known station talking again, costs one lookup.
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.port == port && entry.last_seen.is_some() {
                entry.last_seen = Some(now);
                return Learned::Refreshed;
            }
        }
        let previous = self.entries.get(&key).copied();
        match previous {
            Some(Entry {
                last_seen: None, ..
            }) => Learned::Static,
            Some(Entry {
                port: old,
                last_seen: Some(_),
            }) if old == port => {
                self.entries.insert(
                    key,
                    Entry {
                        port,
                        last_seen: Some(now),
                    },
                );
                Learned::Refreshed
            }
            _ => {
                if *self.learned_count(port) >= self.mac_limit {
                    // Keeping a stale entry elsewhere would misdirect traffic: forget it so
                    // frames to this MAC are flooded instead.
                    if let Some(old) = previous {
                        self.remove_learned(key, old.port);
                    }
                    return Learned::LimitReached;
                }
                *self.learned_count(port) += 1;
                self.entries.insert(
                    key,
                    Entry {
                        port,
                        last_seen: Some(now),
                    },
                );
                match previous {
                    Some(old) => {
                        *self.learned_count(old.port) -= 1;
                        Learned::Moved { from: old.port }
                    }
                    None => Learned::New,
                }
            }
        }
    }

    fn remove_learned(&mut self, key: (NetworkId, MacAddr), port: PortId) {
        self.entries.remove(&key);
        *self.learned_count(port) -= 1;
    }

    /// The port `mac` lives on in `network`, unless unknown or aged out.
    pub fn lookup(&self, now: Instant, network: NetworkId, mac: MacAddr) -> Option<PortId> {
        self.entries
            .get(&(network, mac))
            .filter(|e| self.is_live(e, now))
            .map(|e| e.port)
    }

    /// Pins `mac` to `port`; learning never moves or ages it.
    pub fn add_static(&mut self, network: NetworkId, mac: MacAddr, port: PortId) {
        let key = (network, mac);
        if let Some(Entry {
            port: old,
            last_seen: Some(_),
        }) = self.entries.get(&key).copied()
        {
            *self.learned_count(old) -= 1;
        }
        self.entries.insert(
            key,
            Entry {
                port,
                last_seen: None,
            },
        );
    }

    /// Removes a static entry; returns whether there was one.
    pub fn remove_static(&mut self, network: NetworkId, mac: MacAddr) -> bool {
        let key = (network, mac);
        match self.entries.get(&key) {
            Some(Entry {
                last_seen: None, ..
            }) => self.entries.remove(&key).is_some(),
            _ => false,
        }
    }

    /// Forgets learned entries idle for the aging time; returns the network of each.
    pub fn handle_aging(&mut self, now: Instant) -> Vec<NetworkId> {
        let aging = self.aging;
        let mut expired = Vec::new();
        self.entries.retain(|(net, _), e| match e.last_seen {
            Some(seen) if now.saturating_duration_since(seen) >= aging => {
                expired.push((*net, e.port));
                false
            }
            _ => true,
        });
        for (_, port) in &expired {
            *self.learned_count(*port) -= 1;
        }
        expired.into_iter().map(|(net, _)| net).collect()
    }

    /// The entry of `mac` in `network`, live or not yet swept.
    pub fn get(&self, network: NetworkId, mac: MacAddr) -> Option<Entry> {
        self.entries.get(&(network, mac)).copied()
    }

    /// Number of entries of `network` (live or not yet swept), for metrics.
    pub fn len_in(&self, network: NetworkId) -> usize {
        self.entries
            .keys()
            .filter(|(net, _)| *net == network)
            .count()
    }

    /// Forgets every entry, static or learned, pointing at `port` (the port is going away).
    pub fn flush_port(&mut self, port: PortId) {
        self.entries.retain(|_, e| e.port != port);
        *self.learned_count(port) = 0;
    }

    /// Forgets every entry of `network` (the network is going away).
    pub fn flush_network(&mut self, network: NetworkId) {
        let mut freed = Vec::new();
        self.entries.retain(|(net, _), e| {
            let keep = *net != network;
            if !keep && e.last_seen.is_some() {
                freed.push(e.port);
            }
            keep
        });
        for port in freed {
            *self.learned_count(port) -= 1;
        }
    }

    /// Live entries of `network`, for listings.
    pub fn entries(
        &self,
        now: Instant,
        network: NetworkId,
    ) -> impl Iterator<Item = (MacAddr, Entry)> + '_ {
        self.entries
            .iter()
            .filter(move |((net, _), e)| *net == network && self.is_live(e, now))
            .map(|((_, mac), e)| (*mac, *e))
    }

    /// Number of entries (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Learned entries currently charged to `port`.
    pub fn learned_on(&self, port: PortId) -> u32 {
        self.learned_per_port
            .get(port.index())
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetworkId = NetworkId(0);

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn learn_refresh_move() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(DEFAULT_AGING, 4);
        assert_eq!(fdb.learn(t0, NET, mac(1), PortId(1)), Learned::New);
        assert_eq!(fdb.learn(t0, NET, mac(1), PortId(1)), Learned::Refreshed);
        assert_eq!(
            fdb.learn(t0, NET, mac(1), PortId(2)),
            Learned::Moved { from: PortId(1) }
        );
        assert_eq!(fdb.lookup(t0, NET, mac(1)), Some(PortId(2)));
        assert_eq!(
            (fdb.learned_on(PortId(1)), fdb.learned_on(PortId(2))),
            (0, 1)
        );
    }

    #[test]
    fn entries_age_out_with_now() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(Duration::from_secs(10), 4);
        fdb.learn(t0, NET, mac(1), PortId(1));
        fdb.add_static(NET, mac(9), PortId(3));
        assert_eq!(
            fdb.lookup(t0 + Duration::from_secs(9), NET, mac(1)),
            Some(PortId(1))
        );
        assert_eq!(fdb.lookup(t0 + Duration::from_secs(10), NET, mac(1)), None);
        assert_eq!(fdb.handle_aging(t0 + Duration::from_secs(11)).len(), 1);
        assert_eq!(fdb.learned_on(PortId(1)), 0);
        assert_eq!(
            fdb.lookup(t0 + Duration::from_secs(1000), NET, mac(9)),
            Some(PortId(3))
        );
    }

    #[test]
    fn static_entries_are_never_overridden() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(DEFAULT_AGING, 4);
        fdb.add_static(NET, mac(1), PortId(1));
        assert_eq!(fdb.learn(t0, NET, mac(1), PortId(2)), Learned::Static);
        assert_eq!(fdb.lookup(t0, NET, mac(1)), Some(PortId(1)));
        assert!(fdb.remove_static(NET, mac(1)));
        assert_eq!(fdb.lookup(t0, NET, mac(1)), None);
    }

    #[test]
    fn mac_limit_bounds_each_port() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(DEFAULT_AGING, 3);
        for n in 0..3 {
            assert_eq!(fdb.learn(t0, NET, mac(n), PortId(1)), Learned::New);
        }
        assert_eq!(fdb.learn(t0, NET, mac(7), PortId(1)), Learned::LimitReached);
        assert_eq!(fdb.len(), 3);
        // Another port is not affected by port 1's limit.
        assert_eq!(fdb.learn(t0, NET, mac(8), PortId(2)), Learned::New);
        // A MAC moving onto a full port is forgotten rather than left pointing at its old port.
        fdb.learn(t0, NET, mac(9), PortId(2));
        assert_eq!(fdb.learn(t0, NET, mac(9), PortId(1)), Learned::LimitReached);
        assert_eq!(fdb.lookup(t0, NET, mac(9)), None);
        assert_eq!(fdb.learned_on(PortId(2)), 1);
    }

    #[test]
    fn networks_are_separate_tables() {
        let t0 = Instant::now();
        let mut fdb = Fdb::new(DEFAULT_AGING, 4);
        fdb.learn(t0, NetworkId(0), mac(1), PortId(1));
        assert_eq!(fdb.lookup(t0, NetworkId(1), mac(1)), None);
        fdb.flush_network(NetworkId(0));
        assert!(fdb.is_empty());
        assert_eq!(fdb.learned_on(PortId(1)), 0);
    }
}
