//! A soak: containers on one network with traffic between random pairs and random connect /
//! disconnect churn for a while; afterwards no file descriptor, memory or TAP device is
//! leaked, no endpoint is lost, and every drop has a reason. Short in CI (20 s, 12
//! containers); `bench/soak.sh` runs it for 10 minutes with 64 (`VSWITCH_SOAK_SECONDS`,
//! `VSWITCH_SOAK_CONTAINERS`). Needs root.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A small deterministic generator (xorshift): the same run every time.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn churn_and_traffic_leak_nothing_and_lose_no_endpoint() {
    let seconds = setting("VSWITCH_SOAK_SECONDS", 20);
    let count = setting("VSWITCH_SOAK_CONTAINERS", 12).clamp(2, 200) as usize;
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "soak", "--subnet", "10.90.0.0/23"]);
    let ip = |i: usize| format!("10.90.{}.{}", i / 200, 10 + i % 200);
    let names: Vec<String> = (0..count).map(|i| bed.netns(&format!("s{i}"))).collect();
    let connect = |bed: &Bed, i: usize| {
        bed.ok(&["connect", "soak", &names[i], "--ip", &ip(i)]);
    };
    for i in 0..count {
        connect(&bed, i);
    }
    let pid = bed.daemon_pid();
    // A first round of traffic, so what the daemon holds for traffic is in the baseline.
    assert!(ping(&names[0], &ip(1), 1));
    let (fds_before, rss_before) = (fds(pid), rss_mib(pid));

    let mut connected = vec![true; count];
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let (mut churns, mut pings) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let i = dice.below(count);
        if connected[i] {
            bed.ok(&["disconnect", "soak", &names[i]]);
        } else {
            connect(&bed, i);
        }
        connected[i] = !connected[i];
        churns += 1;
        // Traffic between two containers that are both connected now must get through.
        let up: Vec<usize> = (0..count).filter(|i| connected[*i]).collect();
        if up.len() >= 2 {
            let a = up[dice.below(up.len())];
            let b = up[dice.below(up.len())];
            if a != b {
                assert!(
                    ping(&names[a], &ip(b), 1),
                    "{} -> {} after {churns} changes",
                    names[a],
                    ip(b)
                );
                pings += 1;
            }
        }
    }
    for i in (0..count).filter(|i| !connected[*i]) {
        connect(&bed, i);
    }
    eprintln!(
        "soak: {count} containers, {seconds} s, {churns} connects/disconnects, {pings} pings"
    );

    // No endpoint lost: each is on the network with its one interface, and reachable.
    let endpoints = bed.inspect("soak")["endpoints"].clone();
    assert_eq!(endpoints.as_object().unwrap().len(), count);
    assert_eq!(bed.ports().len(), count);
    for (i, ns) in names.iter().enumerate() {
        let links = run("ip", &["-n", ns, "-o", "link", "show"]);
        assert_eq!(links.lines().count(), 2, "{ns}: {links}");
        assert!(
            ping(ns, &ip((i + 1) % count), 1),
            "{ns} unreachable after the soak"
        );
    }
    // Nothing leaked: descriptors back where they were, memory close to it.
    assert!(
        eventually(Duration::from_secs(5), || fds(pid) <= fds_before + 2),
        "descriptors: {fds_before} before, {} after",
        fds(pid)
    );
    assert!(
        rss_mib(pid) <= rss_before + 16,
        "RSS {rss_before} MiB before, {} MiB after",
        rss_mib(pid)
    );
    // Every drop has a reason.
    for port in bed.ports() {
        let by_reason: u64 = port["drops_by_reason"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(port["drops"].as_u64().unwrap(), by_reason, "{port}");
    }
}
