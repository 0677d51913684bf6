//! The TCP terminator's segments on their way to a container, as a TAP with TSO carries
//! them: the checksum left to the receiver (Linux's CHECKSUM_PARTIAL), and a segment longer
//! than the container's MSS marked for segmentation (GSO), cut by whoever must — the
//! container's TAP, or the switch for a port without offloads. For the stack to send such
//! segments, the container's SYN has its MSS raised (`raise_mss`); the real one becomes
//! `gso_size`.

use std::net::IpAddr;

use etherparse::checksum::Sum16BitWords;
use tun_rs::{VirtioNetHdr, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6};
use vswitch_core::frame::ETH_HEADER_LEN;
use vswitch_core::offload::{Offload, VNET_HDR_LEN};

use super::device::MAX_IP_PACKET;

/// `flags`: the receiver fills in the transport checksum.
const NEEDS_CSUM: u8 = 1;

/// The virtio header of the TCP segment in IP packet `packet` (IP header `ip_len` bytes,
/// from `src` to `dst`) for a container whose MSS is `mss`; writes the pseudo-header sum
/// into the segment's checksum field, as the header says.
pub fn offload(
    packet: &mut [u8],
    ip_len: usize,
    src: IpAddr,
    dst: IpAddr,
    mss: usize,
) -> Option<VirtioNetHdr> {
    let tcp_len = packet.len().checked_sub(ip_len)?;
    let tcp_header_len = usize::from(packet.get(ip_len + 12)? >> 4) * 4;
    // The container's MSS counts no options; its segments carry as many as these do.
    let gso_size = mss.saturating_sub(tcp_header_len.saturating_sub(20)).max(1);
    let sum = pseudo_header_sum(src, dst, tcp_len)?;
    let at = ip_len + 16;
    packet
        .get_mut(at..at + 2)?
        .copy_from_slice(&sum.to_be_bytes());
    let mut header = VirtioNetHdr {
        flags: NEEDS_CSUM,
        csum_start: u16::try_from(ETH_HEADER_LEN + ip_len).ok()?,
        csum_offset: 16,
        ..VirtioNetHdr::default()
    };
    if tcp_len.saturating_sub(tcp_header_len) > gso_size {
        header.gso_type = match dst {
            IpAddr::V4(_) => VIRTIO_NET_HDR_GSO_TCPV4,
            IpAddr::V6(_) => VIRTIO_NET_HDR_GSO_TCPV6,
        };
        header.hdr_len = u16::try_from(ETH_HEADER_LEN + ip_len + tcp_header_len).ok()?;
        header.gso_size = u16::try_from(gso_size).ok()?;
    }
    Some(header)
}

/// `frame` behind a virtio header that asks nothing of the receiver.
pub fn plain(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VNET_HDR_LEN + frame.len());
    out.extend_from_slice(&Offload::default().emit());
    out.extend_from_slice(frame);
    out
}

/// Raises the MSS option of the TCP SYN at `tcp_start` in IP packet `packet` to the most an
/// IP packet holds; returns the MSS it had. (The stack checks no TCP checksum, so it is left.)
pub fn raise_mss(packet: &mut [u8], tcp_start: usize) -> Option<u16> {
    let header_len = usize::from(packet.get(tcp_start + 12)? >> 4) * 4;
    let options = packet.get_mut(tcp_start + 20..tcp_start + header_len)?;
    let ip_header = if tcp_start == 40 { 40 } else { 20 };
    let most = u16::try_from(MAX_IP_PACKET - ip_header - 20).ok()?;
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            0 => return None,
            1 => at += 1,
            2 => {
                let value = options.get_mut(at + 2..at + 4)?;
                let mss = u16::from_be_bytes([value[0], value[1]]);
                value.copy_from_slice(&most.max(mss).to_be_bytes());
                return Some(mss);
            }
            _ => at += usize::from(*options.get(at + 1)?).max(2),
        }
    }
    None
}

/// The TCP pseudo-header sum for a segment of `tcp_len` bytes, folded, not complemented: what
/// a checksum left to the receiver holds (Linux's CHECKSUM_PARTIAL).
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, tcp_len: usize) -> Option<u16> {
    let length = u32::try_from(tcp_len).ok()?.to_be_bytes();
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Sum16BitWords::new()
            .add_4bytes(s.octets())
            .add_4bytes(d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => Sum16BitWords::new()
            .add_16bytes(s.octets())
            .add_16bytes(d.octets()),
        _ => return None,
    };
    // The folded sum itself: the ones' complement of etherparse's checksum (which sums in
    // native byte order, hence `to_be`, as etherparse's own headers do).
    Some((!sum.add_4bytes(length).add_2bytes([0, 6]).ones_complement()).to_be())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// What a receiver does with a partial checksum: sums the segment from `csum_start`, the
    /// pseudo-header sum in the checksum field, and complements.
    fn completed(segment: &[u8]) -> u16 {
        Sum16BitWords::new()
            .add_slice(segment)
            .to_ones_complement_with_no_zero()
            .to_be()
    }

    #[test]
    fn a_partial_checksum_completes_to_the_real_one_and_long_segments_are_marked_for_gso() {
        for (src, dst) in [
            (IpAddr::from([10, 9, 0, 2]), IpAddr::from([192, 0, 2, 1])),
            ("fd09::2".parse().unwrap(), "2001:db8::1".parse().unwrap()),
        ] {
            let payload = vec![0x5a; 3000];
            let builder = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
                (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
                _ => unreachable!(),
            };
            let mut packet = Vec::new();
            builder
                .tcp(80, 40000, 7, 1000)
                .write(&mut packet, &payload)
                .unwrap();
            let ip_len = if src.is_ipv4() { 20 } else { 40 };
            let real = u16::from_be_bytes([packet[ip_len + 16], packet[ip_len + 17]]);
            let header = offload(&mut packet, ip_len, src, dst, 1460).unwrap();
            assert_eq!(completed(&packet[ip_len..]), real, "{src}");
            assert_eq!(header.csum_start as usize, ETH_HEADER_LEN + ip_len);
            assert_eq!(
                (header.gso_size, header.hdr_len as usize),
                (1460, ETH_HEADER_LEN + ip_len + 20)
            );
            // A segment within the MSS needs no segmentation.
            let header = offload(&mut packet, ip_len, src, dst, 4000).unwrap();
            assert_eq!(header.gso_type, 0);
        }
    }
}
