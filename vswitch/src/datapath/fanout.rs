//! Fan-out on the data path: copies of frames for live captures and port mirrors (SPAN). With
//! nothing to copy to, the data path pays one relaxed atomic load per frame. A frame is copied
//! once however many captures take it (they share the copy, through to the client), into queues
//! that never wait: a capture holding its share of `CAPTURE_BYTES` (a slow reader) skips the
//! frame and counts it, so capturing never slows forwarding, and all captures together hold at
//! most `CAPTURE_BYTES`. At most `MAX_CAPTURES` run at once. Mirrors name the ports that get
//! copies.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use vswitch_core::ids::PortId;
use vswitch_core::reason::DropReason;

use crate::capture::queue::{self, QueueReceiver, QueueSender, CAPTURE_BYTES};
use crate::capture::{Captured, Direction};

/// Captures that may run at once.
pub const MAX_CAPTURES: usize = 32;

/// A capture could not start: as many run as may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_CAPTURES} captures are running, as many as may at once: stop one first")]
pub struct TooManyCaptures;

/// Which frames a capture or mirror takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Ports tapped.
    pub ports: Vec<PortId>,
    /// Both directions (a port), or only frames entering the switch (a whole network, where the
    /// other direction would repeat every frame; frames dropped on the way out still count).
    pub both_directions: bool,
}

impl Scope {
    fn index_of(&self, port: PortId, direction: Direction, dropped: bool) -> Option<usize> {
        if direction == Direction::Out && !self.both_directions && !dropped {
            return None;
        }
        self.ports.iter().position(|p| *p == port)
    }
}

/// A running capture as the data path sees it: where its copies go.
pub struct CaptureFeed {
    id: u64,
    scope: Scope,
    drops: bool,
    snaplen: usize,
    queue: QueueSender,
    /// Frames skipped because the queue was full, per interface.
    skipped: Vec<AtomicU64>,
    /// Frames offered, per interface (pcapng's isb_ifrecv).
    seen: Vec<AtomicU64>,
}

/// A port mirror: copies of the frames of `scope` go out of `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Mirror name.
    pub name: String,
    /// What is copied.
    pub scope: Scope,
    /// Where the copies go.
    pub target: PortId,
}

/// Every capture and mirror on the data path, shared by its workers and the control plane.
#[derive(Default)]
pub struct Fanout {
    /// Number of captures and mirrors: the data path looks no further while it is 0.
    active: AtomicUsize,
    captures: RwLock<Vec<Arc<CaptureFeed>>>,
    mirrors: RwLock<Vec<Mirror>>,
    next_id: AtomicU64,
    /// Frames every capture skipped so far, for metrics.
    skipped_total: AtomicU64,
}

impl Fanout {
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
        let original_len: usize = parts.iter().map(|p| p.len()).sum();
        // An even share of the budget for each capture: together they stay within it.
        let share = CAPTURE_BYTES / captures.len().max(1);
        // Made on first need, at the largest snap length: every capture shares it (and the time).
        let mut copy: Option<(bytes::Bytes, SystemTime)> = None;
        for capture in captures.iter() {
            let Some(index) = capture.scope.index_of(port, direction, drop.is_some()) else {
                continue;
            };
            if drop.is_some() && !capture.drops {
                continue;
            }
            capture.seen[index].fetch_add(1, Relaxed);
            let (data, time) = copy.get_or_insert_with(|| {
                let snaplen = captures.iter().map(|c| c.snaplen).max().unwrap_or(0);
                let mut data = Vec::with_capacity(original_len.min(snaplen));
                for part in parts {
                    let room = snaplen - data.len();
                    data.extend_from_slice(&part[..part.len().min(room)]);
                }
                (bytes::Bytes::from(data), SystemTime::now())
            });
            let frame = Captured {
                interface: index as u32,
                direction,
                time: *time,
                data: data.clone(),
                original_len: original_len as u32,
                drop: drop.clone(),
            };
            if !capture.queue.offer(frame, share) {
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

    /// Starts a capture; frames come out of the returned queue until `stop_capture`.
    pub fn start_capture(
        &self,
        scope: Scope,
        drops: bool,
        snaplen: u32,
    ) -> Result<(u64, QueueReceiver), TooManyCaptures> {
        let mut captures = self.write_captures();
        if captures.len() >= MAX_CAPTURES {
            return Err(TooManyCaptures);
        }
        let (queue, receiver) = queue::queue();
        let id = self.next_id.fetch_add(1, Relaxed);
        let n = scope.ports.len();
        let tap = CaptureFeed {
            id,
            scope,
            drops,
            snaplen: snaplen.max(1) as usize,
            queue,
            skipped: (0..n).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
        };
        captures.push(Arc::new(tap));
        self.active.fetch_add(1, Relaxed);
        Ok((id, receiver))
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
    pub fn set_mirrors(&self, mirrors: Vec<Mirror>) {
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

    fn write_captures(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<CaptureFeed>>> {
        self.captures
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_core::frame::fixtures::{bytes, ICMP_REQUEST};

    fn scope(ports: &[u32], both: bool) -> Scope {
        Scope {
            ports: ports.iter().map(|p| PortId(*p)).collect(),
            both_directions: both,
        }
    }

    #[test]
    fn nothing_copied_means_inactive_and_a_full_queue_skips() {
        let fanout = Fanout::default();
        assert!(!fanout.is_active());
        let (id, rx) = fanout.start_capture(scope(&[1], true), false, 20).unwrap();
        assert!(fanout.is_active());
        let frame = bytes(ICMP_REQUEST);
        // Copies cut to 20 bytes, each costing its bytes and its place in the queue.
        let room = CAPTURE_BYTES.div_ceil(20 + queue::FRAME_OVERHEAD) as u64;
        for _ in 0..room + 10 {
            fanout.offer(PortId(1), Direction::In, &[&frame], None);
        }
        // Other ports, and drops without --drops, are not taken.
        fanout.offer(PortId(2), Direction::In, &[&frame], None);
        fanout.offer(
            PortId(1),
            Direction::In,
            &[&frame],
            Some(DropReason::OverMtu),
        );
        assert_eq!(fanout.skipped_total(), 10);
        let (first, _) = rx.recv_timeout(std::time::Duration::ZERO).unwrap();
        assert_eq!(
            (first.data.len(), first.original_len as usize),
            (20, frame.len())
        );
        assert_eq!(fanout.stop_capture(id), Some(vec![(room + 10, 10)]));
        assert!(!fanout.is_active());
    }

    #[test]
    fn captures_share_one_copy_and_only_so_many_run() {
        let fanout = Fanout::default();
        let (_, short) = fanout.start_capture(scope(&[1], true), false, 20).unwrap();
        let (_, whole) = fanout
            .start_capture(scope(&[1], true), false, 65_535)
            .unwrap();
        let frame = bytes(ICMP_REQUEST);
        fanout.offer(
            PortId(1),
            Direction::In,
            &[&frame[..10], &frame[10..]],
            None,
        );
        let zero = std::time::Duration::ZERO;
        let (a, b) = (
            short.recv_timeout(zero).unwrap().0,
            whole.recv_timeout(zero).unwrap().0,
        );
        // One copy, at the larger snap length; the short capture's writer cuts it.
        assert_eq!(a.data.as_ptr(), b.data.as_ptr());
        assert_eq!(&a.data[..], &frame[..]);
        for _ in 2..MAX_CAPTURES {
            fanout.start_capture(scope(&[1], true), false, 100).unwrap();
        }
        let refused = fanout
            .start_capture(scope(&[1], true), false, 100)
            .unwrap_err();
        assert!(refused.to_string().contains("stop one first"), "{refused}");
    }

    #[test]
    fn captures_that_do_not_read_hold_at_most_their_shares() {
        let fanout = Fanout::default();
        let segment = vec![0u8; 65_000];
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                fanout
                    .start_capture(scope(&[1], true), false, 65_535)
                    .unwrap()
            })
            .collect();
        for _ in 0..1000 {
            fanout.offer(PortId(1), Direction::In, &[&segment], None);
        }
        for (_, rx) in &receivers {
            let held = rx.budget().held();
            assert!(held <= CAPTURE_BYTES / 4 + segment.len(), "{held}");
        }
        // A capture that reads gets frames again beside the stalled ones.
        let (_, reading) = &receivers[0];
        while reading.try_recv().is_some() {}
        fanout.offer(PortId(1), Direction::In, &[&segment], None);
        assert!(reading.try_recv().is_some());
        assert!(receivers[1]
            .1
            .try_recv()
            .is_some_and(|(f, _)| f.data.len() == segment.len()));
    }

    #[test]
    fn network_scope_takes_only_frames_entering_the_switch() {
        let net = scope(&[1, 2], false);
        assert_eq!(net.index_of(PortId(2), Direction::In, false), Some(1));
        assert_eq!(net.index_of(PortId(2), Direction::Out, false), None);
        assert_eq!(net.index_of(PortId(2), Direction::Out, true), Some(1));
        let fanout = Fanout::default();
        fanout.set_mirrors(vec![Mirror {
            name: "m".into(),
            scope: scope(&[1], true),
            target: PortId(3),
        }]);
        assert!(fanout.is_active());
        let mut out = Vec::new();
        fanout.mirror_targets(PortId(1), Direction::Out, &mut out);
        fanout.mirror_targets(PortId(2), Direction::In, &mut out);
        assert_eq!(out, vec![PortId(3)]);
        fanout.set_mirrors(Vec::new());
        assert!(!fanout.is_active());
    }
}
