//! The gateway of each network, against real clients in real namespaces: ping/ping6 and
//! address resolution of the gateway, router advertisements, busybox udhcpc, dig and glibc's
//! resolver, forwarding to a stub upstream, the host interface, and malformed DHCP and DNS.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, in_netns, ping, run, send_frames, spawn_in_netns, tcp_transfer, Bed};

/// Runs dig in `netns` with a short timeout; returns its output.
fn dig(netns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "dig", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short` answer lines.
fn resolve(netns: &str, server: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec![format!("@{server}"), "+short".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    dig(netns, &all).lines().map(str::to_string).collect()
}

fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("none")
}

/// The first address of `ifname` in `netns` with the given `ip` family flag.
fn address_of(netns: &str, family: &str, ifname: &str) -> Option<String> {
    let out = run(
        "ip",
        &[
            "-n", netns, family, "-o", "addr", "show", "dev", ifname, "scope", "global",
        ],
    );
    out.split_whitespace()
        .skip_while(|w| *w != "inet" && *w != "inet6")
        .nth(1)
        .map(|a| a.split('/').next().unwrap().to_string())
}

fn endpoint_ip(bed: &Bed, network: &str, endpoint: &str) -> String {
    bed.endpoint(network, endpoint).0
}

fn inspect(bed: &Bed, network: &str) -> serde_json::Value {
    bed.inspect(network)
}

fn gateway_stats(bed: &Bed, network: &str) -> serde_json::Value {
    inspect(bed, network)["gateway"].clone()
}

#[test]
fn gateway_answers_ping_arp_ndp_and_advertises_the_prefix() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "gw",
        "--subnet",
        "10.91.0.0/24",
        "--subnet",
        "fd91::/64",
    ]);
    let a = bed.netns("a");
    bed.ok(&["connect", "gw", &a]);
    let mac = inspect(&bed, "gw")["gateway_mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ping(&a, "10.91.0.1", 3), "ping gateway: {}", bed.log());
    assert!(in_netns(
        &a,
        &["ping", "-6", "-c", "3", "-W", "2", "fd91::1"]
    ));
    for gw in ["10.91.0.1", "fd91::1"] {
        let neigh = run("ip", &["-n", &a, "neigh", "show", gw]);
        assert!(
            neigh.contains(&mac),
            "{gw} resolved to {neigh}, gateway is {mac}"
        );
    }
    // A container configuring itself learns the prefix and route from router advertisements.
    let slaac = bed.netns("slaac");
    let connected = bed.json(&["connect", "gw", &slaac, "--dhcp"]);
    let slaac_mac = connected["mac"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(10), || address_of(&slaac, "-6", "eth0")
            .is_some_and(|a| a.starts_with("fd91::"))),
        "no SLAAC address: {}",
        run("ip", &["-n", &slaac, "addr"])
    );
    let v6 = address_of(&slaac, "-6", "eth0").unwrap();
    let m: Vec<u8> = slaac_mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let eui64 = format!(
        "fd91::{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([m[0] ^ 2, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]])
    );
    assert_eq!(v6, eui64);
    let routes = run("ip", &["-n", &slaac, "-6", "route", "show", "default"]);
    assert!(
        routes.contains("via fe80::"),
        "no default route from the RA: {routes}"
    );
    assert!(in_netns(
        &slaac,
        &["ping", "-6", "-c", "2", "-W", "2", "fd91::1"]
    ));
}

/// A DHCP client message (broadcast, from `src` with `chaddr`): a DISCOVER, or with `request`
/// a REQUEST for that address naming the server, as a client taking an offer sends it.
fn dhcp_frame(src: [u8; 6], chaddr: [u8; 6], request: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
    use dhcproto::{Encodable, Encoder};
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_xid(u32::from_be_bytes([
            chaddr[2], chaddr[3], chaddr[4], chaddr[5],
        ]))
        .set_chaddr(&chaddr);
    let kind = match request {
        None => MessageType::Discover,
        Some((ip, server)) => {
            msg.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
            msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
            MessageType::Request
        }
    };
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    let mut payload = Vec::new();
    msg.encode(&mut Encoder::new(&mut payload)).unwrap();
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(src, [0xff; 6])
        .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
        .udp(68, 67)
        .write(&mut frame, &payload)
        .unwrap();
    frame
}

/// A MAC made of `seed` and `n`, unicast and locally administered.
fn random_mac(seed: u8, n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, seed, b[0], b[1], b[2], b[3]]
}

#[test]
fn one_port_cannot_exhaust_the_dhcp_pool() {
    let mut bed = Bed::start();
    // A /27: 29 addresses for the gateway's clients.
    bed.ok(&["network", "create", "lan", "--subnet", "10.89.14.0/27"]);
    let server: Ipv4Addr = "10.89.14.1".parse().unwrap();
    // A port fronting VMs may send as any MAC; this one may hold three leases.
    let host = bed.netns("vmhost");
    bed.ok(&[
        "connect",
        "lan",
        &host,
        "--no-port-security",
        "--dhcp-leases",
        "3",
    ]);
    // A container with port security (the default) may only ask in its own name.
    let plain = bed.netns("plain");
    bed.ok(&["connect", "lan", &plain]);
    let plain_mac = common::mac_bytes(bed.endpoint("lan", &plain).1.as_str());
    let victim = bed.netns("victim");
    bed.ok(&["connect", "lan", &victim, "--dhcp"]);

    // 200 DISCOVERs and 200 direct REQUESTs (options 50 and 54), each in a new MAC's name.
    let flood = |src: &dyn Fn(u32) -> [u8; 6], seed: u8| -> Vec<Vec<u8>> {
        (0..200u32)
            .flat_map(|n| {
                let chaddr = random_mac(seed, n);
                let ip = Ipv4Addr::from(u32::from(server) + 2 + n % 28);
                [
                    dhcp_frame(src(n), chaddr, None),
                    dhcp_frame(src(n), chaddr, Some((ip, server))),
                ]
            })
            .collect()
    };
    assert_eq!(
        send_frames(&host, "eth0", flood(&|n| random_mac(1, n), 1)),
        400
    );
    assert_eq!(send_frames(&plain, "eth0", flood(&|_| plain_mac, 2)), 400);
    // Every frame is accounted for: handled by the gateway, dropped by it (another station's
    // name), held back by storm control (800 broadcasts at once), or refused by the gateway's
    // full queue (tx_error on its port).
    let drops = |kind: &str, ns: &str, reason: &str| -> u64 {
        let ports = bed.json(&["ports"]);
        let ports = ports.as_array().unwrap();
        let port = ports
            .iter()
            .find(|p| p["kind"] == kind && p["netns"] == ns)
            .unwrap();
        port["drops_by_reason"][reason].as_u64().unwrap_or(0)
    };
    let storm = |ns: &str| drops("container", ns, "storm");
    let gateway = || bed.inspect("lan")["gateway"].clone();
    let accounted = || {
        let g = gateway();
        g["dhcp_requests"].as_u64().unwrap()
            + g["dhcp_dropped"].as_u64().unwrap()
            + storm(&host)
            + storm(&plain)
            + drops("gateway", "", "tx_error")
    };
    assert!(
        eventually(Duration::from_secs(10), || accounted() == 800),
        "{} of 800 frames accounted for: {}",
        accounted(),
        gateway()
    );

    let inspect = bed.inspect("lan");
    let leases = inspect["leases"].as_array().cloned().unwrap_or_default();
    let from_host = leases
        .iter()
        .filter(|l| l["endpoint"] == host.as_str())
        .count();
    assert!(
        from_host <= 3,
        "the VM host's port holds {from_host}: {leases:?}"
    );
    assert_eq!(
        leases.len(),
        from_host,
        "leases in others' names: {leases:?}"
    );
    // Past its three clients, the port's requests are refused and counted; the container's
    // requests in other names are dropped and counted. (What was answered is not bounded by
    // six: a REQUEST that overtakes its DISCOVER on another TAP queue gets a NAK, which holds
    // no address. The leases above are the bound that matters.)
    let g = gateway();
    let refused = g["dhcp_refused"].as_u64().unwrap();
    assert!(refused > 0, "{g}");
    assert!(g["dhcp_dropped"].as_u64().unwrap() > 0, "{g}");

    // And a real client still gets an address.
    let client = Udhcpc::start(&bed, &victim);
    let bound: std::collections::HashMap<String, String> =
        client.wait_for("bound", 0).into_iter().collect();
    assert!(bound["ip"].starts_with("10.89.14."), "{bound:?}");
}

#[test]
fn a_dns_flood_adds_up_across_counters() {
    let mut bed = Bed::start();
    let ns = bed.network_with("dnsf", "10.89.15.0/24", &["flood", "web"]);
    let flood = ns[0].clone();
    // The gateway's MAC is resolved before the flood, so every frame of it is a query.
    assert!(ping(&flood, "10.89.15.1", 2));
    let before = bed.inspect("dnsf")["gateway"]["dns_queries"]
        .as_u64()
        .unwrap();
    let gateway_drops = |reason: &str| -> u64 {
        let ports = bed.json(&["ports"]);
        let ports = ports.as_array().unwrap();
        let gateway = ports
            .iter()
            .find(|p| p["kind"] == "gateway" && p["network"] == "dnsf")
            .unwrap();
        gateway["drops_by_reason"][reason].as_u64().unwrap_or(0)
    };
    let tx_before = gateway_drops("tx_error");
    let flood_port = || -> serde_json::Value {
        let ports = bed.json(&["ports"]);
        let ports = ports.as_array().unwrap();
        ports
            .iter()
            .find(|p| p["netns"] == flood.as_str())
            .unwrap()
            .clone()
    };
    let rx_before = flood_port()["rx_packets"].as_u64().unwrap();
    const QUERIES: u64 = 20_000;
    let sent = spawn_in_netns(&flood, move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        // A query for "web", type A: header (id, RD, one question), name, type, class.
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01";
        (0..QUERIES)
            .filter(|_| socket.send_to(query, "10.89.15.1:53").is_ok())
            .count() as u64
    })
    .join()
    .unwrap();
    assert_eq!(sent, QUERIES);
    // Every query that reached the switch (the container's kernel may drop some before, when
    // its TAP queue is full) is taken by the gateway or counted where it was lost: dropped on
    // the container's port, the gateway port's socket full (tx_error), the gateway's queue
    // full (frames_dropped). The container's kernel sends a few frames of its own meanwhile
    // (neighbour discovery, MLD), which are not queries: a handful of slack.
    let accounted = || {
        let g = bed.inspect("dnsf")["gateway"].clone();
        let port = flood_port();
        let reached = port["rx_packets"].as_u64().unwrap() - rx_before;
        let counted = g["dns_queries"].as_u64().unwrap() - before + gateway_drops("tx_error")
            - tx_before
            + g["frames_dropped"].as_u64().unwrap()
            + port["drops"].as_u64().unwrap();
        (reached, counted, g)
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let (reached, counted, _) = accounted();
            reached > 0 && reached.abs_diff(counted) <= 8
        }),
        "queries reaching the switch and counted: {:?}",
        accounted()
    );
}

/// A busybox udhcpc in the foreground inside a namespace; killed (by PID) on drop. Its script
/// appends one line per event to `log`.
struct Udhcpc {
    child: Child,
    log: std::path::PathBuf,
}

impl Udhcpc {
    fn start(bed: &Bed, netns: &str) -> Udhcpc {
        let log = bed.dir.join(format!("{netns}.dhcp"));
        let script = bed.dir.join(format!("{netns}.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu lease=$lease\" >> {}\n\
                 case \"$1\" in bound|renew) ip addr replace $ip/$mask dev $interface; ip route replace default via $router dev $interface;; deconfig) ip -4 addr flush dev $interface;; esac\n",
                log.display()
            ),
        )
        .unwrap();
        run("chmod", &["+x", script.to_str().unwrap()]);
        let child = Command::new("ip")
            .args([
                "netns", "exec", netns, "busybox", "udhcpc", "-f", "-i", "eth0", "-t", "5", "-T",
                "1", "-A", "1", "-s",
            ])
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Udhcpc { child, log }
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The fields of the last `kind` event (bound, renew), waiting up to 15 s for one.
    fn wait_for(&self, kind: &str, after: usize) -> Vec<(String, String)> {
        assert!(
            eventually(Duration::from_secs(15), || self.events()
                [after.min(self.events().len())..]
                .iter()
                .any(|e| e.starts_with(kind))),
            "no {kind} event: {:?}",
            self.events()
        );
        let events = self.events();
        let line = events.iter().rev().find(|e| e.starts_with(kind)).unwrap();
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Udhcpc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn leases(bed: &Bed, network: &str) -> Vec<(String, String)> {
    let net = inspect(bed, network);
    net["leases"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| {
                    (
                        l["mac"].as_str().unwrap().to_string(),
                        l["ip"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn dhcp_clients_get_distinct_leases_that_survive_a_restart() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "dh",
        "--subnet",
        "10.92.0.0/24",
        "--ip-range",
        "10.92.0.128/25",
        "--mtu",
        "1450",
    ]);
    let c1 = bed.netns("c1");
    let c2 = bed.netns("c2");
    bed.ok(&["connect", "dh", &c1, "--dhcp"]);
    bed.ok(&["connect", "dh", &c2, "--dhcp"]);
    let one = Udhcpc::start(&bed, &c1);
    let bound1 = one.wait_for("bound", 0);
    let two = Udhcpc::start(&bed, &c2);
    let bound2 = two.wait_for("bound", 0);
    let (ip1, ip2) = (
        field(&bound1, "ip").to_string(),
        field(&bound2, "ip").to_string(),
    );
    assert_ne!(ip1, ip2);
    for (fields, ip) in [(&bound1, &ip1), (&bound2, &ip2)] {
        let addr: Ipv4Addr = ip.parse().unwrap();
        assert!(addr.octets()[3] >= 128, "{ip} is outside --ip-range");
        assert_eq!(field(fields, "mask"), "24");
        assert_eq!(field(fields, "router"), "10.92.0.1");
        assert_eq!(field(fields, "dns"), "10.92.0.1");
        assert_eq!(field(fields, "mtu"), "1450");
        assert_eq!(field(fields, "lease"), "3600");
    }
    assert!(ping(&c1, &ip2, 2), "leased addresses work");
    // A static endpoint never gets a leased address, and DNS knows DHCP clients by name.
    let s = bed.netns("s");
    let connected = bed.json(&["connect", "dh", &s]);
    let static_ip = common::host_of(&connected["addresses"][0]);
    assert!(
        static_ip != ip1 && static_ip != ip2,
        "static {static_ip} collides"
    );
    assert_eq!(resolve(&s, "10.92.0.1", &[&c1]), vec![ip1.clone()]);

    // Release frees the address. (busybox sends the release and removes the address at
    // once: it reaches the server only if the gateway's MAC is already known.)
    assert!(ping(&c2, "10.92.0.1", 1));
    two.signal(nix::sys::signal::Signal::SIGUSR2);
    assert!(
        eventually(Duration::from_secs(5), || !leases(&bed, "dh")
            .iter()
            .any(|(_, ip)| *ip == ip2)),
        "release did not free {ip2}: {:?}",
        leases(&bed, "dh")
    );

    // Renewing (unicast, ciaddr set) keeps the address.
    let before = one.events().len();
    one.signal(nix::sys::signal::Signal::SIGUSR1);
    let renewed = one.wait_for("renew", before);
    assert_eq!(field(&renewed, "ip"), ip1);

    // The lease survives a restart. The restarted daemon creates the container's interface
    // anew, so the client starts over on it, and gets its address back.
    drop(one);
    bed.stop_daemon();
    bed.start_daemon();
    assert!(leases(&bed, "dh").iter().any(|(_, ip)| *ip == ip1));
    std::fs::remove_file(bed.dir.join(format!("{c1}.dhcp"))).unwrap();
    let again = Udhcpc::start(&bed, &c1);
    assert_eq!(field(&again.wait_for("bound", 0), "ip"), ip1);
    assert!(ping(&c1, "10.92.0.1", 2));
}

#[test]
fn dns_resolves_names_aliases_and_addresses_within_networks() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "app", "--subnet", "10.94.0.0/24"]);
    bed.ok(&["network", "create", "other", "--subnet", "10.95.0.0/24"]);
    let web = bed.netns("web");
    let db = bed.netns("db");
    let x = bed.netns("x");
    bed.ok(&[
        "connect", "app", &web, "--name", "web", "--alias", "www", "--alias", "frontend",
    ]);
    bed.ok(&["connect", "app", &db, "--name", "db"]);
    bed.ok(&["connect", "other", &x, "--name", "x"]);
    let web_ip = endpoint_ip(&bed, "app", "web");
    let x_ip = endpoint_ip(&bed, "other", "x");

    assert_eq!(resolve(&db, "10.94.0.1", &["web"]), vec![web_ip.clone()]);
    assert_eq!(
        resolve(&db, "10.94.0.1", &["+tcp", "web"]),
        vec![web_ip.clone()]
    );
    assert_eq!(resolve(&db, "10.94.0.1", &["WWW"]), vec![web_ip.clone()]);
    assert_eq!(
        resolve(&db, "10.94.0.1", &["frontend"]),
        vec![web_ip.clone()]
    );
    assert_eq!(
        resolve(&db, "10.94.0.1", &["-x", &web_ip]),
        vec!["web.".to_string()]
    );
    // glibc's resolver, through the resolv.conf written for the namespace.
    let hosts = run("ip", &["netns", "exec", &db, "getent", "hosts", "web"]);
    assert!(hosts.starts_with(&web_ip), "getent hosts web: {hosts}");
    // Isolation: db is not on `other`.
    assert_eq!(status(&dig(&db, &["@10.94.0.1", "x"])), "NXDOMAIN");

    // A container on two networks resolves the names of both, and reaches them by name.
    bed.ok(&["connect", "other", &web]);
    assert!(run("ip", &["-n", &web, "link"]).contains("eth1"));
    assert_eq!(resolve(&web, "10.94.0.1", &["x"]), vec![x_ip.clone()]);
    assert!(
        in_netns(&web, &["ping", "-c", "1", "-W", "2", "x"]),
        "ping x by name"
    );
    assert!(
        in_netns(&web, &["ping", "-c", "1", "-W", "2", "db"]),
        "ping db by name"
    );

    // Names follow connects and disconnects at once.
    let late = bed.netns("late");
    bed.ok(&["connect", "app", &late, "--name", "late"]);
    let late_ip = endpoint_ip(&bed, "app", "late");
    assert_eq!(resolve(&db, "10.94.0.1", &["late"]), vec![late_ip]);
    bed.ok(&["disconnect", "app", "late"]);
    assert_eq!(status(&dig(&db, &["@10.94.0.1", "late"])), "NXDOMAIN");
    let stats = gateway_stats(&bed, "app");
    assert!(stats["dns_queries"].as_u64().unwrap() >= 8, "{stats}");
}

#[test]
fn dual_stack_tcp_between_containers_by_name() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "ds",
        "--subnet",
        "10.97.0.0/24",
        "--ipv6",
    ]);
    let a = bed.netns("a");
    let b = bed.netns("b");
    bed.ok(&["connect", "ds", &a, "--name", "a"]);
    bed.ok(&["connect", "ds", &b, "--name", "b"]);
    let net = inspect(&bed, "ds");
    let v6_gateway = net["subnets"][1]["gateway"].as_str().unwrap().to_string();
    assert!(v6_gateway.starts_with("fd00:89:"), "{net}");
    let aaaa = resolve(&a, &v6_gateway, &["b", "AAAA"]);
    assert_eq!(aaaa.len(), 1, "{aaaa:?}");
    let ahosts = run("ip", &["netns", "exec", &a, "getent", "ahostsv6", "b"]);
    assert!(ahosts.contains(&aaaa[0]), "glibc resolves b to {ahosts}");
    let total = 16 << 20;
    let (sent, got, bytes, _) = tcp_transfer(&a, &b, &aaaa[0], total);
    assert_eq!((bytes, got), (total, sent));
}

/// A stub DNS server in the daemon's namespace: answers every query with one A record, or
/// (`answer` None) never answers. Stops after `limit`.
fn stub_upstream(netns: &str, port: u16, answer: Option<Ipv4Addr>, limit: Duration) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    spawn_in_netns(netns, move || {
        let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Some(ip) = answer else { continue };
            let mut reply = buf[..len].to_vec();
            reply[2] |= 0x80; // QR
            reply[3] = 0x80; // RA, NOERROR
            reply[6..8].copy_from_slice(&1u16.to_be_bytes());
            reply[10..12].copy_from_slice(&0u16.to_be_bytes()); // drop EDNS
            let question_end = 12 + reply[12..].iter().position(|b| *b == 0).unwrap() + 5;
            reply.truncate(question_end);
            reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            reply.extend(ip.octets());
            let _ = socket.send_to(&reply, from);
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn dns_forwards_other_names_upstream_and_fails_fast() {
    let (mut bed, daemon_ns) = Bed::start_in_own_netns();
    run("ip", &["-n", &daemon_ns, "link", "set", "lo", "up"]);
    stub_upstream(
        &daemon_ns,
        53,
        Some(Ipv4Addr::new(192, 0, 2, 7)),
        Duration::from_secs(60),
    );
    stub_upstream(&daemon_ns, 5454, None, Duration::from_secs(60));
    bed.ok(&[
        "network",
        "create",
        "fwd",
        "--subnet",
        "10.98.0.0/24",
        "--dns",
        "127.0.0.1",
    ]);
    bed.ok(&[
        "network",
        "create",
        "dead",
        "--subnet",
        "10.99.0.0/24",
        "--dns",
        "127.0.0.1:5454",
    ]);
    let c = bed.netns("c");
    let d = bed.netns("d");
    bed.ok(&["connect", "fwd", &c]);
    bed.ok(&["connect", "dead", &d]);
    assert_eq!(
        resolve(&c, "10.98.0.1", &["svc.example.test"]),
        vec!["192.0.2.7".to_string()]
    );
    let hosts = run(
        "ip",
        &["netns", "exec", &c, "getent", "hosts", "svc.example.test"],
    );
    assert!(hosts.starts_with("192.0.2.7"), "{hosts}");
    let started = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &d,
            "dig",
            "+time=10",
            "+tries=1",
            "@10.99.0.1",
            "svc.example.test",
        ])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    assert!(
        elapsed < Duration::from_secs(5),
        "SERVFAIL took {elapsed:?}"
    );
    assert!(
        gateway_stats(&bed, "dead")["dns_servfail"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn host_interface_reaches_containers() {
    let (mut bed, daemon_ns) = Bed::start_in_own_netns();
    bed.ok(&[
        "network",
        "create",
        "hostnet",
        "--subnet",
        "10.96.0.0/24",
        "--host-iface",
        "vsh0",
    ]);
    let c = bed.netns("c");
    bed.ok(&["connect", "hostnet", &c, "--name", "c"]);
    let c_ip = endpoint_ip(&bed, "hostnet", "c");
    let link = run("ip", &["-n", &daemon_ns, "addr", "show", "vsh0"]);
    assert!(link.contains("10.96.0.1/24"), "{link}");
    // The container still reaches its gateway (now the host kernel) and its DNS.
    assert!(ping(&c, "10.96.0.1", 2), "{}", bed.log());
    assert_eq!(resolve(&c, "10.96.0.1", &["c"]), vec![c_ip.clone()]);
    // A process beside the daemon talks TCP to a server in the container.
    let listener_ready = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = listener_ready;
    let server = spawn_in_netns(&c, move || {
        let listener = TcpListener::bind(("0.0.0.0", 8080)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 5];
        std::io::Read::read_exact(&mut conn, &mut buf).unwrap();
        std::io::Write::write_all(&mut conn, b"pong!").unwrap();
        buf
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let addr = SocketAddr::new(c_ip.parse().unwrap(), 8080);
    let reply = spawn_in_netns(&daemon_ns, move || {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        std::io::Write::write_all(&mut conn, b"ping!").unwrap();
        let mut buf = [0u8; 5];
        std::io::Read::read_exact(&mut conn, &mut buf).unwrap();
        buf
    })
    .join()
    .unwrap();
    assert_eq!(&server.join().unwrap(), b"ping!");
    assert_eq!(&reply, b"pong!");
    bed.ok(&["disconnect", "hostnet", "c"]);
    bed.ok(&["network", "rm", "hostnet"]);
    assert!(
        eventually(Duration::from_secs(5), || !common::has_link(
            &daemon_ns, "vsh0"
        )),
        "host interface left behind"
    );
}

#[test]
fn malformed_dns_and_dhcp_are_dropped_and_counted() {
    let mut bed = Bed::start();
    bed.ok(&["network", "create", "bad", "--subnet", "10.90.0.0/24"]);
    let c = bed.netns("c");
    bed.ok(&["connect", "bad", &c, "--name", "c"]);
    let dns_garbage: Vec<Vec<u8>> = vec![
        vec![0x12],
        vec![0; 11],
        // One question claimed, none present.
        vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        // A compression pointer to itself.
        vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // A response, not a query.
        vec![0, 3, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
        // A 70-byte label.
        [
            vec![0, 4, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 70],
            vec![b'a'; 70],
            vec![0, 0, 1, 0, 1],
        ]
        .concat(),
    ];
    let dhcp_garbage: Vec<Vec<u8>> = vec![
        vec![1; 100],
        [vec![2, 1, 6, 0], vec![0; 232], vec![99, 130, 83, 99, 255]].concat(),
        [
            vec![1, 1, 6, 0],
            vec![0; 232],
            vec![99, 130, 83, 99, 53, 200, 1],
        ]
        .concat(),
    ];
    let (dns_n, dhcp_n) = (dns_garbage.len() as u64, dhcp_garbage.len() as u64);
    spawn_in_netns(&c, move || {
        let dns = UdpSocket::bind("0.0.0.0:0").unwrap();
        for packet in &dns_garbage {
            dns.send_to(packet, "10.90.0.1:53").unwrap();
        }
        let dhcp = UdpSocket::bind("0.0.0.0:68").unwrap();
        for packet in &dhcp_garbage {
            dhcp.send_to(packet, "10.90.0.1:67").unwrap();
        }
    })
    .join()
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            let stats = gateway_stats(&bed, "bad");
            stats["dns_dropped"].as_u64() == Some(dns_n)
                && stats["dhcp_dropped"].as_u64() >= Some(dhcp_n)
        }),
        "{}",
        gateway_stats(&bed, "bad")
    );
    // The gateway keeps answering.
    let c_ip = endpoint_ip(&bed, "bad", "c");
    assert_eq!(resolve(&c, "10.90.0.1", &["c"]), vec![c_ip]);
    assert!(ping(&c, "10.90.0.1", 1));
}

#[test]
fn isc_dhclient_gets_address_router_dns_and_mtu_and_releases() {
    let mut bed = Bed::start();
    bed.ok(&[
        "network",
        "create",
        "isc",
        "--subnet",
        "10.93.0.0/24",
        "--mtu",
        "1400",
    ]);
    let c = bed.netns("c");
    bed.ok(&["connect", "isc", &c, "--dhcp"]);
    // Our own script (not dhclient-script, which would rewrite resolv.conf): log and configure.
    let log = bed.dir.join("dhclient.log");
    let script = bed.dir.join("dhclient.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason ip=$new_ip_address mask=$new_subnet_mask router=$new_routers dns=$new_domain_name_servers mtu=$new_interface_mtu\" >> {}\n\
             case \"$reason\" in BOUND|RENEW|REBIND|REBOOT) ip addr replace $new_ip_address/24 dev $interface;; esac\n",
            log.display()
        ),
    )
    .unwrap();
    run("chmod", &["+x", script.to_str().unwrap()]);
    let files = |name: &str| bed.dir.join(name).to_str().unwrap().to_string();
    let (pid_file, lease_file) = (files("dhclient.pid"), files("dhclient.leases"));
    let dhclient = |extra: &[&str]| {
        let mut args = vec![
            "netns", "exec", &c, "timeout", "20", "dhclient", "-1", "-sf",
        ];
        args.push(script.to_str().unwrap());
        args.extend(["-pf", &pid_file, "-lf", &lease_file]);
        args.extend(extra);
        args.push("eth0");
        let status = Command::new("ip").args(&args).status().unwrap();
        assert!(status.success(), "dhclient {extra:?} failed: {}", bed.log());
    };
    dhclient(&[]);
    let events = std::fs::read_to_string(&log).unwrap();
    let bound = events
        .lines()
        .find(|l| l.starts_with("BOUND"))
        .unwrap_or_else(|| panic!("{events}"));
    assert!(bound.contains("ip=10.93.0.2 "), "{bound}");
    assert!(
        bound.contains("mask=255.255.255.0 router=10.93.0.1 dns=10.93.0.1 mtu=1400"),
        "{bound}"
    );
    assert_eq!(leases(&bed, "isc").len(), 1);
    dhclient(&["-r"]);
    assert!(
        eventually(Duration::from_secs(5), || leases(&bed, "isc").is_empty()),
        "release did not free the lease"
    );
    // dhclient -1 daemonizes after binding and -r stops it; make sure, by its pid file.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}
