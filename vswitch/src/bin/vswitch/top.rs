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

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn sample(port: u32, endpoint: &str, counters: [u64; 4], drops: &[(&str, u64)]) -> PortSample {
        PortSample {
            port,
            network: "net0".to_string(),
            endpoint: endpoint.to_string(),
            rx_packets: counters[0],
            rx_bytes: counters[1],
            tx_packets: counters[2],
            tx_bytes: counters[3],
            drops_by_reason: drops.iter().map(|&(r, n)| (r.to_string(), n)).collect(),
        }
    }

    fn port_rates(port: u32, endpoint: &str, rx_bps: f64, tx_bps: f64) -> PortRates {
        PortRates {
            port,
            network: "net0".to_string(),
            endpoint: endpoint.to_string(),
            rx_pps: rx_bps / 8000.0,
            rx_bps,
            tx_pps: tx_bps / 8000.0,
            tx_bps,
            drops_ps: 0.0,
            drops_by_reason: Vec::new(),
        }
    }

    /// Renders `draw` into a `width`x`height` test terminal and returns its lines.
    fn render(
        width: u16,
        height: u16,
        rates: &[PortRates],
        sort: SortBy,
        reverse: bool,
        error: Option<&str>,
    ) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal
            .draw(|f| draw(f, rates, sort, reverse, error))
            .expect("draw");
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect()
            })
            .collect()
    }

    fn row_of(lines: &[String], needle: &str) -> usize {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", lines.join("\n")))
    }

    #[test]
    fn rates_are_exact_over_two_seconds() {
        let before = [sample(1, "web", [100, 10_000, 50, 5_000], &[])];
        let now = [sample(1, "web", [300, 30_000, 150, 25_000], &[])];
        let r = rates(&before, &now, Duration::from_secs(2));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].port, 1);
        assert_eq!(r[0].endpoint, "web");
        assert_eq!(r[0].rx_pps, 100.0);
        assert_eq!(r[0].rx_bps, 80_000.0);
        assert_eq!(r[0].tx_pps, 50.0);
        assert_eq!(r[0].tx_bps, 80_000.0);
        assert_eq!(r[0].drops_ps, 0.0);
        assert!(
            r[0].drops_ps.is_sign_positive(),
            "-0.0 would print as \"-0\""
        );
        assert!(r[0].drops_by_reason.is_empty());
    }

    #[test]
    fn new_port_gets_zero_rates() {
        let before = [sample(1, "web", [1, 1, 1, 1], &[])];
        let now = [
            sample(1, "web", [1, 1, 1, 1], &[]),
            sample(2, "db", [1_000, 1_000_000, 5, 500], &[("over_mtu", 7)]),
        ];
        let r = rates(&before, &now, Duration::from_secs(1));
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], zero_rates(&now[1]));
        assert_eq!(r[1].rx_bps, 0.0);
        assert_eq!(r[1].drops_ps, 0.0);
    }

    #[test]
    fn counter_reset_gives_zeros_not_negative_or_huge() {
        let before = [sample(1, "web", [1_000, 1_000_000, 1_000, 1_000_000], &[])];
        // rx went backwards, tx forwards: the port was replaced, so tx isn't trusted either.
        let now = [sample(1, "web", [10, 1_000, 2_000, 2_000_000], &[])];
        let r = rates(&before, &now, Duration::from_secs(1));
        assert_eq!(r[0], zero_rates(&now[0]));

        // A drop counter that went backwards, or vanished, means a reset too.
        let before = [sample(1, "web", [0, 0, 0, 0], &[("over_mtu", 9)])];
        let now = [sample(1, "web", [10, 10, 10, 10], &[("over_mtu", 2)])];
        let r = rates(&before, &now, Duration::from_secs(1));
        assert_eq!(r[0].rx_pps, 0.0);
        let now = [sample(1, "web", [10, 10, 10, 10], &[])];
        let r = rates(&before, &now, Duration::from_secs(1));
        assert_eq!(r[0].rx_pps, 0.0);

        // Same number, other endpoint: replaced.
        let before = [sample(1, "web", [0, 0, 0, 0], &[])];
        let now = [sample(1, "db", [10, 10, 10, 10], &[])];
        let r = rates(&before, &now, Duration::from_secs(1));
        assert_eq!(r[0].rx_pps, 0.0);
    }

    #[test]
    fn zero_elapsed_gives_zeros() {
        let before = [sample(1, "web", [0, 0, 0, 0], &[])];
        let now = [sample(1, "web", [10, 10, 10, 10], &[])];
        let r = rates(&before, &now, Duration::ZERO);
        assert_eq!(r[0], zero_rates(&now[0]));
    }

    #[test]
    fn drops_by_reason_sorted_highest_first() {
        let before = [sample(
            1,
            "web",
            [0, 0, 0, 0],
            &[("bad_vlan", 4), ("no_route", 10), ("over_mtu", 1)],
        )];
        let now = [sample(
            1,
            "web",
            [0, 0, 0, 0],
            &[
                ("bad_vlan", 4),  // unchanged: left out
                ("malformed", 2), // first seen: counted from 0
                ("no_route", 12),
                ("over_mtu", 7),
            ],
        )];
        let r = rates(&before, &now, Duration::from_secs(2));
        assert_eq!(
            r[0].drops_by_reason,
            vec![
                ("over_mtu".to_string(), 3.0),
                ("malformed".to_string(), 1.0),
                ("no_route".to_string(), 1.0),
            ]
        );
        assert_eq!(r[0].drops_ps, 5.0);
    }

    #[test]
    fn human_formats_with_si_prefixes() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(-0.0), "0");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1_000.0), "1.0k");
        assert_eq!(human(1_234_567.0), "1.2M");
        assert_eq!(human(8.4e9), "8.4G");
        assert_eq!(human(0.5), "0.5");
        assert_eq!(human(999.7), "1.0k");
        assert_eq!(human(999_960.0), "1.0M");
        assert_eq!(human(f64::INFINITY), ">999E");
        assert_eq!(human(f64::NAN), "-");
    }

    #[test]
    fn draw_shows_header_ports_rates_and_marker() {
        let rates = [
            port_rates(1, "web", 8.4e9, 1_000.0),
            port_rates(2, "db", 1_200.0, 0.0),
        ];
        let lines = render(80, 10, &rates, SortBy::RxBits, false, None);
        let screen = lines.join("\n");
        for word in [
            "vswitch top",
            "q quits, s sorts, r reverses",
            "PORT",
            "ENDPOINT",
        ] {
            assert!(screen.contains(word), "{word:?} missing:\n{screen}");
        }
        assert!(screen.contains("RX bit/s▼"), "no sort marker:\n{screen}");
        assert!(screen.contains("8.4G"), "no formatted rate:\n{screen}");
        assert!(screen.contains("2 ports"), "no footer:\n{screen}");
        assert!(!screen.contains("fetch failed"));
        assert!(!screen.contains("-0"), "negative zero shown:\n{screen}");
        // Busiest receiver first.
        assert!(row_of(&lines, "web") < row_of(&lines, "db"), "{screen}");
    }

    #[test]
    fn draw_reverse_puts_busiest_last() {
        let rates = [
            port_rates(1, "web", 8.4e9, 0.0),
            port_rates(2, "db", 1_200.0, 0.0),
        ];
        let lines = render(80, 10, &rates, SortBy::RxBits, true, None);
        assert!(row_of(&lines, "db") < row_of(&lines, "web"));
        assert!(lines.join("\n").contains("RX bit/s▲"));
    }

    #[test]
    fn draw_sorts_by_port_ascending_and_by_tx() {
        let rates = [
            port_rates(7, "web", 1.0, 10.0),
            port_rates(3, "db", 2.0, 20.0),
        ];
        let lines = render(80, 10, &rates, SortBy::Port, false, None);
        assert!(row_of(&lines, "db") < row_of(&lines, "web"));
        let lines = render(80, 10, &rates, SortBy::TxBits, true, None);
        assert!(row_of(&lines, "web") < row_of(&lines, "db"));

        // Equal rates keep port order, reversed or not.
        let rates = [
            port_rates(9, "web", 5.0, 5.0),
            port_rates(4, "db", 5.0, 5.0),
        ];
        for reverse in [false, true] {
            let lines = render(80, 10, &rates, SortBy::RxBits, reverse, None);
            assert!(row_of(&lines, "db") < row_of(&lines, "web"));
        }
    }

    #[test]
    fn draw_shows_error_and_keeps_data() {
        let rates = [port_rates(1, "web", 8.4e9, 0.0)];
        let lines = render(
            80,
            10,
            &rates,
            SortBy::RxBits,
            false,
            Some("connection refused\n\x1b[2J"),
        );
        let screen = lines.join("\n");
        assert!(
            screen.contains("fetch failed: connection refused"),
            "{screen}"
        );
        assert!(screen.contains("web"));
        assert!(
            !screen.contains('\x1b'),
            "control character reached the screen"
        );
    }

    #[test]
    fn draw_survives_tiny_and_empty_screens() {
        let rates = [port_rates(1, "web", 8.4e9, 0.0)];
        render(1, 1, &rates, SortBy::Drops, false, Some("err"));
        let lines = render(80, 5, &[], SortBy::Endpoint, false, None);
        assert!(lines.join("\n").contains("0 ports"));
    }

    #[test]
    fn sort_cycles_through_every_column() {
        let mut sort = SortBy::Port;
        let mut seen = vec![sort];
        for _ in 0..6 {
            sort = sort.next();
            seen.push(sort);
        }
        assert_eq!(sort.next(), SortBy::Port);
        seen.sort_by_key(|s| s.column());
        seen.dedup();
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn view_keeps_last_good_data_on_error_and_handles_keys() {
        let t0 = Instant::now();
        let mut view = View::new();
        view.handle_fetch(t0, Ok(vec![sample(1, "web", [0, 0, 0, 0], &[])]));
        assert_eq!(view.rates[0].rx_pps, 0.0);
        view.handle_fetch(t0 + Duration::from_secs(1), Err(anyhow::anyhow!("down")));
        assert_eq!(view.error.as_deref(), Some("down"));
        assert_eq!(view.rates.len(), 1);
        // The next success measures over the whole gap since the last good sample.
        view.handle_fetch(
            t0 + Duration::from_secs(2),
            Ok(vec![sample(1, "web", [20, 0, 0, 0], &[])]),
        );
        assert_eq!(view.error, None);
        assert_eq!(view.rates[0].rx_pps, 10.0);

        let press = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert!(!view.handle_key(press(KeyCode::Char('s'))));
        assert_eq!(view.sort, SortBy::TxBits);
        assert!(!view.handle_key(press(KeyCode::Char('r'))));
        assert!(view.reverse);
        assert!(view.handle_key(press(KeyCode::Char('q'))));
        assert!(view.handle_key(press(KeyCode::Esc)));
        assert!(view.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!view.handle_key(press(KeyCode::Char('c'))));
    }
}

/// `vswitch top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

/// Runs the live view until `q`: each refresh asks the daemon for its ports.
pub async fn run_view(client: vswitch::api::client::Client, args: TopArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let runtime = tokio::runtime::Handle::current();
    // The view blocks on the terminal; each refresh asks the daemon from that thread.
    tokio::task::spawn_blocking(move || {
        run(interval, || {
            runtime.block_on(async {
                let ports = tokio::time::timeout(Duration::from_secs(2), client.ports())
                    .await
                    .map_err(|_| anyhow::anyhow!("the daemon did not answer within 2 s"))??;
                Ok(ports.into_iter().map(PortSample::from).collect())
            })
        })
    })
    .await?
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
