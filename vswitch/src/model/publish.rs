//! Published ports (`--publish`, Docker's `-p`): what a spec such as `8080:80`,
//! `127.0.0.1:8080:80/tcp`, `[::1]:8080:80` or the range `8000-8009:80-89` means, and which
//! host ports one endpoint's mappings would take from another's.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Mappings one endpoint may have (a range counts each port).
pub const MAX_PUBLISHED: usize = 1024;

/// Transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One published port: the host's address and port, forwarded to the container's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address listened on [default: every address].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// Transport.
    pub protocol: PortProtocol,
}

impl PortMapping {
    /// Whether this and `other` would listen on the same host port.
    pub fn clashes_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        };
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(f, "{}->{}/{protocol}", self.host_port, self.container_port)
    }
}

/// The mappings `spec` asks for: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`, where both
/// ports may be ranges of the same length.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, String> {
    let bad = |why: &str| {
        format!(
            "--publish {spec:?}: {why} (expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp])"
        )
    };
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, PortProtocol::Tcp),
        Some((ports, "udp")) => (ports, PortProtocol::Udp),
        Some((_, other)) => return Err(bad(&format!("unknown protocol {other:?}"))),
        None => (spec, PortProtocol::Tcp),
    };
    let (host_ip, ports) = if let Some(rest) = ports.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| bad("unclosed [ of an IPv6 address"))?;
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| bad(&format!("{ip:?} is not an IPv6 address")))?;
        (Some(IpAddr::V6(ip)), rest)
    } else {
        match ports.split(':').collect::<Vec<_>>().as_slice() {
            [ip, _, _] => {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
                (Some(ip), ports.split_once(':').map_or("", |(_, rest)| rest))
            }
            [_, _] => (None, ports),
            _ => return Err(bad("both ports are needed")),
        }
    };
    let (host, container) = ports
        .split_once(':')
        .ok_or_else(|| bad("both ports are needed"))?;
    let host = parse_range(host).map_err(|e| bad(&e))?;
    let container = parse_range(container).map_err(|e| bad(&e))?;
    if host.len() != container.len() {
        return Err(bad("the host and container ranges differ in length"));
    }
    if host.len() > MAX_PUBLISHED {
        return Err(bad(&format!("at most {MAX_PUBLISHED} ports")));
    }
    Ok(host
        .zip(container)
        .map(|(host_port, container_port)| PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
        .collect())
}

/// `80` or `8000-8009`: ports 1 to 65535.
fn parse_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(port) => Ok(port),
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if last < first {
        return Err(format!("{text:?} is an empty range"));
    }
    Ok(first..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_as_docker_takes_them() {
        let one = parse_publish("8080:80").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].to_string(), "8080->80/tcp");
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap()[0].to_string(),
            "127.0.0.1:8080->80/udp"
        );
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap()[0].to_string(),
            "[::1]:8080->80/tcp"
        );
        let range = parse_publish("8000-8002:90-92").unwrap();
        assert_eq!(
            range
                .iter()
                .map(|m| (m.host_port, m.container_port))
                .collect::<Vec<_>>(),
            vec![(8000, 90), (8001, 91), (8002, 92)]
        );
        for bad in [
            "80",
            "x:80",
            "8080:80/sctp",
            "0:80",
            "70000:80",
            "8000-8001:80",
            "9-8:9-8",
            "1.2.3:80:80",
            "[::1:80:80",
        ] {
            let error = parse_publish(bad).unwrap_err();
            assert!(error.contains("--publish"), "{bad}: {error}");
        }
    }

    #[test]
    fn mappings_clash_on_the_same_port_of_an_overlapping_address() {
        let any = parse_publish("8080:80").unwrap()[0];
        let local = parse_publish("127.0.0.1:8080:81").unwrap()[0];
        let other = parse_publish("127.0.0.2:8080:81").unwrap()[0];
        let udp = parse_publish("8080:80/udp").unwrap()[0];
        assert!(any.clashes_with(&local) && local.clashes_with(&any));
        assert!(!local.clashes_with(&other));
        assert!(!any.clashes_with(&udp));
    }
}
