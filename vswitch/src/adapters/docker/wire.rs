//! The bodies of libnetwork's remote driver protocol (moby's `libnetwork/docs/remote.md`), as
//! Docker 20.10 sends them: Go field names, every field optional.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Answer to `/Plugin.Activate`.
#[derive(Debug, Serialize)]
pub struct Activate {
    #[serde(rename = "Implements")]
    pub implements: Vec<&'static str>,
}

/// Answer to `/NetworkDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
pub struct Capabilities {
    #[serde(rename = "Scope")]
    pub scope: &'static str,
    #[serde(rename = "ConnectivityScope")]
    pub connectivity_scope: &'static str,
}

/// One pool of a network, from Docker's IPAM.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpamData {
    /// The subnet, e.g. `10.99.0.0/24`.
    #[serde(rename = "Pool")]
    pub pool: String,
    /// The gateway with the prefix length, e.g. `10.99.0.1/24`.
    #[serde(rename = "Gateway")]
    pub gateway: String,
}

/// `/NetworkDriver.CreateNetwork`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// `com.docker.network.generic` holds the `-o KEY=VALUE` options.
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Vec<IpamData>,
}

/// `/NetworkDriver.DeleteNetwork`, `/NetworkDriver.Leave`, `/NetworkDriver.DeleteEndpoint`,
/// `/NetworkDriver.EndpointOperInfo`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ids {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// An endpoint's interface: addresses with prefix length, and MAC.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    #[serde(rename = "Address", skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    #[serde(rename = "MacAddress", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `/NetworkDriver.CreateEndpoint`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Interface")]
    pub interface: Option<Interface>,
}

/// Answer to `/NetworkDriver.CreateEndpoint`: only what Docker did not choose itself.
#[derive(Debug, Serialize)]
pub struct EndpointCreated {
    #[serde(rename = "Interface", skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
}

/// One published port, as `docker run -p` gives it (`com.docker.network.portmap`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PortBinding {
    /// IP protocol number: 6 TCP, 17 UDP.
    #[serde(rename = "Proto")]
    pub proto: u8,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
    #[serde(rename = "HostPort")]
    pub host_port: u16,
    #[serde(rename = "HostPortEnd")]
    pub host_port_end: u16,
}

/// Options of `/NetworkDriver.Join`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct JoinOptions {
    #[serde(rename = "com.docker.network.portmap")]
    pub portmap: Option<Vec<PortBinding>>,
}

/// `/NetworkDriver.Join`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The container's network namespace (a path Docker bind-mounted).
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
    #[serde(rename = "Options")]
    pub options: JoinOptions,
}

/// The interface Docker moves into the container and names `DstPrefix` + index.
#[derive(Debug, Serialize)]
pub struct InterfaceName {
    #[serde(rename = "SrcName")]
    pub src_name: String,
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: &'static str,
}

/// Answer to `/NetworkDriver.Join`. With no gateway Docker would add a `docker_gwbridge`.
#[derive(Debug, Serialize)]
pub struct Joined {
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
}

/// Answer to `/NetworkDriver.EndpointOperInfo`.
#[derive(Debug, Serialize)]
pub struct OperInfo {
    #[serde(rename = "Value")]
    pub value: BTreeMap<String, String>,
}

/// An error answer: Docker shows `Err` to its user.
#[derive(Debug, Serialize)]
pub struct Failure {
    #[serde(rename = "Err")]
    pub err: String,
}
