//! A Docker engine of the test's own: dockerd with its own data root, exec root and API socket
//! (vfs storage, no iptables, no default bridge), running in the bed daemon's namespace so the
//! containers' interfaces start there; and a busybox image imported from a rootfs built out of
//! this machine's static busybox (there is no registry to pull from). On drop its containers
//! are removed, dockerd is stopped by its PID, and its directories go.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::process::eventually;

use super::images::ContainerCli;
pub use super::images::IMAGE;

/// One dockerd and the driver name its vswitch daemon serves.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The remote driver's name (`docker network create -d NAME`).
    pub driver: String,
    /// Where the vswitch daemon serves the driver.
    pub plugin_socket: PathBuf,
    child: Option<Child>,
    /// /etc/docker did not exist before: dockerd's key.json there is ours to remove.
    made_etc_docker: bool,
}

impl Dockerd {
    /// Names the paths (short: containerd's sockets live under the exec root) and the driver;
    /// nothing runs yet.
    pub fn prepare(tag: &str) -> Dockerd {
        let dir = PathBuf::from(format!("/tmp/vswd{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let driver = format!("vswd{tag}");
        Dockerd {
            socket: dir.join("docker.sock"),
            plugin_socket: PathBuf::from(format!("/run/docker/plugins/{driver}.sock")),
            driver,
            dir,
            child: None,
            made_etc_docker: !Path::new("/etc/docker").exists(),
        }
    }

    /// The arguments that make a vswitch daemon serve this engine's driver.
    pub fn daemon_args(&self) -> Vec<String> {
        vec![
            "--docker-plugin".into(),
            self.plugin_socket.display().to_string(),
            "--docker-host".into(),
            format!("unix://{}", self.socket.display()),
        ]
    }

    /// Starts dockerd in network namespace `netns` (entered with nsenter, not `ip netns exec`,
    /// which would hide the cgroup mounts) and imports the busybox image.
    pub fn start(&mut self, netns: &str) {
        let log = fs::File::create(self.dir.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args([
                "dockerd",
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .arg(format!("--data-root={}", self.dir.join("data").display()))
            .arg(format!("--exec-root={}", self.dir.join("x").display()))
            .arg(format!(
                "--pidfile={}",
                self.dir.join("docker.pid").display()
            ))
            .arg(format!("--host=unix://{}", self.socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(30), || {
            self.docker(&["version"]).status.success()
        });
        assert!(up, "dockerd did not come up: {}", self.log());
        self.import_busybox();
    }

    /// Imports the busybox image (`images::busybox_tar`).
    fn import_busybox(&self) {
        let tar = super::images::busybox_tar(&self.dir);
        self.ok(&["import", tar.to_str().unwrap(), IMAGE]);
    }

    /// Runs the docker CLI (Debian's, of the engine's version) against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/docker")
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI runs")
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl super::images::ContainerCli for Dockerd {
    const CLI: &'static str = "docker";

    fn command(&self, args: &[&str]) -> Output {
        self.docker(args)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let stopped = eventually(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- dockerd log (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        // Namespaces dockerd bind-mounted and did not unmount (it was killed) pin nothing
        // once unmounted; then the directories can go.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(self.dir.join("x/netns"))
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.plugin_socket);
        if self.made_etc_docker {
            let _ = fs::remove_dir_all("/etc/docker");
        }
    }
}
