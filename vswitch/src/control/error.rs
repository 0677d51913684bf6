//! Why the control plane refused or failed a request. Each variant is one sentence naming the
//! problem; `kind` sorts them into refused input, missing things, conflicts and failures, which
//! the API turns into HTTP statuses.

use crate::capture::filter::FilterError;
use crate::datapath::DataPathError;
use crate::model::store::StateError;
use crate::model::ModelError;

/// A refused or failed control request. Refusals leave the running switch as it was.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The model refused the request (a malformed field, a taken name or address, ...).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A request field that is not the model's: the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The network still has endpoints or trunks.
    #[error("network {network} has active endpoints ({endpoints}); disconnect them first")]
    NetworkInUse { network: String, endpoints: String },
    /// No trunk by that name or namespace.
    #[error("no trunk or namespace {0}")]
    UnknownTrunk(String),
    /// No policy rule by that name.
    #[error("no rule {rule:?} on network {network}")]
    UnknownRule { rule: String, network: String },
    /// No mirror by that name.
    #[error("no mirror {0}")]
    UnknownMirror(String),
    /// The mirror name is taken.
    #[error("mirror {0} already exists")]
    MirrorExists(String),
    /// No running capture with that id.
    #[error("no capture {0}")]
    UnknownCapture(u64),
    /// No endpoint by that name on any network (captures and mirrors look on all).
    #[error("no endpoint {0}")]
    UnknownPort(String),
    /// A saved endpoint's namespace reference now names another namespace (`pid:PID` reused).
    #[error("{0} is no longer the namespace the endpoint was connected to")]
    NamespaceChanged(String),
    /// The namespace is the daemon's own or the initial one: the host, not a container.
    #[error("{netns} is {which}: connect containers, not the host")]
    HostNamespace { netns: String, which: &'static str },
    /// The policy does not compile.
    #[error(transparent)]
    Policy(#[from] policy::RuleError),
    /// As many captures run as may.
    #[error(transparent)]
    TooManyCaptures(#[from] crate::datapath::fanout::TooManyCaptures),
    /// The capture filter does not compile (or libpcap is missing).
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Creating or configuring a TAP device or namespace failed.
    #[error(transparent)]
    Tap(#[from] tap::Error),
    /// The state could not be saved or loaded.
    #[error(transparent)]
    Store(#[from] StateError),
    /// The store shared with other hosts (etcd) failed or could not be reached.
    #[error(transparent)]
    SharedStore(#[from] crate::store::etcd::EtcdError),
    /// The data path failed the change.
    #[error(transparent)]
    DataPath(#[from] DataPathError),
    /// The switch refused the change (a bug: the control plane checks first).
    #[error(transparent)]
    Switch(#[from] vswitch_core::switch::ConfigError),
    /// The data path threads could not start.
    #[error("cannot start the data path: {0}")]
    DataPathStart(std::io::Error),
    /// A system call of the control plane failed.
    #[error("cannot {what}: {error}")]
    Io {
        what: &'static str,
        error: std::io::Error,
    },
}

/// What kind of failure an error is, for API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed: asking again unchanged fails again.
    Invalid,
    /// Something it names does not exist.
    NotFound,
    /// It conflicts with what exists (a taken name, address or VLAN; a network in use).
    Conflict,
    /// The daemon failed to carry out a valid request.
    Failed,
}

impl ControlError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use ControlError::*;
        match self {
            Model(e) => match e {
                ModelError::Invalid(_) => ErrorKind::Invalid,
                ModelError::UnknownNetwork(_) | ModelError::UnknownEndpoint { .. } => {
                    ErrorKind::NotFound
                }
                ModelError::NetworkExists(_)
                | ModelError::SubnetOverlap { .. }
                | ModelError::VlanInUse { .. }
                | ModelError::AddressInUse { .. }
                | ModelError::SubnetFull(_)
                | ModelError::PoolsExhausted(_)
                | ModelError::EndpointExists { .. }
                | ModelError::AlreadyConnected { .. } => ErrorKind::Conflict,
            },
            Invalid(_) | Policy(_) | HostNamespace { .. } => ErrorKind::Invalid,
            Filter(FilterError::Invalid { .. }) => ErrorKind::Invalid,
            Filter(FilterError::NoLibpcap { .. }) => ErrorKind::Failed,
            UnknownTrunk(_)
            | UnknownRule { .. }
            | UnknownMirror(_)
            | UnknownCapture(_)
            | UnknownPort(_) => ErrorKind::NotFound,
            NetworkInUse { .. } | MirrorExists(_) | NamespaceChanged(_) | TooManyCaptures(_) => {
                ErrorKind::Conflict
            }
            Tap(e) => match e {
                tap::Error::InvalidNetns(_) | tap::Error::NotNetns { .. } => ErrorKind::Invalid,
                tap::Error::OpenNamespace { .. } => ErrorKind::NotFound,
                tap::Error::InterfaceExists { .. } => ErrorKind::Conflict,
                _ => ErrorKind::Failed,
            },
            Store(_) | SharedStore(_) | DataPath(_) | Switch(_) | DataPathStart(_) | Io { .. } => {
                ErrorKind::Failed
            }
        }
    }
}

/// Shorthand for an `Invalid` error.
pub fn invalid(message: impl Into<String>) -> ControlError {
    ControlError::Invalid(message.into())
}
