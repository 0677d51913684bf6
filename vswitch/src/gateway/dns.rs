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
mod tests;
