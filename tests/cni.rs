//! The `vswitch-cni` plugin invoked as the CNI spec defines (CNI_* variables, configuration on
//! standard input, a result or an error object on standard output) against a daemon of the
//! test's own: ADD, CHECK, DEL, GC, STATUS and VERSION, and each way of getting it wrong
//! answered with the spec's code and nothing half-made.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use common::*;

/// Runs the plugin: its exit success and its answer (null when it printed nothing).
fn cni(command: &str, vars: &[(&str, &str)], conf: &Value) -> (bool, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vswitch-cni"))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/nonexistent")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let answer = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (out.status.success(), answer)
}

fn config(bed: &Bed, network: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": network,
        "type": "vswitch-cni",
        "socket": bed.socket,
    })
}

fn attach_vars<'a>(id: &'a str, netns: &'a str, args: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args),
    ]
}

#[test]
fn add_check_del_through_the_plugin_as_a_runtime_calls_it() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "pods", "--subnet", "10.231.221.0/24"]);
    let ns = bed.netns("c1");
    let path = format!("/run/netns/{ns}");
    let conf = config(&bed, "pods");

    let (ok, version) = cni("VERSION", &[], &json!({"cniVersion": "1.1.0"}));
    assert!(
        ok && version["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.0.0")),
        "{version}"
    );

    let vars = attach_vars(
        "c0ffee0000000001",
        &path,
        "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.231.221.7;MAC=02:00:00:00:01:07",
    );
    let (ok, result) = cni("ADD", &vars, &conf);
    assert!(ok, "{result}");
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:01:07");
    assert_eq!(result["interfaces"][0]["sandbox"], path);
    assert_eq!(result["ips"][0]["address"], "10.231.221.7/24");
    assert_eq!(result["ips"][0]["gateway"], "10.231.221.1");
    assert_eq!(result["routes"][0]["gw"], "10.231.221.1");
    assert_eq!(result["dns"]["nameservers"][0], "10.231.221.1");
    // The container is on the network, by its runtime's name, and reaches the gateway.
    let endpoint: Value =
        serde_json::from_str(&bed.ok(&["endpoint", "inspect", "pods", "web"])).unwrap();
    assert_eq!(endpoint["cni_container"], "c0ffee0000000001");
    assert!(ping(&ns, "10.231.221.1", 1));

    // CHECK passes against ADD's result, and names the drift when it differs.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    let (ok, answer) = cni("CHECK", &vars, &with_prev);
    assert!(ok && answer.is_null(), "{answer}");
    let mut drifted = with_prev.clone();
    drifted["prevResult"]["ips"][0]["address"] = json!("10.231.221.8/24");
    let (ok, answer) = cni("CHECK", &vars, &drifted);
    assert!(!ok && answer["code"] == 100, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("10.231.221.8/24"),
        "{answer}"
    );

    // DEL removes it; a second DEL, and a DEL on a network that is gone, succeed.
    let (ok, answer) = cni("DEL", &vars, &with_prev);
    assert!(ok && answer.is_null(), "{answer}");
    assert!(!has_link(&ns, "eth0"), "interface left behind");
    assert!(bed.ports().is_empty());
    let (ok, _) = cni("DEL", &vars, &with_prev);
    assert!(ok, "DEL of what is gone failed");
    let (ok, _) = cni("DEL", &vars, &config(&bed, "no-such-network"));
    assert!(ok, "DEL on an unknown network failed");
    // CHECK of a container not attached: unknown container.
    let (ok, answer) = cni("CHECK", &vars, &with_prev);
    assert!(!ok && answer["code"] == 3, "{answer}");
}

#[test]
fn every_wrong_call_gets_its_code_and_changes_nothing() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "pods", "--subnet", "10.231.222.0/24"]);
    let ns = bed.netns("c2");
    let path = format!("/run/netns/{ns}");
    let vars = attach_vars("c0ffee0000000002", &path, "");
    let expect = |command: &str, vars: &[(&str, &str)], conf: &Value, code: u64| {
        let (ok, answer) = cni(command, vars, conf);
        assert!(!ok, "{command} succeeded: {answer}");
        assert_eq!(answer["code"], code, "{command}: {answer}");
        assert!(
            !answer["msg"].as_str().unwrap_or_default().is_empty(),
            "{answer}"
        );
    };
    // An unknown network (code 7), a namespace that does not exist (3), a configuration that
    // is not JSON (6), a version this plugin does not speak (1), a missing CNI_NETNS (4).
    expect("ADD", &vars, &config(&bed, "nope"), 7);
    expect(
        "ADD",
        &attach_vars("c0ffee0000000002", "/run/netns/absent-ns", ""),
        &config(&bed, "pods"),
        3,
    );
    expect("ADD", &vars, &json!("{not json"), 6);
    let mut old = config(&bed, "pods");
    old["cniVersion"] = json!("0.1.0");
    expect("ADD", &vars, &old, 1);
    expect(
        "ADD",
        &[("CNI_CONTAINERID", "x"), ("CNI_IFNAME", "eth0")],
        &config(&bed, "pods"),
        4,
    );
    // An address outside the subnet is the daemon's refusal, named.
    let bad_ip = attach_vars("c0ffee0000000002", &path, "IP=192.0.2.9");
    let (ok, answer) = cni("ADD", &bad_ip, &config(&bed, "pods"));
    assert!(
        !ok && answer["msg"].as_str().unwrap().contains("192.0.2.9"),
        "{answer}"
    );
    // Nothing was made by any of them.
    assert!(bed.ports().is_empty());
    assert!(!has_link(&ns, "eth0"));
    // STATUS: ready for a known network; not available for an unknown one or no daemon.
    let (ok, _) = cni("STATUS", &[], &config(&bed, "pods"));
    assert!(ok);
    expect("STATUS", &[], &config(&bed, "nope"), 50);
    let mut no_daemon = config(&bed, "pods");
    no_daemon["socket"] = json!("/nonexistent/vswitch.sock");
    expect("STATUS", &[], &no_daemon, 50);
    expect("ADD", &vars, &no_daemon, 11);
}

#[test]
fn gc_removes_the_attachments_the_runtime_no_longer_lists() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "pods", "--subnet", "10.231.223.0/24"]);
    let keep = bed.netns("keep");
    let stale = bed.netns("stale");
    let conf = config(&bed, "pods");
    for (id, ns) in [("keep00000001", &keep), ("stale0000001", &stale)] {
        let path = format!("/run/netns/{ns}");
        let (ok, answer) = cni("ADD", &attach_vars(id, &path, ""), &conf);
        assert!(ok, "{answer}");
    }
    // An endpoint connected by hand is not the plugin's to collect.
    let manual = bed.netns("manual");
    bed.ok(&["connect", "pods", &manual]);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep00000001", "ifname": "eth0"}]);
    let (ok, answer) = cni("GC", &[], &gc);
    assert!(ok, "{answer}");
    assert!(has_link(&keep, "eth0") && !has_link(&stale, "eth0"));
    assert!(has_link(&manual, "eth0"));
    assert_eq!(bed.ports().len(), 2);
}
