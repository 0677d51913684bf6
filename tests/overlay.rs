//! Overlay networks across hosts: each "host" is a namespace of the test's own with a daemon
//! in it, joined to the others by an underlay (a bridge in a further namespace of the test's
//! own); containers on different hosts share one L2 segment over VXLAN. Covers reachability
//! and bulk data across hosts, VNI isolation, refused underlay datagrams, and a Linux kernel
//! vxlan device as a peer. Needs root.

mod common;

use std::time::Duration;

use common::*;

fn mtu_of(netns: &str) -> String {
    run(
        "ip",
        &["netns", "exec", netns, "cat", "/sys/class/net/eth0/mtu"],
    )
    .trim()
    .to_string()
}

#[test]
fn containers_on_two_hosts_share_one_segment() {
    let mut hosts = Hosts::start(2);
    hosts.overlay(1, "ov", "10.71.0.0/24", "10.71.0.0/25", &[], &[2]);
    hosts.overlay(2, "ov", "10.71.0.0/24", "10.71.0.128/25", &[], &[1]);
    let (c1, ip1) = hosts.container(1, "ov", "c1");
    let (c2, ip2) = hosts.container(2, "ov", "c2");
    // Room for the encapsulation on a 1500-byte underlay, as Docker's overlay leaves.
    assert_eq!(mtu_of(&c1), "1450");
    assert!(ping(&c1, &ip2, 3), "host 1's container reaches host 2's");
    assert!(ping(&c2, &ip1, 3), "and back");
    // Each host's gateway answers its own containers.
    assert!(ping(&c1, "10.71.0.1", 2));
    assert!(ping(&c2, "10.71.0.1", 2));
    let (sent, got, bytes, _) = tcp_transfer(&c1, &c2, &ip2, 100 << 20);
    assert_eq!(bytes, 100 << 20, "100 MB across hosts");
    assert_eq!(sent, got, "intact");
    let (local, peers) = hosts.hosts(1);
    assert_eq!(local["address"], format!("{}:4789", underlay_ip(1)));
    assert_eq!(local["networks"], serde_json::json!(["ov"]));
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["address"], format!("{}:4789", underlay_ip(2)));
    assert_eq!(peers[0]["state"], "static");
    assert!(
        peers[0]["tx_packets"].as_u64().unwrap() > 70_000,
        "{peers:?}"
    );
    // The tunnel to host 2 is a port like any other, with its counters.
    let ports = hosts.bed(1).json(&["ports"]);
    let tunnel = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "tunnel")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        tunnel["ifname"],
        format!("{}:4789", underlay_ip(2)),
        "{ports}"
    );
    assert!(
        tunnel["tx_packets"].as_u64().unwrap_or(0) > 70_000,
        "{tunnel}"
    );
    let text = hosts.bed(1).ok(&["network", "ls"]);
    assert!(
        text.contains("overlay") && text.contains("global"),
        "{text}"
    );
}

#[test]
fn overlays_with_different_vnis_are_isolated_and_strays_are_counted() {
    let mut hosts = Hosts::start(2);
    // The same subnet on both hosts, under two VNIs: two segments that must not meet.
    hosts.overlay(
        1,
        "blue",
        "10.72.0.0/24",
        "10.72.0.0/25",
        &["--vni", "5001"],
        &[2],
    );
    hosts.overlay(
        2,
        "red",
        "10.72.0.0/24",
        "10.72.0.128/25",
        &["--vni", "5002"],
        &[1],
    );
    let (c1, _) = hosts.container(1, "blue", "c1");
    let (_, ip2) = hosts.container(2, "red", "c2");
    assert!(!ping(&c1, &ip2, 2), "a VNI is its own segment");
    let (local, _) = hosts.hosts(2);
    assert!(
        local["drops_by_reason"]["unknown_tunnel"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "host 2 refused VNI 5001 by name: {local}"
    );
    // Datagrams that are no VXLAN: too short, and without the VNI flag.
    let host2 = hosts.beds[1].1.clone();
    let target = format!("/dev/udp/{}/4789", underlay_ip(1));
    for payload in [
        "'x'",
        "'\\x00\\x00\\x00\\x00\\x00\\x13\\x89\\x00aaaaaaaaaaaaaaaa'",
    ] {
        let script = format!("printf {payload} > {target}");
        run("ip", &["netns", "exec", &host2, "bash", "-c", &script]);
    }
    assert!(
        eventually(std::time::Duration::from_secs(3), || {
            let (local, _) = hosts.hosts(1);
            local["drops_by_reason"]["malformed_tunnel"]
                .as_u64()
                .unwrap_or(0)
                >= 2
        }),
        "{:?}",
        hosts.hosts(1)
    );
    // The daemon carries on: its own gateway still answers.
    assert!(ping(&c1, "10.72.0.1", 2));
}

/// A Linux kernel vxlan device with the same VNI, bridged to a container in a namespace of its
/// own, on the same underlay: the usual way a host without vswitch joins.
#[test]
fn a_kernel_vxlan_peer_exchanges_arp_ping_and_tcp() {
    let mut hosts = Hosts::start(1);
    let kernel_host = hosts.bed(1).netns("khost");
    Hosts::plug(&hosts.underlay.clone(), &kernel_host, 3);
    let vni = "4242";
    let kernel_container = kernel_vxlan_container(
        hosts.bed(1),
        &kernel_host,
        [vni, &underlay_ip(3), &underlay_ip(1)],
        "1450",
        "10.73.0.200/24",
    );
    hosts.overlay(
        1,
        "kx",
        "10.73.0.0/24",
        "10.73.0.0/25",
        &["--vni", vni],
        &[3],
    );
    let (c1, ip1) = hosts.container(1, "kx", "c1");
    assert!(
        ping(&c1, "10.73.0.200", 3),
        "vswitch container reaches the kernel's"
    );
    assert!(
        ping(&kernel_container, &ip1, 3),
        "and the kernel's reaches it"
    );
    let neigh = run("ip", &["-n", &kernel_container, "neigh", "show", &ip1]);
    let (_, mac) = hosts.bed(1).endpoint("kx", &c1);
    assert!(
        neigh.contains(&mac),
        "ARP resolved across the tunnel: {neigh}"
    );
    for (from, to, to_ip) in [
        (&c1, &kernel_container, "10.73.0.200"),
        (&kernel_container, &c1, ip1.as_str()),
    ] {
        let (sent, got, bytes, _) = tcp_transfer(from, to, to_ip, 20 << 20);
        assert_eq!(bytes, 20 << 20);
        assert_eq!(sent, got);
    }
}

/// `--encrypt`: VXLAN inside WireGuard, against wireguard-go carrying a kernel vxlan device
/// over its tunnel (the usual VXLAN-over-WireGuard setup): ping and TCP both ways, and on the
/// underlay only WireGuard, no VXLAN.
#[test]
fn an_encrypted_overlay_interoperates_with_wireguard_go_and_hides_its_frames() {
    let mut hosts = Hosts::start_with(1, |_| vec!["--tunnel-address".into(), "10.99.0.1".into()]);
    let kernel_host = hosts.bed(1).netns("khost");
    Hosts::plug(&hosts.underlay.clone(), &kernel_host, 3);
    let private = hosts.bed(1).dir.join("k.key");
    std::fs::write(&private, run("wg", &["genkey"])).unwrap();
    let public = run(
        "bash",
        &["-c", &format!("wg pubkey < {}", private.display())],
    );
    // The vswitch side: its peer is the kernel host, by key and tunnel address.
    let peer = format!("{},key={},inner=10.99.0.3", underlay_ip(3), public.trim());
    hosts.bed(1).ok(&[
        "network",
        "create",
        "sealed",
        "-d",
        "overlay",
        "--encrypt",
        "--vni",
        "4243",
        "--subnet",
        "10.76.0.0/24",
        "--ip-range",
        "10.76.0.0/25",
        "--peer",
        &peer,
    ]);
    let (c1, ip1) = hosts.container(1, "sealed", "c1");
    assert_eq!(mtu_of(&c1), "1390", "1500 less WireGuard and VXLAN");
    let (local, _) = hosts.hosts(1);
    let vswitch_key = local["public_key"].as_str().unwrap().to_string();
    // wireguard-go in the kernel host, in the foreground: ended by its PID with the test.
    let wg_if = format!("wg{}", std::process::id() % 100_000);
    // wireguard-go's control socket outlives a killed wireguard-go: removed after it (dropped
    // after the process guard below).
    let _control_socket = RemovedOnDrop(format!("/var/run/wireguard/{wg_if}.sock").into());
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &kernel_host, "wireguard-go", "-f", &wg_if])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wireguard-go runs");
    let _wireguard_go = Ender(child);
    assert!(eventually(Duration::from_secs(5), || has_link(
        &kernel_host,
        &wg_if
    )));
    let ip = |args: &[&str]| {
        let mut all = vec!["-n", kernel_host.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    };
    let endpoint = format!("{}:51820", underlay_ip(1));
    run(
        "ip",
        &[
            "netns",
            "exec",
            &kernel_host,
            "wg",
            "set",
            &wg_if,
            "private-key",
            private.to_str().unwrap(),
            "listen-port",
            "51820",
            "peer",
            &vswitch_key,
            "endpoint",
            &endpoint,
            "allowed-ips",
            "10.99.0.1/32",
        ],
    );
    ip(&["addr", "add", "10.99.0.3/24", "dev", &wg_if]);
    ip(&["link", "set", &wg_if, "up"]);
    let kernel_container = kernel_vxlan_container(
        hosts.bed(1),
        &kernel_host,
        ["4243", "10.99.0.3", "10.99.0.1"],
        "1370",
        "10.76.0.200/24",
    );
    // The vswitch container's MTU follows wireguard-go's tunnel (1420 less VXLAN).
    run("ip", &["-n", &c1, "link", "set", "eth0", "mtu", "1370"]);
    // Watch the underlay at the vswitch host while traffic flows.
    let host1 = hosts.beds[0].1.clone();
    let capture = hosts.bed(1).dir.join("underlay.pcap");
    let tcpdump = std::process::Command::new("ip")
        .args([
            "netns", "exec", &host1, "tcpdump", "-i", "u0", "-n", "-U", "-w",
        ])
        .arg(&capture)
        .arg("udp")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tcpdump = Ender(tcpdump);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        eventually(Duration::from_secs(10), || ping(&c1, "10.76.0.200", 1)),
        "vswitch container reaches wireguard-go's through the tunnel"
    );
    assert!(ping(&kernel_container, &ip1, 3), "and back");
    for (from, to, to_ip) in [
        (&c1, &kernel_container, "10.76.0.200"),
        (&kernel_container, &c1, ip1.as_str()),
    ] {
        let (sent, got, bytes, _) = tcp_transfer(from, to, to_ip, 10 << 20);
        assert_eq!((bytes, sent), (10 << 20, got));
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(tcpdump);
    let count = |filter: &str| {
        let out = run(
            "bash",
            &[
                "-c",
                &format!(
                    "tcpdump -n -r {} '{filter}' 2>/dev/null | wc -l",
                    capture.display()
                ),
            ],
        );
        out.trim().parse::<u64>().unwrap()
    };
    assert!(
        count("udp port 51820") > 1000,
        "the traffic went through WireGuard"
    );
    assert_eq!(
        count("udp port 4789"),
        0,
        "no VXLAN readable on the underlay"
    );
    let (local, _) = hosts.hosts(1);
    assert_eq!(local["drops"], 0, "{local}");
    // Datagrams that do not authenticate, from the peer's address: refused and counted.
    let target = format!("/dev/udp/{}/51820", underlay_ip(1));
    for payload in [
        "'\\x04\\x00\\x00\\x00garbage-that-is-no-transport-data'",
        "'x'",
    ] {
        let script = format!("printf {payload} > {target}");
        run(
            "ip",
            &["netns", "exec", &kernel_host, "bash", "-c", &script],
        );
    }
    assert!(
        eventually(Duration::from_secs(3), || {
            let (local, _) = hosts.hosts(1);
            local["drops_by_reason"]["malformed_tunnel"]
                .as_u64()
                .unwrap_or(0)
                >= 2
        }),
        "{:?}",
        hosts.hosts(1)
    );
    assert!(ping(&c1, "10.76.0.200", 2), "the tunnel carries on");
}

/// Ends a child process by its PID when dropped.
struct Ender(std::process::Child);

impl Drop for Ender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In `kernel_host`: a kernel vxlan device (`[vni, local, remote]`, port 4789) bridged to a
/// container namespace of its own with `address` and `mtu`; returns that namespace. A veth
/// hands its packets on with their checksums still to be filled in (a NIC would fill them in on
/// the wire): a kernel vxlan receiver keeps that mark through decapsulation, but a UDP socket
/// reads only the bytes, so here the container's sender computes them.
fn kernel_vxlan_container(
    bed: &mut Bed,
    kernel_host: &str,
    [vni, local, remote]: [&str; 3],
    mtu: &str,
    address: &str,
) -> String {
    let ip = |args: &[&str]| {
        let mut all = vec!["-n", kernel_host];
        all.extend_from_slice(args);
        run("ip", &all);
    };
    let vxlan = [
        "link", "add", "vx0", "type", "vxlan", "id", vni, "local", local, "remote", remote,
    ];
    ip(&[&vxlan[..], &["dstport", "4789"]].concat());
    ip(&["link", "add", "br0", "type", "bridge"]);
    ip(&["link", "set", "vx0", "master", "br0", "up"]);
    let container = bed.netns("kc");
    ip(&[
        "link", "add", "k0", "type", "veth", "peer", "name", "eth0", "netns", &container,
    ]);
    ip(&["link", "set", "k0", "mtu", mtu, "master", "br0", "up"]);
    ip(&["link", "set", "br0", "up"]);
    run(
        "ip",
        &["-n", &container, "link", "set", "eth0", "mtu", mtu, "up"],
    );
    run(
        "ip",
        &["-n", &container, "addr", "add", address, "dev", "eth0"],
    );
    run(
        "ip",
        &[
            "netns", "exec", &container, "ethtool", "-K", "eth0", "tx", "off",
        ],
    );
    container
}

/// A file of the test's own, removed when the test ends, also when it fails.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
