use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::rules::Rule;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn endpoint(name: &str, labels: &[(&str, &str)], last: u8) -> Endpoint {
    Endpoint {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        addrs: vec![ip(last)],
    }
}

fn tcp(src: u8, dst: u8, dport: u16) -> Packet {
    Packet {
        src: ip(src),
        dst: ip(dst),
        proto: proto::TCP,
        sport: 40000,
        dport,
        icmp_type: None,
        tcp_flags: 0x02,
        quoted: None,
    }
}

fn rule(name: &str, action: RuleAction, direction: Direction, select: &str, peer: &str) -> Rule {
    Rule {
        name: name.into(),
        action,
        direction,
        select: select.into(),
        peer: peer.into(),
        proto: Protocol::Any,
        ports: None,
        icmp_type: None,
        staged: false,
    }
}

#[test]
fn web_to_db_with_default_deny() {
    let endpoints = [
        endpoint("web1", &[("app", "web")], 2),
        endpoint("db1", &[("app", "db")], 3),
    ];
    let mut allow = rule(
        "web-db",
        RuleAction::Allow,
        Direction::To,
        "app=db",
        "app=web",
    );
    allow.proto = Protocol::Tcp;
    allow.ports = Some("5432".into());
    let policy = NetworkPolicy {
        default: DefaultAction::Deny,
        rules: vec![allow],
    };
    let m = Matcher::compile(&policy, &endpoints).unwrap();
    assert_eq!(m.evaluate(&tcp(2, 3, 5432)).rule, Some(0));
    assert_eq!(m.evaluate(&tcp(2, 3, 5432)).action, RuleAction::Allow);
    assert_eq!(m.evaluate(&tcp(2, 3, 5433)).action, RuleAction::Deny);
    assert_eq!(m.evaluate(&tcp(3, 2, 5432)).action, RuleAction::Deny);
    // An address no endpoint holds is no web.
    assert_eq!(m.evaluate(&tcp(9, 3, 5432)).action, RuleAction::Deny);
}

#[test]
fn first_match_wins_and_staged_rules_only_count() {
    let endpoints = [endpoint("a", &[], 2), endpoint("b", &[], 3)];
    let mut staged = rule("try-deny", RuleAction::Deny, Direction::To, "*", "any");
    staged.staged = true;
    let policy = NetworkPolicy {
        default: DefaultAction::Allow,
        rules: vec![
            staged,
            rule(
                "from-a",
                RuleAction::Reject,
                Direction::From,
                "name=a",
                "any",
            ),
            rule("to-b", RuleAction::Allow, Direction::To, "name=b", "any"),
        ],
    };
    let m = Matcher::compile(&policy, &endpoints).unwrap();
    let v = m.evaluate(&tcp(2, 3, 80));
    assert_eq!(
        (v.action, v.rule, v.staged),
        (RuleAction::Reject, Some(1), Some(0))
    );
    let v = m.evaluate(&tcp(3, 2, 80));
    assert_eq!(
        (v.action, v.rule, v.staged),
        (RuleAction::Allow, None, Some(0))
    );
}

#[test]
fn refuses_an_invalid_rule_set() {
    let mut bad = rule("bad", RuleAction::Allow, Direction::To, "*", "any");
    bad.ports = Some("80".into());
    let policy = NetworkPolicy {
        default: DefaultAction::Deny,
        rules: vec![bad],
    };
    assert_eq!(Matcher::compile(&policy, &[]).unwrap_err().field, "ports");
}

const SELECTORS: [&str; 6] = ["*", "app=a", "name=e1", "app=b,tier=x", "tier=y", "app=zz"];
const PEERS: [&str; 7] = [
    "any",
    "10.0.0.0/30",
    "10.0.0.3",
    "app=c",
    "name=e0",
    "*",
    "10.0.0.8/29",
];
const PORTS: [Option<&str>; 6] = [
    None,
    Some("80"),
    Some("8000-8100"),
    Some("1-65535"),
    Some("53"),
    Some("0-300"),
];
const PROTOS: [Protocol; 5] = [
    Protocol::Any,
    Protocol::Tcp,
    Protocol::Udp,
    Protocol::Icmp,
    Protocol::Icmpv6,
];

type RuleSpec = (u8, bool, usize, usize, usize, usize, Option<u8>, bool);

fn arb_rule() -> impl Strategy<Value = RuleSpec> {
    (
        0u8..3,
        any::<bool>(),
        0..SELECTORS.len(),
        0..PEERS.len(),
        0..PROTOS.len(),
        0..PORTS.len(),
        prop::option::of(prop::sample::select(vec![0u8, 3, 8, 128])),
        prop::bool::weighted(0.2),
    )
}

fn build_rule(i: usize, spec: RuleSpec) -> Rule {
    let (action, to, select, peer, proto, ports, icmp_type, staged) = spec;
    let proto = PROTOS[proto];
    Rule {
        name: format!("r{i}"),
        action: [RuleAction::Allow, RuleAction::Deny, RuleAction::Reject][action as usize],
        direction: if to { Direction::To } else { Direction::From },
        select: SELECTORS[select].into(),
        peer: PEERS[peer].into(),
        proto,
        ports: if matches!(proto, Protocol::Tcp | Protocol::Udp) {
            PORTS[ports].map(String::from)
        } else {
            None
        },
        icmp_type: if matches!(proto, Protocol::Icmp | Protocol::Icmpv6) {
            icmp_type
        } else {
            None
        },
        staged,
    }
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    (
        1u8..10,
        1u8..10,
        prop::sample::select(vec![proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6, 47]),
        prop::sample::select(vec![22u16, 53, 80, 299, 301, 8000, 8050, 8100, 8101]),
        prop::sample::select(vec![0u8, 3, 8, 128]),
    )
        .prop_map(|(s, d, p, port, t)| Packet {
            src: ip(s),
            dst: ip(d),
            proto: p,
            sport: 1234,
            dport: if matches!(p, proto::TCP | proto::UDP) {
                port
            } else {
                0
            },
            icmp_type: matches!(p, proto::ICMP | proto::ICMPV6).then_some(t),
            tcp_flags: 0,
            quoted: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The indexed matcher gives the linear scan's verdict for any rules and packets.
    #[test]
    fn matcher_agrees_with_the_linear_scan(
        specs in prop::collection::vec(arb_rule(), 0..40),
        deny in any::<bool>(),
        packets in prop::collection::vec(arb_packet(), 1..40),
    ) {
        let endpoints = [
            endpoint("e0", &[("app", "a"), ("tier", "x")], 1),
            endpoint("e1", &[("app", "b"), ("tier", "x")], 2),
            endpoint("e2", &[("app", "c"), ("tier", "y")], 3),
            endpoint("e3", &[("app", "a"), ("tier", "y")], 4),
            // Holds an address another endpoint holds too: the first one owns it.
            endpoint("e4", &[("app", "c")], 4),
            endpoint("e5", &[("app", "b")], 9),
        ];
        let policy = NetworkPolicy {
            default: if deny { DefaultAction::Deny } else { DefaultAction::Allow },
            rules: specs.into_iter().enumerate().map(|(i, s)| build_rule(i, s)).collect(),
        };
        let m = Matcher::compile(&policy, &endpoints).unwrap();
        for p in &packets {
            prop_assert_eq!(m.evaluate(p), evaluate_naive(&policy, &endpoints, p), "{:?}", p);
        }
    }
}
