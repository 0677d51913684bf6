//! Tests of `dns`.

use super::*;
use hickory_proto::op::Query;
use std::collections::HashMap;
use std::str::FromStr;

struct Table(HashMap<String, Vec<IpAddr>>);

impl Names for Table {
    fn addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.0.get(name).cloned()
    }
    fn name_of(&self, ip: IpAddr) -> Option<String> {
        self.0
            .iter()
            .find(|(_, addrs)| addrs.contains(&ip))
            .map(|(n, _)| n.clone())
    }
}

fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).expect("test address")
}

fn table() -> Table {
    let mut m = HashMap::new();
    m.insert("web".to_string(), vec![ip("172.18.0.2")]);
    m.insert(
        "db".to_string(),
        vec![ip("172.18.0.3"), ip("fd00::3"), ip("172.18.0.33")],
    );
    m.insert("only6".to_string(), vec![ip("fd00::6")]);
    Table(m)
}

fn query_bytes(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(
        Name::from_ascii(name).expect("test name"),
        qtype,
    ));
    msg.to_vec().expect("encode query")
}

fn reply(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Reply(bytes) => Message::from_vec(&bytes).expect("reply parses"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ask(name: &str, qtype: RecordType) -> Message {
    reply(handle_query(
        &query_bytes(name, qtype, 0x1234),
        &table(),
        512,
    ))
}

fn addrs(msg: &Message) -> Vec<IpAddr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_for_local_name() {
    let m = ask("web.", RecordType::A);
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_available);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(addrs(&m), vec![ip("172.18.0.2")]);
    assert_eq!(m.answers[0].ttl, LOCAL_TTL);
    assert!(m.edns.is_none());
}

#[test]
fn aaaa_for_dual_stack_name_and_any() {
    let m = ask("db", RecordType::AAAA);
    assert_eq!(addrs(&m), vec![ip("fd00::3")]);
    let m = ask("db", RecordType::A);
    assert_eq!(addrs(&m), vec![ip("172.18.0.3"), ip("172.18.0.33")]);
    let m = ask("db", RecordType::ANY);
    assert_eq!(m.answers.len(), 3);
}

#[test]
fn known_name_without_family_or_other_type_is_empty_noerror() {
    for (name, t) in [
        ("web", RecordType::AAAA),
        ("only6", RecordType::A),
        ("web", RecordType::MX),
        ("web", RecordType::TXT),
    ] {
        let m = ask(name, t);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{name} {t}"
        );
        assert!(m.answers.is_empty());
        assert!(m.metadata.authoritative);
    }
}

#[test]
fn unknown_single_label_is_nxdomain() {
    let m = ask("nosuch", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
}

#[test]
fn unknown_multi_label_is_forwarded_verbatim() {
    let q = query_bytes("example.com.", RecordType::A, 7);
    assert_eq!(handle_query(&q, &table(), 512), Outcome::Forward(q.clone()));
    // The root name is not a container name either.
    let q = query_bytes(".", RecordType::NS, 8);
    assert_eq!(handle_query(&q, &table(), 512), Outcome::Forward(q.clone()));
}

#[test]
fn case_insensitive_and_question_case_preserved() {
    let m = ask("WeB.", RecordType::A);
    assert_eq!(addrs(&m), vec![ip("172.18.0.2")]);
    assert_eq!(m.queries[0].name().to_ascii(), "WeB.");
    assert_eq!(m.answers[0].name.to_ascii(), "WeB.");
}

#[test]
fn ptr_v4_and_v6() {
    let m = ask("2.0.18.172.in-addr.arpa.", RecordType::PTR);
    assert!(m.metadata.authoritative);
    match &m.answers[..] {
        [r] => {
            assert_eq!(r.ttl, LOCAL_TTL);
            assert_eq!(r.data, RData::PTR(PTR(Name::from_ascii("web.").unwrap())));
        }
        other => panic!("{other:?}"),
    }
    let v6 = "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.F.ip6.ARPA.";
    let m = ask(v6, RecordType::PTR);
    assert_eq!(
        m.answers[0].data,
        RData::PTR(PTR(Name::from_ascii("only6.").unwrap()))
    );
}

#[test]
fn ptr_unknown_or_malformed_is_forwarded() {
    for name in [
        "9.9.9.9.in-addr.arpa.",
        "0.18.172.in-addr.arpa.",
        "256.0.18.172.in-addr.arpa.",
        "x.0.18.172.in-addr.arpa.",
        "6.0.d.f.ip6.arpa.",
    ] {
        let q = query_bytes(name, RecordType::PTR, 9);
        assert_eq!(handle_query(&q, &table(), 512), Outcome::Forward(q.clone()));
    }
    assert_eq!(parse_octet(b"+2"), None);
    assert_eq!(parse_octet(b"0255"), None);
    assert_eq!(parse_octet(b"255"), Some(255));
}

#[test]
fn non_query_opcode_is_notimp() {
    let mut msg = Message::new(77, MessageType::Query, OpCode::Status);
    msg.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    let m = reply(handle_query(&msg.to_vec().unwrap(), &table(), 512));
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(m.metadata.id, 77);
    assert_eq!(m.queries.len(), 1);
}

#[test]
fn question_count_not_one_is_formerr() {
    let mut msg = Message::new(78, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    msg.add_query(Query::query(
        Name::from_ascii("db.").unwrap(),
        RecordType::A,
    ));
    let m = reply(handle_query(&msg.to_vec().unwrap(), &table(), 512));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 78);
    let msg = Message::new(79, MessageType::Query, OpCode::Query);
    let m = reply(handle_query(&msg.to_vec().unwrap(), &table(), 512));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn non_in_class_is_refused() {
    let mut q = Query::query(Name::from_ascii("web.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    let mut msg = Message::new(80, MessageType::Query, OpCode::Query);
    msg.add_query(q);
    let m = reply(handle_query(&msg.to_vec().unwrap(), &table(), 512));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn response_is_dropped() {
    let mut msg = Message::new(81, MessageType::Response, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        handle_query(&msg.to_vec().unwrap(), &table(), 512),
        Outcome::Drop(DnsDrop::NotAQuery)
    );
    assert_eq!(DnsDrop::NotAQuery.name(), "not_a_query");
    assert_eq!(DnsDrop::Malformed.name(), "malformed");
}

#[test]
fn edns_echoed_and_raises_limit() {
    let mut m = HashMap::new();
    let many: Vec<IpAddr> = (1..=100u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
        .collect();
    m.insert("big".to_string(), many);
    let names = Table(m);

    // Without EDNS: 100 A records do not fit in 512 bytes.
    let q = query_bytes("big", RecordType::A, 5);
    let r = reply(handle_query(&q, &names, 512));
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    assert_eq!(r.queries.len(), 1);
    // Over TCP they do.
    let r = reply(handle_query(&q, &names, 65535));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);

    // With EDNS 4096 a UDP caller passing 512 gets all of them, plus an OPT.
    let mut msg = Message::from_vec(&q).unwrap();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    msg.set_edns(edns);
    let r = reply(handle_query(&msg.to_vec().unwrap(), &names, 512));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);
    assert_eq!(r.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
}

#[test]
fn fit_reply_truncates_oversized_answers() {
    let mut names = HashMap::new();
    let many: Vec<IpAddr> = (1..=100u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
        .collect();
    names.insert("big".to_string(), many);
    let q = query_bytes("big", RecordType::A, 5);
    let Outcome::Reply(full) = handle_query(&q, &Table(names), 65535) else {
        panic!("expected reply")
    };
    assert_eq!(fit_reply(&full, &q, 65535), Some(full.clone()));
    let small = fit_reply(&full, &q, 512).expect("fits");
    let m = Message::from_vec(&small).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(fit_reply(&[1, 2, 3], &q, 2), None);
}

fn assert_malformed(bytes: &[u8]) {
    assert_eq!(
        handle_query(bytes, &table(), 512),
        Outcome::Drop(DnsDrop::Malformed),
        "{bytes:02x?}"
    );
}

/// A header for a query with ID 0x0102, RD, and `qd` questions.
fn header(qd: u16) -> Vec<u8> {
    let mut h = vec![0x01, 0x02, 0x01, 0x00];
    h.extend_from_slice(&qd.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    h
}

#[test]
fn malformed_inputs_are_dropped() {
    assert_malformed(&[]);
    assert_malformed(&[0; 11]);
    assert_malformed(&header(1));
    assert_malformed(&header(u16::MAX));

    // Name longer than 255 bytes: five 63-byte labels.
    let mut long = header(1);
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_malformed(&long);

    // Label length 64 is not a label (0b01 prefix is reserved).
    let mut label = header(1);
    label.push(64);
    label.extend_from_slice(&[b'a'; 64]);
    label.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_malformed(&label);

    // Compression pointer at offset 12 pointing at itself.
    let mut own = header(1);
    own.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
    assert_malformed(&own);

    // Two pointers pointing at each other.
    let mut pair = header(1);
    pair.extend_from_slice(&[0xC0, 0x0E, 0xC0, 0x0C, 0, 1, 0, 1]);
    assert_malformed(&pair);

    // Truncated question (type but no class).
    let mut cut = header(1);
    cut.extend_from_slice(&[3, b'w', b'e', b'b', 0, 0, 1]);
    assert_malformed(&cut);
}

#[test]
fn trailing_garbage_is_accepted() {
    let mut q = query_bytes("web", RecordType::A, 3);
    q.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(addrs(&reply(handle_query(&q, &table(), 512))).len(), 1);
}

#[test]
fn mutations_never_panic() {
    let seeds = [
        query_bytes("web", RecordType::A, 1),
        query_bytes("2.0.18.172.in-addr.arpa.", RecordType::PTR, 2),
        {
            let mut m =
                Message::from_vec(&query_bytes("example.com.", RecordType::AAAA, 3)).unwrap();
            m.set_edns(Edns::new());
            m.to_vec().unwrap()
        },
    ];
    let names = table();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut replies, mut forwards, mut drops) = (0, 0, 0);
    for i in 0..20_000usize {
        let mut bytes = seeds[i % seeds.len()].clone();
        let edits = 1 + next() % 4;
        for _ in 0..edits {
            let r = next();
            let len = bytes.len().max(1);
            let pos = (r >> 8) as usize % len;
            match r % 4 {
                0 | 1 => {
                    if let Some(b) = bytes.get_mut(pos) {
                        *b = (r >> 32) as u8;
                    }
                }
                2 => bytes.truncate(pos),
                _ => bytes.insert(pos.min(bytes.len()), (r >> 40) as u8),
            }
        }
        match handle_query(&bytes, &names, 512) {
            Outcome::Reply(out) => {
                replies += 1;
                let m = Message::from_vec(&out).expect("reply parses");
                assert_eq!(m.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                assert_eq!(m.metadata.message_type, MessageType::Response);
                assert!(out.len() <= 65535);
            }
            Outcome::Forward(out) => {
                forwards += 1;
                assert_eq!(out, bytes);
            }
            Outcome::Drop(_) => drops += 1,
        }
    }
    // The corpus must exercise every outcome, or the test proves little.
    assert!(replies > 100 && forwards > 100 && drops > 100);
}

#[test]
fn servfail_round_trip() {
    let q = query_bytes("example.com.", RecordType::A, 0xBEEF);
    let m = Message::from_vec(&servfail(&q).expect("parses")).unwrap();
    assert_eq!(m.metadata.id, 0xBEEF);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.queries, Message::from_vec(&q).unwrap().queries);
    assert_eq!(servfail(&[1, 2, 3]), None);
}

#[test]
fn resolv_conf_parsing() {
    let text = "# generated\n\
                nameserver 127.0.0.53\n\
                ; old style comment\n\
                nameserver 2001:db8::1\n\
                search corp.example\n\
                options edns0 trust-ad ndots:2\n\
                nameserver fe80::1%2\n\
                nameserver not-an-ip\n\
                nameserver 8.8.8.8 # trailing comment\n";
    let ups = upstreams_from_resolv_conf(text);
    assert_eq!(
        ups,
        vec![
            SocketAddr::from_str("127.0.0.53:53").unwrap(),
            SocketAddr::from_str("[2001:db8::1]:53").unwrap(),
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from_str("fe80::1").unwrap(),
                53,
                0,
                2
            )),
            SocketAddr::from_str("8.8.8.8:53").unwrap(),
        ]
    );
    assert!(upstreams_from_resolv_conf("").is_empty());
}

/// A stub upstream's answer to `query`: the name maps to 192.0.2.1, or TC with no records.
fn stub_answer(query: &[u8], truncated: bool) -> Vec<u8> {
    let q = Message::from_vec(query).expect("stub got a valid query");
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.add_queries(q.queries.iter().cloned());
    if truncated {
        r.metadata.truncation = true;
    } else {
        r.add_answer(Record::from_rdata(
            q.queries[0].name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
    }
    r.to_vec().expect("stub encodes")
}

/// Runs a UDP stub upstream on `socket`; first sends a mismatched-ID decoy to test filtering.
fn spawn_udp_stub(socket: UdpSocket, truncated: bool) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut decoy = stub_answer(&buf[..n], false);
            decoy[0] ^= 0xFF;
            let _ = socket.send_to(&decoy, from).await;
            let _ = socket
                .send_to(&stub_answer(&buf[..n], truncated), from)
                .await;
        }
    });
}

fn answer_ip(bytes: &[u8]) -> Vec<IpAddr> {
    addrs(&Message::from_vec(bytes).expect("answer parses"))
}

async fn local_udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind udp")
}

#[tokio::test]
async fn forward_gets_answer() {
    let stub = local_udp().await;
    let addr = stub.local_addr().unwrap();
    spawn_udp_stub(stub, false);
    let q = query_bytes("example.com.", RecordType::A, 42);
    let a = forward(&q, &[addr], Duration::from_secs(2)).await.unwrap();
    assert_eq!(answer_ip(&a), vec![ip("192.0.2.1")]);
    assert_eq!(Message::from_vec(&a).unwrap().metadata.id, 42);
}

#[tokio::test]
async fn forward_times_out_on_black_hole() {
    let hole = local_udp().await;
    let addr = hole.local_addr().unwrap();
    let q = query_bytes("example.com.", RecordType::A, 43);
    let start = std::time::Instant::now();
    let r = forward(&q, &[addr], Duration::from_secs(1)).await;
    assert!(matches!(r, Err(ForwardError::Timeout)), "{r:?}");
    assert!(start.elapsed() < Duration::from_millis(1500));
    drop(hole);
}

#[tokio::test]
async fn forward_skips_closed_port() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let stub = local_udp().await;
    let addr = stub.local_addr().unwrap();
    spawn_udp_stub(stub, false);
    let q = query_bytes("example.com.", RecordType::A, 44);
    let start = std::time::Instant::now();
    let a = forward(&q, &[closed_addr, addr], Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(answer_ip(&a), vec![ip("192.0.2.1")]);
    // ICMP unreachable moved on at once instead of waiting out the first server's 2 s.
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn forward_no_upstream_and_bad_query() {
    let q = query_bytes("example.com.", RecordType::A, 45);
    let r = forward(&q, &[], Duration::from_secs(1)).await;
    assert!(matches!(r, Err(ForwardError::NoUpstream)));
    let r = forward(&[1, 2], &[], Duration::from_secs(1)).await;
    assert!(matches!(r, Err(ForwardError::BadQuery)));
}

#[tokio::test]
async fn forward_retries_truncated_over_tcp() {
    // Find a port free for both UDP and TCP.
    let (udp, tcp) = loop {
        let udp = local_udp().await;
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    spawn_udp_stub(udp, true);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if s.read_exact(&mut q).await.is_err() {
                continue;
            }
            let a = stub_answer(&q, false);
            let mut out = (a.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&a);
            let _ = s.write_all(&out).await;
        }
    });
    let q = query_bytes("example.com.", RecordType::A, 46);
    let a = forward(&q, &[addr], Duration::from_secs(2)).await.unwrap();
    let m = Message::from_vec(&a).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(answer_ip(&a), vec![ip("192.0.2.1")]);
}
