//! `vswitch trunk ...`: ports carrying several networks as 802.1Q VLANs.

use clap::Subcommand;

use vswitch::api::client::Client;
use vswitch::model::{TrunkCreate, TrunkRecord};

use crate::output::{print_listing, print_one, FormatArg};

/// `vswitch trunk ...`.
#[derive(Debug, Subcommand)]
pub enum TrunkCommand {
    /// Add a trunk port in a namespace.
    Add {
        #[command(flatten)]
        request: TrunkCreate,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List trunk ports.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Remove a trunk port, by name or namespace.
    #[command(alias = "remove")]
    Rm {
        /// Trunk name or namespace.
        target: String,
    },
}

/// The networks a trunk carries: `red,blue,app(untagged)`.
fn carried(trunk: &TrunkRecord) -> String {
    let untagged = trunk.native.iter().map(|n| format!("{n}(untagged)"));
    let all: Vec<String> = trunk.networks.iter().cloned().chain(untagged).collect();
    all.join(",")
}

/// Runs a `trunk` command.
pub async fn run(client: &Client, command: TrunkCommand) -> anyhow::Result<()> {
    match command {
        TrunkCommand::Add { request, format } => {
            let trunk = client.add_trunk(&request).await?;
            print_one(format.format, &trunk, |t| {
                println!(
                    "trunk {} {} {} carries {}",
                    t.name,
                    t.ifname,
                    t.mac,
                    carried(t)
                )
            });
        }
        TrunkCommand::Ls { format } => {
            let trunks = client.trunks().await?;
            let header = ["NAME", "INTERFACE", "MAC", "NETWORKS"];
            print_listing(format.format, &trunks, &header, |t| {
                vec![
                    t.name.clone(),
                    format!("{}:{}", t.netns, t.ifname),
                    t.mac.to_string(),
                    carried(t),
                ]
            })
        }
        TrunkCommand::Rm { target } => {
            let trunk = client.remove_trunk(&target).await?;
            println!("removed trunk {}", trunk.name);
        }
    }
    Ok(())
}
