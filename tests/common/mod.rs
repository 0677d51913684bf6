//! Test bed for integration tests: a daemon of the test's own (own socket, own state directory)
//! and network namespaces of the test's own. Everything is removed on drop, also when the test
//! fails; only the daemon this test started is signalled, by its PID.

#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A daemon and the namespaces a test made.
pub struct Bed {
    pub dir: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Child>,
    /// The namespace the daemon runs in, when not the test's own.
    daemon_netns: Option<String>,
    /// Extra arguments for `vswitch daemon`.
    daemon_args: Vec<String>,
    /// Global arguments for the daemon's command line (before `daemon`).
    global_args: Vec<String>,
    namespaces: Vec<String>,
    prefix: String,
}

impl Bed {
    /// Starts a daemon with a fresh state directory.
    pub fn start() -> Bed {
        let mut bed = Bed::prepare();
        bed.start_daemon();
        bed
    }

    /// Starts a daemon inside a namespace of the test's own (returned), so that what it does
    /// in its own namespace (host interfaces, upstream DNS on loopback) stays in the test.
    pub fn start_in_own_netns() -> (Bed, String) {
        let mut bed = Bed::prepare();
        let ns = bed.netns("daemon");
        bed.daemon_netns = Some(ns.clone());
        bed.start_daemon();
        (bed, ns)
    }

    /// Starts a daemon with extra `vswitch daemon` arguments (and global ones before it).
    pub fn start_with(global: &[&str], daemon: &[&str]) -> Bed {
        let mut bed = Bed::prepare();
        bed.daemon_args = daemon.iter().map(|a| a.to_string()).collect();
        bed.global_args = global.iter().map(|a| a.to_string()).collect();
        bed.start_daemon();
        bed
    }

    fn prepare() -> Bed {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("vswt{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Bed {
            socket: dir.join("vswitch.sock"),
            dir,
            daemon: None,
            daemon_netns: None,
            daemon_args: Vec::new(),
            global_args: Vec::new(),
            namespaces: Vec::new(),
            prefix,
        }
    }

    /// Starts the daemon (again) on the same socket and state directory.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let mut command = match &self.daemon_netns {
            // `ip netns exec` execs the daemon: the child's PID is the daemon's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vswitch")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vswitch")),
        };
        let child = command
            .args(["--socket", self.socket.to_str().unwrap()])
            .args(&self.global_args)
            .args(["daemon", "--state-dir"])
            .arg(self.dir.join("state"))
            .args(&self.daemon_args)
            .env("RUST_LOG", "debug,netlink_packet_route=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vswitch daemon starts");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.vswitch(&["network", "ls"]).status.code() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "daemon did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon with SIGTERM and waits for it (SIGKILL after 10 s).
    pub fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("daemon ignored SIGTERM");
    }

    /// PID of the running daemon.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI against this bed's daemon.
    pub fn vswitch(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vswitch"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("vswitch CLI runs")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.vswitch(args);
        assert!(
            out.status.success(),
            "vswitch {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `--format json` and parses the answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Runs the CLI and expects a failure; returns the single-line error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.vswitch(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            !out.status.success(),
            "vswitch {args:?} should have failed; printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one-line error expected: {stderr}"
        );
        stderr.trim().to_string()
    }

    /// Creates a namespace of this test's own, named after `name`; returns its `ip netns` name.
    pub fn netns(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        run("ip", &["netns", "add", &full]);
        run("ip", &["-n", &full, "link", "set", "lo", "up"]);
        self.namespaces.push(full.clone());
        full
    }

    /// Creates network `network` on `subnet` and connects a fresh namespace for each of `names`
    /// with default settings; returns the namespaces' `ip netns` names.
    pub fn network_with(&mut self, network: &str, subnet: &str, names: &[&str]) -> Vec<String> {
        self.ok(&["network", "create", network, "--subnet", subnet]);
        names
            .iter()
            .map(|name| {
                let ns = self.netns(name);
                self.ok(&["connect", network, &ns]);
                ns
            })
            .collect()
    }

    /// Deletes one of this test's namespaces now.
    pub fn delete_netns(&mut self, full: &str) {
        run("ip", &["netns", "del", full]);
        self.namespaces.retain(|n| n != full);
    }

    /// `network inspect` as JSON.
    pub fn inspect(&self, network: &str) -> Value {
        serde_json::from_str(&self.ok(&["network", "inspect", network])).unwrap()
    }

    /// The first address (without prefix length) and the MAC of an endpoint.
    pub fn endpoint(&self, network: &str, endpoint: &str) -> (String, String) {
        let e = &self.inspect(network)["endpoints"][endpoint];
        (
            host_of(&e["addresses"][0]),
            e["mac"].as_str().unwrap().to_string(),
        )
    }

    /// The ports of containers and trunks as JSON (every network's gateway port left out).
    pub fn ports(&self) -> Vec<Value> {
        let ports = self.json(&["ports"]);
        let ports = ports.as_array().unwrap();
        ports
            .iter()
            .filter(|p| p["kind"] != "gateway")
            .cloned()
            .collect()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            // The daemon writes a resolv.conf for named namespaces; it is gone with the daemon.
            let _ = fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The address of a JSON "ADDRESS/PREFIX" string.
pub fn host_of(cidr: &Value) -> String {
    let cidr = cidr.as_str().expect("an address string");
    cidr.split('/').next().unwrap().to_string()
}

/// Runs a command and expects success.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command inside a namespace; returns whether it succeeded.
pub fn in_netns(netns: &str, args: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

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

/// Runs `work` on a thread that has entered the namespace `netns`.
pub fn spawn_in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file = fs::File::open(format!("/run/netns/{netns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        work()
    })
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

/// Sends `total` pseudo-random bytes over TCP from `from` to `to_ip:port` (listening in `to`);
/// returns (sender digest, receiver digest, bytes received, seconds).
pub fn tcp_transfer(from: &str, to: &str, to_ip: &str, total: usize) -> (u64, u64, usize, f64) {
    let port = 5201;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = spawn_in_netns(to, move || {
        let listener = TcpListener::bind(("::", port)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
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
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let addr = std::net::SocketAddr::new(to_ip.parse().unwrap(), port);
    let sender = spawn_in_netns(from, move || {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut digest = Digest::new();
        let mut chunk = vec![0u8; 256 * 1024];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let start = Instant::now();
        let mut sent = 0;
        while sent < total {
            for word in chunk.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            let n = chunk.len().min(total - sent);
            std::io::Write::write_all(&mut conn, &chunk[..n]).expect("send within 30 s");
            digest.update(&chunk[..n]);
            sent += n;
        }
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        (digest.finish(), start)
    });
    let (sent_digest, start) = sender.join().unwrap();
    let (got_digest, got) = receiver.join().unwrap();
    (sent_digest, got_digest, got, start.elapsed().as_secs_f64())
}

/// Waits up to `limit` for `check` to hold.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether interface `ifname` exists in `netns`.
pub fn has_link(netns: &str, ifname: &str) -> bool {
    Command::new("ip")
        .args(["-n", netns, "link", "show", ifname])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// CPU time (user + system, in clock ticks) a process has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Source MACs of every frame seen on `ifname` in `netns` (both directions) while `during`
/// runs; captured with an AF_PACKET socket, so nothing outside the namespace is involved.
pub fn capture_sources(netns: &str, ifname: &str, during: impl FnOnce()) -> Vec<[u8; 6]> {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let capture = spawn_in_netns(netns, move || {
        // SAFETY: plain socket syscalls on values owned by this thread; `fd` is closed below.
        unsafe {
            let fd = packet_socket(&ifname);
            ready_tx.send(()).unwrap();
            let mut sources = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(60);
            while stop_rx.try_recv().is_err() && Instant::now() < deadline {
                let n = libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0);
                if n >= 12 {
                    sources.push(buf[6..12].try_into().unwrap());
                }
            }
            libc::close(fd);
            sources
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    during();
    // Let the last frames arrive.
    std::thread::sleep(Duration::from_millis(300));
    stop_tx.send(()).unwrap();
    capture.join().unwrap()
}

/// An AF_PACKET socket bound to `ifname` of the calling thread's namespace, with a 100 ms
/// receive timeout. The caller closes it.
///
/// # Safety
/// Plain socket syscalls; the returned fd belongs to the caller.
unsafe fn packet_socket(ifname: &std::ffi::CStr) -> libc::c_int {
    unsafe {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        assert!(fd >= 0, "AF_PACKET socket");
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = libc::if_nametoindex(ifname.as_ptr()) as i32;
        assert!(addr.sll_ifindex > 0, "interface exists");
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        assert_eq!(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            0
        );
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let tv_len = std::mem::size_of::<libc::timeval>() as u32;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const _ as *const _,
            tv_len,
        );
        fd
    }
}

/// Parses "02:..:.." into bytes.
pub fn mac_bytes(text: &str) -> [u8; 6] {
    let v: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// An ARP request for `target_ip` from `sender_mac`/`sender_ip`, tagged with `vid` if given.
fn arp_request(
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
    vid: Option<u16>,
) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sender_mac);
    if let Some(vid) = vid {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

/// Sends an ARP request for `target_ip` out of `ifname` in `netns` through a raw socket, tagged
/// with `vid` if given, and waits up to 1.5 s for the reply. Returns the VLAN the reply came
/// back on (0 for untagged), or `None` if nobody answered. The kernel strips received tags into
/// packet metadata, read here with PACKET_AUXDATA.
pub fn arp_over_raw_socket(
    netns: &str,
    ifname: &str,
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
    vid: Option<u16>,
) -> Option<u16> {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let request = arp_request(sender_mac, sender_ip, target_ip, vid);
    spawn_in_netns(netns, move || {
        // SAFETY: socket syscalls on buffers owned by this thread; `fd` is closed before return.
        unsafe {
            let fd = packet_socket(&ifname);
            let on: libc::c_int = 1;
            let int_len = std::mem::size_of::<libc::c_int>() as u32;
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                &on as *const _ as *const _,
                int_len,
            );
            let sent = libc::send(fd, request.as_ptr() as *const _, request.len(), 0);
            assert_eq!(sent, request.len() as isize, "raw send");

            let deadline = Instant::now() + Duration::from_millis(1500);
            let mut answer = None;
            let mut buf = [0u8; 2048];
            let mut control = [0u64; 16];
            while answer.is_none() && Instant::now() < deadline {
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr() as *mut _,
                    iov_len: buf.len(),
                };
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr() as *mut _;
                msg.msg_controllen = std::mem::size_of_val(&control);
                let n = libc::recvmsg(fd, &mut msg, 0);
                if n < 42 {
                    continue;
                }
                let frame = &buf[..n as usize];
                let is_reply_from_target = frame[12..14] == [0x08, 0x06]
                    && frame[20..22] == [0, 2]
                    && frame[28..32] == target_ip;
                if !is_reply_from_target {
                    continue;
                }
                let mut vlan = 0;
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_PACKET
                        && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata
                        );
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            vlan = aux.tp_vlan_tci & 0x0fff;
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
                answer = Some(vlan);
            }
            libc::close(fd);
            answer
        }
    })
    .join()
    .unwrap()
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET http://127.0.0.1:PORT/metrics.
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// The value of the series `name{labels...}` whose labels include all of `want`.
pub fn series(metrics: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = rest.strip_prefix('{')?.split_once("} ")?;
        want.iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().unwrap())
    })
}

/// Checks a metrics page with `promtool check metrics`: no errors, no lint warnings.
pub fn promtool_check(metrics: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `vswitch capture ARGS` writing to `file`; returns once the daemon streams (its
/// header is in the file).
pub fn start_capture(bed: &Bed, file: &std::path::Path, args: &[&str]) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_vswitch"))
        .arg("--socket")
        .arg(&bed.socket)
        .arg("capture")
        .args(["-w", file.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || std::fs::metadata(file)
            .is_ok_and(|m| m.len() > 0)),
        "capture did not start"
    );
    child
}

/// Waits (bounded) for a capture that stops by itself; returns its stderr.
pub fn finish_capture(mut child: std::process::Child) -> String {
    let ended = eventually(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        ended && out.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tshark -r FILE -T fields -e FIELD...`: one line per frame, fields separated by tabs.
pub fn tshark_fields(file: &std::path::Path, fields: &[&str]) -> String {
    let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields"];
    for field in fields {
        args.extend(["-e", field]);
    }
    let out = Command::new("tshark")
        .args(&args)
        .stderr(Stdio::null())
        .output()
        .expect("tshark is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
