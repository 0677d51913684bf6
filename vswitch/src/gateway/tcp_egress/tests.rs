use super::*;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};

const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const CONTAINER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// What the gateway does with a frame: parse it, and offer it to TCP egress.
fn take(egress: &mut TcpEgress, frame: &[u8]) -> bool {
    Routed::parse(frame, GATEWAY_MAC).is_some_and(|r| egress.take(&r))
}

fn tcp_egress(internal: bool) -> TcpEgress {
    let gateway: IpAddr = "10.9.0.1".parse().unwrap();
    let beyond = Beyond {
        local: vec!["10.9.0.0/24".parse().unwrap()],
        gateways: vec![gateway],
        host_loopback: false,
    };
    TcpEgress::new(
        GATEWAY_MAC,
        1500,
        &[(gateway, 24)],
        beyond,
        internal,
        Arc::default(),
        Box::new(|_, _| Ok(())),
    )
    .0
}

#[test]
fn a_segment_of_no_known_connection_is_reset_from_the_address_it_was_sent_to() {
    let mut egress = tcp_egress(false);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CONTAINER_MAC, GATEWAY_MAC)
        .ipv4([10, 9, 0, 2], [192, 0, 2, 1], 64)
        .tcp(40000, 80, 1000, 1000)
        .ack(777)
        .write(&mut frame, b"data")
        .unwrap();
    assert!(take(&mut egress, &frame));
    let out = egress.pump();
    assert_eq!(out.len(), 1);
    let reset = SlicedPacket::from_ethernet(&out[0][VNET_HDR_LEN..]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &reset.net else {
        panic!("IPv4 expected");
    };
    assert_eq!(ip.header().source_addr().octets(), [192, 0, 2, 1]);
    assert_eq!(ip.header().destination_addr().octets(), [10, 9, 0, 2]);
    let Some(TransportSlice::Tcp(tcp)) = &reset.transport else {
        panic!("TCP expected");
    };
    assert!(tcp.rst());
    assert_eq!((tcp.source_port(), tcp.destination_port()), (80, 40000));
    assert_eq!(
        tcp.sequence_number(),
        777,
        "RFC 793: a reset takes the segment's ACK"
    );
}

fn syn(from: [u8; 4], port: u16) -> Vec<u8> {
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CONTAINER_MAC, GATEWAY_MAC)
        .ipv4(from, [192, 0, 2, 1], 64)
        .tcp(port, 80, 1, 1000)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    syn
}

// The connects run in tasks that this test never yields to, so none is attempted.
#[tokio::test(flavor = "current_thread")]
async fn one_container_holds_at_most_its_share_of_connections_and_the_excess_is_counted() {
    let mut egress = tcp_egress(false);
    for port in 0..=MAX_FLOWS_PER_ADDRESS as u16 {
        assert!(take(&mut egress, &syn([10, 9, 0, 2], 40000 + port)));
    }
    assert_eq!(egress.pending.len(), MAX_FLOWS_PER_ADDRESS);
    assert_eq!(egress.counters.snapshot().limited, 1);
    // Another container still may.
    assert!(take(&mut egress, &syn([10, 9, 0, 3], 40000)));
    assert_eq!(egress.pending.len(), MAX_FLOWS_PER_ADDRESS + 1);
    assert_eq!(egress.counters.snapshot().limited, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_is_reset_toward_the_container_and_forgotten() {
    let mut egress = tcp_egress(false);
    // A published port's client (a loopback pair stands in for the outside connection).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    stream.set_nonblocking(true).unwrap();
    egress.handle(Event::Inbound {
        stream: TcpStream::from_std(stream).unwrap(),
        client: "10.251.0.2:5555".parse().unwrap(),
        container: "10.9.0.2:80".parse().unwrap(),
        container_mac: CONTAINER_MAC,
    });
    let opening = egress.pump();
    assert_eq!(opening.len(), 1, "the SYN to the container");
    egress.expire(Instant::now() + TRANSITORY_IDLE / 2);
    assert!(egress.pump().is_empty(), "not idle long enough");
    egress.expire(Instant::now() + TRANSITORY_IDLE);
    let out = egress.pump();
    assert_eq!(out.len(), 1);
    let Some(TransportSlice::Tcp(tcp)) = SlicedPacket::from_ethernet(&out[0][VNET_HDR_LEN..])
        .unwrap()
        .transport
    else {
        panic!("TCP expected");
    };
    assert!(tcp.rst());
    assert_eq!((tcp.source_port(), tcp.destination_port()), (5555, 80));
    assert!(egress.flows.is_empty() && egress.by_key.is_empty());
    assert_eq!(egress.counters.snapshot().expired, 1);
}

#[test]
fn an_internal_network_refuses_connections_and_counts_them() {
    let mut egress = tcp_egress(true);
    let mut syn = Vec::new();
    PacketBuilder::ethernet2(CONTAINER_MAC, GATEWAY_MAC)
        .ipv4([10, 9, 0, 2], [192, 0, 2, 1], 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    assert!(take(&mut egress, &syn));
    assert!(egress.pump().is_empty());
    assert_eq!(egress.counters.snapshot().blocked, 1);
}
