//! What container runtimes' adapters (Docker's driver) need beyond the CLI's operations:
//! finding networks and endpoints by the runtime's IDs, and taking the names the runtime
//! gives them once it has attached them (Docker tells its driver no names).

use tracing::info;

use super::{Control, ControlError, Inner};
use crate::model::{plan_endpoint_names, EndpointRecord};

impl Control {
    /// The network Docker knows by `docker_id`.
    pub async fn network_of_docker(&self, docker_id: &str) -> Option<String> {
        let inner = self.inner.lock().await;
        inner
            .networks
            .iter()
            .find(|(_, n)| n.record.docker_id.as_deref() == Some(docker_id))
            .map(|(name, _)| name.clone())
    }

    /// The network and endpoint Docker knows by `docker_endpoint`.
    pub async fn endpoint_of_docker(&self, docker_endpoint: &str) -> Option<(String, String)> {
        let inner = self.inner.lock().await;
        find_docker_endpoint(&inner, docker_endpoint)
    }

    /// Gives the endpoint `current` of `network` its runtime's name and aliases, and records
    /// its interface's name now and the namespace it lives in (the runtime has moved and
    /// renamed it): from then on the endpoint goes when that namespace goes.
    pub async fn settle_endpoint(
        &self,
        network: &str,
        current: &str,
        name: &str,
        aliases: &[String],
    ) -> Result<EndpointRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let net = inner.network(network)?;
        let mut endpoint = plan_endpoint_names(&net.record, current, name, aliases)?;
        if let Some(port) = net.ports.get(current) {
            use std::os::fd::AsFd;
            if let Ok(ifname) = tap::current_name(port.tap_fd.as_fd()) {
                endpoint.ifname = ifname;
            }
        }
        // Until the runtime has made it (Docker mounts it a moment after listing the
        // container), this fails and the adapter asks again.
        let reference: tap::NetnsRef = endpoint.netns.parse()?;
        let ns = tokio::task::spawn_blocking(move || tap::Namespace::open(&reference))
            .await
            .expect("opening a namespace does not panic")?;
        endpoint.netns_inode = ns.identity().ino;
        let net = inner.network_mut(network)?;
        if let Some(mut port) = net.ports.remove(current) {
            port.ns = ns;
            self.rekey(
                &mut port,
                super::ports::endpoint_key(network, &endpoint.name),
            );
            net.ports.insert(endpoint.name.clone(), port);
        }
        net.record.endpoints.remove(current);
        net.record
            .endpoints
            .insert(endpoint.name.clone(), endpoint.clone());
        // Rules select endpoints by name; the names the gateway's DNS answers change too.
        self.apply_policy(&inner, network)?;
        self.commit(&inner)?;
        info!(network = %network, was = %current, endpoint = %endpoint.name, ifname = %endpoint.ifname, "endpoint named by its runtime");
        Ok(endpoint)
    }

    /// Renames a network that has no endpoints yet (its gateway starts again under the new
    /// name). Docker names its networks to its driver only after creating them.
    pub async fn rename_network(&self, current: &str, name: &str) -> Result<(), ControlError> {
        let mut inner = self.inner.lock().await;
        let mut record = inner.network(current)?.record.clone();
        if !record.endpoints.is_empty() {
            return Err(ControlError::NetworkInUse {
                network: current.to_string(),
                endpoints: record
                    .endpoints
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        crate::model::check_name("network", name)?;
        if inner.networks.contains_key(name) {
            return Err(crate::model::ModelError::NetworkExists(name.to_string()).into());
        }
        record.name = name.to_string();
        let network = self.start_network(record).await?;
        if let Some(old) = inner.networks.remove(current) {
            self.stop_network(old).await?;
        }
        inner.networks.insert(name.to_string(), network);
        self.apply_policy(&inner, name)?;
        self.commit(&inner)?;
        info!(was = %current, network = %name, "network named by its runtime");
        Ok(())
    }
}

fn find_docker_endpoint(inner: &Inner, docker_endpoint: &str) -> Option<(String, String)> {
    inner.networks.iter().find_map(|(network, n)| {
        n.record
            .endpoints
            .values()
            .find(|e| e.docker_endpoint.as_deref() == Some(docker_endpoint))
            .map(|e| (network.clone(), e.name.clone()))
    })
}
