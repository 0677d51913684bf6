//! The `vswitch` binary: the daemon, and the CLI that asks it over its API. One module per
//! command group; `output` prints what they get.

mod capture;
mod config;
mod daemon;
mod endpoint;
mod events;
mod mirror;
mod network;
mod observe;
mod output;
mod rules;
mod run;
mod template;
mod top;
mod trunk;
mod up;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use vswitch::api::client::Client;

/// A userspace virtual switch for containers.
#[derive(Debug, Parser)]
#[command(name = "vswitch", version, about)]
struct Cli {
    /// Control socket of the daemon [default: /run/vswitch/vswitch.sock as root,
    /// $XDG_RUNTIME_DIR/vswitch/vswitch.sock otherwise].
    #[arg(long, global = true, env = "VSWITCH_SOCKET")]
    socket: Option<PathBuf>,

    /// Log lines as text or as JSON objects (one per line), on stderr; RUST_LOG filters.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the switch daemon in the foreground (logs follow RUST_LOG).
    Daemon(daemon::DaemonArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Attach a container (network namespace) to a network.
    Connect(endpoint::ConnectArgs),
    /// Run a command in a network namespace of its own attached to a network (as `docker run
    /// --network`), e.g. `vswitch run app --name web -- httpd -f`; the endpoint goes when it
    /// exits, and its exit status is vswitch's.
    Run(run::RunArgs),
    /// The first step of `run`'s command (not for direct use).
    #[command(name = "__enter", hide = true)]
    Enter(run::EnterArgs),
    /// The process keeping a daemon's TAP devices across its restarts (not for direct use).
    #[command(name = "__keep-taps", hide = true)]
    KeepTaps {
        /// The listening socket it inherited.
        fd: i32,
    },
    /// The process holding a rootless daemon's user namespace (not for direct use).
    #[command(name = "__hold-userns", hide = true)]
    HoldUserns,
    /// List and inspect a network's endpoints (attached containers).
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Detach a container from a network, by namespace or endpoint name.
    Disconnect(endpoint::DisconnectArgs),
    /// Manage trunk ports (one interface carrying several networks as 802.1Q VLANs).
    #[command(subcommand)]
    Trunk(trunk::TrunkCommand),
    /// List ports with their counters.
    Ports(observe::PortsArgs),
    /// List the hosts of the overlay networks: this one (its underlay socket, and datagrams
    /// it refused) and the others, with their state and counters.
    Hosts(observe::HostsArgs),
    /// Live per-port rates (packets/s, bits/s, drops/s by reason): `s` sorts, `r` reverses,
    /// `q` quits. Works over the control socket, so also beside a remote daemon's socket.
    Top(top::TopArgs),
    /// Capture live frames to pcapng (read by tcpdump -r, tshark -r, Wireshark), e.g.
    /// `vswitch capture --network app -w - | tshark -r -`. Ends on Ctrl-C, after -c frames,
    /// or when the reader closes the pipe; prints how many frames the switch had to skip.
    Capture(capture::CaptureArgs),
    /// Copy an endpoint's or a network's traffic to another endpoint (SPAN).
    #[command(subcommand)]
    Mirror(mirror::MirrorCommand),
    /// Show what the switch would do with a frame from an endpoint, step by step, without
    /// sending it or changing anything (no learning, no counters).
    Trace(observe::TraceArgs),
    /// Show a network's MAC table.
    Fdb(observe::FdbArgs),
    /// Manage a network's policy: ordered allow/deny/reject rules over endpoint names and
    /// labels, and a default action.
    #[command(subcommand)]
    Policy(rules::PolicyCommand),
    /// Set or lift an endpoint's ingress rate limit at run time.
    Limit(endpoint::LimitArgs),
    /// List the flows a network's policy tracks.
    Conntrack(rules::ConntrackArgs),
    /// Run a declarative topology (TOML) in the foreground, on the running daemon if there is
    /// one (else on a daemon of its own); Ctrl-C tears down what it made. `-d` leaves it on
    /// the running daemon.
    Up(up::UpArgs),
    /// Remove what `up --detach FILE` left on the running daemon.
    Down(up::DownArgs),
    /// Show the versions of this client and of the daemon, and whether it runs rootless.
    Version(observe::VersionArgs),
    /// Stream what changes (networks, endpoints, policies, hosts) as it happens, one JSON
    /// object a line, as `docker events`; `--since 10m` replays the recent past.
    Events(events::EventsArgs),
    /// Print a shell completion script, e.g. `vswitch completions bash >
    /// /usr/share/bash-completion/completions/vswitch` (configs/install.sh does this).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (vswitch.1, and vswitch-network-create.1 and so on for every
    /// subcommand) into a directory.
    Man {
        /// Where to write them, e.g. /usr/local/share/man/man1.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let argv = match config::with_config_file(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(argv);
    // netlink-packet-route warns about every attribute newer than itself: not ours to fix.
    let default_level = match cli.command {
        Command::Daemon(_) => "info,netlink_packet_route=error",
        _ => "warn,netlink_packet_route=error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // Steps that enter user namespaces, which only a single-threaded process may: before the
    // runtime starts its threads.
    let mut cli = match cli.command {
        Command::Enter(args) => return run::enter(args),
        Command::KeepTaps { fd } => {
            // SAFETY: the daemon that started this process handed it this listening socket.
            let listener =
                unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            return match tap::keeper::serve(listener) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "vswitch", &mut script);
            // A reader that stops early (`| head`) is no error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            let command = <Cli as clap::CommandFactory>::command();
            return match std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(command, &dir))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: cannot write man pages to {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            };
        }
        Command::HoldUserns => vswitch::rootless::hold(),
        command => Cli { command, ..cli },
    };
    if let Command::Daemon(args) = &mut cli.command {
        keep_freed_memory();
        if !nix::unistd::geteuid().is_root() {
            if let Err(e) = daemon::become_rootless(&mut cli.socket, args) {
                eprintln!("Error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let socket = cli.socket.unwrap_or_else(vswitch::daemon::default_socket);
    let client = Client::new(&socket);
    match cli.command {
        Command::Daemon(args) => daemon::run(&socket, args).await?,
        Command::Up(args) => return up::run(&socket, args).await,
        Command::Down(args) => return up::down(&socket, args).await,
        Command::Network(command) => network::run(&client, command).await?,
        Command::Connect(args) => endpoint::connect(&client, args).await?,
        Command::Run(args) => return run::run(&client, args).await,
        Command::Enter(_)
        | Command::HoldUserns
        | Command::KeepTaps { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("run before the runtime starts")
        }
        Command::Endpoint(command) => endpoint::endpoint(&client, command).await?,
        Command::Disconnect(args) => endpoint::disconnect(&client, args).await?,
        Command::Limit(args) => endpoint::limit(&client, args).await?,
        Command::Trunk(command) => trunk::run(&client, command).await?,
        Command::Ports(args) => observe::ports(&client, args).await?,
        Command::Hosts(args) => observe::hosts(&client, args).await?,
        Command::Top(args) => top::run_view(client, args).await?,
        Command::Capture(args) => capture::run(&client, args).await?,
        Command::Events(args) => events::run(&client, args).await?,
        Command::Mirror(command) => mirror::run(&client, command).await?,
        Command::Trace(args) => observe::trace(&client, args).await?,
        Command::Fdb(args) => observe::fdb(&client, args).await?,
        Command::Version(args) => observe::version(&client, args).await?,
        Command::Policy(command) => return rules::run(&client, command).await,
        Command::Conntrack(args) => rules::conntrack(&client, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Freed heap memory the daemon keeps for reuse (glibc's trim threshold). The data path and
/// the gateway free 64 KB buffers at a high rate; by default glibc hands such memory back to
/// the kernel as soon as 128 KB sit free at the top of an arena, and taking it again costs a
/// page fault per page and a TLB shootdown per return (a tenth of the gateway's time in
/// `bench/egress.py`). Idle, each arena (one per busy thread) holds at most this much unused.
fn keep_freed_memory() {
    const TRIM_THRESHOLD: libc::c_int = 8 << 20;
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line is consistent (no clashing flags or names).
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
