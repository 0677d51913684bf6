//! Embedded DNS server of a network gateway: answers containers' queries for local names
//! (endpoint names and aliases, and their reverse PTR names) and forwards the rest upstream.
//!
//! The answering half ([`handle_query`], [`servfail`], [`fit_reply`]) is sans-IO: bytes in,
//! an [`Outcome`] or bytes out, no sockets and no clock. It never panics on any input: a
//! message that does not parse is a counted [`DnsDrop`], never an error. The forwarding half
//! ([`forward`]) is the only async code and always returns within the timeout it is given.
//!
//! Policy, as Docker's embedded DNS and systemd-resolved do it:
//! - local names are matched case-insensitively and answered authoritatively with
//!   [`LOCAL_TTL`]; a local name without an address of the asked family (or asked for another
//!   type) gets NOERROR with no answer, never NXDOMAIN, so resolvers go on to the other family;
//! - an unknown single-label name gets NXDOMAIN and is never forwarded: single-label names are
//!   container names, and leaking them to the upstream resolver only leaks information;
//! - everything else, including reverse names of addresses that are not local, is forwarded
//!   byte for byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// What the gateway knows about names on the querying container's networks.
pub trait Names {
    /// Addresses of `name` (lower-case, no trailing dot) if it is a local name (an endpoint name or alias);
    /// Some(empty vec) is impossible — None means "not a local name".
    fn addresses(&self, name: &str) -> Option<Vec<IpAddr>>;
    /// The local name owning `ip`, if any.
    fn name_of(&self, ip: IpAddr) -> Option<String>;
}

/// What to do with one incoming DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this response to the client.
    Reply(Vec<u8>),
    /// Not ours: forward the client's query (these exact bytes) upstream, relay the answer.
    Forward(Vec<u8>),
    /// Malformed or not a query: drop silently, counted under this reason.
    Drop(DnsDrop),
}

/// Why a DNS message was dropped (each has a stable snake_case `name()` for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DnsDrop {
    /// The message does not parse as DNS (truncated, bad name, pointer loop, ...).
    #[error("malformed DNS message")]
    Malformed,
    /// The message is a response (QR=1), not a query; answering it could start a loop.
    #[error("DNS message is not a query")]
    NotAQuery,
    /// The reply could not be encoded (should not happen; counted rather than panicking).
    #[error("DNS reply could not be encoded")]
    Unencodable,
}

impl DnsDrop {
    /// Stable snake_case name of the reason, for metrics and traces.
    pub fn name(self) -> &'static str {
        match self {
            DnsDrop::Malformed => "malformed",
            DnsDrop::NotAQuery => "not_a_query",
            DnsDrop::Unencodable => "unencodable",
        }
    }
}

/// Why forwarding a query upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstream resolver is configured.
    #[error("no upstream DNS server configured")]
    NoUpstream,
    /// No valid answer arrived before the deadline.
    #[error("upstream DNS servers did not answer in time")]
    Timeout,
    /// A socket operation failed (e.g. ICMP port unreachable on the last server).
    #[error("upstream DNS i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// An upstream answer over TCP did not parse or did not match the query.
    #[error("upstream DNS answer does not match the query")]
    BadAnswer,
    /// The query itself does not parse or is too long to send, so no answer could be matched to it.
    #[error("query to forward is not a valid DNS message")]
    BadQuery,
}

/// TTL of local answers, seconds (Docker uses 600).
pub const LOCAL_TTL: u32 = 600;

/// UDP payload size advertised in our OPT record: the DNS flag day 2020 value, which avoids
/// IP fragmentation on any sane path.
const EDNS_PAYLOAD: u16 = 1232;

/// Smallest possible question: root name (1 byte), type and class (4 bytes).
const MIN_QUESTION_LEN: usize = 5;

/// DNS header length.
const HEADER_LEN: usize = 12;

/// Answers a query from local names, or says to forward it. `max_len` is the largest reply the
/// transport takes (512 for plain UDP, or the client's EDNS UDP size; 65535 for TCP): a larger reply is
/// truncated with TC set.
///
/// If the query carries EDNS, the limit is raised to the client's advertised UDP payload size
/// (at least 512) when that is larger than `max_len`, so a UDP caller can always pass 512. The
/// reply then carries an OPT record too.
pub fn handle_query(packet: &[u8], names: &impl Names, max_len: usize) -> Outcome {
    let query = match parse(packet) {
        Some(q) => q,
        None => return Outcome::Drop(DnsDrop::Malformed),
    };
    if query.metadata.message_type != MessageType::Query {
        return Outcome::Drop(DnsDrop::NotAQuery);
    }
    let limit = reply_limit(&query, max_len);

    if query.metadata.op_code != OpCode::Query {
        return encode(response(&query, ResponseCode::NotImp, true), limit);
    }
    let question = match query.queries.as_slice() {
        [q] => q,
        _ => return encode(response(&query, ResponseCode::FormErr, false), limit),
    };
    if question.query_class() != DNSClass::IN {
        return encode(response(&query, ResponseCode::Refused, true), limit);
    }

    let labels: Vec<&[u8]> = question.name().iter().collect();
    let reverse = match question.query_type() {
        RecordType::PTR => reverse_ip(&labels),
        _ => None,
    };
    if let Some(ip) = reverse {
        return match names.name_of(ip).and_then(|n| ptr_target(&n)) {
            Some(target) => {
                let mut reply = local_answer(&query);
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    LOCAL_TTL,
                    RData::PTR(PTR(target)),
                ));
                encode(reply, limit)
            }
            // Not a local address: the upstream may know it (host LAN, public space).
            None => Outcome::Forward(packet.to_vec()),
        };
    }

    let local = name_key(&labels).and_then(|key| names.addresses(&key));
    match local {
        Some(addrs) => {
            let qtype = question.query_type();
            let mut reply = local_answer(&query);
            for ip in addrs {
                let data = match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(question.name().clone(), LOCAL_TTL, data));
            }
            encode(reply, limit)
        }
        // Single-label names are container names: an unknown one does not exist anywhere.
        None if labels.len() == 1 => encode(response(&query, ResponseCode::NXDomain, true), limit),
        None => Outcome::Forward(packet.to_vec()),
    }
}

/// A SERVFAIL response to `query` (same ID and question), for when upstream fails; None if the query cannot be parsed.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let query = parse(query)?;
    response(&query, ResponseCode::ServFail, true).to_vec().ok()
}

/// Fits an upstream `answer` to the client that sent `query` over a transport taking at most
/// `max_len` bytes (raised by the query's EDNS size exactly as in [`handle_query`]): returns it
/// unchanged if it fits, else a copy with TC set and no records; None if `answer` does not parse.
///
/// Needed because [`forward`] may fetch a large answer over TCP for a client that asked over UDP.
pub fn fit_reply(answer: &[u8], query: &[u8], max_len: usize) -> Option<Vec<u8>> {
    let limit = match parse(query) {
        Some(q) => reply_limit(&q, max_len),
        None => max_len,
    };
    if answer.len() <= limit {
        return Some(answer.to_vec());
    }
    parse(answer)?.truncate().to_vec().ok()
}

/// Upstream resolvers from resolv.conf text (nameserver lines, port 53). Loopback servers are kept:
/// the daemon forwards from its own network namespace, so a host stub resolver on 127.0.0.53 works.
///
/// Lines that do not parse are skipped, not fatal. An IPv6 scope (`fe80::1%3`) is kept only if
/// it is numeric; an interface-name scope is dropped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let (config, _errors) = resolv_conf::Config::parse_with_errors(text.as_bytes());
    config
        .nameservers
        .iter()
        .map(|ip| match ip {
            resolv_conf::ScopedIp::V4(v4) => SocketAddr::new(IpAddr::V4(*v4), 53),
            resolv_conf::ScopedIp::V6(v6, scope) => {
                let scope_id = scope.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
                SocketAddr::V6(SocketAddrV6::new(*v6, 53, 0, scope_id))
            }
        })
        .collect()
}

/// Sends `query` to the upstream servers in turn over UDP (retrying over TCP when the answer is truncated)
/// and returns the first valid answer (ID and question match the query). Gives up after `timeout` in
/// total (never hangs), with an error.
///
/// Each server gets an equal share of the time still left (`remaining / servers left`), so a
/// server that fails fast (ICMP unreachable, refused TCP) hands its time to the next ones. UDP
/// datagrams that do not match the query are ignored (they may be late answers or spoofs) and
/// the wait goes on. An answer with an empty question section is accepted only if it is an
/// error (some servers omit the question in FORMERR/REFUSED). If every server fails, the last
/// server's error is returned.
pub async fn forward(
    query: &[u8],
    upstreams: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<u8>, ForwardError> {
    let parsed = parse(query).ok_or(ForwardError::BadQuery)?;
    if upstreams.is_empty() {
        return Err(ForwardError::NoUpstream);
    }
    // The outer timeout is the guarantee; the per-server split below is only fairness.
    tokio::time::timeout(timeout, forward_all(query, &parsed, upstreams, timeout))
        .await
        .unwrap_or(Err(ForwardError::Timeout))
}

async fn forward_all(
    query: &[u8],
    parsed: &Message,
    upstreams: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<u8>, ForwardError> {
    let deadline = Instant::now().checked_add(timeout);
    let mut last = ForwardError::Timeout;
    for (i, server) in upstreams.iter().enumerate() {
        let remaining = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => timeout,
        };
        let left = u32::try_from(upstreams.len() - i).unwrap_or(u32::MAX);
        let budget = remaining / left;
        match tokio::time::timeout(budget, ask_udp(*server, query, parsed)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = e,
            Err(_) => last = ForwardError::Timeout,
        }
    }
    Err(last)
}

/// One UDP exchange with `server`, redone over TCP if the answer is truncated.
async fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    parsed: &Message,
) -> Result<Vec<u8>, ForwardError> {
    let bind = match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    // A fresh socket per attempt gets a random source port, and connecting it makes the
    // kernel drop datagrams from anyone but the server and report ICMP errors to us.
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        // ConnectionRefused (ICMP port unreachable) ends this server at once.
        let n = socket.recv(&mut buf).await?;
        let Some(bytes) = buf.get(..n) else { continue };
        let Some(answer) = parse(bytes) else { continue };
        if !answers(parsed, &answer) {
            continue;
        }
        if answer.metadata.truncation {
            return ask_tcp(server, query, parsed).await;
        }
        return Ok(bytes.to_vec());
    }
}

/// One TCP exchange with `server` (RFC 1035 4.2.2: 2-byte big-endian length prefix).
async fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    parsed: &Message,
) -> Result<Vec<u8>, ForwardError> {
    let len = u16::try_from(query.len()).map_err(|_| ForwardError::BadQuery)?;
    let mut stream = TcpStream::connect(server).await?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    stream.write_all(&out).await?;
    let mut len_buf = [0u8; 2];
    stream.read_exact(&mut len_buf).await?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len_buf))];
    stream.read_exact(&mut body).await?;
    match parse(&body) {
        Some(answer) if answers(parsed, &answer) => Ok(body),
        _ => Err(ForwardError::BadAnswer),
    }
}

/// Whether `answer` is a response to `query`: same ID, same question (names compared
/// case-insensitively, as hickory's `Name` equality does), or no question on an error.
fn answers(query: &Message, answer: &Message) -> bool {
    answer.metadata.message_type == MessageType::Response
        && answer.metadata.id == query.metadata.id
        && (answer.queries == query.queries
            || (answer.queries.is_empty()
                && answer.metadata.response_code != ResponseCode::NoError))
}

/// Parses a message, rejecting up front a header that claims more questions than the packet
/// could hold: hickory reserves a `Vec` for the claimed count, and 65535 questions would make
/// every tiny bogus packet a multi-megabyte allocation.
fn parse(packet: &[u8]) -> Option<Message> {
    let qdcount = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
    let room = packet.len().saturating_sub(HEADER_LEN) / MIN_QUESTION_LEN;
    if qdcount > room {
        return None;
    }
    Message::from_vec(packet).ok()
}

/// The reply size limit for `query` on a transport taking `max_len` bytes (see [`handle_query`]).
fn reply_limit(query: &Message, max_len: usize) -> usize {
    match &query.edns {
        // RFC 6891 6.2.5: values below 512 are treated as 512.
        Some(edns) => max_len.max(usize::from(edns.max_payload().max(512))),
        None => max_len,
    }
}

/// A response skeleton for `query`: same ID, opcode, RD and CD, RA set (we do forward), the
/// question echoed if `echo_question`, and an OPT record if the query had one.
fn response(query: &Message, rcode: ResponseCode, echo_question: bool) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = rcode;
    if echo_question {
        reply.add_queries(query.queries.iter().cloned());
    }
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// An authoritative NOERROR skeleton for a query about a local name.
fn local_answer(query: &Message) -> Message {
    let mut reply = response(query, ResponseCode::NoError, true);
    reply.metadata.authoritative = true;
    reply
}

/// Encodes `reply`, truncated (TC set, no records) if it is longer than `limit`.
fn encode(reply: Message, limit: usize) -> Outcome {
    match reply.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Outcome::Reply(bytes),
        // Question and OPT alone always fit in 512 bytes, the smallest limit a caller passes.
        Ok(_) => match reply.truncate().to_vec() {
            Ok(bytes) => Outcome::Reply(bytes),
            Err(_) => Outcome::Drop(DnsDrop::Unencodable),
        },
        Err(_) => Outcome::Drop(DnsDrop::Unencodable),
    }
}

/// The lookup key of a name: lower-case labels joined by dots, no trailing dot. None if a
/// label holds a byte no container name or alias can contain (a dot inside a label, binary
/// data, ...), so such a name can never alias a local one.
fn name_key(labels: &[&[u8]]) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    let mut key = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        for &b in *label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            key.push(char::from(b.to_ascii_lowercase()));
        }
    }
    Some(key)
}

/// The address named by a full reverse name (`d.c.b.a.in-addr.arpa` or 32 nibbles then
/// `ip6.arpa`), or None for anything else, including partial reverse names.
fn reverse_ip(labels: &[&[u8]]) -> Option<IpAddr> {
    let (arpa, rest) = labels.split_last()?;
    let (zone, digits) = rest.split_last()?;
    if !arpa.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    if zone.eq_ignore_ascii_case(b"in-addr") {
        if digits.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (octet, label) in octets.iter_mut().rev().zip(digits) {
            *octet = parse_octet(label)?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if zone.eq_ignore_ascii_case(b"ip6") {
        if digits.len() != 32 {
            return None;
        }
        let mut value: u128 = 0;
        // Least significant nibble comes first in the name.
        for label in digits.iter().rev() {
            let [c] = label else { return None };
            let nibble = char::from(*c).to_digit(16)?;
            value = (value << 4) | u128::from(nibble);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

/// A decimal octet label: 1 to 3 ASCII digits, at most 255 (no sign, unlike `u8::from_str`).
fn parse_octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || !label.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(label).ok()?.parse().ok()
}

/// The fully-qualified PTR target for a local name, or None if it is not a valid DNS name.
fn ptr_target(name: &str) -> Option<Name> {
    let mut target = Name::from_ascii(name.trim_end_matches('.')).ok()?;
    target.set_fqdn(true);
    Some(target)
}

#[cfg(test)]
mod tests {
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
}
