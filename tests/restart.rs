//! A daemon restart that no container notices: the TAP keeper holds every container's device
//! while no daemon runs, so `kill -9` and a new start leave each interface up (same device,
//! no carrier change), a ping at 20 per second loses no more than the gap takes, a TCP stream
//! carries on intact, and policy (default deny, one allowing rule) lets the established flow
//! through after the restart. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The interface's index and carrier changes, read in its namespace.
fn link_identity(netns: &str) -> (String, String) {
    let read = |what: &str| {
        run(
            "ip",
            &[
                "netns",
                "exec",
                netns,
                "cat",
                &format!("/sys/class/net/eth0/{what}"),
            ],
        )
        .trim()
        .to_string()
    };
    (read("ifindex"), read("carrier_changes"))
}

#[test]
fn a_killed_and_restarted_daemon_goes_unnoticed_by_its_containers() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "app",
        "--subnet",
        "10.231.211.0/24",
        "--default-action",
        "deny",
    ]);
    bed.ok(&[
        "policy",
        "add",
        "app",
        "client-server",
        "--action",
        "allow",
        "--to",
        "role=server",
        "--peer",
        "role=client",
    ]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    bed.ok(&[
        "connect",
        "app",
        &a,
        "--ip",
        "10.231.211.10",
        "--label",
        "role=client",
    ]);
    bed.ok(&[
        "connect",
        "app",
        &b,
        "--ip",
        "10.231.211.20",
        "--label",
        "role=server",
    ]);
    assert!(ping(&a, "10.231.211.20", 1));
    let before = (link_identity(&a), link_identity(&b));

    // 120 echoes at 20/s and a stream of 96 × 64 KiB over ~6 s; the daemon dies 2 s in.
    let pings = ping_series(&a, "10.231.211.20", 120, "0.05");
    let stream = paced_stream(&a, &b, "10.231.211.20", 5301, 96, Duration::from_millis(60));
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    bed.kill_daemon();
    bed.start_daemon();
    let gap = killed.elapsed();

    let received = ping_received(pings);
    let lost = 120 - received;
    // What the gap takes at 20/s, and one echo either side of it.
    let allowed = (gap.as_secs_f64() * 20.0).ceil() as u32 + 2;
    eprintln!("restart gap {gap:?}: {lost} of 120 echoes lost at 20/s (at most {allowed})");
    assert!(lost <= allowed, "{lost} echoes lost over a {gap:?} gap");
    let (sent, got, bytes) = stream.join().unwrap();
    assert_eq!(
        (bytes, got),
        (96 * 64 * 1024, sent),
        "the stream across the restart"
    );

    // The same devices, never down: adopted, not made anew.
    assert_eq!((link_identity(&a), link_identity(&b)), before);
    assert!(bed.log().contains("adopted=true"), "{}", bed.log());
    assert_eq!(bed.ports().len(), 2);
}

#[test]
fn devices_of_endpoints_gone_while_no_daemon_ran_are_not_kept_forever() {
    let mut bed = Bed::start();
    let names = bed.network_with("app", "10.231.212.0/24", &["a", "b"]);
    let (a, b) = (names[0].clone(), names[1].clone());
    bed.stop_daemon();
    // Stopped, the daemon left both interfaces up.
    assert!(has_link(&a, "eth0") && has_link(&b, "eth0"));
    bed.delete_netns(&a);
    bed.start_daemon();
    // The endpoint of the namespace gone is forgotten; the other is adopted.
    let endpoints = bed.inspect("app")["endpoints"].clone();
    assert!(
        endpoints.get(&a).is_none() && endpoints.get(&b).is_some(),
        "{endpoints}"
    );
    // Disconnected, an endpoint's device goes for good (the keeper lets go of it too).
    bed.ok(&["disconnect", "app", &b]);
    assert!(!has_link(&b, "eth0"));
}
