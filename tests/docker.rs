//! Docker through vswitch's remote network driver: a dockerd of the test's own (own data and
//! exec roots and socket, vfs, no iptables) beside a vswitch daemon in a namespace of the
//! test's own, containers from a busybox image imported from a rootfs. Containers reach each
//! other by name through Docker's DNS and the gateway's, carry 100 MB intact, honour --ip,
//! --mac-address and -p, move between networks with `docker network connect/disconnect`, and
//! vswitch sees them by their Docker names.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{
    eventually, finish_capture, ping_received, spawn_in_netns, start_capture, tcp_transfer,
    tshark_fields, Bed, ContainerCli, Dockerd, IMAGE,
};

/// One dockerd at a time: each takes a good part of this machine's two cores to start.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A vswitch daemon serving the driver to a dockerd beside it, in a namespace of the test's.
fn docker_bed(tag: &str) -> (Bed, Dockerd, String) {
    let mut docker = Dockerd::prepare(&format!("{}{tag}", std::process::id()));
    let (bed, ns) = Bed::start_beside_runtime(&docker.daemon_args());
    docker.start(&ns);
    (bed, docker, ns)
}

/// Creates a Docker network on the driver and waits until vswitch knows it by Docker's name.
fn docker_network(bed: &Bed, docker: &Dockerd, name: &str, args: &[&str]) {
    let mut create = vec!["network", "create", "-d", docker.driver.as_str()];
    create.extend_from_slice(args);
    create.push(name);
    docker.ok(&create);
    let named = eventually(Duration::from_secs(10), || {
        bed.ok(&["network", "ls", "-q"]).lines().any(|l| l == name)
    });
    assert!(
        named,
        "vswitch never named the network {name}: {}",
        bed.ok(&["network", "ls"])
    );
}

/// Waits until vswitch lists `container` on `network` by its Docker name; returns its record.
fn vswitch_endpoint(bed: &Bed, network: &str, container: &str) -> serde_json::Value {
    let named = eventually(Duration::from_secs(10), || {
        bed.vswitch(&["endpoint", "inspect", network, container])
            .status
            .success()
    });
    assert!(
        named,
        "vswitch never named {container}: {}",
        bed.ok(&["endpoint", "ls", network])
    );
    serde_json::from_str(&bed.ok(&["endpoint", "inspect", network, container])).unwrap()
}

fn sandbox(docker: &Dockerd, container: &str) -> String {
    docker
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.SandboxKey}}",
            container,
        ])
        .trim()
        .to_string()
}

#[test]
fn docker_containers_on_a_vswitch_network() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (bed, docker, daemon_ns) = docker_bed("a");
    docker_network(
        &bed,
        &docker,
        "app",
        &["--subnet", "10.231.200.0/24", "-o", "vswitch.mtu=1450"],
    );

    docker.run_sleeping("app", "web", &[]);
    docker.ok(&[
        "run",
        "-d",
        "--network",
        "app",
        "--name",
        "db",
        "--ip",
        "10.231.200.50",
        "--mac-address",
        "02:42:0a:e7:c8:32",
        "-p",
        "18080:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);

    // vswitch knows them by their Docker names, with what Docker asked for.
    let db = vswitch_endpoint(&bed, "app", "db");
    assert_eq!(db["mac"], "02:42:0a:e7:c8:32", "{db}");
    assert_eq!(db["addresses"][0], "10.231.200.50/24", "{db}");
    assert_eq!(db["ifname"], "eth0", "{db}");
    let web = vswitch_endpoint(&bed, "app", "web");
    let (_, eth0) = docker.sh("db", "ip addr show eth0");
    assert!(
        eth0.contains("02:42:0a:e7:c8:32")
            && eth0.contains("10.231.200.50/24")
            && eth0.contains("mtu 1450"),
        "{eth0}"
    );

    // By name through Docker's embedded DNS, and through the gateway's.
    let (pinged, out) = docker.sh("web", "ping -c 2 -W 2 db");
    assert!(pinged, "web -> db by Docker's DNS: {out}");
    let (pinged, out) = docker.sh("db", "ping -c 2 -W 2 web");
    assert!(pinged, "db -> web: {out}");
    let (asked, out) = docker.sh("web", "nslookup db 10.231.200.1");
    assert!(
        asked && out.contains("10.231.200.50"),
        "gateway's DNS: {out}"
    );

    // 100 MB intact between the containers' kernels.
    let (sent, got, bytes, _) = tcp_transfer(
        &sandbox(&docker, "web"),
        &sandbox(&docker, "db"),
        "10.231.200.50",
        100_000_000,
    );
    assert_eq!((bytes, got), (100_000_000, sent), "100 MB web -> db");

    // The published port reaches db's httpd from the daemon's namespace.
    let page = spawn_in_netns(&daemon_ns, || {
        let mut conn = std::net::TcpStream::connect_timeout(
            &"127.0.0.1:18080".parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").unwrap();
        let mut page = String::new();
        let _ = conn.read_to_string(&mut page);
        page
    })
    .join()
    .unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "published port: {page}");

    // Docker's names in the port table, the FDB and trace.
    let ports: Vec<String> = bed
        .ports()
        .iter()
        .filter_map(|p| p["endpoint"].as_str().map(str::to_string))
        .collect();
    assert!(
        ports.contains(&"web".to_string()) && ports.contains(&"db".to_string()),
        "{ports:?}"
    );
    let fdb = bed.json(&["fdb", "app"]);
    let rows = fdb.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|e| e["endpoint"] == "db" && e["mac"] == db["mac"])
            && rows.iter().any(|e| e["endpoint"] == "web"),
        "{fdb}"
    );
    let report = bed.json(&["trace", "app", "--from", "web", "--to", "db"]);
    assert_eq!(report["verdict"], "forwarded", "{report}");
    assert!(
        report["egress"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("db"),
        "{report}"
    );

    // A capture of the Docker container's port by its Docker name.
    let file = bed.dir.join("web.pcapng");
    let capture = start_capture(&bed, &file, &["--port", "web", "-c", "4"]);
    docker.sh("web", "ping -c 2 -W 2 db");
    finish_capture(capture);
    let frames = tshark_fields(&file, &["ip.src", "ip.dst", "icmp.type"]);
    let web_ip = web["addresses"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        frames.contains(&format!("{web_ip}\t10.231.200.50\t8")),
        "{frames}"
    );

    // A second network: connect web at run time; isolation between the two.
    docker_network(&bed, &docker, "other", &["--subnet", "10.231.201.0/24"]);
    docker.ok(&["network", "connect", "other", "web"]);
    let eth1 = vswitch_endpoint(&bed, "other", "web");
    assert_eq!(eth1["ifname"], "eth1", "{eth1}");
    docker.run_sleeping("other", "probe", &[]);
    let (pinged, out) = docker.sh("probe", "ping -c 1 -W 2 web");
    assert!(pinged, "probe -> web on other: {out}");
    let (crossed, out) = docker.sh("probe", "ping -c 1 -W 1 10.231.200.50");
    assert!(!crossed, "other reached db on app: {out}");
    docker.ok(&["network", "disconnect", "other", "web"]);
    let gone = eventually(Duration::from_secs(10), || {
        !bed.vswitch(&["endpoint", "inspect", "other", "web"])
            .status
            .success()
    });
    assert!(
        gone,
        "web still on other: {}",
        bed.ok(&["endpoint", "ls", "other"])
    );
    let (_, links) = docker.sh("web", "ip link");
    assert!(!links.contains("eth1"), "{links}");

    // Removing containers and networks leaves nothing in vswitch.
    docker.ok(&["rm", "-f", "web", "db", "probe"]);
    docker.ok(&["network", "rm", "app", "other"]);
    assert_eq!(bed.ok(&["network", "ls", "-q"]).trim(), "");
}

#[test]
fn docker_network_options_are_checked_by_vswitch() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (bed, docker, _) = docker_bed("b");
    let refused = docker.docker(&[
        "network",
        "create",
        "-d",
        &docker.driver,
        "--subnet",
        "10.231.202.0/24",
        "-o",
        "vswitch.colour=red",
        "bad",
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("vswitch.colour"),
        "{err}"
    );
    assert_eq!(
        bed.ok(&["network", "ls", "-q"]).trim(),
        "",
        "a refused network left something"
    );
    docker_network(
        &bed,
        &docker,
        "quiet",
        &[
            "--subnet",
            "10.231.202.0/24",
            "-o",
            "vswitch.default-action=deny",
            "--internal",
        ],
    );
    let net: serde_json::Value =
        serde_json::from_str(&bed.ok(&["network", "inspect", "quiet"])).unwrap();
    assert_eq!(net["internal"], true, "{net}");
    assert_eq!(net["policy"]["default"], "deny", "{net}");

    // Policy selects Docker's containers by their names: web may reach db, nothing else.
    for name in ["web", "db"] {
        docker.run_sleeping("quiet", name, &[]);
        vswitch_endpoint(&bed, "quiet", name);
    }
    bed.ok(&[
        "policy", "add", "quiet", "web-db", "--action", "allow", "--to", "name=db", "--peer",
        "name=web",
    ]);
    let (pinged, out) = docker.sh("web", "ping -c 1 -W 2 db");
    assert!(pinged, "web -> db, allowed by name: {out}");
    let (pinged, out) = docker.sh("db", "ping -c 1 -W 1 web");
    assert!(!pinged, "db -> web, denied: {out}");

    // Dual stack: Docker's IPv6 pool and gateway, and its --ip-range, on a vswitch network.
    docker_network(
        &bed,
        &docker,
        "dual",
        &[
            "--ipv6",
            "--subnet",
            "fd00:231:205::/64",
            "--subnet",
            "10.231.205.0/24",
            "--ip-range",
            "10.231.205.128/25",
        ],
    );
    for name in ["v6a", "v6b"] {
        docker.run_sleeping("dual", name, &[]);
        vswitch_endpoint(&bed, "dual", name);
    }
    let a = vswitch_endpoint(&bed, "dual", "v6a");
    let addresses = a["addresses"].to_string();
    let v4: std::net::Ipv4Addr = a["addresses"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        v4.octets()[3] >= 128,
        "{v4} is outside --ip-range 10.231.205.128/25"
    );
    assert!(addresses.contains("fd00:231:205::"), "{a}");
    let (pinged, out) = docker.sh("v6b", "ping -6 -c 1 -W 2 v6a && ip -6 route");
    assert!(
        pinged && out.contains("default via fd00:231:205::1"),
        "v6b -> v6a over IPv6: {out}"
    );
}

#[test]
fn docker_containers_do_not_notice_a_vswitch_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut bed, docker, _) = docker_bed("c");
    docker_network(&bed, &docker, "app", &["--subnet", "10.231.203.0/24"]);
    for name in ["web", "db"] {
        docker.run_sleeping("app", name, &[]);
        vswitch_endpoint(&bed, "app", name);
    }
    // 100 echoes at 20/s from web to db; vswitch is killed and started again 1.5 s in.
    let pings = std::process::Command::new("/usr/bin/docker")
        .arg("--host")
        .arg(format!("unix://{}", docker.socket.display()))
        .args([
            "exec", "web", "ping", "-c", "100", "-i", "0.05", "-W", "1", "db",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::time::Instant::now();
    bed.kill_daemon();
    bed.start_daemon();
    let gap = killed.elapsed();
    let lost = 100 - ping_received(pings);
    let allowed = (gap.as_secs_f64() * 20.0).ceil() as u32 + 2;
    eprintln!("restart gap {gap:?}: {lost} of 100 echoes between Docker containers lost (at most {allowed})");
    assert!(lost <= allowed, "{lost} echoes lost over a {gap:?} gap");
    // Still the same containers to vswitch, by name; still reachable through Docker's names.
    vswitch_endpoint(&bed, "app", "web");
    let (pinged, out) = docker.sh("db", "ping -c 1 -W 2 web");
    assert!(pinged, "{out}");
    assert!(bed.log().contains("adopted=true"), "{}", bed.log());
}
