//! DHCP lease decisions for the gateways: a gateway asks, the control plane decides under its
//! lock (so leases and static addresses never collide), persists the lease, and lets the
//! client send from its new address (port security, policy).

use std::sync::Weak;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::addresses::port_security;
use super::{unix_now, Control, Network};
use crate::gateway::LeaseCall;
use crate::model::leases::Decision;
use crate::model::{leases, LeaseRecord, NetworkRecord};

/// Addresses offered on an overlay before a DHCP request is left unanswered (each held by
/// another host).
const MAX_LEASE_ATTEMPTS: usize = 16;
use vswitch_core::frame::MacAddr;

/// Answers the gateways' lease calls while the control plane lives.
pub(super) async fn serve(control: Weak<Control>, mut calls: mpsc::Receiver<LeaseCall>) {
    while let Some(call) = calls.recv().await {
        let Some(control) = control.upgrade() else {
            return;
        };
        control.handle_lease(call).await;
    }
}

impl Control {
    /// Decides a DHCP request of a network's gateway and persists the lease.
    async fn handle_lease(&self, mut call: LeaseCall) {
        let mut inner = self.inner.lock().await;
        let Some(network) = inner.networks.get_mut(&call.network) else {
            return;
        };
        call.query.port = self.client_port(network, call.query.mac);
        let taken_before = taken_leases(&network.record);
        let shared = network.record.overlay.is_some();
        let mut decision = leases::decide(
            &mut network.record,
            &call.query,
            unix_now(),
            leases::DEFAULT_LEASE_SECS,
        )
        .0;
        // On an overlay shared through a store, an address is offered or acknowledged only once
        // reserved there: one another host holds is counted as taken, and another offered.
        for _ in 0..MAX_LEASE_ATTEMPTS {
            let (Decision::Offer(ip) | Decision::Ack(ip)) = decision else {
                break;
            };
            if !shared {
                break;
            }
            match self.reserve_lease(&call.network, ip, call.query.mac).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    warn!(network = %call.network, error = %e, "DHCP answer waits for the store");
                    decision = Decision::Ignore;
                    break;
                }
            }
            let Some(network) = inner.networks.get_mut(&call.network) else {
                return;
            };
            network
                .record
                .leases
                .retain(|l| !(l.mac == call.query.mac && l.ip == ip));
            network
                .record
                .remote
                .push(crate::model::RemoteEndpoint::held_elsewhere(ip.into()));
            decision = if matches!(decision, Decision::Ack(_)) {
                Decision::Nak
            } else {
                leases::decide(
                    &mut network.record,
                    &call.query,
                    unix_now(),
                    leases::DEFAULT_LEASE_SECS,
                )
                .0
            };
        }
        let Some(network) = inner.networks.get_mut(&call.network) else {
            return;
        };
        // Offers live in memory only: a flood of DISCOVERs costs no disk write.
        if taken_leases(&network.record) != taken_before {
            if let Err(e) = self.commit(&inner) {
                warn!(error = %e, "cannot save DHCP lease");
            }
            // The client may now send from its new address (or no longer from its old one).
            if let Some(network) = inner.networks.get(&call.network) {
                let record = &network.record;
                let endpoint = record.endpoints.values().find(|e| e.mac == call.query.mac);
                if let Some(endpoint) = endpoint {
                    let security = port_security(record, endpoint, unix_now());
                    if let Some(port) = network.ports.get(&endpoint.name) {
                        if let Err(e) = self.dataplane.set_port_security(port.port, security) {
                            warn!(error = %e, "cannot update port security");
                        }
                    }
                }
            }
            if let Err(e) = self.apply_policy(&inner, &call.network) {
                warn!(error = %e, "cannot update policy");
            }
        }
        debug!(network = %call.network, mac = %call.query.mac, kind = ?call.query.kind, ?decision, "DHCP");
        let _ = call.reply.send(decision);
    }
}

impl Control {
    /// The endpoint (or trunk) whose port `mac` sends from, and how many offers and leases
    /// that port's DHCP clients may hold.
    fn client_port(&self, network: &Network, mac: MacAddr) -> Option<(String, u32)> {
        let port = self.dataplane.port_of(network.id, mac)?;
        let endpoint = network
            .ports
            .iter()
            .find(|(_, live)| live.port == port)
            .and_then(|(name, _)| network.record.endpoints.get(name));
        Some(match endpoint {
            Some(e) => (
                e.name.clone(),
                e.dhcp_leases.unwrap_or(leases::DEFAULT_LEASES_PER_PORT),
            ),
            // A trunk's or host interface's clients, counted together by port number.
            None => (port.to_string(), leases::DEFAULT_LEASES_PER_PORT),
        })
    }
}

/// The leases clients have taken (offers left out): what is persisted.
fn taken_leases(network: &NetworkRecord) -> Vec<LeaseRecord> {
    network
        .leases
        .iter()
        .filter(|l| !l.offered)
        .cloned()
        .collect()
}
