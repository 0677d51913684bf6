//! `vswitch connect`, `disconnect`, `limit` and `endpoint`: attaching containers to networks,
//! their ports' rate limits, and what is attached.

use clap::{Args, Subcommand};

use vswitch::api::client::Client;
use vswitch::model::ConnectRequest;

use crate::output::{print_json, print_listing, print_one, FormatArg};

/// `vswitch endpoint ...`.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// List a network's endpoints with their interfaces, addresses and published ports.
    #[command(alias = "list")]
    Ls {
        /// Network name.
        network: String,
        /// Only the names, one per line.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show one endpoint in full (JSON), by name or namespace.
    Inspect {
        /// Network name.
        network: String,
        /// Endpoint name or namespace.
        target: String,
    },
}

/// Runs an `endpoint` command.
pub async fn endpoint(client: &Client, command: EndpointCommand) -> anyhow::Result<()> {
    match command {
        EndpointCommand::Ls {
            network,
            quiet: true,
            ..
        } => {
            for endpoint in client.endpoints(&network).await? {
                println!("{}", endpoint.name);
            }
        }
        EndpointCommand::Ls {
            network, format, ..
        } => {
            let endpoints = client.endpoints(&network).await?;
            let header = [
                "NAME",
                "NAMESPACE",
                "INTERFACE",
                "MAC",
                "ADDRESSES",
                "PUBLISHED",
            ];
            print_listing(format.format, &endpoints, &header, |e| {
                let addresses: Vec<String> = e.addresses.iter().map(|a| a.to_string()).collect();
                let published: Vec<String> = e.published.iter().map(|p| p.to_string()).collect();
                let or_dash = |list: Vec<String>| match list.is_empty() {
                    true => "-".to_string(),
                    false => list.join(","),
                };
                vec![
                    e.name.clone(),
                    e.netns.clone(),
                    e.ifname.clone(),
                    e.mac.to_string(),
                    if e.dhcp {
                        "dhcp".to_string()
                    } else {
                        or_dash(addresses)
                    },
                    or_dash(published),
                ]
            })
        }
        EndpointCommand::Inspect { network, target } => {
            print_json(&client.endpoint(&network, &target).await?)
        }
    }
    Ok(())
}

/// `vswitch connect NETWORK NETNS [flags]`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Network name.
    network: String,
    /// `ip netns` name, namespace path (/proc/PID/ns/net) or pid:PID.
    netns: String,
    #[command(flatten)]
    request: ConnectRequest,
    #[command(flatten)]
    rate_limit: RateLimitArgs,
    #[command(flatten)]
    format: FormatArg,
}

/// `vswitch disconnect NETWORK TARGET`.
#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Network name.
    network: String,
    /// Namespace (as given to connect) or endpoint name.
    target: String,
}

/// `vswitch limit NETWORK TARGET [flags]`: no flag lifts the limit.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Network name.
    network: String,
    /// Endpoint name or namespace.
    target: String,
    #[command(flatten)]
    rate_limit: RateLimitArgs,
}

/// A port's ingress rate limit, as `connect` and `limit` both take it.
#[derive(Debug, Args)]
struct RateLimitArgs {
    /// Ingress rate limit in bits/s, with k/M/G suffixes (e.g. 10M).
    #[arg(long = "rate-limit", visible_alias = "rate", value_parser = parse_rate)]
    bits_per_sec: Option<u64>,
    /// Ingress rate limit in packets/s.
    #[arg(long = "rate-limit-pps", visible_alias = "pps")]
    packets_per_sec: Option<u64>,
    /// Burst of the rate limit in bytes [default: 100 ms worth, at least 64 KiB].
    #[arg(long = "rate-limit-burst", visible_alias = "burst-bytes")]
    burst_bytes: Option<u64>,
    /// Burst of the rate limit in packets [default: 100 ms worth, at least 32].
    #[arg(long = "rate-limit-burst-packets", visible_alias = "burst-packets")]
    burst_packets: Option<u64>,
}

impl RateLimitArgs {
    fn limit(&self) -> policy::RateLimit {
        policy::RateLimit {
            bits_per_sec: self.bits_per_sec,
            packets_per_sec: self.packets_per_sec,
            burst_bytes: self.burst_bytes,
            burst_packets: self.burst_packets,
        }
    }
}

/// Connects a namespace and says where it landed.
pub async fn connect(client: &Client, args: ConnectArgs) -> anyhow::Result<()> {
    let limit = args.rate_limit.limit();
    let request = ConnectRequest {
        netns: args.netns,
        rate_limit: limit.is_set().then_some(limit),
        ..args.request
    };
    let network = args.network;
    let connected = client.connect(&network, &request).await?;
    print_one(args.format.format, &connected, |connected| {
        let endpoint = &connected.endpoint;
        let addresses: Vec<String> = if endpoint.dhcp {
            vec!["(DHCP)".into()]
        } else {
            endpoint.addresses.iter().map(|a| a.to_string()).collect()
        };
        let dns: Vec<String> = connected.dns.iter().map(|a| a.to_string()).collect();
        println!(
            "connected {} to {network}: {} {} {}; DNS server {}",
            endpoint.name,
            endpoint.ifname,
            endpoint.mac,
            addresses.join(" "),
            dns.join(" ")
        );
    });
    Ok(())
}

/// Disconnects an endpoint.
pub async fn disconnect(client: &Client, args: DisconnectArgs) -> anyhow::Result<()> {
    let endpoint = client.disconnect(&args.network, &args.target).await?;
    println!("disconnected {} from {}", endpoint.name, args.network);
    Ok(())
}

/// Sets or lifts a port's rate limit.
pub async fn limit(client: &Client, args: LimitArgs) -> anyhow::Result<()> {
    let limit = args.rate_limit.limit();
    let endpoint = client
        .set_rate_limit(&args.network, &args.target, &limit)
        .await?;
    match endpoint.rate_limit {
        Some(l) => println!(
            "{}: {} bit/s, {} packets/s",
            endpoint.name,
            l.bits_per_sec.map_or("unlimited".into(), |b| b.to_string()),
            l.packets_per_sec
                .map_or("unlimited".into(), |p| p.to_string())
        ),
        None => println!("{}: no rate limit", endpoint.name),
    }
    Ok(())
}

/// Parses a rate in bits/s: `1500`, `10k`, `10M`, `1G` (optionally followed by `bit`).
fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim().trim_end_matches("bit").trim_end_matches("bps");
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000),
        Some((i, 'm' | 'M')) => (&t[..i], 1_000_000),
        Some((i, 'g' | 'G')) => (&t[..i], 1_000_000_000),
        _ => (t, 1),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a rate such as 10M or 1500k"))?;
    let bits = value * scale as f64;
    if !(1.0..=1e13).contains(&bits) {
        return Err(format!("{text:?}: a rate is between 1 bit/s and 10 Tbit/s"));
    }
    Ok(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Connect {
        #[command(flatten)]
        args: ConnectArgs,
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10M"), Ok(10_000_000));
        assert_eq!(parse_rate("1.5kbit"), Ok(1_500));
        assert_eq!(parse_rate("2G"), Ok(2_000_000_000));
        assert_eq!(parse_rate("800"), Ok(800));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn connect_flags_fill_the_request_the_api_takes() {
        let parsed = Connect::parse_from(["connect", "app", "web", "--ip", "10.0.0.5"]);
        assert_eq!(parsed.args.netns, "web");
        let request = parsed.args.request;
        assert_eq!(request.ips.len(), 1);
        // Offloads and port security are on unless turned off.
        assert_eq!(
            (request.offload, request.port_security),
            (Some(true), Some(true))
        );
        let parsed = Connect::parse_from([
            "connect",
            "app",
            "web",
            "--no-offload",
            "--no-port-security",
            "--rate",
            "10M",
        ]);
        let request = parsed.args.request;
        assert_eq!(
            (request.offload, request.port_security),
            (Some(false), Some(false))
        );
        assert_eq!(
            parsed.args.rate_limit.limit().bits_per_sec,
            Some(10_000_000)
        );
    }
}
