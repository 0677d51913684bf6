//! The VXLAN header (RFC 7348): eight bytes in front of an Ethernet frame carried in a UDP
//! datagram, saying which overlay network (VNI) the frame belongs to.

use crate::reason::DropReason;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// IANA's UDP port for VXLAN, the Linux kernel's default (`dstport 4789`).
pub const DEFAULT_PORT: u16 = 4789;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14): what the overlay takes off
/// the underlay's MTU.
pub const OVERHEAD_V4: u32 = 50;
/// The same over IPv6 (40-byte header).
pub const OVERHEAD_V6: u32 = 70;
/// Largest VNI: 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// The "I" flag: the VNI is valid. RFC 7348 requires it; the other bits are reserved.
const FLAG_VNI: u8 = 0x08;

/// The header for frames of `vni` (which must fit 24 bits).
pub fn header(vni: u32) -> [u8; HEADER_LEN] {
    debug_assert!(vni <= MAX_VNI);
    let v = vni.to_be_bytes();
    [FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// The VNI of a VXLAN datagram's payload and where its inner frame starts. Reserved bits are
/// ignored on receipt, as RFC 7348 says; a datagram without the I flag or too short to hold a
/// header and an Ethernet header is malformed.
pub fn parse(datagram: &[u8]) -> Result<(u32, usize), DropReason> {
    if datagram.len() < HEADER_LEN + crate::frame::ETH_HEADER_LEN || datagram[0] & FLAG_VNI == 0 {
        return Err(DropReason::MalformedTunnel);
    }
    let vni = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    Ok((vni, HEADER_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_matches_the_rfc_layout() {
        let h = header(0x12_3456);
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let mut datagram = h.to_vec();
        datagram.extend_from_slice(&[0u8; 14]);
        assert_eq!(parse(&datagram), Ok((0x12_3456, HEADER_LEN)));
        // Reserved bits set by an extension (GBP's G flag, a policy ID) are ignored.
        datagram[0] |= 0x80;
        datagram[2] = 0x42;
        assert_eq!(parse(&datagram), Ok((0x12_3456, HEADER_LEN)));
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        assert_eq!(parse(&[]), Err(DropReason::MalformedTunnel));
        assert_eq!(parse(&header(7)), Err(DropReason::MalformedTunnel));
        let mut no_flag = header(7).to_vec();
        no_flag.extend_from_slice(&[0u8; 14]);
        no_flag[0] = 0;
        assert_eq!(parse(&no_flag), Err(DropReason::MalformedTunnel));
    }
}
