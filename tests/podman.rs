//! Root Podman on the CNI backend with `vswitch-cni`: containers attach to a vswitch network,
//! reach each other by name through the gateway's DNS (the plugin's result makes it their
//! resolver), take `--ip` and `--mac-address`, show their address in `podman inspect`, and
//! leave nothing in the daemon once removed.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn podman_containers_on_a_vswitch_network() {
    let bed = Bed::start();
    bed.ok(&["network", "create", "pods", "--subnet", "10.231.224.0/24"]);
    let podman = Podman::start(&format!("{}a", std::process::id()));
    podman.network("pods", &bed.socket);

    podman.run_sleeping("pods", "web", &[]);
    podman.run_sleeping(
        "pods",
        "db",
        &[
            "--ip",
            "10.231.224.50",
            "--mac-address",
            "02:00:00:00:02:50",
        ],
    );
    let inspected = podman.ok(&[
        "inspect", "db", "--format",
        "{{.NetworkSettings.Networks.pods.IPAddress}} {{.NetworkSettings.Networks.pods.MacAddress}}",
    ]);
    assert_eq!(inspected.trim(), "10.231.224.50 02:00:00:00:02:50");
    let endpoints = bed.ok(&["endpoint", "ls", "pods", "-q"]);
    let mut names: Vec<&str> = endpoints.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["db", "web"],
        "vswitch knows them by their Podman names"
    );

    let (pinged, out) = podman.sh("web", "ping -c 2 -W 2 db");
    assert!(
        pinged && out.contains("10.231.224.50"),
        "web -> db by name: {out}"
    );
    let (pinged, out) = podman.sh("db", "ping -c 2 -W 2 web");
    assert!(pinged, "db -> web: {out}");

    // Removed, they leave no endpoint, port, name or lease behind.
    podman.ok(&["rm", "--force", "--time", "0", "web", "db"]);
    assert!(
        eventually(Duration::from_secs(5), || bed.ports().is_empty()),
        "ports left: {:?}",
        bed.ports()
    );
    let network: serde_json::Value =
        serde_json::from_str(&bed.ok(&["network", "inspect", "pods"])).unwrap();
    assert_eq!(network["endpoints"], serde_json::json!({}), "{network}");
    assert!(network.get("leases").is_none(), "{network}");
}

/// `podman run -p` on a vswitch network: Podman's own `portmap` plugin, chained after
/// vswitch-cni, sets up the kernel's DNAT (root Podman holds the host port and leaves the
/// forwarding to its plugins); the network's `--host-iface` routes to the containers. The
/// container sees the client's own address. Daemon, Podman and client all live in namespaces
/// of the test's own.
#[test]
fn podman_run_publish_through_the_portmap_plugin_keeps_the_client_address() {
    let (mut bed, ns) = Bed::start_beside_runtime(&[]);
    bed.ok(&[
        "network",
        "create",
        "pub",
        "--subnet",
        "10.231.226.0/24",
        "--host-iface",
        "vsp0",
    ]);
    // The outside world: a client on a link of its own into the daemon's namespace.
    let client = bed.netns("client");
    run(
        "ip",
        &[
            "link", "add", "out0", "netns", &ns, "type", "veth", "peer", "name", "eth0", "netns",
            &client,
        ],
    );
    for (netns, cidr, dev) in [
        (&ns, "10.231.227.1/24", "out0"),
        (&client, "10.231.227.2/24", "eth0"),
    ] {
        run("ip", &["-n", netns, "addr", "add", cidr, "dev", dev]);
        run("ip", &["-n", netns, "link", "set", dev, "up"]);
    }
    // (No sysctl on a minimal Debian: the namespace's own /proc/sys.)
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ],
    );
    let mut podman = Podman::start(&format!("{}p", std::process::id()));
    podman.netns = Some(ns.clone());
    podman.network_with_portmap("pub", &bed.socket);
    // A web server whose CGI answers with the address the request came from.
    let serve = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho\\necho $REMOTE_ADDR\\n' \
                 > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && httpd -f -p 80 -h /www";
    podman.ok(&[
        "run",
        "-d",
        "--network",
        "pub",
        "--name",
        "web",
        "-p",
        "8080:80",
        IMAGE,
        "sh",
        "-c",
        serve,
    ]);
    // An HTTP request from the client (bash's /dev/tcp: Debian's dynamic busybox wget crashes
    // here); the answer's body is the address the container saw.
    let fetch = || {
        let request = "exec 3<>/dev/tcp/10.231.227.1/8080 && \
                       printf 'GET /cgi-bin/peer HTTP/1.0\r\n\r\n' >&3 && cat <&3";
        std::process::Command::new("ip")
            .args([
                "netns", "exec", &client, "timeout", "5", "bash", "-c", request,
            ])
            .output()
            .unwrap()
    };
    let answered = eventually(Duration::from_secs(10), || fetch().status.success());
    let out = fetch();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        answered && said.contains("200 OK"),
        "the published port answers: {said}"
    );
    let peer = said.lines().last().unwrap_or_default();
    assert!(
        peer.trim_matches(['[', ']']).trim_start_matches("::ffff:") == "10.231.227.2",
        "the container sees the client's own address: {said}"
    );
    // Removed: the port is closed (portmap's DEL) and vswitch has no endpoint left.
    podman.ok(&["rm", "--force", "--time", "0", "web"]);
    assert!(
        !fetch().status.success(),
        "nothing answers once web is gone"
    );
    let network = bed.inspect("pub");
    assert_eq!(network["endpoints"], serde_json::json!({}), "{network}");
}
