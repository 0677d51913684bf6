//! `vswitch events`: what changes in the daemon (networks created and removed, endpoints
//! connected and disconnected, policies changed, hosts joining and leaving overlays), as it
//! happens, one JSON object a line, as `docker events --format '{{json .}}'` prints them.

use std::io::Write;

use clap::Args;
use http_body_util::BodyExt;

use vswitch::api::client::Client;
use vswitch::model::events::{parse_time, Event, EventFilter, EventsRequest};

use crate::output::Format;

/// `vswitch events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Replay the events kept since then (the last 1024): seconds since the epoch, or a
    /// duration ago (90s, 10m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Stop then (the same forms); in the past, print the kept events and stop.
    #[arg(long)]
    until: Option<String>,
    /// Only events matching type=network|policy|host, event=ACTION, network=NAME,
    /// endpoint=NAME or host=NAME (repeatable: the same key matches either, different keys
    /// all).
    #[arg(short, long = "filter", value_name = "FILTER")]
    filters: Vec<EventFilter>,
    /// json (one object a line), or a Go template per event, e.g. '{{.Type}} {{.Action}}
    /// {{.Actor.Attributes.endpoint}}'.
    #[arg(long, default_value = "json", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Format>()))]
    format: Format,
}

/// Prints events until the daemon ends the stream (`--until`, or it stops) or the reader goes.
pub async fn run(client: &Client, args: EventsArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let time = |text: &Option<String>| {
        text.as_deref()
            .map(|t| parse_time(t, now))
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let request = EventsRequest {
        since: time(&args.since)?,
        until: time(&args.until)?,
        filters: args.filters,
    };
    let mut body = client.events(&request).await?;
    let mut pending = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = match &args.format {
                Format::Template(template) => {
                    let event: Event = serde_json::from_slice(&line)?;
                    template.render(&event).map_err(anyhow::Error::msg)? + "\n"
                }
                _ => String::from_utf8_lossy(&line).into_owned(),
            };
            // A reader that went away (`| head`) ends it quietly.
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return Ok(());
            }
        }
    }
    Ok(())
}
