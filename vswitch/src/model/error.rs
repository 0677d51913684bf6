//! Why the model refused a request: each variant is one sentence naming the problem.

/// A request the model refuses; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A field of the request is malformed or out of range; the message names it.
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
    /// No free subnet left in the default address pools.
    #[error("no free subnet left in the default address pools ({0}): give --subnet, or add a pool (--default-address-pool)")]
    PoolsExhausted(String),
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
}

/// A refusal of a malformed field, given as the sentence that names it.
pub fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}
