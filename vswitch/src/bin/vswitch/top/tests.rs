//! Tests of `top`.

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
