//! TAP devices inside a container's network namespace. `attach` creates the device in the
//! namespace, gives it its MAC, MTU, addresses and default routes (over rtnetlink), brings it up
//! and hands back the open device; dropping the `Tap` closes the fd and the kernel deletes the
//! device. This crate knows nothing of switching.

mod error;
pub mod fdpass;
pub mod keeper;
mod netlink;
mod netns;
mod queue;

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use ipnet::IpNet;

pub use error::Error;
pub use netns::{create_named, delete_named, in_user_namespace, Namespace, NetnsRef, NsIdentity};
pub use queue::Queue;

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
    /// Create the device only (MAC, MTU, offloads, queues), down and without addresses,
    /// routes or sysctls: a runtime (Docker) moves it into the container and configures it.
    pub handover: bool,
}

/// An open TAP device living in some namespace: one fd per queue. Dropping it (every queue,
/// and every duplicate handed to a keeper) deletes the device.
pub struct Tap {
    queues: Vec<Queue>,
    vnet_hdr: bool,
    ifname: String,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("ifname", &self.ifname)
            .field("queues", &self.queues.len())
            .field("vnet_hdr", &self.vnet_hdr)
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Adopts the queues of a device made before (kept across a daemon restart): asks the
    /// device its name and whether its frames carry virtio headers.
    pub fn adopt(fds: Vec<OwnedFd>) -> Result<Tap, Error> {
        let adopt_err = |source| Error::Adopt { source };
        let first = fds
            .first()
            .ok_or_else(|| adopt_err(std::io::Error::other("no queues")))?;
        let (ifname, flags) = interface_of(first.as_fd()).map_err(adopt_err)?;
        let queues = fds
            .into_iter()
            .map(Queue::from_fd)
            .collect::<Result<Vec<_>, _>>()
            .map_err(adopt_err)?;
        Ok(Tap {
            queues,
            vnet_hdr: flags & libc::IFF_VNET_HDR as libc::c_short != 0,
            ifname,
        })
    }

    /// A duplicate of every queue's fd: held elsewhere (a keeper), they keep the device and
    /// its queues attached when this process ends.
    pub fn duplicate_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.queues.iter().map(Queue::duplicate).collect()
    }

    /// A duplicate of the first queue's fd: asks the device its name (`current_name`), and
    /// keeps the device alive while held.
    pub fn duplicate_fd(&self) -> std::io::Result<OwnedFd> {
        self.queues[0].duplicate()
    }

    /// Every queue, in non-blocking mode, for the data path's workers; the kernel spreads the
    /// container's flows over them, each flow on one queue.
    pub fn into_queues(self) -> Vec<Queue> {
        self.queues
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Whether every frame read or written carries a virtio_net_hdr (offloads on).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Interface name inside its namespace.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

/// TUNGETIFF: `_IOR('T', 210, unsigned int)`, answering with the device's `ifreq`.
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;

/// The interface's name now, asked of an fd of the device (TUNGETIFF): a runtime that moved it
/// may have renamed it (Docker's `eth0`). Fails once the device is gone.
pub fn current_name(fd: BorrowedFd<'_>) -> std::io::Result<String> {
    Ok(interface_of(fd)?.0)
}

/// The device's name and flags (TUNGETIFF). Fails (EBADFD) once the device is gone.
fn interface_of(fd: BorrowedFd<'_>) -> std::io::Result<(String, libc::c_short)> {
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes at most one ifreq into the one we own, on an fd we borrow.
    let done = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut request) };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let name: Vec<u8> = request
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    Ok((String::from_utf8_lossy(&name).into_owned(), flags))
}

/// Creates and configures a TAP device inside `ns` and returns it, non-blocking.
pub fn attach(ns: &Namespace, config: &TapConfig) -> Result<Tap, Error> {
    let devices = ns.run(|| netlink::create_and_configure(ns.describe(), config))??;
    let vnet_hdr = devices[0].tcp_gso();
    let queues = devices
        .into_iter()
        .map(|device| {
            // SAFETY: into_raw_fd gives up the device's open fd, which we now own alone.
            Queue::from_fd(unsafe { OwnedFd::from_raw_fd(device.into_raw_fd()) })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::CreateTap {
            ifname: config.ifname.clone(),
            netns: ns.describe().to_string(),
            source,
        })?;
    Ok(Tap {
        queues,
        vnet_hdr,
        ifname: config.ifname.clone(),
    })
}

/// Configures a TAP device made bare in `ns` (`TapConfig::handover`) as `config` says, once its
/// addresses are known: for a plugin that made it and handed its fds over first.
pub fn configure(ns: &Namespace, config: &TapConfig) -> Result<(), Error> {
    ns.run(|| netlink::configure_existing(ns.describe(), config))?
}

/// Brings the loopback interface of `ns` up, as a container runtime does.
pub fn loopback_up(ns: &Namespace) -> Result<(), Error> {
    ns.run(|| netlink::loopback_up(ns.describe()))?
}
