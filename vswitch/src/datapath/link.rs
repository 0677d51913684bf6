//! The link between the switch and a port inside this process (a network's gateway): two
//! queues of frames in memory, each frame one buffer behind its virtio header, as a TAP with
//! IFF_VNET_HDR would carry it. It replaced a datagram socket pair, which cost a kernel buffer
//! allocation and two copies per frame: with 64 KB frames, a third of the gateway's time in
//! `bench/egress.py`. The worker waits on an eventfd (it sleeps in epoll with every other
//! port); the gateway on a tokio `Notify`. Each direction holds at most `QUEUE_BYTES`: beyond,
//! the worker's frame is dropped (counted as a failed write, like a full socket), and the
//! gateway waits for room.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Mutex;

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::Notify;

/// Bytes of frames each direction may hold.
pub const QUEUE_BYTES: usize = 4 << 20;

/// Frames one way, and their total size.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Queue {
    /// Appends `frame` if it fits (one always does); whether the queue was empty before, or
    /// the frame back if the queue is full.
    fn push(&mut self, frame: Vec<u8>) -> Result<bool, Vec<u8>> {
        if self.bytes + frame.len() > QUEUE_BYTES && !self.frames.is_empty() {
            return Err(frame);
        }
        let was_empty = self.frames.is_empty();
        self.bytes += frame.len();
        self.frames.push_back(frame);
        Ok(was_empty)
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
    to_port: Mutex<Queue>,
    /// Frames for the port arrived.
    port_wake: Notify,
    /// The switch took frames: the port may have room again.
    room: Notify,
}

impl Link {
    /// An empty link.
    pub fn new() -> io::Result<Link> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        Ok(Link {
            to_switch: Mutex::default(),
            switch_wake: EventFd::from_flags(flags)?,
            to_port: Mutex::default(),
            port_wake: Notify::new(),
            room: Notify::new(),
        })
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
        let frame = lock(&self.to_switch).pop();
        if frame.is_some() {
            self.room.notify_one();
        }
        frame
    }

    /// Hands the port a frame made of `parts`; WouldBlock if its queue is full.
    pub(crate) fn send(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut frame = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            frame.extend_from_slice(part);
        }
        let len = frame.len();
        match lock(&self.to_port).push(frame) {
            Ok(_) => {
                self.port_wake.notify_one();
                Ok(len)
            }
            Err(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    // The port's side (a tokio task).

    /// The next frame from the switch.
    pub async fn recv_frame(&self) -> Vec<u8> {
        loop {
            if let Some(frame) = self.try_recv_frame() {
                return frame;
            }
            // A frame pushed since the look above left a permit: this returns at once.
            self.port_wake.notified().await;
        }
    }

    /// The next frame from the switch, if one is waiting.
    pub fn try_recv_frame(&self) -> Option<Vec<u8>> {
        lock(&self.to_port).pop()
    }

    /// Hands the switch `frame` (virtio header first), waiting while its queue is full.
    pub async fn send_frame(&self, mut frame: Vec<u8>) {
        loop {
            let pushed = lock(&self.to_switch).push(frame);
            match pushed {
                // The worker resets the eventfd only once it finds the queue empty: a push to a
                // queue that was not empty needs no wake-up.
                Ok(was_empty) => {
                    if was_empty {
                        let _ = self.switch_wake.write(1);
                    }
                    return;
                }
                Err(back) => {
                    frame = back;
                    self.room.notified().await;
                }
            }
        }
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_cross_both_ways_in_order_and_the_worker_side_never_blocks() {
        let link = Link::new().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            link.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        link.send_frame(b"one".to_vec()).await;
        link.send_frame(b"two".to_vec()).await;
        assert_eq!(link.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(link.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        assert!(link.recv(&mut buf).is_err());

        link.send(&[IoSlice::new(b"he"), IoSlice::new(b"llo")])
            .unwrap();
        assert_eq!(link.recv_frame().await, b"hello");
        // A full queue refuses the worker's frame rather than block it.
        let big = vec![0u8; QUEUE_BYTES / 2];
        link.send(&[IoSlice::new(&big)]).unwrap();
        link.send(&[IoSlice::new(&big)]).unwrap();
        assert!(link.send(&[IoSlice::new(b"more")]).is_err());
    }

    #[tokio::test]
    async fn the_port_waits_for_room_and_the_worker_is_woken_by_its_eventfd() {
        let link = std::sync::Arc::new(Link::new().unwrap());
        let big = vec![0u8; QUEUE_BYTES / 2];
        link.send_frame(big.clone()).await;
        link.send_frame(big.clone()).await;
        let sender = {
            let link = link.clone();
            tokio::spawn(async move { link.send_frame(b"late".to_vec()).await })
        };
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "the queue is full");
        let mut buf = vec![0u8; QUEUE_BYTES];
        link.recv(&mut buf).unwrap();
        sender.await.unwrap();
        let mut ready = [nix::poll::PollFd::new(
            link.switch_wake.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(nix::poll::poll(&mut ready, 0u16).unwrap(), 1);
        link.recv(&mut buf).unwrap();
        assert_eq!(link.recv(&mut buf).unwrap(), 4);
        assert!(link.recv(&mut buf).is_err());
        assert_eq!(nix::poll::poll(&mut ready, 0u16).unwrap(), 0, "reset");
    }
}
