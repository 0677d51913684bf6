//! A capture's queue: the frames the data path copied, on their way to the capture's writer, and
//! the capture's budget. Every byte a capture holds — frames queued, and the pcapng made of them
//! until the client has read it — is charged to its budget while it is held and released when
//! it is dropped. A capture takes a frame only while it holds less than its share of
//! `CAPTURE_BYTES` (split evenly among the captures running), so a reader that stops reading
//! holds at most its share, however large the frames; past that, frames are skipped (and counted
//! by the sender), never waited for. Captures started together hold at most `CAPTURE_BYTES`;
//! stalled ones started one after another, each filling the larger share it had, at most
//! 4 x `CAPTURE_BYTES` (1 + 1/2 + ... + 1/32 for `MAX_CAPTURES`). Frames are shared between
//! captures (one copy each), so twenty captures that keep up hold about what one does.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Captured;

/// Bytes of copied frames and pcapng all captures together may hold.
pub const CAPTURE_BYTES: usize = 8 << 20;
/// What a queued frame costs besides its bytes (its record in the queue and its allocation), so
/// that small frames are bounded by the budget too.
pub const FRAME_OVERHEAD: usize = 128;

/// A new queue: the data path's end and the writer's.
pub fn queue() -> (QueueSender, QueueReceiver) {
    // Unbounded as a channel (it allocates as frames come and frees as they go, where a bounded
    // one would allocate its every slot up front): the budget bounds it.
    let (tx, rx) = mpsc::channel();
    let budget = Budget::default();
    (
        QueueSender {
            tx,
            budget: budget.clone(),
        },
        QueueReceiver { rx, budget },
    )
}

/// What one capture holds, in bytes.
#[derive(Debug, Clone, Default)]
pub struct Budget(Arc<AtomicUsize>);

impl Budget {
    /// Charges `len` bytes until the returned charge is dropped.
    pub fn charge(&self, len: usize) -> Charge {
        self.0.fetch_add(len, Relaxed);
        Charge {
            budget: self.clone(),
            len,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// Bytes charged to a capture; released when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Budget,
    len: usize,
}

impl Charge {
    /// `data`, keeping this charge until the last clone of the result is dropped (by the HTTP
    /// layer, once the client has the bytes).
    pub fn hold(self, data: Bytes) -> Bytes {
        Bytes::from_owner(Held {
            data,
            _charge: self,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(self.len, Relaxed);
    }
}

/// Bytes and the charge that lasts as long as they do.
struct Held {
    data: Bytes,
    _charge: Charge,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// The data path's end of a capture queue.
pub struct QueueSender {
    tx: Sender<(Captured, Charge)>,
    budget: Budget,
}

impl QueueSender {
    /// Queues `frame` if the capture holds less than `share` bytes; never blocks. False: it was
    /// skipped.
    pub fn offer(&self, frame: Captured, share: usize) -> bool {
        if self.budget.held() >= share {
            return false;
        }
        let charge = self.budget.charge(frame.data.len() + FRAME_OVERHEAD);
        self.tx.send((frame, charge)).is_ok()
    }
}

/// The writer's end of a capture queue.
#[derive(Debug)]
pub struct QueueReceiver {
    rx: Receiver<(Captured, Charge)>,
    budget: Budget,
}

impl QueueReceiver {
    /// The next frame and its charge, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Captured, Charge), RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The next frame and its charge if one is queued.
    pub fn try_recv(&self) -> Option<(Captured, Charge)> {
        self.rx.try_recv().ok()
    }

    /// The capture's budget, for the pcapng it writes.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Direction;

    fn frame(len: usize) -> Captured {
        Captured {
            interface: 0,
            direction: Direction::In,
            time: std::time::SystemTime::now(),
            data: Bytes::from(vec![0; len]),
            original_len: len as u32,
            drop: None,
        }
    }

    #[test]
    fn holds_at_most_its_share_until_the_bytes_are_dropped() {
        let (tx, rx) = queue();
        let share = 1 << 20;
        let segment = 65_536 + FRAME_OVERHEAD;
        let taken = (0..1000).filter(|_| tx.offer(frame(65_536), share)).count();
        assert_eq!(taken, share.div_ceil(segment));
        // The writer took one, but its bytes are still held (on their way to the client)...
        let (first, charge) = rx.try_recv().unwrap();
        let out = charge.hold(first.data.clone());
        drop(first);
        assert!(!tx.offer(frame(65_536), share));
        // ...until the client has them.
        drop(out);
        assert_eq!(rx.budget().held(), (taken - 1) * segment);
        assert!(tx.offer(frame(65_536), share));
        // Small frames count what they cost besides their bytes.
        let (tx, _rx) = queue();
        assert_eq!(
            (0..100_000).filter(|_| tx.offer(frame(60), share)).count(),
            share.div_ceil(60 + FRAME_OVERHEAD)
        );
    }
}
