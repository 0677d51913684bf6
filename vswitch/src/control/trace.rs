//! `vswitch trace`: builds the frame an endpoint would send, runs it through the switch's own
//! decision code without learning or counting, and explains each step in a sentence.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use vswitch_core::frame::MacAddr;
use vswitch_core::ids::PortId;
use vswitch_core::switch::{Trace, WouldLearn};
use vswitch_core::trace::{build_frame, describe_frame, Proto};

use super::{Control, ControlError, Inner, Network};
use crate::gateway::DNS_PORT;
use crate::model::{
    gateway_mac, is_target, EndpointRecord, ModelError, NetworkRecord, TraceRequest,
};

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// What was looked at: ingress, frame, port security, policy, learn, fdb, output.
    pub stage: String,
    /// What was found.
    pub detail: String,
}

/// A trace's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The steps, in order.
    pub steps: Vec<TraceStep>,
    /// `forwarded`, `flooded` or `dropped`.
    pub verdict: String,
    /// Output ports, named.
    pub egress: Vec<String>,
    /// The drop reason, if dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// What policy did with the frame, in a sentence (or why it did not look at it).
    pub policy: String,
    /// The policy rule that decided the frame (`default`: the network default), if policy
    /// looked at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_rule: Option<String>,
}

/// The frame a trace sends, and how its destination MAC was chosen.
struct Probe<'a> {
    from: &'a EndpointRecord,
    dst_mac: MacAddr,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    proto: Proto,
    /// How `dst_mac` was chosen, for the report.
    resolved: String,
}

impl Control {
    /// Runs a frame built from `req` through the switch's decision, changing nothing.
    pub async fn trace(
        &self,
        network: &str,
        req: TraceRequest,
    ) -> Result<TraceReport, ControlError> {
        let inner = self.inner.lock().await;
        let net = inner.network(network)?;
        let probe = probe(net, &req)?;
        let frame = build_frame(
            probe.from.mac,
            probe.dst_mac,
            probe.src_ip,
            probe.dst_ip,
            probe.proto,
        )
        .map_err(ControlError::Invalid)?;
        let port = net
            .ports
            .get(&probe.from.name)
            .ok_or_else(|| ModelError::UnknownEndpoint {
                target: req.from.clone(),
                network: network.to_string(),
            })?
            .port;
        let trace = self.dataplane.trace(port, &frame);
        Ok(report(&inner, net, &probe, port, trace))
    }
}

/// Works out the frame `req` describes: sender, destination address and MAC.
fn probe<'a>(net: &'a Network, req: &TraceRequest) -> Result<Probe<'a>, ControlError> {
    let record = &net.record;
    let find = |target: &str| {
        record
            .endpoints
            .values()
            .find(|e| is_target(target, &e.name, &e.netns))
            .ok_or_else(|| ModelError::UnknownEndpoint {
                target: target.to_string(),
                network: record.name.clone(),
            })
    };
    let from = find(&req.from)?;
    // The destination may be on another host of an overlay.
    let find_anywhere = |target: &str| {
        let local = find(target).map(|e| (e.name.as_str(), e.mac, &e.addresses));
        local.or_else(|e| {
            record
                .remote_endpoints()
                .find(|r| r.name == target)
                .map(|r| (r.name.as_str(), r.mac, &r.addresses))
                .ok_or(e)
        })
    };
    let to = req.to.as_deref().map(find_anywhere).transpose()?;
    let proto = Proto::parse(req.proto.as_deref(), req.dport).map_err(ControlError::Invalid)?;
    // The destination address, and which family the sender uses for it.
    let dst_ip = match (req.dst, to) {
        (Some(ip), _) => ip,
        (None, Some((name, _, addresses))) => addresses
            .first()
            .map(|a| a.addr())
            .ok_or_else(|| ControlError::Invalid(format!("{name} has no address")))?,
        (None, None) if req.dst_mac.is_some() => IpAddr::from([255, 255, 255, 255]),
        (None, None) => {
            return Err(ControlError::Invalid(
                "say where to: --to ENDPOINT, --dst IP or --dst-mac MAC".into(),
            ))
        }
    };
    let src_ip = from
        .addresses
        .iter()
        .map(|a| a.addr())
        .find(|a| a.is_ipv4() == dst_ip.is_ipv4())
        .ok_or_else(|| {
            ControlError::Invalid(format!("{} has no address of {dst_ip}'s family", from.name))
        })?;
    let gateway_mac = gateway_mac(&record.name);
    let owner = record
        .endpoints
        .values()
        .find(|e| e.addresses.iter().any(|a| a.addr() == dst_ip))
        .map(|e| (e.name.as_str(), e.mac))
        .or_else(|| {
            record
                .remote_endpoints()
                .find(|r| r.addresses.iter().any(|a| a.addr() == dst_ip))
                .map(|r| (r.name.as_str(), r.mac))
        });
    let (dst_mac, resolved) = match (&req.dst_mac, to, owner) {
        (Some(text), _, _) => (
            text.parse::<MacAddr>()
                .map_err(|e| ControlError::Invalid(e.to_string()))?,
            "as given".to_string(),
        ),
        (None, Some((name, mac, _)), _) => (mac, format!("{name}'s MAC")),
        (None, None, Some((name, mac))) => (mac, format!("{name}'s MAC, owner of {dst_ip}")),
        (None, None, None) if record.subnets.iter().any(|s| s.gateway == dst_ip) => {
            (gateway_mac, "the gateway's MAC".to_string())
        }
        (None, None, None) if !record.subnets.iter().any(|s| s.subnet.contains(&dst_ip)) => (
            gateway_mac,
            format!("the gateway's MAC: {dst_ip} is off the network"),
        ),
        (None, None, None) => (
            MacAddr([0xff; 6]),
            format!("broadcast: no endpoint has {dst_ip} (the container would ask by ARP)"),
        ),
    };
    Ok(Probe {
        from,
        dst_mac,
        src_ip,
        dst_ip,
        proto,
        resolved,
    })
}

/// The report of a trace: one step per stage the switch went through, then the verdict.
fn report(inner: &Inner, net: &Network, probe: &Probe, port: PortId, trace: Trace) -> TraceReport {
    let name_of = |port: PortId| port_name(inner, net, port);
    let step = |stage: &str, detail: String| TraceStep {
        stage: stage.into(),
        detail,
    };
    let from = probe.from;
    let vlan = trace
        .ingress_vlan
        .map_or("untagged".into(), |v| format!("VLAN {v}"));
    let frame = describe_frame(
        from.mac,
        probe.dst_mac,
        probe.src_ip,
        probe.dst_ip,
        probe.proto,
    );
    let mut steps = vec![
        step(
            "ingress",
            format!(
                "{port} ({}), network {}, {vlan}",
                from.name, net.record.name
            ),
        ),
        step(
            "frame",
            format!("{frame}; destination MAC is {}", probe.resolved),
        ),
        step("port security", describe_port_security(from)),
    ];
    if let Some(learn) = trace.learn {
        let mac = from.mac;
        steps.push(step(
            "learn",
            match learn {
                WouldLearn::New => format!("{mac} would be learned on {port}"),
                WouldLearn::Refresh => format!("{mac} is known on {port}: refreshed"),
                WouldLearn::Move { from: old } => {
                    format!("{mac} would move from {old} ({}) to {port}", name_of(old))
                }
                WouldLearn::Static => format!("{mac} is pinned by a static entry"),
            },
        ));
    }
    if trace.network.is_some() {
        let dst_mac = probe.dst_mac;
        steps.push(step(
            "fdb",
            match trace.fdb_hit {
                Some(hit) => format!("{dst_mac} is on {hit} ({})", name_of(hit)),
                None if dst_mac.is_multicast() => format!("{dst_mac} is a group address: flood"),
                None => format!("{dst_mac} is unknown: flood"),
            },
        ));
    }
    // Policy looks at the frame once its destination is known, as in the switch.
    let policy = describe_policy(&trace, &net.record.policy);
    steps.push(step("policy", policy.clone()));
    let egress: Vec<String> = trace
        .egress
        .iter()
        .map(|e| match e.vlan {
            Some(v) => format!("{} ({}, VLAN {v})", name_of(e.port), e.port),
            None => format!("{} ({})", name_of(e.port), e.port),
        })
        .collect();
    let (verdict, output) = match (&trace.drop, trace.flooded) {
        (Some(reason), _) => ("dropped", format!("dropped: {reason}")),
        (None, true) => ("flooded", format!("flooded to {}", egress.join(", "))),
        (None, false) => ("forwarded", format!("forwarded to {}", egress.join(", "))),
    };
    steps.push(step("output", output));
    let to_gateway = trace.egress.iter().any(|e| e.port == net.gateway.port);
    if let (None, true) = (&trace.drop, to_gateway) {
        steps.extend(describe_beyond(&net.record, probe).map(|d| step("gateway", d)));
    }
    TraceReport {
        steps,
        verdict: verdict.into(),
        egress,
        policy,
        drop_reason: trace.drop.as_ref().map(|r| r.name().to_string()),
        policy_rule: trace.policy.as_ref().map(|why| why.rule.to_string()),
    }
}

/// The trace step of the gateway, for a packet it carries beyond the network: how it leaves
/// (none for what the gateway answers itself).
fn describe_beyond(record: &NetworkRecord, probe: &Probe) -> Option<String> {
    let dst = probe.dst_ip;
    let is_gateway = record.subnets.iter().any(|s| s.gateway == dst);
    let on_network = record.subnets.iter().any(|s| s.subnet.contains(&dst));
    let port = match probe.proto {
        Proto::Tcp(port) | Proto::Udp(port) => Some(port),
        Proto::Icmp => None,
    };
    let to_loopback = is_gateway && record.host_loopback && port.is_some_and(|p| p != DNS_PORT);
    if on_network && !to_loopback {
        return None;
    }
    if let Some(iface) = &record.host_iface {
        return Some(format!(
            "handed to host interface {iface}: the host's kernel routes it"
        ));
    }
    if record.internal {
        return Some(
            "refused: the network is --internal (counted in gateway.egress.blocked)".into(),
        );
    }
    let target = match (to_loopback, port, dst) {
        (true, Some(port), IpAddr::V4(_)) => format!("127.0.0.1:{port} (--host-loopback)"),
        (true, Some(port), IpAddr::V6(_)) => format!("[::1]:{port} (--host-loopback)"),
        (_, Some(port), _) => std::net::SocketAddr::new(dst, port).to_string(),
        (_, None, _) => dst.to_string(),
    };
    Some(match probe.proto {
        Proto::Tcp(_) => format!(
            "egress: the gateway answers the connection as {dst} and opens one from a TCP socket of the daemon's namespace, to {target}"
        ),
        Proto::Udp(_) => format!(
            "egress: the gateway sends the datagram from a UDP socket of the daemon's namespace, to {target}"
        ),
        Proto::Icmp => format!(
            "egress: the gateway pings {target} from a ping socket of the daemon's namespace (net.ipv4.ping_group_range)"
        ),
    })
}

/// Who is behind a port of `net`: an endpoint, the gateway or a trunk.
fn port_name(inner: &Inner, net: &Network, port: PortId) -> String {
    if port == net.gateway.port {
        return "gateway".into();
    }
    net.ports
        .iter()
        .find(|(_, e)| e.port == port)
        .map(|(n, _)| n.clone())
        .or_else(|| {
            inner
                .trunks
                .iter()
                .find(|(_, t)| t.port.port == port)
                .map(|(n, _)| format!("trunk {n}"))
        })
        .unwrap_or_else(|| port.to_string())
}

/// The trace step of port security: what the sender may send as.
fn describe_port_security(from: &EndpointRecord) -> String {
    if !from.port_security {
        return "off for this endpoint".into();
    }
    let allowed = if from.dhcp {
        "its DHCP lease and link-local addresses".to_string()
    } else {
        let ips: Vec<String> = from
            .addresses
            .iter()
            .map(|a| a.addr().to_string())
            .collect();
        ips.join(", ")
    };
    format!("on: this port may send only as {} with {allowed}", from.mac)
}

/// The trace step of policy: what decided the frame, or why policy did not look at it.
fn describe_policy(trace: &Trace, policy: &policy::NetworkPolicy) -> String {
    use policy::Decision;
    let Some(why) = &trace.policy else {
        return if policy.is_open() {
            "no policy: allowed (the default)".into()
        } else if trace.network.is_none() || trace.drop.is_some() {
            "not reached".into()
        } else {
            "not an IP packet: policy does not apply".into()
        };
    };
    if why.infrastructure {
        return "infrastructure (DHCP, neighbour discovery, DNS to the gateway): always allowed"
            .into();
    }
    let action = match why.decision {
        Decision::Allow => "allowed",
        Decision::Deny(_) => "denied",
        Decision::Reject(_) => "rejected",
    };
    let mut text = if why.tracked {
        format!(
            "{action}: part of a tracked flow that rule {} allowed",
            why.rule
        )
    } else if why.rule.as_str() == policy::rules::DEFAULT_RULE {
        format!("{action}: no rule matches, the network default")
    } else {
        format!("{action} by rule {}", why.rule)
    };
    if let Some((staged, action)) = &why.staged {
        let verb = match action {
            policy::RuleAction::Allow => "allow",
            policy::RuleAction::Deny => "deny",
            policy::RuleAction::Reject => "reject",
        };
        text.push_str(&format!("; staged rule {staged} would {verb} it"));
    }
    text
}
