//! One error variant per setup step, each naming the namespace and interface involved.

use std::io;

/// Why a namespace or TAP device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kept device's fd could not be taken back (gone, or not a TAP device).
    #[error("cannot adopt a kept TAP device ({source})")]
    Adopt { source: io::Error },
    /// The namespace reference is not of a form we accept.
    #[error("invalid network namespace {0:?}: give an `ip netns` name, a path such as /proc/PID/ns/net, or pid:PID")]
    InvalidNetns(String),
    /// The namespace file could not be opened.
    #[error("network namespace {netns} not found ({source})")]
    OpenNamespace { netns: String, source: io::Error },
    /// The file exists but is not a network namespace.
    #[error("{netns} is not a network namespace")]
    NotNetns { netns: String },
    /// `setns` failed.
    #[error("cannot enter network namespace {netns} ({source})")]
    EnterNamespace { netns: String, source: io::Error },
    /// A thread to work inside the namespace could not be started.
    #[error("cannot start a thread for network namespace {netns} ({source})")]
    Thread { netns: String, source: io::Error },
    /// The interface to configure is not in the namespace.
    #[error("no interface {ifname} in network namespace {netns}")]
    NoInterface { ifname: String, netns: String },
    /// The interface name is already taken inside the namespace.
    #[error("interface {ifname} already exists in network namespace {netns}")]
    InterfaceExists { ifname: String, netns: String },
    /// TUNSETIFF or the non-blocking switch failed.
    #[error("cannot create TAP device {ifname} in network namespace {netns} ({source})")]
    CreateTap {
        ifname: String,
        netns: String,
        source: io::Error,
    },
    /// /dev/net/tun is closed to this user (an unprivileged daemon).
    #[error("cannot open /dev/net/tun ({source}): an unprivileged daemon needs it open to every user, mode 0666 as distributions ship it; as root: chmod 0666 /dev/net/tun")]
    TunClosed { source: io::Error },
    /// The namespace belongs to a user namespace the daemon has no rights in.
    #[error("cannot enter network namespace {netns} ({source}): an unprivileged daemon can enter only namespaces made inside its own user namespace; start the container with `vswitch run`, or make its namespaces in the daemon's (nsenter --user --preserve-credentials --target DAEMON_PID)")]
    ForeignNamespace { netns: String, source: io::Error },
    /// The rtnetlink socket could not be opened.
    #[error("cannot open rtnetlink in network namespace {netns} ({source})")]
    Netlink { netns: String, source: io::Error },
    /// A link, address or route request failed.
    #[error("cannot {step} on {ifname} in network namespace {netns} ({source})")]
    Configure {
        step: &'static str,
        ifname: String,
        netns: String,
        source: Box<rtnetlink::Error>,
    },
    /// Creating or deleting a named namespace failed.
    #[error("cannot {step} network namespace {name} ({source})")]
    NamedNamespace {
        step: &'static str,
        name: String,
        source: Box<rtnetlink::Error>,
    },
}
