//! Micro-benchmarks of the sans-IO core; criterion reports time per frame, i.e. frames per second
//! per core. Cases:
//! - `parse`: Ethernet header of an untagged and an 802.1Q-tagged frame;
//! - `fdb_lookup/N`: known-MAC lookup in a table of 1 k, 100 k and 1 M learned entries;
//! - `process/unicast`: a known unicast frame through `Switch::process` (learn + lookup);
//! - `process/unicast_port_security`: the same with an IPv4/UDP frame checked by port security;
//! - `process/flood/N`: a broadcast frame flooded to N-1 ports (N = 8, 64), targets walked;
//! - `process/vlan_push`: access -> trunk, frame retagged into a reused buffer;
//! - `process/vlan_pop`: trunk -> access, tag removed into a reused buffer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vswitch_bench::{frame, mac};
use vswitch_core::fdb::Fdb;
use vswitch_core::frame::{egress_parts, vlan_tag, Header, MacAddr};
use vswitch_core::ids::{NetworkId, PortId};
use vswitch_core::switch::{Action, PortConfig, PortMode, Switch, SwitchConfig};

fn access(sw: &mut Switch, net: NetworkId) -> PortId {
    sw.add_port(PortConfig {
        mode: PortMode::Access(net),
        mtu: 1500,
        security: None,
        rate_limit: None,
        reach: Default::default(),
    })
    .unwrap()
}

fn parse(c: &mut Criterion) {
    let untagged = frame(mac(1), mac(2));
    let tag = vlan_tag(100);
    let tagged = egress_parts(&untagged, 0, &tag).concat();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("untagged", |b| {
        b.iter(|| Header::parse(black_box(&untagged)))
    });
    g.bench_function("tagged", |b| b.iter(|| Header::parse(black_box(&tagged))));
    g.finish();
}

fn fdb_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb_lookup");
    g.throughput(Throughput::Elements(1));
    let now = Instant::now();
    for size in [1_000u32, 100_000, 1_000_000] {
        let mut fdb = Fdb::new(Duration::from_secs(300), u32::MAX);
        for n in 0..size {
            fdb.learn(now, NetworkId(0), mac(n), PortId(n % 64));
        }
        let mut n = 0;
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| {
                n = (n + 7919) % size;
                black_box(fdb.lookup(now, NetworkId(0), mac(n)))
            })
        });
    }
    g.finish();
}

fn process(c: &mut Criterion) {
    let mut g = c.benchmark_group("process");
    g.throughput(Throughput::Elements(1));
    let now = Instant::now();

    let mut sw = Switch::new(SwitchConfig {
        mac_limit: u32::MAX,
        ..Default::default()
    });
    let net = sw.add_network();
    let (a, b) = (access(&mut sw, net), access(&mut sw, net));
    // 100 k stations learned on a third port, as the target case.
    let far = access(&mut sw, net);
    for n in 10..100_010 {
        sw.process(now, far, &frame(MacAddr::BROADCAST, mac(n)));
    }
    sw.process(now, b, &frame(mac(1), mac(2)));
    let to_b = frame(mac(2), mac(1));
    g.bench_function("unicast", |bench| {
        bench.iter(|| match sw.process(now, a, black_box(&to_b)) {
            Action::Forward { to, .. } => black_box(to),
            other => panic!("{other:?}"),
        })
    });

    // The same switch, a's port now checked: source MAC and IPv4 source of a real UDP frame.
    sw.set_port_security(
        a,
        Some(policy::PortSecurity {
            mac: mac(1).0,
            ipv4: vec![[10, 0, 0, 1].into()],
            ipv6: Vec::new(),
        }),
    )
    .unwrap();
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(1).0, mac(2).0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5000, 5001)
        .write(&mut udp, &[0; 18])
        .unwrap();
    g.bench_function("unicast_port_security", |bench| {
        bench.iter(|| match sw.process(now, a, black_box(&udp)) {
            Action::Forward { to, .. } => black_box(to),
            other => panic!("{other:?}"),
        })
    });

    for ports in [8usize, 64] {
        let mut sw = Switch::new(SwitchConfig::default());
        let net = sw.add_network();
        let first = access(&mut sw, net);
        for _ in 1..ports {
            access(&mut sw, net);
        }
        let broadcast = frame(MacAddr::BROADCAST, mac(1));
        g.bench_with_input(BenchmarkId::new("flood", ports), &ports, |bench, _| {
            bench.iter(|| {
                let action = sw.process(now, first, black_box(&broadcast));
                action.targets().count()
            })
        });
    }

    let mut sw = Switch::new(SwitchConfig::default());
    let net = sw.add_network();
    let edge = access(&mut sw, net);
    let trunk = sw
        .add_port(PortConfig {
            mode: PortMode::Trunk {
                vlans: vec![(100, net)],
                native: None,
            },
            mtu: 1500,
            security: None,
            rate_limit: None,
            reach: Default::default(),
        })
        .unwrap();
    sw.process(
        now,
        trunk,
        &egress_parts(&frame(mac(1), mac(2)), 0, &vlan_tag(100)).concat(),
    );
    let to_trunk = frame(mac(2), mac(1));
    let mut out = Vec::with_capacity(2048);
    g.bench_function("vlan_push", |bench| {
        bench.iter(|| {
            let action = sw.process(now, edge, black_box(&to_trunk));
            if let Action::Forward {
                to,
                ingress_tag_len,
            } = action
            {
                let tag = vlan_tag(to.vlan.unwrap_or(0));
                out.clear();
                for part in egress_parts(&to_trunk, ingress_tag_len, &tag) {
                    out.extend_from_slice(part);
                }
            }
            black_box(out.len())
        })
    });
    let from_trunk = egress_parts(&frame(mac(1), mac(2)), 0, &vlan_tag(100)).concat();
    g.bench_function("vlan_pop", |bench| {
        bench.iter(|| {
            let action = sw.process(now, trunk, black_box(&from_trunk));
            if let Action::Forward {
                ingress_tag_len, ..
            } = action
            {
                out.clear();
                for part in egress_parts(&from_trunk, ingress_tag_len, &[]) {
                    out.extend_from_slice(part);
                }
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, fdb_lookup, process);
criterion_main!(benches);
