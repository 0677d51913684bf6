//! The daemon under a service manager, speaking systemd's protocols as systemd would drive
//! them (no systemd runs here): it says READY=1 on NOTIFY_SOCKET only once it serves, and
//! STOPPING=1 when told to stop; and it takes its control socket from socket activation
//! (LISTEN_FDS/LISTEN_PID, the socket as fd 3), serving clients that connected before it ran,
//! and leaves that socket, the manager's, in place when it stops.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::*;

/// A daemon of the test's own, started by `start`, ended by its PID on drop.
struct Service {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Service {
    fn new(tag: &str) -> Service {
        let dir = std::env::temp_dir().join(format!("vswt{}{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Service { dir, daemon: None }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("vswitch.sock")
    }

    fn daemon_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vswitch"));
        command
            .arg("--socket")
            .arg(self.socket())
            .args(["daemon", "--state-dir"])
            .arg(self.dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vswitch"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    fn stop(&mut self) {
        let mut daemon = self.daemon.take().unwrap();
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        assert!(daemon.wait().unwrap().success());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        end_keeper(&self.dir.join("state"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within 15 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_daemon_tells_its_service_manager_when_it_is_ready_and_when_it_stops() {
    let mut service = Service::new("notify");
    let notify_path = service.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let daemon = service
        .daemon_command()
        .env("NOTIFY_SOCKET", &notify_path)
        .spawn()
        .unwrap();
    service.daemon = Some(daemon);
    let ready = receive(&notify);
    assert!(ready.contains("READY=1"), "{ready}");
    // Ready means serving: the API answers at once.
    assert!(service.cli(&["network", "ls"]).status.success());
    service.stop();
    let stopping = receive(&notify);
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
}

/// Starts the daemon as systemd would for socket activation: `listener` as fd 3,
/// LISTEN_FDS=1, and LISTEN_PID the daemon's own (set by the shell that execs it).
fn start_activated(service: &Service, listener: &UnixListener) -> Child {
    let fd = listener.as_raw_fd();
    let mut daemon = service.daemon_command();
    let program = daemon.get_program().to_owned();
    let args: Vec<_> = daemon.get_args().map(|a| a.to_owned()).collect();
    let mut shell = Command::new("sh");
    shell
        .args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(service.dir.join("daemon.log")).unwrap());
    // SAFETY: between fork and exec only dup2 and fcntl, async-signal-safe, run.
    unsafe {
        shell.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            let done = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    daemon = shell;
    daemon.spawn().unwrap()
}

#[test]
fn a_socket_activated_daemon_serves_the_managers_socket_and_leaves_it_in_place() {
    let mut service = Service::new("activated");
    let socket = service.socket();
    // The manager's socket: a client may connect before any daemon runs.
    let listener = UnixListener::bind(&socket).unwrap();
    let early = std::os::unix::net::UnixStream::connect(&socket);
    assert!(early.is_ok(), "connecting before the daemon runs");
    service.daemon = Some(start_activated(&service, &listener));
    drop(listener);
    let answered = eventually(Duration::from_secs(15), || {
        service.cli(&["network", "ls"]).status.success()
    });
    assert!(
        answered,
        "the activated daemon did not answer on the manager's socket"
    );
    service.stop();
    assert!(
        Path::new(&socket).exists(),
        "the daemon removed the socket its service manager made"
    );
}

/// The daemon's configuration file (Docker's daemon.json, in TOML): its default address pools
/// give networks created without --subnet theirs; a setting also on the command line, or one
/// it does not know, keeps the daemon from starting, naming the file and the key.
#[test]
fn the_daemon_takes_its_settings_and_address_pools_from_its_configuration_file() {
    /// Removes the test's directory, also when the test fails.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!("vswt{}cfg", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Dir(dir.clone());
    let file = dir.join("daemon.toml");
    std::fs::write(
        &file,
        "aging = 120\ndefault-address-pools = [\n  { base = \"10.231.128.0/23\", size = 24 },\n  \
         { base = \"10.231.140.0/24\", size = 25 },\n]\n",
    )
    .unwrap();
    let path = file.to_str().unwrap().to_string();
    let bed = Bed::start_with(&[], &["--config", &path]);
    let subnet = |name: &str| -> String {
        bed.ok(&["network", "create", name]);
        bed.inspect(name)["subnets"][0]["subnet"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(subnet("p1"), "10.231.128.0/24");
    assert_eq!(subnet("p2"), "10.231.129.0/24");
    assert_eq!(subnet("p3"), "10.231.140.0/25", "then the next pool");
    assert_eq!(subnet("p4"), "10.231.140.128/25");
    let error = bed.fails(&["network", "create", "p5"]);
    assert!(
        error.contains("no free subnet left in the default address pools"),
        "{error}"
    );
    let doubled = bed.daemon_refuses_at(
        &dir.join("other.sock"),
        &dir.join("other-state"),
        &["--config", &path, "--aging", "5"],
    );
    assert!(
        doubled.contains(&path)
            && doubled.contains("`aging` is set both there and on the command line"),
        "{doubled}"
    );
    std::fs::write(&file, "colour = \"red\"\n").unwrap();
    let unknown = bed.daemon_refuses_at(
        &dir.join("other.sock"),
        &dir.join("other-state"),
        &["--config", &path],
    );
    assert!(unknown.contains("unknown setting `colour`"), "{unknown}");
}
