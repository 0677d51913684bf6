//! Trunk ports: one interface carrying several networks, each under its network's VLAN ID,
//! plus at most one untagged.

use tracing::info;

use vswitch_core::switch::{PortConfig, PortMode};

use super::ports::{trunk_key, Creation};
use super::{Control, ControlError, Inner, Trunk};
use crate::model::{is_target, plan_trunk, TrunkCreate, TrunkRecord};

impl Control {
    /// Adds a trunk port carrying several networks.
    pub async fn add_trunk(&self, req: TrunkCreate) -> Result<TrunkRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let netns: tap::NetnsRef = req.netns.parse()?;
        let trunk = plan_trunk(&req, &netns, &inner.state())?;
        let trunk = self
            .attach_trunk(&mut inner, trunk, Creation::InNamespace)
            .await?;
        if let Err(e) = self.commit(&inner) {
            self.detach_trunk(&mut inner, &trunk.name).await?;
            return Err(e);
        }
        info!(trunk = %trunk.name, netns = %trunk.netns, "trunk added");
        Ok(trunk)
    }

    /// Removes a trunk, given by name or by namespace.
    pub async fn remove_trunk(&self, target: &str) -> Result<TrunkRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let name = inner
            .trunks
            .values()
            .find(|t| is_target(target, &t.record.name, &t.record.netns))
            .map(|t| t.record.name.clone())
            .ok_or_else(|| ControlError::UnknownTrunk(target.to_string()))?;
        let trunk = self.detach_trunk(&mut inner, &name).await?;
        self.commit(&inner)?;
        info!(trunk = %name, "trunk removed");
        Ok(trunk)
    }

    /// Every trunk.
    pub async fn trunks(&self) -> Vec<TrunkRecord> {
        let inner = self.inner.lock().await;
        inner.trunks.values().map(|t| t.record.clone()).collect()
    }

    /// Creates the trunk's TAP device and port; records it on success.
    pub(super) async fn attach_trunk(
        &self,
        inner: &mut Inner,
        mut trunk: TrunkRecord,
        creation: Creation,
    ) -> Result<TrunkRecord, ControlError> {
        let mut vlans = Vec::new();
        let mut mtu = 0;
        for name in &trunk.networks {
            let network = inner.network(name)?;
            let vlan = network
                .record
                .vlan
                .ok_or_else(|| ControlError::Invalid(format!("network {name} has no VLAN ID")))?;
            vlans.push((vlan, network.id));
            mtu = mtu.max(network.record.mtu);
        }
        let native = match &trunk.native {
            Some(name) => {
                let network = inner.network(name)?;
                mtu = mtu.max(network.record.mtu);
                Some(network.id)
            }
            None => None,
        };
        let config = tap::TapConfig {
            ifname: trunk.ifname.clone(),
            mac: trunk.mac.0,
            mtu,
            addresses: Vec::new(),
            gateways: Vec::new(),
            offload: true,
            queues: self.dataplane.workers(),
            // A trunk carries whatever its peer runs over the VLANs.
            disable_ipv6: false,
            ipv6_autoconf: false,
            handover: false,
        };
        let port_config = PortConfig {
            mode: PortMode::Trunk { vlans, native },
            mtu,
            // A trunk faces another switch: many stations legitimately send through it.
            security: None,
            rate_limit: None,
            reach: Default::default(),
        };
        let port = self
            .open_port(
                &trunk.netns,
                trunk.netns_inode,
                config,
                port_config,
                trunk_key(&trunk.name),
                creation,
            )
            .await?;
        trunk.netns_inode = port.ns.identity().ino;
        inner.trunks.insert(
            trunk.name.clone(),
            Trunk {
                record: trunk.clone(),
                port,
            },
        );
        Ok(trunk)
    }

    /// Removes a trunk's port (the kernel deletes its TAP) and its record.
    pub(super) async fn detach_trunk(
        &self,
        inner: &mut Inner,
        name: &str,
    ) -> Result<TrunkRecord, ControlError> {
        let trunk = inner
            .trunks
            .remove(name)
            .ok_or_else(|| ControlError::UnknownTrunk(name.to_string()))?;
        self.close_port(trunk.port).await?;
        Ok(trunk.record)
    }
}
