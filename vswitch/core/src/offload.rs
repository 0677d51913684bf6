//! Offloads at the edge. Between two TAP ports with IFF_VNET_HDR a frame travels with its
//! virtio_net_hdr, so a 64 KB TCP segment crosses the switch as one frame. Only where it must
//! leave as real packets (a port without offloads) is it cut into wire-size frames, or its
//! checksum filled in: done here, with tun-rs's GSO helpers, into buffers reused across frames.

use std::io;

use tun_rs::{gso_split, VirtioNetHdr};

use crate::frame::Header;
use crate::reason::DropReason;

/// Bytes of the virtio_net_hdr in front of every frame on a port with offloads.
pub const VNET_HDR_LEN: usize = tun_rs::VIRTIO_NET_HDR_LEN;
/// `flags`: the transport checksum is left for the receiver to fill in.
const NEEDS_CSUM: u8 = 1;
/// `gso_type` ECN bit, not part of the type.
const GSO_ECN: u8 = 0x80;
/// `gso_type` of a frame that is not to be segmented.
const GSO_NONE: u8 = 0;
/// Segment buffers kept ready: a 64 KB frame at an MSS of 536 needs 123.
const MAX_SEGMENTS: usize = 128;

/// Offload metadata of one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offload(pub VirtioNetHdr);

impl Offload {
    /// Reads the header in front of a frame.
    pub fn parse(bytes: &[u8]) -> Offload {
        VirtioNetHdr::decode(bytes).map(Offload).unwrap_or_default()
    }

    /// The header's bytes.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut out = [0u8; VNET_HDR_LEN];
        self.0.encode(&mut out).expect("buffer is header-sized");
        out
    }

    /// A frame to be segmented before it goes on the wire.
    pub fn is_gso(&self) -> bool {
        self.0.gso_type & !GSO_ECN != GSO_NONE
    }

    /// A frame whose transport checksum is still to be filled in.
    pub fn needs_csum(&self) -> bool {
        self.0.flags & NEEDS_CSUM != 0
    }

    /// Length of the largest frame this one becomes on the wire.
    pub fn wire_len(&self, frame_len: usize) -> usize {
        if self.is_gso() {
            frame_len.min(usize::from(self.0.hdr_len) + usize::from(self.0.gso_size))
        } else {
            frame_len
        }
    }

    /// The same metadata after the L2 header grew or shrank by `delta` bytes (a VLAN tag
    /// pushed or popped): its offsets count from the start of the frame.
    pub fn shifted(&self, delta: isize) -> Offload {
        let mut hdr = self.0;
        if self.needs_csum() || self.is_gso() {
            hdr.csum_start = hdr.csum_start.saturating_add_signed(delta as i16);
            hdr.hdr_len = hdr.hdr_len.saturating_add_signed(delta as i16);
        }
        Offload(hdr)
    }
}

/// Turns offloaded frames into wire frames, reusing its buffers.
pub struct Segmenter {
    /// The frame as it leaves, assembled in one piece (tun-rs wants it contiguous and mutable).
    frame: Vec<u8>,
    segments: Vec<Vec<u8>>,
    sizes: Vec<usize>,
}

impl Default for Segmenter {
    fn default() -> Self {
        Segmenter {
            frame: Vec::new(),
            segments: vec![Vec::new(); MAX_SEGMENTS],
            sizes: vec![0; MAX_SEGMENTS],
        }
    }
}

impl Segmenter {
    /// The wire frames of the frame made of `parts` (as it leaves: egress tag in place,
    /// `offload` shifted to match). A frame needing only its checksum becomes one frame; a GSO
    /// frame one frame per segment, each with its own IP length, id and checksums.
    pub fn wire_frames(
        &mut self,
        parts: &[&[u8]],
        offload: Offload,
    ) -> Result<impl Iterator<Item = &[u8]>, DropReason> {
        let count = if offload.is_gso() {
            assemble(&mut self.frame, parts);
            let l2_len = Header::parse(&self.frame)
                .map_err(|_| DropReason::BadOffload)?
                .l2_len();
            self.segment(offload, l2_len)?
        } else {
            assemble(&mut self.segments[0], parts);
            fill_checksum(&mut self.segments[0], offload)?;
            self.sizes[0] = self.segments[0].len();
            1
        };
        Ok(self.segments[..count]
            .iter()
            .zip(&self.sizes)
            .map(|(buf, len)| &buf[..*len]))
    }

    fn segment(&mut self, offload: Offload, l2_len: usize) -> Result<usize, DropReason> {
        let hdr = offload.0;
        // tun-rs segments IP packets (as a TUN device has them): hand it the L3 part with
        // offsets relative to it, and leave room for the Ethernet header in each segment.
        let l2 = u16::try_from(l2_len).map_err(|_| DropReason::BadOffload)?;
        let mut l3_hdr = hdr;
        l3_hdr.csum_start = hdr
            .csum_start
            .checked_sub(l2)
            .ok_or(DropReason::BadOffload)?;
        l3_hdr.hdr_len = hdr.hdr_len.checked_sub(l2).ok_or(DropReason::BadOffload)?;
        let is_v6 = self.frame[l2_len - 2..l2_len] == [0x86, 0xdd];
        let segment_len = usize::from(hdr.hdr_len) + usize::from(hdr.gso_size);
        // Grows (rarely: a small MSS) and is kept, so steady traffic allocates nothing.
        let payload = self.frame.len().saturating_sub(usize::from(hdr.hdr_len));
        let needed = payload.div_ceil(usize::from(hdr.gso_size).max(1));
        if needed > self.segments.len() {
            self.segments.resize(needed, Vec::new());
            self.sizes.resize(needed, 0);
        }
        for buf in &mut self.segments {
            if buf.len() < segment_len {
                buf.resize(segment_len, 0);
            }
        }
        let (l2_header, l3) = self.frame.split_at_mut(l2_len);
        let count = gso_split(
            l3,
            l3_hdr,
            &mut self.segments,
            &mut self.sizes,
            l2_len,
            is_v6,
        )
        .map_err(|_: io::Error| DropReason::BadOffload)?;
        for (buf, size) in self.segments[..count].iter_mut().zip(&mut self.sizes) {
            buf[..l2_len].copy_from_slice(l2_header);
            *size += l2_len;
        }
        Ok(count)
    }
}

fn assemble(buf: &mut Vec<u8>, parts: &[&[u8]]) {
    buf.clear();
    for part in parts {
        buf.extend_from_slice(part);
    }
}

/// Fills in the transport checksum the sender left to us.
fn fill_checksum(frame: &mut [u8], offload: Offload) -> Result<(), DropReason> {
    if !offload.needs_csum() {
        return Ok(());
    }
    let start = usize::from(offload.0.csum_start);
    let at = start + usize::from(offload.0.csum_offset);
    if at + 2 > frame.len() {
        return Err(DropReason::BadOffload);
    }
    // The field holds the pseudo-header sum; fold the rest of the segment into it.
    let initial = u16::from_be_bytes([frame[at], frame[at + 1]]);
    frame[at..at + 2].fill(0);
    let sum = !tun_rs::checksum(&frame[start..], u64::from(initial));
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;
    use crate::frame::{egress_parts, vlan_tag};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// A TCP/IPv4 frame with correct checksums, as etherparse writes it.
    fn tcp_frame(payload: &[u8], seq: u32) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, seq, 64240);
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        frame
    }

    /// The offload header the kernel puts on a TSO frame of `frame`.
    fn tso_header(gso_size: u16) -> Offload {
        Offload(VirtioNetHdr {
            flags: NEEDS_CSUM,
            gso_type: tun_rs::VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 14 + 20 + 20,
            gso_size,
            csum_start: 14 + 20,
            csum_offset: 16,
        })
    }

    /// Checks one wire frame with etherparse: IP and TCP checksums valid; returns (seq, payload).
    fn check_wire_frame(frame: &[u8], tagged: bool) -> (u32, Vec<u8>) {
        assert_eq!(frame[12..14] == [0x81, 0x00], tagged);
        let packet = SlicedPacket::from_ethernet(frame).expect("valid frame");
        let Some(NetSlice::Ipv4(ip)) = &packet.net else {
            panic!("not IPv4")
        };
        let ip_header = ip.header().to_header();
        assert_eq!(
            ip_header.header_checksum,
            ip_header.calc_header_checksum(),
            "IP checksum"
        );
        let Some(TransportSlice::Tcp(tcp)) = &packet.transport else {
            panic!("not TCP")
        };
        let data = tcp.payload();
        let expected = tcp
            .to_header()
            .calc_checksum_ipv4(&ip_header, data)
            .unwrap();
        assert_eq!(tcp.checksum(), expected, "TCP checksum");
        (tcp.sequence_number(), data.to_vec())
    }

    #[test]
    fn a_tso_frame_becomes_wire_frames_with_valid_checksums() {
        let data = payload(3000);
        let frame = tcp_frame(&data, 1_000_000);
        let mut segmenter = Segmenter::default();
        let parts = egress_parts(&frame, 0, &[]);
        let frames: Vec<Vec<u8>> = segmenter
            .wire_frames(&parts, tso_header(1000))
            .unwrap()
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(frames.len(), 3);
        let mut joined = Vec::new();
        for (i, wire) in frames.iter().enumerate() {
            assert_eq!(wire.len(), 14 + 20 + 20 + 1000);
            let (seq, data) = check_wire_frame(wire, false);
            assert_eq!(seq, 1_000_000 + 1000 * i as u32);
            joined.extend(data);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn segments_keep_a_pushed_vlan_tag() {
        let data = payload(2500);
        let frame = tcp_frame(&data, 7);
        let tag = vlan_tag(42);
        let parts = egress_parts(&frame, 0, &tag);
        let mut segmenter = Segmenter::default();
        let offload = tso_header(1448).shifted(4);
        let frames: Vec<Vec<u8>> = segmenter
            .wire_frames(&parts, offload)
            .unwrap()
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(frames.len(), 2);
        let joined: Vec<u8> = frames
            .iter()
            .flat_map(|f| check_wire_frame(f, true).1)
            .collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn a_partial_checksum_is_filled_in() {
        let frame = tcp_frame(&payload(300), 1);
        let good = frame[14 + 20 + 16..14 + 20 + 18].to_vec();
        // As the kernel hands it over with CHECKSUM_PARTIAL: the field holds the folded
        // pseudo-header sum (addresses, protocol, TCP length).
        let mut partial = frame.clone();
        let tcp_len = (frame.len() - 34) as u16;
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6];
        pseudo.extend_from_slice(&tcp_len.to_be_bytes());
        partial[50..52].copy_from_slice(&tun_rs::checksum(&pseudo, 0).to_be_bytes());
        let offload = Offload(VirtioNetHdr {
            flags: NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        });
        let mut segmenter = Segmenter::default();
        let out: Vec<Vec<u8>> = segmenter
            .wire_frames(&egress_parts(&partial, 0, &[]), offload)
            .unwrap()
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][50..52], good[..]);
        check_wire_frame(&out[0], false);
    }

    #[test]
    fn nonsense_offload_metadata_is_a_counted_drop_not_a_panic() {
        let frame = tcp_frame(&payload(100), 1);
        let mut segmenter = Segmenter::default();
        let parts = egress_parts(&frame, 0, &[]);
        let mut hdr = tso_header(1000);
        hdr.0.csum_start = 10; // inside the Ethernet header
        assert_eq!(
            segmenter.wire_frames(&parts, hdr).err(),
            Some(DropReason::BadOffload)
        );
        let mut hdr = tso_header(0);
        hdr.0.gso_size = 0;
        assert_eq!(
            segmenter.wire_frames(&parts, hdr).err(),
            Some(DropReason::BadOffload)
        );
        let csum = Offload(VirtioNetHdr {
            flags: NEEDS_CSUM,
            csum_start: 60_000,
            csum_offset: 16,
            ..Default::default()
        });
        assert_eq!(
            segmenter.wire_frames(&parts, csum).err(),
            Some(DropReason::BadOffload)
        );
        // Fuzz the header fields: never a panic.
        let mut seed: u64 = 7;
        for _ in 0..5_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = seed.to_le_bytes();
            let hdr = Offload(VirtioNetHdr {
                flags: b[0] & 1,
                gso_type: [0, 1, 4, 5, 0x81][b[1] as usize % 5],
                hdr_len: u16::from(b[2]),
                gso_size: u16::from_le_bytes([b[3], b[4] & 0x7]),
                csum_start: u16::from(b[5]),
                csum_offset: u16::from(b[6] & 0x1f),
            });
            let _ = segmenter
                .wire_frames(&parts, hdr)
                .map(|frames| frames.count());
        }
    }
}
