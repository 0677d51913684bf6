//! TAP attach on a real namespace (needs root, as CI has): the device appears configured inside
//! the namespace and disappears when dropped.

use std::process::Command;

use tap::{attach, create_named, delete_named, Namespace, NetnsRef, TapConfig};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the namespace even when the test fails.
struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _ = rt.block_on(delete_named(&self.0));
    }
}

#[test]
fn tap_is_created_configured_and_removed_inside_the_namespace() {
    let name = format!("vsw-tap-{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(create_named(&name)).unwrap();
    let _guard = NsGuard(name.clone());

    let ns = Namespace::open(&NetnsRef::Name(name.clone())).unwrap();
    let config = TapConfig {
        ifname: "eth0".into(),
        mac: [0x02, 0x11, 0x22, 0x33, 0x44, 0x55],
        mtu: 1400,
        addresses: vec![
            "10.250.0.2/24".parse().unwrap(),
            "fd00:250::2/64".parse().unwrap(),
        ],
        gateways: vec!["10.250.0.1".parse().unwrap()],
        offload: true,
        queues: 2,
        disable_ipv6: false,
        ipv6_autoconf: false,
        handover: false,
    };
    let tap = attach(&ns, &config).unwrap();
    assert_eq!(tap.queue_count(), 2);
    assert!(tap.vnet_hdr(), "offloads negotiated");
    let link = ip(&["-n", &name, "link", "show", "eth0"]);
    assert!(link.contains("02:11:22:33:44:55"), "{link}");
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains("qlen 1000"), "{link}");
    let addrs = ip(&["-n", &name, "addr", "show", "eth0"]);
    assert!(
        addrs.contains("10.250.0.2/24") && addrs.contains("fd00:250::2/64"),
        "{addrs}"
    );
    let routes = ip(&["-n", &name, "route"]);
    assert!(
        routes.contains("default via 10.250.0.1 dev eth0"),
        "{routes}"
    );

    // The name is taken now.
    let err = attach(&ns, &config).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    drop(tap);
    assert!(ip(&["-n", &name, "link", "show", "eth0"]).is_empty());
    assert!(ns.is_alive());
}
