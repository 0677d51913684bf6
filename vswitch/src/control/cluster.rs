//! Overlay networks shared through a store (etcd): this host publishes what it has (its
//! underlay address, its overlay networks, their endpoints and addresses), bound to a lease it
//! keeps alive, and programs itself from what the others published: a tunnel to each host that
//! has one of its overlay networks, each remote station's MAC pinned to its host's tunnel (known
//! unicast goes straight there, no flooding), and remote names in the gateways' DNS. A host that
//! stops renewing its lease disappears with everything it published. Addresses are reserved by
//! transaction, so two hosts connecting at once never get the same one. An overlay's policy is
//! kept in the store too, and every host follows the last change made on any. With the store
//! unreachable, nothing already programmed is undone: frames flow as before, and changes that
//! need the store wait or fail with the store's error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use vswitch_core::frame::MacAddr;

use super::overlay::LiveTunnel;
use super::{Control, ControlError, Inner};
use crate::model::{NetworkCreate, NetworkRecord, RemoteEndpoint};
use crate::store::etcd::{Etcd, EtcdError};

const PREFIX: &str = "/vswitch/";

/// How often `update` tries before giving up to hosts that keep changing the same key.
const UPDATE_ATTEMPTS: usize = 5;

/// Where this host sits among the others.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The store.
    pub etcd: Etcd,
    /// This host's name in the store.
    pub host: String,
    /// This host's underlay address, as the others reach it.
    pub underlay: SocketAddr,
    /// How long this host's records outlive its last renewal.
    pub lease: Duration,
}

/// A host's record in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HostRecord {
    underlay: SocketAddr,
    /// Its WireGuard identity, if it takes part in encrypted overlays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wireguard: Option<crate::model::overlay::PeerKey>,
}

/// This host's membership: its configuration, its lease, and what the store said last.
pub(super) struct Cluster {
    config: ClusterConfig,
    /// The lease this host's records are bound to (0: none yet, or it expired).
    lease: AtomicI64,
    /// Whether the last call to the store succeeded (for logging changes only).
    reachable: AtomicBool,
    /// Poked when local state changed and must be published.
    changed: Notify,
    /// The other hosts, by name, as last read.
    hosts: std::sync::Mutex<BTreeMap<String, SocketAddr>>,
    /// Networks the store defined when last read: one gone since was removed by another host.
    defined: std::sync::Mutex<BTreeSet<String>>,
    /// What the store holds under the prefix, kept by the watch.
    mirror: std::sync::Mutex<Mirror>,
}

/// The store's keys as this host last knew them, and the revision they are of.
#[derive(Debug, Default)]
struct Mirror {
    keys: BTreeMap<String, Vec<u8>>,
    revision: i64,
    /// Keys this host wrote outside the publishing round, with the revision of the write: a
    /// watch event older than it is stale and must not undo the write.
    written: HashMap<String, i64>,
}

fn host_key(host: &str) -> String {
    format!("{PREFIX}hosts/{host}")
}

fn member_key(network: &str, host: &str) -> String {
    format!("{PREFIX}networks/{network}/hosts/{host}")
}

fn endpoint_key(network: &str, host: &str, endpoint: &str) -> String {
    format!("{PREFIX}networks/{network}/endpoints/{host}/{endpoint}")
}

/// A network defined once for every host (its create request, settings made concrete).
fn definition_key(network: &str) -> String {
    format!("{PREFIX}definitions/{network}")
}

/// Where an overlay's policy is, as the host that changed it last set it.
pub(super) fn policy_key(network: &str) -> String {
    format!("{PREFIX}networks/{network}/policy")
}

pub(super) fn address_key(network: &str, ip: std::net::IpAddr) -> String {
    format!("{PREFIX}networks/{network}/addresses/{ip}")
}

/// What the store says, read into shape: hosts, and per network its hosts and endpoints.
#[derive(Debug, Default)]
struct StoreView {
    hosts: BTreeMap<String, SocketAddr>,
    /// Hosts' WireGuard identities, for encrypted overlays.
    keys: BTreeMap<String, crate::model::overlay::PeerKey>,
    members: BTreeMap<String, BTreeSet<String>>,
    endpoints: BTreeMap<String, Vec<RemoteEndpoint>>,
    definitions: BTreeMap<String, NetworkCreate>,
    policies: BTreeMap<String, policy::NetworkPolicy>,
}

impl StoreView {
    fn read(keys: &BTreeMap<String, Vec<u8>>) -> StoreView {
        let mut view = StoreView::default();
        for (key, value) in keys {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            match parts[..] {
                ["hosts", host] => {
                    if let Ok(record) = serde_json::from_slice::<HostRecord>(value) {
                        view.hosts.insert(host.to_string(), record.underlay);
                        if let Some(key) = record.wireguard {
                            view.keys.insert(host.to_string(), key);
                        }
                    }
                }
                ["networks", network, "policy"] => {
                    if let Ok(policy) = serde_json::from_slice(value) {
                        view.policies.insert(network.to_string(), policy);
                    }
                }
                ["networks", network, "hosts", host] => {
                    view.members
                        .entry(network.to_string())
                        .or_default()
                        .insert(host.to_string());
                }
                ["definitions", network] => {
                    if let Ok(definition) = serde_json::from_slice::<NetworkCreate>(value) {
                        view.definitions.insert(network.to_string(), definition);
                    }
                }
                ["networks", network, "endpoints", _, _] => {
                    if let Ok(endpoint) = serde_json::from_slice::<RemoteEndpoint>(value) {
                        view.endpoints
                            .entry(network.to_string())
                            .or_default()
                            .push(endpoint);
                    }
                }
                _ => {}
            }
        }
        view
    }
}

impl Cluster {
    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies what a watch reported.
    fn apply(&self, changes: Vec<crate::store::etcd::Change>) {
        let mut mirror = self.mirror();
        for change in changes {
            mirror.revision = mirror.revision.max(change.revision);
            if mirror
                .written
                .get(&change.key)
                .is_some_and(|&written| change.revision < written)
            {
                continue;
            }
            match change.value {
                Some(value) => mirror.keys.insert(change.key, value),
                None => mirror.keys.remove(&change.key),
            };
        }
    }

    /// This host's name in the store.
    pub(super) fn host(&self) -> &str {
        &self.config.host
    }

    /// Holds `key` for `owner` in the store, bound to this host's lease, unless someone holds
    /// it; true if `owner` holds it now (created, or already its own). A key released between
    /// the create and the read-back counts as not held: the caller tries another.
    pub(super) async fn reserve(&self, key: &str, owner: &str) -> Result<bool, EtcdError> {
        let lease = self.lease.load(Ordering::Relaxed);
        if lease == 0 {
            return Err(EtcdError::Unreachable {
                endpoints: self.config.etcd.endpoints(),
                reason: "this host has not registered with it yet".into(),
            });
        }
        let etcd = &self.config.etcd;
        if etcd.create(key, owner.as_bytes(), lease).await? {
            return Ok(true);
        }
        let current = etcd.range(key).await?;
        Ok(current
            .kvs
            .first()
            .is_some_and(|kv| kv.value == owner.as_bytes()))
    }

    /// Replaces `key`'s value in the store (no lease: it outlives this host) by what `next`
    /// makes of the current one, atomically: if another host changed it meanwhile, `next` is
    /// asked again. The mirror takes the result at once; returns it.
    pub(super) async fn update<E: From<EtcdError> + From<ControlError>>(
        &self,
        key: &str,
        next: impl Fn(Option<&[u8]>) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let etcd = &self.config.etcd;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = etcd.range(key).await?;
            let current = current.kvs.into_iter().find(|kv| kv.key == key);
            let value = next(current.as_ref().map(|kv| kv.value.as_slice()))?;
            let expected = current.map_or(0, |kv| kv.mod_revision);
            if let Some(revision) = etcd.put_if_unchanged(key, &value, expected).await? {
                let mut mirror = self.mirror();
                mirror.written.insert(key.to_string(), revision);
                mirror.keys.insert(key.to_string(), value.clone());
                return Ok(value);
            }
        }
        Err(ControlError::Invalid(format!(
            "{key} kept changing on other hosts ({UPDATE_ATTEMPTS} attempts): try again"
        ))
        .into())
    }

    /// Lets go of `keys` (best effort: they go with the lease anyway).
    pub(super) async fn release(&self, keys: &[String]) {
        for key in keys {
            let _ = self.config.etcd.delete(key).await;
        }
    }

    /// Whether `key` (with `value`) is one this host published.
    fn owns(&self, key: &str, value: &[u8]) -> bool {
        let host = &self.config.host;
        let Some(rest) = key.strip_prefix(PREFIX) else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts[..] {
            ["hosts", h] | ["networks", _, "hosts", h] | ["networks", _, "endpoints", h, _] => {
                h == host
            }
            ["networks", _, "addresses", _] => value.starts_with(format!("{host}/").as_bytes()),
            _ => false,
        }
    }

    fn note_reachable(&self, reachable: bool, error: Option<&EtcdError>) {
        if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
            match error {
                Some(e) => {
                    warn!(error = %e, "store unreachable: forwarding carries on; changes wait")
                }
                None => info!(store = %self.config.etcd.endpoints(), "store reachable"),
            }
        }
    }
}

impl Control {
    /// Joins the hosts sharing `config`'s store: publishes this host and keeps itself in step
    /// with the others, in a task of its own, until the control plane goes away.
    pub fn join_store(self: &Arc<Self>, config: ClusterConfig) {
        let cluster = Cluster {
            config,
            lease: AtomicI64::new(0),
            reachable: AtomicBool::new(true),
            changed: Notify::new(),
            hosts: Default::default(),
            defined: Default::default(),
            mirror: Default::default(),
        };
        let cluster = Arc::new(cluster);
        if self.cluster.set(cluster.clone()).is_ok() {
            tokio::spawn(keep_in_step(Arc::downgrade(self), cluster));
        }
    }

    /// Tells the store task that local state changed.
    pub(super) fn publish_soon(&self) {
        if let Some(cluster) = self.cluster.get() {
            cluster.changed.notify_one();
        }
    }

    /// This host's name in the store, if it joined one.
    pub(super) fn host_name(&self) -> Option<String> {
        Some(self.cluster.get()?.config.host.clone())
    }

    /// The store this host shares overlays through, if it joined one.
    pub(super) fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get().map(|c| &**c)
    }

    /// Other hosts in the store, by name, with their underlay addresses.
    pub(super) fn store_hosts(&self) -> Option<BTreeMap<String, SocketAddr>> {
        let cluster = self.cluster.get()?;
        Some(
            cluster
                .hosts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }

    /// Defines overlay network `record` in the store, for every host to create: its request
    /// with the settings made concrete (subnets, gateways, VNI, MTU, ID). Defining it again
    /// with the same settings joins it (and returns the stored ID, the network's everywhere);
    /// other settings are refused, naming the stored ones.
    pub(super) async fn define_network(
        &self,
        req: &NetworkCreate,
        record: &NetworkRecord,
    ) -> Result<Option<String>, ControlError> {
        let (Some(cluster), Some(overlay)) = (self.cluster.get(), &record.overlay) else {
            return Ok(None);
        };
        let mut definition = req.clone();
        definition.subnets = record
            .subnets
            .iter()
            .map(|s| s.subnet.to_string())
            .collect();
        definition.gateways = record
            .subnets
            .iter()
            .map(|s| s.gateway.to_string())
            .collect();
        definition.ipv6 = false;
        definition.vni = Some(overlay.vni);
        definition.id = Some(record.id.clone());
        definition.mtu = Some(record.mtu);
        let key = definition_key(&record.name);
        let value = serde_json::to_vec(&definition).expect("serializes");
        let etcd = &cluster.config.etcd;
        if etcd.create(&key, &value, 0).await? {
            return Ok(None);
        }
        let stored = etcd.range(&key).await?;
        let stored: Option<NetworkCreate> = stored
            .kvs
            .first()
            .and_then(|kv| serde_json::from_slice(&kv.value).ok());
        match stored {
            Some(stored) if stored.vni == definition.vni && stored.subnets == definition.subnets => {
                Ok(stored.id)
            }
            Some(stored) => Err(crate::control::error::invalid(format!(
                "network {} is defined in the store with VNI {} and subnets {}: create it with those, or with no --subnet and --vni",
                record.name,
                stored.vni.unwrap_or(0),
                stored.subnets.join(",")
            ))),
            None => Ok(None),
        }
    }

    /// Removes overlay network `name`'s definition from the store, refused while another host
    /// has endpoints on it.
    pub(super) async fn undefine_network(&self, name: &str) -> Result<(), ControlError> {
        let Some(cluster) = self.cluster.get() else {
            return Ok(());
        };
        let etcd = &cluster.config.etcd;
        let prefix = format!("{PREFIX}networks/{name}/endpoints/");
        let elsewhere: Vec<String> = etcd
            .range(&prefix)
            .await?
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<RemoteEndpoint>(&kv.value).ok())
            .filter(|e| e.host != cluster.config.host)
            .map(|e| format!("{} on host {}", e.name, e.host))
            .collect();
        if !elsewhere.is_empty() {
            return Err(ControlError::NetworkInUse {
                network: name.to_string(),
                endpoints: elsewhere.join(", "),
            });
        }
        etcd.delete(&policy_key(name)).await?;
        Ok(etcd.delete(&definition_key(name)).await?)
    }

    /// Creates the networks the store defines that this host lacks, and removes the overlays
    /// whose definition is gone and that have no endpoints here.
    async fn follow_definitions(&self, cluster: &Cluster, inner: &mut Inner, view: &StoreView) {
        let mut seen = cluster
            .defined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (name, definition) in &view.definitions {
            if inner.networks.contains_key(name) {
                continue;
            }
            match self
                .create_network_in(inner, definition.clone(), false)
                .await
            {
                Ok(_) => info!(network = %name, "network created as the store defines it"),
                Err(e) => {
                    warn!(network = %name, error = %e, "network the store defines not created")
                }
            }
        }
        let gone: Vec<String> = inner
            .networks
            .iter()
            .filter(|(name, n)| {
                n.record.overlay.is_some()
                    && n.record.endpoints.is_empty()
                    && !view.definitions.contains_key(*name)
                    && seen.contains(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(network) = inner.networks.remove(&name) {
                let id = network.record.id.clone();
                match self.stop_network(network).await {
                    Ok(()) => {
                        info!(network = %name, "network removed: the store no longer defines it");
                        let attributes = [("name", name.as_str()), ("network", name.as_str())];
                        self.emit("network", "remove", &id, &attributes);
                    }
                    Err(e) => warn!(network = %name, error = %e, "network not removed"),
                }
            }
        }
        seen = view.definitions.keys().cloned().collect();
        *cluster
            .defined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
    }

    /// One round: renew the lease (or get a new one), read everything if asked to (or the
    /// lease was new), publish what differs from the mirror, program from the mirror.
    async fn step(&self, cluster: &Cluster, full: bool) -> Result<(), EtcdError> {
        let etcd = &cluster.config.etcd;
        let mut lease = cluster.lease.load(Ordering::Relaxed);
        if lease != 0 && !etcd.keep_alive(lease).await? {
            warn!("this host's lease expired: registering again");
            lease = 0;
        }
        let mut full = full;
        if lease == 0 {
            lease = etcd.grant(cluster.config.lease).await?;
            cluster.lease.store(lease, Ordering::Relaxed);
            full = true;
        }
        if full {
            let snapshot = etcd.range(PREFIX).await?;
            let mut mirror = cluster.mirror();
            // This host's own writes after the snapshot was read stay as written.
            let newer: Vec<(String, Vec<u8>)> = mirror
                .written
                .iter()
                .filter(|(_, &revision)| revision > snapshot.revision)
                .filter_map(|(key, _)| Some((key.clone(), mirror.keys.get(key)?.clone())))
                .collect();
            mirror.keys = snapshot
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .chain(newer)
                .collect();
            mirror.revision = snapshot.revision;
        }
        let desired = self.desired_records(cluster).await;
        let (puts, deletes): (Vec<(String, Vec<u8>)>, Vec<String>) = {
            let mirror = cluster.mirror();
            let puts = desired
                .iter()
                .filter(|(key, value)| mirror.keys.get(*key) != Some(*value))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let deletes = mirror
                .keys
                .iter()
                .filter(|(key, value)| cluster.owns(key, value) && !desired.contains_key(*key))
                .map(|(k, _)| k.clone())
                .collect();
            (puts, deletes)
        };
        // What this host writes comes back through the watch; the mirror takes it now.
        for (key, value) in puts {
            etcd.put(&key, &value, lease).await?;
            cluster.mirror().keys.insert(key, value);
        }
        for key in deletes {
            etcd.delete(&key).await?;
            cluster.mirror().keys.remove(&key);
        }
        self.program(cluster).await;
        Ok(())
    }

    /// Every record this host should have in the store, by key.
    async fn desired_records(&self, cluster: &Cluster) -> BTreeMap<String, Vec<u8>> {
        let host = &cluster.config.host;
        let mut records = BTreeMap::new();
        let record = HostRecord {
            underlay: cluster.config.underlay,
            wireguard: self
                .wireguard_identity()
                .map(|(key, inner)| crate::model::overlay::PeerKey { key, inner }),
        };
        records.insert(
            host_key(host),
            serde_json::to_vec(&record).expect("serializes"),
        );
        let inner = self.inner.lock().await;
        for (name, network) in &inner.networks {
            if network.record.overlay.is_none() {
                continue;
            }
            records.insert(member_key(name, host), Vec::new());
            let now = super::unix_now();
            let live_leases: Vec<&crate::model::LeaseRecord> = network
                .record
                .leases
                .iter()
                .filter(|l| !l.offered && l.expires > now)
                .collect();
            for lease in &live_leases {
                records.insert(
                    address_key(name, std::net::IpAddr::V4(lease.ip)),
                    dhcp_owner(host, lease.mac).into_bytes(),
                );
            }
            for endpoint in network.record.endpoints.values() {
                // A DHCP client's address is its lease's.
                let leased = live_leases
                    .iter()
                    .filter(|l| l.mac == endpoint.mac)
                    .filter_map(|l| {
                        let prefix =
                            network.record.subnets.iter().find_map(|s| match s.subnet {
                                ipnet::IpNet::V4(net) if net.contains(&l.ip) => {
                                    Some(net.prefix_len())
                                }
                                _ => None,
                            })?;
                        ipnet::IpNet::new(std::net::IpAddr::V4(l.ip), prefix).ok()
                    });
                let remote = RemoteEndpoint {
                    host: host.clone(),
                    name: endpoint.name.clone(),
                    mac: endpoint.mac,
                    addresses: endpoint.addresses.iter().copied().chain(leased).collect(),
                    aliases: endpoint.aliases.clone(),
                    labels: endpoint.labels.clone(),
                };
                let value = serde_json::to_vec(&remote).expect("serializes");
                records.insert(endpoint_key(name, host, &endpoint.name), value);
                for address in &endpoint.addresses {
                    let owner = format!("{host}/{}", endpoint.name);
                    records.insert(address_key(name, address.addr()), owner.into_bytes());
                }
            }
        }
        records
    }

    /// Programs this host from what the store says: tunnels, pinned MACs, remote names,
    /// policies. The store is read with the control plane held, so a change made meanwhile
    /// (and written to the mirror) is never undone by an older read.
    async fn program(&self, cluster: &Cluster) {
        let mut inner = self.inner.lock().await;
        let view = StoreView::read(&cluster.mirror().keys);
        let me = &cluster.config.host;
        let others: BTreeMap<String, SocketAddr> = view
            .hosts
            .iter()
            .filter(|(name, _)| *name != me)
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        *cluster
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = others.clone();
        self.follow_definitions(cluster, &mut inner, &view).await;
        let names: Vec<String> = inner
            .networks
            .iter()
            .filter(|(_, n)| n.record.overlay.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let members = view.members.get(&name).cloned().unwrap_or_default();
            let wanted: BTreeMap<String, SocketAddr> = others
                .iter()
                .filter(|(host, _)| members.contains(*host))
                .map(|(h, a)| (h.clone(), *a))
                .collect();
            let remote: Vec<RemoteEndpoint> = view
                .endpoints
                .get(&name)
                .map(|all| {
                    all.iter()
                        .filter(|e| wanted.contains_key(&e.host))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if let Err(e) = self
                .program_network(&mut inner, &name, &wanted, &view.keys, remote)
                .await
            {
                warn!(network = %name, error = %e, "overlay not programmed from the store");
            }
            if let Err(e) = self.follow_policy(&mut inner, &name, view.policies.get(&name)) {
                warn!(network = %name, error = %e, "the store's policy not applied");
            }
        }
        if let Err(e) = self.take_effect(&inner) {
            warn!(error = %e, "state not saved after the store's changes");
        }
    }

    /// Brings one overlay network's tunnels (to `hosts`) and pinned MACs (of `remote`) in step.
    async fn program_network(
        &self,
        inner: &mut Inner,
        name: &str,
        hosts: &BTreeMap<String, SocketAddr>,
        view_keys: &BTreeMap<String, crate::model::overlay::PeerKey>,
        remote: Vec<RemoteEndpoint>,
    ) -> Result<(), ControlError> {
        let network = inner.network_mut(name)?;
        let overlay = network.record.overlay.clone().expect("an overlay network");
        let (gone, kept): (Vec<LiveTunnel>, Vec<LiveTunnel>) = std::mem::take(&mut network.tunnels)
            .into_iter()
            .partition(|t| {
                t.host
                    .as_ref()
                    .is_some_and(|h| hosts.get(h).map(SocketAddr::ip) != Some(t.peer.ip()))
            });
        network.tunnels = kept;
        let record = network.record.clone();
        let id = network.id;
        if !gone.is_empty() {
            for tunnel in &gone {
                let host = tunnel.host.as_deref().unwrap_or_default();
                info!(network = %name, host = %host, "host left the network");
                self.emit("host", "leave", host, &[("host", host), ("network", name)]);
            }
            self.stop_tunnels(&overlay, gone).await?;
        }
        for (host, underlay) in hosts {
            let network = inner.network_mut(name)?;
            if network
                .tunnels
                .iter()
                .any(|t| t.host.as_ref() == Some(host))
            {
                continue;
            }
            // Encrypted: to the host's WireGuard socket (on its underlay address), with its key.
            let key = view_keys.get(host);
            let peer = if overlay.encrypt {
                SocketAddr::new(underlay.ip(), crate::overlay::wireguard::DEFAULT_PORT)
            } else {
                *underlay
            };
            let port = self.add_tunnel(&record, &overlay, id, peer, key).await?;
            info!(network = %name, host = %host, underlay = %underlay, "host joined the network");
            self.emit("host", "join", host, &[("host", host), ("network", name)]);
            let network = inner.network_mut(name)?;
            network.tunnels.push(LiveTunnel {
                peer: *underlay,
                port,
                host: Some(host.clone()),
            });
        }
        let network = inner.network_mut(name)?;
        let port_of: HashMap<&str, vswitch_core::ids::PortId> = network
            .tunnels
            .iter()
            .filter_map(|t| Some((t.host.as_deref()?, t.port)))
            .collect();
        let pinned: HashMap<MacAddr, vswitch_core::ids::PortId> = remote
            .iter()
            .filter_map(|e| Some((e.mac, *port_of.get(e.host.as_str())?)))
            .collect();
        for (mac, port) in &network.pinned {
            if pinned.get(mac) != Some(port) {
                self.dataplane.remove_static(network.id, *mac);
            }
        }
        for (mac, port) in &pinned {
            if network.pinned.get(mac) != Some(port) {
                self.dataplane.add_static(network.id, *mac, *port)?;
            }
        }
        network.pinned = pinned;
        // ARP and neighbour solicitations for their addresses are answered here, not flooded
        // to every host.
        let neighbours = remote
            .iter()
            .flat_map(|e| e.addresses.iter().map(move |a| (a.addr(), e.mac)))
            .collect();
        self.dataplane.set_neighbours(network.id, neighbours)?;
        if network.record.remote != remote {
            network.record.remote = remote;
            // Selectors match the other hosts' endpoints too.
            self.apply_policy(inner, name)?;
        }
        Ok(())
    }
}

/// Who holds an address a DHCP client of this host leased.
pub(super) fn dhcp_owner(host: &str, mac: MacAddr) -> String {
    format!("{host}/dhcp-{mac}")
}

/// The store task: a round whenever the store or local state changes, and at least three
/// times per lease (which renews it); after a failure, again a second later.
async fn keep_in_step(control: Weak<Control>, cluster: Arc<Cluster>) {
    let period = cluster.config.lease / 3;
    let mut full = true;
    loop {
        // Held only for the round: the task must not keep the control plane alive.
        let Some(strong) = control.upgrade() else {
            return;
        };
        let result = strong.step(&cluster, full).await;
        drop(strong);
        if let Err(e) = result {
            cluster.note_reachable(false, Some(&e));
            full = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        cluster.note_reachable(true, None);
        full = false;
        let revision = cluster.mirror().revision;
        let watched = cluster.config.etcd.watch(PREFIX, revision, period);
        tokio::select! {
            _ = cluster.changed.notified() => {}
            changes = watched => match changes {
                Ok(changes) => cluster.apply(changes),
                // Read everything again next round.
                Err(_) => full = true,
            },
        }
    }
}
