//! The link between the switch and a port inside this process (a network's gateway). Frames
//! the switch sends it are handed to the port's receiver at once, on the worker's own thread:
//! a frame for the gateway (an ARP request, a ping, a TCP segment for the egress terminator)
//! is answered in the same wake-up, with no hand-off to another thread and no wake-up of one.
//! (A queue to the gateway's task cost two thread wake-ups per exchange: on this 2-core VM
//! a ping to the gateway took 80 µs against 30 µs between two containers.) Frames the port
//! sends wait in a queue the worker reads like a TAP: it polls an eventfd, readable while
//! frames may wait. Each frame is one buffer behind its virtio header, as a TAP with
//! IFF_VNET_HDR would carry it. The port's own task waits while that queue holds
//! `QUEUE_BYTES`; what the receiver answers on the worker's thread is always queued (the
//! worker reads it next).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::Notify;

/// Bytes of frames the port's task may queue for the switch before it waits.
pub const QUEUE_BYTES: usize = 4 << 20;

/// What takes the frames the switch sends a port inside this process: called on a data path
/// worker's thread, so it must not block (it may lock what the port's task holds briefly).
pub type Receiver = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Frames one way, and their total size.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Queue {
    /// Appends `frame`; whether the queue was empty before.
    fn push(&mut self, frame: Vec<u8>) -> bool {
        let was_empty = self.frames.is_empty();
        self.bytes += frame.len();
        self.frames.push_back(frame);
        was_empty
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }
}

/// Both directions of one in-process port.
pub struct Link {
    to_switch: Mutex<Queue>,
    /// Readable while frames for the switch may be waiting.
    switch_wake: EventFd,
    /// The switch took frames: the port may have room again.
    room: Notify,
    /// Takes the switch's frames; none before the port starts and after it stops.
    receiver: Mutex<Option<Receiver>>,
}

impl Link {
    /// An empty link, without a receiver yet.
    pub fn new() -> io::Result<Link> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        Ok(Link {
            to_switch: Mutex::default(),
            switch_wake: EventFd::from_flags(flags)?,
            room: Notify::new(),
            receiver: Mutex::default(),
        })
    }

    /// Sets (or, with None, removes) what takes the switch's frames.
    pub fn set_receiver(&self, receiver: Option<Receiver>) {
        *lock(&self.receiver) = receiver;
    }

    // The switch's side (a worker thread; never blocks).

    /// The descriptor a worker polls for frames from the port.
    pub(crate) fn switch_fd(&self) -> RawFd {
        self.switch_wake.as_fd().as_raw_fd()
    }

    /// Copies the next frame from the port into `buf`; WouldBlock when there is none (the
    /// eventfd is then reset, so the next frame wakes the worker again).
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let frame = match self.pop_for_switch() {
            Some(frame) => frame,
            None => {
                // Reset, then look again: a frame pushed in between is not missed.
                let _ = self.switch_wake.read();
                self.pop_for_switch()
                    .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?
            }
        };
        let len = frame.len().min(buf.len());
        buf[..len].copy_from_slice(&frame[..len]);
        Ok(len)
    }

    fn pop_for_switch(&self) -> Option<Vec<u8>> {
        let mut queue = lock(&self.to_switch);
        let frame = queue.pop();
        if frame.is_some() && queue.bytes < QUEUE_BYTES {
            self.room.notify_one();
        }
        frame
    }

    /// Hands the port's receiver a frame made of `parts`, on this thread; WouldBlock if the
    /// port has none (it is starting or stopping).
    pub(crate) fn send(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(receiver) = lock(&self.receiver).clone() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let len = parts.iter().map(|p| p.len()).sum();
        match parts {
            [one] => receiver(one),
            _ => {
                let mut frame = Vec::with_capacity(len);
                for part in parts {
                    frame.extend_from_slice(part);
                }
                receiver(&frame);
            }
        }
        Ok(len)
    }

    // The port's side.

    /// Queues `frame` (virtio header first) for the switch. Never waits: the port's task
    /// calls `room` first, and its receiver's answers are read by the worker that called it.
    pub fn push(&self, frame: Vec<u8>) {
        // The worker resets the eventfd only once it finds the queue empty: a push to a
        // queue that was not empty needs no wake-up.
        if lock(&self.to_switch).push(frame) {
            let _ = self.switch_wake.write(1);
        }
    }

    /// Waits while the queue for the switch holds `QUEUE_BYTES` or more.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            if lock(&self.to_switch).bytes < QUEUE_BYTES {
                return;
            }
            notified.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switchs_frames_reach_the_receiver_at_once_and_the_ports_wait_in_order() {
        let link = Arc::new(Link::new().unwrap());
        assert_eq!(
            link.send(&[IoSlice::new(b"early")]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "no receiver yet"
        );
        let answering = link.clone();
        link.set_receiver(Some(Arc::new(move |frame: &[u8]| {
            answering.push([b"re: ", frame].concat())
        })));
        link.send(&[IoSlice::new(b"he"), IoSlice::new(b"llo")])
            .unwrap();
        link.push(b"two".to_vec());
        let mut buf = [0u8; 16];
        assert_eq!(link.recv(&mut buf).unwrap(), 9);
        assert_eq!(&buf[..9], b"re: hello");
        assert_eq!(link.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        assert_eq!(
            link.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // The receiver holds the link: removing it breaks the cycle.
        link.set_receiver(None);
        assert_eq!(Arc::strong_count(&link), 1);
    }

    #[tokio::test]
    async fn the_port_waits_for_room_and_the_worker_is_woken_by_its_eventfd() {
        let link = Arc::new(Link::new().unwrap());
        let big = vec![0u8; QUEUE_BYTES / 2];
        link.room().await;
        link.push(big.clone());
        link.push(big.clone());
        let waiter = {
            let link = link.clone();
            tokio::spawn(async move { link.room().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the queue is full");
        let mut ready = [nix::poll::PollFd::new(
            link.switch_wake.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(nix::poll::poll(&mut ready, 0u16).unwrap(), 1);
        let mut buf = vec![0u8; QUEUE_BYTES];
        link.recv(&mut buf).unwrap();
        waiter.await.unwrap();
        link.recv(&mut buf).unwrap();
        assert!(link.recv(&mut buf).is_err());
        assert_eq!(nix::poll::poll(&mut ready, 0u16).unwrap(), 0, "reset");
    }
}
