//! Network namespaces: run a command or a thread inside one, check that an interface exists.

use std::fs;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

/// Runs a command inside a namespace; returns whether it succeeded.
pub fn in_netns(netns: &str, args: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Runs `work` on a thread that has entered the namespace `netns` (an `ip netns` name, or a
/// path such as /proc/PID/ns/net).
pub fn spawn_in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = if netns.starts_with('/') {
        netns.to_string()
    } else {
        format!("/run/netns/{netns}")
    };
    let file = fs::File::open(path).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        work()
    })
}

/// Whether interface `ifname` exists in `netns`.
pub fn has_link(netns: &str, ifname: &str) -> bool {
    Command::new("ip")
        .args(["-n", netns, "link", "show", ifname])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}
