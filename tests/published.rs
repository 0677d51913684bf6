//! Published ports: a client in the "outside" namespace connects to a port the daemon listens
//! on in its own namespace, and reaches a server in the container, which sees the client's
//! own address.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{
    bed_with_outside, download_from, download_server_on, spawn_in_netns, tcp_connect, tcp_transfer,
    udp_ask_to, udp_echo_server_on, OUTSIDE_IP,
};

/// The daemon's address on the link to the outside.
const HOST_IP: &str = "10.251.0.1";

#[test]
fn a_published_port_reaches_the_container_with_the_clients_own_address() {
    let (mut bed, daemon_ns, outside) = bed_with_outside();
    bed.ok(&["network", "create", "pub", "--subnet", "10.85.7.0/24"]);
    let ns = bed.netns("srv");
    bed.ok(&[
        "connect",
        "pub",
        &ns,
        "--name",
        "srv",
        "--publish",
        "10.251.0.1:18080:8080",
        "--publish",
        "10.251.0.1:5201:5201",
        "--publish",
        "10.251.0.1:18085:8081",
    ]);
    let published = &bed.inspect("pub")["endpoints"]["srv"]["published"];
    assert_eq!(published.as_array().unwrap().len(), 3, "{published}");

    // The container's server sees the client as it is.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(&ns, move || {
        let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(b"hello from the container").unwrap();
        peer
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let answer = spawn_in_netns(&outside, || {
        let addr: SocketAddr = "10.251.0.1:18080".parse().unwrap();
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        (answer, conn.local_addr().unwrap())
    })
    .join()
    .unwrap();
    let peer = server.join().unwrap();
    assert_eq!(answer.0, "hello from the container");
    assert_eq!(
        peer, answer.1,
        "the container sees the client's own address and port"
    );
    assert_eq!(peer.ip().to_string(), OUTSIDE_IP);

    // 100 MB from a client outside to the container, and 100 MB back, intact.
    let total = 100 << 20;
    let (sent, received, bytes, _) = tcp_transfer(&outside, &ns, HOST_IP, total);
    assert_eq!((bytes, received), (total, sent));
    let server = download_server_on(&ns, "0.0.0.0:8081".parse().unwrap(), total);
    let got = download_from(&outside, "10.251.0.1:18085".parse().unwrap());
    assert_eq!(got, (server.join().unwrap(), total));

    // Taken ports, ports in use and malformed specs are refused, and nothing changes.
    let other = bed.netns("other");
    let error = bed.fails(&["connect", "pub", &other, "--publish", "10.251.0.1:18080:80"]);
    assert!(
        error.contains("published already, by endpoint srv"),
        "{error}"
    );
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = spawn_in_netns(&daemon_ns, move || {
        let _listener = TcpListener::bind("10.251.0.1:18081").unwrap();
        held_tx.send(()).unwrap();
        let _ = hold_rx.recv_timeout(Duration::from_secs(30));
    });
    held_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let error = bed.fails(&["connect", "pub", &other, "--publish", "10.251.0.1:18081:80"]);
    assert!(error.contains("in use"), "{error}");
    drop(hold_tx);
    holder.join().unwrap();
    let error = bed.fails(&["connect", "pub", &other, "--publish", "18082"]);
    assert!(error.contains("--publish \"18082\""), "{error}");
    let endpoints = bed.inspect("pub")["endpoints"].as_object().unwrap().len();
    assert_eq!(endpoints, 1);

    // A client on the daemon's loopback is shown to the container as the gateway. (It closes
    // at once: the connection to the container must still open.)
    bed.ok(&[
        "connect",
        "pub",
        &other,
        "--name",
        "lo",
        "--publish",
        "127.0.0.1:18084:8080",
    ]);
    let (peer_tx, peer_rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let _server = spawn_in_netns(&other, move || {
        let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
        ready_tx.send(()).unwrap();
        let _ = peer_tx.send(listener.accept().unwrap().1);
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    spawn_in_netns(&daemon_ns, || {
        let addr: SocketAddr = "127.0.0.1:18084".parse().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()
    })
    .join()
    .unwrap();
    let peer = peer_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the container got the client");
    assert_eq!(peer.ip().to_string(), "10.85.7.1");

    // Disconnecting closes the port.
    bed.ok(&["disconnect", "pub", "srv"]);
    assert_eq!(
        tcp_connect(&outside, HOST_IP, 18080),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
}

#[test]
fn a_published_udp_port_answers_with_the_clients_own_address() {
    let (mut bed, daemon_ns, outside) = bed_with_outside();
    bed.ok(&["network", "create", "dgram", "--subnet", "10.85.9.0/24"]);
    let ns = bed.netns("echo");
    bed.ok(&[
        "connect",
        "dgram",
        &ns,
        "--name",
        "echo",
        "-p",
        "10.251.0.1:17007:7007/udp",
        "-p",
        "127.0.0.1:17008:7007/udp",
        // The same port number for TCP is another port.
        "-p",
        "10.251.0.1:17007:7007/tcp",
    ]);
    let published = &bed.inspect("dgram")["endpoints"]["echo"]["published"];
    assert_eq!(published[0]["protocol"], "udp", "{published}");

    let server = udp_echo_server_on(&ns, "0.0.0.0:7007".parse().unwrap());
    let (answer, client) = udp_ask_to(&outside, "10.251.0.1:17007".parse().unwrap(), b"ping")
        .expect("the container answers");
    assert_eq!(answer, b"ping");
    let (answer, _) = udp_ask_to(&daemon_ns, "127.0.0.1:17008".parse().unwrap(), b"local")
        .expect("the container answers a client on the daemon's loopback");
    assert_eq!(answer, b"local");
    let senders = server.join().unwrap();
    assert_eq!(
        senders.first(),
        Some(&client),
        "the container sees the client's own address and port"
    );
    assert_eq!(
        senders.get(1).map(|s| s.ip().to_string()),
        Some("10.85.9.1".to_string()),
        "a loopback client is shown as the gateway"
    );

    // Disconnecting closes the port: nothing answers.
    bed.ok(&["disconnect", "dgram", "echo"]);
    assert!(udp_ask_to(&outside, "10.251.0.1:17007".parse().unwrap(), b"gone?").is_err());
}
