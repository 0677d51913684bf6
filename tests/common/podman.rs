//! Root Podman of the test's own, on the CNI backend with `vswitch-cni`: its own
//! containers.conf (CNI config and plugin directories, temporary directory, the ulimits this
//! machine needs) and storage (vfs under the test's directory), and the busybox image imported
//! from a rootfs. On drop its containers are removed (the plugin's DEL runs) and its
//! directories go, with the CNI cache directory if it made it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::images::ContainerCli;
pub use super::images::IMAGE;

/// containers.conf and storage.conf for a Podman whose CNI configuration, plugins (`cni-bin`)
/// and storage (vfs) live under `base`. Rootless, chown errors are ignored: without
/// /etc/subuid ranges the user has one uid to map.
pub fn podman_config(base: &Path, rootless: bool) -> (String, String) {
    let b = base.display();
    let tmp = if rootless {
        String::new()
    } else {
        format!("tmp_dir = \"{b}/tmp\"\n")
    };
    let containers = format!(
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
         [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{b}/cni-bin\"]\n\
         network_config_dir = \"{b}/net.d\"\n\
         [engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n{tmp}"
    );
    let mut storage = format!(
        "[storage]\ndriver = \"vfs\"\ngraphroot = \"{b}/storage\"\nrunroot = \"{b}/runroot\"\n"
    );
    if rootless {
        storage.push_str("[storage.options]\nignore_chown_errors = \"true\"\n");
    }
    (containers, storage)
}

/// Writes `base/net.d/NAME.conflist`: CNI network `name` on vswitch network `name`, served by
/// the daemon at `socket` (given the runtime's published ports if `port_mappings`), then the
/// `chained` plugins.
pub fn write_conflist(
    base: &Path,
    name: &str,
    socket: &Path,
    port_mappings: bool,
    chained: &[serde_json::Value],
) {
    let mut plugins = vec![serde_json::json!({
        "type": "vswitch-cni",
        "network": name,
        "socket": socket,
        "capabilities": {"aliases": true, "portMappings": port_mappings},
    })];
    plugins.extend_from_slice(chained);
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": plugins,
    });
    fs::write(
        base.join(format!("net.d/{name}.conflist")),
        conflist.to_string(),
    )
    .unwrap();
}

/// One Podman configuration and its CNI networks.
pub struct Podman {
    pub dir: PathBuf,
    /// The network namespace Podman runs in (entered with nsenter), if not the test's own.
    pub netns: Option<String>,
    /// /var/lib/cni (libcni's cache) did not exist before: ours to remove.
    made_cni_cache: bool,
}

impl Podman {
    /// Writes the configuration and imports the image.
    pub fn start(tag: &str) -> Podman {
        let dir = PathBuf::from(format!("/tmp/vswp{tag}"));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["net.d", "cni-bin", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::copy(
            env!("CARGO_BIN_EXE_vswitch-cni"),
            dir.join("cni-bin/vswitch-cni"),
        )
        .unwrap();
        let (containers, storage) = podman_config(&dir, false);
        fs::write(dir.join("containers.conf"), containers).unwrap();
        fs::write(dir.join("storage.conf"), storage).unwrap();
        let podman = Podman {
            netns: None,
            made_cni_cache: !Path::new("/var/lib/cni").exists(),
            dir,
        };
        let tar = super::images::busybox_tar(&podman.dir);
        podman.ok(&["import", tar.to_str().unwrap(), IMAGE]);
        podman
    }

    /// Declares CNI network `name` on vswitch network `name`, served by the daemon at `socket`.
    pub fn network(&self, name: &str, socket: &Path) {
        write_conflist(&self.dir, name, socket, false, &[]);
    }

    /// `network`, with Podman's own `portmap` plugin chained after vswitch-cni for `-p`.
    pub fn network_with_portmap(&self, name: &str, socket: &Path) {
        fs::copy("/usr/lib/cni/portmap", self.dir.join("cni-bin/portmap"))
            .expect("portmap from containernetworking-plugins");
        let portmap =
            serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}});
        write_conflist(&self.dir, name, socket, false, &[portmap]);
    }

    /// Runs podman with this configuration.
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("podman");
                c
            }
            None => Command::new("podman"),
        };
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("podman runs")
    }
}

impl super::images::ContainerCli for Podman {
    const CLI: &'static str = "podman";

    fn command(&self, args: &[&str]) -> Output {
        self.podman(args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
        if self.made_cni_cache {
            let _ = fs::remove_dir_all("/var/lib/cni");
        }
    }
}
