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
