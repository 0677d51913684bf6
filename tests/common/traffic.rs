//! Traffic between namespaces: ping (reachability and round-trip time) and a TCP transfer
//! whose bytes are compared end to end with a digest.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{in_netns, spawn_in_netns};

/// Bounded ping: `count` echoes, 2 s deadline each.
pub fn ping(from: &str, to: &str, count: u32) -> bool {
    in_netns(
        from,
        &["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", to],
    )
}

/// Round-trip time from `ping -q` (avg, milliseconds).
pub fn ping_rtt_ms(from: &str, to: &str, count: u32) -> f64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            from,
            "ping",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "-W",
            "2",
            to,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or_else(|| panic!("no rtt in {text}"));
    stats
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .split('/')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// FNV-1a over a stream of 64-bit words, to compare what was sent with what arrived. Streams
/// are fed in multiples of 8 bytes (the transfer sizes are), whatever the read sizes.
#[derive(Clone)]
pub struct Digest {
    hash: u64,
    pending: Vec<u8>,
}

impl Digest {
    pub fn new() -> Digest {
        Digest {
            hash: 0xcbf2_9ce4_8422_2325,
            pending: Vec::new(),
        }
    }
    pub fn update(&mut self, mut bytes: &[u8]) {
        if !self.pending.is_empty() {
            let take = (8 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == 8 {
                let word = std::mem::take(&mut self.pending);
                self.word(&word);
            }
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.word(word);
        }
        self.pending.extend_from_slice(words.remainder());
    }
    fn word(&mut self, word: &[u8]) {
        self.hash ^= u64::from_le_bytes(word.try_into().unwrap());
        self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
    }
    pub fn finish(&self) -> u64 {
        assert!(
            self.pending.is_empty(),
            "stream length is not a multiple of 8"
        );
        self.hash
    }
}

/// A TCP connection from `from` to `to_ip:port` (listening in `to`): `send` runs on the
/// connected stream in `from` (its write side is shut afterwards); the receiver digests all
/// that arrives. Joins to (what `send` returned, (receiver digest, bytes received)).
fn tcp_between<T: Send + 'static>(
    from: &str,
    to: &str,
    to_ip: &str,
    port: u16,
    send: impl FnOnce(&mut TcpStream) -> T + Send + 'static,
) -> (T, (u64, usize)) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = spawn_in_netns(to, move || {
        let listener = TcpListener::bind(("::", port)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        receive_all(&mut conn)
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let addr = std::net::SocketAddr::new(to_ip.parse().unwrap(), port);
    let sender = spawn_in_netns(from, move || {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let sent = send(&mut conn);
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        sent
    });
    let sent = sender.join().unwrap();
    (sent, receiver.join().unwrap())
}

/// Sends `total` pseudo-random bytes over TCP from `from` to `to_ip:port` (listening in `to`);
/// returns (sender digest, receiver digest, bytes received, seconds).
pub fn tcp_transfer(from: &str, to: &str, to_ip: &str, total: usize) -> (u64, u64, usize, f64) {
    let start = Instant::now();
    let (sent, (got, bytes)) = tcp_between(from, to, to_ip, 5201, move |conn| {
        send_pseudo_random(conn, total)
    });
    (sent, got, bytes, start.elapsed().as_secs_f64())
}

/// Writes `total` pseudo-random bytes (xorshift) to `conn`; returns their digest.
pub fn send_pseudo_random(conn: &mut impl std::io::Write, total: usize) -> u64 {
    let mut digest = Digest::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sent = 0;
    while sent < total {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = chunk.len().min(total - sent);
        conn.write_all(&chunk[..n]).expect("send within 30 s");
        digest.update(&chunk[..n]);
        sent += n;
    }
    digest.finish()
}

/// Reads `conn` to its end; returns (digest, bytes).
pub fn receive_all(conn: &mut impl std::io::Read) -> (u64, usize) {
    let mut digest = Digest::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    loop {
        let n = conn.read(&mut buf).expect("receive within 30 s");
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        got += n;
    }
    (digest.finish(), got)
}

/// A TCP stream kept going for a while: `chunks` pseudo-random pieces of 64 KiB, one every
/// `every`, from `from` to `to_ip:port` (listening in `to`), so that it spans whatever the test
/// does meanwhile. Joins to (sender digest, receiver digest, bytes received).
pub fn paced_stream(
    from: &str,
    to: &str,
    to_ip: &str,
    port: u16,
    chunks: usize,
    every: Duration,
) -> std::thread::JoinHandle<(u64, u64, usize)> {
    let (from, to, to_ip) = (from.to_string(), to.to_string(), to_ip.to_string());
    std::thread::spawn(move || {
        let (sent, (got, bytes)) = tcp_between(&from, &to, &to_ip, port, move |conn| {
            let mut digest = Digest::new();
            let mut piece = vec![0u8; 64 * 1024];
            let mut state: u64 = 0x2545_f491_4f6c_dd1d;
            for _ in 0..chunks {
                for word in piece.chunks_exact_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    word.copy_from_slice(&state.to_le_bytes());
                }
                std::io::Write::write_all(conn, &piece).expect("the stream carries on");
                digest.update(&piece);
                std::thread::sleep(every);
            }
            digest.finish()
        });
        (sent, got, bytes)
    })
}

/// Echoes received out of `count` by `ping -c COUNT -i INTERVAL` from `from` to `to`, run to
/// its end (each echo waits 1 s at most).
pub fn ping_series(from: &str, to: &str, count: u32, interval: &str) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            from,
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            interval,
        ])
        .args(["-W", "1", to])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// How many echoes a finished `ping` (of `ping_series`) got back.
pub fn ping_received(child: std::process::Child) -> u32 {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    stats
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stats}"))
}
