//! The link between the switch and a port inside this process (a network's gateway). Frames
//! the switch sends it are handed to the port at once, on the worker's own thread, and what
//! the port answers there (`Call::answer`) the same worker forwards next: an ARP request or a
//! ping to the gateway is answered in one wake-up, with no hand-off to another thread. (A
//! queue to the gateway's task cost two thread wake-ups per exchange: on this 2-core VM a
//! ping to the gateway took 80 µs against 30 µs between two containers.) The port may also
//! have its own sockets to the outside watched by that worker's epoll (`Call::watch`): an
//! answer from outside is read and forwarded by the thread that sent the question, which
//! busy-polls for a while after traffic, so often with no wake-up at all.
//!
//! Frames the port sends on its own (from its task, or that must keep their order with those:
//! the TCP terminator's) wait in a queue the first worker reads like a TAP: it polls an
//! eventfd, readable while frames may wait. That worker can also watch the port's sockets
//! whose frames go through the queue (`Link::watch`: the TCP terminator's connections). Each
//! frame is one buffer behind its virtio header, as a TAP with IFF_VNET_HDR would carry it;
//! the port's task waits while the queue holds `QUEUE_BYTES`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::Notify;
use vswitch_core::ids::PortId;

/// Bytes of frames the port's task may queue for the switch before it waits.
pub const QUEUE_BYTES: usize = 4 << 20;

/// A port inside this process, as the switch's workers call it: on their own threads, so it
/// must not block (it may lock what the port's task holds briefly).
pub trait Port: Send + Sync {
    /// A frame the switch sends the port (virtio header first).
    fn receive(&self, frame: &[u8], call: &mut Call<'_>);
    /// The socket the port had watched as `id` (`Call::watch`) may be readable: read it
    /// until it would block (the worker is told again only of new data).
    fn outside_ready(&self, id: u32, call: &mut Call<'_>);
}

/// What the calling worker lends a port: its epoll, and room for the port's answers.
pub struct Call<'a> {
    watcher: &'a Watcher,
    answers: &'a mut Vec<Vec<u8>>,
}

impl Call<'_> {
    /// Has this worker watch `fd` (a non-blocking socket of the port's) and call the port's
    /// `outside_ready(id)` when it may be readable; until the socket is closed.
    pub fn watch(&self, fd: RawFd, id: u32) -> io::Result<()> {
        self.watcher.register(fd, id, Interest::READABLE)
    }

    /// A frame (virtio header first) this worker forwards as if the port had sent it, as soon
    /// as the call returns.
    pub fn answer(&mut self, frame: Vec<u8>) {
        self.answers.push(frame);
    }
}

/// Marks the epoll tokens of sockets watched for a port: bits 32..62 its port, 0..32 the id
/// the port gave the socket. (The workers' own tokens are the top few values and port ids.)
const OUTSIDE_TOKEN: usize = 1 << 62;

/// The port and socket id of a worker's epoll token, if it is a watched socket's.
pub(crate) fn outside_token(token: Token) -> Option<(PortId, u32)> {
    let port = PortId(((token.0 >> 32) & 0x3FFF_FFFF) as u32);
    (token.0 & (3 << 62) == OUTSIDE_TOKEN).then_some((port, token.0 as u32))
}

/// A worker's epoll, and the port in the switch a link is.
pub(crate) struct Watcher {
    pub registry: Arc<Registry>,
    pub port: PortId,
}

impl Watcher {
    /// Watches `fd` for `interest` under the port's token for socket `id`.
    fn register(&self, fd: RawFd, id: u32, interest: Interest) -> io::Result<()> {
        let token = Token(OUTSIDE_TOKEN | (self.port.index() << 32) | id as usize);
        self.registry.register(&mut SourceFd(&fd), token, interest)
    }
}

/// One worker's side of a link: its epoll, and the answers of the port's latest call.
pub(crate) struct LinkEnd {
    pub link: Arc<Link>,
    pub watcher: Watcher,
    pub answers: Vec<Vec<u8>>,
}

impl LinkEnd {
    /// Hands the port a frame made of `parts`, on this thread (its answers wait in
    /// `answers`); WouldBlock if the port has no receiver (it is starting or stopping).
    pub fn send(&mut self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(receiver) = lock(&self.link.receiver).clone() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let len = parts.iter().map(|p| p.len()).sum();
        let mut call = Call {
            watcher: &self.watcher,
            answers: &mut self.answers,
        };
        match parts {
            [one] => receiver.receive(one, &mut call),
            _ => {
                let mut frame = Vec::with_capacity(len);
                for part in parts {
                    frame.extend_from_slice(part);
                }
                receiver.receive(&frame, &mut call);
            }
        }
        Ok(len)
    }

    /// Tells the port that its socket `id` may be readable (its answers wait in `answers`).
    pub fn outside_ready(&mut self, id: u32) {
        let receiver = lock(&self.link.receiver).clone();
        if let Some(receiver) = receiver {
            let mut call = Call {
                watcher: &self.watcher,
                answers: &mut self.answers,
            };
            receiver.outside_ready(id, &mut call);
        }
    }
}

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
    receiver: Mutex<Option<Arc<dyn Port>>>,
    /// The epoll of the worker that reads the queue; set once the link is a switch port.
    reader: OnceLock<Watcher>,
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
            reader: OnceLock::new(),
        })
    }

    /// Sets (or, with None, removes) the port that takes the switch's frames.
    pub fn set_receiver(&self, receiver: Option<Arc<dyn Port>>) {
        *lock(&self.receiver) = receiver;
    }

    /// Has the worker that reads the queue watch `fd` (a non-blocking socket of the port's)
    /// for reading and writing, and call the port's `outside_ready(id)` when it may be ready;
    /// until the socket is closed.
    pub fn watch(&self, fd: RawFd, id: u32) -> io::Result<()> {
        let reader = self.reader.get().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the link is not a switch port yet",
            )
        })?;
        reader.register(fd, id, Interest::READABLE | Interest::WRITABLE)
    }

    // The switch's side (a worker thread; never blocks).

    /// Sets the epoll of the worker that reads the queue.
    pub(crate) fn set_reader(&self, watcher: Watcher) {
        let _ = self.reader.set(watcher);
    }

    /// The descriptor a worker polls for frames from the port.
    pub(crate) fn switch_fd(&self) -> RawFd {
        self.switch_wake.as_fd().as_raw_fd()
    }

    /// The next frame from the port (forwarded from its own buffer: no copy); None when
    /// there is none (the eventfd is then reset, so the next frame wakes the worker again).
    pub(crate) fn recv(&self) -> Option<Vec<u8>> {
        self.pop_for_switch().or_else(|| {
            // Reset, then look again: a frame pushed in between is not missed.
            let _ = self.switch_wake.read();
            self.pop_for_switch()
        })
    }

    /// Whether frames for the switch are waiting.
    pub(crate) fn has_queued(&self) -> bool {
        !lock(&self.to_switch).frames.is_empty()
    }

    fn pop_for_switch(&self) -> Option<Vec<u8>> {
        let mut queue = lock(&self.to_switch);
        let was_full = queue.bytes >= QUEUE_BYTES;
        let frame = queue.pop();
        // The port's task waits only while the queue is full: it hears of room when that ends.
        if was_full && queue.bytes < QUEUE_BYTES {
            self.room.notify_one();
        }
        frame
    }

    // The port's side.

    /// Queues `frame` (virtio header first) for the switch. Never waits: the port's task
    /// calls `room` first; on a worker's thread, the first worker reads them after the call.
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

    /// Answers every frame, pushes a copy to the queue, and watches a socket.
    struct Echo {
        link: Arc<Link>,
        socket: std::net::UdpSocket,
    }

    impl Port for Echo {
        fn receive(&self, frame: &[u8], call: &mut Call<'_>) {
            call.answer([b"re: ", frame].concat());
            self.link.push(frame.to_vec());
            call.watch(self.socket.as_raw_fd(), u32::MAX).unwrap();
        }
        fn outside_ready(&self, id: u32, call: &mut Call<'_>) {
            call.answer(format!("ready {id}").into_bytes());
        }
    }

    fn end(link: &Arc<Link>, poll: &mio::Poll) -> LinkEnd {
        LinkEnd {
            link: link.clone(),
            watcher: Watcher {
                registry: Arc::new(poll.registry().try_clone().unwrap()),
                port: PortId(5),
            },
            answers: Vec::new(),
        }
    }

    #[test]
    fn the_port_answers_the_calling_worker_and_has_it_watch_its_sockets() {
        let link = Arc::new(Link::new().unwrap());
        let mut poll = mio::Poll::new().unwrap();
        let mut end = end(&link, &poll);
        assert_eq!(
            end.send(&[IoSlice::new(b"early")]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "no receiver yet"
        );
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = socket.local_addr().unwrap();
        link.set_receiver(Some(Arc::new(Echo {
            link: link.clone(),
            socket: socket.try_clone().unwrap(),
        })));
        end.send(&[IoSlice::new(b"he"), IoSlice::new(b"llo")])
            .unwrap();
        assert_eq!(std::mem::take(&mut end.answers), [b"re: hello".to_vec()]);
        // What the port pushes waits in the queue, in order.
        link.push(b"two".to_vec());
        assert_eq!(link.recv().unwrap(), b"hello");
        assert_eq!(link.recv().unwrap(), b"two");
        assert_eq!(link.recv(), None);
        // The watched socket's readiness names the port and the id.
        socket.send_to(b"x", peer).unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tokens: Vec<_> = events.iter().map(|e| outside_token(e.token())).collect();
        assert_eq!(tokens, [Some((PortId(5), u32::MAX))]);
        // And one watched by the queue's reader, for both ways.
        let stream = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(link.watch(stream.as_raw_fd(), 9).is_err(), "not a port yet");
        link.set_reader(Watcher {
            registry: Arc::new(poll.registry().try_clone().unwrap()),
            port: PortId(6),
        });
        link.watch(stream.as_raw_fd(), 9).unwrap();
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tokens: Vec<_> = events.iter().map(|e| outside_token(e.token())).collect();
        assert_eq!(tokens, [Some((PortId(6), 9))], "writable at once");
        end.outside_ready(u32::MAX);
        assert_eq!(end.answers, [format!("ready {}", u32::MAX).into_bytes()]);
        assert_eq!(outside_token(Token(usize::MAX)), None, "the waker's");
        assert_eq!(outside_token(Token(3)), None, "a port's");
        // The receiver holds the link: removing it breaks the cycle.
        link.set_receiver(None);
        drop(end);
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
        link.recv().unwrap();
        waiter.await.unwrap();
        link.recv().unwrap();
        assert!(link.recv().is_none());
        assert_eq!(nix::poll::poll(&mut ready, 0u16).unwrap(), 0, "reset");
    }
}
