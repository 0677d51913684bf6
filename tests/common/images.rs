//! The container image the runtime tests run: a rootfs of this machine's static busybox with
//! every applet linked, tarred for `docker import` / `podman import` (no registry here).

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
