//! TAP devices inside a container's network namespace. `attach` creates the device in the
//! namespace, gives it its MAC, MTU, addresses and default routes (over rtnetlink), brings it up
//! and hands back the open device; dropping the `Tap` closes the fd and the kernel deletes the
//! device. This crate knows nothing of switching.

mod error;
mod netlink;
mod netns;

use std::net::IpAddr;

use ipnet::IpNet;

pub use error::Error;
pub use netns::{create_named, delete_named, in_user_namespace, Namespace, NetnsRef, NsIdentity};

/// What the container-side interface should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name inside the namespace, e.g. `eth0`.
    pub ifname: String,
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// The interface's MTU.
    pub mtu: u32,
    /// Addresses with their prefix length (one per address family at most, usually).
    pub addresses: Vec<IpNet>,
    /// Next hops of the default routes (IPv4 and/or IPv6).
    pub gateways: Vec<IpAddr>,
    /// Ask for IFF_VNET_HDR with checksum and segmentation offloads (TSO4/6, USO where the
    /// kernel has it), so 64 KB TCP segments cross as one frame. Falls back to none if refused.
    pub offload: bool,
    /// Queues (IFF_MULTI_QUEUE when more than one): one per data path worker.
    pub queues: usize,
    /// Turn IPv6 off on the interface (as Docker does on IPv4-only networks): no link-local
    /// address, and none of the router solicitations and MLD reports every new interface
    /// multicasts, which a switch must flood to every port.
    pub disable_ipv6: bool,
    /// Let the kernel configure IPv6 from router advertisements (SLAAC address, default
    /// route). Off for interfaces whose addresses and routes are given here.
    pub ipv6_autoconf: bool,
}

/// An open TAP device living in some namespace: one fd per queue. Dropping it (every queue)
/// deletes the device.
pub struct Tap {
    queues: Vec<tun_rs::SyncDevice>,
    ifname: String,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("ifname", &self.ifname)
            .field("queues", &self.queues.len())
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// The first queue, in non-blocking mode.
    pub fn device(&self) -> &tun_rs::SyncDevice {
        &self.queues[0]
    }

    /// Every queue, in non-blocking mode, for the data path's workers; the kernel spreads the
    /// container's flows over them, each flow on one queue.
    pub fn into_queues(self) -> Vec<tun_rs::SyncDevice> {
        self.queues
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Whether every frame read or written carries a virtio_net_hdr (offloads on).
    pub fn vnet_hdr(&self) -> bool {
        self.queues[0].tcp_gso()
    }

    /// Interface name inside its namespace.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

/// Creates and configures a TAP device inside `ns` and returns it, non-blocking.
pub fn attach(ns: &Namespace, config: &TapConfig) -> Result<Tap, Error> {
    let queues = ns.run(|| netlink::create_and_configure(ns.describe(), config))??;
    for queue in &queues {
        queue
            .set_nonblocking(true)
            .map_err(|source| Error::CreateTap {
                ifname: config.ifname.clone(),
                netns: ns.describe().to_string(),
                source,
            })?;
    }
    Ok(Tap {
        queues,
        ifname: config.ifname.clone(),
    })
}

/// Brings the loopback interface of `ns` up, as a container runtime does.
pub fn loopback_up(ns: &Namespace) -> Result<(), Error> {
    ns.run(|| netlink::loopback_up(ns.describe()))?
}
