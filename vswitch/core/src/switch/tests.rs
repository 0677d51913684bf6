//! Switch scenarios on an in-memory N-port harness with a fake clock: no devices, no sleeping.

use std::time::{Duration, Instant};

use super::*;
use crate::frame::fixtures::{bytes, tagged, ARP_REQUEST, ICMP_REPLY, ICMP_REQUEST};
use crate::frame::{egress_parts, vlan_tag};

/// A switch, a clock, and what came out of each port.
struct Harness {
    sw: Switch,
    now: Instant,
}

impl Harness {
    fn new(config: SwitchConfig) -> Harness {
        Harness {
            sw: Switch::new(config),
            now: Instant::now(),
        }
    }

    fn access(&mut self, net: NetworkId) -> PortId {
        self.port_of_kind(net, Reach::Any)
    }

    fn port_of_kind(&mut self, net: NetworkId, reach: Reach) -> PortId {
        self.sw
            .add_port(PortConfig {
                mode: PortMode::Access(net),
                mtu: 1500,
                security: None,
                rate_limit: None,
                reach,
            })
            .unwrap()
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    /// Feeds `frame` in on `port`; returns each output port with the exact bytes it would send.
    fn send(&mut self, port: PortId, frame: &[u8]) -> Result<Vec<(PortId, Vec<u8>)>, DropReason> {
        let action = self.sw.process(self.now, port, frame);
        let tag_len = match action {
            Action::Drop(reason) | Action::Reject { reason, .. } => return Err(reason),
            Action::Answer { .. } => return Ok(Vec::new()),
            Action::Forward {
                ingress_tag_len, ..
            }
            | Action::Flood {
                ingress_tag_len, ..
            } => ingress_tag_len,
        };
        Ok(action
            .targets()
            .map(|e| {
                let tag = e.vlan.map(vlan_tag);
                let tag: &[u8] = tag.as_ref().map_or(&[], |t| &t[..]);
                (e.port, egress_parts(frame, tag_len, tag).concat())
            })
            .collect())
    }

    fn ports_reached(&mut self, port: PortId, frame: &[u8]) -> Vec<PortId> {
        let mut ports: Vec<PortId> = self
            .send(port, frame)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        ports.sort();
        ports
    }
}

/// A frame from `src` to `dst` with the captured ICMP request as payload.
fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = bytes(ICMP_REQUEST);
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);

#[test]
fn broadcast_floods_to_every_other_port_then_unicast_is_learned() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..3).map(|_| h.access(net)).collect();

    // Captured ARP request from A (broadcast) reaches both others, unchanged.
    let arp = bytes(ARP_REQUEST);
    let out = h.send(p[0], &arp).unwrap();
    assert_eq!(out, vec![(p[1], arp.clone()), (p[2], arp.clone())]);

    // Unknown unicast to B floods too.
    let req = bytes(ICMP_REQUEST);
    assert_eq!(h.ports_reached(p[0], &req), vec![p[1], p[2]]);

    // B answers from port 1: A is known, so the reply goes only to port 0 ...
    let reply = bytes(ICMP_REPLY);
    assert_eq!(h.send(p[1], &reply).unwrap(), vec![(p[0], reply.clone())]);
    // ... and now B is known too.
    assert_eq!(h.send(p[0], &req).unwrap(), vec![(p[1], req.clone())]);

    let stats = h.sw.stats();
    assert_eq!(
        (
            stats.events.learned,
            stats.events.flooded,
            stats.events.forwarded
        ),
        (2, 2, 2)
    );
    let rows = h.sw.fdb_rows(h.now, net);
    assert_eq!(
        rows.iter().map(|r| (r.mac, r.port)).collect::<Vec<_>>(),
        vec![(A, p[0]), (B, p[1])]
    );
}

#[test]
fn overlay_split_horizon_keeps_tunnels_and_the_gateway_apart() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let container = h.access(net);
    let gateway = h.port_of_kind(net, Reach::HostOnly);
    let host_b = h.port_of_kind(net, Reach::Tunnel);
    let host_c = h.port_of_kind(net, Reach::Tunnel);
    let broadcast = MacAddr([0xff; 6]);
    // A container's broadcast reaches everyone (head-end replication to each host).
    assert_eq!(
        h.ports_reached(container, &frame(broadcast, mac(1))),
        vec![gateway, host_b, host_c]
    );
    // One host's broadcast reaches this host's containers only: not the other host (it got
    // its own copy), not this host's gateway (the remote host's gateway answers for it).
    assert_eq!(
        h.ports_reached(host_b, &frame(broadcast, mac(2))),
        vec![container]
    );
    // The gateway's broadcast stays on this host.
    assert_eq!(
        h.ports_reached(gateway, &frame(broadcast, mac(9))),
        vec![container]
    );
    // Unicast between the two tunnels, or from a tunnel to the gateway, is dropped by name.
    h.send(host_c, &frame(broadcast, mac(3))).unwrap();
    assert_eq!(
        h.send(host_b, &frame(mac(3), mac(2))),
        Err(DropReason::SplitHorizon)
    );
    assert_eq!(
        h.send(host_b, &frame(mac(9), mac(2))),
        Err(DropReason::SplitHorizon)
    );
    // Known unicast from the container to a remote station goes to its host alone.
    assert_eq!(
        h.ports_reached(container, &frame(mac(2), mac(1))),
        vec![host_b]
    );
}

#[test]
fn arp_for_a_station_on_another_host_is_answered_not_flooded() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let container = h.access(net);
    let host_b = h.port_of_kind(net, Reach::Tunnel);
    let request = bytes(ARP_REQUEST);
    let target = std::net::Ipv4Addr::new(request[38], request[39], request[40], request[41]);
    let owner = mac(0x42);
    h.sw.set_neighbours(net, [(std::net::IpAddr::V4(target), owner)].into())
        .unwrap();
    let Action::Answer { reply } = h.sw.process(h.now, container, &request) else {
        panic!("answered")
    };
    assert_eq!(&reply[6..12], &owner.0, "as its owner");
    // From another host, ARP is that host's to answer: flooded to this host's ports as usual.
    let mut remote_request = request.clone();
    remote_request[6..12].copy_from_slice(&mac(7).0);
    remote_request[22..28].copy_from_slice(&mac(7).0);
    assert_eq!(h.ports_reached(host_b, &remote_request), vec![container]);
}

#[test]
fn a_station_that_moves_is_followed() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..3).map(|_| h.access(net)).collect();
    h.send(p[1], &frame(A, B)).unwrap();
    assert_eq!(h.ports_reached(p[0], &frame(B, A)), vec![p[1]]);
    // B shows up on port 2.
    h.send(p[2], &frame(A, B)).unwrap();
    assert_eq!(h.ports_reached(p[0], &frame(B, A)), vec![p[2]]);
    assert_eq!(h.sw.stats().events.moved, 1);
}

#[test]
fn learned_entries_age_out_and_static_ones_stay() {
    let mut h = Harness::new(SwitchConfig {
        aging: Duration::from_secs(300),
        ..Default::default()
    });
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..3).map(|_| h.access(net)).collect();
    h.sw.add_static(net, mac(9), p[2]).unwrap();
    h.send(p[1], &frame(A, B)).unwrap();
    h.advance(299);
    assert_eq!(h.ports_reached(p[0], &frame(B, A)), vec![p[1]]);
    h.advance(300);
    // B idle for 599 s is forgotten: flood again. A was refreshed 300 s ago: also gone.
    assert_eq!(h.ports_reached(p[0], &frame(B, A)), vec![p[1], p[2]]);
    h.sw.handle_aging(h.now);
    assert_eq!(
        h.sw.stats().events.aged,
        1,
        "B swept; A was relearned just now"
    );
    // Static entry: never ages, never overridden by a frame claiming its MAC elsewhere.
    h.advance(10_000);
    h.send(p[1], &frame(A, mac(9))).unwrap();
    assert_eq!(h.ports_reached(p[0], &frame(mac(9), A)), vec![p[2]]);
}

#[test]
fn mac_limit_stops_learning_but_not_forwarding() {
    let mut h = Harness::new(SwitchConfig {
        mac_limit: 4,
        ..Default::default()
    });
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..2).map(|_| h.access(net)).collect();
    for n in 0..100 {
        assert_eq!(
            h.ports_reached(p[0], &frame(MacAddr::BROADCAST, mac(n))),
            vec![p[1]]
        );
    }
    assert_eq!(h.sw.fdb_rows(h.now, net).len(), 4);
    assert_eq!(h.sw.stats().events.limit_reached, 96);
}

#[test]
fn networks_are_isolated_even_for_broadcast() {
    let mut h = Harness::new(SwitchConfig::default());
    let red = h.sw.add_network();
    let blue = h.sw.add_network();
    let r: Vec<PortId> = (0..2).map(|_| h.access(red)).collect();
    let b: Vec<PortId> = (0..2).map(|_| h.access(blue)).collect();
    assert_eq!(h.ports_reached(r[0], &bytes(ARP_REQUEST)), vec![r[1]]);
    assert_eq!(h.ports_reached(b[0], &bytes(ARP_REQUEST)), vec![b[1]]);
    // Same MAC B learned on blue does not make red's frames to B go there.
    h.send(b[1], &frame(A, B)).unwrap();
    assert_eq!(h.ports_reached(r[0], &frame(B, A)), vec![r[1]]);
}

#[test]
fn bad_frames_are_dropped_with_their_reason() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..2).map(|_| h.access(net)).collect();
    assert_eq!(
        h.send(p[0], &bytes(ARP_REQUEST)[..13]),
        Err(DropReason::Runt)
    );
    assert_eq!(
        h.send(p[0], &frame(B, MacAddr::BROADCAST)),
        Err(DropReason::MulticastSource)
    );
    assert_eq!(
        h.send(PortId(77), &frame(B, A)),
        Err(DropReason::UnknownPort)
    );
    let mut jumbo = frame(B, A);
    jumbo.resize(14 + 1501, 0);
    assert_eq!(h.send(p[0], &jumbo), Err(DropReason::OverMtu));
    jumbo.truncate(14 + 1500);
    assert!(h.send(p[0], &jumbo).is_ok());
    // B lives on port 1; a frame for B arriving on port 1 is already where it belongs.
    h.send(p[1], &frame(A, B)).unwrap();
    assert_eq!(
        h.send(p[1], &frame(B, mac(3))),
        Err(DropReason::SameSegment)
    );
    // Tagged frame on an access port.
    assert_eq!(
        h.send(p[0], &tagged(&frame(B, A), 5)),
        Err(DropReason::VlanNotAllowed)
    );

    let drops = h.sw.stats().drops;
    assert_eq!(drops.total(), 6);
    assert_eq!(drops.get(&DropReason::UnknownPort), 1);
    assert_eq!(h.sw.port_drops(p[0]).unwrap().total(), 4);
    assert_eq!(
        h.sw.port_drops(p[1]).unwrap().get(&DropReason::SameSegment),
        1
    );
}

#[test]
fn trunk_pushes_and_pops_tags_at_the_edge() {
    let mut h = Harness::new(SwitchConfig::default());
    let red = h.sw.add_network();
    let blue = h.sw.add_network();
    let red_port = h.access(red);
    let blue_port = h.access(blue);
    let trunk =
        h.sw.add_port(PortConfig {
            mode: PortMode::Trunk {
                vlans: vec![(100, red), (200, blue)],
                native: None,
            },
            mtu: 1500,
            security: None,
            rate_limit: None,
            reach: Default::default(),
        })
        .unwrap();

    // Untagged from the red access port leaves the trunk tagged 100, byte for byte.
    let arp = bytes(ARP_REQUEST);
    assert_eq!(
        h.send(red_port, &arp).unwrap(),
        vec![(trunk, tagged(&arp, 100))]
    );
    // Tagged 200 from the trunk reaches only blue, with the tag popped.
    let reply = bytes(ICMP_REPLY);
    assert_eq!(
        h.send(trunk, &tagged(&reply, 200)).unwrap(),
        vec![(blue_port, reply.clone())]
    );
    // VLAN 300 is not carried; untagged has no native network.
    assert_eq!(
        h.send(trunk, &tagged(&reply, 300)),
        Err(DropReason::VlanNotAllowed)
    );
    assert_eq!(h.send(trunk, &reply), Err(DropReason::VlanNotAllowed));
    // Learned per VLAN: B sent on VLAN 200 only, so red traffic to B still floods.
    let to_b = frame(B, A);
    assert_eq!(
        h.send(red_port, &to_b).unwrap(),
        vec![(trunk, tagged(&to_b, 100))]
    );
    assert_eq!(
        h.send(blue_port, &to_b).unwrap(),
        vec![(trunk, tagged(&to_b, 200))]
    );
}

#[test]
fn trunk_to_trunk_retags_and_native_is_untagged() {
    let mut h = Harness::new(SwitchConfig::default());
    let red = h.sw.add_network();
    let t1 =
        h.sw.add_port(PortConfig {
            mode: PortMode::Trunk {
                vlans: vec![(10, red)],
                native: None,
            },
            mtu: 1500,
            security: None,
            rate_limit: None,
            reach: Default::default(),
        })
        .unwrap();
    let t2 =
        h.sw.add_port(PortConfig {
            mode: PortMode::Trunk {
                vlans: vec![],
                native: Some(red),
            },
            mtu: 1500,
            security: None,
            rate_limit: None,
            reach: Default::default(),
        })
        .unwrap();
    let arp = bytes(ARP_REQUEST);
    assert_eq!(
        h.send(t1, &tagged(&arp, 10)).unwrap(),
        vec![(t2, arp.clone())]
    );
    assert_eq!(h.send(t2, &arp).unwrap(), vec![(t1, tagged(&arp, 10))]);
}

#[test]
fn removing_a_port_forgets_its_macs() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..3).map(|_| h.access(net)).collect();
    h.send(p[1], &frame(A, B)).unwrap();
    h.sw.remove_port(p[1]).unwrap();
    assert_eq!(h.ports_reached(p[0], &frame(B, A)), vec![p[2]]);
    assert_eq!(h.send(p[1], &frame(A, B)), Err(DropReason::UnknownPort));
    assert_eq!(
        h.sw.remove_network(net),
        Err(ConfigError::NetworkInUse(net))
    );
    h.sw.remove_port(p[0]).unwrap();
    h.sw.remove_port(p[2]).unwrap();
    assert_eq!(h.sw.remove_network(net), Ok(()));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap, deterministic fuzz: every prefix and a walk of mutated bytes.
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let p = h.access(net);
    let _ = h.access(net);
    let mut f = tagged(&bytes(ICMP_REQUEST), 3);
    let mut seed: u32 = 1;
    for i in 0..20_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let at = (seed as usize >> 8) % f.len();
        f[at] = (seed >> 16) as u8;
        let len = i % (f.len() + 1);
        let _ = h.send(p, &f[..len]);
    }
}

#[test]
fn offloaded_frames_are_held_to_the_mtu_of_their_segments() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let p: Vec<PortId> = (0..2).map(|_| h.access(net)).collect();
    let mut big = frame(B, A);
    big.resize(64 * 1024, 0);
    // One 64 KB frame that leaves as 1514-byte segments is fine ...
    let action = h.sw.process_gso(h.now, p[0], &big, 1514);
    assert!(matches!(action, Action::Flood { .. }), "{action:?}");
    // ... segments one byte too large are not, and neither is the frame taken whole.
    assert_eq!(
        h.sw.process_gso(h.now, p[0], &big, 1515),
        Action::Drop(DropReason::OverMtu)
    );
    assert_eq!(
        h.sw.process(h.now, p[0], &big),
        Action::Drop(DropReason::OverMtu)
    );
}

#[test]
fn trace_matches_process_and_changes_nothing() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let (a, b, c) = (h.access(net), h.access(net), h.access(net));
    // Unknown destination: traced as a flood to the others, with the source new.
    let to_b = frame(mac(2), mac(1));
    let trace = h.sw.trace(h.now, a, &to_b);
    assert!(trace.flooded);
    assert_eq!(trace.learn, Some(WouldLearn::New));
    let mut out: Vec<PortId> = trace.egress.iter().map(|e| e.port).collect();
    out.sort();
    assert_eq!(out, vec![b, c]);
    // Tracing learned nothing: b's reply is still flooded, and the stats did not move.
    assert_eq!(h.sw.stats(), SwitchStats::default());
    assert_eq!(h.ports_reached(b, &frame(mac(1), mac(2))), vec![a, c]);
    // Now both are known: a known unicast frame, traced and then processed, agree.
    let trace = h.sw.trace(h.now, a, &to_b);
    assert_eq!((trace.flooded, trace.fdb_hit), (false, Some(b)));
    assert_eq!(
        trace.egress,
        vec![Egress {
            port: b,
            vlan: None
        }]
    );
    let before = h.sw.fdb_rows(h.now, net);
    assert_eq!(h.ports_reached(a, &to_b), vec![b]);
    assert_eq!(h.sw.fdb_rows(h.now, net).len(), before.len() + 1);
    // A move and a drop are traced too.
    let trace = h.sw.trace(h.now, c, &frame(mac(2), mac(1)));
    assert_eq!(trace.learn, Some(WouldLearn::Move { from: a }));
    let trace = h.sw.trace(h.now, a, &frame(mac(1), mac(2)));
    assert_eq!(trace.drop, Some(DropReason::SameSegment));
    assert_eq!(h.sw.trace(h.now, a, &[0u8; 5]).drop, Some(DropReason::Runt));
}

#[test]
fn networks_count_their_own_events() {
    let mut h = Harness::new(SwitchConfig::default());
    let red = h.sw.add_network();
    let blue = h.sw.add_network();
    let (r1, r2) = (h.access(red), h.access(red));
    let b1 = h.access(blue);
    h.send(r1, &frame(mac(2), mac(1))).unwrap();
    h.send(r2, &frame(mac(1), mac(2))).unwrap();
    h.send(r2, &frame(mac(1), mac(2))).unwrap();
    h.send(b1, &frame(mac(9), mac(8))).unwrap();
    let red_stats = h.sw.network_stats(red).unwrap();
    assert_eq!(
        (
            red_stats.events.flooded,
            red_stats.events.forwarded,
            red_stats.events.learned,
            red_stats.fdb_entries
        ),
        (1, 2, 2, 2)
    );
    let blue_stats = h.sw.network_stats(blue).unwrap();
    assert_eq!(
        (blue_stats.events.flooded, blue_stats.events.learned),
        (1, 1)
    );
    h.advance(400);
    h.sw.handle_aging(h.now);
    assert_eq!(h.sw.network_stats(red).unwrap().events.aged, 2);
    assert_eq!(h.sw.network_stats(red).unwrap().fdb_entries, 0);
}

/// A TCP segment from `src` (10.0.0.`src_ip`) to `dst` (10.0.0.`dst_ip`).
fn tcp_frame(src: MacAddr, dst: MacAddr, ips: (u8, u8), ports: (u16, u16), syn: bool) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([10, 0, 0, ips.0], [10, 0, 0, ips.1], 64)
        .tcp(ports.0, ports.1, 1, 64000);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut frame = Vec::new();
    builder.write(&mut frame, &[]).unwrap();
    frame
}

/// A network with ports for web (A, 10.0.0.2) and db (B, 10.0.0.3) under `policy`.
fn policed(policy: &policy::NetworkPolicy) -> (Harness, NetworkId, PortId, PortId) {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let web = h.access(net);
    let db = h.access(net);
    let endpoints: Vec<policy::Endpoint> = [("web", 2), ("db", 3)]
        .into_iter()
        .map(|(app, last)| policy::Endpoint {
            name: app.into(),
            labels: [("app".to_string(), app.to_string())].into(),
            addrs: vec![std::net::IpAddr::from([10, 0, 0, last])],
        })
        .collect();
    let engine = policy::Engine::new(policy, &endpoints, vec![], 1024).unwrap();
    h.sw.set_policy(net, Some(engine)).unwrap();
    // Both stations known, so unicast is forwarded, not flooded.
    h.sw.add_static(net, A, web).unwrap();
    h.sw.add_static(net, B, db).unwrap();
    (h, net, web, db)
}

fn web_db_policy(action: policy::RuleAction) -> policy::NetworkPolicy {
    policy::NetworkPolicy {
        default: policy::DefaultAction::Deny,
        rules: vec![policy::Rule {
            name: "web-db".into(),
            action,
            direction: policy::Direction::To,
            select: "app=db".into(),
            peer: "app=web".into(),
            proto: policy::Protocol::Tcp,
            ports: Some("5432".into()),
            icmp_type: None,
            staged: false,
        }],
    }
}

#[test]
fn policy_allows_a_flow_and_its_replies_and_names_the_denying_rule() {
    let (mut h, net, web, db) = policed(&web_db_policy(policy::RuleAction::Allow));
    let syn = tcp_frame(A, B, (2, 3), (40000, 5432), true);
    assert_eq!(h.ports_reached(web, &syn), vec![db]);
    let reply = tcp_frame(B, A, (3, 2), (5432, 40000), false);
    assert_eq!(h.ports_reached(db, &reply), vec![web]);
    let back = tcp_frame(B, A, (3, 2), (40001, 22), true);
    let default = policy::RuleName::network_default();
    assert_eq!(h.send(db, &back), Err(DropReason::Denied(default.clone())));
    assert_eq!(
        h.sw.port_drops(db)
            .unwrap()
            .get(&DropReason::Denied(default.clone())),
        1
    );
    // ARP is not policed.
    assert_eq!(h.ports_reached(web, &bytes(ARP_REQUEST)), vec![db]);
    assert_eq!(h.sw.network_stats(net).unwrap().flows, 1);
    // The trace says the same, changing nothing.
    let trace = h.sw.trace(h.now, db, &back);
    assert_eq!(trace.drop, Some(DropReason::Denied(default)));
    assert!(trace.egress.is_empty());
    assert_eq!(h.sw.policy(net).unwrap().rule_stats()[1].hits, 1);
}

#[test]
fn reject_answers_out_of_the_ingress_port() {
    let (mut h, _, web, _) = policed(&web_db_policy(policy::RuleAction::Reject));
    let syn = tcp_frame(A, B, (2, 3), (40000, 5432), true);
    let Action::Reject { reason, reply } = h.sw.process(h.now, web, &syn) else {
        panic!("not rejected");
    };
    assert_eq!(
        reason,
        DropReason::Rejected(policy::RuleName::new("web-db"))
    );
    let answer = policy::Packet::parse(reply).unwrap();
    assert_eq!(answer.dst, std::net::IpAddr::from([10, 0, 0, 2]));
    assert!(answer.has_flag(policy::packet::tcp_flags::RST));
    assert_eq!(&reply[0..6], &A.0);
}

#[test]
fn a_rate_limited_port_loses_only_its_excess() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let limited = h.access(net);
    let free = h.access(net);
    let sink = h.access(net);
    h.sw.add_static(net, B, sink).unwrap();
    let limit = policy::RateLimit {
        packets_per_sec: Some(100),
        burst_packets: Some(10),
        ..Default::default()
    };
    h.sw.set_rate_limit(limited, Some(limit)).unwrap();
    let (mut passed, mut free_passed) = (0, 0);
    // One second at 1000 frames/s from each.
    for _ in 0..1000 {
        h.now += Duration::from_millis(1);
        passed += h.send(limited, &frame(B, A)).is_ok() as u32;
        free_passed += h.send(free, &frame(B, mac(7))).is_ok() as u32;
    }
    assert!((105..=112).contains(&passed), "{passed}");
    assert_eq!(free_passed, 1000);
    assert_eq!(
        h.sw.port_drops(limited)
            .unwrap()
            .get(&DropReason::RateLimited),
        u64::from(1000 - passed)
    );
}

#[test]
fn storm_control_holds_broadcasts_not_unicast() {
    let mut h = Harness::new(SwitchConfig::default());
    let net = h.sw.add_network();
    let a = h.access(net);
    let b = h.access(net);
    h.sw.set_storm_control(net, Some(50)).unwrap();
    h.sw.add_static(net, B, b).unwrap();
    let arp = bytes(ARP_REQUEST);
    let floods = (0..200).filter(|_| h.send(a, &arp).is_ok()).count();
    assert_eq!(floods, 50);
    assert!((0..200).all(|_| h.send(a, &frame(B, A)).is_ok()));
}

#[test]
fn an_unreadable_ip_header_is_dropped_where_policy_must_read_it() {
    let (mut h, _, web, _) = policed(&web_db_policy(policy::RuleAction::Allow));
    let mut broken = tcp_frame(A, B, (2, 3), (40000, 5432), true);
    broken[14] = 0x42; // IPv4 with a 8-byte header
    assert_eq!(h.send(web, &broken), Err(DropReason::MalformedIp));
    // Truncated anywhere: a drop with a reason, never a panic.
    let frame = tcp_frame(A, B, (2, 3), (40000, 5432), true);
    for len in 0..frame.len() {
        let _ = h.sw.process(h.now, web, &frame[..len]);
    }
}
