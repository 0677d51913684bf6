//! A network's policy and its ports' rate limits: compiling the rules against the endpoints as
//! they are now, changing them atomically, and reading their counters and tracked flows.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::addresses::endpoint_addresses;
use super::{unix_now, Control, ControlError, Inner, Network};
use crate::gateway;
use crate::model::{check_policy_size, check_rate_limit, EndpointRecord, NetworkRecord, RuleAdd};

/// A network's policy and how often each rule (and the default) decided a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The policy as configured.
    #[serde(flatten)]
    pub policy: policy::NetworkPolicy,
    /// Counters per rule, in rule order, then `default`.
    pub stats: Vec<policy::RuleStats>,
}

/// One change to a network's policy, applied whole or not at all.
#[derive(Debug, Clone)]
pub enum PolicyChange {
    /// Replace the whole policy.
    Replace(policy::NetworkPolicy),
    /// Insert a rule.
    AddRule(RuleAdd),
    /// Remove the rule of this name.
    RemoveRule(String),
    /// Change what happens to traffic no rule matches.
    SetDefault(policy::DefaultAction),
}

impl PolicyChange {
    fn apply(self, network: &str, policy: &mut policy::NetworkPolicy) -> Result<(), ControlError> {
        match self {
            PolicyChange::Replace(new) => *policy = new,
            PolicyChange::AddRule(RuleAdd { rule, position }) => {
                let at = position.unwrap_or(policy.rules.len());
                if at > policy.rules.len() {
                    return Err(ControlError::Invalid(format!(
                        "position {at} is past the end of the {} rules",
                        policy.rules.len()
                    )));
                }
                policy.rules.insert(at, rule);
            }
            PolicyChange::RemoveRule(rule) => {
                let at = policy
                    .rules
                    .iter()
                    .position(|r| r.name == rule)
                    .ok_or_else(|| ControlError::UnknownRule {
                        rule,
                        network: network.to_string(),
                    })?;
                policy.rules.remove(at);
            }
            PolicyChange::SetDefault(default) => policy.default = default,
        }
        Ok(())
    }
}

impl Control {
    /// A network's policy with its rule counters.
    pub async fn policy(&self, network: &str) -> Result<PolicyView, ControlError> {
        let inner = self.inner.lock().await;
        Ok(self.policy_view(inner.network(network)?))
    }

    /// Changes a network's policy; the result is checked and compiled before it replaces the
    /// running one in one step, else nothing changes.
    pub async fn change_policy(
        &self,
        network: &str,
        change: PolicyChange,
    ) -> Result<PolicyView, ControlError> {
        let mut inner = self.inner.lock().await;
        let mut candidate = inner.network(network)?.record.clone();
        let shared = self.cluster().filter(|_| candidate.overlay.is_some());
        if let Some(cluster) = shared {
            // Every host of an overlay enforces the same rules: the change is made to the
            // store's policy (whichever host changed it last), atomically, and kept there first.
            let key = super::cluster::policy_key(network);
            let stored = cluster
                .update(&key, |stored| {
                    let mut next = candidate.clone();
                    if let Some(policy) = stored.and_then(|b| serde_json::from_slice(b).ok()) {
                        next.policy = policy;
                    }
                    change.clone().apply(network, &mut next.policy)?;
                    check_policy_size(&next.policy)?;
                    policy_engine(&next, unix_now())?;
                    Ok::<_, ControlError>(serde_json::to_vec(&next.policy).expect("serializes"))
                })
                .await?;
            candidate.policy = serde_json::from_slice(&stored).expect("written just now");
        } else {
            change.apply(network, &mut candidate.policy)?;
            check_policy_size(&candidate.policy)?;
        }
        let engine = policy_engine(&candidate, unix_now())?;
        let net = inner.network_mut(network)?;
        let old = std::mem::replace(&mut net.record.policy, candidate.policy);
        if let Err(e) = self.commit(&inner) {
            // Kept in the store, it holds on every host: here too, unsaved.
            if shared.is_none() {
                inner.network_mut(network)?.record.policy = old;
                return Err(e);
            }
            warn!(network = %network, error = %e, "policy changed (the store has it) but this host's state was not saved");
        }
        let net = inner.network(network)?;
        self.dataplane.set_policy(net.id, engine)?;
        info!(network = %network, "policy changed");
        self.emit("policy", "change", &net.record.id, &[("network", network)]);
        Ok(self.policy_view(net))
    }

    /// A network's tracked flows.
    pub async fn conntrack(&self, network: &str) -> Result<Vec<policy::FlowRow>, ControlError> {
        let inner = self.inner.lock().await;
        Ok(self.dataplane.flows(inner.network(network)?.id))
    }

    /// Replaces an endpoint's ingress rate limit at run time (`None`: unlimited).
    pub async fn set_rate_limit(
        &self,
        network: &str,
        target: &str,
        limit: Option<policy::RateLimit>,
    ) -> Result<EndpointRecord, ControlError> {
        let limit = check_rate_limit(limit)?;
        let mut inner = self.inner.lock().await;
        let endpoint = inner.network_mut(network)?.record.endpoint_mut(target)?;
        let name = endpoint.name.clone();
        let old = std::mem::replace(&mut endpoint.rate_limit, limit);
        let updated = endpoint.clone();
        if let Err(e) = self.commit(&inner) {
            if let Some(endpoint) = inner.network_mut(network)?.record.endpoints.get_mut(&name) {
                endpoint.rate_limit = old;
            }
            return Err(e);
        }
        if let Some(port) = inner.network(network)?.ports.get(&name) {
            self.dataplane.set_rate_limit(port.port, limit)?;
        }
        let limit = match limit {
            None => "unlimited".to_string(),
            Some(l) => [
                l.bits_per_sec.map(|b| format!("{b} bit/s")),
                l.packets_per_sec.map(|p| format!("{p} packets/s")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        };
        info!(network = %network, endpoint = %updated.name, %limit, "rate limit changed");
        Ok(updated)
    }

    /// Rule counters of every network that has a policy to enforce, by network name.
    pub async fn policy_counters(&self) -> Vec<(String, Vec<policy::RuleStats>)> {
        let inner = self.inner.lock().await;
        inner
            .networks
            .iter()
            .map(|(name, n)| (name.clone(), self.dataplane.rule_stats(n.id)))
            .filter(|(_, stats)| !stats.is_empty())
            .collect()
    }

    /// Takes overlay `network`'s policy from the store (`stored`, as the host that changed it
    /// last set it) if it differs from the one here.
    pub(super) fn follow_policy(
        &self,
        inner: &mut Inner,
        network: &str,
        stored: Option<&policy::NetworkPolicy>,
    ) -> Result<(), ControlError> {
        let net = inner.network_mut(network)?;
        let Some(stored) = stored.filter(|p| **p != net.record.policy) else {
            return Ok(());
        };
        let mut candidate = net.record.clone();
        candidate.policy = stored.clone();
        let engine = policy_engine(&candidate, unix_now())?;
        net.record.policy = candidate.policy;
        self.dataplane.set_policy(net.id, engine)?;
        info!(network = %network, "policy changed as the store says");
        let attributes = [("network", network), ("origin", "store")];
        self.emit("policy", "change", &net.record.id, &attributes);
        Ok(())
    }

    /// Compiles `network`'s policy against its endpoints as they are now and installs it.
    pub(super) fn apply_policy(&self, inner: &Inner, network: &str) -> Result<(), ControlError> {
        let net = inner.network(network)?;
        let engine = policy_engine(&net.record, unix_now())?;
        self.dataplane.set_policy(net.id, engine)?;
        Ok(())
    }

    fn policy_view(&self, network: &Network) -> PolicyView {
        let mut stats = self.dataplane.rule_stats(network.id);
        if stats.is_empty() {
            // No engine (nothing to enforce): every rule and the default at zero.
            stats = network
                .record
                .policy
                .rules
                .iter()
                .map(|r| r.name.clone())
                .chain([policy::rules::DEFAULT_RULE.to_string()])
                .map(|name| policy::RuleStats {
                    name,
                    hits: 0,
                    staged_hits: 0,
                })
                .collect();
        }
        PolicyView {
            policy: network.record.policy.clone(),
            stats,
        }
    }
}

/// `network`'s policy compiled against its endpoints as they are now (labels, addresses);
/// `None` when it lets everything through, so the data path tracks nothing.
pub(super) fn policy_engine(
    network: &NetworkRecord,
    now: u64,
) -> Result<Option<policy::Engine>, policy::RuleError> {
    if network.policy.is_open() {
        return Ok(None);
    }
    let local = network.endpoints.values().map(|e| {
        let (v4, v6) = endpoint_addresses(network, e, now);
        let link_local = gateway::ndp::link_local(e.mac);
        policy::Endpoint {
            name: e.name.clone(),
            labels: e.labels.clone(),
            addrs: v4
                .into_iter()
                .map(IpAddr::V4)
                .chain(v6.into_iter().chain([link_local]).map(IpAddr::V6))
                .collect(),
        }
    });
    // An overlay's endpoints on other hosts are selected like local ones, so a rule means
    // the same on every host (each host judges what enters and leaves through it).
    let remote = network.remote_endpoints().map(|e| policy::Endpoint {
        name: e.name.clone(),
        labels: e.labels.clone(),
        addrs: e
            .addresses
            .iter()
            .map(|a| a.addr())
            .chain([IpAddr::V6(gateway::ndp::link_local(e.mac))])
            .collect(),
    });
    let endpoints: Vec<policy::Endpoint> = local.chain(remote).collect();
    let gateway = network.subnets.iter().map(|s| s.gateway).collect();
    let capacity = network
        .max_flows
        .unwrap_or(policy::conntrack::DEFAULT_CAPACITY);
    policy::Engine::new(&network.policy, &endpoints, gateway, capacity).map(Some)
}
