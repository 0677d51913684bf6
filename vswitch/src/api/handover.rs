//! The one request HTTP cannot carry: a connect that brings the TAP device with it. A CNI
//! plugin running inside a rootless runtime's user and mount namespaces (rootless Podman) can
//! reach the container's namespace and the daemon cannot; so the plugin makes the device there
//! and hands its fd to the daemon over this SOCK_SEQPACKET socket beside the control socket
//! (`vswitch.handover.sock`), with the connect request as JSON; the answer is the endpoint
//! (`Connected`) or the daemon's refusal, and the plugin then configures the interface.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::control::{Control, Creation};
use crate::model::{ConnectRequest, Connected};

/// A connect with its device.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandoverRequest {
    pub network: String,
    pub request: ConnectRequest,
}

/// The answer: the endpoint, or why not.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverReply {
    Connected(Box<Connected>),
    Refused(String),
}

/// The handover socket beside the control socket `control`.
pub fn socket_path(control: &Path) -> PathBuf {
    control.with_extension("handover.sock")
}

/// Binds the handover socket (mode 0660, as the control socket).
pub fn bind(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tap::fdpass::listen(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves handovers on `listener` until the process ends, one at a time (each is a connect,
/// which the control plane serializes anyway), on a thread of its own.
pub fn serve(listener: OwnedFd, control: Arc<Control>, runtime: tokio::runtime::Handle) {
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || loop {
            let conn = match tap::fdpass::accept(listener.as_fd()) {
                Ok(conn) => conn,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ECONNABORTED)) => {
                    continue
                }
                Err(e) => {
                    warn!(error = %e, "handover socket failed");
                    return;
                }
            };
            let reply = match tap::fdpass::receive(conn.as_fd()) {
                Ok(Some((text, fds))) => match serde_json::from_str::<HandoverRequest>(&text) {
                    Ok(req) if !fds.is_empty() => {
                        debug!(network = %req.network, netns = %req.request.netns, "handover");
                        let connected = runtime.block_on(control.connect_as(
                            &req.network,
                            req.request,
                            Creation::Given(fds),
                        ));
                        match connected {
                            Ok(c) => HandoverReply::Connected(Box::new(c)),
                            Err(e) => HandoverReply::Refused(e.to_string()),
                        }
                    }
                    Ok(_) => {
                        HandoverReply::Refused("a handover brings the TAP device's fds".into())
                    }
                    Err(e) => HandoverReply::Refused(format!("malformed handover: {e}")),
                },
                _ => continue,
            };
            let text = serde_json::to_string(&reply).expect("a reply serializes");
            let _ = tap::fdpass::send(conn.as_fd(), &text, &[]);
        })
        .expect("the handover thread starts");
}

/// Why a handover got no endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot reach the vswitch daemon's handover socket {}: {source}", path.display())]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("the daemon's handover answer is unreadable: {0}")]
    Protocol(String),
}

/// Connects `request` to `network` with the device whose queues are `fds` (the plugin's side).
pub fn hand_over(
    control_socket: &Path,
    network: &str,
    request: &ConnectRequest,
    fds: &[BorrowedFd<'_>],
) -> Result<Connected, HandoverError> {
    let path = socket_path(control_socket);
    let unreachable = |source: std::io::Error| HandoverError::Unreachable {
        path: path.clone(),
        source,
    };
    let conn = tap::fdpass::connect(&path).map_err(unreachable)?;
    let text = serde_json::to_string(&HandoverRequest {
        network: network.to_string(),
        request: request.clone(),
    })
    .expect("a request serializes");
    tap::fdpass::send(conn.as_fd(), &text, fds).map_err(unreachable)?;
    let (reply, _) = tap::fdpass::receive(conn.as_fd())
        .map_err(unreachable)?
        .ok_or_else(|| HandoverError::Protocol("no answer".into()))?;
    match serde_json::from_str(&reply).map_err(|e| HandoverError::Protocol(e.to_string()))? {
        HandoverReply::Connected(connected) => Ok(*connected),
        HandoverReply::Refused(message) => Err(HandoverError::Refused(message)),
    }
}
