//! Micro-benchmarks of policy; criterion reports time per packet. Cases, each with 10, 1,000
//! and 10,000 rules that all select the two endpoints of the packet (rule i allows TCP port
//! 20000+i, the last rule decides the packet), so a linear scan tests every rule:
//! - `packet_parse/tcp`: the fields policy reads, from a TCP frame;
//! - `matcher/N`: the compiled matcher deciding a new flow;
//! - `naive/N`: the linear scan it replaces (the specification in `policy::matcher`);
//! - `established/N`: a packet of a tracked flow through `Engine::process` (one lookup);
//! - `switch/N`: a known unicast TCP frame of a tracked flow through `Switch::process`;
//! - `compile_64_endpoints/N`: compiling N rules for 64 endpoints (each rule selects 8), as
//!   every connect, disconnect, lease and policy change does.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use policy::matcher::{evaluate_naive, Matcher};
use policy::{Endpoint, Engine, NetworkPolicy, Packet};
use vswitch_core::frame::MacAddr;
use vswitch_core::switch::{Action, PortConfig, PortMode, Switch, SwitchConfig};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn endpoints() -> Vec<Endpoint> {
    ["client", "server"]
        .iter()
        .enumerate()
        .map(|(i, name)| Endpoint {
            name: name.to_string(),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            addrs: vec![IpAddr::from([10, 0, 0, 2 + i as u8])],
        })
        .collect()
}

fn rules(n: usize) -> NetworkPolicy {
    let mut text = String::from("default = \"deny\"\n");
    for i in 0..n - 1 {
        text += &format!(
            "[[rules]]\nname = \"r{i}\"\naction = \"allow\"\ndirection = \"to\"\nselect = \"app=server\"\npeer = \"app=client\"\nproto = \"tcp\"\nports = \"{}\"\n",
            20000 + i
        );
    }
    text += "[[rules]]\nname = \"last\"\naction = \"allow\"\ndirection = \"to\"\nselect = \"app=server\"\npeer = \"app=client\"\n";
    toml::from_str(&text).unwrap()
}

fn tcp_frame(ack: bool) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3])
        .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
        .tcp(40000, 5201, 1, 64000);
    let builder = if ack { builder.ack(1) } else { builder.syn() };
    let mut frame = Vec::new();
    builder.write(&mut frame, &[0; 64]).unwrap();
    frame
}

fn matcher(c: &mut Criterion) {
    let endpoints = endpoints();
    let packet = Packet::parse(&tcp_frame(false)).unwrap();
    let mut g = c.benchmark_group("matcher");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let policy = rules(n);
        let m = Matcher::compile(&policy, &endpoints).unwrap();
        assert_eq!(m.evaluate(&packet).rule, Some(n as u32 - 1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(m.evaluate(black_box(&packet))))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("naive");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let policy = rules(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(evaluate_naive(&policy, &endpoints, black_box(&packet))))
        });
    }
    g.finish();
}

fn parse(c: &mut Criterion) {
    let frame = tcp_frame(true);
    let mut g = c.benchmark_group("packet_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tcp", |b| {
        b.iter(|| black_box(Packet::parse(black_box(&frame))))
    });
    g.finish();
}

fn compile(c: &mut Criterion) {
    // 64 endpoints in 8 apps; every rule selects one app's 8 endpoints.
    let endpoints: Vec<Endpoint> = (0..64u8)
        .map(|i| Endpoint {
            name: format!("e{i}"),
            labels: BTreeMap::from([("app".to_string(), format!("app{}", i % 8))]),
            addrs: vec![IpAddr::from([10, 0, 1, i])],
        })
        .collect();
    let mut g = c.benchmark_group("compile_64_endpoints");
    g.sample_size(10);
    for n in SIZES {
        let mut policy = rules(n);
        for (i, rule) in policy.rules.iter_mut().enumerate() {
            rule.select = format!("app=app{}", i % 8);
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(Matcher::compile(&policy, &endpoints).unwrap()))
        });
    }
    g.finish();
}

fn established(c: &mut Criterion) {
    let now = Instant::now();
    let syn = Packet::parse(&tcp_frame(false)).unwrap();
    let ack = Packet::parse(&tcp_frame(true)).unwrap();
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let mut engine = Engine::new(&rules(n), &endpoints(), vec![], 1 << 18).unwrap();
        assert_eq!(engine.process(now, &syn), policy::Decision::Allow);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(engine.process(now, black_box(&ack))))
        });
    }
    g.finish();
}

fn switch(c: &mut Criterion) {
    let now = Instant::now();
    let syn = tcp_frame(false);
    let ack = tcp_frame(true);
    let mut g = c.benchmark_group("switch");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let mut sw = Switch::new(SwitchConfig::default());
        let net = sw.add_network();
        let config = PortConfig {
            mode: PortMode::Access(net),
            mtu: 1500,
            security: None,
            rate_limit: None,
            reach: Default::default(),
        };
        let client = sw.add_port(config.clone()).unwrap();
        let server = sw.add_port(config).unwrap();
        sw.add_static(net, MacAddr([2, 0, 0, 0, 0, 3]), server)
            .unwrap();
        let engine = Engine::new(&rules(n), &endpoints(), vec![], 1 << 18).unwrap();
        sw.set_policy(net, Some(engine)).unwrap();
        assert!(matches!(
            sw.process(now, client, &syn),
            Action::Forward { .. }
        ));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| match sw.process(now, client, black_box(&ack)) {
                Action::Forward { to, .. } => black_box(to),
                other => panic!("{other:?}"),
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, matcher, established, switch, compile);
criterion_main!(benches);
