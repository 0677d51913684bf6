//! Policy enforced in the switch, against real containers: port security (anti-spoofing).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{eventually, in_netns, ping, run, spawn_in_netns, Bed};

/// Frames dropped as spoofed on the port of `endpoint`.
fn spoofed(bed: &Bed, endpoint: &str) -> u64 {
    bed.ports()
        .iter()
        .find(|p| p["endpoint"] == endpoint)
        .and_then(|p| p["drops_by_reason"]["spoofed"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_container_that_changes_its_mac_or_address_reaches_no_one() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "ps", "--subnet", "10.79.0.0/24"]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    let free = bed.netns("free");
    bed.ok(&["connect", "ps", &a, "--ip", "10.79.0.2"]);
    bed.ok(&["connect", "ps", &b, "--ip", "10.79.0.3"]);
    bed.ok(&[
        "connect",
        "ps",
        &free,
        "--ip",
        "10.79.0.4",
        "--no-port-security",
    ]);
    assert!(ping(&a, "10.79.0.3", 1), "own address works");
    assert_eq!(spoofed(&bed, &a), 0);

    // Another address on the same interface: nothing sent from it gets through.
    run(
        "ip",
        &["-n", &a, "addr", "add", "10.79.0.99/24", "dev", "eth0"],
    );
    assert!(!in_netns(
        &a,
        &[
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "10.79.0.99",
            "10.79.0.3"
        ]
    ));
    let after_ip = spoofed(&bed, &a);
    assert!(after_ip >= 2, "spoofed drops: {after_ip}");

    // Another MAC: nothing at all gets through.
    run(
        "ip",
        &[
            "-n",
            &a,
            "link",
            "set",
            "eth0",
            "address",
            "02:00:00:00:79:99",
        ],
    );
    run("ip", &["-n", &a, "neigh", "flush", "dev", "eth0"]);
    assert!(!ping(&a, "10.79.0.3", 2));
    assert!(spoofed(&bed, &a) > after_ip);
    assert!(ping(&b, "10.79.0.1", 1), "the rest of the network is fine");

    // With port security off, the same trick works.
    run(
        "ip",
        &["-n", &free, "addr", "add", "10.79.0.98/24", "dev", "eth0"],
    );
    assert!(in_netns(
        &free,
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-I",
            "10.79.0.98",
            "10.79.0.3"
        ]
    ));
    assert_eq!(spoofed(&bed, &free), 0);

    // The trace says why.
    let report = bed.json(&[
        "trace",
        "ps",
        "--from",
        &b,
        "--dst-mac",
        "02:00:00:00:79:99",
    ]);
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stage"] == "port security"
                && s["detail"].as_str().unwrap().contains("10.79.0.3")),
        "{report}"
    );
}

#[test]
fn a_rogue_dhcp_server_in_a_container_is_silenced() {
    let mut bed = Bed::start();
    let ns = bed.network_with("rogue", "10.78.0.0/24", &["r"]);
    let r = ns[0].clone();
    // Replies from the DHCP server port, as a rogue server sends them.
    spawn_in_netns(&r, || {
        let socket = UdpSocket::bind("10.78.0.2:67").unwrap();
        socket.set_broadcast(true).unwrap();
        for _ in 0..5 {
            socket
                .send_to(b"\x02\x01\x06\x00offer", "255.255.255.255:68")
                .unwrap();
        }
    })
    .join()
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || spoofed(&bed, &r) >= 5),
        "rogue DHCP not dropped: {}",
        spoofed(&bed, &r)
    );
}
