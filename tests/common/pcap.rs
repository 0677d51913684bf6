//! Packet capture to a pcap file: run `vswitch capture -w` against the bed's daemon, and read
//! the file back with tshark.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::bed::Bed;
use super::process::eventually;

/// Starts `vswitch capture ARGS` writing to `file`; returns once the daemon streams (its
/// header is in the file).
pub fn start_capture(bed: &Bed, file: &std::path::Path, args: &[&str]) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_vswitch"))
        .arg("--socket")
        .arg(&bed.socket)
        .arg("capture")
        .args(["-w", file.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || std::fs::metadata(file)
            .is_ok_and(|m| m.len() > 0)),
        "capture did not start"
    );
    child
}

/// Waits (bounded) for a capture that stops by itself; returns its stderr.
pub fn finish_capture(mut child: std::process::Child) -> String {
    let ended = eventually(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        ended && out.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tshark -r FILE -T fields -e FIELD...`: one line per frame, fields separated by tabs.
pub fn tshark_fields(file: &std::path::Path, fields: &[&str]) -> String {
    let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields"];
    for field in fields {
        args.extend(["-e", field]);
    }
    let out = Command::new("tshark")
        .args(&args)
        .stderr(Stdio::null())
        .output()
        .expect("tshark is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
