//! Receive coalescing (GRO) for frames that arrive one wire segment at a time, as VXLAN from
//! another host does: consecutive TCP/IPv4 segments of one flow are joined into one large
//! frame with a TSO offload header, so a container's TAP takes one 64 KB write instead of ~45
//! (each write runs the receiver's TCP input: the cost that limits a switch without offloads).
//! Only what the kernel's GRO would merge is merged: same headers but sequence number, IP ID and
//! checksums; contiguous sequence; no flags but ACK (PSH may end a run); no IP options or
//! fragments; every segment but the last of the full size. tun-rs has a GRO table, but for IP
//! packets of a TUN device, not Ethernet frames.

use tun_rs::VirtioNetHdr;

use crate::offload::Offload;

const ETH: usize = 14;
const IP: usize = 20;
/// The frame grows at most to this (the IP total length is 16 bits).
const MAX_FRAME: usize = ETH + 65_535;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Joins consecutive segments of one TCP flow into one frame, in a buffer it reuses.
#[derive(Debug, Default)]
pub struct Coalescer {
    buf: Vec<u8>,
    /// Ethernet, IP and TCP headers of the run.
    hdr_len: usize,
    /// Payload of its first segment: every other must be as long, but the last.
    mss: usize,
    next_seq: u32,
    segments: usize,
    /// The run cannot grow (a short segment or PSH ended it).
    closed: bool,
}

/// Where a frame's TCP header and payload are, if it may be coalesced.
struct Segment {
    tcp_len: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

fn segment(frame: &[u8]) -> Option<Segment> {
    if frame.len() < ETH + IP + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // IPv4 without options, TCP, not a fragment, and exactly the frame (no Ethernet padding).
    if ip[0] != 0x45 || ip[9] != 6 || ip[6] & 0x3f != 0 || ip[7] != 0 || ETH + total != frame.len()
    {
        return None;
    }
    let tcp = &ip[IP..];
    let tcp_len = usize::from(tcp[12] >> 4) * 4;
    if tcp_len < 20 || IP + tcp_len > total {
        return None;
    }
    let flags = tcp[13];
    let payload = total - IP - tcp_len;
    if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 || payload == 0 {
        return None;
    }
    Some(Segment {
        tcp_len,
        payload,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags,
    })
}

impl Coalescer {
    /// Takes `frame` into the run if it continues it (or starts one when there is none); false
    /// if it does not: finish the run, then offer the frame again or send it as it is.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let Some(seg) = segment(frame) else {
            return false;
        };
        let hdr_len = ETH + IP + seg.tcp_len;
        if self.segments == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(frame);
            self.hdr_len = hdr_len;
            self.mss = seg.payload;
        } else {
            if self.closed
                || hdr_len != self.hdr_len
                || seg.seq != self.next_seq
                || seg.payload > self.mss
                || self.buf.len() + seg.payload > MAX_FRAME
                || !self.same_flow(frame)
            {
                return false;
            }
            self.buf.extend_from_slice(&frame[hdr_len..]);
        }
        self.segments += 1;
        self.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        self.closed = seg.payload < self.mss || seg.flags & TCP_PSH != 0;
        if seg.flags & TCP_PSH != 0 {
            // The merged frame carries PSH, as the kernel's GRO does.
            self.buf[ETH + IP + 13] |= TCP_PSH;
        }
        true
    }

    /// Headers equal to the run's but for the fields that change from segment to segment:
    /// IP total length, ID and checksum; TCP sequence number, flags (PSH) and checksum.
    fn same_flow(&self, frame: &[u8]) -> bool {
        let (a, b) = (&self.buf[..self.hdr_len], &frame[..self.hdr_len]);
        let tcp = ETH + IP;
        a[..ETH + 2] == b[..ETH + 2]
            && a[ETH + 6..ETH + 10] == b[ETH + 6..ETH + 10]
            && a[ETH + 12..tcp + 4] == b[ETH + 12..tcp + 4]
            && a[tcp + 8..tcp + 13] == b[tcp + 8..tcp + 13]
            && a[tcp + 14..tcp + 16] == b[tcp + 14..tcp + 16]
            && a[tcp + 18..] == b[tcp + 18..]
    }

    /// Whether a run is under way.
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Ends the run: the frame and its offload header (none for a run of one segment, which
    /// leaves as it came).
    pub fn finish(&mut self) -> Option<(Offload, &[u8])> {
        let segments = std::mem::take(&mut self.segments);
        if segments == 0 {
            return None;
        }
        if segments == 1 {
            return Some((Offload::default(), &self.buf));
        }
        let ip_len = (self.buf.len() - ETH) as u16;
        let ip = &mut self.buf[ETH..ETH + IP];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[10..12].fill(0);
        let sum = fold(sum16(ip, 0));
        ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
        // The TCP checksum field holds the pseudo-header's sum, for the receiver to complete
        // (CHECKSUM_PARTIAL), as on any TSO frame.
        let tcp_len = (self.buf.len() - ETH - IP) as u32;
        let pseudo = sum16(&self.buf[ETH + 12..ETH + 20], 6 + tcp_len);
        let tcp = ETH + IP;
        self.buf[tcp + 16..tcp + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
        let offload = Offload(VirtioNetHdr {
            flags: 1,
            gso_type: tun_rs::VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: self.hdr_len as u16,
            gso_size: self.mss as u16,
            csum_start: (ETH + IP) as u16,
            csum_offset: 16,
        });
        Some((offload, &self.buf))
    }
}

/// One's complement sum of 16-bit words, on top of `start`.
fn sum16(bytes: &[u8], start: u32) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .fold(start, |acc, w| acc + w)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::Segmenter;
    use etherparse::PacketBuilder;

    fn segment_frame(payload: &[u8], seq: u32, psh: bool) -> Vec<u8> {
        let mut builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, seq, 64240)
            .ack(77);
        if psh {
            builder = builder.psh();
        }
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        frame
    }

    #[test]
    fn consecutive_segments_become_one_tso_frame_that_segments_back_into_them() {
        let data: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        let frames: Vec<Vec<u8>> = data
            .chunks(1400)
            .enumerate()
            .map(|(i, chunk)| segment_frame(chunk, 1000 + 1400 * i as u32, i == 2))
            .collect();
        let mut c = Coalescer::default();
        for frame in &frames {
            assert!(c.push(frame));
        }
        // After a short (last) segment the run is closed.
        assert!(!c.push(&segment_frame(b"more", 1000 + 4000, false)));
        let (offload, merged) = c.finish().unwrap();
        assert!(offload.is_gso() && offload.needs_csum());
        assert_eq!(merged.len(), 54 + 4000);
        // Cut again as a port without offloads would: the very segments that came in.
        let mut segmenter = Segmenter::default();
        let parts = [&merged[..12], &[][..], &merged[12..]];
        let out: Vec<Vec<u8>> = segmenter
            .wire_frames(&parts, offload)
            .unwrap()
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(out.len(), 3);
        for (got, want) in out.iter().zip(&frames) {
            let (g, w) = (
                etherparse::SlicedPacket::from_ethernet(got).unwrap(),
                etherparse::SlicedPacket::from_ethernet(want).unwrap(),
            );
            let (
                Some(etherparse::TransportSlice::Tcp(gt)),
                Some(etherparse::TransportSlice::Tcp(wt)),
            ) = (g.transport, w.transport)
            else {
                panic!("TCP")
            };
            assert_eq!(gt.sequence_number(), wt.sequence_number());
            assert_eq!(gt.payload(), wt.payload());
            assert_eq!(gt.checksum(), wt.checksum(), "checksum as the sender's");
        }
    }

    #[test]
    fn what_the_kernel_would_not_merge_is_left_alone() {
        let mut c = Coalescer::default();
        let first = segment_frame(&[1; 1400], 1, false);
        assert!(c.push(&first));
        assert!(!c.push(&segment_frame(&[1; 1400], 9999, false)), "a gap");
        let mut other_flow = segment_frame(&[1; 1400], 1401, false);
        other_flow[14 + 20] ^= 1;
        assert!(!c.push(&other_flow), "another port");
        let (offload, frame) = c.finish().unwrap();
        assert!(!offload.is_gso(), "one segment leaves as it came");
        assert_eq!(frame, &first[..]);
        let mut syn = segment_frame(&[1; 10], 1, false);
        syn[14 + 20 + 13] = 0x02;
        assert!(!c.push(&syn), "not a plain ACK segment");
        assert!(!c.push(&[0u8; 20]), "a runt");
        assert!(c.is_empty());
    }
}
