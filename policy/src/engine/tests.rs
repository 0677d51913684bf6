use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::*;
use crate::rules::{DefaultAction, Direction, Protocol, Rule};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn endpoints() -> Vec<Endpoint> {
    [("web1", "web", 2), ("db1", "db", 3)]
        .into_iter()
        .map(|(name, app, last)| Endpoint {
            name: name.into(),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            addrs: vec![ip(last)],
        })
        .collect()
}

fn tcp(src: u8, sport: u16, dst: u8, dport: u16, flags: u8) -> Packet {
    Packet {
        src: ip(src),
        dst: ip(dst),
        proto: proto::TCP,
        sport,
        dport,
        icmp_type: None,
        tcp_flags: flags,
        quoted: None,
    }
}

fn web_to_db(action: RuleAction, staged: bool) -> NetworkPolicy {
    NetworkPolicy {
        default: DefaultAction::Deny,
        rules: vec![Rule {
            name: "web-db".into(),
            action,
            direction: Direction::To,
            select: "app=db".into(),
            peer: "app=web".into(),
            proto: Protocol::Tcp,
            ports: Some("5432".into()),
            icmp_type: None,
            staged,
        }],
    }
}

fn engine(policy: &NetworkPolicy) -> Engine {
    Engine::new(policy, &endpoints(), vec![ip(1)], 1024).unwrap()
}

#[test]
fn replies_pass_and_the_other_way_is_denied() {
    let now = Instant::now();
    let mut e = engine(&web_to_db(RuleAction::Allow, false));
    assert_eq!(
        e.process(now, &tcp(2, 40000, 3, 5432, tcp_flags::SYN)),
        Decision::Allow
    );
    let reply = tcp(3, 5432, 2, 40000, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!(e.process(now, &reply), Decision::Allow);
    assert_eq!(
        e.process(now, &tcp(3, 40001, 2, 22, tcp_flags::SYN)),
        Decision::Deny(RuleName::network_default())
    );
    // A reply-looking packet of no flow is a new flow, and denied.
    assert_eq!(
        e.process(now, &tcp(3, 5432, 2, 40009, tcp_flags::ACK)),
        Decision::Deny(RuleName::network_default())
    );
    let stats = e.rule_stats();
    assert_eq!((stats[0].hits, stats[1].hits), (2, 2));
    assert_eq!(e.flows(now).len(), 1);
    assert_eq!(e.flows(now)[0].rule, "web-db");
}

#[test]
fn staged_rules_count_and_never_decide() {
    let now = Instant::now();
    let mut policy = web_to_db(RuleAction::Deny, true);
    policy.default = DefaultAction::Allow;
    let mut e = engine(&policy);
    for port in 0..3 {
        assert_eq!(
            e.process(now, &tcp(2, 40000 + port, 3, 5432, tcp_flags::SYN)),
            Decision::Allow
        );
    }
    let stats = e.rule_stats();
    assert_eq!(
        (stats[0].hits, stats[0].staged_hits, stats[1].hits),
        (0, 3, 3)
    );
    let why = e.explain(now, &tcp(2, 41000, 3, 5432, tcp_flags::SYN));
    assert_eq!(
        why.staged,
        Some((RuleName::new("web-db"), RuleAction::Deny))
    );
    assert_eq!(why.decision, Decision::Allow);
}

#[test]
fn a_new_policy_cuts_forbidden_flows_and_keeps_allowed_ones() {
    let now = Instant::now();
    let mut open = web_to_db(RuleAction::Allow, false);
    open.default = DefaultAction::Allow;
    let mut e = engine(&open);
    let to_db = tcp(2, 40000, 3, 5432, tcp_flags::SYN);
    let to_web = tcp(3, 40000, 2, 80, tcp_flags::SYN);
    assert_eq!(e.process(now, &to_db), Decision::Allow);
    assert_eq!(e.process(now, &to_web), Decision::Allow);
    let mut next = engine(&web_to_db(RuleAction::Allow, false));
    next.succeed(e);
    let mut e = next;
    let web_reply = tcp(2, 80, 3, 40000, tcp_flags::ACK);
    assert_eq!(
        e.process(now, &web_reply),
        Decision::Deny(RuleName::network_default())
    );
    let db_reply = tcp(3, 5432, 2, 40000, tcp_flags::ACK);
    assert_eq!(e.process(now, &db_reply), Decision::Allow);
    assert_eq!(e.flows(now).len(), 1);
    // Counters of a rule that kept its name carry over.
    assert_eq!(e.rule_stats()[0].hits, 2);
}

#[test]
fn infrastructure_passes_default_deny() {
    let now = Instant::now();
    let mut e = engine(&web_to_db(RuleAction::Allow, false));
    let mut dns = tcp(2, 5353, 1, 53, 0);
    dns.proto = proto::UDP;
    assert_eq!(e.process(now, &dns), Decision::Allow);
    let mut dhcp = tcp(2, 68, 1, 67, 0);
    dhcp.proto = proto::UDP;
    assert_eq!(e.process(now, &dhcp), Decision::Allow);
    // DNS to anyone else is not infrastructure.
    dns.dst = ip(3);
    assert!(matches!(e.process(now, &dns), Decision::Deny(_)));
    assert!(e.explain(now, &dhcp).infrastructure);
}

#[test]
fn echo_replies_follow_their_request() {
    let now = Instant::now();
    let mut policy = web_to_db(RuleAction::Allow, false);
    policy.rules[0].proto = Protocol::Icmp;
    policy.rules[0].ports = None;
    let mut e = engine(&policy);
    let request = Packet {
        proto: proto::ICMP,
        icmp_type: Some(8),
        sport: 7,
        dport: 7,
        ..tcp(2, 0, 3, 0, 0)
    };
    assert_eq!(e.process(now, &request), Decision::Allow);
    let reply = Packet {
        src: request.dst,
        dst: request.src,
        icmp_type: Some(0),
        ..request
    };
    assert_eq!(e.process(now, &reply), Decision::Allow);
    // A request from db is new, and denied.
    assert!(matches!(
        e.process(
            now,
            &Packet {
                icmp_type: Some(8),
                ..reply
            }
        ),
        Decision::Deny(_)
    ));
}

#[test]
fn icmp_errors_about_a_tracked_flow_pass_and_others_do_not() {
    let now = Instant::now();
    let mut policy = web_to_db(RuleAction::Allow, false);
    policy.rules[0].proto = Protocol::Udp;
    let mut e = engine(&policy);
    let mut datagram = tcp(2, 40000, 3, 5432, 0);
    datagram.proto = proto::UDP;
    assert_eq!(e.process(now, &datagram), Decision::Allow);
    let unreachable = |about: Packet| Packet {
        src: about.dst,
        dst: about.src,
        proto: proto::ICMP,
        sport: 0,
        dport: 0,
        icmp_type: Some(3),
        tcp_flags: 0,
        quoted: Some(crate::packet::Quoted {
            src: about.src,
            dst: about.dst,
            proto: about.proto,
            sport: about.sport,
            dport: about.dport,
        }),
    };
    assert_eq!(e.process(now, &unreachable(datagram)), Decision::Allow);
    assert!(e.explain(now, &unreachable(datagram)).tracked);
    let mut untracked = datagram;
    untracked.sport = 40001;
    assert!(matches!(
        e.process(now, &unreachable(untracked)),
        Decision::Deny(_)
    ));
}
