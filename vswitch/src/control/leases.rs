//! DHCP lease decisions for the gateways: a gateway asks, the control plane decides under its
//! lock (so leases and static addresses never collide), persists the lease, and lets the
//! client send from its new address (port security, policy).

use std::sync::Weak;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::addresses::port_security;
use super::{unix_now, Control};
use crate::gateway::LeaseCall;
use crate::model::leases;

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
    async fn handle_lease(&self, call: LeaseCall) {
        let mut inner = self.inner.lock().await;
        let Some(network) = inner.networks.get_mut(&call.network) else {
            return;
        };
        let (decision, changed) = leases::decide(
            &mut network.record,
            &call.query,
            unix_now(),
            leases::DEFAULT_LEASE_SECS,
        );
        if changed {
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
