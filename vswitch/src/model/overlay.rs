//! What makes a network an overlay across hosts: its VXLAN network identifier (VNI) and the
//! hosts it is flooded to (static peers, flood and learn), and the checks on them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use vswitch_core::vxlan::{DEFAULT_PORT, MAX_VNI, OVERHEAD_V4, OVERHEAD_V6};

use super::error::{invalid, ModelError};
use super::limits::MAX_PEERS;

/// An overlay network's own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayRecord {
    /// VXLAN network identifier: the same on every host of the network.
    pub vni: u32,
    /// The other hosts' underlay addresses (VXLAN port 4789 unless given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<SocketAddr>,
    /// Frames between hosts sealed with WireGuard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypt: bool,
    /// The peers' WireGuard public keys and tunnel addresses (encrypted overlays), by underlay
    /// address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_keys: BTreeMap<IpAddr, PeerKey>,
}

/// How to reach a peer through WireGuard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKey {
    /// Its public key, base64.
    pub key: String,
    /// Its tunnel address: where VXLAN inside WireGuard is addressed to.
    pub inner: std::net::Ipv4Addr,
}

/// An endpoint on another host of an overlay network, as the store says: enough to reach it
/// by name and to send its frames straight to its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    /// The host it is on (its name in the store).
    pub host: String,
    /// Its endpoint name.
    pub name: String,
    /// Its MAC.
    pub mac: vswitch_core::frame::MacAddr,
    /// Its addresses, with prefix length.
    pub addresses: Vec<ipnet::IpNet>,
    /// Its other DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its labels, for policy selectors on every host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl RemoteEndpoint {
    /// Stands for `ip`, held by another host in the store (before the store says whose): no
    /// plan takes it.
    pub fn held_elsewhere(ip: IpAddr) -> RemoteEndpoint {
        RemoteEndpoint {
            host: "another host".into(),
            name: "(reserved)".into(),
            mac: vswitch_core::frame::MacAddr([0; 6]),
            addresses: vec![ipnet::IpNet::from(ip)],
            aliases: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    /// Whether this only stands for an address held elsewhere (see `held_elsewhere`).
    pub fn is_placeholder(&self) -> bool {
        self.mac == vswitch_core::frame::MacAddr([0; 6])
    }
}

/// What a create request asks of an overlay.
#[derive(Debug, Clone, Copy)]
pub struct OverlayRequest<'a> {
    /// The network's name.
    pub name: &'a str,
    /// `--driver`.
    pub driver: Option<&'a str>,
    /// `--vni`.
    pub vni: Option<u32>,
    /// `--peer`s.
    pub peers: &'a [String],
    /// `--encrypt`.
    pub encrypt: bool,
}

/// The overlay part of a create request, or `None` for a network of one host; `taken` holds
/// the (name, VNI) of the overlays already here.
pub fn plan_overlay<'a>(
    req: OverlayRequest<'_>,
    mut taken: impl Iterator<Item = (&'a str, u32)>,
) -> Result<Option<OverlayRecord>, ModelError> {
    if req.driver != Some("overlay") {
        if req.vni.is_some() || !req.peers.is_empty() || req.encrypt {
            return Err(invalid(
                "--vni, --peer and --encrypt are for --driver overlay",
            ));
        }
        return Ok(None);
    }
    let vni = match req.vni {
        Some(vni) if (1..=MAX_VNI).contains(&vni) => vni,
        Some(vni) => {
            return Err(invalid(format!(
                "invalid VNI {vni}: must be between 1 and {MAX_VNI}"
            )))
        }
        None => vni_of(req.name),
    };
    if let Some((other, _)) = taken.find(|(_, v)| *v == vni) {
        let hint = if req.vni.is_none() {
            " (the VNI a name gets by default; give one with --vni, the same on every host)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "VNI {vni} is already network {other}'s{hint}"
        )));
    }
    if req.peers.len() > MAX_PEERS {
        return Err(invalid(format!(
            "too many peers: {} (at most {MAX_PEERS})",
            req.peers.len()
        )));
    }
    let mut peers: Vec<SocketAddr> = Vec::new();
    let mut peer_keys = BTreeMap::new();
    for text in req.peers {
        let (peer, key) = parse_peer(text, req.encrypt)?;
        if peers.iter().any(|p| p.ip() == peer.ip()) {
            return Err(invalid(format!("peer {} given twice", peer.ip())));
        }
        peers.push(peer);
        if let Some(key) = key {
            peer_keys.insert(peer.ip(), key);
        }
    }
    Ok(Some(OverlayRecord {
        vni,
        peers,
        encrypt: req.encrypt,
        peer_keys,
    }))
}

/// An overlay's MTU when none is given: the underlay's `underlay_mtu` less the
/// encapsulation, as Docker's overlay driver does (1450 on an IPv4 underlay of 1500).
pub fn default_overlay_mtu(overlay: &OverlayRecord, underlay_mtu: u32) -> u32 {
    let v6 = overlay.peers.iter().any(|p| p.is_ipv6());
    let overhead = match (overlay.encrypt, v6) {
        (true, false) => crate::overlay::wireguard::OVERHEAD,
        (true, true) => crate::overlay::wireguard::OVERHEAD + 20,
        (false, false) => OVERHEAD_V4,
        (false, true) => OVERHEAD_V6,
    };
    underlay_mtu - overhead
}

/// The VNI a network gets by default: derived from its name, so that hosts creating the same
/// network by name agree without a store.
pub fn vni_of(name: &str) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % MAX_VNI) + 1
}

/// A peer as `IP` or `IP:PORT` (`[IPv6]:PORT`), on an encrypted overlay followed by
/// `,key=PUBLIC_KEY,inner=TUNNEL_IPV4` (its WireGuard public key and tunnel address; its port
/// is then WireGuard's, 51820 unless given).
fn parse_peer(text: &str, encrypt: bool) -> Result<(SocketAddr, Option<PeerKey>), ModelError> {
    let mut fields = text.split(',');
    let address = fields.next().unwrap_or_default();
    let port = if encrypt {
        crate::overlay::wireguard::DEFAULT_PORT
    } else {
        DEFAULT_PORT
    };
    let peer = address
        .parse::<SocketAddr>()
        .or_else(|_| {
            address
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, port))
        })
        .map_err(|_| {
            invalid(format!(
                "invalid peer {text:?}: expected a host's underlay address, IP or IP:PORT"
            ))
        })?;
    if peer.ip().is_unspecified() || peer.ip().is_multicast() || peer.port() == 0 {
        return Err(invalid(format!(
            "invalid peer {text:?}: not a host's unicast address and port"
        )));
    }
    let (mut key, mut inner) = (None, None);
    for field in fields {
        match field.split_once('=') {
            Some(("key", value))
                if crate::overlay::wireguard::parse_public_key(value).is_some() =>
            {
                key = Some(value.to_string())
            }
            Some(("inner", value)) => {
                inner = Some(value.parse().map_err(|_| {
                    invalid(format!(
                        "peer {address}: inner={value:?} is not an IPv4 address"
                    ))
                })?)
            }
            _ => {
                return Err(invalid(format!(
                "peer {address}: {field:?} is not key=PUBLIC_KEY (base64, 32 bytes) or inner=IPV4"
            )))
            }
        }
    }
    match (encrypt, key, inner) {
        (false, None, None) => Ok((peer, None)),
        (false, _, _) => Err(invalid(format!(
            "peer {address}: key= and inner= are for --encrypt overlays"
        ))),
        (true, Some(key), Some(inner)) => Ok((peer, Some(PeerKey { key, inner }))),
        (true, _, _) => Err(invalid(format!(
            "peer {address}: an encrypted overlay needs the peer's key=PUBLIC_KEY and inner=TUNNEL_IPV4"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        driver: Option<&str>,
        vni: Option<u32>,
        peers: &[&str],
    ) -> Result<Option<OverlayRecord>, ModelError> {
        let peers: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        let req = OverlayRequest {
            name: "ov",
            driver,
            vni,
            peers: &peers,
            encrypt: false,
        };
        plan_overlay(req, [("other", 7)].into_iter())
    }

    #[test]
    fn peers_take_the_vxlan_port_unless_given() {
        let plan = plan(Some("overlay"), Some(42), &["10.0.0.2", "10.0.0.3:8472"])
            .unwrap()
            .unwrap();
        assert_eq!(plan.vni, 42);
        assert_eq!(
            plan.peers,
            vec![
                "10.0.0.2:4789".parse().unwrap(),
                "10.0.0.3:8472".parse().unwrap()
            ]
        );
        assert_eq!(default_overlay_mtu(&plan, 1500), 1450);
    }

    #[test]
    fn the_default_vni_is_the_names_and_fits_24_bits() {
        let a = plan(Some("overlay"), None, &[]).unwrap().unwrap();
        assert_eq!(a.vni, vni_of("ov"));
        assert!((1..=MAX_VNI).contains(&a.vni));
        assert_ne!(vni_of("ov"), vni_of("ov2"));
    }

    #[test]
    fn bad_overlays_are_refused_by_name() {
        let err = |vni, peers: &[&str]| plan(Some("overlay"), vni, peers).unwrap_err().to_string();
        assert!(err(Some(0), &[]).contains("invalid VNI 0"));
        assert!(err(Some(1 << 24), &[]).contains("invalid VNI"));
        assert!(err(Some(7), &[]).contains("VNI 7 is already network other's"));
        assert!(err(None, &["nowhere"]).contains("invalid peer \"nowhere\""));
        assert!(err(None, &["0.0.0.0"]).contains("invalid peer"));
        assert!(err(None, &["10.0.0.2", "10.0.0.2:9"]).contains("given twice"));
        let bridge = plan(None, Some(5), &[]).unwrap_err().to_string();
        assert!(bridge.contains("--driver overlay"), "{bridge}");
    }
}
