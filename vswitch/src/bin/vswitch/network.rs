//! `vswitch network ...`: creating, listing, inspecting and removing networks.

use clap::Subcommand;

use vswitch::api::client::Client;
use vswitch::model::NetworkCreate;

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
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show a network in full (JSON).
    Inspect {
        /// Network name.
        name: String,
    },
    /// Remove a network without endpoints.
    #[command(alias = "remove")]
    Rm {
        /// Network name.
        name: String,
    },
}

/// Runs a `network` command.
pub async fn run(client: &Client, command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create { request, format } => {
            let network = client.create_network(&request).await?;
            print_one(format.format, &network, |n| println!("{}", n.name));
        }
        NetworkCommand::Ls { format } => {
            let networks = client.networks().await?;
            let header = ["NAME", "SUBNETS", "GATEWAYS", "MTU", "VLAN", "ENDPOINTS"];
            print_listing(format.format, &networks, &header, |n| {
                let subnets: Vec<String> = n.subnets.iter().map(|s| s.subnet.to_string()).collect();
                let gateways: Vec<String> =
                    n.subnets.iter().map(|s| s.gateway.to_string()).collect();
                vec![
                    n.name.clone(),
                    subnets.join(","),
                    gateways.join(","),
                    n.mtu.to_string(),
                    n.vlan.map_or("-".into(), |v| v.to_string()),
                    n.endpoints.len().to_string(),
                ]
            })
        }
        NetworkCommand::Inspect { name } => print_json(&client.inspect_network(&name).await?),
        NetworkCommand::Rm { name } => {
            client.remove_network(&name).await?;
            println!("{name}");
        }
    }
    Ok(())
}
