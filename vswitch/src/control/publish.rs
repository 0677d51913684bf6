//! Published ports: a listener in the daemon's namespace for each of an endpoint's mappings,
//! handing every TCP client, and every UDP datagram, to the network's gateway, which connects
//! or sends to the container as that client (so the container sees the client's own address
//! and port). The listeners live as long as the endpoint's port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tracing::debug;

use super::ControlError;
use crate::gateway::{egress, tcp_egress};
use crate::model::publish::PortProtocol;
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

/// Where the gateway takes what published ports receive.
pub(super) struct Handoff {
    /// TCP clients.
    pub tcp: mpsc::Sender<tcp_egress::Event>,
    /// UDP datagrams.
    pub udp: mpsc::Sender<egress::Answer>,
}

/// Listens on every host port `endpoint` publishes; nothing is left listening if one fails.
pub(super) async fn listen(
    endpoint: &EndpointRecord,
    handoff: &Handoff,
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
        let refused = |e: std::io::Error| {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => "the host port is in use".to_string(),
                std::io::ErrorKind::PermissionDenied => format!(
                    "listening on port {} needs a privilege this daemon lacks (unprivileged, publish ports from 1024 up, or lower the sysctl net.ipv4.ip_unprivileged_port_start)",
                    mapping.host_port
                ),
                _ => e.to_string(),
            };
            ControlError::Invalid(format!("cannot publish {mapping}: {why}"))
        };
        let container = SocketAddr::new(container_ip, mapping.container_port);
        let (host, mac) = ((host_ip, mapping.host_port), endpoint.mac.0);
        let task = match mapping.protocol {
            PortProtocol::Tcp => {
                let listener = TcpListener::bind(host).await.map_err(refused)?;
                tokio::spawn(accept_clients(
                    listener,
                    container,
                    mac,
                    handoff.tcp.clone(),
                ))
            }
            PortProtocol::Udp => {
                let socket = UdpSocket::bind(host).await.map_err(refused)?;
                let forward = receive_datagrams(socket, container, mac, handoff.udp.clone());
                tokio::spawn(forward)
            }
        };
        publishers.0.push(task);
    }
    Ok(publishers)
}

/// Hands each client of a TCP port to the gateway.
async fn accept_clients(
    listener: TcpListener,
    container: SocketAddr,
    container_mac: [u8; 6],
    inbound: mpsc::Sender<tcp_egress::Event>,
) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "published port: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let event = tcp_egress::Event::Inbound {
            stream,
            client,
            container,
            container_mac,
        };
        if inbound.send(event).await.is_err() {
            return;
        }
    }
}

/// Hands each datagram of a UDP port to the gateway; the gateway answers through the same
/// socket.
async fn receive_datagrams(
    socket: UdpSocket,
    container: SocketAddr,
    container_mac: [u8; 6],
    datagrams: mpsc::Sender<egress::Answer>,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!(error = %e, "published port: receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let data = buf[..len].to_vec();
        let answer =
            egress::Answer::inbound(socket.clone(), client, container, container_mac, data);
        if datagrams.send(answer).await.is_err() {
            return;
        }
    }
}
