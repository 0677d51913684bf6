//! What a service manager (systemd, or anything speaking its protocols) hands the daemon and
//! wants back: the control socket it already listens on (socket activation, `LISTEN_FDS`), and
//! word that the daemon is ready and when it stops (`NOTIFY_SOCKET`). Outside a service manager
//! both are no-ops.

use std::os::fd::{FromRawFd, OwnedFd};

use tracing::warn;

/// The control socket the service manager passed (the first of `LISTEN_FDS`), if any, as a
/// non-blocking listener. The variables are unset, so children do not take it for theirs.
pub fn activated_listener() -> Option<std::os::unix::net::UnixListener> {
    let mut fds = match sd_notify::listen_fds() {
        Ok(fds) => fds,
        Err(e) => {
            warn!(error = %e, "the service manager's LISTEN_FDS cannot be read");
            return None;
        }
    };
    let fd = fds.next()?;
    // SAFETY: the service manager passed this fd to this process (LISTEN_PID) for it to own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::os::unix::net::UnixListener::from(owned);
    if let Err(e) = listener.set_nonblocking(true) {
        warn!(error = %e, "the activated socket cannot be used");
        return None;
    }
    Some(listener)
}

/// Tells the service manager the daemon serves now.
pub fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells the service manager the daemon is stopping.
pub fn notify_stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "cannot notify the service manager");
    }
}
