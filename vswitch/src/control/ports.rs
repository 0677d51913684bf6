//! Container ports: a TAP device made in its namespace, made bare for a runtime to move
//! (Docker), or adopted from the keeper after a restart; handed to the data path; and closed.
//! Every port's queues are also kept by the TAP keeper (`tap::keeper`) under a key naming its
//! endpoint or trunk, so a daemon that stops, crashes or is upgraded leaves the containers'
//! interfaces up, and the next one adopts them (`Control::start`).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use tracing::{debug, warn};

use vswitch_core::switch::PortConfig;

use super::{Control, ControlError, LivePort};

/// How an endpoint's TAP device comes to be.
#[derive(Debug)]
pub(crate) enum Creation {
    /// Made and configured inside the namespace (connect, run).
    InNamespace,
    /// Made bare beside the daemon; the runtime moves and configures it (Docker's `Join`).
    Handover,
    /// The kept queues of the device a previous daemon made, if the keeper had them; made
    /// anew inside the namespace otherwise (restore).
    Adopt(Option<Vec<OwnedFd>>),
    /// The queues of a device a runtime's plugin made in a namespace the daemon cannot reach
    /// (rootless Podman), handed over on the handover socket; or kept for such an endpoint.
    Given(Vec<OwnedFd>),
}

impl Creation {
    /// Whether the port stands in the daemon's own namespace (the container's is not, or not
    /// yet, within reach).
    pub(super) fn stands_in(&self) -> bool {
        matches!(self, Creation::Handover | Creation::Given(_))
    }
}

/// The keeper's key for an endpoint's device.
pub(super) fn endpoint_key(network: &str, endpoint: &str) -> String {
    format!("endpoint {network}/{endpoint}")
}

/// The keeper's key for a trunk's device.
pub(super) fn trunk_key(trunk: &str) -> String {
    format!("trunk {trunk}")
}

/// Devices the keeper held when the daemon started, by key, until restore adopts them.
pub(super) type Kept = BTreeMap<String, Vec<OwnedFd>>;

impl Control {
    /// Makes (or adopts) the TAP device `config` describes for a container in `netns` and
    /// hands it to the data path as a port, kept under `key`. A non-zero `expected_inode`
    /// (from the saved record) must match: after a restart, `pid:PID` may name some other
    /// process's namespace.
    pub(super) async fn open_port(
        &self,
        netns: &str,
        expected_inode: u64,
        config: tap::TapConfig,
        port_config: PortConfig,
        key: String,
        creation: Creation,
    ) -> Result<LivePort, ControlError> {
        let reference: tap::NetnsRef = netns.parse()?;
        let started = std::time::Instant::now();
        let keeper = self.keeper.clone();
        // Entering a namespace and waiting on netlink blocks: keep it off the async workers.
        let (ns, device, tap_fd) = tokio::task::spawn_blocking(move || {
            let ns = if creation.stands_in() {
                // The container's namespace is out of reach, or not there yet (Docker makes it
                // after `Join`): the port stands in the daemon's until the runtime is done
                // (`settle_endpoint`), or for good.
                tap::Namespace::own()?
            } else {
                let ns = tap::Namespace::open(&reference)?;
                if expected_inode != 0 && ns.identity().ino != expected_inode {
                    return Err(ControlError::NamespaceChanged(ns.describe().to_string()));
                }
                refuse_host_namespace(&ns)?;
                ns
            };
            let device = make_device(&ns, &config, creation, keeper.as_deref(), &key)?;
            let tap_fd = device
                .duplicate_fd()
                .map_err(|source| tap::Error::CreateTap {
                    ifname: config.ifname.clone(),
                    netns: ns.describe().to_string(),
                    source,
                })?;
            Ok::<_, ControlError>((ns, device, (tap_fd, key)))
        })
        .await
        .expect("attach does not panic")?;
        let (tap_fd, key) = tap_fd;
        let attached = started.elapsed();
        let port = match self.dataplane.add_port(device, port_config).await {
            Ok(port) => port,
            Err(e) => {
                self.forget(&key);
                return Err(e.into());
            }
        };
        debug!(netns = %netns, ?attached, total = ?started.elapsed(), "port opened");
        Ok(LivePort {
            port,
            ns,
            tap_fd,
            key,
            publishers: Default::default(),
        })
    }

    /// Removes a port from the data path and lets the keeper go of its device: the kernel
    /// deletes it.
    pub(super) async fn close_port(&self, port: LivePort) -> Result<(), ControlError> {
        self.forget(&port.key);
        self.dataplane.remove_port(port.port).await?;
        Ok(())
    }

    /// Files a kept device under its endpoint's new name, living as long as its namespace now
    /// (a runtime has moved it).
    pub(super) fn rekey(&self, port: &mut LivePort, key: String) {
        if let Some(keeper) = &self.keeper {
            if let Err(e) = keeper.rename(&port.key, &key, &port.ns.life()) {
                warn!(key = %port.key, error = %e, "keeper did not take the new name");
            }
        }
        port.key = key;
    }

    /// Lets the keeper go of the device under `key`.
    pub(super) fn forget(&self, key: &str) {
        if let Some(keeper) = &self.keeper {
            if let Err(e) = keeper.remove(key) {
                warn!(key = %key, error = %e, "keeper did not let go of a device");
            }
        }
    }
}

/// The device of a port in `ns`: the given or kept one adopted, else one made as `config`
/// says; kept by `keeper` under `key` when made or given.
fn make_device(
    ns: &tap::Namespace,
    config: &tap::TapConfig,
    creation: Creation,
    keeper: Option<&tap::keeper::Keeper>,
    key: &str,
) -> Result<tap::Tap, ControlError> {
    match creation {
        Creation::Given(fds) => {
            let device = tap::Tap::adopt(fds)?;
            if let Some(keeper) = keeper {
                keep(keeper, key, &tap::keeper::Life::until_released(), &device);
            }
            return Ok(device);
        }
        Creation::Adopt(Some(fds)) => match tap::Tap::adopt(fds) {
            Ok(device) => return Ok(device),
            Err(e) => debug!(key = %key, error = %e, "kept device not adopted; making it anew"),
        },
        Creation::InNamespace | Creation::Handover | Creation::Adopt(None) => {}
    }
    let device = tap::attach(ns, config)?;
    if let Some(keeper) = keeper {
        keep(keeper, key, &ns.life(), &device);
    }
    Ok(device)
}

/// Gives the keeper a copy of `device`'s queues: without one, a daemon restart would delete
/// the device (a warning, not a failure: the port works, only not across restarts).
fn keep(keeper: &tap::keeper::Keeper, key: &str, life: &tap::keeper::Life, device: &tap::Tap) {
    use std::os::fd::AsFd;
    let kept = device
        .duplicate_fds()
        .map_err(tap::keeper::KeeperError::from)
        .and_then(|fds| {
            let fds: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            keeper.put(key, life, &fds)
        });
    if let Err(e) = kept {
        warn!(key = %key, error = %e, "device not kept: it will not outlive this daemon");
    }
}

/// The daemon's own network namespace (by PID: the keeper reads the reference too).
fn own_namespace() -> tap::NetnsRef {
    tap::NetnsRef::Pid(std::process::id())
}

/// Refuses the daemon's own network namespace and the initial one: a deployment's host (a TAP,
/// an address and a default route there would reroute the host), never a container.
fn refuse_host_namespace(ns: &tap::Namespace) -> Result<(), ControlError> {
    let own = own_namespace().identity();
    let initial = tap::NetnsRef::Pid(1).identity();
    let which = if own == Some(ns.identity()) {
        "the vswitch daemon's own network namespace"
    } else if initial == Some(ns.identity()) {
        "the initial network namespace (the host's)"
    } else {
        return Ok(());
    };
    Err(ControlError::HostNamespace {
        netns: ns.describe().to_string(),
        which,
    })
}
