//! `vswitch top`: a live terminal view of per-port traffic rates, like `htop` for switch ports.
//!
//! The rate arithmetic ([`rates`]) and the drawing ([`draw`]) are pure: they take samples, a
//! duration and a frame, and never touch the terminal or the clock, so they are tested without a
//! TTY. Only [`run`] does I/O. Guarantees: a rate is never negative, infinite or NaN (a counter that
//! went backwards, or a zero interval, gives 0); names from the daemon are shown with control
//! characters replaced, so a hostile endpoint name cannot drive the terminal; the terminal is
//! restored when [`run`] returns, fails or panics.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

/// One port's counters at one moment, as the daemon's `GET /v1/ports` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSample {
    /// Port number, unique among the ports of one sample.
    pub port: u32,
    /// Network the port is attached to.
    pub network: String,
    /// Endpoint (container) on the port.
    pub endpoint: String,
    /// Frames received from the endpoint, cumulative.
    pub rx_packets: u64,
    /// Bytes received from the endpoint, cumulative.
    pub rx_bytes: u64,
    /// Frames sent to the endpoint, cumulative.
    pub tx_packets: u64,
    /// Bytes sent to the endpoint, cumulative.
    pub tx_bytes: u64,
    /// Dropped frames by reason name (e.g. "over_mtu"), cumulative.
    pub drops_by_reason: BTreeMap<String, u64>,
}

/// Per-second rates of one port between two samples.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRates {
    /// Port number.
    pub port: u32,
    /// Network the port is attached to.
    pub network: String,
    /// Endpoint (container) on the port.
    pub endpoint: String,
    /// Frames received per second.
    pub rx_pps: f64,
    /// Bits received per second.
    pub rx_bps: f64,
    /// Frames sent per second.
    pub tx_pps: f64,
    /// Bits sent per second.
    pub tx_bps: f64,
    /// Dropped frames per second, all reasons together.
    pub drops_ps: f64,
    /// The reasons with a non-zero rate, highest first, e.g. `[("over_mtu", 3.0)]`.
    pub drops_by_reason: Vec<(String, f64)>,
}

/// Rates from two samplings `elapsed` apart.
///
/// Ports are matched by `port` number and come out in the order of `now`. A port only in `now`
/// (just connected) gets zero rates, because its counters started before we first saw it. A port
/// whose endpoint changed, or any of whose counters went backwards, was replaced between the
/// samples: it gets zero rates too, never a negative or huge one. A zero `elapsed` gives zeros.
pub fn rates(before: &[PortSample], now: &[PortSample], elapsed: Duration) -> Vec<PortRates> {
    let before: HashMap<u32, &PortSample> = before.iter().map(|s| (s.port, s)).collect();
    let secs = elapsed.as_secs_f64();
    now.iter()
        .map(|cur| match before.get(&cur.port) {
            Some(prev) if secs > 0.0 => port_rates(prev, cur, secs),
            _ => zero_rates(cur),
        })
        .collect()
}

/// Rates of one port seen in both samples, `secs` (> 0) apart.
fn port_rates(prev: &PortSample, cur: &PortSample, secs: f64) -> PortRates {
    // A reason missing from a sample counts as 0: the daemon may list only reasons seen so far.
    let mut drop_deltas = Vec::new();
    let mut went_back = prev
        .drops_by_reason
        .iter()
        .any(|(reason, _)| !cur.drops_by_reason.contains_key(reason));
    for (reason, &count) in &cur.drops_by_reason {
        let old = prev.drops_by_reason.get(reason).copied().unwrap_or(0);
        match count.checked_sub(old) {
            Some(delta) => drop_deltas.push((reason.clone(), delta)),
            None => went_back = true,
        }
    }
    let deltas = [
        cur.rx_packets.checked_sub(prev.rx_packets),
        cur.rx_bytes.checked_sub(prev.rx_bytes),
        cur.tx_packets.checked_sub(prev.tx_packets),
        cur.tx_bytes.checked_sub(prev.tx_bytes),
    ];
    // Any backwards counter means the port number was reused; the other counters then belong to a
    // different port too, so a rate from any of them would be wrong.
    let [Some(rx_p), Some(rx_b), Some(tx_p), Some(tx_b)] = deltas else {
        return zero_rates(cur);
    };
    if went_back || prev.endpoint != cur.endpoint {
        return zero_rates(cur);
    }
    let per_sec = |delta: u64| delta as f64 / secs;
    let mut drops_by_reason: Vec<(String, f64)> = drop_deltas
        .into_iter()
        .filter(|&(_, delta)| delta > 0)
        .map(|(reason, delta)| (reason, per_sec(delta)))
        .collect();
    drops_by_reason.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    PortRates {
        port: cur.port,
        network: cur.network.clone(),
        endpoint: cur.endpoint.clone(),
        rx_pps: per_sec(rx_p),
        rx_bps: per_sec(rx_b) * 8.0,
        tx_pps: per_sec(tx_p),
        tx_bps: per_sec(tx_b) * 8.0,
        // A fold from +0.0: `sum()` of no floats is -0.0, which would print as "-0".
        drops_ps: drops_by_reason.iter().fold(0.0, |acc, (_, r)| acc + r),
        drops_by_reason,
    }
}

/// A port with all rates zero.
fn zero_rates(cur: &PortSample) -> PortRates {
    PortRates {
        port: cur.port,
        network: cur.network.clone(),
        endpoint: cur.endpoint.clone(),
        rx_pps: 0.0,
        rx_bps: 0.0,
        tx_pps: 0.0,
        tx_bps: 0.0,
        drops_ps: 0.0,
        drops_by_reason: Vec::new(),
    }
}

/// Column to sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Port number, ascending by default.
    Port,
    /// Endpoint name, ascending by default.
    Endpoint,
    /// Received bits per second, descending by default.
    RxBits,
    /// Sent bits per second, descending by default.
    TxBits,
    /// Received frames per second, descending by default.
    RxPackets,
    /// Sent frames per second, descending by default.
    TxPackets,
    /// Dropped frames per second, descending by default.
    Drops,
}

impl SortBy {
    /// The column after this one, in the order the `s` key cycles through.
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Port => SortBy::Endpoint,
            SortBy::Endpoint => SortBy::RxBits,
            SortBy::RxBits => SortBy::TxBits,
            SortBy::TxBits => SortBy::RxPackets,
            SortBy::RxPackets => SortBy::TxPackets,
            SortBy::TxPackets => SortBy::Drops,
            SortBy::Drops => SortBy::Port,
        }
    }

    /// The column's heading in the table, e.g. "RX bit/s".
    pub fn label(self) -> &'static str {
        COLUMNS[self.column()]
    }

    /// Index of this column in [`COLUMNS`].
    fn column(self) -> usize {
        match self {
            SortBy::Port => 0,
            SortBy::Endpoint => 2,
            SortBy::RxPackets => 3,
            SortBy::RxBits => 4,
            SortBy::TxPackets => 5,
            SortBy::TxBits => 6,
            SortBy::Drops => 7,
        }
    }

    /// Whether the natural order is descending (busiest first), as for every rate column.
    fn descending(self) -> bool {
        !matches!(self, SortBy::Port | SortBy::Endpoint)
    }

    /// Order of two rows by this column, in its natural direction, or flipped if `reverse`.
    fn compare(self, a: &PortRates, b: &PortRates, reverse: bool) -> Ordering {
        let key = |r: &PortRates| match self {
            SortBy::Port | SortBy::Endpoint => 0.0,
            SortBy::RxBits => r.rx_bps,
            SortBy::TxBits => r.tx_bps,
            SortBy::RxPackets => r.rx_pps,
            SortBy::TxPackets => r.tx_pps,
            SortBy::Drops => r.drops_ps,
        };
        let by_column = match self {
            SortBy::Port => a.port.cmp(&b.port),
            SortBy::Endpoint => a.endpoint.cmp(&b.endpoint),
            _ => key(b).total_cmp(&key(a)),
        };
        let by_column = if reverse {
            by_column.reverse()
        } else {
            by_column
        };
        // The port number, always ascending, breaks ties so rows with equal rates don't swap
        // places between frames.
        by_column.then(a.port.cmp(&b.port))
    }
}

/// Table headings, in display order.
const COLUMNS: [&str; 9] = [
    "PORT", "NETWORK", "ENDPOINT", "RX pkt/s", "RX bit/s", "TX pkt/s", "TX bit/s", "DROPS/s",
    "REASONS",
];

/// Formats a rate with an SI prefix and one decimal above 1000: 0 → "0", 999 → "999",
/// 1_234_567 → "1.2M", 8.4e9 → "8.4G". Fractions below 10 keep one decimal ("0.5").
fn human(value: f64) -> String {
    const PREFIXES: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    if value.is_nan() {
        return "-".to_string();
    }
    // Also catches -0.0, which `{:.0}` would print as "-0".
    if value == 0.0 {
        return "0".to_string();
    }
    if value < 0.0 {
        return format!("-{}", human(-value));
    }
    // 999.5 and up would print as "1000"; show it as "1.0k" instead.
    if value < 999.5 {
        return if value < 9.95 && value.fract() != 0.0 {
            format!("{value:.1}")
        } else {
            format!("{value:.0}")
        };
    }
    let mut scaled = value;
    for prefix in PREFIXES {
        scaled /= 1000.0;
        // Same rounding guard as above, one decimal: 999.96k is "1.0M", not "1000.0k".
        if scaled < 999.95 {
            return format!("{scaled:.1}{prefix}");
        }
    }
    // Beyond exa (or infinite): not a real rate, but don't print a 20-digit number.
    ">999E".to_string()
}

/// Replaces control characters so names from the daemon can't move the cursor or recolour the
/// terminal, and can't break a one-line table cell.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The drop reasons of one port as "over_mtu 3, no_route 1".
fn reasons_text(reasons: &[(String, f64)]) -> String {
    reasons
        .iter()
        .map(|(name, rate)| format!("{} {}", printable(name), human(*rate)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Draws one frame of the view: a header line (title, sort column, "q quits, s sorts, r
/// reverses"), a table of the ports sorted by `sort` (descending for rate columns, ascending for
/// port and endpoint; `reverse` flips), a footer line with totals, and an error line when
/// `error` is set (the table keeps showing the last good data).
pub fn draw(
    frame: &mut Frame,
    rates: &[PortRates],
    sort: SortBy,
    reverse: bool,
    error: Option<&str>,
) {
    let error_height = u16::from(error.is_some());
    let [header_area, table_area, footer_area, error_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(error_height),
    ])
    .areas(frame.area());

    // Descending shows ▼, whichever way it came about, so the marker always tells the truth.
    let descending = sort.descending() != reverse;
    let marker = if descending { "▼" } else { "▲" };
    let header = Line::from(vec![
        Span::styled("vswitch top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  sorted by {} {marker}  ", sort.label())),
        Span::styled(
            "q quits, s sorts, r reverses",
            Style::new().fg(Color::DarkGray),
        ),
    ]);
    frame.render_widget(Paragraph::new(header), header_area);

    let mut sorted: Vec<&PortRates> = rates.iter().collect();
    sorted.sort_by(|a, b| sort.compare(a, b, reverse));

    let headings = COLUMNS.iter().enumerate().map(|(i, name)| {
        let text = if i == sort.column() {
            format!("{name}{marker}")
        } else {
            (*name).to_string()
        };
        let line = Line::from(text);
        if (3..8).contains(&i) {
            Cell::from(line.right_aligned())
        } else {
            Cell::from(line)
        }
    });
    let header_row = Row::new(headings).style(
        Style::new()
            .add_modifier(Modifier::BOLD)
            .add_modifier(Modifier::REVERSED),
    );
    let number = |v: f64| Cell::from(Line::from(human(v)).right_aligned());
    let rows = sorted.iter().map(|r| {
        let drops_style = if r.drops_ps > 0.0 {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        Row::new(vec![
            Cell::from(Line::from(r.port.to_string()).right_aligned()),
            Cell::from(printable(&r.network)),
            Cell::from(printable(&r.endpoint)),
            number(r.rx_pps),
            number(r.rx_bps),
            number(r.tx_pps),
            number(r.tx_bps),
            number(r.drops_ps).style(drops_style),
            Cell::from(reasons_text(&r.drops_by_reason)).style(drops_style),
        ])
    });
    // Rate columns fit "999.9k▼"; names share what is left, the reasons get the most.
    let widths = [
        Constraint::Length(5),
        Constraint::Fill(1),
        Constraint::Fill(2),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Fill(2),
    ];
    let table = Table::new(rows, widths).header(header_row);
    frame.render_widget(table, table_area);

    let total = |f: fn(&PortRates) -> f64| rates.iter().fold(0.0, |acc, r| acc + f(r));
    let footer = format!(
        "{} ports  total RX {} pkt/s {}bit/s  TX {} pkt/s {}bit/s  drops {}/s",
        rates.len(),
        human(total(|r| r.rx_pps)),
        human(total(|r| r.rx_bps)),
        human(total(|r| r.tx_pps)),
        human(total(|r| r.tx_bps)),
        human(total(|r| r.drops_ps)),
    );
    frame.render_widget(
        Paragraph::new(footer).style(Style::new().add_modifier(Modifier::BOLD)),
        footer_area,
    );

    if let Some(error) = error {
        let line = format!(
            "fetch failed: {} (showing last good data)",
            printable(error)
        );
        frame.render_widget(
            Paragraph::new(line).style(Style::new().fg(Color::Red)),
            error_area,
        );
    }
}

/// Shortest refresh interval [`run`] uses, so a zero interval doesn't spin on the daemon.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What the view shows between frames; separate from the terminal so it is tested without one.
struct View {
    /// The last good sample and when it was taken.
    last: Option<(Instant, Vec<PortSample>)>,
    /// Rates between the last two good samples.
    rates: Vec<PortRates>,
    /// The last fetch's error, if it failed.
    error: Option<String>,
    /// Column to sort by.
    sort: SortBy,
    /// Whether the sort order is flipped.
    reverse: bool,
}

impl View {
    /// An empty view, busiest receivers first.
    fn new() -> View {
        View {
            last: None,
            rates: Vec::new(),
            error: None,
            sort: SortBy::RxBits,
            reverse: false,
        }
    }

    /// Takes the result of a fetch finished at `now`. A failure keeps the last good sample, so the
    /// next success gets rates over the whole gap.
    fn handle_fetch(&mut self, now: Instant, result: anyhow::Result<Vec<PortSample>>) {
        match result {
            Ok(sample) => {
                self.rates = match &self.last {
                    Some((then, before)) => rates(before, &sample, now.duration_since(*then)),
                    // The first sample only names the ports; rates need a second one.
                    None => rates(&[], &sample, Duration::ZERO),
                };
                self.last = Some((now, sample));
                self.error = None;
            }
            // `{:#}` puts the whole context chain on one line.
            Err(err) => self.error = Some(format!("{err:#}")),
        }
    }

    /// Handles a key; returns true when it asks to quit.
    fn handle_key(&mut self, key: KeyEvent) -> bool {
        // Release and repeat events (on terminals that report them) would act twice.
        if key.kind != KeyEventKind::Press {
            return false;
        }
        match key.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => return true,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return true,
            KeyCode::Char('s' | 'S') => self.sort = self.sort.next(),
            KeyCode::Char('r' | 'R') => self.reverse = !self.reverse,
            _ => {}
        }
        false
    }

    /// Draws the view into `frame`.
    fn draw(&self, frame: &mut Frame) {
        draw(
            frame,
            &self.rates,
            self.sort,
            self.reverse,
            self.error.as_deref(),
        );
    }
}

/// Leaves raw mode and the alternate screen when dropped, so an error return restores the
/// terminal too (`ratatui::try_init`'s panic hook covers panics).
struct RestoreGuard;

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the live view until `q`, Esc or Ctrl-C is pressed: calls `fetch` every `interval` (the
/// first time at once, never more often than every 100 ms), computes rates from consecutive
/// samples and redraws; `s` cycles the sort column, `r` reverses. `fetch` errors are shown, not
/// fatal. The terminal is restored on exit, also on error or panic.
pub fn run(
    interval: Duration,
    mut fetch: impl FnMut() -> anyhow::Result<Vec<PortSample>>,
) -> anyhow::Result<()> {
    let interval = interval.max(MIN_INTERVAL);
    // Built before init: `try_init` can fail after entering raw mode, and must not leave it on.
    let _guard = RestoreGuard;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal for `top`")?;
    let mut view = View::new();
    let mut next_fetch = Instant::now();
    loop {
        if Instant::now() >= next_fetch {
            let result = fetch();
            let done = Instant::now();
            view.handle_fetch(done, result);
            next_fetch += interval;
            // After a fetch slower than the interval, wait a full interval instead of firing a
            // burst of catch-up fetches.
            if next_fetch <= done {
                next_fetch = done + interval;
            }
        }
        terminal
            .draw(|frame| view.draw(frame))
            .context("cannot draw to the terminal")?;
        // Waiting for a key only until the next refresh keeps the rates live while idle.
        let timeout = next_fetch.saturating_duration_since(Instant::now());
        if event::poll(timeout).context("cannot read terminal events")? {
            // Resize and other events need nothing but the redraw at the top of the loop.
            if let Event::Key(key) = event::read().context("cannot read terminal events")? {
                if view.handle_key(key) {
                    return Ok(());
                }
            }
        }
    }
}

/// `vswitch top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Print plain tables, one per refresh, instead of the live view (as `top -b`); implied
    /// when standard output is not a terminal.
    #[arg(short = 'b', long)]
    batch: bool,
    /// Stop after this many tables (batch mode) [default: until interrupted].
    #[arg(short = 'n', long)]
    iterations: Option<u64>,
    /// Only the ports of this network.
    #[arg(long)]
    network: Option<String>,
}

/// Runs the live view until `q`: each refresh asks the daemon for its ports.
pub async fn run_view(client: vswitch::api::client::Client, args: TopArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let runtime = tokio::runtime::Handle::current();
    let batch = args.batch || !std::io::stdout().is_terminal();
    let network = args.network;
    // The view blocks on the terminal; each refresh asks the daemon from that thread.
    tokio::task::spawn_blocking(move || {
        let fetch = || {
            runtime.block_on(async {
                let ports = tokio::time::timeout(Duration::from_secs(2), client.ports())
                    .await
                    .map_err(|_| anyhow::anyhow!("the daemon did not answer within 2 s"))??;
                Ok(ports
                    .into_iter()
                    .filter(|p| network.as_ref().is_none_or(|n| p.network == *n))
                    .map(PortSample::from)
                    .collect())
            })
        };
        if batch {
            run_batch(interval, args.iterations, fetch)
        } else {
            run(interval, fetch)
        }
    })
    .await?
}

/// Batch mode: a plain table of the rates per port every `interval`, `iterations` times (or
/// until interrupted or the reader goes, as `top -b | head` does), ports in order.
fn run_batch(
    interval: Duration,
    iterations: Option<u64>,
    mut fetch: impl FnMut() -> anyhow::Result<Vec<PortSample>>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let interval = interval.max(MIN_INTERVAL);
    let mut before = fetch()?;
    let mut taken = Instant::now();
    let mut printed = 0;
    while iterations.is_none_or(|n| printed < n) {
        std::thread::sleep(interval);
        let now = fetch()?;
        let elapsed = taken.elapsed();
        taken = Instant::now();
        let mut rows = rates(&before, &now, elapsed);
        rows.sort_by_key(|r| r.port);
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.port.to_string(),
                    r.network.clone(),
                    printable(&r.endpoint),
                    human(r.rx_pps),
                    human(r.rx_bps),
                    human(r.tx_pps),
                    human(r.tx_bps),
                    human(r.drops_ps),
                    reasons_text(&r.drops_by_reason),
                ]
            })
            .collect();
        let text = format!("{}\n", crate::output::table(&COLUMNS, &rows));
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // The reader closed the pipe: done.
            return Ok(());
        }
        printed += 1;
        before = now;
    }
    Ok(())
}

impl From<vswitch::control::PortInfo> for PortSample {
    fn from(p: vswitch::control::PortInfo) -> PortSample {
        PortSample {
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
}

#[cfg(test)]
mod tests;
