//! Addresses on overlays shared through a store: reserved there by transaction before a
//! connect or a DHCP offer uses them, so two hosts never hand out the same one; one another host
//! took meanwhile counts as taken, and the plan is made again.

use vswitch_core::frame::MacAddr;

use super::cluster::{address_key, dhcp_owner};
use super::{Control, ControlError, Inner};
use crate::model::{plan_endpoint, ConnectRequest, EndpointRecord, ModelError, RemoteEndpoint};

/// Addresses tried on an overlay before a connect gives up (each taken by another host).
const MAX_RESERVE_ATTEMPTS: usize = 16;

impl Control {
    /// Plans an endpoint (`model::plan_endpoint`); on an overlay shared through a store, its
    /// addresses are reserved there first: one another host took meanwhile counts as taken,
    /// and the plan is made again.
    pub(super) async fn plan_shared_endpoint(
        &self,
        inner: &mut Inner,
        network: &str,
        req: &ConnectRequest,
        netns: &tap::NetnsRef,
    ) -> Result<EndpointRecord, ControlError> {
        let plan = |inner: &Inner| -> Result<EndpointRecord, ControlError> {
            Ok(plan_endpoint(
                req,
                netns,
                &inner.network(network)?.record,
                &inner.state(),
            )?)
        };
        let mut endpoint = plan(inner)?;
        if inner.network(network)?.record.overlay.is_none() {
            return Ok(endpoint);
        }
        for _ in 0..MAX_RESERVE_ATTEMPTS {
            let Some(taken) = self.reserve_addresses(network, &endpoint).await? else {
                return Ok(endpoint);
            };
            if !req.ips.is_empty() || req.ip6.is_some() {
                return Err(address_taken(network, taken));
            }
            inner
                .network_mut(network)?
                .record
                .remote
                .push(RemoteEndpoint::held_elsewhere(taken));
            endpoint = plan(inner)?;
        }
        Err(address_taken(network, endpoint.addresses[0].addr()))
    }

    /// Reserves `ip`, for DHCP client `mac`, on overlay `network` in the store; false if
    /// another host holds it. Nothing to do without a store.
    pub(super) async fn reserve_lease(
        &self,
        network: &str,
        ip: std::net::Ipv4Addr,
        mac: MacAddr,
    ) -> Result<bool, ControlError> {
        let Some(cluster) = self.cluster() else {
            return Ok(true);
        };
        let owner = dhcp_owner(cluster.host(), mac);
        let key = address_key(network, std::net::IpAddr::V4(ip));
        Ok(cluster.reserve(&key, &owner).await?)
    }

    /// Reserves `endpoint`'s addresses on overlay `network` in the store; `Ok(Some(ip))` names
    /// an address another host holds. Nothing to do without a store.
    pub(super) async fn reserve_addresses(
        &self,
        network: &str,
        endpoint: &EndpointRecord,
    ) -> Result<Option<std::net::IpAddr>, ControlError> {
        let Some(cluster) = self.cluster() else {
            return Ok(None);
        };
        let owner = format!("{}/{}", cluster.host(), endpoint.name);
        let mut reserved = Vec::new();
        for address in &endpoint.addresses {
            let key = address_key(network, address.addr());
            match cluster.reserve(&key, &owner).await {
                Ok(true) => reserved.push(key),
                Ok(false) => {
                    cluster.release(&reserved).await;
                    return Ok(Some(address.addr()));
                }
                Err(e) => {
                    cluster.release(&reserved).await;
                    return Err(e.into());
                }
            }
        }
        Ok(None)
    }
}

fn address_taken(network: &str, ip: std::net::IpAddr) -> ControlError {
    ModelError::AddressInUse {
        ip: ip.to_string(),
        endpoint: "an endpoint on another host".into(),
        network: network.to_string(),
    }
    .into()
}
