//! `vswitch mirror ...`: copies of an endpoint's or a network's frames to another endpoint.

use clap::Subcommand;

use vswitch::api::client::Client;
use vswitch::model::MirrorRecord;

use crate::output::{print_listing, FormatArg};

/// `vswitch mirror ...`.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Start copying frames of --from to --to.
    Add(MirrorRecord),
    /// List mirrors.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Remove a mirror.
    #[command(alias = "remove")]
    Rm {
        /// Mirror name.
        name: String,
    },
}

/// Runs a `mirror` command.
pub async fn run(client: &Client, command: MirrorCommand) -> anyhow::Result<()> {
    match command {
        MirrorCommand::Add(mirror) => {
            let mirror = client.add_mirror(&mirror).await?;
            println!("mirror {}: {} -> {}", mirror.name, mirror.from, mirror.to);
        }
        MirrorCommand::Ls { format } => {
            let mirrors = client.mirrors().await?;
            print_listing(format.format, &mirrors, &["NAME", "FROM", "TO"], |m| {
                vec![m.name.clone(), m.from.clone(), m.to.clone()]
            });
        }
        MirrorCommand::Rm { name } => {
            client.remove_mirror(&name).await?;
            println!("{name}");
        }
    }
    Ok(())
}
