//! The API's client side: one method per route of `ROUTES`, each sending one HTTP/1.1 request
//! over the daemon's Unix socket and decoding the typed answer. An error answer becomes the
//! daemon's own sentence.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::control::TraceReport;
use crate::model::TraceRequest;

use super::*;
use crate::control::{FdbInfo, HostInfo, NetworkView, PolicyView, PortInfo};
use crate::model::{
    CaptureRequest, ConnectRequest, Connected, DaemonInfo, DefaultActionChange, EndpointRecord,
    MirrorRecord, NetworkCreate, NetworkRecord, RuleAdd, TrunkCreate, TrunkRecord,
};

/// Why a call did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the socket.
    #[error("cannot reach the vswitch daemon at {} (is `vswitch daemon` running?): {error}", socket.display())]
    Unreachable {
        socket: PathBuf,
        error: std::io::Error,
    },
    /// The socket is there but not open to this user.
    #[error("permission denied on the vswitch daemon's socket {} ({owner}): run as root or as a member of its group, or start a daemon of your own (`vswitch daemon`, rootless)", socket.display())]
    Denied {
        socket: PathBuf,
        /// Who may use it: owner, group and mode.
        owner: String,
    },
    /// The connection failed mid-call.
    #[error("the vswitch daemon connection failed: {0}")]
    Http(hyper::Error),
    /// The daemon refused or failed the request; its message says why.
    #[error("{message}")]
    Daemon {
        /// The HTTP status.
        status: u16,
        /// The daemon's sentence.
        message: String,
    },
    /// The request or answer is not what this client can encode or read (a daemon of another
    /// version?).
    #[error("the daemon sent an answer this client cannot read: {0}")]
    Decode(serde_json::Error),
}

/// A client of one daemon's API.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// An answer whose body streams (a capture), with its capture id.
pub struct Streaming {
    /// The capture's id, for `stop_capture`.
    pub id: u64,
    /// The pcapng bytes as they come.
    pub body: Incoming,
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon: versions, process, rootless or not.
    pub async fn info(&self) -> Result<DaemonInfo, ClientError> {
        self.call(INFO, &[], NO_BODY).await
    }

    /// Lists networks.
    pub async fn networks(&self) -> Result<Vec<NetworkRecord>, ClientError> {
        self.call(LIST_NETWORKS, &[], NO_BODY).await
    }

    /// Creates a network.
    pub async fn create_network(&self, req: &NetworkCreate) -> Result<NetworkRecord, ClientError> {
        self.call(CREATE_NETWORK, &[], Some(req)).await
    }

    /// A network with its gateway's counters.
    pub async fn inspect_network(&self, name: &str) -> Result<NetworkView, ClientError> {
        self.call(INSPECT_NETWORK, &[name], NO_BODY).await
    }

    /// Removes a network.
    pub async fn remove_network(&self, name: &str) -> Result<(), ClientError> {
        self.call(REMOVE_NETWORK, &[name], NO_BODY).await
    }

    /// Connects a namespace to a network.
    pub async fn connect(
        &self,
        network: &str,
        req: &ConnectRequest,
    ) -> Result<Connected, ClientError> {
        self.call(CONNECT, &[network], Some(req)).await
    }

    /// A network's endpoints.
    pub async fn endpoints(&self, network: &str) -> Result<Vec<EndpointRecord>, ClientError> {
        self.call(LIST_ENDPOINTS, &[network], NO_BODY).await
    }

    /// One endpoint, by name or namespace.
    pub async fn endpoint(
        &self,
        network: &str,
        target: &str,
    ) -> Result<EndpointRecord, ClientError> {
        self.call(INSPECT_ENDPOINT, &[network, target], NO_BODY)
            .await
    }

    /// Disconnects an endpoint, by name or namespace.
    pub async fn disconnect(
        &self,
        network: &str,
        target: &str,
    ) -> Result<EndpointRecord, ClientError> {
        self.call(DISCONNECT, &[network, target], NO_BODY).await
    }

    /// Sets (or, with an empty limit, lifts) an endpoint's ingress rate limit.
    pub async fn set_rate_limit(
        &self,
        network: &str,
        target: &str,
        limit: &policy::RateLimit,
    ) -> Result<EndpointRecord, ClientError> {
        self.call(SET_RATE_LIMIT, &[network, target], Some(limit))
            .await
    }

    /// A network's MAC table.
    pub async fn fdb(&self, network: &str) -> Result<Vec<FdbInfo>, ClientError> {
        self.call(FDB, &[network], NO_BODY).await
    }

    /// What the switch would do with the frame `req` describes.
    pub async fn trace(
        &self,
        network: &str,
        req: &TraceRequest,
    ) -> Result<TraceReport, ClientError> {
        self.call(TRACE, &[network], Some(req)).await
    }

    /// A network's policy with its hit counts.
    pub async fn policy(&self, network: &str) -> Result<PolicyView, ClientError> {
        self.call(POLICY, &[network], NO_BODY).await
    }

    /// Replaces a network's policy.
    pub async fn set_policy(
        &self,
        network: &str,
        policy: &policy::NetworkPolicy,
    ) -> Result<PolicyView, ClientError> {
        self.call(SET_POLICY, &[network], Some(policy)).await
    }

    /// Changes a network's default action, leaving its rules as they are.
    pub async fn set_default_action(
        &self,
        network: &str,
        default: policy::DefaultAction,
    ) -> Result<PolicyView, ClientError> {
        let change = DefaultActionChange { default };
        self.call(SET_DEFAULT_ACTION, &[network], Some(&change))
            .await
    }

    /// Adds a rule to a network's policy.
    pub async fn add_rule(&self, network: &str, req: &RuleAdd) -> Result<PolicyView, ClientError> {
        self.call(ADD_RULE, &[network], Some(req)).await
    }

    /// Removes a rule from a network's policy.
    pub async fn remove_rule(&self, network: &str, rule: &str) -> Result<PolicyView, ClientError> {
        self.call(REMOVE_RULE, &[network, rule], NO_BODY).await
    }

    /// A network's tracked flows.
    pub async fn conntrack(&self, network: &str) -> Result<Vec<policy::FlowRow>, ClientError> {
        self.call(CONNTRACK, &[network], NO_BODY).await
    }

    /// Lists trunk ports.
    pub async fn trunks(&self) -> Result<Vec<TrunkRecord>, ClientError> {
        self.call(LIST_TRUNKS, &[], NO_BODY).await
    }

    /// Adds a trunk port.
    pub async fn add_trunk(&self, req: &TrunkCreate) -> Result<TrunkRecord, ClientError> {
        self.call(ADD_TRUNK, &[], Some(req)).await
    }

    /// Removes a trunk port, by name or namespace.
    pub async fn remove_trunk(&self, target: &str) -> Result<TrunkRecord, ClientError> {
        self.call(REMOVE_TRUNK, &[target], NO_BODY).await
    }

    /// Every port with its counters.
    pub async fn ports(&self) -> Result<Vec<PortInfo>, ClientError> {
        self.call(PORTS, &[], NO_BODY).await
    }

    /// This host's underlay and the hosts its overlays reach.
    pub async fn hosts(&self) -> Result<Vec<HostInfo>, ClientError> {
        self.call(HOSTS, &[], NO_BODY).await
    }

    /// Lists port mirrors.
    pub async fn mirrors(&self) -> Result<Vec<MirrorRecord>, ClientError> {
        self.call(LIST_MIRRORS, &[], NO_BODY).await
    }

    /// Adds a port mirror.
    pub async fn add_mirror(&self, mirror: &MirrorRecord) -> Result<MirrorRecord, ClientError> {
        self.call(ADD_MIRROR, &[], Some(mirror)).await
    }

    /// Removes a port mirror.
    pub async fn remove_mirror(&self, name: &str) -> Result<MirrorRecord, ClientError> {
        self.call(REMOVE_MIRROR, &[name], NO_BODY).await
    }

    /// Starts a capture; its pcapng stream comes as the answer's body.
    pub async fn start_capture(&self, req: &CaptureRequest) -> Result<Streaming, ClientError> {
        let response = self.send(START_CAPTURE, &[], Some(req)).await?;
        let response = check(response).await?;
        let id = response
            .headers()
            .get(CAPTURE_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        Ok(Streaming {
            id,
            body: response.into_body(),
        })
    }

    /// Asks for the daemon's events: they come as the answer's body, one JSON object a line.
    pub async fn events(
        &self,
        req: &crate::model::events::EventsRequest,
    ) -> Result<Incoming, ClientError> {
        let response = self.send(EVENTS, &[], Some(req)).await?;
        Ok(check(response).await?.into_body())
    }

    /// Stops a capture: its stream ends with its statistics.
    pub async fn stop_capture(&self, id: u64) -> Result<(), ClientError> {
        self.call(STOP_CAPTURE, &[&id.to_string()], NO_BODY).await
    }

    /// Sends `route` and decodes its JSON answer (an empty answer decodes as `()`).
    async fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        params: &[&str],
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let response = check(self.send(route, params, body).await?).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(ClientError::Decode)
    }

    async fn send(
        &self,
        route: Route,
        params: &[&str],
        body: Option<&impl Serialize>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|error| match error.kind() {
                    std::io::ErrorKind::PermissionDenied => ClientError::Denied {
                        socket: self.socket.clone(),
                        owner: describe_owner(&self.socket),
                    },
                    _ => ClientError::Unreachable {
                        socket: self.socket.clone(),
                        error,
                    },
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(connection);
        let body = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(ClientError::Decode)?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(route.verb.as_str())
            .uri(format!("http://localhost{}", route.path_with(params)))
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a request of known parts");
        sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)
    }
}

/// No request body.
const NO_BODY: Option<&()> = None;

/// The response if it succeeded, else the daemon's message as the error.
async fn check(
    response: hyper::Response<Incoming>,
) -> Result<hyper::Response<Incoming>, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Http)?
        .to_bytes();
    let message = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
    Err(ClientError::Daemon {
        status: status.as_u16(),
        message,
    })
}

/// "owner USER, group GROUP, mode 0660" of `path`, as far as it can be read.
fn describe_owner(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return "a directory on the way is closed to you".to_string();
    };
    let user = nix::unistd::User::from_uid(meta.uid().into())
        .ok()
        .flatten()
        .map_or(meta.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(meta.gid().into())
        .ok()
        .flatten()
        .map_or(meta.gid().to_string(), |g| g.name);
    format!(
        "owner {user}, group {group}, mode {:04o}",
        meta.mode() & 0o7777
    )
}
