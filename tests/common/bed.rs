//! The test bed: a daemon of the test's own (own socket, own state directory) and network
//! namespaces of the test's own. Everything is removed on drop, also when the test fails; only
//! the daemon this test started is signalled, by its PID.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::run;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A daemon and the namespaces a test made.
pub struct Bed {
    pub dir: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Child>,
    /// The namespace the daemon runs in, when not the test's own.
    daemon_netns: Option<String>,
    /// Enter `daemon_netns` with nsenter (host's mount namespace), not `ip netns exec`.
    nsenter: bool,
    /// Extra arguments for `vswitch daemon`.
    daemon_args: Vec<String>,
    /// Global arguments for the daemon's command line (before `daemon`).
    global_args: Vec<String>,
    namespaces: Vec<String>,
    prefix: String,
}

impl Bed {
    /// Starts a daemon with a fresh state directory.
    pub fn start() -> Bed {
        let mut bed = Bed::prepare();
        bed.start_daemon();
        bed
    }

    /// Starts a daemon inside a namespace of the test's own (returned), so that what it does
    /// in its own namespace (host interfaces, upstream DNS on loopback) stays in the test.
    pub fn start_in_own_netns() -> (Bed, String) {
        let mut bed = Bed::prepare();
        let ns = bed.netns("daemon");
        bed.daemon_netns = Some(ns.clone());
        bed.start_daemon();
        (bed, ns)
    }

    /// `start_in_own_netns` with extra `vswitch daemon` arguments, entering the namespace
    /// with nsenter: the daemon then shares the host's mount namespace, as it does beside a
    /// container runtime (`ip netns exec` would give it a mount namespace of its own, in which
    /// Docker's later namespace mounts may never show).
    pub fn start_beside_runtime(daemon: &[String]) -> (Bed, String) {
        let mut bed = Bed::prepare();
        let ns = bed.netns("daemon");
        bed.daemon_netns = Some(ns.clone());
        bed.nsenter = true;
        bed.daemon_args = daemon.to_vec();
        bed.start_daemon();
        (bed, ns)
    }

    /// Starts a daemon with extra `vswitch daemon` arguments (and global ones before it).
    pub fn start_with(global: &[&str], daemon: &[&str]) -> Bed {
        let mut bed = Bed::prepare();
        bed.daemon_args = daemon.iter().map(|a| a.to_string()).collect();
        bed.global_args = global.iter().map(|a| a.to_string()).collect();
        bed.start_daemon();
        bed
    }

    fn prepare() -> Bed {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("vswt{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Bed {
            socket: dir.join("vswitch.sock"),
            dir,
            daemon: None,
            daemon_netns: None,
            nsenter: false,
            daemon_args: Vec::new(),
            global_args: Vec::new(),
            namespaces: Vec::new(),
            prefix,
        }
    }

    /// Starts the daemon (again) on the same socket and state directory.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let mut command = match &self.daemon_netns {
            // nsenter execs the daemon too.
            Some(ns) if self.nsenter => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg(env!("CARGO_BIN_EXE_vswitch"));
                c
            }
            // `ip netns exec` execs the daemon: the child's PID is the daemon's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vswitch")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vswitch")),
        };
        let child = command
            .args(["--socket", self.socket.to_str().unwrap()])
            .args(&self.global_args)
            .args(["daemon", "--state-dir"])
            .arg(self.dir.join("state"))
            .args(&self.daemon_args)
            .env("RUST_LOG", "debug,netlink_packet_route=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vswitch daemon starts");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.vswitch(&["network", "ls"]).status.code() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "daemon did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the extra `vswitch daemon` arguments of the next start.
    pub fn set_daemon_args(&mut self, daemon: &[&str]) {
        self.daemon_args = daemon.iter().map(|a| a.to_string()).collect();
    }

    /// Runs `vswitch daemon` on this bed's socket and state directory expecting it to refuse
    /// to start: returns its standard error. Killed (and the test failed) if it is still
    /// running after 10 s.
    pub fn daemon_refuses(&self, daemon: &[&str]) -> String {
        self.daemon_refuses_at(&self.socket, &self.dir.join("state"), daemon)
    }

    /// `daemon_refuses` with another socket and state directory.
    pub fn daemon_refuses_at(
        &self,
        socket: &std::path::Path,
        state_dir: &std::path::Path,
        daemon: &[&str],
    ) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vswitch"))
            .args(["--socket", socket.to_str().unwrap()])
            .args(["daemon", "--state-dir"])
            .arg(state_dir)
            .args(daemon)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vswitch daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let output = child.wait_with_output().unwrap();
                assert!(!status.success(), "the daemon started and exited cleanly");
                return String::from_utf8_lossy(&output.stderr).into_owned();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon started although it should have refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon with SIGTERM and waits for it (SIGKILL after 10 s).
    pub fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("daemon ignored SIGTERM");
    }

    /// Kills the daemon with SIGKILL (a crash, a power cut of the process) and reaps it.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// PID of the running daemon.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI against this bed's daemon.
    pub fn vswitch(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vswitch"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("vswitch CLI runs")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.vswitch(args);
        assert!(
            out.status.success(),
            "vswitch {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `--format json` and parses the answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Runs the CLI and expects a failure; returns the single-line error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.vswitch(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            !out.status.success(),
            "vswitch {args:?} should have failed; printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one-line error expected: {stderr}"
        );
        stderr.trim().to_string()
    }

    /// Creates a namespace of this test's own, named after `name`; returns its `ip netns` name.
    pub fn netns(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        run("ip", &["netns", "add", &full]);
        run("ip", &["-n", &full, "link", "set", "lo", "up"]);
        self.namespaces.push(full.clone());
        full
    }

    /// Creates network `network` on `subnet` and connects a fresh namespace for each of `names`
    /// with default settings; returns the namespaces' `ip netns` names.
    pub fn network_with(&mut self, network: &str, subnet: &str, names: &[&str]) -> Vec<String> {
        self.ok(&["network", "create", network, "--subnet", subnet]);
        names
            .iter()
            .map(|name| {
                let ns = self.netns(name);
                self.ok(&["connect", network, &ns]);
                ns
            })
            .collect()
    }

    /// Deletes one of this test's namespaces now.
    pub fn delete_netns(&mut self, full: &str) {
        run("ip", &["netns", "del", full]);
        self.namespaces.retain(|n| n != full);
    }

    /// `network inspect` as JSON.
    pub fn inspect(&self, network: &str) -> Value {
        serde_json::from_str(&self.ok(&["network", "inspect", network])).unwrap()
    }

    /// The first address (without prefix length) and the MAC of an endpoint.
    pub fn endpoint(&self, network: &str, endpoint: &str) -> (String, String) {
        let e = &self.inspect(network)["endpoints"][endpoint];
        (
            host_of(&e["addresses"][0]),
            e["mac"].as_str().unwrap().to_string(),
        )
    }

    /// The ports of containers and trunks as JSON (every network's gateway port left out).
    pub fn ports(&self) -> Vec<Value> {
        let ports = self.json(&["ports"]);
        let ports = ports.as_array().unwrap();
        ports
            .iter()
            .filter(|p| p["kind"] != "gateway")
            .cloned()
            .collect()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            // The daemon writes a resolv.conf for named namespaces; it is gone with the daemon.
            let _ = fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        end_keeper(&self.dir.join("state"));
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Waits for the TAP keeper the test's daemon started (its containers gone, it ends within
/// seconds by itself), and ends it by its PID if it does not.
pub fn end_keeper(state_dir: &std::path::Path) {
    let Ok(text) = fs::read_to_string(state_dir.join("taps.pid")) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    let running = || {
        // A zombie (not yet reaped by init) counts as ended.
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
            && fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("__keep-taps"))
    };
    let deadline = Instant::now() + Duration::from_secs(6);
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// The address of a JSON "ADDRESS/PREFIX" string.
pub fn host_of(cidr: &Value) -> String {
    let cidr = cidr.as_str().expect("an address string");
    cidr.split('/').next().unwrap().to_string()
}
