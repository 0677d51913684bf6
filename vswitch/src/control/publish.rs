//! Published ports: a listener in the daemon's namespace for each of an endpoint's mappings,
//! handing every client to the network's gateway, which connects to the container as that
//! client (so the container sees the client's own address and port). The listeners live as
//! long as the endpoint's port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::debug;

use super::ControlError;
use crate::gateway::tcp_egress::Event;
use crate::model::EndpointRecord;

/// An endpoint's listeners; dropping them closes them.
#[derive(Default)]
pub(super) struct Publishers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Publishers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Listens on every host port `endpoint` publishes; nothing is left listening if one fails.
pub(super) async fn listen(
    endpoint: &EndpointRecord,
    inbound: &mpsc::Sender<Event>,
) -> Result<Publishers, ControlError> {
    let mut publishers = Publishers::default();
    for mapping in &endpoint.published {
        let host_ip = mapping.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let container_ip = endpoint
            .addresses
            .iter()
            .map(|a| a.addr())
            .find(|ip| ip.is_ipv4() == host_ip.is_ipv4())
            .ok_or_else(|| {
                ControlError::Invalid(format!(
                    "cannot publish {mapping}: endpoint {} has no {} address to forward to (a --dhcp endpoint has none the switch knows)",
                    endpoint.name,
                    if host_ip.is_ipv4() { "IPv4" } else { "IPv6" }
                ))
            })?;
        let listener = TcpListener::bind((host_ip, mapping.host_port))
            .await
            .map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::AddrInUse => "the host port is in use".to_string(),
                    std::io::ErrorKind::PermissionDenied => format!(
                        "listening on port {} needs a privilege this daemon lacks (unprivileged, publish ports from 1024 up, or lower the sysctl net.ipv4.ip_unprivileged_port_start)",
                        mapping.host_port
                    ),
                    _ => e.to_string(),
                };
                ControlError::Invalid(format!("cannot publish {mapping}: {why}"))
            })?;
        let container = SocketAddr::new(container_ip, mapping.container_port);
        let (inbound, mac) = (inbound.clone(), endpoint.mac.0);
        publishers.0.push(tokio::spawn(async move {
            loop {
                let (stream, client) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        debug!(error = %e, "published port: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let event = Event::Inbound {
                    stream,
                    client,
                    container,
                    container_mac: mac,
                };
                if inbound.send(event).await.is_err() {
                    return;
                }
            }
        }));
    }
    Ok(publishers)
}
