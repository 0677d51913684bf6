//! Taps on the data path: live capture to pcapng and port mirroring (SPAN). With nothing
//! tapped, the data path pays one relaxed atomic load per frame. A capture copies the frames of
//! its ports into a bounded queue and never waits: when the queue is full (a slow reader) the
//! frame is skipped and counted, so capturing never slows forwarding. A writer thread per capture
//! filters (tcpdump's language, compiled by libpcap) and encodes pcapng (pcap-file): one
//! interface per port, named after its endpoint, direction in the packet flags, and for dropped
//! frames a comment naming the drop reason.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

pub use crate::capture_filter::{Filter, FilterError};
use vswitch_core::ids::PortId;
use vswitch_core::reason::DropReason;

/// Frames a capture may hold waiting for its writer.
pub const CAPTURE_QUEUE: usize = 4096;
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

/// Which frames a tap takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapScope {
    /// Ports tapped.
    pub ports: Vec<PortId>,
    /// Both directions (a port), or only frames entering the switch (a whole network, where the
    /// other direction would repeat every frame; frames dropped on the way out still count).
    pub both_directions: bool,
}

impl TapScope {
    fn index_of(&self, port: PortId, direction: Direction, dropped: bool) -> Option<usize> {
        if direction == Direction::Out && !self.both_directions && !dropped {
            return None;
        }
        self.ports.iter().position(|p| *p == port)
    }
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
    /// The frame, cut at the snap length.
    pub data: Vec<u8>,
    /// Its length before cutting.
    pub original_len: u32,
    /// Why the switch dropped it, if it did.
    pub drop: Option<DropReason>,
}

/// A running capture as the data path sees it.
pub struct CaptureTap {
    id: u64,
    scope: TapScope,
    drops: bool,
    snaplen: usize,
    queue: SyncSender<Captured>,
    /// Frames skipped because the queue was full, per interface.
    skipped: Vec<AtomicU64>,
    /// Frames offered, per interface (pcapng's isb_ifrecv).
    seen: Vec<AtomicU64>,
}

/// A port mirror: copies of the frames of `scope` go out of `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorTap {
    /// Mirror name.
    pub name: String,
    /// What is copied.
    pub scope: TapScope,
    /// Where the copies go.
    pub target: PortId,
}

/// Everything tapped on the data path, shared by its workers and the control plane.
#[derive(Default)]
pub struct Taps {
    /// Number of captures and mirrors: the data path looks no further while it is 0.
    active: AtomicUsize,
    captures: RwLock<Vec<Arc<CaptureTap>>>,
    mirrors: RwLock<Vec<MirrorTap>>,
    next_id: AtomicU64,
    /// Frames every capture skipped so far, for metrics.
    skipped_total: AtomicU64,
}

impl Taps {
    /// Whether anything is tapped: one relaxed load, the data path's only cost otherwise.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Relaxed) != 0
    }

    /// Copies a frame (given as the parts of its bytes) to every capture that wants it. Never
    /// blocks: a full capture queue skips the frame and counts it.
    pub fn offer(
        &self,
        port: PortId,
        direction: Direction,
        parts: &[&[u8]],
        drop: Option<DropReason>,
    ) {
        let captures = self
            .captures
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for capture in captures.iter() {
            let Some(index) = capture.scope.index_of(port, direction, drop.is_some()) else {
                continue;
            };
            if drop.is_some() && !capture.drops {
                continue;
            }
            capture.seen[index].fetch_add(1, Relaxed);
            let original_len: usize = parts.iter().map(|p| p.len()).sum();
            let mut data = Vec::with_capacity(original_len.min(capture.snaplen));
            for part in parts {
                let room = capture.snaplen - data.len();
                data.extend_from_slice(&part[..part.len().min(room)]);
            }
            let frame = Captured {
                interface: index as u32,
                direction,
                time: SystemTime::now(),
                data,
                original_len: original_len as u32,
                drop: drop.clone(),
            };
            if let Err(TrySendError::Full(_)) = capture.queue.try_send(frame) {
                capture.skipped[index].fetch_add(1, Relaxed);
                self.skipped_total.fetch_add(1, Relaxed);
            }
        }
    }

    /// The mirror targets for a frame at `port` going `direction`.
    pub fn mirror_targets(&self, port: PortId, direction: Direction, out: &mut Vec<PortId>) {
        let mirrors = self
            .mirrors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for mirror in mirrors.iter() {
            if mirror.target != port && mirror.scope.index_of(port, direction, false).is_some() {
                out.push(mirror.target);
            }
        }
    }

    /// Starts a capture; frames come out of the returned receiver until `stop_capture`.
    pub fn start_capture(
        &self,
        scope: TapScope,
        drops: bool,
        snaplen: u32,
    ) -> (u64, Receiver<Captured>) {
        let (queue, receiver) = mpsc::sync_channel(CAPTURE_QUEUE);
        let id = self.next_id.fetch_add(1, Relaxed);
        let n = scope.ports.len();
        let tap = CaptureTap {
            id,
            scope,
            drops,
            snaplen: snaplen.max(1) as usize,
            queue,
            skipped: (0..n).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
        };
        self.write_captures().push(Arc::new(tap));
        self.active.fetch_add(1, Relaxed);
        (id, receiver)
    }

    /// Stops a capture; returns per interface (frames seen, frames skipped).
    pub fn stop_capture(&self, id: u64) -> Option<Vec<(u64, u64)>> {
        let mut captures = self.write_captures();
        let index = captures.iter().position(|c| c.id == id)?;
        let tap = captures.remove(index);
        self.active.fetch_sub(1, Relaxed);
        Some(
            tap.seen
                .iter()
                .zip(&tap.skipped)
                .map(|(seen, skipped)| (seen.load(Relaxed), skipped.load(Relaxed)))
                .collect(),
        )
    }

    /// Frames skipped by every capture so far.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total.load(Relaxed)
    }

    /// Replaces the mirrors.
    pub fn set_mirrors(&self, mirrors: Vec<MirrorTap>) {
        let mut current = self
            .mirrors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = current.len();
        *current = mirrors;
        let after = current.len();
        // Adjust the active count by the difference, captures unaffected.
        if after > before {
            self.active.fetch_add(after - before, Relaxed);
        } else {
            self.active.fetch_sub(before - after, Relaxed);
        }
    }

    fn write_captures(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<CaptureTap>>> {
        self.captures
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

/// Encodes captured frames as pcapng and hands out the bytes block by block. `emit` returns
/// false when the reader is gone; `stopped` is polled between frames. At the end (unless the
/// reader is gone) `finish` stops the capture and yields, per interface, the frames seen and
/// skipped, written as interface statistics blocks (`isb_ifrecv`, `isb_ifdrop`). Returns how it
/// ended and the number of frames written.
pub fn write_pcapng(
    config: &WriterConfig,
    frames: &Receiver<Captured>,
    stopped: &AtomicBool,
    finish: impl FnOnce() -> Vec<(u64, u64)>,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> (Ended, u64) {
    let Ok(mut writer) = PcapNgWriter::new(Vec::new()) else {
        return (Ended::Stopped, 0);
    };
    let (ended, written) = write_frames(config, frames, stopped, &mut writer, &mut emit);
    if ended != Ended::ReaderGone {
        write_statistics(&mut writer, &finish());
        emit(std::mem::take(writer.get_mut()));
    }
    (ended, written)
}

fn write_frames(
    config: &WriterConfig,
    frames: &Receiver<Captured>,
    stopped: &AtomicBool,
    writer: &mut PcapNgWriter<Vec<u8>>,
    emit: &mut impl FnMut(Vec<u8>) -> bool,
) -> (Ended, u64) {
    let filter = config.filter.as_deref().map(Filter::compile);
    let filter = match filter {
        Some(Ok(f)) => Some(f),
        // The control plane compiled it before starting; a failure here is not reachable.
        Some(Err(_)) => return (Ended::Stopped, 0),
        None => None,
    };
    for name in &config.interfaces {
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: config.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                // pcap-file writes timestamps in nanoseconds.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        if writer.write_pcapng_block(idb).is_err() {
            return (Ended::Stopped, 0);
        }
    }
    if !emit(std::mem::take(writer.get_mut())) {
        return (Ended::ReaderGone, 0);
    }
    let mut written = 0;
    loop {
        if config.count.is_some_and(|c| written >= c) {
            return (Ended::Count, written);
        }
        if stopped.load(Relaxed) {
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
        while let Some(frame) = batch.take() {
            if config.count.is_some_and(|c| written >= c) {
                break;
            }
            if filter.as_ref().is_none_or(|f| f.matches(&frame.data)) {
                if write_frame(writer, frame).is_err() {
                    return (Ended::Stopped, written);
                }
                written += 1;
            }
            if writer.get_ref().len() < EMIT_BATCH_BYTES {
                batch = frames.try_recv().ok();
            }
        }
        if !writer.get_ref().is_empty() && !emit(std::mem::take(writer.get_mut())) {
            return (Ended::ReaderGone, written);
        }
    }
}

/// Bytes of pcapng gathered before they are handed on.
const EMIT_BATCH_BYTES: usize = 1 << 20;

fn write_frame(
    writer: &mut PcapNgWriter<Vec<u8>>,
    frame: Captured,
) -> pcap_file::PcapResult<usize> {
    let mut options = vec![EnhancedPacketOption::Flags(match frame.direction {
        Direction::In => 0b01,
        Direction::Out => 0b10,
    })];
    if let Some(reason) = frame.drop {
        // The counter name, and the rule for policy drops: `denied (rule web-db)`.
        options.push(EnhancedPacketOption::Comment(Cow::Owned(format!(
            "dropped by vswitch: {reason}"
        ))));
    }
    writer.write_pcapng_block(EnhancedPacketBlock {
        interface_id: frame.interface,
        timestamp: frame.time.duration_since(UNIX_EPOCH).unwrap_or_default(),
        original_len: frame.original_len,
        data: Cow::Owned(frame.data),
        options,
    })
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

    fn scope(ports: &[u32], both: bool) -> TapScope {
        TapScope {
            ports: ports.iter().map(|p| PortId(*p)).collect(),
            both_directions: both,
        }
    }

    #[test]
    fn nothing_tapped_means_inactive_and_a_full_queue_skips() {
        let taps = Taps::default();
        assert!(!taps.is_active());
        let (id, rx) = taps.start_capture(scope(&[1], true), false, 20);
        assert!(taps.is_active());
        let frame = bytes(ICMP_REQUEST);
        for _ in 0..CAPTURE_QUEUE + 10 {
            taps.offer(PortId(1), Direction::In, &[&frame], None);
        }
        // Other ports, and drops without --drops, are not taken.
        taps.offer(PortId(2), Direction::In, &[&frame], None);
        taps.offer(
            PortId(1),
            Direction::In,
            &[&frame],
            Some(DropReason::OverMtu),
        );
        assert_eq!(taps.skipped_total(), 10);
        let first = rx.recv().unwrap();
        assert_eq!(
            (first.data.len(), first.original_len as usize),
            (20, frame.len())
        );
        assert_eq!(
            taps.stop_capture(id),
            Some(vec![(CAPTURE_QUEUE as u64 + 10, 10)])
        );
        assert!(!taps.is_active());
    }

    #[test]
    fn network_scope_takes_only_frames_entering_the_switch() {
        let net = scope(&[1, 2], false);
        assert_eq!(net.index_of(PortId(2), Direction::In, false), Some(1));
        assert_eq!(net.index_of(PortId(2), Direction::Out, false), None);
        assert_eq!(net.index_of(PortId(2), Direction::Out, true), Some(1));
        let taps = Taps::default();
        taps.set_mirrors(vec![MirrorTap {
            name: "m".into(),
            scope: scope(&[1], true),
            target: PortId(3),
        }]);
        assert!(taps.is_active());
        let mut out = Vec::new();
        taps.mirror_targets(PortId(1), Direction::Out, &mut out);
        taps.mirror_targets(PortId(2), Direction::In, &mut out);
        assert_eq!(out, vec![PortId(3)]);
        taps.set_mirrors(Vec::new());
        assert!(!taps.is_active());
    }

    #[test]
    fn pcapng_has_named_interfaces_directions_drop_comments_and_statistics() {
        let taps = Taps::default();
        let (id, rx) = taps.start_capture(scope(&[1, 2], true), true, 65_535);
        let frame = bytes(ICMP_REQUEST);
        taps.offer(
            PortId(1),
            Direction::In,
            &[&frame[..10], &frame[10..]],
            None,
        );
        taps.offer(
            PortId(2),
            Direction::Out,
            &[&frame],
            Some(DropReason::OverMtu),
        );
        let config = WriterConfig {
            interfaces: vec!["web".into(), "db".into()],
            snaplen: 65_535,
            filter: Some("icmp".into()),
            count: Some(2),
        };
        let mut out = Vec::new();
        let finish = || taps.stop_capture(id).unwrap();
        let (ended, written) = write_pcapng(&config, &rx, &AtomicBool::new(false), finish, |b| {
            out.extend(b);
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
