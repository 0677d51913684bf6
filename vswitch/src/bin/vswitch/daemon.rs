//! `vswitch daemon`: the switch in the foreground, and the tuning flags it shares with `up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use vswitch::datapath::{default_workers, DataPathConfig, DEFAULT_BUSY_POLL, DEFAULT_UNDERLAY};
use vswitch_core::switch::SwitchConfig;

/// `vswitch daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where networks and endpoints are persisted [default: /var/lib/vswitch as root,
    /// $XDG_STATE_HOME/vswitch otherwise].
    #[arg(long, env = "VSWITCH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9477).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Start with no networks: the saved state (for instance one found damaged) is kept aside
    /// as state.json.reset-SECONDS in the state directory, not deleted.
    #[arg(long)]
    reset_state: bool,
    /// Let members of this group use the control socket too (mode 0660 with this group;
    /// Docker's `--group`) [default: root only].
    #[arg(long, short = 'G')]
    group: Option<String>,
    /// Serve Docker's remote network driver (`docker network create -d vswitch`) on this
    /// socket; Docker names the driver after the file.
    #[arg(long, value_name = "PATH", num_args = 0..=1,
          default_missing_value = vswitch::adapters::docker::DEFAULT_PLUGIN_SOCKET)]
    docker_plugin: Option<PathBuf>,
    /// Docker's API socket, asked for the names of its networks and containers (its driver
    /// protocol carries only IDs).
    #[arg(long, env = "DOCKER_HOST", default_value = vswitch::adapters::docker::engine::DEFAULT_DOCKER_HOST)]
    docker_host: String,
    /// Share overlay networks with the other hosts of this etcd (`etcd://HOST:PORT`, or a
    /// comma-separated list of HOST:PORT): addresses, endpoints and names across hosts, each
    /// host's peers found there. Needs --underlay with this host's address.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The CA that signed etcd's certificate, PEM: talk to etcd over TLS.
    #[arg(long, value_name = "FILE", requires = "store")]
    store_ca: Option<PathBuf>,
    /// This host's client certificate for etcd (`--client-cert-auth`), PEM; with --store-key.
    #[arg(long, value_name = "FILE", requires_all = ["store_ca", "store_key"])]
    store_cert: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(long, value_name = "FILE", requires = "store_cert")]
    store_key: Option<PathBuf>,
    /// This host's name in the store [default: the system's host name].
    #[arg(long, requires = "store")]
    host_name: Option<String>,
    /// Seconds this host's records outlive it in the store, should it stop renewing them.
    #[arg(long, default_value_t = 10, requires = "store",
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    store_lease: u64,
    /// This host's address inside WireGuard, for encrypted overlays (`network create
    /// --encrypt`): VXLAN is carried inside WireGuard between the hosts' tunnel addresses.
    #[arg(long, value_name = "IPV4")]
    tunnel_address: Option<std::net::Ipv4Addr>,
    /// The WireGuard socket's port (encrypted overlays).
    #[arg(long, default_value_t = vswitch::overlay::wireguard::DEFAULT_PORT, requires = "tunnel_address")]
    wireguard_port: u16,
    /// Where networks created without --subnet get one, tried in order (repeatable; Docker's
    /// `--default-address-pool`) [default: base=10.89.0.0/16,size=24 and
    /// base=fd00:89::/48,size=64].
    #[arg(long, value_name = "base=CIDR,size=N")]
    default_address_pool: Vec<vswitch::model::pools::AddressPool>,
    /// The daemon's configuration file (TOML; keys are these flags' names without `--`, e.g.
    /// `group = "vswitch"`, and `default-address-pools = [{ base = "...", size = 24 }]` as in
    /// Docker's daemon.json); a setting both there and on the command line is refused
    /// [default: /etc/vswitch/daemon.toml as root, $XDG_CONFIG_HOME/vswitch/daemon.toml
    /// otherwise, if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    switch: SwitchArgs,
}

/// The store settings the flags ask for, checked.
fn cluster_config(
    args: &DaemonArgs,
    underlay: std::net::SocketAddr,
) -> anyhow::Result<Option<vswitch::control::ClusterConfig>> {
    let Some(url) = &args.store else {
        return Ok(None);
    };
    let (endpoints, https) = match url.split_once("://") {
        Some(("etcd" | "http", rest)) => (rest, false),
        Some(("etcds" | "https", rest)) => (rest, true),
        Some(_) => anyhow::bail!(
            "--store {url:?}: expected etcd://HOST:PORT[,HOST:PORT...] (etcds:// or https:// for TLS)"
        ),
        None => (url.as_str(), false),
    };
    if endpoints.is_empty() {
        anyhow::bail!("--store {url:?}: no HOST:PORT given");
    }
    if https && args.store_ca.is_none() {
        anyhow::bail!(
            "--store {url:?}: TLS needs --store-ca, the CA that signed etcd's certificate"
        );
    }
    if underlay.ip().is_unspecified() {
        anyhow::bail!(
            "--store needs --underlay with this host's address, as the other hosts reach it"
        );
    }
    let host = match &args.host_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_string(),
    };
    vswitch::model::check_name("host", &host).map_err(|e| anyhow::anyhow!("--host-name: {e}"))?;
    let mut etcd = vswitch::store::etcd::Etcd::new(endpoints);
    if let Some(ca) = &args.store_ca {
        let identity = args.store_cert.as_deref().zip(args.store_key.as_deref());
        etcd = etcd.with_tls(vswitch::store::tls::client_config(ca, identity)?);
    }
    Ok(Some(vswitch::control::ClusterConfig {
        etcd,
        host,
        underlay,
        lease: Duration::from_secs(args.store_lease),
    }))
}

/// Switch-wide tuning flags shared by `daemon` and `up`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Seconds after which an idle learned MAC is forgotten.
    #[arg(long, default_value_t = DEFAULT_AGING, value_parser = clap::value_parser!(u64).range(1..))]
    aging: u64,
    /// Learned MACs a single port may hold.
    #[arg(long, default_value_t = DEFAULT_MAC_LIMIT, value_parser = clap::value_parser!(u32).range(1..))]
    mac_limit: u32,
    /// Microseconds the data path keeps polling after a frame before it sleeps: trades a
    /// little CPU during traffic for fewer wake-ups (0: sleep at once).
    #[arg(long, default_value_t = DEFAULT_BUSY_POLL.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    busy_poll_us: u64,
    /// Data path worker threads, and queues per TAP device [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
    /// This host's underlay address for overlay networks, IP or IP:PORT: where VXLAN from
    /// other hosts arrives and ours leaves from [default: 0.0.0.0:4789].
    #[arg(long, value_name = "ADDR", value_parser = parse_underlay)]
    underlay: Option<std::net::SocketAddr>,
}

/// An underlay address: `IP` (VXLAN's port 4789) or `IP:PORT`.
fn parse_underlay(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, vswitch_core::vxlan::DEFAULT_PORT))
        })
        .map_err(|_| format!("{text:?} is not an IP or IP:PORT"))
}

/// `--aging`'s default, seconds.
const DEFAULT_AGING: u64 = 300;
/// `--mac-limit`'s default.
const DEFAULT_MAC_LIMIT: u32 = 1024;

impl SwitchArgs {
    /// Whether no tuning flag was given (each holds its default).
    pub fn all_default(&self) -> bool {
        self.aging == DEFAULT_AGING
            && self.mac_limit == DEFAULT_MAC_LIMIT
            && self.busy_poll_us == DEFAULT_BUSY_POLL.as_micros() as u64
            && self.workers.is_none()
            && self.underlay.is_none()
    }

    /// The data path these flags ask for.
    pub fn datapath_config(&self) -> DataPathConfig {
        DataPathConfig {
            switch: SwitchConfig {
                aging: Duration::from_secs(self.aging),
                mac_limit: self.mac_limit,
            },
            busy_poll: Duration::from_micros(self.busy_poll_us),
            workers: self.workers.map_or_else(default_workers, usize::from),
            underlay: self.underlay.unwrap_or(DEFAULT_UNDERLAY),
        }
    }
}

/// Makes an unprivileged daemon root of a user namespace of its own (`vswitch::rootless`),
/// with the socket and state paths settled first: inside, it is uid 0 and the defaults for
/// root would apply.
pub fn become_rootless(socket: &mut Option<PathBuf>, args: &mut DaemonArgs) -> anyhow::Result<()> {
    if let Some(group) = &args.group {
        anyhow::bail!("--group {group}: a rootless daemon's socket is its user's alone");
    }
    let socket = socket.get_or_insert_with(vswitch::daemon::default_socket);
    let state_dir = args
        .state_dir
        .get_or_insert_with(vswitch::daemon::default_state_dir);
    let mut holder = std::process::Command::new(std::env::current_exe()?);
    holder.arg(vswitch::rootless::HOLDER_ARG);
    let userns = vswitch::rootless::enter(state_dir, holder)?;
    tracing::info!(
        holder = userns.holder.as_raw(),
        created = userns.created,
        socket = %socket.display(),
        "rootless: running as root of a user namespace of this user's"
    );
    Ok(())
}

/// Runs the daemon until it is told to stop.
pub async fn run(socket: &Path, args: DaemonArgs) -> anyhow::Result<()> {
    let cluster = cluster_config(&args, args.switch.datapath_config().underlay)?;
    let state_dir = args
        .state_dir
        .unwrap_or_else(vswitch::daemon::default_state_dir);
    let config = args.switch.datapath_config();
    let options = vswitch::daemon::DaemonOptions {
        cluster,
        wireguard: args
            .tunnel_address
            .map(|inner| (inner, args.wireguard_port)),
        metrics_addr: args.metrics_addr,
        reset_state: args.reset_state,
        group: args.group,
        docker_plugin: args.docker_plugin,
        docker_host: args.docker_host,
        address_pools: args.default_address_pool,
    };
    vswitch::daemon::run(socket, &state_dir, config, options).await
}
