//! Offloads under load: large TCP transfers arrive intact whether the virtio_net_hdr travels
//! end to end or the switch must segment toward a port without offloads, over IPv4 and IPv6.
//! Needs root.

mod common;

use common::*;
use serde_json::Value;

const MIB: usize = 1024 * 1024;

fn port<'a>(ports: &'a [Value], netns: &str) -> &'a Value {
    ports
        .iter()
        .find(|p| p["netns"] == netns)
        .expect("port listed")
}

fn average_frame(port: &Value, dir: &str) -> u64 {
    port[format!("{dir}_bytes")].as_u64().unwrap()
        / port[format!("{dir}_packets")].as_u64().unwrap().max(1)
}

fn transfer(from: &str, to: &str, to_ip: &str, total: usize) {
    let (sent, got, len, secs) = tcp_transfer(from, to, to_ip, total);
    assert_eq!(len, total, "bytes received");
    assert_eq!(sent, got, "payload digest");
    println!(
        "{} MiB to {to_ip} in {secs:.2} s: {:.2} Gbit/s",
        total / MIB,
        total as f64 * 8.0 / secs / 1e9
    );
}

#[test]
fn a_gigabyte_crosses_intact_as_offloaded_frames() {
    let mut bed = Bed::start();
    let [a, b]: [String; 2] = bed
        .network_with("app", "10.89.40.0/24", &["a", "b"])
        .try_into()
        .unwrap();
    transfer(&a, &b, "10.89.40.3", 1024 * MIB);
    let ports = bed.ports();
    // TSO at work: frames far larger than the 1514-byte wire size crossed the switch.
    assert!(average_frame(port(&ports, &a), "rx") > 4000, "{ports:?}");
    assert!(average_frame(port(&ports, &b), "tx") > 4000, "{ports:?}");
    assert_eq!(port(&ports, &b)["drops"], 0, "{ports:?}");
}

#[test]
fn the_switch_segments_toward_a_port_without_offloads() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "app",
        "--subnet",
        "10.89.41.0/24",
        "--subnet",
        "fd00:89:41::/64",
    ]);
    let a = bed.netns("a");
    let plain = bed.netns("plain");
    bed.ok(&["connect", "app", &a]);
    bed.ok(&["connect", "app", &plain, "--no-offload"]);
    transfer(&a, &plain, "10.89.41.3", 256 * MIB);
    transfer(&a, &plain, "fd00:89:41::3", 128 * MIB);
    // And the other way: plain frames into an offloading port.
    transfer(&plain, &a, "10.89.41.2", 64 * MIB);
    let ports = bed.ports();
    let plain_port = port(&ports, &plain);
    assert!(
        average_frame(port(&ports, &a), "rx") > 4000,
        "GSO frames came in: {ports:?}"
    );
    // Every frame written to the plain port fits its MTU: segmented, never truncated.
    assert!(average_frame(plain_port, "tx") <= 1514, "{ports:?}");
    assert_eq!(plain_port["drops"], 0, "{ports:?}");
}

#[test]
fn ipv6_tcp_crosses_intact_with_tso6() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "v6",
        "--subnet",
        "10.89.42.0/24",
        "--subnet",
        "fd00:89:42::/64",
    ]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    bed.ok(&["connect", "v6", &a]);
    bed.ok(&["connect", "v6", &b]);
    transfer(&a, &b, "fd00:89:42::3", 256 * MIB);
    let ports = bed.ports();
    assert!(average_frame(port(&ports, &a), "rx") > 4000, "{ports:?}");
}

#[test]
fn mixed_mtus_on_one_network_drop_oversize_frames_and_keep_tcp_flowing() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "jumbo",
        "--subnet",
        "10.89.43.0/24",
        "--mtu",
        "9000",
    ]);
    let big = bed.netns("big");
    let small = bed.netns("small");
    bed.ok(&["connect", "jumbo", &big]);
    bed.ok(&["connect", "jumbo", &small, "--mtu", "1500"]);
    assert!(run("ip", &["-n", &small, "link", "show", "eth0"]).contains("mtu 1500"));
    // TCP negotiates its segment size from both ends: nothing wedges either way.
    transfer(&big, &small, "10.89.43.3", 64 * MIB);
    transfer(&small, &big, "10.89.43.2", 64 * MIB);
    // An 8000-byte datagram that may not be fragmented cannot reach the small port: dropped
    // and counted there, never cut short.
    assert!(!in_netns(
        &big,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "8000",
            "10.89.43.3"
        ]
    ));
    let ports = bed.ports();
    let small_port = port(&ports, &small);
    assert!(
        small_port["drops_by_reason"]["over_mtu"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{ports:?}"
    );
    assert_eq!(
        small_port["drops"], small_port["drops_by_reason"]["over_mtu"],
        "{ports:?}"
    );
    // Small pings still pass.
    assert!(ping(&big, "10.89.43.3", 2));
}
