//! `vswitch run NETWORK -- CMD`: a command in a network namespace of its own, attached to a
//! network for as long as it runs — `docker run --network` for a plain process.
//!
//! The command is started through this binary's hidden `__enter` step, a fresh single-threaded
//! process that joins the daemon's user namespace if the daemon is rootless (so the daemon may
//! enter what it makes next), makes a network and a mount namespace, and says it is ready. This
//! side then connects it (`pid:PID`), writes its resolv.conf, and lets it go on: it bind-mounts
//! the resolv.conf over /etc/resolv.conf and becomes the command. When the command exits, the
//! endpoint is disconnected (its namespace goes with its last process) and this process exits
//! with the command's status.

use std::convert::Infallible;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use vswitch::api::client::Client;
use vswitch::gateway::resolv;
use vswitch::model::ConnectRequest;

/// Exit status when vswitch itself failed before the command ran (Docker's 125).
const FAILED_TO_START: u8 = 125;

/// `vswitch run NETWORK [connect flags] -- CMD [ARGS...]`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Network name.
    network: String,
    #[command(flatten)]
    request: ConnectRequest,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// The hidden step that becomes the command (see the module's documentation).
#[derive(Debug, Args)]
pub struct EnterArgs {
    /// Join the user namespace of this process first.
    #[arg(long)]
    userns_pid: Option<i32>,
    /// Descriptor to write one byte to once the namespaces are made.
    #[arg(long)]
    ready_fd: i32,
    /// Descriptor to read one byte from before going on (end of file: give up).
    #[arg(long)]
    go_fd: i32,
    /// File to bind-mount over /etc/resolv.conf.
    #[arg(long)]
    resolv_conf: PathBuf,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs the command attached to the network; returns its exit status.
pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<ExitCode> {
    let info = client.info().await?;
    let scratch = Scratch::new()?;
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    for own_end in [&ready_read, &go_write] {
        fcntl(own_end, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    let mut enter = std::process::Command::new(
        std::env::current_exe().context("cannot find the vswitch binary to run the command")?,
    );
    enter
        .arg("__enter")
        .args(["--ready-fd", &ready_write.as_raw_fd().to_string()])
        .args(["--go-fd", &go_read.as_raw_fd().to_string()])
        .arg("--resolv-conf")
        .arg(&scratch.resolv_conf);
    if info.rootless {
        enter.args(["--userns-pid", &info.pid.to_string()]);
    }
    enter.arg("--").args(&args.command);
    let mut child = enter.spawn().context("cannot start the command")?;
    drop((ready_write, go_read));
    let pid = child.id();
    let ready = tokio::task::spawn_blocking(move || {
        let mut byte = [0u8];
        File::from(ready_read).read(&mut byte).unwrap_or(0) == 1
    })
    .await?;
    if !ready {
        // It said why on stderr.
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        return Ok(exit_code(status));
    }
    let request = ConnectRequest {
        netns: format!("pid:{pid}"),
        name: Some(args.request.name.clone().unwrap_or(format!("run-{pid}"))),
        ..args.request
    };
    let connected = match client.connect(&args.network, &request).await {
        Ok(connected) => connected,
        Err(e) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            return Err(e.into());
        }
    };
    let name = connected.endpoint.name.clone();
    std::fs::write(&scratch.resolv_conf, resolv::render(&connected.dns))
        .with_context(|| format!("cannot write {}", scratch.resolv_conf.display()))?;
    File::from(go_write)
        .write_all(b"g")
        .context("the command's process went away before it started")?;
    let status = wait_forwarding_signals(child).await?;
    if let Err(e) = client.disconnect(&args.network, &name).await {
        eprintln!(
            "vswitch: could not disconnect {name} from {}: {e}",
            args.network
        );
    }
    Ok(exit_code(status))
}

/// Waits for the command, passing SIGTERM and SIGHUP on to it. SIGINT from the terminal reaches
/// it directly (it is in this process group); this process only outlives it.
async fn wait_forwarding_signals(
    mut child: std::process::Child,
) -> anyhow::Result<std::process::ExitStatus> {
    let pid = Pid::from_raw(child.id() as i32);
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut waited = tokio::task::spawn_blocking(move || child.wait());
    loop {
        tokio::select! {
            status = &mut waited => return Ok(status??),
            _ = term.recv() => { let _ = kill(pid, Signal::SIGTERM); }
            _ = hangup.recv() => { let _ = kill(pid, Signal::SIGHUP); }
            _ = interrupt.recv() => {}
        }
    }
}

/// The command's status as this process's: its code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from(128 + signal as u8),
        _ => ExitCode::FAILURE,
    }
}

/// A directory for the command's resolv.conf, removed when dropped.
struct Scratch {
    dir: PathBuf,
    resolv_conf: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("vswitch-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(&resolv_conf, "")
            .with_context(|| format!("cannot write {}", resolv_conf.display()))?;
        Ok(Self { dir, resolv_conf })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pipe whose ends a child inherits; `run` keeps its own ends from the command.
fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe().context("cannot make a pipe")
}

/// The `__enter` step: never returns if the command starts.
pub fn enter(args: EnterArgs) -> ExitCode {
    match enter_and_exec(&args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("vswitch run: {e:#}");
            match e.downcast_ref::<std::io::Error>().map(|e| e.kind()) {
                Some(std::io::ErrorKind::NotFound) => ExitCode::from(127),
                Some(std::io::ErrorKind::PermissionDenied) => ExitCode::from(126),
                _ => ExitCode::from(FAILED_TO_START),
            }
        }
    }
}

fn enter_and_exec(args: &EnterArgs) -> anyhow::Result<Infallible> {
    // SAFETY: `run` passed these descriptors, open, to this process alone.
    let (ready, go) = unsafe {
        (
            File::from_raw_fd(args.ready_fd),
            File::from_raw_fd(args.go_fd),
        )
    };
    for file in [&ready, &go] {
        fcntl(file, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    if let Some(pid) = args.userns_pid {
        vswitch::rootless::join(Pid::from_raw(pid))?;
    }
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
        .context("cannot make the command's network and mount namespaces")?;
    // Mounts made here stay here.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make the command's mounts private")?;
    // Loopback up, as in any container.
    let own = tap::Namespace::open(&tap::NetnsRef::Path("/proc/self/ns/net".into()))?;
    tap::loopback_up(&own)?;
    (&ready).write_all(b"r")?;
    let mut byte = [0u8];
    if (&go).read(&mut byte)? != 1 {
        // `run` gave up (it says why).
        std::process::exit(FAILED_TO_START.into());
    }
    bind_resolv_conf(&args.resolv_conf)?;
    drop((ready, go));
    let error = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    Err(anyhow::Error::new(error).context(format!("cannot run {}", args.command[0])))
}

/// Puts the network's resolver in front of the command's /etc/resolv.conf.
fn bind_resolv_conf(file: &Path) -> anyhow::Result<()> {
    let target = Path::new("/etc/resolv.conf");
    if std::fs::metadata(target).is_err() {
        bail!(
            "{} does not exist: nothing to bind the network's resolver over",
            target.display()
        );
    }
    mount(
        Some(file),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "cannot bind-mount the network's resolv.conf over {}",
            target.display()
        )
    })
}
