//! A capture's queue: the frames the data path copied, on their way to the capture's writer.
//! Bounded in bytes as well as in frames, so a reader that stops reading holds at most
//! `QUEUE_BYTES` however large the frames; past that, frames are skipped (and counted by the
//! sender), never waited for.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use super::Captured;

/// Bytes of copied frames one capture may hold waiting for its writer.
pub const QUEUE_BYTES: usize = 4 << 20;
/// Frames one capture may hold waiting (small frames: the queue's own memory stays bounded).
pub const QUEUE_FRAMES: usize = 4096;

/// A new queue: the data path's end and the writer's.
pub fn queue() -> (QueueSender, QueueReceiver) {
    let (tx, rx) = mpsc::sync_channel(QUEUE_FRAMES);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        QueueSender {
            tx,
            queued: queued.clone(),
        },
        QueueReceiver { rx, queued },
    )
}

/// The data path's end of a capture queue.
pub struct QueueSender {
    tx: SyncSender<Captured>,
    queued: Arc<AtomicUsize>,
}

impl QueueSender {
    /// Queues `frame` if there is room for its bytes; never blocks. False: it was skipped.
    pub fn offer(&self, frame: Captured) -> bool {
        let len = frame.data.len();
        if self.queued.fetch_add(len, Relaxed) + len > QUEUE_BYTES {
            self.queued.fetch_sub(len, Relaxed);
            return false;
        }
        if self.tx.try_send(frame).is_err() {
            self.queued.fetch_sub(len, Relaxed);
            return false;
        }
        true
    }
}

/// The writer's end of a capture queue.
#[derive(Debug)]
pub struct QueueReceiver {
    rx: Receiver<Captured>,
    queued: Arc<AtomicUsize>,
}

impl QueueReceiver {
    /// The next frame, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Captured, RecvTimeoutError> {
        let frame = self.rx.recv_timeout(timeout)?;
        self.queued.fetch_sub(frame.data.len(), Relaxed);
        Ok(frame)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Option<Captured> {
        let frame = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(frame.data.len(), Relaxed);
        Some(frame)
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
            data: bytes::Bytes::from(vec![0; len]),
            original_len: len as u32,
            drop: None,
        }
    }

    #[test]
    fn holds_at_most_its_bytes_and_frees_them_as_read() {
        let (tx, rx) = queue();
        // 64 KB frames: the byte bound is reached long before the frame bound.
        let taken = (0..1000).filter(|_| tx.offer(frame(65_536))).count();
        assert_eq!(taken, QUEUE_BYTES / 65_536);
        assert!(rx.try_recv().is_some());
        assert!(
            tx.offer(frame(65_536)),
            "room again once the writer took one"
        );
        assert!(!tx.offer(frame(65_536)));
        // Small frames: the frame bound.
        let (tx, _rx) = queue();
        assert_eq!(
            (0..10_000).filter(|_| tx.offer(frame(60))).count(),
            QUEUE_FRAMES
        );
    }
}
