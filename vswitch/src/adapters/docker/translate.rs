//! Docker's requests as vswitch's: a network's pools and `-o vswitch.KEY=VALUE` options as a
//! `NetworkCreate`, `-p` bindings as `--publish` specs. Pure, so every mapping is unit-tested.

use std::collections::BTreeMap;

use crate::model::NetworkCreate;
use policy::NetworkPolicy;

use super::wire::{CreateNetwork, PortBinding};

/// The `-o` options vswitch takes, each with what it sets.
pub const OPTIONS: &[(&str, &str)] = &[
    ("vswitch.mtu", "MTU of the network's interfaces"),
    ("vswitch.vlan", "802.1Q VLAN ID on trunk ports"),
    (
        "vswitch.default-action",
        "allow or deny: what no rule matches gets",
    ),
    (
        "vswitch.storm-pps",
        "broadcast/multicast packets per second (0: off)",
    ),
    ("vswitch.max-flows", "flows the policy tracks at most"),
    ("vswitch.internal", "true: no traffic beyond the network"),
    (
        "vswitch.host-loopback",
        "true: the gateway address leads to the daemon's loopback",
    ),
    (
        "vswitch.dns",
        "upstream DNS servers, comma-separated IP or IP:PORT",
    ),
];

/// Docker's standard MTU option, honoured as `vswitch.mtu`.
const DOCKER_MTU: &str = "com.docker.network.driver.mtu";
/// Where Docker puts the `-o` options.
const GENERIC: &str = "com.docker.network.generic";
/// `docker network create --internal`.
const INTERNAL: &str = "com.docker.network.internal";

/// The vswitch network named `name` that Docker's `CreateNetwork` asks for.
pub fn network_create(name: &str, req: &CreateNetwork) -> Result<NetworkCreate, String> {
    let mut create = NetworkCreate {
        name: name.to_string(),
        docker_id: Some(req.network_id.clone()),
        ..NetworkCreate::default()
    };
    for pool in req.ipv4_data.iter().chain(&req.ipv6_data) {
        if pool.pool.is_empty() {
            continue;
        }
        create.subnets.push(pool.pool.clone());
        if !pool.gateway.is_empty() {
            let gateway = pool.gateway.split('/').next().unwrap_or_default();
            create.gateways.push(gateway.to_string());
        }
    }
    if create.gateways.len() != create.subnets.len() {
        // Ours then chooses each gateway as Docker's IPAM would: the first host.
        create.gateways.clear();
    }
    if bool_value(req.options.get(INTERNAL)) == Some(true) {
        create.internal = true;
    }
    let generic = match req.options.get(GENERIC) {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect::<BTreeMap<_, _>>(),
        _ => BTreeMap::new(),
    };
    for (key, value) in &generic {
        apply_option(&mut create, key, value)?;
    }
    Ok(create)
}

fn apply_option(create: &mut NetworkCreate, key: &str, value: &str) -> Result<(), String> {
    let bad = |what: &str| format!("-o {key}={value}: {what}");
    let number = |what: &str| value.parse::<u64>().map_err(|_| bad(what));
    let flag = || match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad("expected true or false")),
    };
    match key {
        "vswitch.mtu" | DOCKER_MTU => {
            create.mtu = Some(number("expected an MTU in bytes")? as u32);
        }
        "vswitch.vlan" => create.vlan = Some(number("expected a VLAN ID")? as u16),
        "vswitch.default-action" => {
            create.policy = Some(NetworkPolicy {
                default: value.parse().map_err(|e: String| bad(&e))?,
                rules: Vec::new(),
            });
        }
        "vswitch.storm-pps" => create.storm_pps = Some(number("expected packets per second")?),
        "vswitch.max-flows" => {
            create.max_flows = Some(number("expected a number of flows")? as usize);
        }
        "vswitch.internal" => create.internal = flag()?,
        "vswitch.host-loopback" => create.host_loopback = flag()?,
        "vswitch.dns" => {
            create.dns = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        other if other.starts_with("vswitch.") => {
            let known: Vec<&str> = OPTIONS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown option -o {other}; vswitch knows {}",
                known.join(", ")
            ));
        }
        // Options of other drivers or of Docker itself are not ours to refuse.
        _ => {}
    }
    Ok(())
}

/// `-p` bindings as `--publish` specs: `[HOST_IP:]HOST_PORT[-END]:PORT/PROTO`.
pub fn publish_specs(bindings: &[PortBinding]) -> Result<Vec<String>, String> {
    bindings
        .iter()
        .map(|b| {
            let protocol = match b.proto {
                6 => "tcp",
                17 => "udp",
                other => {
                    return Err(format!(
                        "-p: IP protocol {other} cannot be published (tcp and udp can)"
                    ))
                }
            };
            if b.host_port == 0 {
                return Err(format!(
                    "-p {}/{protocol}: vswitch needs the host port given (-p HOST:{})",
                    b.port, b.port
                ));
            }
            let end = b.host_port_end.max(b.host_port);
            let host_ports = if end > b.host_port {
                format!("{}-{end}", b.host_port)
            } else {
                b.host_port.to_string()
            };
            let container_ports = if end > b.host_port {
                format!("{}-{}", b.port, b.port as u32 + (end - b.host_port) as u32)
            } else {
                b.port.to_string()
            };
            let host_ip = match b.host_ip.as_str() {
                "" => String::new(),
                ip if ip.contains(':') => format!("[{ip}]:"),
                ip => format!("{ip}:"),
            };
            Ok(format!(
                "{host_ip}{host_ports}:{container_ports}/{protocol}"
            ))
        })
        .collect()
}

/// A JSON value as the text `-o` gave (Docker passes strings; be lenient with the rest).
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bool_value(value: Option<&serde_json::Value>) -> Option<bool> {
    match value? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> CreateNetwork {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn docker_pools_and_options_become_a_network() {
        // As Docker 20.10 sent it for `docker network create -d vswitch --subnet 10.99.0.0/24
        // -o vswitch.mtu=1400 pnet`.
        let req = request(
            r#"{"NetworkID":"a6ba011146ae54c4","Options":{"com.docker.network.enable_ipv6":false,
            "com.docker.network.generic":{"vswitch.mtu":"1400","vswitch.default-action":"deny"}},
            "IPv4Data":[{"AddressSpace":"LocalDefault","Gateway":"10.99.0.1/24","Pool":"10.99.0.0/24"}],
            "IPv6Data":[]}"#,
        );
        let create = network_create("a6ba011146ae", &req).unwrap();
        assert_eq!(create.subnets, ["10.99.0.0/24"]);
        assert_eq!(create.gateways, ["10.99.0.1"]);
        assert_eq!(create.mtu, Some(1400));
        assert_eq!(create.docker_id.as_deref(), Some("a6ba011146ae54c4"));
        assert_eq!(create.policy.unwrap().default.to_string(), "deny");
        assert!(!create.internal);
    }

    #[test]
    fn unknown_or_malformed_vswitch_options_are_refused_by_name() {
        let req = request(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"vswitch.colour":"red"}}}"#,
        );
        let err = network_create("x", &req).unwrap_err();
        assert!(
            err.contains("vswitch.colour") && err.contains("vswitch.mtu"),
            "{err}"
        );
        let req = request(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"vswitch.mtu":"big"}}}"#,
        );
        assert!(network_create("x", &req)
            .unwrap_err()
            .contains("vswitch.mtu=big"));
        // Other drivers' options are not ours to judge.
        let req = request(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"other.key":"1"}}}"#,
        );
        assert!(network_create("x", &req).is_ok());
    }

    #[test]
    fn internal_comes_from_docker_or_from_the_option() {
        let req = request(r#"{"NetworkID":"x","Options":{"com.docker.network.internal":true}}"#);
        assert!(network_create("x", &req).unwrap().internal);
        let req = request(
            r#"{"NetworkID":"x","Options":{"com.docker.network.generic":{"vswitch.internal":"true"}}}"#,
        );
        assert!(network_create("x", &req).unwrap().internal);
    }

    #[test]
    fn port_bindings_become_publish_specs() {
        let bindings: Vec<PortBinding> = serde_json::from_str(
            r#"[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
                {"Proto":17,"Port":53,"HostIP":"127.0.0.1","HostPort":5353,"HostPortEnd":5353},
                {"Proto":6,"Port":8000,"HostIP":"::1","HostPort":9000,"HostPortEnd":9002}]"#,
        )
        .unwrap();
        assert_eq!(
            publish_specs(&bindings).unwrap(),
            [
                "8080:80/tcp",
                "127.0.0.1:5353:53/udp",
                "[::1]:9000-9002:8000-8002/tcp"
            ]
        );
        for spec in publish_specs(&bindings).unwrap() {
            crate::model::publish::parse_publish(&spec).unwrap();
        }
        let random: Vec<PortBinding> =
            serde_json::from_str(r#"[{"Proto":6,"Port":80,"HostPort":0}]"#).unwrap();
        assert!(publish_specs(&random).unwrap_err().contains("host port"));
    }
}
