//! One queue of a TAP device as a plain owned fd: frames in and out with read, write and
//! writev, nothing else. tun-rs makes the devices but cannot adopt an fd opened with
//! IFF_VNET_HDR (its `from_fd` refuses them), and a restarted daemon must adopt the queues it
//! kept; so every queue, made here or adopted, is this one type.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A TAP queue, non-blocking.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
}

impl Queue {
    /// Takes `fd` (an open TAP queue) and makes it non-blocking.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Queue> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(Queue { fd })
    }

    /// Reads one frame (with its virtio header when the device has them).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(&self.fd, buf)?)
    }

    /// Writes one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(&self.fd, frame)?)
    }

    /// Writes one frame given in pieces (a virtio header, then the frame).
    pub fn send_vectored(&self, pieces: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(nix::sys::uio::writev(&self.fd, pieces)?)
    }

    /// A second fd of the same queue (to keep it attached across a restart).
    pub fn duplicate(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
