//! A capture's pcapng output as a list of pieces, so that a frame is never copied per capture:
//! a large frame goes out as the very bytes the data path copied once (shared by every capture
//! that takes it), between a header and a trailer written here; small frames, and the blocks
//! pcap_file writes (section, interfaces, statistics), are gathered into one buffer. Every piece
//! stays charged to the capture's budget until the client has it.
//!
//! The enhanced packet block is encoded here rather than by pcap_file because pcap_file writes
//! a block into an `io::Write`, which means a copy of every frame per capture: with twenty
//! captures of a 64 KB-segment transfer those copies were most of the daemon's memory
//! (+76 MiB, against +3 MiB for one capture). Its layout is pcapng's (RFC draft
//! draft-ietf-opsawg-pcapng, section 4.3), in the native byte order pcap_file's writer declares
//! in the section header; the tests read it back with pcap_file.

use bytes::Bytes;

use super::queue::{Budget, Charge};
use super::{Captured, Direction};

/// Frames shorter than this are copied into the current buffer; longer ones are shared.
const SHARE_FROM: usize = 2048;

const ENHANCED_PACKET_BLOCK: u32 = 6;
const OPTION_END: u16 = 0;
const OPTION_COMMENT: u16 = 1;
const OPTION_FLAGS: u16 = 2;

/// pcapng being written, as pieces ready to hand to the client.
pub struct Pieces {
    budget: Budget,
    done: Vec<Bytes>,
    open: Vec<u8>,
    len: usize,
}

impl Pieces {
    /// Empty output charged to `budget`.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            done: Vec::new(),
            open: Vec::new(),
            len: 0,
        }
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends blocks written elsewhere (by pcap_file).
    pub fn extend(&mut self, blocks: &[u8]) {
        self.open.extend_from_slice(blocks);
        self.len += blocks.len();
    }

    /// Appends `frame`, cut to its first `kept` bytes, as an enhanced packet block. `charge` is
    /// the frame's, kept with it if it is shared.
    pub fn packet(&mut self, frame: &Captured, kept: usize, charge: Charge) {
        let comment = frame
            .drop
            .as_ref()
            .map(|reason| format!("dropped by vswitch: {reason}"));
        let pad = padding(kept);
        let options = 8
            + comment
                .as_ref()
                .map_or(0, |c| 4 + c.len() + padding(c.len()))
            + 4;
        let total = 28 + kept + pad + options + 4;
        let nanos = frame
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        for word in [
            ENHANCED_PACKET_BLOCK,
            total as u32,
            frame.interface,
            (nanos >> 32) as u32,
            nanos as u32,
            kept as u32,
            frame.original_len,
        ] {
            self.open.extend_from_slice(&word.to_ne_bytes());
        }
        if kept < SHARE_FROM {
            self.open.extend_from_slice(&frame.data[..kept]);
        } else {
            self.close_open();
            self.done.push(charge.hold(frame.data.slice(..kept)));
        }
        self.open.extend_from_slice(&[0; 3][..pad]);
        let flags: u32 = match frame.direction {
            Direction::In => 0b01,
            Direction::Out => 0b10,
        };
        self.option(OPTION_FLAGS, &flags.to_ne_bytes());
        if let Some(comment) = &comment {
            self.option(OPTION_COMMENT, comment.as_bytes());
        }
        self.option(OPTION_END, &[]);
        self.open.extend_from_slice(&(total as u32).to_ne_bytes());
        self.len += total;
    }

    /// Hands out what is gathered, leaving it empty.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.close_open();
        self.len = 0;
        std::mem::take(&mut self.done)
    }

    fn option(&mut self, code: u16, value: &[u8]) {
        self.open.extend_from_slice(&code.to_ne_bytes());
        self.open
            .extend_from_slice(&(value.len() as u16).to_ne_bytes());
        self.open.extend_from_slice(value);
        self.open.extend_from_slice(&[0; 3][..padding(value.len())]);
    }

    /// Moves the buffer into the pieces, charged until the client has it.
    fn close_open(&mut self) {
        if !self.open.is_empty() {
            let open = std::mem::take(&mut self.open);
            let charge = self.budget.charge(open.len());
            self.done.push(charge.hold(Bytes::from(open)));
        }
    }
}

/// Bytes that bring `len` to a multiple of 4.
fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use vswitch_core::reason::DropReason;

    #[test]
    fn packet_blocks_read_back_with_pcap_file_and_large_frames_are_shared() {
        let budget = Budget::default();
        let mut pieces = Pieces::new(budget.clone());
        let header = PcapNgWriter::new(Vec::new()).unwrap().into_inner();
        pieces.extend(&header);
        let time = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let frames = [
            (61, Direction::In, None),
            (9000, Direction::Out, Some(DropReason::OverMtu)),
            (1, Direction::In, None),
        ];
        let mut shared = None;
        for (len, direction, drop) in frames.clone() {
            let frame = Captured {
                interface: len as u32 % 7,
                direction,
                time,
                data: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
                original_len: len as u32 + 5,
                drop,
            };
            let kept = len.min(8999);
            pieces.packet(&frame, kept, budget.charge(len));
            if len > SHARE_FROM {
                shared = Some(frame.data.as_ptr());
            }
        }
        let out = pieces.take();
        assert!(pieces.is_empty());
        assert!(
            out.iter().any(|p| Some(p.as_ptr()) == shared),
            "the large frame goes out as the data path's copy"
        );
        assert!(budget.held() > 9000, "pieces stay charged while held");
        let bytes: Vec<u8> = out.iter().flat_map(|p| p.iter().copied()).collect();
        drop(out);
        assert_eq!(budget.held(), 0, "released once the client has them");
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut read = Vec::new();
        while let Some(block) = reader.next_block() {
            if let Block::EnhancedPacket(epb) = block.unwrap() {
                read.push(epb.into_owned());
            }
        }
        assert_eq!(read.len(), 3);
        for (epb, (len, direction, drop)) in read.iter().zip(frames) {
            let kept = len.min(8999);
            assert_eq!(epb.data.len(), kept);
            assert!(epb.data.iter().enumerate().all(|(i, b)| *b == i as u8));
            assert_eq!(epb.original_len, len as u32 + 5);
            assert_eq!(epb.interface_id, len as u32 % 7);
            assert_eq!(SystemTime::UNIX_EPOCH + epb.timestamp, time);
            let flags = if direction == Direction::In { 1 } else { 2 };
            assert!(epb.options.contains(&EnhancedPacketOption::Flags(flags)));
            let comment = epb.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                _ => None,
            });
            assert_eq!(comment.is_some(), drop.is_some(), "{comment:?}");
        }
    }
}
