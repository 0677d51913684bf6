//! The container image the runtime tests run: a rootfs of this machine's static busybox with
//! every applet linked, tarred for `docker import` / `podman import` (no registry here); and
//! what the tests do with either runtime's CLI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image's name in either runtime.
pub const IMAGE: &str = "vswitch-test-busybox";

/// Builds the rootfs under `dir` and tars it; returns the tarball.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "etc", "tmp"] {
        fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    let tar = dir.join("rootfs.tar");
    super::process::run(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    tar
}

/// A container runtime's command line (docker, podman): the calls the tests make of either.
pub trait ContainerCli {
    /// The command's name, for messages.
    const CLI: &'static str;

    /// Runs the CLI with `args`.
    fn command(&self, args: &[&str]) -> std::process::Output;

    /// `CLI ARGS`, expecting success: its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            Self::CLI,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `CLI run -d --network NETWORK --name NAME EXTRA... IMAGE sleep 600`, expecting success.
    fn run_sleeping(&self, network: &str, name: &str, extra: &[&str]) {
        let mut args = vec!["run", "-d", "--network", network, "--name", name];
        args.extend_from_slice(extra);
        args.extend([IMAGE, "sleep", "600"]);
        self.ok(&args);
    }

    /// `CLI exec CONTAINER sh -c SCRIPT`: whether it succeeded, and its output.
    fn sh(&self, container: &str, script: &str) -> (bool, String) {
        let out = self.command(&["exec", container, "sh", "-c", script]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}
