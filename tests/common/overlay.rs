//! Hosts for overlay tests: daemons in namespaces of their own ("hosts"), joined by an
//! underlay bridge in a further namespace, each daemon told its underlay address.

use serde_json::Value;

use super::bed::Bed;
use super::process::run;

/// Underlay addresses: host n is 10.203.0.n.
pub fn underlay_ip(n: usize) -> String {
    format!("10.203.0.{n}")
}

/// Hosts on one underlay: the beds (each a daemon in its own namespace) and the namespace
/// holding the underlay's bridge (owned by the first bed, so it goes with it).
pub struct Hosts {
    pub beds: Vec<(Bed, String)>,
    pub underlay: String,
}

impl Hosts {
    /// `count` daemons, host n (from 1) at `underlay_ip(n)`.
    pub fn start(count: usize) -> Hosts {
        Hosts::start_with(count, |_| Vec::new())
    }

    /// `start`, each daemon with the extra arguments `extra(n)` gives.
    pub fn start_with(count: usize, extra: impl Fn(usize) -> Vec<String>) -> Hosts {
        let mut beds: Vec<(Bed, String)> = (1..=count)
            .map(|n| {
                let mut args = vec!["--underlay".to_string(), underlay_ip(n)];
                args.extend(extra(n));
                Bed::start_beside_runtime(&args)
            })
            .collect();
        let underlay = beds[0].0.netns("underlay");
        run(
            "ip",
            &["-n", &underlay, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &underlay, "link", "set", "br0", "up"]);
        for n in 1..=count {
            let host = beds[n - 1].1.clone();
            Hosts::plug(&underlay, &host, n);
        }
        Hosts { beds, underlay }
    }

    /// Links namespace `host` to the underlay bridge as host `n`.
    pub fn plug(underlay: &str, host: &str, n: usize) {
        let leg = format!("h{n}");
        run(
            "ip",
            &[
                "link", "add", "u0", "netns", host, "type", "veth", "peer", "name", &leg, "netns",
                underlay,
            ],
        );
        run(
            "ip",
            &["-n", underlay, "link", "set", &leg, "master", "br0", "up"],
        );
        let cidr = format!("{}/24", underlay_ip(n));
        run("ip", &["-n", host, "addr", "add", &cidr, "dev", "u0"]);
        run("ip", &["-n", host, "link", "set", "u0", "up"]);
    }

    pub fn bed(&mut self, n: usize) -> &mut Bed {
        &mut self.beds[n - 1].0
    }

    /// Creates overlay `name` on host `n`, peered with `peers` (host numbers); each host hands
    /// out addresses from its own part of the subnet (no store to share allocations).
    pub fn overlay(
        &mut self,
        n: usize,
        name: &str,
        subnet: &str,
        range: &str,
        extra: &[&str],
        peers: &[usize],
    ) {
        let mut args: Vec<String> = [
            "network",
            "create",
            name,
            "--driver",
            "overlay",
            "--subnet",
            subnet,
            "--ip-range",
            range,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        for p in peers {
            args.push("--peer".into());
            args.push(underlay_ip(*p));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.bed(n).ok(&args);
    }

    /// Connects a fresh container namespace to `network` on host `n`; returns it and its IPv4.
    pub fn container(&mut self, n: usize, network: &str, name: &str) -> (String, String) {
        let bed = self.bed(n);
        let ns = bed.netns(name);
        bed.ok(&["connect", network, &ns]);
        let (ip, _) = bed.endpoint(network, &ns);
        (ns, ip)
    }

    /// `vswitch hosts` of host `n`: its own row, then the others' rows by address.
    pub fn hosts(&mut self, n: usize) -> (Value, Vec<Value>) {
        let rows = self.bed(n).json(&["hosts"]);
        let rows = rows.as_array().unwrap().clone();
        let local = rows.iter().find(|h| h["local"] == true).cloned().unwrap();
        (
            local,
            rows.into_iter().filter(|h| h["local"] == false).collect(),
        )
    }
}
