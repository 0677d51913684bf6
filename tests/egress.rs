//! Egress: containers reach addresses beyond their network through the gateway, on ordinary
//! sockets of the daemon's namespace. The daemon runs in a namespace of the test's own, and the
//! "outside world" is another, joined to it by a veth pair (`common::outside`); nothing touches
//! the host's.

mod common;

use std::time::Duration;

use common::{
    bed_with_outside, download, download_from, download_server, download_server_on, finish_capture,
    in_netns, start_capture, tcp_connect, tcp_transfer, tshark_fields, udp_ask, udp_ask_to,
    udp_echo_server, udp_echo_server_on, ECHO_PORT, OUTSIDE_IP, OUTSIDE_IP6,
};

#[test]
fn containers_reach_outside_addresses_over_udp_and_ping() {
    let (mut bed, _, outside) = bed_with_outside();
    let ns = bed.network_with("out", "10.85.4.0/24", &["c"]);
    let server = udp_echo_server(&outside);
    // Egress shows in captures like any other traffic: the datagram and its answer.
    let file = bed.dir.join("egress.pcapng");
    let capture = start_capture(&bed, &file, &["--port", &ns[0], "-c", "2", "udp port 7007"]);
    assert_eq!(udp_ask(&ns[0], ECHO_PORT, b"hello"), Ok(b"hello".to_vec()));
    finish_capture(capture);
    let seen = tshark_fields(&file, &["ip.src", "ip.dst", "udp.payload"]);
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(
        seen,
        [
            "10.85.4.2\t10.251.0.2\t68656c6c6f",
            "10.251.0.2\t10.85.4.2\t68656c6c6f"
        ],
        "{seen:?}"
    );
    // A closed port is refused, as it would be without the switch in between.
    assert_eq!(
        udp_ask(&ns[0], ECHO_PORT + 2, b"anyone?"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(in_netns(
        &ns[0],
        &["ping", "-c", "2", "-W", "2", OUTSIDE_IP]
    ));
    let egress = &bed.inspect("out")["gateway"]["egress"];
    assert!(egress["sent"].as_u64().unwrap() >= 4, "{egress}");
    assert!(egress["received"].as_u64().unwrap() >= 4, "{egress}");
    assert_eq!(egress["blocked"], 0, "{egress}");
    assert!(server.join().unwrap() >= 1);
}

#[test]
fn an_internal_network_reaches_nothing_outside_and_counts_it() {
    let (mut bed, _, outside) = bed_with_outside();
    bed.ok(&[
        "network",
        "create",
        "sealed",
        "--subnet",
        "10.85.5.0/24",
        "--internal",
    ]);
    let ns = bed.netns("s");
    bed.ok(&["connect", "sealed", &ns]);
    let server = udp_echo_server(&outside);
    assert_eq!(
        udp_ask(&ns, ECHO_PORT, b"hello"),
        Err(std::io::ErrorKind::WouldBlock)
    );
    assert!(!in_netns(&ns, &["ping", "-c", "1", "-W", "1", OUTSIDE_IP]));
    // The gateway itself still answers.
    assert!(in_netns(&ns, &["ping", "-c", "1", "-W", "2", "10.85.5.1"]));
    let view = bed.inspect("sealed");
    assert_eq!(view["internal"], true);
    let egress = &view["gateway"]["egress"];
    assert!(egress["blocked"].as_u64().unwrap() >= 4, "{egress}");
    assert_eq!(egress["sent"], 0, "{egress}");
    assert_eq!(server.join().unwrap(), 0);
    // Nor does anything come in: publishing is refused, and nothing changes.
    let other = bed.netns("s2");
    let error = bed.fails(&["connect", "sealed", &other, "-p", "18090:80"]);
    assert!(error.contains("--internal"), "{error}");
    assert_eq!(
        bed.inspect("sealed")["endpoints"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn containers_download_and_upload_over_tcp_and_hear_refusals_at_once() {
    let (mut bed, _, outside) = bed_with_outside();
    let ns = bed.network_with("web", "10.85.6.0/24", &["c"]);
    let total = 100 << 20;
    // Download: 100 MB from the outside, intact.
    let server = download_server(&outside, 8080, total);
    let got = download(&ns[0], 8080);
    assert_eq!(got, (server.join().unwrap(), total));
    // Upload: 100 MB to the outside, which reads to the container's FIN (a half-close).
    let (sent, received, bytes, _) = tcp_transfer(&ns[0], &outside, OUTSIDE_IP, total);
    assert_eq!((bytes, received), (total, sent));
    // A closed port refuses at once; an address nobody holds is unreachable.
    let start = std::time::Instant::now();
    assert_eq!(
        tcp_connect(&ns[0], OUTSIDE_IP, 8099),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        tcp_connect(&ns[0], "10.251.0.99", 8080),
        Err(std::io::ErrorKind::HostUnreachable)
    );
    let egress = &bed.inspect("web")["gateway"]["egress"];
    assert!(egress["flows"].as_u64().unwrap() >= 2, "{egress}");

    // A container without offloads gets the terminator's 64 KB segments as wire frames.
    let plain = bed.netns("plain");
    bed.ok(&["connect", "web", &plain, "--no-offload"]);
    let total = 20 << 20;
    let server = download_server(&outside, 8081, total);
    let got = download(&plain, 8081);
    assert_eq!(got, (server.join().unwrap(), total));
    let (sent, received, bytes, _) = tcp_transfer(&plain, &outside, OUTSIDE_IP, total);
    assert_eq!((bytes, received), (total, sent));
}

#[test]
fn a_default_deny_policy_blocks_the_way_out_and_counts_it() {
    let (mut bed, _, outside) = bed_with_outside();
    let ns = bed.network_with("guarded", "10.85.8.0/24", &["g"]);
    let server = udp_echo_server(&outside);
    assert_eq!(
        udp_ask(&ns[0], ECHO_PORT, b"before"),
        Ok(b"before".to_vec())
    );
    bed.ok(&["policy", "default", "guarded", "deny"]);
    assert_eq!(
        udp_ask(&ns[0], ECHO_PORT, b"after"),
        Err(std::io::ErrorKind::WouldBlock)
    );
    assert!(!in_netns(
        &ns[0],
        &["ping", "-c", "1", "-W", "1", OUTSIDE_IP]
    ));
    let port = bed
        .ports()
        .into_iter()
        .find(|p| p["netns"] == ns[0].as_str())
        .unwrap();
    assert!(port["drops"].as_u64().unwrap() >= 3, "{port}");
    assert_eq!(server.join().unwrap(), 1);
    // A rule over outside addresses lets through what it names, and only that.
    bed.ok(&[
        "policy",
        "add",
        "guarded",
        "echo-out",
        "--action",
        "allow",
        "--from",
        "*",
        "--peer",
        "10.251.0.0/24",
        "--proto",
        "udp",
        "--port",
        "7007",
    ]);
    let server = udp_echo_server(&outside);
    assert_eq!(udp_ask(&ns[0], ECHO_PORT, b"again"), Ok(b"again".to_vec()));
    assert!(!in_netns(
        &ns[0],
        &["ping", "-c", "1", "-W", "1", OUTSIDE_IP]
    ));
    let trace = bed.ok(&[
        "trace", "guarded", "--from", &ns[0], "--dst", OUTSIDE_IP, "--proto", "udp", "--dport",
        "7007",
    ]);
    assert!(trace.contains("allowed by rule echo-out"), "{trace}");
    assert!(
        trace.contains("a UDP socket of the daemon's namespace, to 10.251.0.2:7007"),
        "{trace}"
    );
    assert_eq!(server.join().unwrap(), 1);
}

#[test]
fn the_daemons_loopback_is_reachable_at_the_gateway_only_with_host_loopback() {
    let (mut bed, daemon_ns, _) = bed_with_outside();
    let error = bed.fails(&["network", "create", "x", "--host-loopback", "--internal"]);
    assert!(error.contains("contradict"), "{error}");
    bed.ok(&[
        "network",
        "create",
        "lo",
        "--subnet",
        "10.85.10.0/24",
        "--host-loopback",
    ]);
    assert_eq!(bed.inspect("lo")["host_loopback"], true);
    let open = bed.netns("open");
    bed.ok(&["connect", "lo", &open, "--name", "open"]);
    let closed = bed.network_with("nolo", "10.85.11.0/24", &["closed"]);

    // TCP and UDP to the gateway's address reach servers on the daemon's 127.0.0.1.
    let total = 1 << 20;
    let server = download_server_on(&daemon_ns, "127.0.0.1:8090".parse().unwrap(), total);
    let got = download_from(&open, "10.85.10.1:8090".parse().unwrap());
    assert_eq!(got, (server.join().unwrap(), total));
    let echo = udp_echo_server_on(&daemon_ns, "127.0.0.1:7008".parse().unwrap());
    let (answer, _) = udp_ask_to(&open, "10.85.10.1:7008".parse().unwrap(), b"lo?").unwrap();
    assert_eq!(answer, b"lo?");
    // DNS stays the gateway's own.
    let dig = ["dig", "+time=2", "+tries=1", "@10.85.10.1", "open"];
    assert!(in_netns(&open, &dig));
    assert_eq!(echo.join().unwrap().len(), 1);

    // Without the flag the gateway refuses, and nothing reaches the loopback.
    let server = download_server_on(&daemon_ns, "127.0.0.1:8091".parse().unwrap(), total);
    assert_eq!(
        tcp_connect(&closed[0], "10.85.11.1", 8091),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // (Let the server go: one connection from the daemon's namespace.)
    download_from(&daemon_ns, "127.0.0.1:8091".parse().unwrap());
    server.join().unwrap();
}

#[test]
fn containers_reach_outside_addresses_over_ipv6() {
    let (mut bed, _, outside) = bed_with_outside();
    bed.ok(&[
        "network",
        "create",
        "six",
        "--subnet",
        "10.85.12.0/24",
        "--subnet",
        "fd85:12::/64",
    ]);
    let ns = bed.netns("c6");
    bed.ok(&["connect", "six", &ns]);
    let total = 20 << 20;
    let server = download_server_on(
        &outside,
        format!("[{OUTSIDE_IP6}]:8082").parse().unwrap(),
        total,
    );
    let got = download_from(&ns, format!("[{OUTSIDE_IP6}]:8082").parse().unwrap());
    assert_eq!(got, (server.join().unwrap(), total));
    let echo = udp_echo_server_on(&outside, format!("[{OUTSIDE_IP6}]:7009").parse().unwrap());
    let (answer, _) = udp_ask_to(
        &ns,
        format!("[{OUTSIDE_IP6}]:7009").parse().unwrap(),
        b"six",
    )
    .unwrap();
    assert_eq!(answer, b"six");
    assert!(in_netns(
        &ns,
        &["ping", "-6", "-c", "2", "-W", "2", OUTSIDE_IP6]
    ));
    assert_eq!(
        tcp_connect(&ns, OUTSIDE_IP6, 8099),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(echo.join().unwrap().len(), 1);
}
