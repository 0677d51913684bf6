//! Overlay networks shared through etcd: three hosts (namespaces with a daemon each, on one
//! underlay) and an etcd of the test's own on that underlay. A network created on one host
//! appears on the others; hosts find each other there,
//! connects on all three at once get distinct addresses (reserved by transaction), names resolve
//! across hosts, remote stations are pinned to their host's tunnel; a host killed with
//! `kill -9` disappears from the others within its lease; with etcd stopped, established
//! traffic carries on, a connect fails naming the store, and all converges once it is back.
//! One policy holds on every host, its selectors matching endpoints on the others.
//! Needs root and etcd (Debian's etcd-server).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// etcd's client address, on the underlay bridge.
const ETCD_IP: &str = "10.203.0.100";
const LEASE_SECONDS: u64 = 3;

/// An etcd in the underlay's namespace, ended by its PID.
struct Etcd {
    child: Option<Child>,
    netns: String,
    dir: std::path::PathBuf,
    /// Serve clients over TLS, asking for their certificate (from `Certificates` in `dir`).
    tls: bool,
}

impl Etcd {
    /// An etcd at `ETCD_IP` on the hosts' underlay bridge, its data in `dir`.
    fn on_underlay(hosts: &Hosts, dir: std::path::PathBuf, tls: bool) -> Etcd {
        let netns = hosts.underlay.clone();
        let cidr = format!("{ETCD_IP}/24");
        run("ip", &["-n", &netns, "addr", "add", &cidr, "dev", "br0"]);
        let mut etcd = Etcd {
            child: None,
            netns,
            dir,
            tls,
        };
        etcd.resume();
        etcd
    }

    /// Starts (again) on the same data directory.
    fn resume(&mut self) {
        let scheme = if self.tls { "https" } else { "http" };
        let client = format!("{scheme}://{ETCD_IP}:2379");
        let pem = |name: &str| self.dir.join(name).to_str().unwrap().to_string();
        let tls: Vec<String> = if self.tls {
            vec![
                "--cert-file".into(),
                pem("server.pem"),
                "--key-file".into(),
                pem("server.key"),
                "--client-cert-auth".into(),
                "--trusted-ca-file".into(),
                pem("ca.pem"),
            ]
        } else {
            Vec::new()
        };
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "etcd",
                "--name",
                "t",
                "--data-dir",
            ])
            .arg(self.dir.join("etcd"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "t=http://127.0.0.1:2380"])
            .args(&tls)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("etcd.log")).unwrap())
            .spawn()
            .expect("etcd starts (Debian's etcd-server)");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            in_netns(
                &self.netns,
                &["bash", "-c", &format!("echo > /dev/tcp/{ETCD_IP}/2379")],
            )
        });
        assert!(up, "etcd did not come up");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three hosts sharing etcd, each with overlay "ov" created (with an IPv6 subnet too if
/// `dual_stack`).
fn three_hosts(dual_stack: bool) -> (Hosts, Etcd) {
    let mut hosts = Hosts::start_with(3, |n| {
        vec![
            "--store".into(),
            format!("etcd://{ETCD_IP}:2379"),
            "--host-name".into(),
            format!("host{n}"),
            "--store-lease".into(),
            LEASE_SECONDS.to_string(),
        ]
    });
    let dir = hosts.bed(1).dir.clone();
    let etcd = Etcd::on_underlay(&hosts, dir, false);
    // Created once: the others create it as the store defines it (Docker's global scope).
    let mut create = vec![
        "network",
        "create",
        "ov",
        "-d",
        "overlay",
        "--subnet",
        "10.74.0.0/24",
    ];
    if dual_stack {
        create.extend(["--subnet", "fd00:74::/64"]);
    }
    hosts.bed(1).ok(&create);
    for n in 2..=3 {
        let created = eventually(Duration::from_secs(10), || {
            hosts
                .bed(n)
                .vswitch(&["network", "inspect", "ov"])
                .status
                .success()
        });
        assert!(created, "host {n} has the network host 1 defined");
        let network = hosts.bed(n).inspect("ov");
        assert_eq!(network["subnets"][0]["subnet"], "10.74.0.0/24", "{network}");
    }
    for (n, others) in [
        (1, ["host2", "host3"]),
        (2, ["host1", "host3"]),
        (3, ["host1", "host2"]),
    ] {
        assert!(
            eventually(Duration::from_secs(10), || hosts_up(&mut hosts, n)
                == others),
            "host {n} sees the others: {:?}",
            hosts.hosts(n)
        );
    }
    (hosts, etcd)
}

/// Names of the hosts host `n` sees up in the store.
fn hosts_up(hosts: &mut Hosts, n: usize) -> Vec<String> {
    let rows = hosts.bed(n).json(&["hosts"]);
    let mut names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "up")
        .filter_map(|h| h["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Runs `vswitch ARGS` on hosts `n` of `commands` (host number, arguments) at the same moment;
/// expects each to succeed.
fn all_at_once(hosts: &mut Hosts, commands: Vec<(usize, Vec<String>)>) {
    let threads: Vec<_> = commands
        .into_iter()
        .map(|(n, args)| {
            let socket = hosts.bed(n).socket.clone();
            std::thread::spawn(move || {
                Command::new(env!("CARGO_BIN_EXE_vswitch"))
                    .arg("--socket")
                    .arg(socket)
                    .args(args)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for thread in threads {
        let out = thread.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Connects a namespace per host at once; returns (namespace, address) per host.
fn connect_all_at_once(hosts: &mut Hosts, name: &str) -> Vec<(String, String)> {
    let namespaces: Vec<String> = (1..=3)
        .map(|n| hosts.bed(n).netns(&format!("{name}{n}")))
        .collect();
    let connects = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| (i + 1, ["connect", "ov", ns].map(String::from).to_vec()))
        .collect();
    all_at_once(hosts, connects);
    namespaces
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            let (ip, _) = hosts.bed(i + 1).endpoint("ov", &ns);
            (ns, ip)
        })
        .collect()
}

#[test]
fn hosts_meet_in_etcd_and_their_containers_reach_each_other_by_name() {
    let (mut hosts, _etcd) = three_hosts(false);
    let containers = connect_all_at_once(&mut hosts, "c");
    let mut addresses: Vec<&str> = containers.iter().map(|(_, ip)| ip.as_str()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        3,
        "connects at the same moment on three hosts: {containers:?}"
    );
    let (c1, _) = &containers[0];
    let (c2, ip2) = &containers[1];
    let (c3, ip3) = &containers[2];
    // Host 2's station pinned on host 1; then ARP for it is answered on host 1 itself, and
    // host 2 gets nothing from host 1 meanwhile (no flooding).
    let (_, mac2) = hosts.bed(2).endpoint("ov", c2);
    let pinned = |hosts: &mut Hosts| {
        let fdb = hosts.bed(1).json(&["fdb", "ov"]);
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == mac2.as_str() && e["kind"] == "static")
    };
    assert!(eventually(Duration::from_secs(10), || pinned(&mut hosts)));
    let from_host1 = |hosts: &mut Hosts| {
        let (_, peers) = hosts.hosts(2);
        let row = peers
            .iter()
            .find(|h| h["name"] == "host1")
            .cloned()
            .unwrap();
        row["rx_packets"].as_u64().unwrap()
    };
    let before = from_host1(&mut hosts);
    let arping = run(
        "ip",
        &[
            "netns", "exec", c1, "busybox", "arping", "-b", "-c", "2", "-w", "3", "-I", "eth0", ip2,
        ],
    );
    assert!(
        arping.contains(&mac2.to_uppercase()) || arping.contains(&mac2),
        "answered: {arping}"
    );
    assert_eq!(
        from_host1(&mut hosts),
        before,
        "ARP suppressed: nothing crossed to host 2"
    );
    // Names of containers on other hosts, through this host's gateway.
    assert!(
        eventually(Duration::from_secs(10), || ping(c1, c2, 1)),
        "host 1's container reaches host 2's by name"
    );
    assert!(ping(c1, c3, 2), "and host 3's");
    assert!(ping(c3, ip2, 2));
    // `network inspect` shows the other hosts and their endpoints.
    let view = hosts.bed(1).inspect("ov");
    let listed = view["hosts"].to_string();
    assert!(
        listed.contains("host2@") && listed.contains("host3@"),
        "{view}"
    );
    assert!(
        view["remote_endpoints"].to_string().contains(&mac2),
        "{view}"
    );
    let (sent, got, bytes, _) = tcp_transfer(c3, c2, ip2, 20 << 20);
    assert_eq!(
        (bytes, sent),
        (20 << 20, got),
        "20 MB intact between hosts 3 and 2"
    );
    let _ = ip3;
}

/// Runs busybox's DHCP client once in `netns` (it configures the address it gets); returns it.
fn dhcp_address(dir: &std::path::Path, netns: &str) -> String {
    let script = dir.join(format!("{netns}.sh"));
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in bound|renew) ip addr replace $ip/$mask dev $interface;; esac\n",
    )
    .unwrap();
    run("chmod", &["+x", script.to_str().unwrap()]);
    let udhcpc = [
        "busybox", "udhcpc", "-q", "-n", "-f", "-i", "eth0", "-t", "10", "-T", "1", "-s",
    ];
    let mut args = vec!["netns", "exec", netns];
    args.extend(udhcpc);
    args.push(script.to_str().unwrap());
    run("ip", &args);
    let shown = run("ip", &["-n", netns, "-4", "-o", "addr", "show", "eth0"]);
    let cidr = shown
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_default();
    cidr.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn dhcp_clients_on_different_hosts_get_distinct_addresses_and_names() {
    let (mut hosts, _etcd) = three_hosts(false);
    let namespaces: Vec<String> = (1..=3)
        .map(|n| {
            let bed = hosts.bed(n);
            let ns = bed.netns(&format!("dh{n}"));
            bed.ok(&["connect", "ov", &ns, "--dhcp"]);
            ns
        })
        .collect();
    // All three ask at once: each gateway offers only what it reserved in the store.
    let dir = hosts.bed(1).dir.clone();
    let threads: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            let (dir, ns) = (dir.clone(), ns.clone());
            std::thread::spawn(move || dhcp_address(&dir, &ns))
        })
        .collect();
    let mut addresses: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(addresses.iter().all(|a| !a.is_empty()), "{addresses:?}");
    let (first, second) = (addresses[0].clone(), namespaces[1].clone());
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        3,
        "distinct leases across hosts: {addresses:?}"
    );
    // Host 1's DHCP client is known by name on host 2, at its leased address.
    assert!(
        eventually(Duration::from_secs(10), || ping(&second, &namespaces[0], 1)),
        "host 2 reaches host 1's DHCP client ({first}) by name"
    );
}

#[test]
fn a_killed_host_goes_and_a_stopped_store_stops_nothing_that_runs() {
    let (mut hosts, mut etcd) = three_hosts(true);
    let containers = connect_all_at_once(&mut hosts, "d");
    let (d1, _) = containers[0].clone();
    let (_, ip2) = containers[1].clone();
    assert!(eventually(Duration::from_secs(10), || ping(&d1, &ip2, 1)));
    // Dual stack across hosts: IPv6 by address and by name (AAAA through the gateway).
    let d2 = containers[1].0.clone();
    let ip6 = host_of(&hosts.bed(2).inspect("ov")["endpoints"][d2.as_str()]["addresses"][1]);
    assert!(ip6.starts_with("fd00:74::"), "{ip6}");
    assert!(ping(&d1, &ip6, 2), "IPv6 from host 1 to host 2");
    let by_name = run(
        "ip",
        &[
            "netns", "exec", &d1, "ping", "-6", "-c", "1", "-W", "2", &d2,
        ],
    );
    assert!(by_name.contains(&ip6), "{by_name}");
    let (_, mac3) = hosts.bed(3).endpoint("ov", &containers[2].0);
    // kill -9: host 3 stops renewing its lease; the others drop it within the lease.
    hosts.bed(3).kill_daemon();
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(LEASE_SECONDS + 5), || hosts_up(
            &mut hosts, 1
        ) == ["host2"]),
        "host 3 gone from host 1: {:?}",
        hosts.hosts(1)
    );
    eprintln!(
        "host 3 gone from host 1 after {:?} (lease {LEASE_SECONDS} s)",
        started.elapsed()
    );
    // With it, its station: no longer pinned on host 1.
    let fdb = hosts.bed(1).json(&["fdb", "ov"]);
    assert!(!fdb.to_string().contains(&mac3), "{fdb}");
    // The store goes away: what runs carries on, what needs the store says so.
    etcd.stop();
    assert!(
        ping(&d1, &ip2, 3),
        "established traffic carries on without the store"
    );
    let late = hosts.bed(1).netns("late");
    let error = hosts.bed(1).fails(&["connect", "ov", &late]);
    assert!(
        error.contains("store") && error.contains("unreachable"),
        "{error}"
    );
    // A policy change too (every host must get it), and the policy stays as it was.
    let error = hosts.bed(1).fails(&["policy", "default", "ov", "deny"]);
    assert!(error.contains("unreachable"), "{error}");
    assert_eq!(
        hosts.bed(1).json(&["policy", "ls", "ov"])["default"],
        "allow"
    );
    // It comes back: the connect goes through, and host 2 learns of it.
    etcd.resume();
    let connected = eventually(Duration::from_secs(15), || {
        hosts
            .bed(1)
            .vswitch(&["connect", "ov", &late])
            .status
            .success()
    });
    assert!(connected, "connect once the store is back");
    let (late_ip, _) = hosts.bed(1).endpoint("ov", &late);

    assert!(
        eventually(Duration::from_secs(10), || ping(&d2, &late, 1)),
        "host 2 resolves and reaches the late container ({late_ip}) by name"
    );
    // Removing it while other hosts have endpoints on it is refused, naming them.
    hosts.bed(1).ok(&["disconnect", "ov", &d1]);
    hosts.bed(1).ok(&["disconnect", "ov", &late]);
    let error = hosts.bed(1).fails(&["network", "rm", "ov"]);
    assert!(error.contains("on host host2"), "{error}");
}

/// A CA, etcd's server certificate (for `ETCD_IP`) and a client certificate per name, made with
/// openssl in `dir`.
fn make_certificates(dir: &std::path::Path, clients: &[&str]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=vswitch-test-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca);
    let sign = |name: &str, extension: &str| {
        let mut req = vec!["req", "-subj"];
        let subject = format!("/CN={name}");
        req.push(&subject);
        req.extend(ec);
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(&req);
        std::fs::write(dir.join(format!("{name}.ext")), extension).unwrap();
        let ext = format!("{name}.ext");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ]);
    };
    // etcd's HTTP gateway dials its own gRPC server with the server certificate: it must be
    // good for clients too.
    let server = format!("subjectAltName=IP:{ETCD_IP}\nextendedKeyUsage=serverAuth,clientAuth\n");
    sign("server", &server);
    for client in clients {
        sign(client, "extendedKeyUsage=clientAuth\n");
    }
}

#[test]
fn tls_with_client_certificates_admits_only_hosts_that_have_one() {
    let certs = std::env::temp_dir().join(format!("vswitch-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let _removed = RemovedOnDrop(certs.clone());
    make_certificates(&certs, &["host1", "host2"]);
    let pem = |name: &str| certs.join(name).to_str().unwrap().to_string();
    let mut hosts = Hosts::start_with(3, |n| {
        let mut args = vec![
            "--store".into(),
            format!("https://{ETCD_IP}:2379"),
            "--host-name".into(),
            format!("host{n}"),
            "--store-ca".into(),
            pem("ca.pem"),
        ];
        // Host 3 trusts etcd but has no certificate of its own.
        if n < 3 {
            args.extend(["--store-cert".into(), pem(&format!("host{n}.pem"))]);
            args.extend(["--store-key".into(), pem(&format!("host{n}.key"))]);
        }
        args
    });
    let _etcd = Etcd::on_underlay(&hosts, certs.clone(), true);
    hosts.bed(1).ok(&[
        "network",
        "create",
        "ov",
        "-d",
        "overlay",
        "--subnet",
        "10.74.0.0/24",
    ]);
    assert!(
        eventually(Duration::from_secs(10), || hosts_up(&mut hosts, 2)
            == ["host1"]),
        "host 2 meets host 1 over TLS: {}",
        hosts.bed(2).ok(&["hosts"])
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hosts_up(&mut hosts, 1),
        ["host2"],
        "host 3, without a certificate, is not let in"
    );
    let log = hosts.bed(3).log();
    assert!(log.contains("store unreachable"), "host 3 says why: {log}");
}

/// A directory of the test's own, removed when the test ends, also when it fails.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rule `name`'s hit count in `network`'s policy on host `n`; `None` if it has no such rule.
fn rule_hits(hosts: &mut Hosts, n: usize, network: &str, name: &str) -> Option<u64> {
    let view = hosts.bed(n).json(&["policy", "ls", network]);
    view["stats"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["hits"].as_u64())
}

#[test]
fn one_policy_on_every_host_selects_endpoints_on_the_others() {
    let (mut hosts, _etcd) = three_hosts(false);
    let mut container = |n: usize, app: &str| {
        let bed = hosts.bed(n);
        let ns = bed.netns(app);
        let label = format!("app={app}");
        bed.ok(&["connect", "ov", &ns, "--label", &label]);
        let (ip, _) = bed.endpoint("ov", &ns);
        (ns, ip)
    };
    let (web, _) = container(1, "web");
    let (db, db_ip) = container(2, "db");
    let (other, other_ip) = container(3, "other");
    assert!(
        eventually(Duration::from_secs(10), || ping(&other, &db_ip, 1)),
        "no policy yet: everyone reaches db"
    );
    // Set on host 3: every host enforces it, and selects the labels of the others' endpoints.
    hosts.bed(3).ok(&["policy", "default", "ov", "deny"]);
    hosts.bed(3).ok(&[
        "policy", "add", "ov", "web-db", "--action", "allow", "--to", "app=db", "--peer",
        "app=web", "--proto", "icmp",
    ]);
    for n in [1, 2] {
        assert!(
            eventually(Duration::from_secs(10), || rule_hits(
                &mut hosts, n, "ov", "web-db"
            )
            .is_some()),
            "host {n} has host 3's rule"
        );
        assert_eq!(
            hosts.bed(n).json(&["policy", "ls", "ov"])["default"],
            "deny"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || ping(&web, &db_ip, 1)),
        "web (host 1) reaches db (host 2): the rule matched both across hosts"
    );
    assert!(
        rule_hits(&mut hosts, 1, "ov", "web-db").unwrap() > 0
            && rule_hits(&mut hosts, 2, "ov", "web-db").unwrap() > 0,
        "the rule decided on both hosts"
    );
    assert!(!ping(&other, &db_ip, 2), "other (host 3) does not reach db");
    // `policy test` names an endpoint on another host and judges as the data path does.
    let verdict = hosts.bed(1).vswitch(&[
        "policy", "test", "ov", "--from", &web, "--to", &db, "--proto", "icmp",
    ]);
    let said = String::from_utf8_lossy(&verdict.stdout).to_string();
    assert!(
        verdict.status.success() && said.contains("web-db"),
        "{said}"
    );
    let verdict = hosts.bed(3).vswitch(&[
        "policy", "test", "ov", "--from", &other, "--to", &db, "--proto", "icmp",
    ]);
    assert_eq!(verdict.status.code(), Some(1), "other to db: dropped");
    assert!(!ping(&web, &other_ip, 2), "nor web reach other");
    // Rules added on two hosts at the same moment: both kept, on every host (each change is
    // made to the store's policy, atomically).
    let adds = [(1, "r1"), (2, "r2")]
        .map(|(n, rule)| {
            let args = [
                "policy",
                "add",
                "ov",
                rule,
                "--action",
                "deny",
                "--to",
                "app=nobody",
            ];
            (n, args.map(String::from).to_vec())
        })
        .to_vec();
    all_at_once(&mut hosts, adds);
    for n in 1..=3 {
        assert!(
            eventually(Duration::from_secs(10), || rule_hits(
                &mut hosts, n, "ov", "r1"
            )
            .is_some()
                && rule_hits(&mut hosts, n, "ov", "r2").is_some()),
            "host {n} has both rules: {}",
            hosts.bed(n).json(&["policy", "ls", "ov"])
        );
    }
    // Removed on host 2: gone everywhere.
    hosts.bed(2).ok(&["policy", "rm", "ov", "web-db"]);
    assert!(
        eventually(Duration::from_secs(10), || rule_hits(
            &mut hosts, 1, "ov", "web-db"
        )
        .is_none()),
        "host 1 follows host 2's change"
    );
    assert!(!ping(&web, &db_ip, 2), "web no longer reaches db");
    let _ = db;
}
