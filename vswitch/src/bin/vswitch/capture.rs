//! `vswitch capture`: live frames from the daemon written as pcapng to a file or a pipe, with
//! a closing line of how many frames there were and how many the switch had to skip.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use http_body_util::BodyExt;

use vswitch::api::client::Client;
use vswitch::model::CaptureRequest;

/// `vswitch capture (--port P | --network N) [-w FILE] [FILTER...]`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    request: CaptureRequest,
    /// Where to write: a file, or - for standard output.
    #[arg(short = 'w', long = "write")]
    write: Option<PathBuf>,
    /// tcpdump filter, e.g. `icmp and host 10.89.0.2`.
    filter: Vec<String>,
}

/// Streams a capture to a file or standard output until it ends, Ctrl-C, or the reader goes.
pub async fn run(client: &Client, args: CaptureArgs) -> anyhow::Result<()> {
    let request = CaptureRequest {
        filter: (!args.filter.is_empty()).then(|| args.filter.join(" ")),
        ..args.request
    };
    let mut out: Box<dyn Write> = match args.write.as_deref() {
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
    let stream = client.start_capture(&request).await?;
    let id = stream.id;
    // As tcpdump says "listening on ...": the capture runs from here.
    eprintln!("{}", capturing_on(&request, args.write.as_deref()));
    // Asking the daemon to stop ends the stream with its statistics; a failure to ask changes
    // nothing the user can act on.
    let stop = || async {
        let _ = client.stop_capture(id).await;
    };
    let mut body = stream.body;
    let mut summary = CaptureSummary::default();
    let mut interrupted = false;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = interrupt.recv(), if !interrupted => {
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

/// The line saying what is captured and where it goes.
fn capturing_on(request: &CaptureRequest, write: Option<&Path>) -> String {
    let what = match (&request.port, &request.network) {
        (Some(port), _) => format!("port {port}"),
        (None, Some(network)) => format!("network {network}"),
        (None, None) => "nothing".to_string(),
    };
    let filter = request
        .filter
        .as_deref()
        .map_or(String::new(), |f| format!(", filter \"{f}\""));
    let to = match write {
        Some(path) if path != Path::new("-") => path.display().to_string(),
        _ => "standard output".to_string(),
    };
    format!("capturing on {what}{filter}, writing pcapng to {to}")
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
