//! An "outside world" for egress tests: a namespace joined by a veth pair to the namespace the
//! daemon runs in (both the test's own), with servers on an address of its own, and clients
//! that run inside containers.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use super::bed::Bed;
use super::netns::{in_netns, spawn_in_netns};
use super::process::run;
use super::traffic::{receive_all, send_pseudo_random};

/// The outside namespace's address.
pub const OUTSIDE_IP: &str = "10.251.0.2";
/// Its IPv6 address.
pub const OUTSIDE_IP6: &str = "fd51::2";
/// Where `udp_echo_server` answers.
pub const ECHO_PORT: u16 = 7007;

/// Joins `daemon_ns` (10.251.0.1, fd51::1) and `outside` (`OUTSIDE_IP`, `OUTSIDE_IP6`) with a
/// veth pair, and lets the
/// daemon's namespace open ping sockets as distributions do (a new namespace allows none).
pub fn link_outside(daemon_ns: &str, outside: &str) {
    let veth = [
        "link", "add", "veg0", "netns", daemon_ns, "type", "veth", "peer", "name", "veg1", "netns",
        outside,
    ];
    run("ip", &veth);
    for (ns, dev, v4, v6) in [
        (daemon_ns, "veg0", "10.251.0.1/24", "fd51::1/64"),
        (outside, "veg1", "10.251.0.2/24", "fd51::2/64"),
    ] {
        run("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
        run("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }
    let ping_groups = "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range";
    assert!(in_netns(daemon_ns, &["sh", "-c", ping_groups]));
}

/// A daemon in a namespace of its own and an outside namespace linked to it
/// (`link_outside`); returns the bed, the daemon's namespace and the outside one.
pub fn bed_with_outside() -> (Bed, String, String) {
    let (mut bed, daemon_ns) = Bed::start_in_own_netns();
    let outside = bed.netns("outside");
    link_outside(&daemon_ns, &outside);
    (bed, daemon_ns, outside)
}

/// Answers UDP datagrams at `OUTSIDE_IP:ECHO_PORT` in `netns` until none comes for 5 s;
/// returns how many it answered.
pub fn udp_echo_server(netns: &str) -> std::thread::JoinHandle<usize> {
    let addr: SocketAddr = format!("{OUTSIDE_IP}:{ECHO_PORT}").parse().unwrap();
    let server = udp_echo_server_on(netns, addr);
    std::thread::spawn(move || server.join().unwrap().len())
}

/// Answers UDP datagrams at `addr` in `netns` until none comes for 5 s; returns who sent each.
pub fn udp_echo_server_on(
    netns: &str,
    addr: SocketAddr,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(netns, move || {
        let socket = UdpSocket::bind(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let mut senders = Vec::new();
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            socket.send_to(&buf[..len], from).unwrap();
            senders.push(from);
        }
        senders
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    server
}

/// Sends `message` over UDP from `netns` to the outside `port`; the answer, or the error the
/// container's kernel reports (WouldBlock: no answer within 2 s, three times).
pub fn udp_ask(
    netns: &str,
    port: u16,
    message: &'static [u8],
) -> Result<Vec<u8>, std::io::ErrorKind> {
    let to = format!("{OUTSIDE_IP}:{port}").parse().unwrap();
    udp_ask_to(netns, to, message).map(|(answer, _)| answer)
}

/// Sends `message` over UDP from `netns` to `to`; the answer and the address it was sent
/// from, or the error the kernel reports (WouldBlock: no answer within 2 s, three times).
pub fn udp_ask_to(
    netns: &str,
    to: SocketAddr,
    message: &'static [u8],
) -> Result<(Vec<u8>, SocketAddr), std::io::ErrorKind> {
    spawn_in_netns(netns, move || {
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
            SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
        };
        let socket = UdpSocket::bind(any).unwrap();
        socket.connect(to).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut last = std::io::ErrorKind::TimedOut;
        for _ in 0..3 {
            if let Err(e) = socket.send(message) {
                last = e.kind();
                continue;
            }
            match socket.recv(&mut buf) {
                Ok(len) => return Ok((buf[..len].to_vec(), socket.local_addr().unwrap())),
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

/// Serves `total` pseudo-random bytes to the first client at `OUTSIDE_IP:port` in `netns`,
/// then closes; returns the digest of what it sent.
pub fn download_server(netns: &str, port: u16, total: usize) -> std::thread::JoinHandle<u64> {
    let addr = SocketAddr::new(OUTSIDE_IP.parse().unwrap(), port);
    download_server_on(netns, addr, total)
}

/// Serves `total` pseudo-random bytes to the first client at `addr` in `netns`, then closes;
/// returns the digest of what it sent.
pub fn download_server_on(
    netns: &str,
    addr: SocketAddr,
    total: usize,
) -> std::thread::JoinHandle<u64> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(netns, move || {
        let listener = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        send_pseudo_random(&mut conn, total)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    server
}

/// Downloads from `OUTSIDE_IP:port` in `netns` until the server closes; (digest, bytes).
pub fn download(netns: &str, port: u16) -> (u64, usize) {
    download_from(netns, SocketAddr::new(OUTSIDE_IP.parse().unwrap(), port))
}

/// Downloads from `addr` in `netns` until the server closes; (digest, bytes).
pub fn download_from(netns: &str, addr: SocketAddr) -> (u64, usize) {
    spawn_in_netns(netns, move || {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        receive_all(&mut conn)
    })
    .join()
    .unwrap()
}

/// Connects from `netns` to `ip:port`; the error kind if refused or unreachable.
pub fn tcp_connect(netns: &str, ip: &'static str, port: u16) -> Result<(), std::io::ErrorKind> {
    spawn_in_netns(netns, move || {
        let addr = SocketAddr::new(ip.parse().unwrap(), port);
        TcpStream::connect_timeout(&addr, Duration::from_secs(20))
            .map(|_| ())
            .map_err(|e| e.kind())
    })
    .join()
    .unwrap()
}
