//! Policy enforced in the switch, against real containers and their kernels' TCP/UDP/ICMP:
//! port security (anti-spoofing), rules with connection tracking, reject vs deny, labels,
//! staged rules, runtime changes, rate limits.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    eventually, finish_capture, free_port, in_netns, ping, promtool_check, run, scrape, series,
    spawn_in_netns, start_capture, tcp_transfer, tshark_fields, Bed,
};

/// How long a connection attempt that policy drops is given before it counts as timed out.
const DENIED_WAIT: Duration = Duration::from_secs(2);

/// Echoes every connection to `port` in `netns` until `lifetime` is over (then stops
/// accepting; open connections end when their peer closes or after `lifetime` idle).
fn echo_server(netns: &str, port: u16, lifetime: Duration) -> JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = spawn_in_netns(netns, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + lifetime;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    std::thread::spawn(move || {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(lifetime)).unwrap();
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = conn.read(&mut buf) {
                            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    handle
}

/// Connects from `netns` to `addr` and does one echo round trip; returns how it ended and
/// how long it took.
fn echo_once(netns: &str, addr: &str) -> (Result<(), ErrorKind>, Duration) {
    let addr: SocketAddr = addr.parse().unwrap();
    spawn_in_netns(netns, move || {
        let start = Instant::now();
        let result = TcpStream::connect_timeout(&addr, DENIED_WAIT)
            .and_then(|conn| round_trip(&conn, b"ping"))
            .map_err(|e| e.kind());
        (result, start.elapsed())
    })
    .join()
    .unwrap()
}

/// Sends `data` on `conn` and reads it back, within the denied-wait time.
fn round_trip(mut conn: &TcpStream, data: &[u8]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(DENIED_WAIT))?;
    conn.write_all(data)?;
    let mut back = vec![0u8; data.len()];
    conn.read_exact(&mut back)?;
    assert_eq!(back, data);
    Ok(())
}

/// `vswitch policy ls --format json`: the policy and its counters.
fn policy_of(bed: &Bed, network: &str) -> Value {
    bed.json(&["policy", "ls", network])
}

/// Hits (or staged hits) counted for `rule`.
fn hits(bed: &Bed, network: &str, rule: &str, field: &str) -> u64 {
    policy_of(bed, network)["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == rule)
        .and_then(|s| s[field].as_u64())
        .unwrap_or_else(|| panic!("no counters for rule {rule}"))
}

/// Drops of `reason` on `endpoint`'s port.
fn drops(bed: &Bed, endpoint: &str, reason: &str) -> u64 {
    bed.ports()
        .iter()
        .find(|p| p["endpoint"] == endpoint)
        .and_then(|p| p["drops_by_reason"][reason].as_u64())
        .unwrap_or(0)
}

/// A network `name` on 10.`octet`.0.0/24 whose containers `web` (.2, app=web) and `db` (.3,
/// app=db) are connected; returns their namespaces.
fn web_and_db(bed: &mut Bed, name: &str, octet: u8, create: &[&str]) -> (String, String) {
    let subnet = format!("10.{octet}.0.0/24");
    let mut args = vec!["network", "create", name, "--subnet", &subnet];
    args.extend(create);
    bed.ok(&args);
    let web = bed.netns("web");
    let db = bed.netns("db");
    for (ns, ip, app) in [(&web, 2, "web"), (&db, 3, "db")] {
        let ip = format!("10.{octet}.0.{ip}");
        let label = format!("app={app}");
        bed.ok(&["connect", name, ns, "--ip", &ip, "--label", &label]);
    }
    (web, db)
}

/// Allows web -> db:5432 over TCP.
const WEB_TO_DB: &[&str] = &[
    "--action", "allow", "--to", "app=db", "--peer", "app=web", "--proto", "tcp", "--port", "5432",
];

fn add_rule(bed: &Bed, network: &str, name: &str, spec: &[&str]) {
    let mut args = vec!["policy", "add", network, name];
    args.extend(spec);
    bed.ok(&args);
}

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

#[test]
fn default_allow_then_default_deny() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut bed = Bed::start_with(&[], &["--metrics-addr", &addr]);
    let (web, db) = web_and_db(&mut bed, "dd", 77, &[]);
    assert!(
        ping(&web, "10.77.0.3", 1),
        "Docker's default: containers reach each other"
    );
    bed.ok(&["policy", "default", "dd", "deny"]);
    assert!(
        !ping(&web, "10.77.0.3", 2),
        "default deny lets no ping through"
    );
    assert!(!ping(&db, "10.77.0.2", 1));
    assert!(hits(&bed, "dd", "default", "hits") >= 3);
    assert!(drops(&bed, &web, "denied") >= 2);
    // Infrastructure still works under default deny: the gateway's DNS answers.
    assert!(in_netns(
        &web,
        &["dig", "+short", "+time=2", "+tries=1", "@10.77.0.1", &db]
    ));
    let metrics = scrape(port);
    let default_hits = series(
        &metrics,
        "vswitch_policy_rule_hits_total",
        &[("network", "dd"), ("rule", "default")],
    );
    assert!(default_hits.unwrap_or(0.0) >= 3.0, "{metrics}");
    // The default cannot be staged: it has no staged series.
    let staged = series(
        &metrics,
        "vswitch_policy_rule_staged_hits_total",
        &[("network", "dd"), ("rule", "default")],
    );
    assert_eq!(staged, None, "{metrics}");
    promtool_check(&metrics);
    bed.ok(&["policy", "default", "dd", "allow"]);
    assert!(ping(&web, "10.77.0.3", 1));
}

#[test]
fn web_reaches_db_on_5432_with_replies_and_db_cannot_open_connections_to_web() {
    let mut bed = Bed::start();
    let (web, db) = web_and_db(&mut bed, "wd", 76, &["--default-action", "deny"]);
    add_rule(&bed, "wd", "web-db", WEB_TO_DB);
    let servers = [
        echo_server(&db, 5432, Duration::from_secs(20)),
        echo_server(&db, 5433, Duration::from_secs(20)),
        echo_server(&web, 8080, Duration::from_secs(20)),
    ];
    let (allowed, _) = echo_once(&web, "10.76.0.3:5432");
    assert_eq!(allowed, Ok(()), "web -> db:5432 and its replies pass");
    let (other_port, _) = echo_once(&web, "10.76.0.3:5433");
    assert_eq!(
        other_port,
        Err(ErrorKind::TimedOut),
        "only port 5432 is allowed"
    );
    let (reverse, _) = echo_once(&db, "10.76.0.2:8080");
    assert_eq!(
        reverse,
        Err(ErrorKind::TimedOut),
        "db may not open connections to web"
    );
    let flows = bed.json(&["conntrack", "wd"]);
    let flows = flows.as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|f| f["dst"] == "10.76.0.3" && f["dport"] == 5432 && f["rule"] == "web-db"),
        "{flows:?}"
    );
    assert!(flows.iter().all(|f| f["dport"] != 8080), "{flows:?}");
    assert!(hits(&bed, "wd", "web-db", "hits") >= 3);
    // ICMP errors about an allowed flow pass with it: db's kernel answers a datagram to a
    // closed port with a port unreachable, and web hears of it at once.
    add_rule(
        &bed,
        "wd",
        "web-db-udp",
        &[
            "--action", "allow", "--to", "app=db", "--peer", "app=web", "--proto", "udp", "--port",
            "9999",
        ],
    );
    let refused = spawn_in_netns(&web, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect("10.76.0.3:9999").unwrap();
        socket.set_read_timeout(Some(DENIED_WAIT)).unwrap();
        socket.send(b"anyone?").unwrap();
        socket.recv(&mut [0u8; 16]).map_err(|e| e.kind())
    })
    .join()
    .unwrap();
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    // `policy test` names the deciding rule for a described packet.
    let test = bed.ok(&[
        "policy", "test", "wd", "--from", &web, "--to", &db, "--dport", "5432",
    ]);
    assert!(test.contains("rule: web-db"), "{test}");
    // A packet that would be dropped: said, and the exit status says it too.
    let out = bed.vswitch(&[
        "policy", "test", "wd", "--from", &db, "--to", &web, "--dport", "8080",
    ]);
    let test = String::from_utf8_lossy(&out.stdout);
    assert!(
        test.contains("rule: default") && test.contains("dropped"),
        "{test}"
    );
    assert_eq!(out.status.code(), Some(1));
    let out = bed.vswitch(&[
        "policy", "test", "wd", "--from", &db, "--to", &web, "--dport", "8080", "--format", "json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&report["verdict"], &report["policy_rule"]),
        (&Value::from("dropped"), &Value::from("default"))
    );
    for server in servers {
        server.join().unwrap();
    }
}

#[test]
fn labels_give_a_new_container_the_rules_of_its_kind() {
    let mut bed = Bed::start();
    let (_web, db) = web_and_db(&mut bed, "lb", 75, &["--default-action", "deny"]);
    add_rule(&bed, "lb", "web-db", WEB_TO_DB);
    let server = echo_server(&db, 5432, Duration::from_secs(15));
    let web2 = bed.netns("web2");
    let other = bed.netns("other");
    bed.ok(&[
        "connect",
        "lb",
        &web2,
        "--ip",
        "10.75.0.4",
        "--label",
        "app=web",
    ]);
    bed.ok(&[
        "connect",
        "lb",
        &other,
        "--ip",
        "10.75.0.5",
        "--label",
        "app=batch",
    ]);
    assert_eq!(echo_once(&web2, "10.75.0.3:5432").0, Ok(()));
    assert_eq!(
        echo_once(&other, "10.75.0.3:5432").0,
        Err(ErrorKind::TimedOut)
    );
    // Once gone, its address is no longer web.
    bed.ok(&["disconnect", "lb", &web2]);
    bed.ok(&["connect", "lb", &web2, "--ip", "10.75.0.4"]);
    assert_eq!(
        echo_once(&web2, "10.75.0.3:5432").0,
        Err(ErrorKind::TimedOut)
    );
    server.join().unwrap();
}

#[test]
fn reject_refuses_at_once_and_deny_times_out() {
    let mut bed = Bed::start();
    let (web, _db) = web_and_db(&mut bed, "rj", 74, &[]);
    add_rule(
        &bed,
        "rj",
        "no-5433",
        &[
            "--action", "reject", "--to", "app=db", "--proto", "tcp", "--port", "5433",
        ],
    );
    add_rule(
        &bed,
        "rj",
        "quiet-5434",
        &[
            "--action", "deny", "--to", "app=db", "--proto", "tcp", "--port", "5434",
        ],
    );
    add_rule(
        &bed,
        "rj",
        "no-udp",
        &[
            "--action", "reject", "--to", "app=db", "--proto", "udp", "--port", "9999",
        ],
    );
    let (rejected, took) = echo_once(&web, "10.74.0.3:5433");
    assert_eq!(rejected, Err(ErrorKind::ConnectionRefused));
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    let (denied, took) = echo_once(&web, "10.74.0.3:5434");
    assert_eq!(denied, Err(ErrorKind::TimedOut));
    assert!(took >= DENIED_WAIT, "gave up after {took:?}");
    // UDP: the ICMP port unreachable makes the next receive fail at once.
    let udp = spawn_in_netns(&web, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect("10.74.0.3:9999").unwrap();
        socket.set_read_timeout(Some(DENIED_WAIT)).unwrap();
        socket.send(b"hello").unwrap();
        socket.recv(&mut [0u8; 16]).map_err(|e| e.kind())
    })
    .join()
    .unwrap();
    assert_eq!(udp, Err(ErrorKind::ConnectionRefused));
    assert!(drops(&bed, &web, "rejected") >= 2);
    assert!(drops(&bed, &web, "denied") >= 1);
    // A capture of dropped frames names the rule; tshark reads it.
    let file = bed.dir.join("rejected.pcapng");
    let capture = start_capture(&bed, &file, &["--port", &web, "--drops", "-c", "2", "tcp"]);
    assert_eq!(
        echo_once(&web, "10.74.0.3:5433").0,
        Err(ErrorKind::ConnectionRefused)
    );
    finish_capture(capture);
    let comments = tshark_fields(&file, &["frame.comment"]);
    assert!(
        comments.contains("dropped by vswitch: rejected (rule no-5433)"),
        "{comments}"
    );
    let trace = bed.json(&[
        "trace",
        "rj",
        "--from",
        &web,
        "--dst",
        "10.74.0.3",
        "--proto",
        "tcp",
        "--dport",
        "5433",
    ]);
    assert_eq!(trace["policy_rule"], "no-5433", "{trace}");
    assert_eq!(trace["verdict"], "dropped");
}

#[test]
fn a_staged_deny_counts_hits_and_drops_nothing() {
    let mut bed = Bed::start();
    let (web, db) = web_and_db(&mut bed, "st", 73, &[]);
    add_rule(
        &bed,
        "st",
        "try-isolating-db",
        &["--action", "deny", "--to", "app=db", "--staged"],
    );
    let server = echo_server(&db, 5432, Duration::from_secs(10));
    assert!(ping(&web, "10.73.0.3", 3));
    assert_eq!(echo_once(&web, "10.73.0.3:5432").0, Ok(()));
    assert!(hits(&bed, "st", "try-isolating-db", "staged_hits") >= 3 + 3);
    assert_eq!(hits(&bed, "st", "try-isolating-db", "hits"), 0);
    assert_eq!(drops(&bed, &web, "denied"), 0);
    let test = bed.ok(&[
        "policy", "test", "st", "--from", &web, "--to", &db, "--dport", "80",
    ]);
    assert!(
        test.contains("staged rule try-isolating-db would deny"),
        "{test}"
    );
    server.join().unwrap();
}

#[test]
fn a_runtime_policy_change_cuts_a_forbidden_flow_and_keeps_an_allowed_one() {
    let mut bed = Bed::start();
    let (web, db) = web_and_db(&mut bed, "rt", 72, &[]);
    let servers = [
        echo_server(&db, 5432, Duration::from_secs(20)),
        echo_server(&db, 6000, Duration::from_secs(20)),
    ];
    let policy = bed.dir.join("policy.toml");
    std::fs::write(
        &policy,
        r#"
default = "deny"
[[rules]]
name = "web-db"
action = "allow"
direction = "to"
select = "app=db"
peer = "app=web"
proto = "tcp"
ports = "5432"
"#,
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client = spawn_in_netns(&web, move || {
        let open = |port| {
            let addr = SocketAddr::from(([10, 72, 0, 3], port));
            TcpStream::connect_timeout(&addr, DENIED_WAIT).unwrap()
        };
        let (kept, cut) = (open(5432), open(6000));
        let before = (
            round_trip(&kept, b"one").is_ok(),
            round_trip(&cut, b"one").is_ok(),
        );
        tx.send(()).unwrap();
        // Wait for the change, then try both again.
        std::thread::sleep(Duration::from_secs(1));
        let after = (
            round_trip(&kept, b"two").map_err(|e| e.kind()),
            round_trip(&cut, b"two").map_err(|e| e.kind()),
        );
        (before, after)
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    bed.ok(&["policy", "set", "rt", &policy]);
    let (before, after) = client.join().unwrap();
    assert_eq!(
        before,
        (true, true),
        "both flows work under the open policy"
    );
    assert_eq!(after.0, Ok(()), "the allowed flow carries on");
    assert!(
        matches!(after.1, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the forbidden flow is cut: {after:?}"
    );
    assert!(drops(&bed, &web, "denied") >= 1);
    for server in servers {
        server.join().unwrap();
    }
}

#[test]
fn bad_rules_are_refused_by_field_and_policies_survive_a_restart() {
    let mut bed = Bed::start();
    let (web, db) = web_and_db(&mut bed, "pv", 71, &["--default-action", "deny"]);
    add_rule(&bed, "pv", "web-db", WEB_TO_DB);
    let before = policy_of(&bed, "pv");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--action", "allow", "--to", "app=db", "--port", "80"],
            "ports",
        ),
        (
            &["--action", "allow", "--to", "app", "--proto", "tcp"],
            "select",
        ),
        (
            &["--action", "allow", "--to", "*", "--peer", "10.0.0.0/40"],
            "peer",
        ),
        (
            &[
                "--action", "allow", "--to", "*", "--proto", "tcp", "--port", "99999",
            ],
            "ports",
        ),
    ];
    for (spec, field) in cases {
        let mut args = vec!["policy", "add", "pv", "bad"];
        args.extend(spec);
        let error = bed.fails(&args);
        assert!(error.contains(&format!("`{field}`")), "{spec:?}: {error}");
    }
    let error = bed.fails(&[
        "policy", "add", "pv", "web-db", "--action", "deny", "--to", "*",
    ]);
    assert!(error.contains("`name`"), "{error}");
    let x = bed.netns("x");
    let error = bed.fails(&["connect", "pv", &x, "--label", "name=web"]);
    assert!(error.contains("name"), "{error}");
    assert_eq!(
        policy_of(&bed, "pv")["rules"],
        before["rules"],
        "refusals change nothing"
    );

    let server = echo_server(&db, 5432, Duration::from_secs(30));
    bed.stop_daemon();
    bed.start_daemon();
    let after = policy_of(&bed, "pv");
    assert_eq!(after["rules"], before["rules"]);
    assert_eq!(after["default"], "deny");
    assert!(eventually(Duration::from_secs(10), || echo_once(
        &web,
        "10.71.0.3:5432"
    )
    .0 == Ok(())));
    assert_eq!(echo_once(&db, "10.71.0.2:22").0, Err(ErrorKind::TimedOut));
    server.join().unwrap();
}

#[test]
fn a_rate_limited_port_is_held_to_its_limit_and_its_neighbour_is_not() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "rl", "--subnet", "10.70.0.0/24"]);
    let limited = bed.netns("limited");
    let free = bed.netns("free");
    let sink = bed.netns("sink");
    bed.ok(&[
        "connect",
        "rl",
        &limited,
        "--ip",
        "10.70.0.2",
        "--rate-limit",
        "40M",
    ]);
    bed.ok(&["connect", "rl", &free, "--ip", "10.70.0.3"]);
    bed.ok(&["connect", "rl", &sink, "--ip", "10.70.0.4"]);
    let total = 8 << 20;
    let (sent, got, bytes, secs) = tcp_transfer(&limited, &sink, "10.70.0.4", total);
    assert_eq!(
        (sent, bytes),
        (got, total),
        "the limited transfer arrives intact"
    );
    let limited_rate = bytes as f64 * 8.0 / secs;
    let (_, _, bytes, secs) = tcp_transfer(&free, &sink, "10.70.0.4", total);
    let free_rate = bytes as f64 * 8.0 / secs;
    eprintln!(
        "limited {:.1} Mbit/s, free {:.1} Mbit/s",
        limited_rate / 1e6,
        free_rate / 1e6
    );
    // Wide tolerance: TCP backs off under policing; the burst lets a little more through.
    assert!(
        (8e6..=52e6).contains(&limited_rate),
        "limited port at {:.1} Mbit/s",
        limited_rate / 1e6
    );
    assert!(
        free_rate > 3.0 * 40e6,
        "free port at {:.1} Mbit/s",
        free_rate / 1e6
    );
    assert!(drops(&bed, &limited, "rate_limited") > 0);
    assert_eq!(drops(&bed, &free, "rate_limited"), 0);

    // Limits change at run time: now the other way round.
    bed.ok(&["limit", "rl", &free, "--rate", "40M"]);
    bed.ok(&["limit", "rl", &limited]);
    let (_, _, bytes, secs) = tcp_transfer(&free, &sink, "10.70.0.4", total);
    let now_limited = bytes as f64 * 8.0 / secs;
    let (_, _, bytes, secs) = tcp_transfer(&limited, &sink, "10.70.0.4", total);
    let now_free = bytes as f64 * 8.0 / secs;
    assert!(now_limited <= 52e6, "{:.1} Mbit/s", now_limited / 1e6);
    assert!(now_free > 3.0 * 40e6, "{:.1} Mbit/s", now_free / 1e6);
    let endpoint = &bed.inspect("rl")["endpoints"][&free];
    assert_eq!(endpoint["rate_limit"]["bits_per_sec"], 40_000_000);
}

#[test]
fn storm_control_holds_a_broadcast_flood_to_its_allowance() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "sc",
        "--subnet",
        "10.69.0.0/24",
        "--storm-pps",
        "200",
    ]);
    let loud = bed.netns("loud");
    let quiet = bed.netns("quiet");
    bed.ok(&["connect", "sc", &loud, "--ip", "10.69.0.2"]);
    bed.ok(&["connect", "sc", &quiet, "--ip", "10.69.0.3"]);
    assert!(ping(&loud, "10.69.0.3", 1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = spawn_in_netns(&quiet, move || {
        let socket = UdpSocket::bind("0.0.0.0:9999").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut got = 0;
        while socket.recv(&mut [0u8; 64]).is_ok() {
            got += 1;
        }
        got
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // 5,000 broadcasts in about a second: 25 times the allowance.
    spawn_in_netns(&loud, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.set_broadcast(true).unwrap();
        for i in 0..5000u32 {
            let _ = socket.send_to(&i.to_be_bytes(), "10.69.0.255:9999");
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
    .join()
    .unwrap();
    let got = listener.join().unwrap();
    // About 1.x s of 200/s plus a burst of 200; wide margin either side.
    assert!((150..=800).contains(&got), "{got} broadcasts got through");
    assert!(drops(&bed, &loud, "storm") >= 3000);
    // Unicast is not held.
    assert!(ping(&loud, "10.69.0.3", 1));
}

#[test]
fn ipv6_is_policed_and_neighbour_discovery_still_works_under_default_deny() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "v6",
        "--subnet",
        "10.68.0.0/24",
        "--subnet",
        "fd68::/64",
        "--default-action",
        "deny",
    ]);
    let web = bed.netns("web");
    let db = bed.netns("db");
    bed.ok(&[
        "connect",
        "v6",
        &web,
        "--ip",
        "10.68.0.2",
        "--ip",
        "fd68::2",
        "--label",
        "app=web",
    ]);
    bed.ok(&[
        "connect",
        "v6",
        &db,
        "--ip",
        "10.68.0.3",
        "--ip",
        "fd68::3",
        "--label",
        "app=db",
    ]);
    add_rule(
        &bed,
        "v6",
        "web-pings-db",
        &[
            "--action",
            "allow",
            "--to",
            "app=db",
            "--peer",
            "app=web",
            "--proto",
            "icmpv6",
            "--icmp-type",
            "128",
        ],
    );
    assert!(in_netns(
        &web,
        &["ping", "-6", "-c", "2", "-W", "2", "fd68::3"]
    ));
    assert!(!in_netns(
        &db,
        &["ping", "-6", "-c", "1", "-W", "1", "fd68::2"]
    ));
    assert!(!ping(&web, "10.68.0.3", 1), "the rule is for ICMPv6 only");
    assert!(hits(&bed, "v6", "web-pings-db", "hits") >= 2);
}

#[test]
fn a_full_flow_table_evicts_least_recently_seen_flows_and_counts_them() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut bed = Bed::start_with(&[], &["--metrics-addr", &addr]);
    let (web, _db) = web_and_db(&mut bed, "ft", 67, &["--max-flows", "16"]);
    // Any rule makes the network track flows; this one never matches.
    add_rule(
        &bed,
        "ft",
        "none",
        &["--action", "deny", "--to", "app=nobody"],
    );
    spawn_in_netns(&web, || {
        // Spaced out, so each flow is seen at its own instant.
        for port in 20000..20100u16 {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket.send_to(b"x", ("10.67.0.3", port)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .join()
    .unwrap();
    let flows = || bed.json(&["conntrack", "ft"]).as_array().unwrap().len();
    assert!(
        eventually(Duration::from_secs(5), || flows() == 16),
        "{}",
        flows()
    );
    let metrics = scrape(port);
    let evicted = series(
        &metrics,
        "vswitch_network_flow_evictions_total",
        &[("network", "ft")],
    );
    assert!(evicted.unwrap_or(0.0) >= 84.0, "{metrics}");
    // The newest flow is still tracked (an evicted flow is the oldest of a sample of 8).
    let listing = bed.json(&["conntrack", "ft"]);
    assert!(
        listing
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["dport"] == 20099),
        "{listing}"
    );
}
