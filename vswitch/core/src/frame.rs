//! Ethernet addressing as the switch sees it: MAC addresses, the 802.1Q tag, and the parse of a
//! frame's header from untrusted bytes. Parsing never panics: a short frame is a `Runt` drop.

use std::fmt;
use std::str::FromStr;

use etherparse::{EtherType, Ethernet2HeaderSlice, SingleVlanHeaderSlice};

use crate::reason::DropReason;

/// Length of an untagged Ethernet header.
pub const ETH_HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;
/// Offset of the EtherType (or TPID) field: right after the two addresses.
const ADDRESSES_LEN: usize = 12;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Group bit set: broadcast or multicast.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// A unicast, locally administered address derived from `seed`: stable for the same seed,
    /// and never clashing with a vendor (universally administered) address.
    pub fn local_from_seed(seed: &[u8]) -> MacAddr {
        // FNV-1a: stable across builds and platforms, unlike std's randomized hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in seed {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let b = hash.to_be_bytes();
        MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex pairs like 02:42:ac:11:00:02")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the switch needs from a frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address.
    pub src: MacAddr,
    /// VLAN ID of the 802.1Q tag, if the frame carries one.
    pub vlan: Option<u16>,
}

impl Header {
    /// Parses the Ethernet header (and one 802.1Q tag) of an untrusted frame.
    pub fn parse(frame: &[u8]) -> Result<Header, DropReason> {
        let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| DropReason::Runt)?;
        let vlan = if eth.ether_type() == EtherType::VLAN_TAGGED_FRAME {
            let tag = SingleVlanHeaderSlice::from_slice(&frame[ETH_HEADER_LEN..])
                .map_err(|_| DropReason::Runt)?;
            Some(tag.vlan_identifier().value())
        } else {
            None
        };
        Ok(Header {
            dst: MacAddr(eth.destination()),
            src: MacAddr(eth.source()),
            vlan,
        })
    }

    /// Length of the header including the tag: where the L3 payload starts.
    pub fn l2_len(&self) -> usize {
        ETH_HEADER_LEN + self.tag_len()
    }

    /// 4 if the frame carries an 802.1Q tag, else 0.
    pub fn tag_len(&self) -> usize {
        if self.vlan.is_some() {
            VLAN_TAG_LEN
        } else {
            0
        }
    }
}

/// The bytes of an 802.1Q tag for `vid` (priority 0).
pub fn vlan_tag(vid: u16) -> [u8; VLAN_TAG_LEN] {
    let tci = (vid & 0x0fff).to_be_bytes();
    [0x81, 0x00, tci[0], tci[1]]
}

/// The frame as it must leave: the ingress tag (`ingress_tag_len` bytes after the addresses)
/// removed and `egress_tag` inserted in its place. Returned as three slices for a vectored write,
/// so retagging copies nothing.
pub fn egress_parts<'a>(
    frame: &'a [u8],
    ingress_tag_len: usize,
    egress_tag: &'a [u8],
) -> [&'a [u8]; 3] {
    [
        &frame[..ADDRESSES_LEN],
        egress_tag,
        &frame[ADDRESSES_LEN + ingress_tag_len..],
    ]
}

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    //! Frames captured with `tcpdump -xx` between two namespaces joined by a veth pair, for
    //! tests here and in the daemon (feature `fixtures`).

    /// ARP who-has 10.200.0.11 tell 10.200.0.10, from 02:00:00:00:00:0a, broadcast.
    pub const ARP_REQUEST: &str = "ffff ffff ffff 0200 0000 000a 0806 0001
        0800 0604 0001 0200 0000 000a 0ac8 000a 0000 0000 0000 0ac8 000b";
    /// ARP reply 10.200.0.11 is-at 02:00:00:00:00:0b.
    pub const ARP_REPLY: &str = "0200 0000 000a 0200 0000 000b 0806 0001
        0800 0604 0002 0200 0000 000b 0ac8 000b 0200 0000 000a 0ac8 000a";
    /// ICMP echo request 10.200.0.10 > 10.200.0.11.
    pub const ICMP_REQUEST: &str = "0200 0000 000b 0200 0000 000a 0800 4500
        002c 8e7b 4000 4001 96b1 0ac8 000a 0ac8 000b 0800 0003 1014 0001 0538 0d6b 0000
        0000 c844 0d00 0000 0000";
    /// ICMP echo reply 10.200.0.11 > 10.200.0.10.
    pub const ICMP_REPLY: &str = "0200 0000 000a 0200 0000 000b 0800 4500
        002c 41cb 0000 4001 2362 0ac8 000b 0ac8 000a 0000 0803 1014 0001 0538 0d6b 0000
        0000 c844 0d00 0000 0000";

    /// Bytes of a `tcpdump -xx` hex dump.
    pub fn bytes(dump: &str) -> Vec<u8> {
        let hex: String = dump.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture is hex"))
            .collect()
    }

    /// `frame` with an 802.1Q tag for `vid` inserted after the addresses.
    pub fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
        let tag = super::vlan_tag(vid);
        super::egress_parts(frame, 0, &tag).concat()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn parses_captured_arp_request() {
        let h = Header::parse(&bytes(ARP_REQUEST)).unwrap();
        assert_eq!(h.dst, MacAddr::BROADCAST);
        assert_eq!(h.src, "02:00:00:00:00:0a".parse().unwrap());
        assert_eq!(h.vlan, None);
        assert_eq!(h.l2_len(), 14);
        let reply = Header::parse(&bytes(ARP_REPLY)).unwrap();
        assert_eq!(
            (reply.dst, reply.src),
            (h.src, "02:00:00:00:00:0b".parse().unwrap())
        );
    }

    #[test]
    fn tag_round_trip_restores_captured_bytes() {
        let frame = bytes(ICMP_REQUEST);
        let tagged = tagged(&frame, 100);
        let h = Header::parse(&tagged).unwrap();
        assert_eq!(h.vlan, Some(100));
        assert_eq!(h.l2_len(), 18);
        assert_eq!(h.src, "02:00:00:00:00:0a".parse().unwrap());
        let untagged = egress_parts(&tagged, h.tag_len(), &[]).concat();
        assert_eq!(untagged, frame);
    }

    #[test]
    fn short_frames_are_runts() {
        let frame = bytes(ARP_REQUEST);
        for len in 0..14 {
            assert_eq!(Header::parse(&frame[..len]), Err(DropReason::Runt));
        }
        let tagged = tagged(&frame, 7);
        assert_eq!(Header::parse(&tagged[..17]), Err(DropReason::Runt));
        assert!(Header::parse(&tagged[..18]).is_ok());
    }

    #[test]
    fn mac_parse_and_display() {
        let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn seeded_macs_are_stable_local_unicast() {
        let a = MacAddr::local_from_seed(b"net/web");
        assert_eq!(a, MacAddr::local_from_seed(b"net/web"));
        assert_ne!(a, MacAddr::local_from_seed(b"net/db"));
        assert!(!a.is_multicast());
        assert_eq!(a.0[0] & 0x02, 0x02);
    }
}
