use super::*;
use etherparse::{PacketBuilder, SlicedPacket};
use ipnet::IpNet;

const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CONTAINER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn udp_frame(to: [u8; 4]) -> Vec<u8> {
    udp_frame_to(to, 53)
}

fn udp_frame_to(to: [u8; 4], port: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CONTAINER_MAC, GATEWAY_MAC)
        .ipv4([10, 9, 0, 2], to, 64)
        .udp(40000, port)
        .write(&mut frame, b"query")
        .unwrap();
    frame
}

/// What the gateway does with a frame: parse it, and offer it to egress.
fn take(egress: &mut Egress, frame: &[u8]) -> bool {
    Routed::parse(frame, GATEWAY_MAC)
        .is_some_and(|r| egress.take(&r, &|_, _| Ok(()), &mut Vec::new()))
}

fn egress(internal: bool) -> Egress {
    Egress::new(GATEWAY_MAC, 1500, beyond(false), internal, Arc::default()).0
}

fn beyond(host_loopback: bool) -> Beyond {
    Beyond {
        local: vec!["10.9.0.0/24".parse().unwrap(), "fd09::/64".parse().unwrap()],
        gateways: vec!["10.9.0.1".parse().unwrap(), "fd09::1".parse().unwrap()],
        host_loopback,
    }
}

#[test]
fn the_gateways_address_leads_to_the_hosts_loopback_only_when_asked_and_never_for_dns() {
    let target = |b: &Beyond, to: &str| b.target(to.parse().unwrap()).map(|t| t.to_string());
    let (open, closed) = (beyond(true), beyond(false));
    assert_eq!(
        target(&open, "10.9.0.1:8080").as_deref(),
        Some("127.0.0.1:8080")
    );
    assert_eq!(
        target(&open, "[fd09::1]:8080").as_deref(),
        Some("[::1]:8080")
    );
    assert_eq!(
        target(&open, "10.9.0.1:53"),
        None,
        "DNS is the gateway's own"
    );
    assert_eq!(target(&open, "10.9.0.7:8080"), None, "a container");
    assert_eq!(target(&closed, "10.9.0.1:8080"), None);
    assert_eq!(
        target(&closed, "192.0.2.1:80").as_deref(),
        Some("192.0.2.1:80")
    );
}

#[test]
fn outside_means_unicast_beyond_the_networks_subnets() {
    let local: Vec<IpNet> = vec!["10.9.0.0/24".parse().unwrap(), "fd09::/64".parse().unwrap()];
    for (ip, outside) in [
        ("192.0.2.1", true),
        ("2001:db8::1", true),
        ("10.9.0.7", false),
        ("fd09::7", false),
        ("255.255.255.255", false),
        ("224.0.0.251", false),
        ("127.0.0.1", false),
        ("fe80::1", false),
        ("ff02::1", false),
        ("0.0.0.0", false),
    ] {
        assert_eq!(is_outside(&local, ip.parse().unwrap()), outside, "{ip}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_published_ports_client_gets_a_flow_that_ends_when_idle() {
    let mut egress = egress(false);
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client: SocketAddr = "10.251.0.2:5555".parse().unwrap();
    let container: SocketAddr = "10.9.0.2:7007".parse().unwrap();
    let inbound = |data: &[u8]| {
        Answer::inbound(
            socket.clone(),
            client,
            container,
            CONTAINER_MAC,
            data.to_vec(),
        )
    };
    let frame = egress
        .answer(inbound(b"one"))
        .expect("a frame to the container");
    let packet = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        panic!("UDP expected");
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (5555, 7007));
    assert_eq!(udp.payload(), b"one");
    assert!(egress.answer(inbound(b"two")).is_some());
    assert_eq!(egress.counters.snapshot().flows, 1, "one client, one flow");
    egress.expire(Instant::now() + IDLE / 2);
    assert_eq!(egress.flows.len(), 1);
    egress.expire(Instant::now() + IDLE);
    assert!(egress.flows.is_empty());
    assert_eq!(egress.counters.snapshot().expired, 1);
}

#[test]
fn an_answer_queued_by_the_send_goes_out_with_it_until_a_flow_keeps_finding_none() {
    // The gateway's address leads to the host's loopback, where this test is the server.
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = udp_frame_to([10, 9, 0, 1], server.local_addr().unwrap().port());
    let routed = Routed::parse(&frame, GATEWAY_MAC).unwrap();
    let mut egress = Egress::new(GATEWAY_MAC, 1500, beyond(true), false, Arc::default()).0;
    let send = |egress: &mut Egress| {
        let mut answers = Vec::new();
        assert!(egress.take(&routed, &|_, _| Ok(()), &mut answers));
        answers
    };
    assert!(send(&mut egress).is_empty(), "nothing came back yet");
    let mut buf = [0u8; 64];
    let (_, client) = server.recv_from(&mut buf).unwrap();
    // The flow's socket holds an answer (waited for: no race with the kernel).
    let answer_waits = |egress: &Egress| {
        let Some(FlowSocket::Own(socket)) = egress.flows.values().next().map(|f| &f.socket) else {
            panic!("one flow with its own socket expected");
        };
        let fd = std::os::fd::AsFd::as_fd(socket);
        let mut ready = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut ready, 5000u16).unwrap(), 1);
    };
    server.send_to(b"first", client).unwrap();
    answer_waits(&egress);
    let answers = send(&mut egress);
    assert_eq!(answers.len(), 1, "read right after the next send");
    let packet = SlicedPacket::from_ethernet(&answers[0]).unwrap();
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        panic!("UDP expected");
    };
    assert_eq!(udp.payload(), b"first");
    assert_eq!(udp.destination_port(), 40000);
    // Sends that find nothing, in a row: after `EAGER_MISSES` of them the flow stops looking.
    for _ in 0..EAGER_MISSES {
        assert!(send(&mut egress).is_empty());
    }
    server.send_to(b"late", client).unwrap();
    answer_waits(&egress);
    assert!(send(&mut egress).is_empty(), "no longer read after a send");
    let id = *egress.ids.keys().next().unwrap();
    let frames = egress.outside_ready(id);
    assert_eq!(frames.len(), 1, "the worker's epoll reads it");
    let packet = SlicedPacket::from_ethernet(&frames[0]).unwrap();
    assert_eq!(
        packet
            .transport
            .map(|t| matches!(t, TransportSlice::Udp(u) if u.payload() == b"late")),
        Some(true)
    );
    assert_eq!(egress.counters.snapshot().received, 2);
}

#[test]
fn an_internal_network_counts_what_it_refuses_and_local_traffic_is_left_alone() {
    let mut sealed = egress(true);
    assert!(take(&mut sealed, &udp_frame([192, 0, 2, 1])));
    assert!(
        !take(&mut sealed, &udp_frame([10, 9, 0, 1])),
        "the gateway's own DNS"
    );
    let stats = sealed.counters.snapshot();
    assert_eq!((stats.blocked, stats.sent, stats.flows), (1, 0, 0));
    // Not for the gateway's MAC, or not a datagram: not egress's.
    let mut frame = udp_frame([192, 0, 2, 1]);
    frame[..6].copy_from_slice(&CONTAINER_MAC);
    assert!(!take(&mut sealed, &frame));
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2(CONTAINER_MAC, GATEWAY_MAC)
        .ipv4([10, 9, 0, 2], [192, 0, 2, 1], 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .write(&mut tcp, &[])
        .unwrap();
    assert!(!take(&mut sealed, &tcp), "TCP is tcp_egress's");
    assert!(
        !take(&mut sealed, &[0u8; 10]),
        "garbage is the stack's to drop"
    );
}
