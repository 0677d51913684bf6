//! Sans-IO DHCPv4 server wire layer for the per-network gateway: parses client
//! requests out of whole Ethernet frames and builds reply frames (RFC 2131 §4.1, §4.3).
//!
//! Guarantees: no sockets, no clock, no global state. [`parse_request`] never
//! panics on any input and reports every rejected frame as a [`DhcpDrop`]
//! with a stable metric name. [`build_reply`] emits a complete Ethernet II /
//! IPv4 / UDP frame with valid IPv4 and UDP checksums and a DHCP payload of at
//! least the 300-byte BOOTP minimum, no larger than the client's maximum
//! message size. Which address a client gets is decided elsewhere (the
//! control plane owns address management); this module only carries the
//! decision on the wire.

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{self, DhcpOption, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use etherparse::{EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, PacketBuilder, UdpSlice};

use crate::model::leases::QueryKind;

/// UDP port a DHCP server listens on (and a relay agent receives on).
pub const SERVER_PORT: u16 = 67;
/// UDP port a DHCP client listens on.
pub const CLIENT_PORT: u16 = 68;

/// Fixed BOOTP header length up to and including the magic cookie.
const FIXED_LEN: usize = 240;
/// Offset of the magic cookie inside the BOOTP message.
const COOKIE_OFFSET: usize = 236;
/// RFC 2131 §3: the options field starts with 99.130.83.99.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// RFC 951 BOOTP message size; some clients (old dhclient) reject anything shorter.
const BOOTP_MIN_LEN: usize = 300;
/// RFC 2131 §2: every client must accept a 576-byte IP datagram, and option 57 may not go below it.
const MIN_MAX_MESSAGE_SIZE: u16 = 576;
/// IPv4 (without options) plus UDP header, counted in option 57 (RFC 2132 §9.10).
const IP_UDP_HEADER_LEN: usize = 20 + 8;
/// Hardware length of an Ethernet MAC address.
const ETH_HLEN: u8 = 6;
/// TTL of reply datagrams.
const REPLY_TTL: u8 = 64;
/// Destination MAC of a link-layer broadcast.
const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// A parsed client message: what the lease logic needs to decide, plus what the reply must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRequest {
    /// Message type (option 53).
    pub kind: QueryKind,
    /// Transaction id chosen by the client; echoed in the reply.
    pub xid: u32,
    /// Client hardware address (chaddr).
    pub chaddr: [u8; 6],
    /// Source MAC of the Ethernet frame (the relay agent's MAC when giaddr is set).
    pub src_mac: [u8; 6],
    /// Client IP address (set when renewing, rebinding or informing).
    pub ciaddr: Ipv4Addr,
    /// Relay agent address, 0.0.0.0 when the client is on the link.
    pub giaddr: Ipv4Addr,
    /// Requested IP address (option 50).
    pub requested_ip: Option<Ipv4Addr>,
    /// Server identifier (option 54); present when the client selects an offer.
    pub server_id: Option<Ipv4Addr>,
    /// Broadcast flag set: the client cannot receive unicast before it is configured.
    pub broadcast: bool,
    /// Client identifier (option 61), raw bytes including the type byte.
    pub client_id: Option<Vec<u8>>,
    /// Host name (option 12), with trailing NULs some clients send removed.
    pub hostname: Option<String>,
    /// Maximum DHCP message size (option 57) if given; the reply is clamped to it.
    pub max_message_size: Option<u16>,
    /// Raw BOOTP flags, copied into the reply as RFC 2131 table 3 requires.
    flags: u16,
    /// Parameter request list (option 55), raw option codes.
    parameter_request_list: Vec<u8>,
}

impl DhcpRequest {
    /// Option codes the client asked for (option 55), in the client's order; empty if absent.
    pub fn parameter_request_list(&self) -> &[u8] {
        &self.parameter_request_list
    }
}

/// Why a frame given to the DHCP server was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DhcpDrop {
    /// Not an IPv4/UDP datagram to port 67 in an untagged Ethernet II frame (or an IP fragment).
    #[error("frame is not a DHCP request datagram")]
    NotDhcp,
    /// Truncated or inconsistent Ethernet, IPv4, UDP or DHCP encoding.
    #[error("malformed frame or DHCP message")]
    Malformed,
    /// BOOTP op is not BOOTREQUEST (a server reply reached the server port).
    #[error("BOOTP op is not BOOTREQUEST")]
    NotARequest,
    /// No DHCP message type (option 53): plain BOOTP, which this server does not serve.
    #[error("DHCP message type option (53) missing")]
    NoMessageType,
    /// A message type a client does not send to a server (OFFER, ACK, NAK, ...).
    #[error("DHCP message type not accepted from a client")]
    UnsupportedMessageType,
    /// Hardware type is not Ethernet or hardware address length is not 6.
    #[error("client hardware address is not a 6-byte Ethernet address")]
    BadHardwareAddress,
    /// A client on the link (no relay) asking for another station's address: chaddr is not the
    /// frame's source MAC, so a container cannot take leases in others' names.
    #[error("client hardware address is not the frame's source MAC")]
    ForeignChaddr,
}

impl DhcpDrop {
    /// Stable snake_case name for metrics and traces.
    pub fn name(self) -> &'static str {
        match self {
            DhcpDrop::NotDhcp => "not_dhcp",
            DhcpDrop::Malformed => "malformed",
            DhcpDrop::NotARequest => "not_a_request",
            DhcpDrop::NoMessageType => "no_message_type",
            DhcpDrop::UnsupportedMessageType => "unsupported_message_type",
            DhcpDrop::BadHardwareAddress => "bad_hardware_address",
            DhcpDrop::ForeignChaddr => "foreign_chaddr",
        }
    }
}

/// Why a reply frame could not be built; not expected with sane configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// dhcproto refused to encode the reply message.
    #[error("encoding the DHCP reply failed: {0}")]
    Encode(#[from] dhcproto::error::EncodeError),
    /// etherparse refused to write the Ethernet/IPv4/UDP frame.
    #[error("writing the reply frame failed: {0}")]
    Frame(#[from] etherparse::err::packet::BuildWriteError),
}

/// What the server hands out on this network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Gateway MAC, source of every reply frame.
    pub server_mac: [u8; 6],
    /// Gateway address: reply source and server identifier (option 54).
    pub server_ip: Ipv4Addr,
    /// Network prefix length, giving the subnet mask (option 1); values above 32 act as 32.
    pub prefix_len: u8,
    /// Default router (option 3).
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6), in preference order.
    pub dns: Vec<Ipv4Addr>,
    /// Interface MTU (option 26).
    pub mtu: Option<u16>,
    /// Lease time (option 51); whole seconds, saturating at "infinite" (u32::MAX).
    pub lease_time: Duration,
    /// DNS search domain (option 15).
    pub domain_name: Option<String>,
}

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// DHCPOFFER of this address, to a DISCOVER.
    Offer(Ipv4Addr),
    /// DHCPACK of this address, to a REQUEST.
    Ack(Ipv4Addr),
    /// DHCPNAK, to a REQUEST for an address the client may not have.
    Nak,
    /// DHCPACK to a DHCPINFORM: configuration without an address or lease times.
    InformAck,
}

/// Parses an Ethernet frame carrying IPv4/UDP to port 67 (any destination IP:
/// 255.255.255.255 or the server's address) into a request. Never panics.
pub fn parse_request(frame: &[u8]) -> Result<DhcpRequest, DhcpDrop> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).map_err(|_| DhcpDrop::Malformed)?;
    // A VLAN-tagged frame shows up as ethertype 0x8100 and is rejected here:
    // the switch strips tags before handing frames to a network's gateway.
    if eth.ether_type() != EtherType::IPV4 {
        return Err(DhcpDrop::NotDhcp);
    }
    let ip = Ipv4Slice::from_slice(eth.payload_slice()).map_err(|_| DhcpDrop::Malformed)?;
    let ip_header = ip.header();
    // etherparse checks structure and lengths but not the header checksum.
    if ip_header.header_checksum() != ip_header.to_header().calc_header_checksum() {
        return Err(DhcpDrop::Malformed);
    }
    // Clients never fragment DHCP messages (576-byte minimum MTU); no reassembly here.
    if ip.is_payload_fragmented() || ip.payload_ip_number() != IpNumber::UDP {
        return Err(DhcpDrop::NotDhcp);
    }
    // The UDP checksum is deliberately not verified: with checksum offload a
    // guest's TAP frames carry only a partial checksum, and the IP checksum
    // plus DHCP's own structure checks are enough to reject garbage.
    let udp = UdpSlice::from_slice(ip.payload().payload).map_err(|_| DhcpDrop::Malformed)?;
    if udp.destination_port() != SERVER_PORT {
        return Err(DhcpDrop::NotDhcp);
    }
    let payload = udp.payload();
    check_structure(payload)?;

    let msg = v4::Message::decode(&mut Decoder::new(payload)).map_err(|_| DhcpDrop::Malformed)?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(DhcpDrop::NotARequest);
    }
    // Checked before touching chaddr(): dhcproto slices chaddr by the raw hlen
    // byte and would panic on hlen > 16.
    if msg.htype() != v4::HType::Eth || msg.hlen() != ETH_HLEN {
        return Err(DhcpDrop::BadHardwareAddress);
    }
    let chaddr: [u8; 6] = msg
        .chaddr()
        .try_into()
        .map_err(|_| DhcpDrop::BadHardwareAddress)?;

    let opts = msg.opts();
    let kind = match opts.msg_type().ok_or(DhcpDrop::NoMessageType)? {
        MessageType::Discover => QueryKind::Discover,
        MessageType::Request => QueryKind::Request,
        MessageType::Decline => QueryKind::Decline,
        MessageType::Release => QueryKind::Release,
        MessageType::Inform => QueryKind::Inform,
        _ => return Err(DhcpDrop::UnsupportedMessageType),
    };

    if msg.giaddr().is_unspecified() && chaddr != eth.source() {
        return Err(DhcpDrop::ForeignChaddr);
    }
    let mut req = DhcpRequest {
        kind,
        xid: msg.xid(),
        chaddr,
        src_mac: eth.source(),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        requested_ip: None,
        server_id: None,
        broadcast: msg.flags().broadcast(),
        client_id: None,
        hostname: None,
        max_message_size: None,
        flags: u16::from(msg.flags()),
        parameter_request_list: Vec::new(),
    };
    for (_, opt) in opts.iter() {
        match opt {
            DhcpOption::RequestedIpAddress(ip) => req.requested_ip = Some(*ip),
            DhcpOption::ServerIdentifier(ip) => req.server_id = Some(*ip),
            DhcpOption::ClientIdentifier(id) => req.client_id = Some(id.clone()),
            DhcpOption::Hostname(name) => {
                let name = name.trim_end_matches('\0');
                if !name.is_empty() {
                    req.hostname = Some(name.to_owned());
                }
            }
            DhcpOption::MaxMessageSize(size) => req.max_message_size = Some(*size),
            DhcpOption::ParameterRequestList(codes) => {
                req.parameter_request_list = codes.iter().map(|c| u8::from(*c)).collect();
            }
            _ => {}
        }
    }
    Ok(req)
}

/// Checks what dhcproto does not: the fixed header and magic cookie are
/// present, every option fits in the message, and option lengths are ones
/// dhcproto decodes without panicking.
///
/// dhcproto 0.15 silently stops at the first option it cannot decode (which
/// would turn truncation into missing options), and in builds with debug
/// assertions or overflow checks it panics on some option lengths; see
/// [`option_len_ok`].
fn check_structure(payload: &[u8]) -> Result<(), DhcpDrop> {
    if payload.len() < FIXED_LEN || payload.get(COOKIE_OFFSET..FIXED_LEN) != Some(&MAGIC_COOKIE[..])
    {
        return Err(DhcpDrop::Malformed);
    }
    let options = payload.get(FIXED_LEN..).unwrap_or_default();
    // dhcproto concatenates consecutive instances of one option (RFC 3396)
    // and decodes the joined value, so lengths are checked per run.
    let mut run: Option<(u8, usize)> = None;
    let mut i = 0;
    while let Some(&code) = options.get(i) {
        if code == 0 || code == 255 {
            end_run(run.take())?;
            if code == 255 {
                return Ok(());
            }
            i += 1;
            continue;
        }
        let len = usize::from(*options.get(i + 1).ok_or(DhcpDrop::Malformed)?);
        let end = i + 2 + len;
        if end > options.len() {
            return Err(DhcpDrop::Malformed);
        }
        run = match run {
            Some((run_code, run_len)) if run_code == code => Some((code, run_len + len)),
            other => {
                end_run(other)?;
                Some((code, len))
            }
        };
        i = end;
    }
    // Options ran to the end of the datagram without an END option: tolerated,
    // as every option was complete.
    end_run(run)
}

/// Validates the total length of a finished run of one option code.
fn end_run(run: Option<(u8, usize)>) -> Result<(), DhcpDrop> {
    match run {
        Some((code, len)) if !option_len_ok(code, len) => Err(DhcpDrop::Malformed),
        _ => Ok(()),
    }
}

/// Whether an option value of `len` bytes is acceptable for `code`.
///
/// Covers the options this module reads (a wrong length would otherwise be
/// dropped silently by dhcproto) and those whose dhcproto 0.15 decoder has a
/// `debug_assert!` on the length or subtracts from it unchecked.
fn option_len_ok(code: u8, len: usize) -> bool {
    match code {
        53 => len == 1,        // message type
        50 | 54 => len == 4,   // requested IP, server identifier
        57 => len == 2,        // maximum message size
        80 => len == 0,        // rapid commit (debug_assert)
        81 => len >= 3,        // client FQDN (debug_assert, len - 3)
        94 => len == 3,        // client network interface (debug_assert)
        151 => len >= 1,       // bulk lease query status (len - 1)
        152..=155 => len == 4, // bulk lease query times (debug_assert)
        _ => true,
    }
}

/// Builds the Ethernet frame carrying the reply to `req`.
///
/// Addressing follows RFC 2131 §4.1: via the relay when giaddr is set, a NAK
/// is broadcast, a client with ciaddr gets unicast, a client with the
/// broadcast flag gets broadcast, otherwise unicast to the offered address
/// and chaddr (the client cannot answer ARP yet). Where that rule would send
/// to 0.0.0.0 (an address of 0.0.0.0, or an INFORM without ciaddr) the reply
/// is broadcast instead.
pub fn build_reply(
    req: &DhcpRequest,
    reply: Reply,
    cfg: &ServerConfig,
) -> Result<Vec<u8>, BuildError> {
    let yiaddr = match reply {
        Reply::Offer(addr) | Reply::Ack(addr) => addr,
        Reply::Nak | Reply::InformAck => Ipv4Addr::UNSPECIFIED,
    };
    // RFC 2131 table 3: ciaddr is echoed in an ACK (renewal, inform), 0 otherwise.
    let ciaddr = match reply {
        Reply::Ack(_) | Reply::InformAck => req.ciaddr,
        Reply::Offer(_) | Reply::Nak => Ipv4Addr::UNSPECIFIED,
    };
    let mut flags = req.flags;
    // RFC 2131 §4.3.2: a NAK through a relay asks the relay to broadcast it.
    if reply == Reply::Nak && !req.giaddr.is_unspecified() {
        flags |= u16::from(v4::Flags::default().set_broadcast());
    }

    let mut msg = v4::Message::new_with_id(
        req.xid,
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr,
        &req.chaddr,
    );
    msg.set_opcode(Opcode::BootReply)
        .set_htype(v4::HType::Eth)
        .set_flags(v4::Flags::from(flags));

    // Options in the order they are dropped when the reply would exceed the
    // client's maximum message size; the first `essential` always stay.
    let (options, essential) = reply_options(req, reply, cfg);
    let limit = usize::from(
        req.max_message_size
            .unwrap_or(MIN_MAX_MESSAGE_SIZE)
            .max(MIN_MAX_MESSAGE_SIZE),
    ) - IP_UDP_HEADER_LEN;
    let mut kept = options.len();
    let mut payload = loop {
        let opts = msg.opts_mut();
        opts.clear();
        for opt in options.iter().take(kept) {
            opts.insert(opt.clone());
        }
        let mut buf = Vec::with_capacity(BOOTP_MIN_LEN);
        msg.encode(&mut Encoder::new(&mut buf))?;
        if buf.len() <= limit || kept <= essential {
            break buf;
        }
        kept -= 1;
    };
    // Zeros after END are PAD options; they bring the message to the BOOTP size.
    if payload.len() < BOOTP_MIN_LEN {
        payload.resize(BOOTP_MIN_LEN, 0);
    }

    let (dst_mac, dst_ip, dst_port) = destination(req, reply, yiaddr);
    let builder = PacketBuilder::ethernet2(cfg.server_mac, dst_mac)
        .ipv4(cfg.server_ip.octets(), dst_ip.octets(), REPLY_TTL)
        .udp(SERVER_PORT, dst_port);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload)?;
    Ok(frame)
}

/// Chooses destination MAC, IP and UDP port per RFC 2131 §4.1.
fn destination(req: &DhcpRequest, reply: Reply, yiaddr: Ipv4Addr) -> ([u8; 6], Ipv4Addr, u16) {
    let broadcast = (BROADCAST_MAC, Ipv4Addr::BROADCAST, CLIENT_PORT);
    if !req.giaddr.is_unspecified() {
        (req.src_mac, req.giaddr, SERVER_PORT)
    } else if reply == Reply::Nak {
        broadcast
    } else if !req.ciaddr.is_unspecified() {
        (req.chaddr, req.ciaddr, CLIENT_PORT)
    } else if req.broadcast || yiaddr.is_unspecified() {
        broadcast
    } else {
        (req.chaddr, yiaddr, CLIENT_PORT)
    }
}

/// Reply options, most important first, and how many of them must never be dropped.
fn reply_options(req: &DhcpRequest, reply: Reply, cfg: &ServerConfig) -> (Vec<DhcpOption>, usize) {
    let msg_type = match reply {
        Reply::Offer(_) => MessageType::Offer,
        Reply::Ack(_) | Reply::InformAck => MessageType::Ack,
        Reply::Nak => MessageType::Nak,
    };
    let mut opts = vec![
        DhcpOption::MessageType(msg_type),
        DhcpOption::ServerIdentifier(cfg.server_ip),
    ];
    // RFC 6842: echo the client identifier so clients sharing a MAC can tell replies apart.
    if let Some(id) = &req.client_id {
        opts.push(DhcpOption::ClientIdentifier(id.clone()));
    }
    if reply == Reply::Nak {
        let essential = opts.len();
        return (opts, essential);
    }

    if matches!(reply, Reply::Offer(_) | Reply::Ack(_)) {
        let lease = u32::try_from(cfg.lease_time.as_secs()).unwrap_or(u32::MAX);
        opts.push(DhcpOption::AddressLeaseTime(lease));
        // An infinite lease (0xffffffff, RFC 2132 §9.2) is never renewed.
        if lease != u32::MAX {
            let t1 = lease / 2;
            let t2 = u32::try_from(u64::from(lease) * 7 / 8).unwrap_or(u32::MAX);
            opts.push(DhcpOption::Renewal(t1));
            opts.push(DhcpOption::Rebinding(t2));
        }
    }
    let prefix_len = cfg.prefix_len.min(32);
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    opts.push(DhcpOption::SubnetMask(Ipv4Addr::from(mask)));
    if let Some(router) = cfg.router {
        opts.push(DhcpOption::Router(vec![router]));
    }
    let essential = opts.len();

    if !cfg.dns.is_empty() {
        opts.push(DhcpOption::DomainNameServer(cfg.dns.clone()));
    }
    // /31 and /32 networks have no broadcast address (RFC 3021).
    if prefix_len < 31 {
        let bcast = u32::from(cfg.server_ip) | !mask;
        opts.push(DhcpOption::BroadcastAddr(Ipv4Addr::from(bcast)));
    }
    if let Some(mtu) = cfg.mtu {
        opts.push(DhcpOption::InterfaceMtu(mtu));
    }
    if let Some(domain) = cfg.domain_name.as_ref().filter(|d| !d.is_empty()) {
        opts.push(DhcpOption::DomainName(domain.clone()));
    }
    (opts, essential)
}

#[cfg(test)]
mod tests;
