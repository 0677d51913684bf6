//! The network configuration a CNI runtime passes on standard input.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One plugin's configuration from a conflist, with what the runtime added.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The CNI network's name (the conflist's).
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The vswitch network [default: the CNI network's name].
    pub network: Option<String>,
    /// The daemon's control socket [default: the daemon's default].
    pub socket: Option<PathBuf>,
    #[serde(rename = "runtimeConfig")]
    pub runtime_config: RuntimeConfig,
    /// ADD's result, given back to CHECK and DEL.
    #[serde(rename = "prevResult")]
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments still in use; every other of this network's goes.
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// The vswitch network this configuration attaches to.
    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }
}

/// Capability arguments (`runtimeConfig`) a runtime passes for the capabilities the conflist
/// declares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    #[serde(rename = "portMappings")]
    pub port_mappings: Vec<PortMapping>,
    /// Network name -> the container's aliases on it (Podman's `aliases`).
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Static addresses asked for (`ips` capability).
    pub ips: Vec<String>,
    /// A MAC asked for (`mac` capability).
    pub mac: Option<String>,
}

/// One published port (`portMappings` capability).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: String,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
}

/// An attachment GC must keep.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}
