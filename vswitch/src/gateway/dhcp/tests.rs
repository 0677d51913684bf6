//! Tests of `dhcp`.

use super::*;
use dhcproto::v4::{Flags, HType, Message, OptionCode};
use etherparse::{Ethernet2Slice, Ipv4Slice, PacketBuilder, UdpSlice};

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const RELAY_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 42);
const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

/// A udhcpc (busybox 1.35.0) DHCPDISCOVER captured with `tcpdump -xx` on a
/// veth in a scratch network namespace: `udhcpc -i va -x hostname:capbox`,
/// MAC 02:11:22:33:44:55, no broadcast flag, options 53, 57, 55, 12, 60, 61.
const UDHCPC_DISCOVER: &[u8] = &[
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x00, 0x45, 0x00,
    0x01, 0x48, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x79, 0xa6, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
    0xff, 0xff, 0x00, 0x44, 0x00, 0x43, 0x01, 0x34, 0x52, 0x5b, 0x01, 0x01, 0x06, 0x00, 0xf1, 0x26,
    0xa4, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x63, 0x82, 0x53, 0x63, 0x35, 0x01, 0x01, 0x39, 0x02, 0x02,
    0x40, 0x37, 0x07, 0x01, 0x03, 0x06, 0x0c, 0x0f, 0x1c, 0x2a, 0x0c, 0x06, 0x63, 0x61, 0x70, 0x62,
    0x6f, 0x78, 0x3c, 0x0c, 0x75, 0x64, 0x68, 0x63, 0x70, 0x20, 0x31, 0x2e, 0x33, 0x35, 0x2e, 0x30,
    0x3d, 0x07, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

fn cfg() -> ServerConfig {
    ServerConfig {
        server_mac: SERVER_MAC,
        server_ip: SERVER_IP,
        prefix_len: 24,
        router: Some(SERVER_IP),
        dns: vec![SERVER_IP, Ipv4Addr::new(9, 9, 9, 9)],
        mtu: Some(1450),
        lease_time: Duration::from_secs(3600),
        domain_name: Some("vswitch.internal".to_owned()),
    }
}

fn client_msg(kind: MessageType, xid: u32) -> Message {
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &CLIENT_MAC,
    );
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    msg
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut Encoder::new(&mut buf)).expect("encode");
    buf
}

fn wrap_udp(payload: &[u8], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, BROADCAST_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(CLIENT_PORT, port);
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).expect("write");
    frame
}

fn wrap(msg: &Message) -> Vec<u8> {
    wrap_udp(
        &encode(msg),
        CLIENT_MAC,
        msg.ciaddr(),
        Ipv4Addr::BROADCAST,
        SERVER_PORT,
    )
}

fn discover(broadcast: bool) -> Message {
    let mut msg = client_msg(MessageType::Discover, 0x1234_5678);
    if broadcast {
        msg.set_flags(Flags::default().set_broadcast());
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::ClientIdentifier(vec![
        1, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
    ]));
    opts.insert(DhcpOption::Hostname("vm1".to_owned()));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    msg
}

fn request_selecting() -> Message {
    let mut msg = client_msg(MessageType::Request, 0xdead_beef);
    msg.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(LEASED));
    msg.opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_IP));
    msg
}

fn request_renewing() -> Message {
    let mut msg = client_msg(MessageType::Request, 7);
    msg.set_ciaddr(LEASED);
    msg
}

/// A parsed reply frame, with both checksums verified.
struct Parsed {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    ttl: u8,
    dhcp_len: usize,
    msg: Message,
}

fn parse_reply(frame: &[u8]) -> Parsed {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).expect("eth");
    assert_eq!(eth.ether_type(), EtherType::IPV4);
    let ip = Ipv4Slice::from_slice(eth.payload_slice()).expect("ipv4");
    let ip_header = ip.header().to_header();
    assert_eq!(ip_header.header_checksum, ip_header.calc_header_checksum());
    assert_eq!(ip.payload_ip_number(), IpNumber::UDP);
    let udp = UdpSlice::from_slice(ip.payload().payload).expect("udp");
    let want = udp
        .to_header()
        .calc_checksum_ipv4(&ip_header, udp.payload())
        .expect("checksum");
    assert_eq!(udp.checksum(), want);
    assert_ne!(udp.checksum(), 0);
    let msg = Message::decode(&mut Decoder::new(udp.payload())).expect("dhcp");
    Parsed {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        src_ip: ip.header().source_addr(),
        dst_ip: ip.header().destination_addr(),
        src_port: udp.source_port(),
        dst_port: udp.destination_port(),
        ttl: ip.header().ttl(),
        dhcp_len: udp.payload().len(),
        msg,
    }
}

fn codes(msg: &Message) -> Vec<u8> {
    msg.opts().iter().map(|(c, _)| u8::from(*c)).collect()
}

fn assert_common(p: &Parsed, req: &DhcpRequest, yiaddr: Ipv4Addr) {
    assert_eq!(p.src_mac, SERVER_MAC);
    assert_eq!(p.src_ip, SERVER_IP);
    assert_eq!(p.src_port, SERVER_PORT);
    assert_eq!(p.ttl, 64);
    assert!(p.dhcp_len >= BOOTP_MIN_LEN);
    assert_eq!(p.msg.opcode(), Opcode::BootReply);
    assert_eq!(p.msg.htype(), HType::Eth);
    assert_eq!(p.msg.xid(), req.xid);
    assert_eq!(p.msg.chaddr(), &req.chaddr[..]);
    assert_eq!(p.msg.giaddr(), req.giaddr);
    assert_eq!(p.msg.yiaddr(), yiaddr);
    assert_eq!(p.msg.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        p.msg.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER_IP))
    );
}

fn assert_config_options(msg: &Message) {
    let o = msg.opts();
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![SERVER_IP]))
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(cfg().dns))
    );
    assert_eq!(
        o.get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1450))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("vswitch.internal".to_owned()))
    );
    assert_eq!(
        o.get(OptionCode::BroadcastAddr),
        Some(&DhcpOption::BroadcastAddr(Ipv4Addr::new(10, 0, 0, 255)))
    );
}

fn assert_lease_options(msg: &Message) {
    let o = msg.opts();
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(
        o.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
}

// ---- parse_request ----

#[test]
fn parses_discover_with_broadcast_flag() {
    let req = parse_request(&wrap(&discover(true))).expect("parse");
    assert_eq!(req.kind, QueryKind::Discover);
    assert_eq!(req.xid, 0x1234_5678);
    assert_eq!(req.chaddr, CLIENT_MAC);
    assert_eq!(req.src_mac, CLIENT_MAC);
    assert!(req.broadcast);
    assert_eq!(req.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(req.giaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(req.requested_ip, None);
    assert_eq!(req.server_id, None);
    assert_eq!(
        req.client_id.as_deref(),
        Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..])
    );
    assert_eq!(req.hostname.as_deref(), Some("vm1"));
    assert_eq!(req.max_message_size, Some(1500));
    assert_eq!(req.parameter_request_list(), &[1, 3, 6]);
}

#[test]
fn parses_discover_without_broadcast_flag() {
    let req = parse_request(&wrap(&discover(false))).expect("parse");
    assert_eq!(req.kind, QueryKind::Discover);
    assert!(!req.broadcast);
}

#[test]
fn parses_request_selecting() {
    let req = parse_request(&wrap(&request_selecting())).expect("parse");
    assert_eq!(req.kind, QueryKind::Request);
    assert_eq!(req.xid, 0xdead_beef);
    assert_eq!(req.requested_ip, Some(LEASED));
    assert_eq!(req.server_id, Some(SERVER_IP));
    assert_eq!(req.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(req.client_id, None);
    assert_eq!(req.hostname, None);
    assert_eq!(req.max_message_size, None);
}

#[test]
fn parses_request_renewing_sent_unicast() {
    let msg = request_renewing();
    let frame = wrap_udp(&encode(&msg), CLIENT_MAC, LEASED, SERVER_IP, SERVER_PORT);
    let req = parse_request(&frame).expect("parse");
    assert_eq!(req.kind, QueryKind::Request);
    assert_eq!(req.ciaddr, LEASED);
    assert_eq!(req.requested_ip, None);
    assert_eq!(req.server_id, None);
}

#[test]
fn parses_release_decline_and_inform() {
    let mut release = client_msg(MessageType::Release, 1);
    release.set_ciaddr(LEASED);
    release
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_IP));
    let req = parse_request(&wrap(&release)).expect("release");
    assert_eq!(req.kind, QueryKind::Release);
    assert_eq!(req.ciaddr, LEASED);
    assert_eq!(req.server_id, Some(SERVER_IP));

    let mut decline = client_msg(MessageType::Decline, 2);
    decline
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(LEASED));
    let req = parse_request(&wrap(&decline)).expect("decline");
    assert_eq!(req.kind, QueryKind::Decline);
    assert_eq!(req.requested_ip, Some(LEASED));

    let mut inform = client_msg(MessageType::Inform, 3);
    inform.set_ciaddr(LEASED);
    let req = parse_request(&wrap(&inform)).expect("inform");
    assert_eq!(req.kind, QueryKind::Inform);
    assert_eq!(req.ciaddr, LEASED);
}

#[test]
fn parses_relayed_request() {
    let mut msg = request_selecting();
    msg.set_giaddr(RELAY_IP);
    let frame = wrap_udp(&encode(&msg), RELAY_MAC, RELAY_IP, SERVER_IP, SERVER_PORT);
    let req = parse_request(&frame).expect("parse");
    assert_eq!(req.giaddr, RELAY_IP);
    assert_eq!(req.src_mac, RELAY_MAC);
    assert_eq!(req.chaddr, CLIENT_MAC);
}

#[test]
fn parses_captured_udhcpc_discover() {
    let req = parse_request(UDHCPC_DISCOVER).expect("parse");
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    assert_eq!(req.kind, QueryKind::Discover);
    assert_eq!(req.xid, 0xf126_a410);
    assert_eq!(req.chaddr, mac);
    assert_eq!(req.src_mac, mac);
    assert!(!req.broadcast);
    assert_eq!(req.hostname.as_deref(), Some("capbox"));
    assert_eq!(req.max_message_size, Some(576));
    assert_eq!(
        req.client_id.as_deref(),
        Some(&[1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55][..])
    );
    assert_eq!(req.parameter_request_list(), &[1, 3, 6, 12, 15, 28, 42]);

    // udhcpc does not set the broadcast flag, so the offer is unicast to
    // the offered address at chaddr, within udhcpc's 576-byte limit.
    let p = parse_reply(&build_reply(&req, Reply::Offer(LEASED), &cfg()).expect("build"));
    assert_common(&p, &req, LEASED);
    assert_eq!(p.dst_mac, mac);
    assert_eq!(p.dst_ip, LEASED);
    assert_eq!(p.dst_port, CLIENT_PORT);
    assert!(p.dhcp_len <= 576 - IP_UDP_HEADER_LEN);
    assert_eq!(
        p.msg.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(
            req.client_id.clone().unwrap_or_default()
        ))
    );
}

// ---- malformed and rejected input ----

fn dhcp_payload_frame(payload: &[u8]) -> Vec<u8> {
    wrap_udp(
        payload,
        CLIENT_MAC,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        SERVER_PORT,
    )
}

#[test]
fn rejects_truncated_and_foreign_frames() {
    let good = wrap(&discover(true));
    assert_eq!(parse_request(&[]), Err(DhcpDrop::Malformed));
    assert_eq!(parse_request(&good[..10]), Err(DhcpDrop::Malformed));
    assert_eq!(parse_request(&good[..14 + 10]), Err(DhcpDrop::Malformed));
    // IP total length says more than the frame holds.
    assert_eq!(
        parse_request(&good[..good.len() - 1]),
        Err(DhcpDrop::Malformed)
    );
    // UDP header cut short.
    assert_eq!(
        parse_request(&good[..14 + 20 + 4]),
        Err(DhcpDrop::Malformed)
    );

    let to_client = wrap_udp(
        &encode(&discover(true)),
        CLIENT_MAC,
        SERVER_IP,
        LEASED,
        CLIENT_PORT,
    );
    assert_eq!(parse_request(&to_client), Err(DhcpDrop::NotDhcp));

    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(parse_request(&arp), Err(DhcpDrop::NotDhcp));

    let mut vlan = good[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&good[12..]);
    assert_eq!(parse_request(&vlan), Err(DhcpDrop::NotDhcp));

    let mut bad_checksum = good.clone();
    bad_checksum[14 + 10] ^= 0xff;
    assert_eq!(parse_request(&bad_checksum), Err(DhcpDrop::Malformed));
}

#[test]
fn rejects_non_udp_and_fragments() {
    let payload = encode(&discover(true));
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, BROADCAST_MAC)
        .ipv4([0; 4], [255; 4], 64)
        .tcp(68, 67, 1, 1000)
        .write(&mut tcp, &payload)
        .expect("tcp");
    assert_eq!(parse_request(&tcp), Err(DhcpDrop::NotDhcp));

    // Set "more fragments" and fix the header checksum.
    let mut frag = wrap(&discover(true));
    frag[14 + 6] |= 0x20;
    let header = Ipv4Slice::from_slice(&frag[14..])
        .expect("ip")
        .header()
        .to_header();
    let sum = header.calc_header_checksum().to_be_bytes();
    frag[14 + 10..14 + 12].copy_from_slice(&sum);
    assert_eq!(parse_request(&frag), Err(DhcpDrop::NotDhcp));
}

#[test]
fn rejects_bad_dhcp_payloads() {
    let payload = encode(&discover(true));
    assert_eq!(
        parse_request(&dhcp_payload_frame(&payload[..100])),
        Err(DhcpDrop::Malformed)
    );

    let mut reply = discover(true);
    reply.set_opcode(Opcode::BootReply);
    assert_eq!(parse_request(&wrap(&reply)), Err(DhcpDrop::NotARequest));

    let mut no_type = discover(true);
    no_type.opts_mut().remove(OptionCode::MessageType);
    assert_eq!(parse_request(&wrap(&no_type)), Err(DhcpDrop::NoMessageType));

    // Replace END by a hostname option claiming 50 bytes with 2 present.
    let mut overrun = payload.clone();
    assert_eq!(overrun.pop(), Some(255));
    overrun.extend_from_slice(&[12, 50, b'a', b'b']);
    assert_eq!(
        parse_request(&dhcp_payload_frame(&overrun)),
        Err(DhcpDrop::Malformed)
    );

    let mut ieee802 = discover(true);
    ieee802.set_htype(HType::from(6));
    assert_eq!(
        parse_request(&wrap(&ieee802)),
        Err(DhcpDrop::BadHardwareAddress)
    );

    // hlen 17 would make dhcproto's chaddr() panic; it must be caught first.
    let mut long_hlen = payload.clone();
    long_hlen[2] = 17;
    assert_eq!(
        parse_request(&dhcp_payload_frame(&long_hlen)),
        Err(DhcpDrop::BadHardwareAddress)
    );

    let offer = client_msg(MessageType::Offer, 9);
    assert_eq!(
        parse_request(&wrap(&offer)),
        Err(DhcpDrop::UnsupportedMessageType)
    );

    let mut bad_cookie = payload.clone();
    bad_cookie[COOKIE_OFFSET] = 0;
    assert_eq!(
        parse_request(&dhcp_payload_frame(&bad_cookie)),
        Err(DhcpDrop::Malformed)
    );

    // Option 50 with a 3-byte value.
    let mut short_opt = payload.clone();
    assert_eq!(short_opt.pop(), Some(255));
    short_opt.extend_from_slice(&[50, 3, 10, 0, 0, 255]);
    assert_eq!(
        parse_request(&dhcp_payload_frame(&short_opt)),
        Err(DhcpDrop::Malformed)
    );

    // Options without END are tolerated when complete.
    let mut no_end = payload;
    assert_eq!(no_end.pop(), Some(255));
    assert!(parse_request(&dhcp_payload_frame(&no_end)).is_ok());
}

#[test]
fn option_lengths_dhcproto_would_panic_on_are_malformed() {
    // Each of these trips a debug_assert or an unchecked subtraction in
    // dhcproto 0.15's option decoder.
    let payload = encode(&discover(true));
    for bad in [
        &[80, 1, 0][..],
        &[81, 1, 0],
        &[94, 2, 0, 0],
        &[151, 0],
        &[152, 3, 0, 0, 0],
        &[155, 5, 0, 0, 0, 0, 0],
        // Two consecutive option-53 instances are concatenated by dhcproto.
        &[53, 1, 1, 53, 1, 1],
    ] {
        let mut p = payload.clone();
        assert_eq!(p.pop(), Some(255));
        p.extend_from_slice(bad);
        p.push(255);
        assert_eq!(
            parse_request(&dhcp_payload_frame(&p)),
            Err(DhcpDrop::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn drop_names_are_distinct_snake_case() {
    let all = [
        DhcpDrop::NotDhcp,
        DhcpDrop::Malformed,
        DhcpDrop::NotARequest,
        DhcpDrop::NoMessageType,
        DhcpDrop::UnsupportedMessageType,
        DhcpDrop::BadHardwareAddress,
    ];
    let mut names: Vec<_> = all.iter().map(|d| d.name()).collect();
    assert!(names
        .iter()
        .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
}

// ---- build_reply ----

#[test]
fn offer_to_broadcast_client_is_broadcast() {
    let req = parse_request(&wrap(&discover(true))).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::Offer(LEASED), &cfg()).expect("build"));
    assert_common(&p, &req, LEASED);
    assert_eq!(p.dst_mac, BROADCAST_MAC);
    assert_eq!(p.dst_ip, Ipv4Addr::BROADCAST);
    assert_eq!(p.dst_port, CLIENT_PORT);
    assert!(p.msg.flags().broadcast());
    assert_eq!(p.msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.msg.opts().msg_type(), Some(MessageType::Offer));
    assert_lease_options(&p.msg);
    assert_config_options(&p.msg);
}

#[test]
fn offer_to_unicast_client_goes_to_yiaddr_and_chaddr() {
    let req = parse_request(&wrap(&discover(false))).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::Offer(LEASED), &cfg()).expect("build"));
    assert_common(&p, &req, LEASED);
    assert_eq!(p.dst_mac, CLIENT_MAC);
    assert_eq!(p.dst_ip, LEASED);
    assert!(!p.msg.flags().broadcast());
}

#[test]
fn ack_to_selecting_request() {
    let req = parse_request(&wrap(&request_selecting())).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::Ack(LEASED), &cfg()).expect("build"));
    assert_common(&p, &req, LEASED);
    assert_eq!(p.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(p.dst_mac, CLIENT_MAC);
    assert_eq!(p.dst_ip, LEASED);
    assert_lease_options(&p.msg);
    assert_config_options(&p.msg);
}

#[test]
fn ack_to_renewing_client_is_unicast_to_ciaddr() {
    let mut msg = request_renewing();
    // Even with the broadcast flag, a configured client is unicast to ciaddr.
    msg.set_flags(Flags::default().set_broadcast());
    let req = parse_request(&wrap(&msg)).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::Ack(LEASED), &cfg()).expect("build"));
    assert_common(&p, &req, LEASED);
    assert_eq!(p.dst_mac, CLIENT_MAC);
    assert_eq!(p.dst_ip, LEASED);
    assert_eq!(p.dst_port, CLIENT_PORT);
    assert_eq!(p.msg.ciaddr(), LEASED);
}

#[test]
fn nak_is_broadcast_with_only_type_and_server_id() {
    let req = parse_request(&wrap(&request_renewing())).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::Nak, &cfg()).expect("build"));
    assert_common(&p, &req, Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.dst_mac, BROADCAST_MAC);
    assert_eq!(p.dst_ip, Ipv4Addr::BROADCAST);
    assert_eq!(p.dst_port, CLIENT_PORT);
    assert_eq!(p.msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.msg.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(codes(&p.msg), vec![53, 54]);
}

#[test]
fn relayed_replies_go_to_giaddr_port_67() {
    let mut msg = request_selecting();
    msg.set_giaddr(RELAY_IP);
    let frame = wrap_udp(&encode(&msg), RELAY_MAC, RELAY_IP, SERVER_IP, SERVER_PORT);
    let req = parse_request(&frame).expect("parse");
    for reply in [Reply::Ack(LEASED), Reply::Nak] {
        let p = parse_reply(&build_reply(&req, reply, &cfg()).expect("build"));
        assert_eq!(p.dst_mac, RELAY_MAC);
        assert_eq!(p.dst_ip, RELAY_IP);
        assert_eq!(p.dst_port, SERVER_PORT);
        assert_eq!(p.msg.giaddr(), RELAY_IP);
        // §4.3.2: the relay is told to broadcast a NAK.
        assert_eq!(p.msg.flags().broadcast(), reply == Reply::Nak);
    }
}

#[test]
fn inform_ack_has_config_but_no_lease() {
    let mut msg = client_msg(MessageType::Inform, 77);
    msg.set_ciaddr(LEASED);
    let req = parse_request(&wrap(&msg)).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::InformAck, &cfg()).expect("build"));
    assert_common(&p, &req, Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.dst_mac, CLIENT_MAC);
    assert_eq!(p.dst_ip, LEASED);
    assert_eq!(p.msg.ciaddr(), LEASED);
    assert_eq!(p.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_config_options(&p.msg);
    for code in [
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert!(!p.msg.opts().contains(code));
    }
}

#[test]
fn inform_without_ciaddr_falls_back_to_broadcast() {
    let req = parse_request(&wrap(&client_msg(MessageType::Inform, 5))).expect("parse");
    let p = parse_reply(&build_reply(&req, Reply::InformAck, &cfg()).expect("build"));
    assert_eq!(p.dst_mac, BROADCAST_MAC);
    assert_eq!(p.dst_ip, Ipv4Addr::BROADCAST);
}

#[test]
fn reply_is_clamped_to_max_message_size() {
    let mut big = cfg();
    big.dns = (1..=200).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
    let mut req = parse_request(&wrap(&discover(true))).expect("parse");

    req.max_message_size = None;
    let p = parse_reply(&build_reply(&req, Reply::Offer(LEASED), &big).expect("build"));
    assert!(p.dhcp_len <= 576 - IP_UDP_HEADER_LEN);
    assert_lease_options(&p.msg);
    assert!(p.msg.opts().contains(OptionCode::SubnetMask));
    assert!(p.msg.opts().contains(OptionCode::Router));
    assert!(!p.msg.opts().contains(OptionCode::DomainNameServer));

    req.max_message_size = Some(1500);
    let p = parse_reply(&build_reply(&req, Reply::Offer(LEASED), &big).expect("build"));
    assert!(p.dhcp_len <= 1500 - IP_UDP_HEADER_LEN);
    assert_eq!(
        p.msg.opts().get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(big.dns.clone()))
    );
}

#[test]
fn minimal_config_and_edge_prefixes() {
    let req = parse_request(&wrap(&discover(true))).expect("parse");
    let mut c = ServerConfig {
        server_mac: SERVER_MAC,
        server_ip: SERVER_IP,
        prefix_len: 32,
        router: None,
        dns: Vec::new(),
        mtu: None,
        lease_time: Duration::from_secs(u64::MAX),
        domain_name: None,
    };
    let p = parse_reply(&build_reply(&req, Reply::Offer(LEASED), &c).expect("build"));
    assert_eq!(codes(&p.msg), vec![1, 51, 53, 54, 61]);
    assert_eq!(
        p.msg.opts().get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::BROADCAST))
    );
    assert_eq!(
        p.msg.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(u32::MAX))
    );

    c.prefix_len = 0;
    c.lease_time = Duration::from_secs(1);
    let p = parse_reply(&build_reply(&req, Reply::Ack(LEASED), &c).expect("build"));
    assert_eq!(
        p.msg.opts().get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::UNSPECIFIED))
    );
    assert_eq!(
        p.msg.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(0))
    );
    assert_eq!(
        p.msg.opts().get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(0))
    );
}

// ---- robustness ----

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(3) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= (rng.next() as u8) | 1;
            }
            1 => {
                let len = rng.below(bytes.len() + 1);
                bytes.truncate(len);
            }
            _ => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, rng.next() as u8);
            }
        }
    }
}

#[test]
fn mutated_frames_never_panic() {
    let frames = [
        wrap(&discover(true)),
        wrap(&request_selecting()),
        UDHCPC_DISCOVER.to_vec(),
    ];
    let payloads: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let eth = Ethernet2Slice::from_slice_without_fcs(f).expect("eth");
            let ip = Ipv4Slice::from_slice(eth.payload_slice()).expect("ip");
            UdpSlice::from_slice(ip.payload().payload)
                .expect("udp")
                .payload()
                .to_vec()
        })
        .collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for i in 0..20_000 {
        let which = rng.below(frames.len());
        // Half the mutations hit the raw frame (exercising Ethernet/IP/UDP
        // checks); half hit the DHCP payload and are rewrapped with correct
        // lengths and checksums so they reach the DHCP decoder.
        let frame = if i % 2 == 0 {
            let mut f = frames[which].clone();
            mutate(&mut rng, &mut f);
            f
        } else {
            let mut p = payloads[which].clone();
            mutate(&mut rng, &mut p);
            dhcp_payload_frame(&p)
        };
        if let Ok(req) = parse_request(&frame) {
            parsed += 1;
            let reply = build_reply(&req, Reply::Offer(LEASED), &cfg()).expect("build");
            assert!(parse_request(&reply).is_err());
        }
    }
    // The mutations must leave enough frames valid to exercise build_reply.
    assert!(parsed > 1_000, "only {parsed} mutated frames parsed");
}
