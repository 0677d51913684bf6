//! `vswitch up`: a declarative topology in TOML. On the daemon running on the socket, or else
//! on one of its own in the foreground, it creates the networks, creates each container's
//! namespace and connects it, runs the containers' `run` commands, and on Ctrl-C (or when the
//! commands finish, with `--once`) tears down everything it made, in reverse order, even after
//! a failure. `--detach` leaves the topology on the running daemon; `vswitch down` removes it.
//!
//! ```toml
//! [[networks]]
//! name = "app"
//! subnets = ["10.89.7.0/24"]
//!
//! [[containers]]
//! name = "web"                 # also the `ip netns` name
//! networks = ["app"]
//! ips = ["10.89.7.10"]         # optional; each goes to the network whose subnet holds it
//! run = ["ping -c 3 10.89.7.11"]
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tracing::warn;

use vswitch::api::client::{Client, ClientError};
use vswitch::control::Control;
use vswitch::datapath::DataPathConfig;
use vswitch::model::store::StateStore;
use vswitch::model::{check_name, ConnectRequest, EndpointRecord, NetworkCreate, NetworkRecord};

/// A topology file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Networks to create.
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Containers (namespaces) to create and connect.
    #[serde(default)]
    pub containers: Vec<ContainerSpec>,
}

/// A network of a topology file (the fields of `vswitch network create`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Network name.
    pub name: String,
    /// Subnets (CIDR).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Gateways, one per subnet at most.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// VLAN ID on trunks.
    pub vlan: Option<u16>,
    /// Policy: `default = "deny"` and `[[networks.policy.rules]]`.
    pub policy: Option<policy::NetworkPolicy>,
    /// Storm control, broadcast/multicast packets per second (0: off).
    pub storm_pps: Option<u64>,
}

/// A demo container: a named network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Namespace and endpoint name.
    pub name: String,
    /// Networks to connect it to, in order (eth0, eth1, ...).
    pub networks: Vec<String>,
    /// Fixed addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Shell commands to run inside once everything is connected.
    #[serde(default)]
    pub run: Vec<String>,
    /// Labels for policy selectors, `key=value`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Ingress rate limit of its ports.
    pub rate_limit: Option<policy::RateLimit>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let topology: Topology = toml::from_str(&text)
            .with_context(|| format!("invalid topology {}", path.display()))?;
        topology
            .check()
            .with_context(|| format!("invalid topology {}", path.display()))?;
        Ok(topology)
    }

    fn check(&self) -> Result<()> {
        let networks: BTreeSet<&str> = self.networks.iter().map(|n| n.name.as_str()).collect();
        let mut names = BTreeSet::new();
        for c in &self.containers {
            check_name("container", &c.name)?;
            if !names.insert(c.name.as_str()) {
                bail!("container {} is declared twice", c.name);
            }
            if let Some(unknown) = c.networks.iter().find(|n| !networks.contains(n.as_str())) {
                bail!(
                    "container {} names network {unknown}, which the file does not declare",
                    c.name
                );
            }
        }
        Ok(())
    }
}

/// What `up` made, to undo in reverse.
enum Made {
    Network(String),
    Namespace(String),
    Endpoint { network: String, name: String },
}

/// Runs `vswitch up`: beside a running daemon if one listens on `socket` (left to it with
/// `detach`), else with a daemon of its own that lives as long as this process.
async fn up(path: &Path, socket: &Path, config: DataPathConfig, args: &UpArgs) -> Result<ExitCode> {
    let topology = Topology::load(path)?;
    for c in &topology.containers {
        if tap::NetnsRef::Name(c.name.clone()).identity().is_some() {
            bail!(
                "network namespace {} already exists; `vswitch up` creates its containers itself",
                c.name
            );
        }
    }
    let client = Client::new(socket);
    if client.info().await.is_ok() {
        if !args.switch.all_default() {
            bail!(
                "a daemon is running on {}: --aging, --mac-limit, --busy-poll-us, --workers and --underlay shape a daemon of `up`'s own; give them to that daemon instead",
                socket.display()
            );
        }
        if args.detach {
            let mut made = Vec::new();
            if let Err(e) = build(path, &topology, &client, &mut made).await {
                teardown(&client, made).await;
                return Err(e);
            }
            println!(
                "topology up beside the daemon on {}; `vswitch down {}` removes it",
                socket.display(),
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(run_topology(path, &topology, &client, args.once).await);
    }
    if args.detach {
        bail!(
            "--detach leaves the topology to a running daemon, and none listens on {}: start one (`vswitch daemon`, or the service)",
            socket.display()
        );
    }
    // The topology lives as long as this process: its state is not kept across runs.
    let state_dir = std::env::temp_dir().join(format!("vswitch-up-{}", std::process::id()));
    let listener = vswitch::daemon::bind_socket(socket).await?;
    // No keeper: what `up` made goes when it ends.
    let control = Control::start(StateStore::new(&state_dir), config, None).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let control = control.clone();
        let socket = socket.to_path_buf();
        async move {
            vswitch::daemon::serve(control, listener, Some(&socket), async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let code = run_topology(path, &topology, &*control, args.once).await;
    let _ = stop.send(());
    let _ = server.await;
    drop(control);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(code)
}

/// Builds the topology on `switch`, runs its commands, waits (for Ctrl-C, or the commands with
/// `once`) and tears down what it made, even halfway through building.
async fn run_topology(
    path: &Path,
    topology: &Topology,
    switch: &impl Switch,
    once: bool,
) -> ExitCode {
    let mut made = Vec::new();
    let work = async {
        build(path, topology, switch, &mut made).await?;
        Ok::<_, anyhow::Error>(run_commands(topology).await)
    };
    // One listener for the whole run: a Ctrl-C between two listeners would be lost.
    let stop_signal = vswitch::daemon::stop_signal();
    tokio::pin!(stop_signal);
    let outcome = tokio::select! {
        outcome = work => Some(outcome),
        _ = &mut stop_signal => None,
    };
    let code = match outcome {
        None => ExitCode::from(130),
        Some(Err(e)) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
        Some(Ok(failures)) if once => {
            if failures == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Ok(_)) => {
            println!(
                "topology up: {} network(s), {} container(s); try `ip netns exec {} ping ...` or `vswitch ports`. Ctrl-C tears it down.",
                topology.networks.len(),
                topology.containers.len(),
                topology.containers.first().map_or("NAME", |c| c.name.as_str()),
            );
            stop_signal.await;
            ExitCode::SUCCESS
        }
    };
    teardown(switch, made).await;
    println!("topology torn down");
    code
}

/// Creates the networks, then each container's namespace and endpoints; an error names the
/// file and the entry.
async fn build(
    path: &Path,
    topology: &Topology,
    switch: &impl Switch,
    made: &mut Vec<Made>,
) -> Result<()> {
    let file = path.display();
    for n in &topology.networks {
        let req = NetworkCreate {
            name: n.name.clone(),
            subnets: n.subnets.clone(),
            gateways: n.gateways.clone(),
            mtu: n.mtu,
            vlan: n.vlan,
            policy: n.policy.clone(),
            storm_pps: n.storm_pps,
            ..Default::default()
        };
        let record = switch
            .create_network(req)
            .await
            .with_context(|| format!("{file}: network {}", n.name))?;
        made.push(Made::Network(n.name.clone()));
        let subnets: Vec<String> = record
            .subnets
            .iter()
            .map(|s| s.subnet.to_string())
            .collect();
        println!("network {} {}", n.name, subnets.join(" "));
    }
    for c in &topology.containers {
        check_ips(c, switch)
            .await
            .with_context(|| format!("{file}: container {}", c.name))?;
        tap::create_named(&c.name).await?;
        made.push(Made::Namespace(c.name.clone()));
        let ns = tap::Namespace::open(&tap::NetnsRef::Name(c.name.clone()))?;
        tap::loopback_up(&ns)?;
        for network in &c.networks {
            let subnets = switch.network(network).await?.subnets;
            let ips = c
                .ips
                .iter()
                .filter(|ip| {
                    ip.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| subnets.iter().any(|s| s.subnet.contains(&ip)))
                })
                .cloned()
                .collect();
            let req = ConnectRequest {
                netns: c.name.clone(),
                ips,
                labels: c.labels.clone(),
                rate_limit: c.rate_limit,
                ..Default::default()
            };
            let endpoint = switch.connect(network, req).await.with_context(|| {
                format!(
                    "{file}: container {}: cannot connect it to {network}",
                    c.name
                )
            })?;
            made.push(Made::Endpoint {
                network: network.clone(),
                name: endpoint.name.clone(),
            });
            let addresses: Vec<String> = endpoint.addresses.iter().map(|a| a.to_string()).collect();
            println!(
                "container {} {} on {network}: {}",
                c.name,
                endpoint.ifname,
                addresses.join(" ")
            );
        }
    }
    Ok(())
}

/// Runs every container's commands in its namespace, in order; returns how many failed.
async fn run_commands(topology: &Topology) -> usize {
    let mut failures = 0;
    for c in &topology.containers {
        for command in &c.run {
            println!("[{}] $ {command}", c.name);
            let (name, text) = (c.name.clone(), command.clone());
            let status = tokio::task::spawn_blocking(move || run_in_namespace(&name, &text))
                .await
                .expect("command runner does not panic");
            match status {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    eprintln!("[{}] {command:?} failed ({status})", c.name);
                    failures += 1;
                }
                Err(e) => {
                    eprintln!("[{}] {e:#}", c.name);
                    failures += 1;
                }
            }
        }
    }
    failures
}

fn run_in_namespace(netns: &str, command: &str) -> Result<std::process::ExitStatus> {
    if !tap::NetnsRef::Name(netns.to_string()).path().exists() {
        anyhow::bail!("network namespace {netns} is gone");
    }
    // `ip netns exec` also puts the namespace's resolv.conf (written by `connect`) in place,
    // so the containers find each other by name.
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns, "sh", "-c", command])
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    Ok(status)
}

/// Every address a container asks for is an address in the subnet of one of its networks:
/// none is silently dropped.
async fn check_ips(c: &ContainerSpec, switch: &impl Switch) -> Result<()> {
    let mut subnets = Vec::new();
    for network in &c.networks {
        for s in switch.network(network).await?.subnets {
            subnets.push((network, s.subnet));
        }
    }
    for text in &c.ips {
        let ip: std::net::IpAddr = text
            .parse()
            .map_err(|_| anyhow::anyhow!("ips: {text:?} is not an IP address"))?;
        if !subnets.iter().any(|(_, net)| net.contains(&ip)) {
            let have: Vec<String> = subnets.iter().map(|(n, s)| format!("{n} {s}")).collect();
            anyhow::bail!(
                "ips: {ip} is in none of its networks' subnets ({})",
                have.join(", ")
            );
        }
    }
    Ok(())
}

async fn teardown(switch: &impl Switch, made: Vec<Made>) {
    for item in made.into_iter().rev() {
        let result = match &item {
            Made::Endpoint { network, name } => switch.disconnect(network, name).await,
            Made::Namespace(name) => tap::delete_named(name).await.map_err(anyhow::Error::from),
            Made::Network(name) => switch.remove_network(name).await,
        };
        if let Err(e) = result {
            warn!(error = %e, "teardown step failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_config_parses_and_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/quickstart.toml");
        let topology = Topology::load(&path).unwrap();
        assert_eq!(topology.containers.len(), 3);
    }

    #[test]
    fn unknown_fields_and_networks_are_refused() {
        assert!(
            toml::from_str::<Topology>("[[networks]]\nname = \"a\"\nsubnet = \"10.0.0.0/24\"")
                .is_err()
        );
        let t: Topology =
            toml::from_str("[[containers]]\nname = \"c\"\nnetworks = [\"nope\"]").unwrap();
        assert_eq!(
            t.check().unwrap_err().to_string(),
            "container c names network nope, which the file does not declare"
        );
    }
}

/// `vswitch up FILE`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Topology file, e.g. configs/quickstart.toml.
    config: std::path::PathBuf,
    /// Tear down as soon as the containers' `run` commands finish; exit non-zero if any failed.
    #[arg(long, conflicts_with = "detach")]
    once: bool,
    /// Build the topology on the running daemon and leave it there (`vswitch down FILE`
    /// removes it); the `run` commands are not run.
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    switch: crate::daemon::SwitchArgs,
}

/// Runs `vswitch up` as the command line asks.
pub async fn run(socket: &Path, args: UpArgs) -> Result<ExitCode> {
    up(&args.config, socket, args.switch.datapath_config(), &args).await
}

/// `vswitch down FILE`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The topology file `vswitch up --detach` was given.
    config: std::path::PathBuf,
}

/// Removes what `vswitch up --detach FILE` left on the running daemon: the containers'
/// endpoints and namespaces, then the networks. What is already gone is skipped.
pub async fn down(socket: &Path, args: DownArgs) -> Result<ExitCode> {
    let topology = Topology::load(&args.config)?;
    let client = Client::new(socket);
    client.info().await?;
    let mut failed = Vec::new();
    for c in topology.containers.iter().rev() {
        // Only a namespace that was attached to the file's networks is the topology's.
        let mut attached = false;
        for network in &c.networks {
            match client.disconnect(network, &c.name).await {
                Ok(_) => attached = true,
                Err(ClientError::Daemon { status: 404, .. }) => {}
                Err(e) => failed.push(format!("container {}: {e}", c.name)),
            }
        }
        if attached && tap::NetnsRef::Name(c.name.clone()).identity().is_some() {
            if let Err(e) = tap::delete_named(&c.name).await {
                failed.push(format!("container {}: {e}", c.name));
            }
        }
    }
    for n in topology.networks.iter().rev() {
        match client.remove_network(&n.name).await {
            Ok(()) => println!("network {} removed", n.name),
            Err(ClientError::Daemon { status: 404, .. }) => {}
            Err(e) => failed.push(format!("network {}: {e}", n.name)),
        }
    }
    if !failed.is_empty() {
        bail!("{}: {}", args.config.display(), failed.join("; "));
    }
    println!("topology torn down");
    Ok(ExitCode::SUCCESS)
}

/// What `up` asks of a switch: its own control plane, or a running daemon's API.
trait Switch {
    async fn create_network(&self, req: NetworkCreate) -> Result<NetworkRecord>;
    async fn network(&self, name: &str) -> Result<NetworkRecord>;
    async fn connect(&self, network: &str, req: ConnectRequest) -> Result<EndpointRecord>;
    async fn disconnect(&self, network: &str, name: &str) -> Result<()>;
    async fn remove_network(&self, name: &str) -> Result<()>;
}

impl Switch for Control {
    async fn create_network(&self, req: NetworkCreate) -> Result<NetworkRecord> {
        Ok(Control::create_network(self, req).await?)
    }
    async fn network(&self, name: &str) -> Result<NetworkRecord> {
        Ok(Control::network(self, name).await?)
    }
    async fn connect(&self, network: &str, req: ConnectRequest) -> Result<EndpointRecord> {
        Ok(Control::connect(self, network, req).await?.endpoint)
    }
    async fn disconnect(&self, network: &str, name: &str) -> Result<()> {
        Ok(Control::disconnect(self, network, name).await.map(drop)?)
    }
    async fn remove_network(&self, name: &str) -> Result<()> {
        Ok(Control::remove_network(self, name).await?)
    }
}

impl Switch for Client {
    async fn create_network(&self, req: NetworkCreate) -> Result<NetworkRecord> {
        Ok(Client::create_network(self, &req).await?)
    }
    async fn network(&self, name: &str) -> Result<NetworkRecord> {
        Ok(self.inspect_network(name).await?.network)
    }
    async fn connect(&self, network: &str, req: ConnectRequest) -> Result<EndpointRecord> {
        Ok(Client::connect(self, network, &req).await?.endpoint)
    }
    async fn disconnect(&self, network: &str, name: &str) -> Result<()> {
        Ok(Client::disconnect(self, network, name).await.map(drop)?)
    }
    async fn remove_network(&self, name: &str) -> Result<()> {
        Ok(Client::remove_network(self, name).await?)
    }
}
