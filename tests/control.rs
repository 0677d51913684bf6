//! The control plane end to end: connect and disconnect, restart from the state directory, bad
//! input refused without changing anything, and containers that vanish. Needs root.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn disconnect_removes_interface_and_port_and_connect_works_again() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.5.0/24"]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    bed.ok(&["connect", "app", &a, "--ip", "10.89.5.10"]);
    bed.ok(&["connect", "app", &b, "--name", "bee", "--ifname", "veth7"]);
    assert!(has_link(&b, "veth7"));
    assert!(ping(&a, "10.89.5.2", 2));

    // By endpoint name ...
    bed.ok(&["disconnect", "app", "bee"]);
    assert!(!has_link(&b, "veth7"), "interface left behind");
    assert_eq!(bed.ports().len(), 1);
    // ... and by namespace.
    bed.ok(&["disconnect", "app", &a]);
    assert!(!has_link(&a, "eth0"));
    assert!(bed.ports().is_empty());
    let net = bed.json(&["network", "ls"]);
    assert_eq!(net[0]["endpoints"].as_object().unwrap().len(), 0);

    bed.ok(&["connect", "app", &a, "--ip", "10.89.5.10"]);
    bed.ok(&["connect", "app", &b]);
    assert!(ping(&b, "10.89.5.10", 2));
    bed.ok(&["disconnect", "app", &a]);
    bed.ok(&["disconnect", "app", &b]);
    bed.ok(&["network", "rm", "app"]);
    assert_eq!(bed.json(&["network", "ls"]), serde_json::json!([]));
}

#[test]
fn a_restarted_daemon_comes_back_with_its_networks_and_endpoints() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "app",
        "--subnet",
        "10.89.6.0/24",
        "--mtu",
        "1400",
    ]);
    bed.ok(&[
        "network",
        "create",
        "other",
        "--subnet",
        "10.89.7.0/24",
        "--vlan",
        "7",
    ]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    let mut before_a = bed.json(&["connect", "app", &a]);
    // The connect answer adds the resolver to use; the record is the rest.
    let connected = before_a.as_object_mut().unwrap();
    assert_eq!(
        connected.remove("dns").unwrap(),
        serde_json::json!(["10.89.6.1"])
    );
    connected.remove("resolv_conf").unwrap();
    bed.ok(&["connect", "app", &b]);
    let networks_before = bed.json(&["network", "ls"]);

    bed.stop_daemon();
    // The TAP devices outlive the daemon: its keeper holds them for the next one.
    assert!(has_link(&a, "eth0"));

    bed.start_daemon();
    assert_eq!(bed.json(&["network", "ls"]), networks_before);
    let inspect: serde_json::Value =
        serde_json::from_str(&bed.ok(&["network", "inspect", "app"])).unwrap();
    assert_eq!(inspect["endpoints"][&a], before_a);
    // Endpoints whose namespace still exists are attached again (adopted), same MAC and address.
    assert!(has_link(&a, "eth0"));
    let link = run("ip", &["-n", &a, "link", "show", "eth0"]);
    assert!(
        link.contains(before_a["mac"].as_str().unwrap()) && link.contains("mtu 1400"),
        "{link}"
    );
    assert!(ping(&a, "10.89.6.3", 2));
    assert_eq!(bed.ports().len(), 2);
}

#[test]
fn a_damaged_state_file_stops_the_daemon_by_name_until_reset_keeps_it_aside() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "kept", "--subnet", "10.89.9.0/24"]);
    bed.stop_daemon();
    // Truncated, as a power loss under an older version could leave it.
    let state = bed.dir.join("state").join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let damaged = &text[..text.len() / 2];
    std::fs::write(&state, damaged).unwrap();

    let error = bed.daemon_refuses(&[]);
    assert!(
        error.contains("state.json") && error.contains("--reset-state"),
        "{error}"
    );
    assert_eq!(error.matches("is damaged").count(), 1, "said once: {error}");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        damaged,
        "left as it was"
    );

    // Asked to, it starts with no networks and keeps the damaged copy beside.
    bed.set_daemon_args(&["--reset-state"]);
    bed.start_daemon();
    assert_eq!(bed.json(&["network", "ls"]), serde_json::json!([]));
    let kept: Vec<String> = std::fs::read_dir(bed.dir.join("state"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("state.json.reset-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let copy = std::fs::read_to_string(bed.dir.join("state").join(&kept[0])).unwrap();
    assert_eq!(copy, damaged);
}

#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused_and_changes_nothing() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.12.0/24"]);
    let a = bed.netns("a");
    bed.ok(&["connect", "app", &a]);
    let state = bed.dir.join("state");
    let saved = std::fs::read_to_string(state.join("state.json")).unwrap();

    let other_socket = bed.dir.join("other.sock");
    let error = bed.daemon_refuses_at(&other_socket, &state, &[]);
    let holder = format!("in use by the vswitch daemon with PID {}", bed.daemon_pid());
    assert!(error.contains(&holder), "{error}");
    assert!(!other_socket.exists(), "the refused daemon left its socket");
    // --reset-state does not get past the lock either.
    let error = bed.daemon_refuses_at(&other_socket, &state, &["--reset-state"]);
    assert!(error.contains(&holder), "{error}");
    assert_eq!(
        std::fs::read_to_string(state.join("state.json")).unwrap(),
        saved
    );

    // The first daemon's endpoints survive its restart.
    bed.stop_daemon();
    bed.start_daemon();
    assert_eq!(bed.ports().len(), 1);
    assert!(has_link(&a, "eth0"));
}

#[test]
fn a_namespace_gone_while_the_daemon_was_down_leaves_no_resolv_conf() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.13.0/24"]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    bed.ok(&["connect", "app", &a]);
    bed.ok(&["connect", "app", &b]);
    let conf = |ns: &str| std::path::PathBuf::from(format!("/etc/netns/{ns}/resolv.conf"));
    assert!(conf(&a).exists() && conf(&b).exists());
    bed.stop_daemon();
    bed.delete_netns(&a);
    bed.start_daemon();
    assert!(
        !conf(&a).exists(),
        "resolv.conf of a namespace gone is left behind"
    );
    assert!(conf(&b).exists(), "resolv.conf of a live endpoint removed");
    // While the daemon runs, too.
    bed.delete_netns(&b);
    assert!(
        eventually(Duration::from_secs(5), || !conf(&b).exists()),
        "resolv.conf of a namespace gone while running is left behind"
    );
}

#[test]
fn a_daemon_killed_during_parallel_connects_restarts_with_every_answered_one() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.16.0/24"]);
    let names: Vec<String> = (0..60).map(|i| bed.netns(&format!("k{i}"))).collect();
    let mut connects: Vec<(String, std::process::Child)> = names
        .iter()
        .map(|ns| {
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_vswitch"))
                .arg("--socket")
                .arg(&bed.socket)
                .args(["connect", "app", ns])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (ns.clone(), child)
        })
        .collect();
    // Killed (SIGKILL) once some connects have been answered, with others still running.
    let some_done = eventually(Duration::from_secs(30), || {
        let mut done = 0;
        for (_, child) in connects.iter_mut() {
            if child.try_wait().unwrap().is_some() {
                done += 1;
            }
        }
        done >= 10
    });
    bed.kill_daemon();
    assert!(some_done, "connects did not finish");
    let answered: Vec<String> = connects
        .into_iter()
        .filter_map(|(ns, mut child)| child.wait().unwrap().success().then_some(ns))
        .collect();
    eprintln!("{} of 60 connects answered before the kill", answered.len());
    // Started again at once: the killed daemon's socket does not stop it.
    bed.start_daemon();
    let endpoints = bed.inspect("app")["endpoints"].clone();
    for ns in &answered {
        assert!(
            endpoints.get(ns).is_some(),
            "{ns} was connected (the API said so) but is gone after the crash: {} answered",
            answered.len()
        );
        assert!(has_link(ns, "eth0"), "{ns} has no eth0 after the restart");
    }
}

#[test]
fn the_host_namespace_is_never_connected() {
    let bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.10.0/24"]);
    let own = format!("pid:{}", bed.daemon_pid());
    for netns in [own.as_str(), "/proc/self/ns/net"] {
        let error = bed.fails(&["connect", "app", netns]);
        assert!(
            error.contains("is the vswitch daemon's own network namespace"),
            "{netns}: {error}"
        );
    }
    // Also for a daemon in a namespace of its own.
    let (inner, _) = Bed::start_in_own_netns();
    inner.ok(&["network", "create", "app", "--subnet", "10.89.11.0/24"]);
    let own = format!("pid:{}", inner.daemon_pid());
    let error = inner.fails(&["connect", "app", &own]);
    assert!(
        error.contains("is the vswitch daemon's own network namespace"),
        "{error}"
    );
    // Nothing was attached (gateways are not counted).
    assert!(bed.ports().is_empty());
    assert!(inner.ports().is_empty());
}

#[test]
fn a_socket_path_naming_a_file_leaves_the_file_alone() {
    let bed = Bed::start();
    let file = bed.dir.join("precious.txt");
    std::fs::write(&file, "keep me").unwrap();
    let error = bed.daemon_refuses_at(&file, &bed.dir.join("other-state"), &[]);
    assert!(error.contains("exists and is not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    // The running daemon's socket is not taken over either.
    let error = bed.daemon_refuses_at(&bed.socket, &bed.dir.join("other-state"), &[]);
    assert!(error.contains("already listening"), "{error}");
    bed.ok(&["network", "ls"]);
}

#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.8.0/24"]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    bed.ok(&["connect", "app", &a, "--ip", "10.89.8.5"]);
    let gateway_mac = bed.inspect("app")["gateway_mac"]
        .as_str()
        .unwrap()
        .to_string();
    let networks = bed.json(&["network", "ls"]);
    let ports = bed.ports();
    let links_b = run("ip", &["-n", &b, "link"]);

    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["connect", "app", &b, "--ip", "10.89.8.5"],
            format!("address 10.89.8.5 is already in use by endpoint {a} on network app"),
        ),
        (
            vec!["connect", "app", &b, "--ip", "10.1.1.1"],
            "address 10.1.1.1 is outside the subnets of network app (10.89.8.0/24)".into(),
        ),
        (
            vec!["network", "create", "app", "--subnet", "10.89.9.0/24"],
            "network app already exists".into(),
        ),
        (
            vec!["network", "create", "x", "--subnet", "10.89.8.0/25"],
            "subnet 10.89.8.0/25 overlaps subnet 10.89.8.0/24 of network app".into(),
        ),
        (vec!["connect", "nope", &b], "network nope not found".into()),
        (
            vec!["connect", "app", "vswitch-no-such-netns"],
            "network namespace vswitch-no-such-netns not found".into(),
        ),
        (
            vec!["network", "create", "x", "--subnet", "10.89.999.0/24"],
            "invalid subnet \"10.89.999.0/24\"".into(),
        ),
        (
            vec!["connect", "app", &b, "--mac", "02:zz:00:00:00:01"],
            "invalid MAC address \"02:zz:00:00:00:01\"".into(),
        ),
        (
            vec!["connect", "app", &a],
            format!("network namespace {a} is already connected"),
        ),
        (
            vec!["disconnect", "app", "nobody"],
            "no endpoint or namespace nobody on network app".into(),
        ),
        (
            vec!["network", "rm", "app"],
            "network app has active endpoints".into(),
        ),
        // Every number has an upper bound.
        (
            vec![
                "network",
                "create",
                "x",
                "--subnet",
                "10.89.20.0/24",
                "--storm-pps",
                "18446744073709551615",
            ],
            "invalid storm control rate (packets/s) 18446744073709551615: at most 10000000".into(),
        ),
        // The gateway's identity and other endpoints' names cannot be taken.
        (
            vec!["connect", "app", &b, "--mac", &gateway_mac],
            format!("MAC address {gateway_mac} is the gateway's of network app"),
        ),
        (
            vec!["connect", "app", &b, "--name", "gateway"],
            "name \"gateway\" is taken by the gateway on network app".into(),
        ),
        (
            vec!["connect", "app", &b, "--alias", "gateway"],
            "name \"gateway\" is taken by the gateway on network app".into(),
        ),
        (
            vec!["connect", "app", &b, "--alias", &a],
            format!("name \"{a}\" is taken by endpoint {a} on network app"),
        ),
    ];
    for (args, expected) in &cases {
        let error = bed.fails(args);
        assert!(
            error.starts_with("Error: ") && error.contains(expected.as_str()),
            "{args:?}: got {error:?}, want {expected:?}"
        );
    }

    assert_eq!(bed.json(&["network", "ls"]), networks, "networks changed");
    assert_eq!(bed.ports().len(), ports.len(), "ports changed");
    assert_eq!(
        run("ip", &["-n", &b, "link"]),
        links_b,
        "namespace b changed"
    );
    // The API answers a malformed body with a 400 naming the problem, too.
    let mut conn = std::os::unix::net::UnixStream::connect(&bed.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = "POST /v1/networks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{nope";
    std::io::Write::write_all(&mut conn, request.as_bytes()).unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut conn, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("invalid request body"), "{response}");
    assert_eq!(bed.json(&["network", "ls"]), networks, "networks changed");
}

#[test]
fn a_deleted_namespace_makes_its_port_disappear() {
    let mut bed = Bed::start();
    let [a, b]: [String; 2] = bed
        .network_with("app", "10.89.10.0/24", &["a", "b"])
        .try_into()
        .unwrap();
    assert_eq!(bed.ports().len(), 2);
    bed.delete_netns(&a);
    assert!(
        eventually(Duration::from_secs(5), || bed.ports().len() == 1),
        "port of the deleted namespace still there: {:?}",
        bed.ports()
    );
    let net: serde_json::Value =
        serde_json::from_str(&bed.ok(&["network", "inspect", "app"])).unwrap();
    assert!(net["endpoints"].get(&a).is_none(), "{net}");
    // The daemon did not take the namespace down with anything else.
    assert!(has_link(&b, "eth0"));
    // And the freed address is handed out again.
    let c = bed.netns("c");
    let endpoint = bed.json(&["connect", "app", &c]);
    assert_eq!(endpoint["addresses"][0], "10.89.10.2/24");
}

#[test]
fn namespaces_by_pid_and_path_and_a_container_that_exits() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.12.0/24"]);
    // A "container": a process in a namespace of its own, with no `ip netns` name.
    let mut container = std::process::Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .expect("unshare runs");
    let pid = container.id();
    let netns_file = format!("/proc/{pid}/ns/net");
    // unshare creates the namespace just before exec'ing sleep: wait until it differs from ours.
    let own = std::fs::metadata("/proc/self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::metadata(&netns_file)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m) != own)
            .unwrap_or(false)
    }));
    let by_pid = bed.json(&["connect", "app", &format!("pid:{pid}")]);
    assert_eq!(by_pid["name"], format!("pid-{pid}"));
    let link = run(
        "nsenter",
        &[&format!("--net={netns_file}"), "ip", "link", "show", "eth0"],
    );
    assert!(link.contains(by_pid["mac"].as_str().unwrap()), "{link}");

    let b = bed.netns("b");
    let by_path = bed.json(&["connect", "app", &format!("/run/netns/{b}")]);
    assert_eq!(by_path["name"], b.as_str());
    assert!(in_netns(
        &b,
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.89.12.2"]
    ));

    // The container exits: its port goes away.
    container.kill().unwrap();
    container.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || bed.ports().len() == 1),
        "port of the exited container still there: {:?}",
        bed.ports()
    );
}

#[test]
fn dual_stack_networks_give_both_addresses_and_routes() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "ds",
        "--subnet",
        "10.89.13.0/24",
        "--subnet",
        "fd00:89:13::/64",
    ]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    let ea = bed.json(&["connect", "ds", &a]);
    bed.ok(&["connect", "ds", &b, "--ip", "fd00:89:13::50"]);
    assert_eq!(
        ea["addresses"],
        serde_json::json!(["10.89.13.2/24", "fd00:89:13::2/64"])
    );
    let routes = run("ip", &["-n", &a, "-6", "route"]);
    assert!(
        routes.contains("default via fd00:89:13::1 dev eth0"),
        "{routes}"
    );
    assert!(in_netns(
        &a,
        &[
            "ping",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "fd00:89:13::50"
        ]
    ));
    assert!(ping(&b, "10.89.13.2", 2));
}

#[test]
fn the_socket_is_shared_with_a_named_group_and_an_unknown_group_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let bed = Bed::start_with(&[], &["--group", "nogroup"]);
    let meta = std::fs::metadata(&bed.socket).unwrap();
    let nogroup = run("getent", &["group", "nogroup"]);
    let gid: u32 = nogroup.split(':').nth(2).unwrap().trim().parse().unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o777), (gid, 0o660));
    bed.ok(&["network", "ls"]);

    let socket = bed.dir.join("other.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vswitch"))
        .arg("--socket")
        .arg(&socket)
        .arg("daemon")
        .arg("--state-dir")
        .arg(bed.dir.join("other-state"))
        .args(["--group", "no-such-group-vsw"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--group no-such-group-vsw: no such group"),
        "{stderr}"
    );
    assert!(!socket.exists());
}

#[test]
fn networks_listed_quietly_inspected_and_removed_by_several_names_and_pruned() {
    let mut bed = Bed::start();
    for (name, subnet, label) in [
        ("pa", "10.79.1.0/24", "tier=web"),
        ("pb", "10.79.2.0/24", "tier=db"),
        ("pc", "10.79.3.0/24", "team=a"),
    ] {
        bed.ok(&[
            "network", "create", name, "--subnet", subnet, "--label", label,
        ]);
    }
    bed.ok(&["network", "create", "used", "--subnet", "10.79.4.0/24"]);
    let ns = bed.netns("u");
    bed.ok(&["connect", "used", &ns]);
    let names = bed.ok(&["network", "ls", "-q"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["pa", "pb", "pc", "used"]);
    // --filter: by label (with or without a value), by part of the name, as Docker's.
    let filtered = |filters: &[&str]| {
        let mut args = vec!["network", "ls", "-q"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let out = bed.ok(&args);
        let mut names: Vec<String> = out.lines().map(String::from).collect();
        names.sort();
        names
    };
    assert_eq!(filtered(&["label=tier"]), ["pa", "pb"]);
    assert_eq!(filtered(&["label=tier=db"]), ["pb"]);
    assert_eq!(filtered(&["name=p", "label=team=a"]), ["pc"]);
    assert_eq!(filtered(&["name=us"]), ["used"]);
    assert_eq!(filtered(&["driver=bridge", "label=tier=web"]), ["pa"]);
    let table = bed.ok(&["network", "ls", "--filter", "name=pa"]);
    assert!(
        table.starts_with("ID            NAME  DRIVER  SCOPE") && table.contains("bridge  local"),
        "{table}"
    );
    let error = bed.fails(&["network", "create", "wide", "-d", "macvlan"]);
    assert!(error.contains("macvlan"), "{error}");
    bed.ok(&["network", "create", "wide", "-d", "overlay", "--vni", "77"]);
    assert_eq!(filtered(&["driver=overlay"]), ["wide"]);
    bed.ok(&["network", "rm", "wide"]);
    let refused = bed.vswitch(&["network", "ls", "--filter", "colour=red"]);
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && error.contains("colour=red"),
        "{error}"
    );

    let views: serde_json::Value =
        serde_json::from_str(&bed.ok(&["network", "inspect", "pa", "pb"])).unwrap();
    assert_eq!(views[0]["name"], "pa");
    assert_eq!(views[1]["name"], "pb");

    // Go templates, keys as in the JSON or in Docker's CamelCase; IDs as Docker's.
    let lines = bed.ok(&[
        "network",
        "ls",
        "--filter",
        "label=tier",
        "--format",
        "{{.Name}}\\t{{.Driver}} {{.ID}} {{range .Subnets}}{{.subnet}}{{end}} {{json .labels}}",
    ]);
    let rows: Vec<Vec<&str>> = lines
        .lines()
        .map(|l| l.split(['\t', ' ']).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{lines}");
    let (pa, pb) = (&rows[0], &rows[1]);
    assert_eq!(pa[0], "pa", "{lines}");
    assert_eq!(pa[1], "bridge");
    assert!(
        pa[2].len() == 64 && pa[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "{lines}"
    );
    assert_ne!(pa[2], pb[2], "IDs differ");
    assert_eq!(pa[3], "10.79.1.0/24");
    assert_eq!(pa[4], r#"{"tier":"web"}"#);
    // By a unique prefix of its ID, as Docker takes them; inspect's own template.
    let prefix = &pb[2][..8];
    let shown = bed.ok(&["network", "inspect", prefix, "-f", "{{.Name}} {{.MTU}}"]);
    assert_eq!(shown.trim(), "pb 1500");
    for (format, said) in [
        ("{{.Name", "invalid template"),
        ("yaml", "unknown format \"yaml\""),
    ] {
        let refused = bed.vswitch(&["network", "ls", "--format", format]);
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(
            refused.status.code() == Some(2) && error.contains(said),
            "{error}"
        );
    }

    // One name that fails does not keep the others; the exit status says something failed.
    let error = bed.fails(&["network", "rm", "pa", "nosuch"]);
    assert!(error.contains("nosuch"), "{error}");
    assert!(!bed.ok(&["network", "ls", "-q"]).contains("pa"));
    let error = bed.fails(&["network", "prune"]);
    assert!(error.contains("--force"), "{error}");
    let pruned = bed.ok(&["network", "prune", "--force"]);
    assert!(pruned.contains("pb") && pruned.contains("pc"), "{pruned}");
    assert_eq!(bed.ok(&["network", "ls", "-q"]).trim(), "used");
}

#[test]
fn the_install_step_puts_binaries_units_man_pages_and_completions_where_the_system_looks() {
    let stage = std::env::temp_dir().join(format!("vswt{}stage", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/install.sh");
    let out = std::process::Command::new(script)
        .env("BIN", env!("CARGO_BIN_EXE_vswitch"))
        .env("DESTDIR", &stage)
        .env("PREFIX", "/usr")
        .output()
        .unwrap();
    let usr = stage.join("usr");
    let man = std::process::Command::new("man")
        .arg("-l")
        .arg(usr.join("share/man/man1/vswitch-network-create.1"))
        .env("MANPAGER", "cat")
        .output();
    let bash = std::fs::read_to_string(usr.join("share/bash-completion/completions/vswitch"));
    let unit = std::fs::read_to_string(usr.join("lib/systemd/system/vswitch.service"));
    let files = [
        "bin/vswitch",
        "lib/cni/vswitch-cni",
        "lib/systemd/system/vswitch.socket",
        "share/man/man1/vswitch.1",
        "share/zsh/site-functions/_vswitch",
        "share/fish/vendor_completions.d/vswitch.fish",
    ]
    .map(|f| usr.join(f).exists());
    let _ = std::fs::remove_dir_all(&stage);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files, [true; 6]);
    // The unit runs the installed binary, says when it is ready, and spares the TAP keeper.
    let unit = unit.unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/vswitch daemon")
            && unit.contains("Type=notify")
            && unit.contains("KillMode=process"),
        "{unit}"
    );
    let bash = bash.unwrap();
    assert!(
        bash.contains("complete -F _vswitch") && bash.contains("prune"),
        "{bash}"
    );
    // The page renders, if man is there to render it.
    if let Ok(man) = man {
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(text.contains("--subnet"), "{text}");
    }
}

#[test]
fn endpoints_are_listed_with_their_addresses_and_inspected_by_name_or_namespace() {
    let mut bed = Bed::start();
    let ns = bed.network_with("eps", "10.79.5.0/24", &["a", "b"]);
    let table = bed.ok(&["endpoint", "ls", "eps"]);
    assert!(table.starts_with("NAME"), "{table}");
    for (netns, ip) in [(&ns[0], "10.79.5.2/24"), (&ns[1], "10.79.5.3/24")] {
        assert!(
            table
                .lines()
                .any(|l| l.contains(netns.as_str()) && l.contains(ip)),
            "{table}"
        );
    }
    assert_eq!(bed.ok(&["endpoint", "ls", "eps", "-q"]).lines().count(), 2);
    let one: serde_json::Value =
        serde_json::from_str(&bed.ok(&["endpoint", "inspect", "eps", &ns[1]])).unwrap();
    assert_eq!(one["addresses"][0], "10.79.5.3/24");
    let error = bed.fails(&["endpoint", "inspect", "eps", "nobody"]);
    assert!(error.contains("nobody"), "{error}");
    // `ports` of one network, with the addresses behind each port.
    bed.network_with("other", "10.79.6.0/24", &["c"]);
    let table = bed.ok(&["ports", "--network", "eps"]);
    assert!(
        table.lines().next().unwrap().contains("ADDRESSES"),
        "{table}"
    );
    assert!(!table.contains("other"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(ns[0].as_str()) && l.contains("10.79.5.2")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("gateway") && l.contains("10.79.5.1")),
        "{table}"
    );
}
