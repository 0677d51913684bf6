//! Docker's remote network driver (libnetwork's protocol, moby's `libnetwork/docs/remote.md`),
//! served on `/run/docker/plugins/vswitch.sock` for `docker network create -d vswitch`.
//!
//! Each call becomes a control-plane operation: `CreateNetwork` a network (Docker's IPAM chose
//! the pools), `Join` a connect whose TAP device is made bare beside the daemon and handed over
//! (Docker moves it into the container, names it `eth0` and sets the address its IPAM chose; the
//! open fd keeps carrying frames after the move), `Leave` a disconnect. Docker tells its driver
//! no names, so they are asked of the engine afterwards (`engine`) and given to the network and
//! endpoint once known; until then both go by the first 12 characters of Docker's ID, as
//! `docker network ls` shows them. What Docker does not replay after a restart (its networks
//! and endpoints) lives in the records, as every network does.

pub mod engine;
pub mod translate;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::control::{Control, ControlError, Creation};
use crate::model::ConnectRequest;
use engine::Engine;
use wire::*;

/// Where Docker looks for the driver (its name is the socket's, `vswitch`).
pub const DEFAULT_PLUGIN_SOCKET: &str = "/run/docker/plugins/vswitch.sock";

/// How long names are asked of Docker after a network or endpoint appears.
const NAMING_PATIENCE: Duration = Duration::from_secs(30);
/// Between two questions.
const NAMING_INTERVAL: Duration = Duration::from_millis(100);

/// An endpoint between `CreateEndpoint` and `Join`: what Docker's IPAM chose for it.
#[derive(Debug, Clone)]
struct Pending {
    interface: Interface,
}

/// The driver: the control plane it drives, the engine it asks names of.
pub struct Driver {
    control: Arc<Control>,
    engine: Engine,
    pending: Mutex<HashMap<String, Pending>>,
}

/// A call that failed: Docker shows the sentence to its user.
struct Refusal(String);

impl From<ControlError> for Refusal {
    fn from(e: ControlError) -> Refusal {
        Refusal(e.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(Failure { err: self.0 }),
        )
            .into_response()
    }
}

type Answer = Result<Response, Refusal>;

fn answer(body: impl serde::Serialize) -> Answer {
    Ok(Json(body).into_response())
}

fn empty() -> Answer {
    answer(serde_json::json!({}))
}

/// Docker's IDs are 64 hex digits; its CLI shows the first 12.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The TAP device's name beside the daemon until Docker moves it (15 bytes at most).
fn handover_name(endpoint_id: &str) -> String {
    format!("vsw{}", &endpoint_id[..endpoint_id.len().min(11)])
}

/// The driver's routes on a router of their own (served on the plugin socket).
pub fn router(driver: Arc<Driver>) -> Router {
    Router::new().fallback(call).with_state(driver)
}

impl Driver {
    /// A driver over `control`, asking names of Docker at `docker_host`.
    pub fn new(control: Arc<Control>, docker_host: &str) -> Driver {
        Driver {
            control,
            engine: Engine::new(docker_host),
            pending: Mutex::default(),
        }
    }
}

/// One POST of the protocol: `/Plugin.Activate`, `/NetworkDriver.Join`, ...
async fn call(State(driver): State<Arc<Driver>>, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/').to_string();
    debug!(%method, body = %String::from_utf8_lossy(&body), "docker driver call");
    let result = match method.as_str() {
        "Plugin.Activate" => answer(Activate {
            implements: vec!["NetworkDriver"],
        }),
        "NetworkDriver.GetCapabilities" => answer(Capabilities {
            scope: "local",
            connectivity_scope: "local",
        }),
        "NetworkDriver.CreateNetwork" => match parse(&body) {
            Ok(req) => driver.create_network(req).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.DeleteNetwork" => match parse(&body) {
            Ok(req) => driver.delete_network(req).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.CreateEndpoint" => match parse(&body) {
            Ok(req) => driver.create_endpoint(req).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.Join" => match parse(&body) {
            Ok(req) => driver.join(req).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.Leave" => match parse::<Ids>(&body) {
            Ok(req) => driver.leave(&req.endpoint_id).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.DeleteEndpoint" => match parse::<Ids>(&body) {
            Ok(req) => driver.delete_endpoint(&req.endpoint_id).await,
            Err(e) => Err(e),
        },
        "NetworkDriver.EndpointOperInfo" => match parse::<Ids>(&body) {
            Ok(req) => driver.oper_info(&req.endpoint_id).await,
            Err(e) => Err(e),
        },
        // Port publishing happens at Join (the gateway's published ports); discovery and
        // swarm allocation do not concern a local driver.
        "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity"
        | "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete"
        | "NetworkDriver.AllocateNetwork"
        | "NetworkDriver.FreeNetwork" => empty(),
        // Docker takes a 404 as "not implemented" and carries on.
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match result {
        Ok(response) => response,
        Err(refusal) => {
            warn!(%method, error = %refusal.0, "docker driver call refused");
            refusal.into_response()
        }
    }
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Refusal(format!("malformed request: {e}")))
}

impl Driver {
    async fn create_network(self: &Arc<Self>, req: CreateNetwork) -> Answer {
        if self
            .control
            .network_of_docker(&req.network_id)
            .await
            .is_some()
        {
            return empty();
        }
        let name = short(&req.network_id).to_string();
        let create = translate::network_create(&name, &req).map_err(Refusal)?;
        self.control.create_network(create).await?;
        info!(network = %name, docker_id = %req.network_id, "docker network created");
        let driver = self.clone();
        tokio::spawn(async move { driver.name_network(req.network_id, name).await });
        empty()
    }

    /// Gives the network Docker's name once Docker has stored it.
    async fn name_network(&self, docker_id: String, current: String) {
        let deadline = tokio::time::Instant::now() + NAMING_PATIENCE;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(NAMING_INTERVAL).await;
            match self.engine.network_name(&docker_id).await {
                Ok(Some(name)) if name == current => return,
                Ok(Some(name)) => {
                    if let Err(e) = self.control.rename_network(&current, &name).await {
                        warn!(network = %current, docker_name = %name, error = %e, "network keeps Docker's ID as its name");
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(network = %current, error = %e, "cannot ask Docker the network's name");
                    return;
                }
            }
        }
    }

    async fn delete_network(&self, req: Ids) -> Answer {
        if let Some(name) = self.control.network_of_docker(&req.network_id).await {
            self.control.remove_network(&name).await?;
            info!(network = %name, "docker network removed");
        }
        empty()
    }

    async fn create_endpoint(&self, req: CreateEndpoint) -> Answer {
        if self
            .control
            .network_of_docker(&req.network_id)
            .await
            .is_none()
        {
            return Err(Refusal(format!(
                "vswitch has no network of Docker's ID {}",
                short(&req.network_id)
            )));
        }
        let mut interface = req.interface.unwrap_or_default();
        let chosen_mac = interface.mac_address.is_empty().then(|| {
            vswitch_core::frame::MacAddr::local_from_seed(req.endpoint_id.as_bytes()).to_string()
        });
        if let Some(mac) = &chosen_mac {
            interface.mac_address = mac.clone();
        }
        self.pending
            .lock()
            .expect("pending endpoints lock")
            .insert(req.endpoint_id, Pending { interface });
        answer(EndpointCreated {
            interface: chosen_mac.map(|mac_address| Interface {
                mac_address,
                ..Interface::default()
            }),
        })
    }

    async fn join(self: &Arc<Self>, req: Join) -> Answer {
        let network = self
            .control
            .network_of_docker(&req.network_id)
            .await
            .ok_or_else(|| {
                Refusal(format!(
                    "vswitch has no network of Docker's ID {}",
                    short(&req.network_id)
                ))
            })?;
        let pending = self
            .pending
            .lock()
            .expect("pending endpoints lock")
            .get(&req.endpoint_id)
            .cloned()
            .ok_or_else(|| {
                Refusal(format!(
                    "endpoint {} was never created",
                    short(&req.endpoint_id)
                ))
            })?;
        let interface = pending.interface;
        let ips = [&interface.address, &interface.address_ipv6]
            .into_iter()
            .filter(|a| !a.is_empty())
            .map(|a| a.split('/').next().unwrap_or_default().to_string())
            .collect();
        let publish =
            translate::publish_specs(&req.options.portmap.unwrap_or_default()).map_err(Refusal)?;
        let src_name = handover_name(&req.endpoint_id);
        let request = ConnectRequest {
            netns: req.sandbox_key.clone(),
            ips,
            mac: Some(interface.mac_address.clone()),
            ifname: Some(src_name.clone()),
            name: Some(short(&req.endpoint_id).to_string()),
            publish,
            docker_endpoint: Some(req.endpoint_id.clone()),
            ..ConnectRequest::default()
        };
        let connected = self
            .control
            .connect_as(&network, request, Creation::Handover)
            .await?;
        let record = self.control.network(&network).await?;
        let gateway = |v4: bool| {
            let has_address = connected
                .endpoint
                .addresses
                .iter()
                .any(|a| a.addr().is_ipv4() == v4);
            record
                .subnets
                .iter()
                .find(|s| s.gateway.is_ipv4() == v4 && has_address)
                .map(|s| s.gateway.to_string())
                .unwrap_or_default()
        };
        info!(network = %network, endpoint = %connected.endpoint.name, sandbox = %req.sandbox_key, "docker endpoint joined");
        let driver = self.clone();
        let (docker_network, endpoint_id) = (req.network_id.clone(), req.endpoint_id.clone());
        tokio::spawn(async move { driver.name_endpoint(docker_network, endpoint_id).await });
        answer(Joined {
            interface_name: InterfaceName {
                src_name,
                dst_prefix: "eth",
            },
            gateway: gateway(true),
            gateway_ipv6: gateway(false),
        })
    }

    /// Gives the endpoint its container's name and aliases once Docker lists it, and settles
    /// it in the container's namespace once Docker has made that (the runtime's hook mounts it
    /// a moment after the container is listed). Without answers from Docker, the endpoint keeps
    /// its ID as its name and is settled all the same.
    async fn name_endpoint(&self, docker_network: String, endpoint_id: String) {
        let deadline = tokio::time::Instant::now() + NAMING_PATIENCE;
        let mut docker_answers = true;
        let mut last_error = None;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(NAMING_INTERVAL).await;
            let Some((network, current)) = self.control.endpoint_of_docker(&endpoint_id).await
            else {
                return;
            };
            let names = if docker_answers {
                match self
                    .engine
                    .container_of(&docker_network, &endpoint_id)
                    .await
                {
                    Ok(Some(names)) => Some(names),
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(endpoint = %current, error = %e, "cannot ask Docker the container's name");
                        docker_answers = false;
                        None
                    }
                }
            } else {
                None
            };
            let (name, aliases) = match names {
                Some(names) => (names.name, names.aliases),
                None => match self.control.endpoint(&network, &current).await {
                    Ok(record) => (current.clone(), record.aliases),
                    Err(_) => return,
                },
            };
            match self
                .control
                .settle_endpoint(&network, &current, &name, &aliases)
                .await
            {
                Ok(_) => return,
                Err(e) => last_error = Some(e),
            }
        }
        if let Some(e) = last_error {
            warn!(endpoint = %short(&endpoint_id), error = %e, "endpoint not settled in its container");
        }
    }

    async fn leave(&self, endpoint_id: &str) -> Answer {
        if let Some((network, endpoint)) = self.control.endpoint_of_docker(endpoint_id).await {
            self.control.disconnect(&network, &endpoint).await?;
            info!(network = %network, endpoint = %endpoint, "docker endpoint left");
        }
        empty()
    }

    async fn delete_endpoint(&self, endpoint_id: &str) -> Answer {
        self.pending
            .lock()
            .expect("pending endpoints lock")
            .remove(endpoint_id);
        // Deleted without a Leave (Docker rolling back a failed start): nothing stays behind.
        self.leave(endpoint_id).await
    }

    async fn oper_info(&self, endpoint_id: &str) -> Answer {
        let mut value = std::collections::BTreeMap::new();
        if let Some((network, endpoint)) = self.control.endpoint_of_docker(endpoint_id).await {
            value.insert("vswitch.network".to_string(), network);
            value.insert("vswitch.endpoint".to_string(), endpoint);
        }
        answer(OperInfo { value })
    }
}
