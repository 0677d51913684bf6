//! `vswitch network ...`: creating, listing, inspecting and removing networks.

use clap::Subcommand;

use vswitch::api::client::Client;
use vswitch::model::{NetworkCreate, NetworkFilter};

use crate::output::{print_json, print_listing, print_one, FormatArg};

/// `vswitch network ...`.
#[derive(Debug, Subcommand)]
// Parsed once per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        #[command(flatten)]
        request: NetworkCreate,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only the names, one per line.
        #[arg(short, long)]
        quiet: bool,
        /// Only networks matching name=TEXT, driver=NAME, label=KEY or label=KEY=VALUE
        /// (repeatable: the same key matches either, different keys all).
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<NetworkFilter>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show networks in full (JSON: the network for one name, an array for several).
    Inspect {
        /// Network names or IDs (a unique prefix of an ID will do).
        #[arg(required = true)]
        names: Vec<String>,
        /// A Go template applied to each network instead of JSON, e.g. '{{.ID}}'.
        #[arg(short, long, value_parser = crate::template::GoTemplate::parse)]
        format: Option<crate::template::GoTemplate>,
    },
    /// Remove networks without endpoints; the others are still removed if one cannot be.
    #[command(alias = "remove")]
    Rm {
        /// Network names or IDs (a unique prefix of an ID will do).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network without endpoints.
    Prune {
        /// Do not ask (needed when standard input is not a terminal).
        #[arg(short, long)]
        force: bool,
    },
}

/// Runs a `network` command.
pub async fn run(client: &Client, command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create { request, format } => {
            let network = client.create_network(&request).await?;
            print_one(format.format, &network, |n| println!("{}", n.name));
        }
        NetworkCommand::Ls {
            quiet: true,
            filters,
            ..
        } => {
            for network in client.networks().await? {
                if network.passes(&filters) {
                    println!("{}", network.name);
                }
            }
        }
        NetworkCommand::Ls {
            format, filters, ..
        } => {
            let mut networks = client.networks().await?;
            networks.retain(|n| n.passes(&filters));
            let networks: Vec<Listed> = networks
                .iter()
                .map(|record| Listed {
                    record,
                    driver: record.driver(),
                    scope: record.scope(),
                })
                .collect();
            let header = [
                "ID",
                "NAME",
                "DRIVER",
                "SCOPE",
                "SUBNETS",
                "GATEWAYS",
                "MTU",
                "VLAN",
                "ENDPOINTS",
            ];
            print_listing(format.format, &networks, &header, |listed| {
                let n = listed.record;
                let subnets: Vec<String> = n.subnets.iter().map(|s| s.subnet.to_string()).collect();
                let gateways: Vec<String> =
                    n.subnets.iter().map(|s| s.gateway.to_string()).collect();
                vec![
                    n.id.chars().take(12).collect(),
                    n.name.clone(),
                    n.driver().to_string(),
                    n.scope().to_string(),
                    subnets.join(","),
                    gateways.join(","),
                    n.mtu.to_string(),
                    n.vlan.map_or("-".into(), |v| v.to_string()),
                    n.endpoints.len().to_string(),
                ]
            })
        }
        NetworkCommand::Inspect { names, format } => {
            let names = by_name_or_id(client, names).await?;
            let mut found = Vec::new();
            let mut failed = Vec::new();
            for name in &names {
                match client.inspect_network(name).await {
                    Ok(view) => found.push(view),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            match (&format, found.as_slice()) {
                (Some(template), _) => {
                    for view in &found {
                        println!("{}", template.render(view).map_err(anyhow::Error::msg)?);
                    }
                }
                (None, [one]) if names.len() == 1 => print_json(one),
                (None, _) => print_json(&found),
            }
            if !failed.is_empty() {
                anyhow::bail!("{}", failed.join("; "));
            }
        }
        NetworkCommand::Rm { names } => {
            remove(client, &by_name_or_id(client, names).await?).await?
        }
        NetworkCommand::Prune { force } => {
            if !force && !confirm("Remove every network without endpoints?")? {
                return Ok(());
            }
            let unused: Vec<String> = client
                .networks()
                .await?
                .into_iter()
                .filter(|n| n.endpoints.is_empty())
                .map(|n| n.name)
                .collect();
            if !unused.is_empty() {
                println!("Deleted Networks:");
                remove(client, &unused).await?;
            }
        }
    }
    Ok(())
}

/// A network as `network ls` gives it: its record, with its driver and scope spelled out.
#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    record: &'a vswitch::model::NetworkRecord,
    driver: &'static str,
    scope: &'static str,
}

/// `names` with each that names no network but starts exactly one network's ID (as Docker
/// takes IDs) replaced by that network's name; the others are left for the daemon to refuse.
async fn by_name_or_id(client: &Client, names: Vec<String>) -> anyhow::Result<Vec<String>> {
    let networks = client.networks().await?;
    Ok(names
        .into_iter()
        .map(|name| {
            if networks.iter().any(|n| n.name == name) {
                return name;
            }
            let mut by_id = networks
                .iter()
                .filter(|n| !n.id.is_empty() && n.id.starts_with(&name.to_ascii_lowercase()));
            match (by_id.next(), by_id.next()) {
                (Some(one), None) => one.name.clone(),
                _ => name,
            }
        })
        .collect())
}

/// Removes each of `names`, printing each removed one; fails at the end, in one line naming
/// each, if any could not be.
async fn remove(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for name in names {
        match client.remove_network(name).await {
            Ok(()) => println!("{name}"),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// Asks `question` on the terminal; refuses without one (scripts say `--force`).
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("standard input is not a terminal to ask on: add --force");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
