//! Overlay networks: a tunnel port of the switch for each other host of the network, on the
//! daemon's one VXLAN socket, so frames for stations behind a host go to that host alone and
//! broadcasts to each (head-end replication); what comes from a host is learned on its port.

use std::net::SocketAddr;
use std::sync::Arc;

use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::switch::{PortConfig, PortMode, Reach};

use super::{Control, ControlError};
use crate::model::{NetworkRecord, OverlayRecord};
use crate::overlay::Tunnel;

/// The port of one other host of an overlay network.
pub(super) struct LiveTunnel {
    /// The host's underlay address.
    pub peer: SocketAddr,
    pub port: PortId,
}

impl Control {
    /// Adds a tunnel port to each of an overlay network's peers (none for a network of one
    /// host); if one cannot be added, none are.
    pub(super) async fn start_tunnels(
        &self,
        record: &NetworkRecord,
        id: NetworkId,
    ) -> Result<Vec<LiveTunnel>, ControlError> {
        let Some(overlay) = &record.overlay else {
            return Ok(Vec::new());
        };
        let mut tunnels = Vec::new();
        for peer in &overlay.peers {
            match self.add_tunnel(record, overlay, id, *peer).await {
                Ok(port) => tunnels.push(LiveTunnel { peer: *peer, port }),
                Err(e) => {
                    self.stop_tunnels(overlay, tunnels).await?;
                    return Err(e);
                }
            }
        }
        Ok(tunnels)
    }

    async fn add_tunnel(
        &self,
        record: &NetworkRecord,
        overlay: &OverlayRecord,
        id: NetworkId,
        peer: SocketAddr,
    ) -> Result<PortId, ControlError> {
        let underlay = self.dataplane.underlay().await?;
        let tunnel = Tunnel::new(underlay.clone(), peer, overlay.vni);
        let port = self
            .dataplane
            .add_tunnel_port(
                Arc::new(tunnel),
                PortConfig {
                    mode: PortMode::Access(id),
                    mtu: record.mtu,
                    // Another host's stations: what they may send as is that host's to check.
                    security: None,
                    rate_limit: None,
                    reach: Reach::Tunnel,
                },
            )
            .await?;
        underlay.add_route(peer.ip(), overlay.vni, port);
        Ok(port)
    }

    /// Removes an overlay network's tunnel ports.
    pub(super) async fn stop_tunnels(
        &self,
        overlay: &OverlayRecord,
        tunnels: Vec<LiveTunnel>,
    ) -> Result<(), ControlError> {
        for tunnel in tunnels {
            if let Some(underlay) = self.dataplane.bound_underlay() {
                underlay.remove_route(tunnel.peer.ip(), overlay.vni);
            }
            self.dataplane.remove_port(tunnel.port).await?;
        }
        Ok(())
    }
}
