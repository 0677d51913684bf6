//! The `vswitch` command line: a thin client of the daemon's API (and the daemon itself).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A userspace virtual switch for containers.
#[derive(Debug, Parser)]
#[command(name = "vswitch", version, about)]
pub struct Cli {
    /// Control socket of the daemon [default: /run/vswitch/vswitch.sock as root,
    /// $XDG_RUNTIME_DIR/vswitch/vswitch.sock otherwise].
    #[arg(long, global = true, env = "VSWITCH_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Log lines as text or as JSON objects (one per line), on stderr; RUST_LOG filters.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Output format of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
}

/// `--format` for listings.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Switch-wide tuning flags shared by `daemon` and `up`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Seconds after which an idle learned MAC is forgotten.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub aging: u64,
    /// Learned MACs a single port may hold.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub mac_limit: u32,
    /// Microseconds the data path keeps polling after a frame before it sleeps: trades a
    /// little CPU during traffic for fewer wake-ups (0: sleep at once).
    #[arg(long, default_value_t = crate::dataplane::DEFAULT_BUSY_POLL.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll_us: u64,
    /// Data path worker threads, and queues per TAP device [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: Option<u16>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the switch daemon in the foreground (logs follow RUST_LOG).
    Daemon {
        /// Where networks and endpoints are persisted [default: /var/lib/vswitch as root,
        /// $XDG_STATE_HOME/vswitch otherwise].
        #[arg(long, env = "VSWITCH_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9477).
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Attach a container (network namespace) to a network.
    Connect {
        /// Network name.
        network: String,
        /// `ip netns` name, namespace path (/proc/PID/ns/net) or pid:PID.
        netns: String,
        /// Address to use (repeat for IPv4 and IPv6) [default: next free].
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// MAC address [default: stable, derived from network and endpoint name].
        #[arg(long)]
        mac: Option<String>,
        /// Interface name inside the namespace [default: eth0, eth1, ...].
        #[arg(long)]
        ifname: Option<String>,
        /// Endpoint name [default: the namespace's name].
        #[arg(long)]
        name: Option<String>,
        /// Turn checksum and segmentation offloads off on this interface (every frame then
        /// crosses at wire size; the switch segments what other containers send it).
        #[arg(long)]
        no_offload: bool,
        /// MTU of this interface [default: the network's].
        #[arg(long)]
        mtu: Option<u32>,
        /// Further DNS name of this endpoint on the network (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Configure no address: the container runs a DHCP client (and SLAAC for IPv6).
        #[arg(long, conflicts_with = "ips")]
        dhcp: bool,
        /// Let the container send from any MAC or address (port security is on by default:
        /// frames must come from its own MAC and addresses, and it may not answer DHCP).
        #[arg(long)]
        no_port_security: bool,
        /// Label for policy selectors, key=value (repeatable), e.g. --label app=web.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Ingress rate limit in bits/s, with k/M/G suffixes (e.g. 10M).
        #[arg(long, value_parser = parse_rate)]
        rate_limit: Option<u64>,
        /// Ingress rate limit in packets/s.
        #[arg(long)]
        rate_limit_pps: Option<u64>,
        /// Burst of the rate limit in bytes [default: 100 ms worth, at least 64 KiB].
        #[arg(long)]
        rate_limit_burst: Option<u64>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Detach a container from a network, by namespace or endpoint name.
    Disconnect {
        /// Network name.
        network: String,
        /// Namespace (as given to connect) or endpoint name.
        target: String,
    },
    /// Manage trunk ports (one interface carrying several networks as 802.1Q VLANs).
    #[command(subcommand)]
    Trunk(TrunkCommand),
    /// List ports with their counters.
    Ports {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Live per-port rates (packets/s, bits/s, drops/s by reason): `s` sorts, `r` reverses,
    /// `q` quits. Works over the control socket, so also beside a remote daemon's socket.
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Capture live frames to pcapng (read by tcpdump -r, tshark -r, Wireshark), e.g.
    /// `vswitch capture --network app -w - | tshark -r -`. Ends on Ctrl-C, after -c frames,
    /// or when the reader closes the pipe; prints how many frames the switch had to skip.
    Capture {
        /// One endpoint, both directions: its name, NETWORK/NAME, or its namespace.
        #[arg(long, conflicts_with = "network", required_unless_present = "network")]
        port: Option<String>,
        /// Every port of a network, frames as they enter the switch.
        #[arg(long)]
        network: Option<String>,
        /// Where to write: a file, or - for standard output.
        #[arg(short = 'w', long = "write")]
        write: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(short = 'c', long = "count")]
        count: Option<u64>,
        /// Bytes kept of each frame [default: 65535].
        #[arg(short = 's', long = "snaplen")]
        snaplen: Option<u32>,
        /// Include frames the switch dropped, each with a comment naming the reason.
        #[arg(long)]
        drops: bool,
        /// tcpdump filter, e.g. `icmp and host 10.89.0.2`.
        filter: Vec<String>,
    },
    /// Copy an endpoint's or a network's traffic to another endpoint (SPAN).
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Show what the switch would do with a frame from an endpoint, step by step, without
    /// sending it or changing anything (no learning, no counters).
    Trace {
        /// Network name.
        network: String,
        /// Sending endpoint (name or namespace).
        #[arg(long)]
        from: String,
        /// Receiving endpoint.
        #[arg(long, required_unless_present_any = ["dst", "dst_mac"])]
        to: Option<String>,
        /// Destination address.
        #[arg(long)]
        dst: Option<std::net::IpAddr>,
        /// Destination MAC.
        #[arg(long)]
        dst_mac: Option<String>,
        /// tcp, udp or icmp.
        #[arg(long, default_value = "icmp")]
        proto: String,
        /// Destination port (tcp, udp).
        #[arg(long)]
        dport: Option<u16>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show a network's MAC table.
    Fdb {
        /// Network name.
        network: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Manage a network's policy: ordered allow/deny/reject rules over endpoint names and
    /// labels, and a default action.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Set or lift an endpoint's ingress rate limit at run time.
    Limit {
        /// Network name.
        network: String,
        /// Endpoint name or namespace.
        target: String,
        /// Bits per second, with k/M/G suffixes (e.g. 10M).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<u64>,
        /// Packets per second.
        #[arg(long)]
        pps: Option<u64>,
        /// Burst in bytes [default: 100 ms worth, at least 64 KiB].
        #[arg(long)]
        burst_bytes: Option<u64>,
        /// Burst in packets [default: 100 ms worth, at least 32].
        #[arg(long)]
        burst_packets: Option<u64>,
    },
    /// List the flows a network's policy tracks.
    Conntrack {
        /// Network name.
        network: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Run a declarative topology (TOML) in the foreground; Ctrl-C tears down what it made.
    Up {
        /// Topology file, e.g. configs/quickstart.toml.
        config: PathBuf,
        /// Tear down as soon as the containers' `run` commands finish; exit non-zero if any failed.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        switch: SwitchArgs,
    },
}

/// `vswitch network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        /// Network name.
        name: String,
        /// Subnet in CIDR notation (repeat for dual stack) [default: a free /24 of 10.89.0.0/16].
        #[arg(long = "subnet")]
        subnets: Vec<String>,
        /// Gateway address (one per subnet) [default: first host of the subnet].
        #[arg(long = "gateway")]
        gateways: Vec<String>,
        /// MTU of the network's interfaces.
        #[arg(long)]
        mtu: Option<u32>,
        /// 802.1Q VLAN ID carrying the network on trunk ports.
        #[arg(long)]
        vlan: Option<u16>,
        /// Hand out addresses (static and DHCP) only from this part of a subnet (repeatable).
        #[arg(long = "ip-range")]
        ip_ranges: Vec<String>,
        /// Upstream DNS server, IP or IP:PORT, for names that are not the network's own
        /// (repeatable) [default: the daemon's /etc/resolv.conf].
        #[arg(long)]
        dns: Vec<String>,
        /// Dual stack: add an IPv6 /64 from fd00:89::/48 unless an IPv6 --subnet is given.
        #[arg(long)]
        ipv6: bool,
        /// Create this interface in the daemon's own namespace with the gateway addresses, so
        /// processes beside the daemon reach the containers (Docker's docker0).
        #[arg(long)]
        host_iface: Option<String>,
        /// What traffic between endpoints that no policy rule matches gets: allow (Docker's
        /// default) or deny (Docker's icc=false).
        #[arg(long, value_enum)]
        default_action: Option<DefaultActionArg>,
        /// Broadcast/multicast packets per second allowed on the network; 0 turns storm
        /// control off [default: 5000].
        #[arg(long)]
        storm_pps: Option<u64>,
        /// Most flows the policy tracks [default: 262144].
        #[arg(long)]
        max_flows: Option<usize>,
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

/// `vswitch mirror ...`.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Start copying frames of --from to --to.
    Add {
        /// Mirror name.
        name: String,
        /// A network (frames entering the switch from any of its ports) or an endpoint (both
        /// directions); a network of that name is taken first.
        #[arg(long)]
        from: String,
        /// The endpoint that receives the copies.
        #[arg(long)]
        to: String,
    },
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

/// `vswitch trunk ...`.
#[derive(Debug, Subcommand)]
pub enum TrunkCommand {
    /// Add a trunk port in a namespace.
    Add {
        /// `ip netns` name, namespace path (/proc/PID/ns/net) or pid:PID.
        netns: String,
        /// Network to carry tagged with its VLAN ID (repeat).
        #[arg(long = "network")]
        networks: Vec<String>,
        /// Network to carry untagged.
        #[arg(long)]
        native: Option<String>,
        /// MAC address [default: stable, derived from the trunk name].
        #[arg(long)]
        mac: Option<String>,
        /// Interface name inside the namespace [default: trunk0, trunk1, ...].
        #[arg(long)]
        ifname: Option<String>,
        /// Trunk name [default: the namespace's name].
        #[arg(long)]
        name: Option<String>,
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

/// Prints rows as aligned columns under `header`.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `--default-action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DefaultActionArg {
    /// Let unmatched traffic through.
    Allow,
    /// Drop unmatched traffic.
    Deny,
}

impl From<DefaultActionArg> for policy::DefaultAction {
    fn from(arg: DefaultActionArg) -> Self {
        match arg {
            DefaultActionArg::Allow => policy::DefaultAction::Allow,
            DefaultActionArg::Deny => policy::DefaultAction::Deny,
        }
    }
}

/// A rule's action on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Let the flow through (its replies too).
    Allow,
    /// Drop silently.
    Deny,
    /// Drop and answer with a TCP reset or ICMP port unreachable.
    Reject,
}

impl From<ActionArg> for policy::RuleAction {
    fn from(arg: ActionArg) -> Self {
        match arg {
            ActionArg::Allow => policy::RuleAction::Allow,
            ActionArg::Deny => policy::RuleAction::Deny,
            ActionArg::Reject => policy::RuleAction::Reject,
        }
    }
}

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
    Add {
        /// Network name.
        network: String,
        /// Rule name, unique on the network.
        name: String,
        /// What matching flows get.
        #[arg(long, value_enum)]
        action: ActionArg,
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
        proto: String,
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
    },
    /// Remove a rule.
    #[command(alias = "remove")]
    Rm {
        /// Network name.
        network: String,
        /// Rule name.
        name: String,
    },
    /// Set what traffic no rule matches gets.
    Default {
        /// Network name.
        network: String,
        /// allow or deny.
        #[arg(value_enum)]
        action: DefaultActionArg,
    },
    /// Replace the whole policy with a TOML file (`default = "deny"` and `[[rules]]`), in one
    /// step.
    Set {
        /// Network name.
        network: String,
        /// Policy file.
        file: PathBuf,
    },
    /// Evaluate a described packet and print the rule that decides it.
    Test {
        /// Network name.
        network: String,
        /// Sending endpoint (name or namespace).
        #[arg(long)]
        from: String,
        /// Receiving endpoint.
        #[arg(long, required_unless_present = "dst")]
        to: Option<String>,
        /// Destination address.
        #[arg(long)]
        dst: Option<std::net::IpAddr>,
        /// tcp, udp or icmp.
        #[arg(long, default_value = "tcp")]
        proto: String,
        /// Destination port (tcp, udp).
        #[arg(long)]
        dport: Option<u16>,
    },
}

/// Parses a rate in bits/s: `1500`, `10k`, `10M`, `1G` (optionally followed by `bit`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
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

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10M"), Ok(10_000_000));
        assert_eq!(parse_rate("1.5kbit"), Ok(1_500));
        assert_eq!(parse_rate("2G"), Ok(2_000_000_000));
        assert_eq!(parse_rate("800"), Ok(800));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
    }
}
