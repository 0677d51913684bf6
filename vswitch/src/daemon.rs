//! `vswitch daemon`: the control plane served on its Unix socket, plus the watcher that removes
//! endpoints whose container went away, until SIGINT or SIGTERM.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::control::{Control, NAMESPACE_CHECK_INTERVAL};
use crate::datapath::DataPathConfig;
use crate::model::store::StateStore;

/// How often dropped frames are summed up in the log.
const DROP_SUMMARY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// `/run/vswitch/vswitch.sock` as root, `$XDG_RUNTIME_DIR/vswitch/vswitch.sock` otherwise.
pub fn default_socket() -> PathBuf {
    runtime_dir().join("vswitch.sock")
}

fn runtime_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/vswitch");
    }
    let session_dir = PathBuf::from(format!("/run/user/{uid}"));
    let has_session_dir = session_dir.is_dir();
    user_runtime_dir(
        std::env::var_os("XDG_RUNTIME_DIR"),
        has_session_dir.then_some(session_dir),
        uid.as_raw(),
    )
}

/// An unprivileged user's runtime directory: `$XDG_RUNTIME_DIR`, else the one logind makes
/// for the user's sessions (`/run/user/UID`, which a shell from `su` or cron lacks the
/// variable for), else a directory of the user's own under the temporary directory.
fn user_runtime_dir(
    xdg: Option<std::ffi::OsString>,
    session_dir: Option<PathBuf>,
    uid: u32,
) -> PathBuf {
    match (xdg, session_dir) {
        (Some(dir), _) => PathBuf::from(dir).join("vswitch"),
        (None, Some(dir)) => dir.join("vswitch"),
        (None, None) => std::env::temp_dir().join(format!("vswitch-{uid}")),
    }
}

/// `/var/lib/vswitch` as root, `$XDG_STATE_HOME/vswitch` (or `~/.local/state/vswitch`) otherwise.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/vswitch");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("vswitch");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/vswitch"),
        None => runtime_dir().join("state"),
    }
}

/// Who holds an existing socket path.
enum SocketHolder {
    /// Nobody: connecting is refused, so the socket is stale and may go.
    Nobody,
    /// A vswitch daemon, which answered.
    Daemon,
    /// Something that accepts connections but does not answer as a daemon.
    Silent,
}

/// Finds out who holds the socket at `path`. A daemon killed a moment ago may still hold it
/// while it exits: connections are accepted but never answered, and soon refused; so for up
/// to three seconds a silent socket is given the time to go.
async fn socket_holder(path: &Path) -> SocketHolder {
    let client = crate::api::client::Client::new(path);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if tokio::net::UnixStream::connect(path).await.is_err() {
            return SocketHolder::Nobody;
        }
        let asked = tokio::time::timeout(std::time::Duration::from_secs(1), client.networks());
        if matches!(asked.await, Ok(Ok(_))) {
            return SocketHolder::Daemon;
        }
        if tokio::time::Instant::now() >= deadline {
            return SocketHolder::Silent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Binds the control socket (mode 0660), refusing to steal it from a live daemon.
pub async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only a socket nobody answers on is ours to remove: never a file the user named.
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; name another --socket path",
                path.display()
            );
        }
        match socket_holder(path).await {
            SocketHolder::Nobody => {}
            SocketHolder::Daemon => bail!(
                "a vswitch daemon is already listening on {}",
                path.display()
            ),
            SocketHolder::Silent => bail!(
                "something listens on {} but does not answer as a vswitch daemon; \
                 name another --socket path",
                path.display()
            ),
        }
        // Left behind by a daemon that did not exit cleanly.
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// Serves the API and watches namespaces until `shutdown` completes, then removes the socket
/// (unless a service manager made it: `socket` is then None).
pub async fn serve(
    control: Arc<Control>,
    listener: UnixListener,
    socket: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let watcher = {
        let control = control.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NAMESPACE_CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut summary = tokio::time::Instant::now() + DROP_SUMMARY_INTERVAL;
            loop {
                tick.tick().await;
                control.handle_gone_namespaces().await;
                if tokio::time::Instant::now() >= summary {
                    control.log_drop_summary().await;
                    summary += DROP_SUMMARY_INTERVAL;
                }
            }
        })
    };
    let stopping = control.clone();
    let shutdown = async move {
        shutdown.await;
        // Captures stream until stopped: end them, or shutting down would wait for them.
        stopping.stop_captures();
        stopping.stop_events();
    };
    let result = axum::serve(listener, crate::api::server::router(control.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    watcher.abort();
    if let Some(socket) = socket {
        let _ = std::fs::remove_file(socket);
    }
    result.context("control API failed")
}

/// Completes on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Restores the saved state (after setting it aside, if asked) and starts the control plane.
async fn start_control(
    state_dir: &Path,
    config: DataPathConfig,
    reset_state: bool,
    wireguard: Option<(std::net::Ipv4Addr, u16)>,
) -> anyhow::Result<Arc<Control>> {
    let mut store = StateStore::new(state_dir);
    store.lock()?;
    if reset_state {
        if let Some(aside) = store.set_aside()? {
            tracing::warn!(kept = %aside.display(), "state reset: starting with no networks");
        }
    }
    let keeper = open_keeper(state_dir);
    let wireguard = match wireguard {
        Some((inner, port)) => {
            let key_file = state_dir.join("wireguard.key");
            let config = crate::control::WireGuardConfig::new(inner, port, key_file)
                .context("cannot read or make this host's WireGuard key")?;
            info!(public_key = %config.public_key, tunnel_address = %inner, "taking part in encrypted overlays");
            Some(config)
        }
        None => None,
    };
    Ok(Control::start_with(store, config, keeper, wireguard).await?)
}

/// The hidden subcommand a TAP keeper process runs as: `vswitch __keep-taps FD`.
pub const KEEPER_ARG: &str = "__keep-taps";
/// The keeper's socket, in the state directory: the devices belong with the state.
const KEEPER_SOCKET: &str = "taps.sock";
/// The keeper's PID, beside its socket (for operators and tests, which end what they start).
pub const KEEPER_PID_FILE: &str = "taps.pid";

/// Connects to the keeper of this state directory's devices, starting one (this binary with
/// `KEEPER_ARG`) if none runs. Without one the daemon still works; its containers' interfaces
/// just do not outlive it.
fn open_keeper(state_dir: &Path) -> Option<tap::keeper::Keeper> {
    let start = |listener: std::os::fd::OwnedFd| {
        use std::os::fd::AsRawFd;
        use std::process::Stdio;
        // The child inherits the listening socket: no close-on-exec for it.
        nix::fcntl::fcntl(
            &listener,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        let keeper = std::process::Command::new(std::env::current_exe()?)
            .arg(KEEPER_ARG)
            .arg(listener.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .spawn()?;
        std::fs::write(
            state_dir.join(KEEPER_PID_FILE),
            format!("{}\n", keeper.id()),
        )
    };
    match tap::keeper::Keeper::open(&state_dir.join(KEEPER_SOCKET), start) {
        Ok(keeper) => Some(keeper),
        Err(e) => {
            tracing::warn!(error = %e, "containers' interfaces will not outlive this daemon");
            None
        }
    }
}

/// The id of group `name`, which must exist.
fn socket_group(name: &str) -> anyhow::Result<nix::unistd::Gid> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => bail!("--group {name}: no such group"),
        Err(e) => bail!("--group {name}: cannot look it up: {e}"),
    }
}

/// What a daemon serves beside its control socket.
#[derive(Debug, Default)]
pub struct DaemonOptions {
    /// Serve Prometheus metrics there.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Start with no networks (the saved state set aside).
    pub reset_state: bool,
    /// Members of this group may use the socket too (Docker's `--group`).
    pub group: Option<String>,
    /// Serve Docker's remote network driver on this socket.
    pub docker_plugin: Option<PathBuf>,
    /// Docker's API, asked for the names of its networks and containers.
    pub docker_host: String,
    /// Share overlay networks with other hosts through this store.
    pub cluster: Option<crate::control::ClusterConfig>,
    /// Take part in encrypted overlays: this host's tunnel address and WireGuard port.
    pub wireguard: Option<(std::net::Ipv4Addr, u16)>,
    /// Where networks created without a subnet get one (empty: the defaults).
    pub address_pools: Vec<crate::model::pools::AddressPool>,
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub async fn run(
    socket: &Path,
    state_dir: &Path,
    config: DataPathConfig,
    options: DaemonOptions,
) -> anyhow::Result<()> {
    let group = options.group.as_deref();
    let gid = group.map(socket_group).transpose()?;
    // A socket the service manager made (socket activation) is its to own and remove.
    let (listener, owned_socket) = match crate::service::activated_listener() {
        Some(listener) => {
            info!("control socket passed by the service manager");
            let listener =
                UnixListener::from_std(listener).context("cannot use the activated socket")?;
            (listener, None)
        }
        None => (bind_socket(socket).await?, Some(socket)),
    };
    if let (Some(gid), Some(socket)) = (gid, owned_socket) {
        if let Err(e) = nix::unistd::chown(socket, None, Some(gid)) {
            let _ = std::fs::remove_file(socket);
            bail!(
                "cannot give {} to group {}: {e}",
                socket.display(),
                group.unwrap_or_default()
            );
        }
    }
    let control =
        match start_control(state_dir, config, options.reset_state, options.wireguard).await {
            Ok(control) => control,
            Err(e) => {
                if let Some(socket) = owned_socket {
                    let _ = std::fs::remove_file(socket);
                }
                return Err(e);
            }
        };
    control.set_address_pools(options.address_pools);
    if let Some(cluster) = options.cluster {
        info!(store = %cluster.etcd.endpoints(), host = %cluster.host, "sharing overlay networks through the store");
        control.join_store(cluster);
    }
    if let Some(addr) = options.metrics_addr {
        let metrics = Arc::new(crate::metrics::Metrics::install()?);
        let server = crate::metrics::serve(addr, control.clone(), metrics);
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %format!("{e:#}"), "metrics server stopped");
            }
        });
        info!(%addr, "serving metrics");
    }
    // Connects that bring their device (rootless runtimes' plugins), beside the socket.
    let handover = crate::api::handover::socket_path(socket);
    let listener_fd = crate::api::handover::bind(&handover)
        .with_context(|| format!("cannot listen on {}", handover.display()))?;
    if let Some(gid) = gid {
        nix::unistd::chown(&handover, None, Some(gid))
            .with_context(|| format!("cannot give {} to its group", handover.display()))?;
    }
    crate::api::handover::serve(
        listener_fd,
        control.clone(),
        tokio::runtime::Handle::current(),
    );
    let plugin = match &options.docker_plugin {
        Some(path) => Some(serve_docker_plugin(path, &control, &options.docker_host).await?),
        None => None,
    };
    info!(socket = %socket.display(), state = %state_dir.display(), "vswitch daemon ready");
    crate::service::notify_ready(&format!("serving {}", socket.display()));
    let served = serve(control, listener, owned_socket, stop_signal()).await;
    crate::service::notify_stopping();
    let _ = std::fs::remove_file(&handover);
    if let Some((path, task)) = plugin {
        task.abort();
        let _ = std::fs::remove_file(path);
    }
    served?;
    info!("vswitch daemon stopped");
    Ok(())
}

/// Serves Docker's remote network driver on `path` (Docker finds it by that file's name).
async fn serve_docker_plugin(
    path: &Path,
    control: &Arc<Control>,
    docker_host: &str,
) -> anyhow::Result<(PathBuf, tokio::task::JoinHandle<()>)> {
    let listener = bind_socket(path).await?;
    let driver = Arc::new(crate::adapters::docker::Driver::new(
        control.clone(),
        docker_host,
    ));
    let router = crate::adapters::docker::router(driver);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "docker driver stopped");
        }
    });
    info!(socket = %path.display(), docker = %docker_host, "serving Docker's network driver");
    Ok((path.to_path_buf(), task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_without_xdg_runtime_dir_still_finds_the_session_directory() {
        let xdg = Some(std::ffi::OsString::from("/run/user/1000"));
        let session = Some(PathBuf::from("/run/user/1000"));
        assert_eq!(
            user_runtime_dir(xdg, None, 1000),
            Path::new("/run/user/1000/vswitch")
        );
        assert_eq!(
            user_runtime_dir(None, session, 1000),
            Path::new("/run/user/1000/vswitch")
        );
        assert_eq!(
            user_runtime_dir(None, None, 1000),
            std::env::temp_dir().join("vswitch-1000")
        );
    }
}
