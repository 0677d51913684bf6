//! The learning switch end to end: real namespaces, real TAP devices, real kernel stacks on both
//! sides, and the `vswitch` daemon and CLI in between. Needs root (CI runs as root).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn three_containers_reach_each_other_and_100_mb_arrives_intact() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.89.1.0/24"]);
    let names: Vec<String> = ["a", "b", "c"].iter().map(|n| bed.netns(n)).collect();
    let mut ips = Vec::new();
    for ns in &names {
        let endpoint = bed.json(&["connect", "app", ns]);
        let cidr = endpoint["addresses"][0].as_str().unwrap().to_string();
        ips.push(cidr.split('/').next().unwrap().to_string());
    }
    assert_eq!(ips, ["10.89.1.2", "10.89.1.3", "10.89.1.4"]);

    for (i, from) in names.iter().enumerate() {
        for (j, to) in ips.iter().enumerate() {
            if i != j {
                assert!(ping(from, to, 2), "{from} cannot ping {to}");
            }
        }
    }

    let total = 100 * 1024 * 1024;
    let (sent, got, len, secs) = tcp_transfer(&names[0], &names[1], &ips[1], total);
    assert_eq!(len, total, "bytes received");
    assert_eq!(sent, got, "payload digest");
    let rtt = ping_rtt_ms(&names[0], &ips[1], 50);
    println!(
        "measured: TCP {:.2} Gbit/s (100 MB in {secs:.2} s, debug={}), ping RTT avg {:.0} us",
        total as f64 * 8.0 / secs / 1e9,
        cfg!(debug_assertions),
        rtt * 1000.0
    );

    // The FDB learned every container on its own port.
    let fdb = bed.json(&["fdb", "app"]);
    let learned: Vec<&str> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    for ns in &names {
        assert!(learned.contains(&ns.as_str()), "{ns} not in {fdb}");
    }
    let ports = bed.ports();
    assert_eq!(ports.len(), 3);
    assert!(ports.iter().all(|p| p["rx_packets"].as_u64().unwrap() > 0));
}

#[test]
fn two_networks_never_see_each_others_frames() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "red", "--subnet", "10.89.2.0/24"]);
    bed.ok(&["network", "create", "blue", "--subnet", "10.89.3.0/24"]);
    let red: Vec<String> = ["r0", "r1"].iter().map(|n| bed.netns(n)).collect();
    let blue: Vec<String> = ["b0", "b1"].iter().map(|n| bed.netns(n)).collect();
    let mut red_macs = Vec::new();
    for ns in &red {
        let endpoint = bed.json(&["connect", "red", ns]);
        red_macs.push(mac_bytes(endpoint["mac"].as_str().unwrap()));
    }
    for ns in &blue {
        bed.ok(&["connect", "blue", ns]);
    }

    // Red sends unicast, and broadcast ARP for an address nobody has, while blue listens.
    let seen = capture_sources(&blue[0], "eth0", || {
        assert!(ping(&red[0], "10.89.2.3", 3));
        assert!(!ping(&red[0], "10.89.2.99", 2), "nobody has .99");
        // Broadcast echo: Linux ignores it by default, so only the frames on the wire matter.
        let _ = in_netns(
            &red[1],
            &[
                "ping",
                "-b",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                "10.89.2.255",
            ],
        );
    });
    let leaked: Vec<_> = seen.iter().filter(|src| red_macs.contains(src)).collect();
    assert!(leaked.is_empty(), "blue saw {} red frames", leaked.len());
    // Blue is not unreachable for lack of a working switch: its own pair still talks.
    assert!(ping(&blue[0], "10.89.3.3", 2));

    // Counters agree: every frame sent out of a blue port came in on the other blue port.
    let ports = bed.ports();
    let sum = |net: &str, field: &str| -> u64 {
        ports
            .iter()
            .filter(|p| p["network"] == net)
            .map(|p| p[field].as_u64().unwrap())
            .sum()
    };
    assert!(
        sum("blue", "tx_packets") <= sum("blue", "rx_packets"),
        "{ports:?}"
    );
    assert!(
        sum("red", "tx_packets") <= sum("red", "rx_packets"),
        "{ports:?}"
    );
}

#[test]
fn an_idle_switch_uses_no_cpu() {
    let mut bed = Bed::start();
    let [a, _b]: [String; 2] = bed
        .network_with("app", "10.89.4.0/24", &["a", "b"])
        .try_into()
        .unwrap();
    assert!(ping(&a, "10.89.4.3", 2));
    // Let the kernel's own chatter on fresh interfaces (IPv6 DAD, MLD) settle.
    std::thread::sleep(Duration::from_secs(2));
    let pid = bed.daemon_pid();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // A busy loop would burn ~300 ticks here; a woken-but-idle daemon a few at most.
    assert!(used <= 3, "idle daemon used {used} ticks of CPU in 3 s");
}

/// Runs `vswitch up FILE --once` for a file of `configs/` whose containers are `names`;
/// returns its output after checking it succeeded and left nothing behind.
fn up_once(file: &str, names: &[&str]) -> String {
    let exists = |n: &str| std::path::Path::new("/run/netns").join(n).exists();
    assert!(
        !names.iter().any(|n| exists(n)),
        "a namespace named like a container of {file} ({names:?}) already exists here"
    );
    let dir = std::env::temp_dir().join(format!("vswt{}up{file}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!("{}/../configs/{file}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vswitch"))
        .arg("--socket")
        .arg(dir.join("sock"))
        .args(["up", &config, "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    // `up` tears down by itself; make sure of it even if it crashed.
    for n in names {
        if exists(n) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("topology torn down"), "{stdout}");
    assert!(
        !names.iter().any(|n| exists(n)),
        "up left a namespace behind"
    );
    assert!(
        !names
            .iter()
            .any(|n| std::path::Path::new("/etc/netns").join(n).exists()),
        "up left a resolv.conf behind"
    );
    stdout
}

#[test]
fn the_quickstart_topology_comes_up_pings_and_leaves_nothing_behind() {
    let stdout = up_once("quickstart.toml", &["web", "api", "db"]);
    assert_eq!(stdout.matches(" 0% packet loss").count(), 6, "{stdout}");
}

#[test]
fn the_policy_example_lets_through_only_what_its_rules_allow() {
    let stdout = up_once("policy.toml", &["frontend", "backend", "database"]);
    assert_eq!(stdout.matches(" 0% packet loss").count(), 2, "{stdout}");
    assert_eq!(stdout.matches(" 100% packet loss").count(), 3, "{stdout}");
}

#[test]
fn a_trunk_carries_each_network_under_its_vlan_tag() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.89.20.0/24",
        "--vlan",
        "10",
    ]);
    bed.ok(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.89.21.0/24",
        "--vlan",
        "20",
    ]);
    let r = bed.netns("r");
    let b = bed.netns("b");
    let t = bed.netns("t");
    bed.ok(&["connect", "red", &r, "--ip", "10.89.20.2"]);
    bed.ok(&["connect", "blue", &b, "--ip", "10.89.21.2"]);
    let trunk = bed.json(&["trunk", "add", &t, "--network", "red", "--network", "blue"]);
    assert_eq!(trunk["ifname"], "trunk0");
    let mac = mac_bytes(trunk["mac"].as_str().unwrap());
    let arp = |vid, target: [u8; 4], sender: [u8; 4]| {
        arp_over_raw_socket(&t, "trunk0", mac, sender, target, vid)
    };

    // Tagged 10 reaches red, untagged; red's answer comes back tagged 10.
    assert_eq!(arp(Some(10), [10, 89, 20, 2], [10, 89, 20, 100]), Some(10));
    // Tagged 20 reaches blue only: red's host does not hear it, blue's answers on 20.
    assert_eq!(arp(Some(20), [10, 89, 20, 2], [10, 89, 20, 100]), None);
    assert_eq!(arp(Some(20), [10, 89, 21, 2], [10, 89, 21, 100]), Some(20));
    // Untagged and unknown VLANs are not carried: dropped and counted.
    assert_eq!(arp(None, [10, 89, 20, 2], [10, 89, 20, 100]), None);
    assert_eq!(arp(Some(30), [10, 89, 20, 2], [10, 89, 20, 100]), None);
    let ports = bed.ports();
    let trunk_port = ports.iter().find(|p| p["endpoint"] == t.as_str()).unwrap();
    assert_eq!(trunk_port["network"], "red/10,blue/20");
    assert!(
        trunk_port["drops_by_reason"]["vlan_not_allowed"]
            .as_u64()
            .unwrap()
            >= 2,
        "{trunk_port}"
    );

    // A network carried by a trunk cannot be removed; after the trunk goes, it can.
    assert!(bed
        .fails(&["network", "rm", "blue"])
        .contains(&format!("trunk {t}")));
    bed.ok(&["trunk", "rm", &t]);
    assert!(!has_link(&t, "trunk0"));
    bed.ok(&["disconnect", "blue", &b]);
    bed.ok(&["network", "rm", "blue"]);
}

#[test]
fn ctrl_c_tears_down_what_up_made() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("vswt{}ctrlc", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = [
        format!("vswt{}u1", std::process::id()),
        format!("vswt{}u2", std::process::id()),
    ];
    let config = format!(
        "[[networks]]\nname = \"n\"\nsubnets = [\"10.89.30.0/24\"]\n\n\
         [[containers]]\nname = \"{}\"\nnetworks = [\"n\"]\n\n\
         [[containers]]\nname = \"{}\"\nnetworks = [\"n\"]\nrun = [\"ping -c 1 -W 2 10.89.30.2\"]\n",
        names[0], names[1]
    );
    std::fs::write(dir.join("topology.toml"), config).unwrap();
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_vswitch"))
        .arg("--socket")
        .arg(dir.join("sock"))
        .arg("up")
        .arg(dir.join("topology.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(up.id() as i32);
    let mut lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("topology up"));
    let up_ns = |n: &String| std::path::Path::new("/run/netns").join(n).exists();
    let all_there = names.iter().all(up_ns);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = up.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    for n in &names {
        if up_ns(n) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ready.is_some() && all_there, "topology never came up");
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l == "topology torn down"), "{rest:?}");
    assert!(!names.iter().any(up_ns), "namespaces left behind");
}

/// Runs `vswitch up --once` on a topology of network `n` (`subnet`) and one container (`tag`
/// makes its name unique) with the given extra line; returns the container's name, the run's
/// status and stderr, and whether its namespace was left behind (removed either way).
fn up_once_failing(tag: &str, subnet: &str, container_line: &str) -> (String, bool, String, bool) {
    let dir = std::env::temp_dir().join(format!("vswt{}{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("vswt{}{tag}", std::process::id());
    let config = format!(
        "[[networks]]\nname = \"n\"\nsubnets = [\"{subnet}\"]\n\n\
         [[containers]]\nname = \"{name}\"\nnetworks = [\"n\"]\n{container_line}\n"
    );
    std::fs::write(dir.join("topology.toml"), config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vswitch"))
        .arg("--socket")
        .arg(dir.join("sock"))
        .arg("up")
        .arg(dir.join("topology.toml"))
        .arg("--once")
        .output()
        .unwrap();
    let left = std::path::Path::new("/run/netns").join(&name).exists();
    if left {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (name, out.status.success(), stderr, left)
}

#[test]
fn a_topology_address_outside_the_containers_networks_is_refused_and_nothing_is_left() {
    let (name, ok, stderr, left) =
        up_once_failing("bi", "10.89.31.0/24", "ips = [\"10.89.32.10\"]");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "topology.toml: container {name}: ips: 10.89.32.10 is in none of its networks' subnets (n 10.89.31.0/24)"
        )),
        "{stderr}"
    );
    assert!(!left, "the namespace was left behind");
}

#[test]
fn a_failing_topology_command_is_named_with_its_exit_status() {
    let (name, ok, stderr, left) = up_once_failing("br", "10.89.33.0/24", "run = [\"exit 3\"]");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("[{name}] \"exit 3\" failed (exit status: 3)")),
        "{stderr}"
    );
    assert!(!left, "the namespace was left behind");
}

/// `up --detach` beside a running daemon: the topology is built there and left running (the
/// daemon's own listing shows it, the containers reach each other); `down` removes it all.
#[test]
fn a_topology_left_on_a_running_daemon_and_taken_down() {
    let mut bed = Bed::start();
    let names = [
        format!("vswt{}d1", std::process::id()),
        format!("vswt{}d2", std::process::id()),
    ];
    let file = bed.dir.join("topology.toml");
    std::fs::write(
        &file,
        format!(
            "[[networks]]\nname = \"kept\"\nsubnets = [\"10.89.34.0/24\"]\n\n\
             [[containers]]\nname = \"{}\"\nnetworks = [\"kept\"]\nips = [\"10.89.34.10\"]\n\n\
             [[containers]]\nname = \"{}\"\nnetworks = [\"kept\"]\n",
            names[0], names[1]
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_string();
    /// Deletes the namespaces `up` made, also when the test fails.
    struct Namespaces<'a>(&'a [String; 2]);
    impl Drop for Namespaces<'_> {
        fn drop(&mut self) {
            for n in self.0 {
                if std::path::Path::new("/run/netns").join(n).exists() {
                    let _ = std::process::Command::new("ip")
                        .args(["netns", "del", n])
                        .status();
                }
            }
        }
    }
    let _cleanup = Namespaces(&names);
    let error = bed.fails(&["up", "--detach", "--aging", "5", &file]);
    assert!(error.contains("--aging"), "{error}");
    let said = bed.ok(&["up", "--detach", &file]);
    assert!(said.contains("`vswitch down"), "{said}");
    assert_eq!(bed.ok(&["network", "ls", "-q"]).trim(), "kept");
    assert_eq!(bed.ok(&["endpoint", "ls", "kept", "-q"]).lines().count(), 2);
    assert!(ping(&names[1], "10.89.34.10", 1), "left running");
    let error = bed.fails(&["up", "--detach", &file]);
    assert!(error.contains("already exists"), "{error}");
    let said = bed.ok(&["down", &file]);
    assert!(said.contains("topology torn down"), "{said}");
    assert_eq!(bed.ok(&["network", "ls", "-q"]).trim(), "");
    assert!(!names
        .iter()
        .any(|n| std::path::Path::new("/run/netns").join(n).exists()));
    // Without a daemon to leave it to, --detach is refused, naming the socket.
    bed.stop_daemon();
    let error = bed.fails(&["up", "--detach", &file]);
    assert!(error.contains("none listens on"), "{error}");
}
