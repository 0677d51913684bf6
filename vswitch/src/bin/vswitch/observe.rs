//! `vswitch ports`, `fdb` and `trace`: what the switch holds and what it would do.

use clap::Args;

use vswitch::api::client::Client;
use vswitch::model::TraceRequest;

use crate::output::{print_listing, print_one, FormatArg};

/// `vswitch ports`.
#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Only the ports of this network (repeatable).
    #[arg(long)]
    network: Vec<String>,
    #[command(flatten)]
    format: FormatArg,
}

/// `vswitch hosts`.
#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    format: FormatArg,
}

/// `vswitch fdb NETWORK`.
#[derive(Debug, Args)]
pub struct FdbArgs {
    /// Network name.
    network: String,
    #[command(flatten)]
    format: FormatArg,
}

/// `vswitch trace NETWORK --from ... [--to ...|--dst ...]`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Network name.
    network: String,
    #[command(flatten)]
    request: TraceRequest,
    #[command(flatten)]
    format: FormatArg,
}

/// Lists this host's underlay and the hosts its overlay networks reach.
pub async fn hosts(client: &Client, args: HostsArgs) -> anyhow::Result<()> {
    let hosts = client.hosts().await?;
    let header = [
        "ADDRESS", "STATE", "NETWORKS", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS",
    ];
    print_listing(args.format.format, &hosts, &header, |h| {
        vec![
            h.address.to_string(),
            h.state.clone(),
            h.networks.join(","),
            h.rx_packets.to_string(),
            h.rx_bytes.to_string(),
            h.tx_packets.to_string(),
            h.tx_bytes.to_string(),
            h.drops.to_string(),
        ]
    });
    Ok(())
}

/// Lists ports with their counters.
pub async fn ports(client: &Client, args: PortsArgs) -> anyhow::Result<()> {
    let mut ports = client.ports().await?;
    if !args.network.is_empty() {
        // A trunk's network column lists each network it carries as NAME/VLAN.
        ports.retain(|p| {
            p.network
                .split(',')
                .any(|n| args.network.iter().any(|w| n.split('/').next() == Some(w)))
        });
    }
    let header = [
        "PORT",
        "NETWORK",
        "ENDPOINT",
        "INTERFACE",
        "MAC",
        "ADDRESSES",
        "RX_PKTS",
        "RX_BYTES",
        "TX_PKTS",
        "TX_BYTES",
        "DROPS",
    ];
    print_listing(args.format.format, &ports, &header, |p| {
        vec![
            p.port.to_string(),
            p.network.clone(),
            p.endpoint.clone(),
            match (p.netns.as_str(), p.ifname.as_str()) {
                // A gateway lives in the daemon, with a host interface or none.
                ("", "") => "-".to_string(),
                ("", ifname) => ifname.to_string(),
                (netns, ifname) => format!("{netns}:{ifname}"),
            },
            // A tunnel carries many stations' MACs and has none of its own.
            if p.kind == "tunnel" {
                "-".to_string()
            } else {
                p.mac.to_string()
            },
            if p.addresses.is_empty() {
                "-".to_string()
            } else {
                p.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            p.rx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.tx_packets.to_string(),
            p.tx_bytes.to_string(),
            p.drops.to_string(),
        ]
    });
    Ok(())
}

/// Shows a network's MAC table.
pub async fn fdb(client: &Client, args: FdbArgs) -> anyhow::Result<()> {
    let entries = client.fdb(&args.network).await?;
    let header = ["MAC", "PORT", "ENDPOINT", "TYPE", "AGE"];
    print_listing(args.format.format, &entries, &header, |e| {
        vec![
            e.mac.to_string(),
            e.port.to_string(),
            e.endpoint.clone(),
            e.kind.clone(),
            e.age_seconds.map_or("-".into(), |a| format!("{a:.1}s")),
        ]
    });
    Ok(())
}

/// Explains what the switch would do with a frame.
pub async fn trace(client: &Client, args: TraceArgs) -> anyhow::Result<()> {
    let report = client.trace(&args.network, &args.request).await?;
    print_one(args.format.format, &report, |report| {
        for step in &report.steps {
            println!("{:<14} {}", format!("{}:", step.stage), step.detail);
        }
        println!("{:<14} {}", "verdict:", report.verdict);
    });
    Ok(())
}

/// `vswitch version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    format: FormatArg,
}

/// The client's version and the daemon's (as `docker version`).
#[derive(Debug, serde::Serialize)]
struct Versions {
    client: ClientVersion,
    server: vswitch::model::DaemonInfo,
}

#[derive(Debug, serde::Serialize)]
struct ClientVersion {
    version: &'static str,
}

/// Prints this CLI's version and the daemon's.
pub async fn version(client: &Client, args: VersionArgs) -> anyhow::Result<()> {
    let versions = Versions {
        client: ClientVersion {
            version: env!("CARGO_PKG_VERSION"),
        },
        server: client.info().await?,
    };
    print_one(args.format.format, &versions, |v| {
        println!("Client:\n Version:     {}", v.client.version);
        println!("Server:\n Version:     {}", v.server.version);
        println!(" API version: {}", v.server.api_version);
        println!(" PID:         {}", v.server.pid);
        println!(" Rootless:    {}", v.server.rootless);
    });
    Ok(())
}
