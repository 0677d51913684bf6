//! The frames `vswitch trace` sends through the switch's own decision code (`Switch::trace`):
//! what a container would send for a protocol and destination, built here without a device,
//! and described in words.

use std::net::IpAddr;

use etherparse::PacketBuilder;

use crate::frame::MacAddr;

/// Layer-4 protocol of a traced frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP SYN to the port.
    Tcp(u16),
    /// UDP datagram to the port.
    Udp(u16),
    /// Echo request.
    Icmp,
}

impl Proto {
    /// From a request's protocol and destination port.
    pub fn parse(proto: Option<&str>, dport: Option<u16>) -> Result<Proto, String> {
        // A destination port implies TCP; without one, a ping.
        let default = if dport.is_some() { "tcp" } else { "icmp" };
        match (proto.unwrap_or(default), dport) {
            ("tcp", Some(port)) => Ok(Proto::Tcp(port)),
            ("udp", Some(port)) => Ok(Proto::Udp(port)),
            ("tcp" | "udp", None) => Err("--dport is needed with --proto tcp or udp".into()),
            ("icmp" | "icmpv6", None) => Ok(Proto::Icmp),
            ("icmp" | "icmpv6", Some(_)) => Err("--dport does not apply to icmp".into()),
            (other, _) => Err(format!("unknown protocol {other:?}: use tcp, udp or icmp")),
        }
    }

    fn describe(self) -> String {
        match self {
            Proto::Tcp(port) => format!("TCP SYN to port {port}"),
            Proto::Udp(port) => format!("UDP to port {port}"),
            Proto::Icmp => "ICMP echo request".into(),
        }
    }
}

/// The frame `src` would send to `dst`: Ethernet, IPv4 or IPv6 (as the addresses are), then
/// the protocol with an empty payload.
pub fn build_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    proto: Proto,
) -> Result<Vec<u8>, String> {
    let eth = PacketBuilder::ethernet2(src_mac.0, dst_mac.0);
    let mut frame = Vec::new();
    let written = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = eth.ipv4(s.octets(), d.octets(), 64);
            match proto {
                Proto::Tcp(port) => ip.tcp(40_000, port, 1, 64_240).syn().write(&mut frame, &[]),
                Proto::Udp(port) => ip.udp(40_000, port).write(&mut frame, &[]),
                Proto::Icmp => ip.icmpv4_echo_request(1, 1).write(&mut frame, &[]),
            }
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = eth.ipv6(s.octets(), d.octets(), 64);
            match proto {
                Proto::Tcp(port) => ip.tcp(40_000, port, 1, 64_240).syn().write(&mut frame, &[]),
                Proto::Udp(port) => ip.udp(40_000, port).write(&mut frame, &[]),
                Proto::Icmp => ip.icmpv6_echo_request(1, 1).write(&mut frame, &[]),
            }
        }
        _ => return Err(format!("{src} and {dst} are of different address families")),
    };
    written.map_err(|e| format!("cannot build the frame: {e}"))?;
    Ok(frame)
}

/// The frame step's text.
pub fn describe_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    proto: Proto,
) -> String {
    format!("{src_mac} > {dst_mac}, {src} > {dst}, {}", proto.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_back_with_what_was_asked() {
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let frame = build_frame(
            a,
            b,
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
            Proto::Tcp(5432),
        )
        .unwrap();
        let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = parsed.transport else {
            panic!("not TCP");
        };
        assert!(tcp.syn() && tcp.destination_port() == 5432);
        let v6 = build_frame(
            a,
            b,
            "fd00::2".parse().unwrap(),
            "fd00::3".parse().unwrap(),
            Proto::Icmp,
        )
        .unwrap();
        assert_eq!(&v6[12..14], &[0x86, 0xdd]);
        assert!(build_frame(
            a,
            b,
            "10.0.0.2".parse().unwrap(),
            "fd00::3".parse().unwrap(),
            Proto::Icmp
        )
        .is_err());
    }

    #[test]
    fn protocols_need_their_ports() {
        assert_eq!(Proto::parse(None, None), Ok(Proto::Icmp));
        assert_eq!(Proto::parse(Some("udp"), Some(53)), Ok(Proto::Udp(53)));
        assert!(Proto::parse(Some("tcp"), None).is_err());
        assert!(Proto::parse(Some("sctp"), Some(1)).is_err());
    }
}
