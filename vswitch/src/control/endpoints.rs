//! Endpoints: connecting a namespace to a network (its TAP device and port, its resolv.conf)
//! and disconnecting it, and what an endpoint may send as (port security).

use std::net::IpAddr;

use tracing::{info, warn};

use vswitch_core::switch::{PortConfig, PortMode, Reach};

use super::addresses::port_security;
use super::ports::{endpoint_key, Creation};
use super::{unix_now, Control, ControlError, Inner};
use crate::gateway::resolv;
use crate::model::{ConnectRequest, Connected, EndpointRecord, NetworkRecord};

impl Control {
    /// A network's endpoints, by name.
    pub async fn endpoints(&self, network: &str) -> Result<Vec<EndpointRecord>, ControlError> {
        let inner = self.inner.lock().await;
        Ok(inner
            .network(network)?
            .record
            .endpoints
            .values()
            .cloned()
            .collect())
    }

    /// One endpoint, by name or namespace.
    pub async fn endpoint(
        &self,
        network: &str,
        target: &str,
    ) -> Result<EndpointRecord, ControlError> {
        let inner = self.inner.lock().await;
        let record = &inner.network(network)?.record;
        let name = record.endpoint_name(target)?;
        Ok(record.endpoints[&name].clone())
    }

    /// Attaches a namespace to a network.
    pub async fn connect(
        &self,
        network: &str,
        req: ConnectRequest,
    ) -> Result<Connected, ControlError> {
        self.connect_as(network, req, Creation::InNamespace).await
    }

    /// Attaches a namespace to a network, its TAP device made as `creation` says.
    pub(crate) async fn connect_as(
        &self,
        network: &str,
        req: ConnectRequest,
        creation: Creation,
    ) -> Result<Connected, ControlError> {
        let mut inner = self.inner.lock().await;
        let netns: tap::NetnsRef = req.netns.parse()?;
        let endpoint = self
            .plan_shared_endpoint(&mut inner, network, &req, &netns)
            .await?;
        let endpoint = self.attach(&mut inner, network, endpoint, creation).await?;
        if let Err(e) = self.commit(&inner) {
            self.detach(&mut inner, network, &endpoint.name).await?;
            return Err(e);
        }
        // Its labels and addresses now count in the network's rules.
        self.apply_policy(&inner, network)?;
        let resolv_conf = write_resolv_conf(&inner, &endpoint.netns);
        info!(network = %network, endpoint = %endpoint.name, netns = %endpoint.netns, "connected");
        let attributes = [
            ("name", network),
            ("network", network),
            ("endpoint", &endpoint.name),
        ];
        self.emit(
            "network",
            "connect",
            &inner.network(network)?.record.id,
            &attributes,
        );
        Ok(Connected {
            dns: inner.network(network)?.record.dns_servers(),
            endpoint,
            resolv_conf,
        })
    }

    /// Detaches an endpoint, given by name or by namespace, from a network.
    pub async fn disconnect(
        &self,
        network: &str,
        target: &str,
    ) -> Result<EndpointRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let name = inner.network(network)?.record.endpoint_name(target)?;
        let endpoint = self.detach(&mut inner, network, &name).await?;
        self.commit(&inner)?;
        self.apply_policy(&inner, network)?;
        write_resolv_conf(&inner, &endpoint.netns);
        info!(network = %network, endpoint = %name, "disconnected");
        let attributes = [("name", network), ("network", network), ("endpoint", &name)];
        self.emit(
            "network",
            "disconnect",
            &inner.network(network)?.record.id,
            &attributes,
        );
        Ok(endpoint)
    }

    /// Creates the TAP device for `endpoint` and adds its port; records it on success.
    pub(super) async fn attach(
        &self,
        inner: &mut Inner,
        network: &str,
        mut endpoint: EndpointRecord,
        creation: Creation,
    ) -> Result<EndpointRecord, ControlError> {
        let net = inner.network(network)?;
        let record = &net.record;
        let mtu = endpoint.mtu.unwrap_or(record.mtu);
        let config = tap::TapConfig {
            queues: self.dataplane.workers(),
            handover: matches!(creation, Creation::Handover),
            ..record.tap_config(&endpoint)
        };
        let port_config = PortConfig {
            mode: PortMode::Access(net.id),
            mtu,
            security: port_security(record, &endpoint, unix_now()),
            rate_limit: endpoint.rate_limit,
            reach: Reach::Any,
        };
        let handoff = super::publish::Handoff {
            tcp: net.gateway.gateway.inbound.clone(),
            udp: net.gateway.gateway.datagrams.clone(),
        };
        let stands_in = creation.stands_in();
        endpoint.foreign_namespace = matches!(creation, Creation::Given(_));
        let key = endpoint_key(network, &endpoint.name);
        let mut port = self
            .open_port(
                &endpoint.netns,
                endpoint.netns_inode,
                config,
                port_config,
                key,
                creation,
            )
            .await?;
        if !stands_in {
            // Otherwise it stands in the daemon's namespace: until settled in the runtime's
            // (Docker), or for good (a namespace out of reach).
            endpoint.netns_inode = port.ns.identity().ino;
        }
        match super::publish::listen(&endpoint, &handoff).await {
            Ok(publishers) => port.publishers = publishers,
            Err(e) => {
                self.close_port(port).await?;
                return Err(e);
            }
        }
        let net = inner.network_mut(network)?;
        net.ports.insert(endpoint.name.clone(), port);
        net.record
            .endpoints
            .insert(endpoint.name.clone(), endpoint.clone());
        Ok(endpoint)
    }

    /// Removes an endpoint's port (the kernel deletes its TAP) and its record, with what its
    /// DHCP client leased.
    pub(super) async fn detach(
        &self,
        inner: &mut Inner,
        network: &str,
        endpoint: &str,
    ) -> Result<EndpointRecord, ControlError> {
        let net = inner.network_mut(network)?;
        let port = net.ports.remove(endpoint);
        let record = net.record.endpoints.remove(endpoint).ok_or_else(|| {
            crate::model::ModelError::UnknownEndpoint {
                target: endpoint.to_string(),
                network: network.to_string(),
            }
        })?;
        if record.dhcp {
            net.record.leases.retain(|l| l.mac != record.mac);
        }
        if let Some(port) = port {
            // Closing the port (and the keeper's copy) deletes the device.
            self.close_port(port).await?;
        }
        Ok(record)
    }
}

/// Points the resolv.conf of an `ip netns` namespace at the gateways of the networks it is on
/// (removes it when it is on none). Other namespace references have no such file.
pub(super) fn write_resolv_conf(inner: &Inner, netns: &str) -> Option<String> {
    let Ok(tap::NetnsRef::Name(name)) = netns.parse() else {
        return None;
    };
    let servers: Vec<IpAddr> = inner
        .networks
        .values()
        .map(|n| &n.record)
        .filter(|n| n.endpoints.values().any(|e| e.netns == netns))
        .flat_map(NetworkRecord::dns_servers)
        .collect();
    match resolv::update(&name, &servers) {
        Ok(text) => text,
        Err(e) => {
            warn!(netns = %netns, error = %e, "cannot write resolv.conf");
            None
        }
    }
}
