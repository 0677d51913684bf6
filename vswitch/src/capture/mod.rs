//! Live captures written as pcapng: a writer thread per capture takes the frames the data path
//! copied (`datapath::fanout`), filters them (tcpdump's language, `filter`) and encodes pcapng
//! (pcap-file for the section, interfaces and statistics; `pieces` for the packets, which it
//! does not copy again): one interface per port, named after its endpoint, direction in the
//! packet flags, and for dropped frames a comment naming the drop reason. What a capture holds
//! is bounded by its share of a budget for all captures (`queue`).

pub mod filter;
pub mod pieces;
pub mod queue;

use std::borrow::Cow;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use vswitch_core::reason::DropReason;

use filter::Filter;
use pieces::Pieces;
use queue::QueueReceiver;

/// Default bytes kept of each frame (a 64 KB offloaded segment whole).
pub const DEFAULT_SNAPLEN: u32 = 65_535;

/// Which way a frame crossed a port, seen from the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Arrived from the port's device (sent by the container).
    In,
    /// Sent to the port's device (received by the container).
    Out,
}

/// One copied frame.
#[derive(Debug)]
pub struct Captured {
    /// Index of its port in the capture's scope (the pcapng interface).
    pub interface: u32,
    /// Direction at that port.
    pub direction: Direction,
    /// When it was seen.
    pub time: SystemTime,
    /// The frame, cut at the largest snap length of the captures taking it: one copy shared by
    /// them all; each writer cuts it to its own.
    pub data: bytes::Bytes,
    /// Its length before cutting.
    pub original_len: u32,
    /// Why the switch dropped it, if it did.
    pub drop: Option<DropReason>,
}

/// How a capture's output ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It wrote the frames it was asked for.
    Count,
    /// It was stopped (the client asked, or the daemon is stopping).
    Stopped,
    /// The reader went away.
    ReaderGone,
}

/// What a capture writer needs besides its frames.
pub struct WriterConfig {
    /// Interface names, in scope order.
    pub interfaces: Vec<String>,
    /// Snap length, for the interface descriptions.
    pub snaplen: u32,
    /// tcpdump filter, if any.
    pub filter: Option<String>,
    /// Stop after this many written frames.
    pub count: Option<u64>,
}

/// Encodes captured frames as pcapng and hands out the bytes in batches of pieces (`pieces`:
/// large frames are not copied again). `emit` returns false when the reader is gone; `stopped`
/// is polled between frames. At the end (unless the reader is gone) `finish` stops the capture
/// and yields, per interface, the frames seen and skipped, written as interface statistics
/// blocks (`isb_ifrecv`, `isb_ifdrop`). Returns how it ended and the number of frames written.
pub fn write_pcapng(
    config: &WriterConfig,
    frames: &QueueReceiver,
    stopped: &AtomicBool,
    finish: impl FnOnce() -> Vec<(u64, u64)>,
    mut emit: impl FnMut(Vec<bytes::Bytes>) -> bool,
) -> (Ended, u64) {
    // pcap_file writes the section header, interface descriptions and statistics; `out`
    // gathers them with the packet blocks.
    let Ok(mut writer) = PcapNgWriter::new(Vec::new()) else {
        return (Ended::Stopped, 0);
    };
    let mut out = Pieces::new(frames.budget().clone());
    let (ended, written) = write_frames(config, frames, stopped, &mut writer, &mut out, &mut emit);
    if ended != Ended::ReaderGone {
        write_statistics(&mut writer, &finish());
        out.extend(writer.get_ref());
        emit(out.take());
    }
    (ended, written)
}

fn write_frames(
    config: &WriterConfig,
    frames: &QueueReceiver,
    stopped: &AtomicBool,
    writer: &mut PcapNgWriter<Vec<u8>>,
    out: &mut Pieces,
    emit: &mut impl FnMut(Vec<bytes::Bytes>) -> bool,
) -> (Ended, u64) {
    let filter = config.filter.as_deref().map(Filter::compile);
    let filter = match filter {
        Some(Ok(f)) => Some(f),
        // The control plane compiled it before starting; a failure here is not reachable.
        Some(Err(_)) => return (Ended::Stopped, 0),
        None => None,
    };
    if write_interfaces(config, writer).is_err() {
        return (Ended::Stopped, 0);
    }
    out.extend(&std::mem::take(writer.get_mut()));
    if !emit(out.take()) {
        return (Ended::ReaderGone, 0);
    }
    let mut written = 0;
    loop {
        if config.count.is_some_and(|c| written >= c) {
            return (Ended::Count, written);
        }
        if stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return (Ended::Stopped, written);
        }
        let first = match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return (Ended::Stopped, written),
        };
        // Take what else is queued too and hand it on in one piece: one write per batch, not
        // per frame, keeps up with a busy port.
        let mut batch = Some(first);
        while let Some((frame, charge)) = batch.take() {
            if config.count.is_some_and(|c| written >= c) {
                break;
            }
            let kept = frame.data.len().min(config.snaplen as usize);
            if filter
                .as_ref()
                .is_none_or(|f| f.matches(&frame.data[..kept]))
            {
                out.packet(&frame, kept, charge);
                written += 1;
            }
            if out.len() < EMIT_BATCH_BYTES {
                batch = frames.try_recv();
            }
        }
        if !out.is_empty() && !emit(out.take()) {
            return (Ended::ReaderGone, written);
        }
    }
}

/// Bytes of pcapng gathered before they are handed on.
const EMIT_BATCH_BYTES: usize = 256 << 10;

/// One interface description per port.
fn write_interfaces(
    config: &WriterConfig,
    writer: &mut PcapNgWriter<Vec<u8>>,
) -> pcap_file::PcapResult<()> {
    for name in &config.interfaces {
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: config.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                // Timestamps are in nanoseconds.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        writer.write_pcapng_block(idb)?;
    }
    Ok(())
}

/// Interface statistics blocks: frames seen and skipped per interface.
fn write_statistics(writer: &mut PcapNgWriter<Vec<u8>>, statistics: &[(u64, u64)]) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    for (index, (seen, skipped)) in statistics.iter().enumerate() {
        let isb = InterfaceStatisticsBlock {
            interface_id: index as u32,
            timestamp: now,
            options: vec![
                InterfaceStatisticsOption::IsbIfRecv(*seen),
                InterfaceStatisticsOption::IsbIfDrop(*skipped),
            ],
        };
        let _ = writer.write_pcapng_block(isb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_core::frame::fixtures::{bytes, ICMP_REQUEST};

    #[test]
    fn pcapng_has_named_interfaces_directions_drop_comments_and_statistics() {
        let (queue, rx) = queue::queue();
        let frame = bytes(ICMP_REQUEST);
        let copy = |interface, direction, drop| Captured {
            interface,
            direction,
            time: SystemTime::now(),
            data: bytes::Bytes::from(frame.clone()),
            original_len: frame.len() as u32,
            drop,
        };
        let share = queue::CAPTURE_BYTES;
        assert!(queue.offer(copy(0, Direction::In, None), share));
        assert!(queue.offer(copy(1, Direction::Out, Some(DropReason::OverMtu)), share));
        let config = WriterConfig {
            interfaces: vec!["web".into(), "db".into()],
            snaplen: 65_535,
            filter: Some("icmp".into()),
            count: Some(2),
        };
        let mut out = Vec::new();
        let finish = || vec![(1, 0), (1, 0)];
        let (ended, written) = write_pcapng(&config, &rx, &AtomicBool::new(false), finish, |b| {
            out.extend(b.iter().flat_map(|p| p.iter().copied()));
            true
        });
        assert_eq!((ended, written), (Ended::Count, 2));
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&out[..]).unwrap();
        let mut names = Vec::new();
        let mut packets = Vec::new();
        let mut drops_reported = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                pcap_file::pcapng::Block::InterfaceDescription(idb) => {
                    names.extend(idb.options.iter().filter_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    }))
                }
                pcap_file::pcapng::Block::EnhancedPacket(epb) => {
                    assert_eq!(&epb.data[..], &frame[..]);
                    packets.push((
                        epb.interface_id,
                        epb.options
                            .clone()
                            .into_iter()
                            .map(|o| format!("{o:?}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ));
                }
                pcap_file::pcapng::Block::InterfaceStatistics(isb) => {
                    drops_reported.push(
                        isb.options
                            .contains(&InterfaceStatisticsOption::IsbIfDrop(0)),
                    );
                }
                _ => {}
            }
        }
        assert_eq!(names, vec!["web", "db"]);
        assert_eq!(packets.len(), 2);
        assert!(packets[0].1.contains("Flags(1)"), "{packets:?}");
        assert!(
            packets[1].1.contains("Flags(2)") && packets[1].1.contains("over_mtu"),
            "{packets:?}"
        );
        assert_eq!(drops_reported, vec![true, true]);
    }
}
