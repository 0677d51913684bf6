//! The `vswitch` binary: the daemon, and the CLI that asks it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Serialize;
use serde_json::Value;

use vswitch::api::CAPTURE_ID_HEADER;
use vswitch::cli::{
    print_table, Cli, Command, Format, LogFormat, MirrorCommand, NetworkCommand, PolicyCommand,
    SwitchArgs, TrunkCommand,
};
use vswitch::client::{call, call_streaming, segment};
use vswitch::control::{FdbInfo, PolicyView, PortInfo};
use vswitch::dataplane::{default_workers, DataPathConfig};
use vswitch::model::{
    CaptureRequest, ConnectRequest, Connected, EndpointRecord, MirrorRecord, NetworkCreate,
    NetworkRecord, TrunkCreate, TrunkRecord,
};
use vswitch::{daemon, topology};
use vswitch_core::switch::SwitchConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // netlink-packet-route warns about every attribute newer than itself: not ours to fix.
    let default_level = match cli.command {
        Command::Daemon { .. } => "info,netlink_packet_route=error",
        _ => "warn,netlink_packet_route=error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
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

fn datapath_config(args: &SwitchArgs) -> DataPathConfig {
    DataPathConfig {
        switch: SwitchConfig {
            aging: Duration::from_secs(args.aging),
            mac_limit: args.mac_limit,
        },
        busy_poll: Duration::from_micros(args.busy_poll_us),
        workers: args.workers.map_or_else(default_workers, usize::from),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let socket = cli.socket.clone().unwrap_or_else(daemon::default_socket);
    let socket = socket.as_path();
    match cli.command {
        Command::Daemon {
            state_dir,
            metrics_addr,
            switch,
        } => {
            let state_dir = state_dir.unwrap_or_else(daemon::default_state_dir);
            daemon::run(socket, &state_dir, datapath_config(&switch), metrics_addr).await?;
        }
        Command::Up {
            config,
            once,
            switch,
        } => {
            return topology::up(&config, socket, datapath_config(&switch), once).await;
        }
        Command::Network(command) => network(socket, command).await?,
        Command::Trunk(command) => trunk(socket, command).await?,
        Command::Policy(command) => policy(socket, command).await?,
        Command::Limit {
            network,
            target,
            rate,
            pps,
            burst_bytes,
            burst_packets,
        } => {
            let limit = policy::RateLimit {
                bits_per_sec: rate,
                packets_per_sec: pps,
                burst_bytes,
                burst_packets,
            };
            let path = format!(
                "/v1/networks/{}/endpoints/{}/rate-limit",
                segment(&network),
                segment(&target)
            );
            let endpoint: EndpointRecord = call(socket, Method::PUT, &path, Some(&limit)).await?;
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
        }
        Command::Conntrack { network, format } => {
            let path = format!("/v1/networks/{}/conntrack", segment(&network));
            let flows: Vec<policy::FlowRow> = call(socket, Method::GET, &path, None::<&()>).await?;
            print_listing(
                format.format,
                &flows,
                &[
                    "PROTO",
                    "SOURCE",
                    "DESTINATION",
                    "STATE",
                    "RULE",
                    "PACKETS",
                    "IDLE",
                ],
                |f| {
                    vec![
                        f.proto.clone(),
                        endpoint_text(f.src, f.sport),
                        endpoint_text(f.dst, f.dport),
                        f.state.clone(),
                        f.rule.clone(),
                        f.packets.to_string(),
                        format!("{:.1}s", f.idle_ms as f64 / 1000.0),
                    ]
                },
            );
        }
        Command::Connect {
            network,
            netns,
            ips,
            mac,
            ifname,
            name,
            no_offload,
            mtu,
            aliases,
            dhcp,
            no_port_security,
            labels,
            rate_limit,
            rate_limit_pps,
            rate_limit_burst,
            format,
        } => {
            let rate_limit = policy::RateLimit {
                bits_per_sec: rate_limit,
                packets_per_sec: rate_limit_pps,
                burst_bytes: rate_limit_burst,
                burst_packets: None,
            };
            let req = ConnectRequest {
                labels,
                rate_limit: rate_limit.is_set().then_some(rate_limit),
                port_security: Some(!no_port_security),
                mtu,
                offload: Some(!no_offload),
                netns,
                ips,
                mac,
                ifname,
                name,
                aliases,
                dhcp,
            };
            let path = format!("/v1/networks/{}/endpoints", segment(&network));
            let connected: Connected = call(socket, Method::POST, &path, Some(&req)).await?;
            match format.format {
                Format::Json => print_json(&connected),
                Format::Table => {
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
                }
            }
        }
        Command::Disconnect { network, target } => {
            let path = format!(
                "/v1/networks/{}/endpoints/{}",
                segment(&network),
                segment(&target)
            );
            let endpoint: EndpointRecord = call(socket, Method::DELETE, &path, None::<&()>).await?;
            println!("disconnected {} from {network}", endpoint.name);
        }
        Command::Capture {
            port,
            network,
            write,
            count,
            snaplen,
            drops,
            filter,
        } => {
            let req = CaptureRequest {
                port,
                network,
                snaplen,
                count,
                drops,
                filter: (!filter.is_empty()).then(|| filter.join(" ")),
            };
            capture(socket, req, write).await?;
        }
        Command::Mirror(command) => match command {
            MirrorCommand::Add { name, from, to } => {
                let req = MirrorRecord { name, from, to };
                let mirror: MirrorRecord =
                    call(socket, Method::POST, "/v1/mirrors", Some(&req)).await?;
                println!("mirror {}: {} -> {}", mirror.name, mirror.from, mirror.to);
            }
            MirrorCommand::Ls { format } => {
                let mirrors: Vec<MirrorRecord> =
                    call(socket, Method::GET, "/v1/mirrors", None::<&()>).await?;
                print_listing(format.format, &mirrors, &["NAME", "FROM", "TO"], |m| {
                    vec![m.name.clone(), m.from.clone(), m.to.clone()]
                });
            }
            MirrorCommand::Rm { name } => {
                let path = format!("/v1/mirrors/{}", segment(&name));
                let _: MirrorRecord = call(socket, Method::DELETE, &path, None::<&()>).await?;
                println!("{name}");
            }
        },
        Command::Trace {
            network,
            from,
            to,
            dst,
            dst_mac,
            proto,
            dport,
            format,
        } => {
            let req = vswitch_core::trace::TraceRequest {
                from,
                to,
                dst,
                dst_mac,
                proto: Some(proto),
                dport,
            };
            let path = format!("/v1/networks/{}/trace", segment(&network));
            let report: vswitch_core::trace::TraceReport =
                call(socket, Method::POST, &path, Some(&req)).await?;
            match format.format {
                Format::Json => print_json(&report),
                Format::Table => {
                    for step in &report.steps {
                        println!("{:<14} {}", format!("{}:", step.stage), step.detail);
                    }
                    println!("{:<14} {}", "verdict:", report.verdict);
                }
            }
        }
        Command::Top { interval } => {
            let socket = socket.to_path_buf();
            let interval = Duration::from_secs_f64(interval.clamp(0.1, 3600.0));
            let runtime = tokio::runtime::Handle::current();
            // The view blocks on the terminal; each refresh asks the daemon from that thread.
            tokio::task::spawn_blocking(move || {
                vswitch::top::run(interval, || {
                    runtime.block_on(async {
                        let ports: Vec<PortInfo> = tokio::time::timeout(
                            Duration::from_secs(2),
                            call(&socket, Method::GET, "/v1/ports", None::<&()>),
                        )
                        .await
                        .map_err(|_| anyhow::anyhow!("the daemon did not answer within 2 s"))??;
                        Ok(ports.into_iter().map(sample).collect())
                    })
                })
            })
            .await??;
        }
        Command::Ports { format } => {
            let ports: Vec<PortInfo> = call(socket, Method::GET, "/v1/ports", None::<&()>).await?;
            print_listing(
                format.format,
                &ports,
                &[
                    "PORT",
                    "NETWORK",
                    "ENDPOINT",
                    "INTERFACE",
                    "MAC",
                    "RX_PKTS",
                    "RX_BYTES",
                    "TX_PKTS",
                    "TX_BYTES",
                    "DROPS",
                ],
                |p| {
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
                        p.mac.to_string(),
                        p.rx_packets.to_string(),
                        p.rx_bytes.to_string(),
                        p.tx_packets.to_string(),
                        p.tx_bytes.to_string(),
                        p.drops.to_string(),
                    ]
                },
            )
        }
        Command::Fdb { network, format } => {
            let path = format!("/v1/networks/{}/fdb", segment(&network));
            let entries: Vec<FdbInfo> = call(socket, Method::GET, &path, None::<&()>).await?;
            print_listing(
                format.format,
                &entries,
                &["MAC", "PORT", "ENDPOINT", "TYPE", "AGE"],
                |e| {
                    vec![
                        e.mac.to_string(),
                        e.port.to_string(),
                        e.endpoint.clone(),
                        e.kind.to_string(),
                        e.age_seconds.map_or("-".into(), |a| format!("{a:.1}s")),
                    ]
                },
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn network(socket: &Path, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create {
            name,
            subnets,
            gateways,
            mtu,
            vlan,
            ip_ranges,
            dns,
            ipv6,
            host_iface,
            default_action,
            storm_pps,
            max_flows,
            format,
        } => {
            let req = NetworkCreate {
                policy: default_action.map(|action| policy::NetworkPolicy {
                    default: action.into(),
                    rules: Vec::new(),
                }),
                storm_pps,
                max_flows,
                name,
                subnets,
                gateways,
                mtu,
                vlan,
                ip_ranges,
                dns,
                ipv6,
                host_iface,
            };
            let net: NetworkRecord = call(socket, Method::POST, "/v1/networks", Some(&req)).await?;
            match format.format {
                Format::Json => print_json(&net),
                Format::Table => println!("{}", net.name),
            }
        }
        NetworkCommand::Ls { format } => {
            let nets: Vec<NetworkRecord> =
                call(socket, Method::GET, "/v1/networks", None::<&()>).await?;
            print_listing(
                format.format,
                &nets,
                &["NAME", "SUBNETS", "GATEWAYS", "MTU", "VLAN", "ENDPOINTS"],
                |n| {
                    let subnets: Vec<String> =
                        n.subnets.iter().map(|s| s.subnet.to_string()).collect();
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
                },
            )
        }
        NetworkCommand::Inspect { name } => {
            let net: Value = call(
                socket,
                Method::GET,
                &format!("/v1/networks/{}", segment(&name)),
                None::<&()>,
            )
            .await?;
            print_json(&net);
        }
        NetworkCommand::Rm { name } => {
            let _: Value = call(
                socket,
                Method::DELETE,
                &format!("/v1/networks/{}", segment(&name)),
                None::<&()>,
            )
            .await?;
            println!("{name}");
        }
    }
    Ok(())
}

async fn trunk(socket: &Path, command: TrunkCommand) -> Result<()> {
    let describe = |t: &TrunkRecord| {
        let mut carried = t.networks.join(",");
        if let Some(native) = &t.native {
            carried = format!(
                "{carried}{}{native}(untagged)",
                if carried.is_empty() { "" } else { "," }
            );
        }
        carried
    };
    match command {
        TrunkCommand::Add {
            netns,
            networks,
            native,
            mac,
            ifname,
            name,
            format,
        } => {
            let req = TrunkCreate {
                netns,
                networks,
                native,
                mac,
                ifname,
                name,
            };
            let trunk: TrunkRecord = call(socket, Method::POST, "/v1/trunks", Some(&req)).await?;
            match format.format {
                Format::Json => print_json(&trunk),
                Format::Table => println!(
                    "trunk {} {} {} carries {}",
                    trunk.name,
                    trunk.ifname,
                    trunk.mac,
                    describe(&trunk)
                ),
            }
        }
        TrunkCommand::Ls { format } => {
            let trunks: Vec<TrunkRecord> =
                call(socket, Method::GET, "/v1/trunks", None::<&()>).await?;
            print_listing(
                format.format,
                &trunks,
                &["NAME", "INTERFACE", "MAC", "NETWORKS"],
                |t| {
                    vec![
                        t.name.clone(),
                        format!("{}:{}", t.netns, t.ifname),
                        t.mac.to_string(),
                        describe(t),
                    ]
                },
            )
        }
        TrunkCommand::Rm { target } => {
            let trunk: TrunkRecord = call(
                socket,
                Method::DELETE,
                &format!("/v1/trunks/{}", segment(&target)),
                None::<&()>,
            )
            .await?;
            println!("removed trunk {}", trunk.name);
        }
    }
    Ok(())
}

/// `vswitch policy ...`.
async fn policy(socket: &Path, command: PolicyCommand) -> Result<()> {
    let policy_path = |network: &str| format!("/v1/networks/{}/policy", segment(network));
    let view: PolicyView = match command {
        PolicyCommand::Ls { network, format } => {
            let view: PolicyView =
                call(socket, Method::GET, &policy_path(&network), None::<&()>).await?;
            if format.format == Format::Json {
                print_json(&view);
                return Ok(());
            }
            view
        }
        PolicyCommand::Add {
            network,
            name,
            action,
            to,
            from,
            peer,
            proto,
            port,
            icmp_type,
            staged,
            position,
        } => {
            let (direction, select) = match (to, from) {
                (Some(to), _) => (policy::Direction::To, to),
                (None, Some(from)) => (policy::Direction::From, from),
                (None, None) => anyhow::bail!("say which endpoints: --to or --from"),
            };
            let proto = serde_json::from_value(Value::String(proto.clone())).map_err(|_| {
                anyhow::anyhow!("unknown protocol {proto:?}: use tcp, udp, icmp, icmpv6 or any")
            })?;
            let rule = policy::Rule {
                name,
                action: action.into(),
                direction,
                select,
                peer,
                proto,
                ports: port,
                icmp_type,
                staged,
            };
            let req = vswitch::api::RuleAdd { rule, position };
            let path = format!("{}/rules", policy_path(&network));
            call(socket, Method::POST, &path, Some(&req)).await?
        }
        PolicyCommand::Rm { network, name } => {
            let path = format!("{}/rules/{}", policy_path(&network), segment(&name));
            call(socket, Method::DELETE, &path, None::<&()>).await?
        }
        PolicyCommand::Default { network, action } => {
            let path = policy_path(&network);
            let mut current: PolicyView = call(socket, Method::GET, &path, None::<&()>).await?;
            current.policy.default = action.into();
            call(socket, Method::PUT, &path, Some(&current.policy)).await?
        }
        PolicyCommand::Set { network, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let new: policy::NetworkPolicy = toml::from_str(&text)
                .with_context(|| format!("invalid policy {}", file.display()))?;
            call(socket, Method::PUT, &policy_path(&network), Some(&new)).await?
        }
        PolicyCommand::Test {
            network,
            from,
            to,
            dst,
            proto,
            dport,
        } => {
            let req = vswitch_core::trace::TraceRequest {
                from,
                to,
                dst,
                dst_mac: None,
                proto: Some(proto),
                dport,
            };
            let path = format!("/v1/networks/{}/trace", segment(&network));
            let report: vswitch_core::trace::TraceReport =
                call(socket, Method::POST, &path, Some(&req)).await?;
            let step = report.steps.iter().find(|s| s.stage == "policy");
            println!(
                "{}",
                step.map_or("policy: not reached", |s| s.detail.as_str())
            );
            if let Some(rule) = &report.policy_rule {
                println!("rule: {rule}");
            }
            println!("verdict: {}", report.verdict);
            return Ok(());
        }
    };
    println!(
        "default: {}",
        match view.policy.default {
            policy::DefaultAction::Allow => "allow",
            policy::DefaultAction::Deny => "deny",
        }
    );
    let rows: Vec<Vec<String>> = view
        .policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let stats = view.stats.iter().find(|s| s.name == r.name);
            vec![
                i.to_string(),
                r.name.clone(),
                format!("{:?}", r.action).to_lowercase() + if r.staged { " (staged)" } else { "" },
                format!(
                    "{} {}",
                    format!("{:?}", r.direction).to_lowercase(),
                    r.select
                ),
                r.peer.clone(),
                format!("{:?}", r.proto).to_lowercase(),
                r.ports
                    .clone()
                    .or(r.icmp_type.map(|t| format!("type {t}")))
                    .unwrap_or_else(|| "-".into()),
                stats
                    .map_or(0, |s| if r.staged { s.staged_hits } else { s.hits })
                    .to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "#", "NAME", "ACTION", "SELECT", "PEER", "PROTO", "PORTS", "HITS",
        ],
        &rows,
    );
    if let Some(default) = view
        .stats
        .iter()
        .find(|s| s.name == policy::rules::DEFAULT_RULE)
    {
        println!("default hits: {}", default.hits);
    }
    Ok(())
}

/// `ADDR:PORT`, with IPv6 addresses in brackets.
fn endpoint_text(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// Prints `items` as JSON, or as a table of `header` with one `row` per item.
fn print_listing<T: Serialize>(
    format: Format,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    match format {
        Format::Json => print_json(&items),
        Format::Table => print_table(header, &items.iter().map(row).collect::<Vec<_>>()),
    }
}

/// Streams a capture to a file or standard output until it ends, Ctrl-C, or the reader goes.
async fn capture(socket: &Path, req: CaptureRequest, write: Option<PathBuf>) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let mut out: Box<dyn Write> = match write.as_deref() {
        Some(path) if path == Path::new("-") => Box::new(std::io::stdout()),
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None if !std::io::stdout().is_terminal() => Box::new(std::io::stdout()),
        None => anyhow::bail!(
            "pcapng is binary: write it to a file (-w FILE) or a pipe (-w - | tcpdump -r -)"
        ),
    };
    // Before the stream starts, so an early Ctrl-C also stops the capture cleanly.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let response = call_streaming(socket, Method::POST, "/v1/captures", &req).await?;
    let id = response
        .headers()
        .get(CAPTURE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let stop = || async {
        let path = format!("/v1/captures/{}", segment(&id));
        let _: Result<Value> = call(socket, Method::DELETE, &path, None::<&()>).await;
    };
    let mut body = response.into_body();
    let mut summary = CaptureSummary::default();
    let mut interrupted = false;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = interrupt.recv(), if !interrupted => {
                // Ask the daemon to stop: the stream then ends with its statistics.
                interrupted = true;
                stop().await;
                continue;
            }
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        summary.feed(&data);
        if out.write_all(&data).and_then(|()| out.flush()).is_err() {
            // The reader closed the pipe: stop quietly, as tcpdump does.
            stop().await;
            return Ok(());
        }
    }
    eprintln!(
        "{} frames captured; {} skipped by the switch (reader too slow)",
        summary.frames, summary.skipped
    );
    Ok(())
}

/// Counts frames and reads the skip counts from the pcapng stream going by.
#[derive(Default)]
struct CaptureSummary {
    parser: Option<pcap_file::pcapng::PcapNgParser>,
    /// Bytes of a block not complete yet.
    pending: Vec<u8>,
    frames: u64,
    skipped: u64,
}

impl CaptureSummary {
    fn feed(&mut self, data: &[u8]) {
        // Parse in place; only an incomplete block's bytes are kept for the next chunk.
        if self.pending.is_empty() {
            let used = self.parse(data);
            self.pending.extend_from_slice(&data[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(data);
            let used = self.parse(&pending);
            pending.drain(..used);
            self.pending = pending;
        }
    }

    /// Counts the complete blocks at the start of `stream`; returns the bytes they take.
    fn parse(&mut self, stream: &[u8]) -> usize {
        use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
        use pcap_file::pcapng::{Block, PcapNgParser};
        let mut rest = stream;
        if self.parser.is_none() {
            let Ok((after_header, parser)) = PcapNgParser::new(rest) else {
                return 0;
            };
            self.parser = Some(parser);
            rest = after_header;
        }
        let parser = self.parser.as_mut().expect("set above");
        while let Ok((next, block)) = parser.next_block(rest) {
            match block {
                Block::EnhancedPacket(_) => self.frames += 1,
                Block::InterfaceStatistics(isb) => {
                    for option in isb.options {
                        if let InterfaceStatisticsOption::IsbIfDrop(n) = option {
                            self.skipped += n;
                        }
                    }
                }
                _ => {}
            }
            rest = next;
        }
        stream.len() - rest.len()
    }
}

/// A port's counters as `top` takes them.
fn sample(p: PortInfo) -> vswitch::top::PortSample {
    vswitch::top::PortSample {
        port: p.port,
        network: p.network,
        endpoint: p.endpoint,
        rx_packets: p.rx_packets,
        rx_bytes: p.rx_bytes,
        tx_packets: p.tx_packets,
        tx_bytes: p.tx_bytes,
        drops_by_reason: p.drops_by_reason,
    }
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}
