//! Asking the Docker engine the names its driver is never told: a network's name, and the
//! name and aliases of the container behind an endpoint (`GET /networks/ID`,
//! `GET /containers/ID/json` on its API socket).

use std::collections::BTreeMap;
use std::path::PathBuf;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::UnixStream;

/// Docker's API socket when neither `--docker-host` nor `DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Why Docker could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach Docker at {socket}: {error}")]
    Unreachable {
        socket: String,
        error: std::io::Error,
    },
    #[error("Docker's API failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("Docker answered {status} to {path}")]
    Status { status: u16, path: String },
    #[error("cannot read Docker's answer to {path}: {error}")]
    Decode {
        path: String,
        error: serde_json::Error,
    },
}

/// Docker's API on its Unix socket.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
}

/// What `GET /networks/ID` tells.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkInfo {
    #[serde(rename = "Name")]
    name: String,
    /// Container ID -> its endpoint.
    #[serde(rename = "Containers")]
    containers: BTreeMap<String, ContainerEndpoint>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerEndpoint {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
}

/// What `GET /containers/ID/json` tells of its networks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerInfo {
    #[serde(rename = "NetworkSettings")]
    network_settings: NetworkSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkSettings {
    #[serde(rename = "Networks")]
    networks: BTreeMap<String, ContainerNetwork>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerNetwork {
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Aliases")]
    aliases: Option<Vec<String>>,
}

/// The container behind an endpoint: its name and its aliases on that network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerNames {
    pub name: String,
    pub aliases: Vec<String>,
}

impl Engine {
    /// Docker at `host`: `unix:///path` or a path.
    pub fn new(host: &str) -> Engine {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        Engine {
            socket: PathBuf::from(path),
        }
    }

    /// The name of network `network_id`, once Docker has stored it (None before).
    pub async fn network_name(&self, network_id: &str) -> Result<Option<String>, EngineError> {
        let info: Option<NetworkInfo> = self.get(&format!("/networks/{network_id}")).await?;
        Ok(info.map(|n| n.name).filter(|n| !n.is_empty()))
    }

    /// The container behind `endpoint_id` on `network_id`, once Docker lists it there.
    pub async fn container_of(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<ContainerNames>, EngineError> {
        let Some(network) = self
            .get::<NetworkInfo>(&format!("/networks/{network_id}"))
            .await?
        else {
            return Ok(None);
        };
        let Some((id, endpoint)) = network
            .containers
            .iter()
            .find(|(_, c)| c.endpoint_id == endpoint_id)
        else {
            return Ok(None);
        };
        let container: Option<ContainerInfo> = self.get(&format!("/containers/{id}/json")).await?;
        let aliases = container
            .and_then(|c| {
                c.network_settings
                    .networks
                    .into_values()
                    .find(|n| n.endpoint_id == endpoint_id)
            })
            .and_then(|n| n.aliases)
            .unwrap_or_default();
        Ok(Some(ContainerNames {
            name: endpoint.name.clone(),
            aliases: aliases
                .into_iter()
                .filter(|a| *a != endpoint.name)
                .collect(),
        }))
    }

    /// GETs `path` and decodes it; a 404 is `None`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, EngineError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|error| EngineError::Unreachable {
                    socket: self.socket.display().to_string(),
                    error,
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(format!("http://docker{path}"))
            .header("host", "docker")
            .body(Empty::<Bytes>::new())
            .expect("a request of known parts");
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(EngineError::Status {
                status,
                path: path.to_string(),
            });
        }
        let body = response.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|error| EngineError::Decode {
                path: path.to_string(),
                error,
            })
    }
}
