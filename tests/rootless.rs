//! Rootless: the daemon and `vswitch run` as an ordinary user this test creates, with
//! /dev/net/tun open to every user as distributions ship it. Everything the test made — the
//! user, its processes (by PID), the directory, the device's mode — is undone on drop, also
//! when it fails.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use common::{
    download, download_server, eventually, free_port, link_outside, run, scrape, series,
    spawn_in_netns, tcp_connect, tcp_transfer, tshark_fields, udp_ask, udp_ask_to, udp_echo_server,
    udp_echo_server_on, ECHO_PORT, OUTSIDE_IP,
};

const TUN: &str = "/dev/net/tun";

/// The tests change /dev/net/tun's mode and each makes a user: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// An unprivileged user with a daemon of its own.
struct Rootless {
    user: String,
    uid: u32,
    dir: PathBuf,
    tun_mode: u32,
    metrics_port: u16,
    /// The namespace the daemon runs in, when one of the test's own.
    daemon_netns: Option<String>,
    /// Namespaces the test made (`ip netns` names).
    namespaces: Vec<String>,
    daemon: Option<Child>,
    containers: Vec<Child>,
}

impl Rootless {
    fn start() -> Rootless {
        Rootless::start_in(false)
    }

    /// With `own_netns`, the daemon runs in a namespace of the test's own (see `netns`).
    fn start_in(own_netns: bool) -> Rootless {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let user = format!("vswrl{}x{n}", std::process::id());
        run(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &user,
            ],
        );
        let uid: u32 = run("id", &["-u", &user]).trim().parse().unwrap();
        let tun_mode = fs::metadata(TUN).unwrap().permissions().mode() & 0o7777;
        let dir = std::env::temp_dir().join(&user);
        let mut rootless = Rootless {
            user,
            uid,
            dir,
            tun_mode,
            metrics_port: free_port(),
            daemon_netns: None,
            namespaces: Vec::new(),
            daemon: None,
            containers: Vec::new(),
        };
        fs::set_permissions(TUN, fs::Permissions::from_mode(0o666)).unwrap();
        fs::create_dir_all(rootless.dir.join("home")).unwrap();
        fs::set_permissions(&rootless.dir, fs::Permissions::from_mode(0o755)).unwrap();
        // A copy the user may run wherever the build tree is.
        fs::copy(env!("CARGO_BIN_EXE_vswitch"), rootless.binary()).unwrap();
        run(
            "chown",
            &[&rootless.user, rootless.dir.join("home").to_str().unwrap()],
        );
        if own_netns {
            rootless.daemon_netns = Some(rootless.netns("daemon"));
        }
        rootless.start_daemon();
        rootless
    }

    /// A namespace of the test's own, by root; its `ip netns` name.
    fn netns(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.user);
        run("ip", &["netns", "add", &full]);
        run("ip", &["-n", &full, "link", "set", "lo", "up"]);
        self.namespaces.push(full.clone());
        full
    }

    fn binary(&self) -> PathBuf {
        self.dir.join("vswitch")
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// `vswitch ARGS` as the user, with an environment of its own.
    fn command(&self, args: &[&str]) -> Command {
        self.as_user(&self.binary(), args)
    }

    /// `PROGRAM ARGS` as the user, with an environment of its own.
    fn as_user(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("setpriv");
        let id = self.uid.to_string();
        command
            .args([
                "--reuid",
                &id,
                "--regid",
                &id,
                "--clear-groups",
                "env",
                "-i",
            ])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("HOME={}", self.home().display()))
            .arg(format!(
                "XDG_RUNTIME_DIR={}",
                self.home().join("run").display()
            ))
            .arg(format!(
                "XDG_STATE_HOME={}",
                self.home().join("state").display()
            ))
            .arg(program)
            .args(args)
            .current_dir(self.home());
        command
    }

    fn vswitch(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.vswitch(args);
        assert!(
            out.status.success(),
            "vswitch {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.vswitch(args);
        assert!(!out.status.success(), "vswitch {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn start_daemon(&mut self) {
        let log = fs::File::create(self.dir.join("daemon.log")).unwrap();
        let metrics = format!("127.0.0.1:{}", self.metrics_port);
        let mut daemon = self.command(&["daemon", "--metrics-addr", &metrics]);
        if let Some(netns) = &self.daemon_netns {
            // Entered by root, then the user's own: `ip netns exec NS setpriv ...`.
            let user_command = daemon;
            daemon = Command::new("ip");
            daemon
                .args(["netns", "exec", netns])
                .arg(user_command.get_program())
                .args(user_command.get_args())
                .current_dir(self.home());
        }
        let daemon = daemon.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.daemon = Some(daemon);
        assert!(
            eventually(Duration::from_secs(15), || self
                .vswitch(&["network", "ls"])
                .status
                .success()),
            "the rootless daemon did not start: {}",
            self.log()
        );
    }

    fn stop_daemon(&mut self) {
        let mut daemon = self.daemon.take().unwrap();
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        assert!(daemon.wait().unwrap().success(), "{}", self.log());
    }

    /// The PID of the process holding the daemon's user namespace.
    fn holder(&self) -> Option<i32> {
        let file = self.home().join("state/vswitch/userns.pid");
        fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Starts `vswitch run` in the background; returns its index.
    fn run_in_background(&mut self, args: &[&str]) -> usize {
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.containers.push(child);
        self.containers.len() - 1
    }

    fn endpoints(&self, network: &str) -> Vec<Value> {
        let view: Value = serde_json::from_str(&self.ok(&["network", "inspect", network])).unwrap();
        view["endpoints"]
            .as_object()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The namespace path and first address of endpoint `name`, once it is connected.
    fn endpoint(&self, network: &str, name: &str) -> (String, String) {
        let mut found = None;
        eventually(Duration::from_secs(15), || {
            found = self
                .endpoints(network)
                .into_iter()
                .find(|e| e["name"] == name);
            found.is_some()
        });
        let endpoint = found.unwrap_or_else(|| panic!("{name} never connected: {}", self.log()));
        let pid = endpoint["netns"]
            .as_str()
            .unwrap()
            .strip_prefix("pid:")
            .unwrap()
            .to_string();
        let address = endpoint["addresses"][0].as_str().unwrap();
        (
            format!("/proc/{pid}/ns/net"),
            address.split('/').next().unwrap().to_string(),
        )
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        for container in &mut self.containers {
            let _ = kill(Pid::from_raw(container.id() as i32), Signal::SIGTERM);
        }
        for container in &mut self.containers {
            if !eventually(Duration::from_secs(5), || {
                container.try_wait().unwrap().is_some()
            }) {
                let _ = container.kill();
                let _ = container.wait();
            }
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM);
            let _ = daemon.wait();
        }
        // Started by this test's daemon.
        if let Some(holder) = self.holder() {
            let _ = kill(Pid::from_raw(holder), Signal::SIGKILL);
        }
        for netns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
        // Rootless Podman's own processes (its pause process, its rootless netns's slirp4netns),
        // started by the Podman this test ran, once its containers are removed.
        if self.home().join(".config/containers").exists() {
            let podman = Path::new("/usr/bin/podman");
            let _ = self
                .as_user(podman, &["rm", "--all", "--force", "--time", "0"])
                .output();
            for file in ["rootless-netns/rootless-netns-slirp4netns.pid", "pause.pid"] {
                let pid = fs::read_to_string(self.home().join("run/libpod/tmp").join(file));
                if let Some(pid) = pid.ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        // The daemon's TAP keeper ends by itself once its containers are gone.
        common::end_keeper(&self.home().join("state/vswitch"));
        let _ = fs::set_permissions(TUN, fs::Permissions::from_mode(self.tun_mode));
        // The holder may take a moment to be gone; userdel refuses while it is there.
        eventually(Duration::from_secs(5), || {
            Command::new("userdel")
                .arg(&self.user)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn exit_code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0))
}

#[test]
fn an_unprivileged_user_runs_containers_that_talk_by_name_and_survive_a_restart() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut user = Rootless::start();
    let info: Value = serde_json::from_str(&user.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(info["server"]["rootless"], true, "{info}");
    user.ok(&["network", "create", "app", "--subnet", "10.231.70.0/24"]);
    user.run_in_background(&[
        "run", "app", "--name", "web", "--", "busybox", "sleep", "600",
    ]);
    user.run_in_background(&[
        "run", "app", "--name", "db", "--", "busybox", "sleep", "600",
    ]);
    let (web, _) = user.endpoint("app", "web");
    let (db, db_ip) = user.endpoint("app", "db");

    // By name, through the gateway's DNS, from a third container; its status is run's.
    user.ok(&[
        "run", "app", "--", "busybox", "ping", "-c", "2", "-W", "2", "web",
    ]);
    let out = user.vswitch(&["run", "app", "--", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(
        exit_code(&out),
        7,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = user.vswitch(&["run", "app", "--", "no-such-command-here"]);
    assert_eq!(
        exit_code(&out),
        127,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 100 MB between the two, intact.
    let total = 100 << 20;
    let (sent, got, bytes, _) = tcp_transfer(&web, &db, &db_ip, total);
    assert_eq!((bytes, got), (total, sent));

    // Policy, capture and metrics as root has them.
    user.ok(&["policy", "default", "app", "deny"]);
    let out = user.vswitch(&[
        "run", "app", "--", "busybox", "ping", "-c", "1", "-W", "1", "db",
    ]);
    assert_eq!(exit_code(&out), 1, "denied by the default action");
    user.ok(&["policy", "default", "app", "allow"]);
    // (A network capture takes the ports there when it starts: db's answers, not the new
    // container's requests.)
    let pcap = user.home().join("pings.pcapng");
    let capture = user
        .command(&["capture", "--network", "app", "-c", "2", "-w"])
        .arg(&pcap)
        .args(["icmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    user.containers.push(capture);
    std::thread::sleep(Duration::from_millis(300));
    user.ok(&[
        "run", "app", "--", "busybox", "ping", "-c", "2", "-W", "2", "db",
    ]);
    let capture = user.containers.last_mut().unwrap();
    assert!(eventually(Duration::from_secs(10), || capture
        .try_wait()
        .unwrap()
        .is_some()));
    let icmp = tshark_fields(&pcap, &["icmp.type"]);
    assert_eq!(
        icmp.lines().filter(|t| t.trim() == "0").count(),
        2,
        "{icmp}"
    );
    let metrics = scrape(user.metrics_port);
    assert!(
        series(
            &metrics,
            "vswitch_port_rx_frames_total",
            &[("endpoint", "db")]
        )
        .unwrap_or(0.0)
            > 0.0,
        "{metrics}"
    );

    // A restarted daemon joins the same user namespace and finds its containers again.
    let holder = user.holder().unwrap();
    user.stop_daemon();
    user.start_daemon();
    assert_eq!(user.holder(), Some(holder), "{}", user.log());
    assert_eq!(
        user.log().matches("endpoint restored").count(),
        2,
        "{}",
        user.log()
    );
    user.ok(&[
        "run", "app", "--", "busybox", "ping", "-c", "2", "-W", "2", "db",
    ]);

    // A container that ends takes its endpoint with it; run's status is the command's.
    let mut web_run = user.containers.remove(0);
    kill(Pid::from_raw(web_run.id() as i32), Signal::SIGTERM).unwrap();
    let status = web_run.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let names: Vec<Value> = user
        .endpoints("app")
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("db")]);
}

#[test]
fn a_rootless_daemon_says_what_it_cannot_do_and_why() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut user = Rootless::start();
    user.ok(&["network", "create", "app", "--subnet", "10.231.71.0/24"]);
    // A namespace of another user namespace (the user's own, not the daemon's).
    let foreign = user_process(
        &user,
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "sleep",
            "30",
        ],
    );
    let pid = foreign.id();
    // Ended with the containers, also if the test fails.
    user.containers.push(foreign);
    let netns = format!("pid:{pid}");
    assert!(eventually(Duration::from_secs(5), || {
        fs::read_link(format!("/proc/{pid}/ns/net")).ok() != fs::read_link("/proc/self/ns/net").ok()
    }));
    let error = user.fails(&["connect", "app", &netns]);
    assert!(error.contains("vswitch run"), "{error}");

    // /dev/net/tun as this machine ships it (root only): the fix is named.
    fs::set_permissions(TUN, fs::Permissions::from_mode(0o600)).unwrap();
    let error = user.fails(&["run", "app", "--", "true"]);
    assert!(error.contains("chmod 0666 /dev/net/tun"), "{error}");
    assert!(user.endpoints("app").is_empty());

    // Root's socket (0600 here): the user hears "permission denied", not "is it running?".
    let root_socket = user.dir.join("root.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&root_socket).unwrap();
    fs::set_permissions(&root_socket, fs::Permissions::from_mode(0o600)).unwrap();
    let error = user.fails(&["--socket", root_socket.to_str().unwrap(), "network", "ls"]);
    assert!(
        error.contains("permission denied") && error.contains("owner root"),
        "{error}"
    );
    assert!(!error.contains("running?"), "{error}");
}

/// A process of the user's own (not through vswitch).
fn user_process(user: &Rootless, args: &[&str]) -> Child {
    let id = user.uid.to_string();
    Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .args(args)
        .current_dir(Path::new("/"))
        .spawn()
        .unwrap()
}

#[test]
fn a_rootless_container_reaches_the_outside_over_tcp_udp_and_ping() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut user = Rootless::start_in(true);
    let outside = user.netns("outside");
    link_outside(user.daemon_netns.as_ref().unwrap(), &outside);
    user.ok(&["network", "create", "app", "--subnet", "10.231.72.0/24"]);
    user.run_in_background(&["run", "app", "--name", "c", "--", "busybox", "sleep", "600"]);
    let (c, _) = user.endpoint("app", "c");
    let total = 20 << 20;
    let server = download_server(&outside, 8080, total);
    assert_eq!(download(&c, 8080), (server.join().unwrap(), total));
    let echo = udp_echo_server(&outside);
    assert_eq!(udp_ask(&c, ECHO_PORT, b"hello"), Ok(b"hello".to_vec()));
    assert_eq!(
        tcp_connect(&c, OUTSIDE_IP, 8099),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    user.ok(&[
        "run", "app", "--", "busybox", "ping", "-c", "2", "-W", "2", OUTSIDE_IP,
    ]);
    assert!(echo.join().unwrap() >= 1);

    // Published ports: a privileged one is refused with the reason; a client on the daemon's
    // loopback reaches the container, which sees it as the gateway.
    let error = user.fails(&["run", "app", "-p", "127.0.0.1:80:8080", "--", "true"]);
    assert!(error.contains("privilege"), "{error}");
    user.run_in_background(&[
        "run",
        "app",
        "--name",
        "web",
        "-p",
        "127.0.0.1:18090:8080",
        "--",
        "busybox",
        "sleep",
        "600",
    ]);
    let (web, _) = user.endpoint("app", "web");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(&web, move || {
        let listener = std::net::TcpListener::bind("0.0.0.0:8080").unwrap();
        ready_tx.send(()).unwrap();
        listener.accept().unwrap().1
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let daemon_ns = user.daemon_netns.clone().unwrap();
    spawn_in_netns(&daemon_ns, || {
        let addr: std::net::SocketAddr = "127.0.0.1:18090".parse().unwrap();
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(server.join().unwrap().ip().to_string(), "10.231.72.1");

    // A published UDP port, likewise.
    user.run_in_background(&[
        "run",
        "app",
        "--name",
        "echo",
        "-p",
        "127.0.0.1:18091:7007/udp",
        "--",
        "busybox",
        "sleep",
        "600",
    ]);
    let (echo, _) = user.endpoint("app", "echo");
    let server = udp_echo_server_on(&echo, "0.0.0.0:7007".parse().unwrap());
    let (answer, _) =
        udp_ask_to(&daemon_ns, "127.0.0.1:18091".parse().unwrap(), b"rootless").unwrap();
    assert_eq!(answer, b"rootless");
    let senders = server.join().unwrap();
    assert_eq!(senders[0].ip().to_string(), "10.231.72.1");
}

/// Rootless Podman (CNI backend) with `vswitch-cni`: the plugin runs inside Podman's own user
/// and mount namespaces, where the daemon cannot reach the container's namespace; it makes the
/// device there and hands it to the rootless daemon over the handover socket.
#[test]
fn rootless_podman_attaches_through_the_cni_plugin_handing_the_device_over() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let user = Rootless::start();
    user.ok(&["network", "create", "pods", "--subnet", "10.231.226.0/24"]);
    let home = user.home();
    let config = home.join(".config/containers");
    fs::create_dir_all(&config).unwrap();
    fs::create_dir_all(home.join("cni-bin")).unwrap();
    fs::create_dir_all(home.join("net.d")).unwrap();
    fs::copy(
        env!("CARGO_BIN_EXE_vswitch-cni"),
        home.join("cni-bin/vswitch-cni"),
    )
    .unwrap();
    let (containers, storage) = common::podman_config(&home, true);
    fs::write(config.join("containers.conf"), containers).unwrap();
    fs::write(config.join("storage.conf"), storage).unwrap();
    let socket = home.join("run/vswitch/vswitch.sock");
    common::write_conflist(&home, "pods", &socket, true, &[]);
    let tar = common::busybox_tar(&home);
    run("chown", &["-R", &user.user, home.to_str().unwrap()]);
    let podman = |args: &[&str]| {
        let out = user
            .as_user(Path::new("/usr/bin/podman"), args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (imported, out) = podman(&["import", tar.to_str().unwrap(), common::IMAGE]);
    assert!(imported, "{out}");

    for (name, extra) in [("web", &[][..]), ("db", &["--ip", "10.231.226.50"][..])] {
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "pods",
            "--name",
            name,
            "--cap-add",
            "NET_RAW",
        ];
        args.extend_from_slice(extra);
        args.extend([common::IMAGE, "sleep", "600"]);
        let (started, out) = podman(&args);
        assert!(started, "podman run {name}: {out}\n{}", user.log());
    }
    let (inspected, out) = podman(&[
        "inspect",
        "db",
        "--format",
        "{{.NetworkSettings.Networks.pods.IPAddress}}",
    ]);
    assert!(inspected && out.trim() == "10.231.226.50", "{out}");
    let listed = user.ok(&["endpoint", "ls", "pods", "-q"]);
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["db", "web"]);
    let (pinged, out) = podman(&["exec", "web", "ping", "-c", "2", "-W", "2", "db"]);
    assert!(
        pinged && out.contains("10.231.226.50"),
        "web -> db by name: {out}"
    );

    // `-p`: Podman's rootlessport holds the host port and forwards it, dialling from inside
    // the container's namespace: the container sees itself as the client (Podman's own
    // behaviour, whatever the network); the daemon was not asked to listen too.
    let port = (20_000 + std::process::id() % 10_000).to_string();
    let publish = format!("{port}:80");
    let serve = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho\\necho $REMOTE_ADDR\\n' \
                 > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && httpd -f -p 80 -h /www";
    let (started, out) = podman(&[
        "run",
        "-d",
        "--network",
        "pods",
        "--name",
        "www",
        "-p",
        &publish,
        common::IMAGE,
        "sh",
        "-c",
        serve,
    ]);
    assert!(started, "podman run -p: {out}\n{}", user.log());
    let request = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /cgi-bin/peer HTTP/1.0\\r\\n\\r\\n' >&3 \
         && cat <&3"
    );
    let fetch = || {
        let out = Command::new("timeout")
            .args(["5", "bash", "-c", &request])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(
        eventually(Duration::from_secs(10), || fetch().0),
        "the published port answers: {}",
        fetch().1
    );
    let own = user
        .endpoints("pods")
        .into_iter()
        .find(|e| e["name"] == "www")
        .map(|e| common::host_of(&e["addresses"][0]))
        .expect("www is an endpoint");
    let said = fetch().1;
    assert!(
        said.contains("200 OK") && said.contains(&own),
        "{said} (www {own})"
    );
    let www = user
        .endpoints("pods")
        .into_iter()
        .find(|e| e["name"] == "www")
        .unwrap();
    assert!(www.get("published").is_none(), "no daemon listener: {www}");

    // Removed, they leave nothing in the daemon.
    let (removed, out) = podman(&["rm", "--force", "--time", "0", "web", "db", "www"]);
    assert!(removed, "{out}");
    assert_eq!(user.ok(&["endpoint", "ls", "pods", "-q"]).trim(), "");
}
