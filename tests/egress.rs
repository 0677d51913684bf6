//! Egress: containers reach addresses beyond their network through the gateway, on ordinary
//! sockets of the daemon's namespace. The daemon runs in a namespace of the test's own, and the
//! "outside world" is another, joined to it by a veth pair; nothing touches the host's.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{in_netns, run, spawn_in_netns, tcp_transfer, Bed, Digest};

const OUTSIDE_IP: &str = "10.251.0.2";
const ECHO_PORT: u16 = 7007;

/// The daemon in a namespace of its own, and an outside namespace reachable from it.
fn bed_with_outside() -> (Bed, String) {
    let (mut bed, daemon_ns) = Bed::start_in_own_netns();
    let outside = bed.netns("outside");
    run(
        "ip",
        &[
            "link", "add", "veg0", "netns", &daemon_ns, "type", "veth", "peer", "name", "veg1",
            "netns", &outside,
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &daemon_ns,
            "addr",
            "add",
            "10.251.0.1/24",
            "dev",
            "veg0",
        ],
    );
    run("ip", &["-n", &daemon_ns, "link", "set", "veg0", "up"]);
    run(
        "ip",
        &[
            "-n",
            &outside,
            "addr",
            "add",
            "10.251.0.2/24",
            "dev",
            "veg1",
        ],
    );
    run("ip", &["-n", &outside, "link", "set", "veg1", "up"]);
    // As distributions set it (a new namespace allows no ping sockets at all).
    assert!(in_netns(
        &daemon_ns,
        &[
            "sh",
            "-c",
            "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range"
        ]
    ));
    (bed, outside)
}

/// A UDP echo server in `netns`, answering until it has been idle for 5 s.
fn udp_echo_server(netns: &str) -> std::thread::JoinHandle<usize> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(netns, move || {
        let socket = UdpSocket::bind((OUTSIDE_IP, ECHO_PORT)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let mut answered = 0;
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            socket.send_to(&buf[..len], from).unwrap();
            answered += 1;
        }
        answered
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    server
}

/// Sends `message` over UDP from `netns` to the outside port; returns the answer or the error.
fn udp_ask(netns: &str, port: u16, message: &'static [u8]) -> Result<Vec<u8>, std::io::ErrorKind> {
    spawn_in_netns(netns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect((OUTSIDE_IP, port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut last = std::io::ErrorKind::TimedOut;
        // A few tries: the first answer, or the error the container's kernel reports.
        for _ in 0..3 {
            if let Err(e) = socket.send(message) {
                last = e.kind();
                continue;
            }
            match socket.recv(&mut buf) {
                Ok(len) => return Ok(buf[..len].to_vec()),
                Err(e) => last = e.kind(),
            }
            if last == std::io::ErrorKind::ConnectionRefused {
                break;
            }
        }
        Err(last)
    })
    .join()
    .unwrap()
}

#[test]
fn containers_reach_outside_addresses_over_udp_and_ping() {
    let (mut bed, outside) = bed_with_outside();
    let ns = bed.network_with("out", "10.85.4.0/24", &["c"]);
    let server = udp_echo_server(&outside);
    assert_eq!(udp_ask(&ns[0], ECHO_PORT, b"hello"), Ok(b"hello".to_vec()));
    // A closed port is refused, as it would be without the switch in between.
    assert_eq!(
        udp_ask(&ns[0], ECHO_PORT + 2, b"anyone?"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(in_netns(
        &ns[0],
        &["ping", "-c", "2", "-W", "2", OUTSIDE_IP]
    ));
    let egress = &bed.inspect("out")["gateway"]["egress"];
    assert!(egress["sent"].as_u64().unwrap() >= 4, "{egress}");
    assert!(egress["received"].as_u64().unwrap() >= 4, "{egress}");
    assert_eq!(egress["blocked"], 0, "{egress}");
    assert!(server.join().unwrap() >= 1);
}

#[test]
fn an_internal_network_reaches_nothing_outside_and_counts_it() {
    let (mut bed, outside) = bed_with_outside();
    bed.ok(&[
        "network",
        "create",
        "sealed",
        "--subnet",
        "10.85.5.0/24",
        "--internal",
    ]);
    let ns = bed.netns("s");
    bed.ok(&["connect", "sealed", &ns]);
    let server = udp_echo_server(&outside);
    assert_eq!(
        udp_ask(&ns, ECHO_PORT, b"hello"),
        Err(std::io::ErrorKind::WouldBlock)
    );
    assert!(!in_netns(&ns, &["ping", "-c", "1", "-W", "1", OUTSIDE_IP]));
    // The gateway itself still answers.
    assert!(in_netns(&ns, &["ping", "-c", "1", "-W", "2", "10.85.5.1"]));
    let view = bed.inspect("sealed");
    assert_eq!(view["internal"], true);
    let egress = &view["gateway"]["egress"];
    assert!(egress["blocked"].as_u64().unwrap() >= 4, "{egress}");
    assert_eq!(egress["sent"], 0, "{egress}");
    assert_eq!(server.join().unwrap(), 0);
}

/// Serves `total` pseudo-random bytes to the first client at OUTSIDE_IP:port in `netns`, then
/// closes; returns the digest of what it sent.
fn download_server(netns: &str, port: u16, total: usize) -> std::thread::JoinHandle<u64> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(netns, move || {
        let listener = std::net::TcpListener::bind((OUTSIDE_IP, port)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut digest = Digest::new();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            for word in chunk.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            let n = chunk.len().min(total - sent);
            std::io::Write::write_all(&mut conn, &chunk[..n]).unwrap();
            digest.update(&chunk[..n]);
            sent += n;
        }
        digest.finish()
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    server
}

/// Connects from `netns` to the outside port; the error kind if refused or unreachable.
fn tcp_connect(netns: &str, ip: &'static str, port: u16) -> Result<(), std::io::ErrorKind> {
    spawn_in_netns(netns, move || {
        let addr = std::net::SocketAddr::new(ip.parse().unwrap(), port);
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(20))
            .map(|_| ())
            .map_err(|e| e.kind())
    })
    .join()
    .unwrap()
}

#[test]
fn containers_download_and_upload_over_tcp_and_hear_refusals_at_once() {
    let (mut bed, outside) = bed_with_outside();
    let ns = bed.network_with("web", "10.85.6.0/24", &["c"]);
    let total = 100 << 20;
    // Download: 100 MB from the outside, intact.
    let server = download_server(&outside, 8080, total);
    let got = spawn_in_netns(&ns[0], move || {
        let addr = std::net::SocketAddr::new(OUTSIDE_IP.parse().unwrap(), 8080);
        let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut digest = Digest::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        loop {
            let n = std::io::Read::read(&mut conn, &mut buf).expect("receive within 30 s");
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            got += n;
        }
        (digest.finish(), got)
    })
    .join()
    .unwrap();
    assert_eq!(got, (server.join().unwrap(), total));
    // Upload: 100 MB to the outside, which reads to the container's FIN (a half-close).
    let (sent, received, bytes, _) = tcp_transfer(&ns[0], &outside, OUTSIDE_IP, total);
    assert_eq!((bytes, received), (total, sent));
    // A closed port refuses at once; an address nobody holds is unreachable.
    let start = std::time::Instant::now();
    assert_eq!(
        tcp_connect(&ns[0], OUTSIDE_IP, 8099),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        tcp_connect(&ns[0], "10.251.0.99", 8080),
        Err(std::io::ErrorKind::HostUnreachable)
    );
    let egress = &bed.inspect("web")["gateway"]["egress"];
    assert!(egress["flows"].as_u64().unwrap() >= 2, "{egress}");
}
