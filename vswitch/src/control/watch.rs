//! Containers that went away: an endpoint or trunk whose namespace no longer exists is
//! disconnected, as Docker forgets the endpoints of a removed container.

use std::time::Duration;

use tracing::{info, warn};

use super::endpoints::write_resolv_conf;
use super::Control;

/// How often attached namespaces are checked for having gone away.
pub const NAMESPACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Control {
    /// Disconnects every endpoint whose namespace has gone away (the container exited).
    pub async fn handle_gone_namespaces(&self) {
        let mut inner = self.inner.lock().await;
        let gone: Vec<(String, String)> = inner
            .networks
            .iter()
            .flat_map(|(network, net)| {
                net.ports
                    .iter()
                    .filter(|(_, port)| !port.ns.is_alive())
                    .map(move |(name, _)| (network.clone(), name.clone()))
            })
            .collect();
        let gone_trunks: Vec<String> = inner
            .trunks
            .iter()
            .filter(|(_, t)| !t.port.ns.is_alive())
            .map(|(name, _)| name.clone())
            .collect();
        if gone.is_empty() && gone_trunks.is_empty() {
            return;
        }
        for trunk in gone_trunks {
            match self.detach_trunk(&mut inner, &trunk).await {
                Ok(_) => info!(trunk = %trunk, "namespace gone, trunk removed"),
                Err(e) => warn!(trunk = %trunk, error = %e, "cannot remove trunk"),
            }
        }
        for (network, endpoint) in gone {
            match self.detach(&mut inner, &network, &endpoint).await {
                Ok(record) => {
                    write_resolv_conf(&inner, &record.netns);
                    if let Err(e) = self.apply_policy(&inner, &network) {
                        warn!(network = %network, error = %e, "cannot update policy");
                    }
                    info!(network = %network, endpoint = %endpoint, "namespace gone, endpoint removed")
                }
                Err(e) => {
                    warn!(network = %network, endpoint = %endpoint, error = %e, "cannot remove endpoint")
                }
            }
        }
        if let Err(e) = self.commit(&inner) {
            warn!(error = %e, "cannot save state");
        }
        for netns in crate::gateway::resolv::remove_orphans() {
            info!(netns = %netns, "namespace gone: its resolv.conf removed");
        }
    }
}
