//! Messages with file descriptors: one text message per SOCK_SEQPACKET datagram, the fds as
//! SCM_RIGHTS. The TAP keeper and the daemon's handover socket (a plugin giving the daemon the
//! TAP device it made) speak it.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use std::path::Path;

use nix::sys::socket::{
    accept4, bind, connect as connect_to, listen as listen_on, recvmsg, sendmsg, socket,
    AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr,
};

/// Fds one message may carry (the data path has at most 64 workers, one queue each).
pub const MAX_FDS: usize = 64;
/// Longest message.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A new SOCK_SEQPACKET Unix socket.
fn seqpacket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// A SOCK_SEQPACKET socket listening at `path` (which must not exist).
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let listener = seqpacket()?;
    bind(listener.as_raw_fd(), &UnixAddr::new(path)?)?;
    listen_on(&listener, Backlog::new(64).expect("a valid backlog"))?;
    Ok(listener)
}

/// A SOCK_SEQPACKET connection to the socket at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let conn = seqpacket()?;
    connect_to(conn.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(conn)
}

/// The next connection on `listener`.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `text` with `fds`.
pub fn send(conn: BorrowedFd<'_>, text: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let control: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &[IoSlice::new(text.as_bytes())],
        control,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// One message and the fds it carried; None when the peer has closed.
pub fn receive(conn: BorrowedFd<'_>) -> io::Result<Option<(String, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let message = recvmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel installed these fds in this process for us alone.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let len = message.bytes;
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        String::from_utf8_lossy(&buf[..len]).into_owned(),
        fds,
    )))
}
