//! Link, address and route configuration over rtnetlink, run on a thread that has entered the
//! target namespace (the netlink socket belongs to the namespace it was opened in).

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use tracing::debug;

use crate::{Error, TapConfig};

/// Transmit queue of created devices: tun's default of 500 frames is short enough to drop
/// bursts (it made pasta collapse at MTU 1500); 1000 is what Ethernet devices get.
const TX_QUEUE_LEN: u32 = 1000;

/// Runs `work` with an rtnetlink handle of the current thread's namespace, on a runtime of its
/// own (this thread has entered another namespace; no shared runtime may run here).
fn with_netlink<T, F>(netns: &str, work: impl FnOnce(Handle) -> F) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let netlink_err = |source| Error::Netlink {
        netns: netns.to_string(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(netlink_err)?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(netlink_err)?;
        let connection = tokio::spawn(connection);
        let result = work(handle).await;
        connection.abort();
        result
    })
}

/// Creates the TAP device (all its queues) and configures it. Must run inside the target
/// namespace: extra queues are attached by name, which is looked up in the current namespace.
pub(crate) fn create_and_configure(
    netns: &str,
    config: &TapConfig,
) -> Result<Vec<tun_rs::SyncDevice>, Error> {
    with_netlink(netns, |handle| async move {
        configure(&handle, netns, config).await
    })
}

async fn configure(
    handle: &Handle,
    netns: &str,
    config: &TapConfig,
) -> Result<Vec<tun_rs::SyncDevice>, Error> {
    let ifname = &config.ifname;
    let step_err = |step| step_error(step, ifname, netns);
    if link_index(handle, ifname)
        .await
        .map_err(step_err("look up the link"))?
        .is_some()
    {
        return Err(Error::InterfaceExists {
            ifname: ifname.clone(),
            netns: netns.to_string(),
        });
    }
    let build = |offload| {
        tun_rs::DeviceBuilder::new()
            .name(ifname.as_str())
            .layer(tun_rs::Layer::L2)
            .offload(offload)
            .multi_queue(config.queues > 1)
            // Up only once configured (below): MAC, MTU, IPv6 policy first.
            .enable(false)
            .build_sync()
    };
    // Offloads are negotiated: a kernel that refuses TUNSETOFFLOAD still gets a working port.
    let device = match build(config.offload) {
        Ok(device) => Ok(device),
        Err(e) if config.offload => {
            debug!(ifname = %ifname, netns, error = %e, "offloads refused, retrying without");
            build(false)
        }
        Err(e) => Err(e),
    }
    .map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied
            && std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .is_err()
        {
            return Error::TunClosed { source };
        }
        Error::CreateTap {
            ifname: ifname.clone(),
            netns: netns.to_string(),
            source,
        }
    })?;
    let mut queues = vec![device];
    while queues.len() < config.queues {
        let queue = queues[0].try_clone().map_err(|source| Error::CreateTap {
            ifname: ifname.clone(),
            netns: netns.to_string(),
            source,
        })?;
        queues.push(queue);
    }
    let index = link_index(handle, ifname)
        .await
        .map_err(step_err("look up the link"))?
        .ok_or_else(|| Error::CreateTap {
            ifname: ifname.clone(),
            netns: netns.to_string(),
            source: std::io::Error::other("device vanished right after creation"),
        })?;
    if config.handover {
        set_link(handle, index, config, false)
            .await
            .map_err(step_err("set MAC and MTU"))?;
        return Ok(queues);
    }
    configure_link(handle, netns, index, config).await?;
    Ok(queues)
}

/// Configures the existing link `index` as `config` says: IPv6 sysctls, MAC, MTU, queue
/// length, up, addresses and default routes.
async fn configure_link(
    handle: &Handle,
    netns: &str,
    index: u32,
    config: &TapConfig,
) -> Result<(), Error> {
    let ifname = &config.ifname;
    let step_err = |step| step_error(step, ifname, netns);
    // Per-namespace sysctls, resolved in this thread's namespace; absent without IPv6.
    let mut knobs = Vec::new();
    if config.disable_ipv6 {
        knobs.push(("disable_ipv6", "1"));
    }
    if !config.ipv6_autoconf {
        knobs.extend([("autoconf", "0"), ("accept_ra", "0")]);
    }
    for (knob, value) in knobs {
        let knob = format!("/proc/sys/net/ipv6/conf/{ifname}/{knob}");
        if let Err(e) = std::fs::write(&knob, value) {
            debug!(%knob, error = %e, "cannot set IPv6 sysctl");
        }
    }
    set_link(handle, index, config, true)
        .await
        .map_err(step_err("set MAC, MTU and up"))?;
    for address in &config.addresses {
        let mut request = handle
            .address()
            .add(index, address.addr(), address.prefix_len());
        // The switch guarantees uniqueness (IPAM), so skip IPv6 duplicate address detection:
        // the address is usable at once instead of after a second of "tentative".
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        request.execute().await.map_err(step_err("add address"))?;
    }
    for gateway in &config.gateways {
        let route = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .output_interface(index)
                .gateway(*gw)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .output_interface(index)
                .gateway(*gw)
                .build(),
        };
        match handle.route().add(route).execute().await {
            Ok(()) => {}
            // The container is on another network that already gives it a default route:
            // like Docker, keep the first one.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {
                debug!(%ifname, %gateway, "default route already present");
            }
            Err(e) => return Err(step_err("add default route")(e)),
        }
    }
    Ok(())
}

/// Configures the existing interface `config.ifname` (made bare, then handed over). Must run
/// inside the target namespace.
pub(crate) fn configure_existing(netns: &str, config: &TapConfig) -> Result<(), Error> {
    with_netlink(netns, |handle| async move {
        let index = link_index(&handle, &config.ifname)
            .await
            .map_err(step_error("look up the link", &config.ifname, netns))?
            .ok_or_else(|| Error::NoInterface {
                ifname: config.ifname.clone(),
                netns: netns.to_string(),
            })?;
        configure_link(&handle, netns, index, config).await
    })
}

/// Sets the link's MAC, MTU and queue length, and brings it up if asked.
async fn set_link(
    handle: &Handle,
    index: u32,
    config: &TapConfig,
    up: bool,
) -> Result<(), rtnetlink::Error> {
    let link = LinkUnspec::new_with_index(index)
        .address(config.mac.to_vec())
        .mtu(config.mtu)
        // Over netlink, not tun's ioctl: the kernel refuses that ioctl to root of a user
        // namespace (a rootless daemon), and allows this.
        .append_extra_attribute(LinkAttribute::TxQueueLen(TX_QUEUE_LEN));
    let link = if up { link.up() } else { link };
    handle.link().set(link.build()).execute().await
}

/// What makes a failed rtnetlink call of configuration `step` of `ifname` in `netns` an error.
fn step_error<'a>(
    step: &'static str,
    ifname: &'a str,
    netns: &'a str,
) -> impl FnOnce(rtnetlink::Error) -> Error + 'a {
    move |source| Error::Configure {
        step,
        ifname: ifname.to_string(),
        netns: netns.to_string(),
        source: Box::new(source),
    }
}

/// Brings `lo` up. Must run inside the target namespace.
pub(crate) fn loopback_up(netns: &str) -> Result<(), Error> {
    with_netlink(netns, |handle| async move {
        handle
            .link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(step_error("bring up", "lo", netns))
    })
}

async fn link_index(handle: &Handle, ifname: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(ifname.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}
