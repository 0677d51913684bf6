//! The CNI plugin's translation (CNI spec 1.0 and 1.1, older result formats for 0.3/0.4): the
//! runtime's environment and network configuration become a connect request, an endpoint
//! becomes a CNI result, and every failure a CNI error object with the spec's code. Pure: the
//! `vswitch-cni` binary (src/bin/vswitch-cni.rs) does the asking, over the daemon's API.

pub mod conf;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{ConnectRequest, EndpointRecord, NetworkRecord};
pub use conf::{Attachment, NetConf};

/// Versions of the spec whose configurations and results this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The spec's error codes this plugin answers with.
pub mod code {
    /// The configuration's cniVersion is not one this plugin speaks.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// The container (its namespace, or its attachment) is unknown or gone.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A CNI_* variable is missing or malformed.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// The network configuration could not be decoded.
    pub const DECODE: u32 = 6;
    /// The network configuration is invalid (or names an unknown network).
    pub const INVALID_CONFIG: u32 = 7;
    /// The daemon cannot be reached now.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin cannot serve ADDs (no daemon, no network).
    pub const NOT_AVAILABLE: u32 = 50;
    /// CHECK: the attachment is not what ADD made (this plugin's own code, past 100).
    pub const DRIFT: u32 = 100;
    /// The daemon refused or failed the request for another reason.
    pub const DAEMON: u32 = 101;
}

/// A CNI error object, printed on standard output with exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error of `code` saying `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            cni_version: "1.1.0".into(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error, in the configuration's version.
    pub fn in_version(mut self, version: &str) -> CniError {
        if !version.is_empty() {
            self.cni_version = version.to_string();
        }
        self
    }
}

/// What the runtime tells the plugin in its environment (CNI_*).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
    pub args: BTreeMap<String, String>,
}

impl Env {
    /// Reads the environment through `var`, checking what `command` needs.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let command = var("CNI_COMMAND")
            .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_COMMAND is not set"))?;
        let env = Env {
            container_id: var("CNI_CONTAINERID").unwrap_or_default(),
            netns: var("CNI_NETNS").unwrap_or_default(),
            ifname: var("CNI_IFNAME").unwrap_or_default(),
            args: parse_args(&var("CNI_ARGS").unwrap_or_default())?,
            command,
        };
        let needs: &[(&str, &str)] = match env.command.as_str() {
            "ADD" | "CHECK" => &[
                ("CNI_CONTAINERID", &env.container_id),
                ("CNI_NETNS", &env.netns),
                ("CNI_IFNAME", &env.ifname),
            ],
            "DEL" => &[
                ("CNI_CONTAINERID", &env.container_id),
                ("CNI_IFNAME", &env.ifname),
            ],
            "VERSION" | "GC" | "STATUS" => &[],
            other => {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("unknown CNI_COMMAND {other:?} (ADD, DEL, CHECK, GC, STATUS, VERSION)"),
                ))
            }
        };
        for (name, value) in needs {
            if value.is_empty() {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("{name} is not set (needed by {})", env.command),
                ));
            }
        }
        Ok(env)
    }
}

/// `IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.88.0.5` as pairs.
fn parse_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    text.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    CniError::new(
                        code::INVALID_ENVIRONMENT,
                        format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                    )
                })
        })
        .collect()
}

/// The answer to VERSION.
pub fn version_info(conf_version: &str) -> Value {
    json!({
        "cniVersion": if conf_version.is_empty() { "1.1.0" } else { conf_version },
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

/// The endpoint's name: the container's name as the runtime gives it (Podman passes
/// `K8S_POD_NAME`), else the first 12 characters of its ID.
pub fn endpoint_name(env: &Env) -> String {
    match env.args.get("K8S_POD_NAME") {
        Some(name) if crate::model::check_name("endpoint", name).is_ok() => name.clone(),
        _ => env.container_id.chars().take(12).collect(),
    }
}

/// The connect request ADD makes of the daemon.
pub fn connect_request(conf: &NetConf, env: &Env) -> Result<ConnectRequest, CniError> {
    let runtime = &conf.runtime_config;
    let mut ips: Vec<String> = runtime.ips.iter().map(|ip| strip_prefix(ip)).collect();
    if let Some(listed) = env.args.get("IP") {
        ips.extend(
            listed
                .split(',')
                .filter(|s| !s.is_empty())
                .map(strip_prefix),
        );
    }
    let mac = env.args.get("MAC").cloned().or_else(|| runtime.mac.clone());
    let aliases = runtime
        .aliases
        .get(&conf.name)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|alias| *alias != endpoint_name(env))
        .collect();
    let publish = runtime
        .port_mappings
        .iter()
        .map(|m| {
            let host_ip = match m.host_ip.as_str() {
                "" => String::new(),
                ip if ip.contains(':') => format!("[{ip}]:"),
                ip => format!("{ip}:"),
            };
            let protocol = if m.protocol.is_empty() {
                "tcp"
            } else {
                m.protocol.as_str()
            };
            format!("{host_ip}{}:{}/{protocol}", m.host_port, m.container_port)
        })
        .collect();
    Ok(ConnectRequest {
        netns: env.netns.clone(),
        ips,
        mac,
        ifname: Some(env.ifname.clone()),
        name: Some(endpoint_name(env)),
        aliases,
        publish,
        cni_container: Some(env.container_id.clone()),
        ..ConnectRequest::default()
    })
}

fn strip_prefix(ip: &str) -> String {
    ip.split('/').next().unwrap_or_default().to_string()
}

/// The CNI result of `endpoint` on `network`, in the configuration's version.
pub fn result(conf: &NetConf, endpoint: &EndpointRecord, network: &NetworkRecord) -> Value {
    let legacy = !conf.cni_version.starts_with('1');
    let gateway_of = |address: IpAddr| {
        network
            .subnets
            .iter()
            .find(|s| s.subnet.contains(&address))
            .map(|s| s.gateway)
    };
    let ips: Vec<Value> = endpoint
        .addresses
        .iter()
        .map(|a| {
            let mut ip = json!({ "address": a.to_string(), "interface": 0 });
            if let Some(gateway) = gateway_of(a.addr()) {
                ip["gateway"] = json!(gateway.to_string());
            }
            if legacy {
                ip["version"] = json!(if a.addr().is_ipv4() { "4" } else { "6" });
            }
            ip
        })
        .collect();
    let routes: Vec<Value> = endpoint
        .addresses
        .iter()
        .filter_map(|a| {
            let gateway = gateway_of(a.addr())?;
            let dst = if gateway.is_ipv4() {
                "0.0.0.0/0"
            } else {
                "::/0"
            };
            Some(json!({ "dst": dst, "gw": gateway.to_string() }))
        })
        .collect();
    json!({
        "cniVersion": conf.cni_version,
        "interfaces": [{
            "name": endpoint.ifname,
            "mac": endpoint.mac.to_string(),
            "sandbox": endpoint.netns,
        }],
        "ips": ips,
        "routes": routes,
        "dns": { "nameservers": network.dns_servers().iter().map(|s| s.to_string()).collect::<Vec<_>>() },
    })
}

/// What CHECK finds wrong with `endpoint` against the result ADD gave (`prevResult`).
pub fn drift(prev: &Value, endpoint: &EndpointRecord) -> Option<String> {
    let mac = endpoint.mac.to_string();
    let prev_mac = prev["interfaces"][0]["mac"].as_str().unwrap_or_default();
    if !prev_mac.is_empty() && !prev_mac.eq_ignore_ascii_case(&mac) {
        return Some(format!("interface MAC is {mac}, ADD gave {prev_mac}"));
    }
    let mut had: Vec<String> = prev["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut has: Vec<String> = endpoint.addresses.iter().map(|a| a.to_string()).collect();
    had.sort();
    has.sort();
    (had != has).then(|| format!("addresses are {has:?}, ADD gave {had:?}"))
}

#[cfg(test)]
mod tests;
