//! `vswitch policy ...` and `conntrack`: a network's rules, its default action, what decides a
//! given packet, and the flows the policy tracks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use vswitch::api::client::Client;
use vswitch::control::PolicyView;
use vswitch::model::{RuleAdd, TraceRequest};

use crate::output::{print_json, print_listing, print_table, Format, FormatArg};

/// `vswitch policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show a network's rules in order with their hit counts, and its default.
    #[command(alias = "list")]
    Ls {
        /// Network name.
        network: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Add a rule, e.g. `policy add app web-db --action allow --to app=db --peer app=web
    /// --proto tcp --port 5432`.
    Add(RuleArgs),
    /// Remove a rule.
    #[command(alias = "remove")]
    Rm {
        /// Network name.
        network: String,
        /// Rule name.
        name: String,
    },
    /// Set what traffic no rule matches gets (allow or deny), keeping the rules.
    Default {
        /// Network name.
        network: String,
        /// allow or deny.
        action: policy::DefaultAction,
    },
    /// Replace the whole policy with a TOML file (`default = "deny"` and `[[rules]]`), in one
    /// step.
    Set {
        /// Network name.
        network: String,
        /// Policy file.
        file: PathBuf,
    },
    /// Evaluate a described packet and print the rule that decides it; exit status 1 when it
    /// would be dropped.
    Test {
        /// Network name.
        network: String,
        #[command(flatten)]
        request: TraceRequest,
        #[command(flatten)]
        format: FormatArg,
    },
}

/// `vswitch policy add NETWORK NAME ...`: a rule as the command line writes it.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Network name.
    network: String,
    /// Rule name, unique on the network.
    name: String,
    /// What matching flows get: allow, deny (drop silently) or reject (drop and answer with a
    /// TCP reset or ICMP port unreachable).
    #[arg(long)]
    action: policy::RuleAction,
    /// The rule is about traffic to these endpoints: `*`, or labels `k=v,k2=v2`
    /// (`name=NAME` is the endpoint's name).
    #[arg(long, conflicts_with = "from", required_unless_present = "from")]
    to: Option<String>,
    /// The rule is about traffic from these endpoints.
    #[arg(long)]
    from: Option<String>,
    /// The other side: `any`, a CIDR or address, or endpoint labels.
    #[arg(long, default_value = "any")]
    peer: String,
    /// tcp, udp, icmp, icmpv6 or any.
    #[arg(long, default_value = "any")]
    proto: policy::Protocol,
    /// Destination port or range (tcp, udp), e.g. 5432 or 8000-8100.
    #[arg(long)]
    port: Option<String>,
    /// ICMP type (icmp, icmpv6).
    #[arg(long)]
    icmp_type: Option<u8>,
    /// Only count what the rule would do (dry run).
    #[arg(long)]
    staged: bool,
    /// Place in the order, 0 first [default: last].
    #[arg(long)]
    position: Option<usize>,
}

impl RuleArgs {
    fn request(self) -> RuleAdd {
        let (direction, select) = match (self.to, self.from) {
            (Some(to), _) => (policy::Direction::To, to),
            (None, from) => (policy::Direction::From, from.unwrap_or_default()),
        };
        let rule = policy::Rule {
            name: self.name,
            action: self.action,
            direction,
            select,
            peer: self.peer,
            proto: self.proto,
            ports: self.port,
            icmp_type: self.icmp_type,
            staged: self.staged,
        };
        RuleAdd {
            rule,
            position: self.position,
        }
    }
}

/// `vswitch conntrack NETWORK`.
#[derive(Debug, Args)]
pub struct ConntrackArgs {
    /// Network name.
    network: String,
    #[command(flatten)]
    format: FormatArg,
}

/// Runs a `policy` command; the changes print the policy as it is afterwards. `policy test`
/// exits 1 when the packet would be dropped, so a script can assert on it.
pub async fn run(client: &Client, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    let view = match command {
        PolicyCommand::Ls { network, format } => {
            let view = client.policy(&network).await?;
            if format.format == Format::Json {
                print_json(&view);
                return Ok(ExitCode::SUCCESS);
            }
            view
        }
        PolicyCommand::Add(args) => {
            let network = args.network.clone();
            client.add_rule(&network, &args.request()).await?
        }
        PolicyCommand::Rm { network, name } => client.remove_rule(&network, &name).await?,
        PolicyCommand::Default { network, action } => {
            client.set_default_action(&network, action).await?
        }
        PolicyCommand::Set { network, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let new: policy::NetworkPolicy = toml::from_str(&text)
                .with_context(|| format!("invalid policy {}", file.display()))?;
            client.set_policy(&network, &new).await?
        }
        PolicyCommand::Test {
            network,
            request,
            format,
        } => {
            let report = client.trace(&network, &request).await?;
            if format.format == Format::Json {
                print_json(&report);
            } else {
                println!("{}", report.policy);
                if let Some(rule) = &report.policy_rule {
                    println!("rule: {rule}");
                }
                println!("verdict: {}", report.verdict);
            }
            let dropped = report.verdict == "dropped";
            return Ok(if dropped { DROPPED } else { ExitCode::SUCCESS });
        }
    };
    print_policy(&view);
    Ok(ExitCode::SUCCESS)
}

/// `policy test`'s exit status for a packet that would be dropped (0: it would pass).
const DROPPED: ExitCode = ExitCode::FAILURE;

/// The default, then the rules in order with their hits, then the default's hits.
fn print_policy(view: &PolicyView) {
    println!("default: {}", view.policy.default);
    let rows: Vec<Vec<String>> = view
        .policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let stats = view.stats.iter().find(|s| s.name == r.name);
            let hits = stats.map_or(0, |s| if r.staged { s.staged_hits } else { s.hits });
            vec![
                i.to_string(),
                r.name.clone(),
                format!("{}{}", r.action, if r.staged { " (staged)" } else { "" }),
                format!("{} {}", r.direction, r.select),
                r.peer.clone(),
                r.proto.to_string(),
                r.ports
                    .clone()
                    .or(r.icmp_type.map(|t| format!("type {t}")))
                    .unwrap_or_else(|| "-".into()),
                hits.to_string(),
            ]
        })
        .collect();
    let header = [
        "#", "NAME", "ACTION", "SELECT", "PEER", "PROTO", "PORTS", "HITS",
    ];
    print_table(&header, &rows);
    let default = view
        .stats
        .iter()
        .find(|s| s.name == policy::rules::DEFAULT_RULE);
    if let Some(default) = default {
        println!("default hits: {}", default.hits);
    }
}

/// Lists the flows a network's policy tracks.
pub async fn conntrack(client: &Client, args: ConntrackArgs) -> anyhow::Result<()> {
    let flows = client.conntrack(&args.network).await?;
    let header = [
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "STATE",
        "RULE",
        "PACKETS",
        "IDLE",
    ];
    print_listing(args.format.format, &flows, &header, |f| {
        vec![
            f.proto.clone(),
            std::net::SocketAddr::new(f.src, f.sport).to_string(),
            std::net::SocketAddr::new(f.dst, f.dport).to_string(),
            f.state.clone(),
            f.rule.clone(),
            f.packets.to_string(),
            format!("{:.1}s", f.idle_ms as f64 / 1000.0),
        ]
    });
    Ok(())
}
