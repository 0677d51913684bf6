//! Why the control plane refused or failed a request. Each variant is one sentence naming the
//! problem, and maps to an HTTP status so API clients (and `curl`) can tell input errors from
//! failures.

use axum::http::StatusCode;

/// A refused or failed control request. Refusals leave the running switch as it was.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Bad request field.
    #[error("{0}")]
    Invalid(String),
    /// The network name is taken.
    #[error("network {0} already exists")]
    NetworkExists(String),
    /// No network by that name.
    #[error("network {0} not found")]
    UnknownNetwork(String),
    /// The subnet overlaps one of another network.
    #[error("subnet {subnet} overlaps subnet {other} of network {network}")]
    SubnetOverlap {
        subnet: String,
        other: String,
        network: String,
    },
    /// The VLAN ID is taken.
    #[error("VLAN {vlan} is already used by network {network}")]
    VlanInUse { vlan: u16, network: String },
    /// The network still has endpoints.
    #[error("network {network} has active endpoints ({endpoints}); disconnect them first")]
    NetworkInUse { network: String, endpoints: String },
    /// The requested address is taken.
    #[error("address {ip} is already in use by endpoint {endpoint} on network {network}")]
    AddressInUse {
        ip: String,
        endpoint: String,
        network: String,
    },
    /// No free address left.
    #[error("no free address left in subnet {0}")]
    SubnetFull(String),
    /// The endpoint name is taken on this network.
    #[error("endpoint {endpoint} already exists on network {network}")]
    EndpointExists { endpoint: String, network: String },
    /// The namespace is already attached to this network.
    #[error("network namespace {netns} is already connected to network {network} as {endpoint}")]
    AlreadyConnected {
        netns: String,
        network: String,
        endpoint: String,
    },
    /// No endpoint by that name or namespace.
    #[error("no endpoint or namespace {target} on network {network}")]
    UnknownEndpoint { target: String, network: String },
    /// No trunk by that name or namespace.
    #[error("no trunk or namespace {0}")]
    UnknownTrunk(String),
    /// No policy rule by that name.
    #[error("no rule {rule:?} on network {network}")]
    UnknownRule { rule: String, network: String },
    /// Namespace or TAP setup failed.
    #[error(transparent)]
    Tap(#[from] tap::Error),
    /// The state directory could not be written.
    #[error("cannot save state: {0}")]
    State(String),
    /// The data path thread is gone.
    #[error(transparent)]
    DataPlane(#[from] crate::dataplane::DataPlaneGone),
    /// The daemon could not set something up for itself (a socket, a file).
    #[error("{0}")]
    Internal(String),
    /// The switch core refused a change (a bug: the control plane checks first).
    #[error(transparent)]
    Switch(#[from] vswitch_core::switch::ConfigError),
}

impl ControlError {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        use ControlError::*;
        match self {
            Invalid(_) => StatusCode::BAD_REQUEST,
            UnknownNetwork(_) | UnknownEndpoint { .. } | UnknownTrunk(_) | UnknownRule { .. } => {
                StatusCode::NOT_FOUND
            }
            NetworkExists(_)
            | SubnetOverlap { .. }
            | VlanInUse { .. }
            | NetworkInUse { .. }
            | AddressInUse { .. }
            | SubnetFull(_)
            | EndpointExists { .. }
            | AlreadyConnected { .. } => StatusCode::CONFLICT,
            Tap(e) => match e {
                tap::Error::InvalidNetns(_) | tap::Error::NotNetns { .. } => {
                    StatusCode::BAD_REQUEST
                }
                tap::Error::OpenNamespace { .. } => StatusCode::NOT_FOUND,
                tap::Error::InterfaceExists { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            State(_) | DataPlane(_) | Switch(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Shorthand for an `Invalid` error.
pub fn invalid(message: impl Into<String>) -> ControlError {
    ControlError::Invalid(message.into())
}
