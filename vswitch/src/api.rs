//! The control API: HTTP + JSON over a Unix socket, as Docker's is, so `curl --unix-socket`
//! works. Errors come back as `{"message": "..."}` with a 4xx status for refused input and 5xx
//! for failures.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /v1/networks` | list networks |
//! | `POST /v1/networks` | create a network (`NetworkCreate`) |
//! | `GET /v1/networks/{name}` | inspect a network |
//! | `DELETE /v1/networks/{name}` | remove a network |
//! | `POST /v1/networks/{name}/endpoints` | connect a namespace (`ConnectRequest`) |
//! | `DELETE /v1/networks/{name}/endpoints/{endpoint or netns}` | disconnect |
//! | `GET /v1/networks/{name}/fdb` | MAC table |
//! | `GET /v1/trunks` | list trunk ports |
//! | `POST /v1/trunks` | add a trunk port (`TrunkCreate`) |
//! | `DELETE /v1/trunks/{name or netns}` | remove a trunk port |
//! | `GET /v1/ports` | ports with counters |
//! | `GET /v1/networks/{name}/policy` | policy with rule hit counts |
//! | `PUT /v1/networks/{name}/policy` | replace the policy (`NetworkPolicy`), atomically |
//! | `POST /v1/networks/{name}/policy/rules` | add a rule (`RuleAdd`) |
//! | `DELETE /v1/networks/{name}/policy/rules/{rule}` | remove a rule |
//! | `GET /v1/networks/{name}/conntrack` | tracked flows |
//! | `PUT /v1/networks/{name}/endpoints/{target}/rate-limit` | set a port's limit (`RateLimit`; `{}` lifts it) |

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;

use crate::control::{Control, PolicyView};
use crate::error::ControlError;
use crate::model::{ConnectRequest, NetworkCreate, TrunkCreate, TrunkRecord};

async fn list_mirrors(State(c): State<Arc<Control>>) -> Json<Vec<crate::model::MirrorRecord>> {
    Json(c.mirrors().await)
}

async fn add_mirror(
    State(c): State<Arc<Control>>,
    req: Result<Json<crate::model::MirrorRecord>, JsonRejection>,
) -> Result<(StatusCode, Json<crate::model::MirrorRecord>), ControlError> {
    Ok((StatusCode::CREATED, Json(c.add_mirror(body(req)?).await?)))
}

async fn remove_mirror(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<crate::model::MirrorRecord> {
    Ok(Json(c.remove_mirror(&name).await?))
}

async fn trace(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Result<Json<vswitch_core::trace::TraceRequest>, JsonRejection>,
) -> Reply<vswitch_core::trace::TraceReport> {
    Ok(Json(c.trace(&name, body(req)?).await?))
}

async fn get_policy(State(c): State<Arc<Control>>, Path(name): Path<String>) -> Reply<PolicyView> {
    Ok(Json(c.policy(&name).await?))
}

async fn put_policy(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Result<Json<policy::NetworkPolicy>, JsonRejection>,
) -> Reply<PolicyView> {
    let new = body(req)?;
    Ok(Json(
        c.change_policy(&name, |policy| {
            *policy = new;
            Ok(())
        })
        .await?,
    ))
}

/// Body of `POST /v1/networks/{name}/policy/rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleAdd {
    /// The rule.
    pub rule: policy::Rule,
    /// Where it goes in the order, 0 first [default: last].
    #[serde(default)]
    pub position: Option<usize>,
}

async fn add_rule(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Result<Json<RuleAdd>, JsonRejection>,
) -> Result<(StatusCode, Json<PolicyView>), ControlError> {
    let RuleAdd { rule, position } = body(req)?;
    let view = c
        .change_policy(&name, |policy| {
            let at = position.unwrap_or(policy.rules.len());
            if at > policy.rules.len() {
                return Err(ControlError::Invalid(format!(
                    "position {at} is past the end of the {} rules",
                    policy.rules.len()
                )));
            }
            policy.rules.insert(at, rule);
            Ok(())
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn remove_rule(
    State(c): State<Arc<Control>>,
    Path((name, rule)): Path<(String, String)>,
) -> Reply<PolicyView> {
    Ok(Json(
        c.change_policy(&name, |policy| {
            let at = policy
                .rules
                .iter()
                .position(|r| r.name == rule)
                .ok_or_else(|| ControlError::UnknownRule {
                    rule: rule.clone(),
                    network: name.clone(),
                })?;
            policy.rules.remove(at);
            Ok(())
        })
        .await?,
    ))
}

async fn set_rate_limit(
    State(c): State<Arc<Control>>,
    Path((name, target)): Path<(String, String)>,
    req: Result<Json<policy::RateLimit>, JsonRejection>,
) -> Reply<crate::model::EndpointRecord> {
    Ok(Json(
        c.set_rate_limit(&name, &target, Some(body(req)?)).await?,
    ))
}

async fn conntrack(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<Vec<policy::FlowRow>> {
    Ok(Json(c.conntrack(&name).await?))
}

/// Header of a capture response carrying its id (for `DELETE /v1/captures/{id}`).
pub const CAPTURE_ID_HEADER: &str = "x-vswitch-capture";

async fn start_capture(
    State(c): State<Arc<Control>>,
    req: Result<Json<crate::model::CaptureRequest>, JsonRejection>,
) -> Result<Response, ControlError> {
    let stream = c.start_capture(body(req)?).await?;
    let chunks = futures::stream::unfold(stream.bytes, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    Ok((
        [
            ("content-type", "application/x-pcapng".to_string()),
            (CAPTURE_ID_HEADER, stream.id.to_string()),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

async fn stop_capture(
    State(c): State<Arc<Control>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ControlError> {
    c.stop_capture(id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of every error response.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// One sentence naming the problem.
    pub message: String,
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (
            self.status(),
            Json(ErrorBody {
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}

type Reply<T> = Result<Json<T>, ControlError>;

/// A JSON body that failed to parse is refused with the parser's message.
fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, ControlError> {
    parsed
        .map(|Json(v)| v)
        .map_err(|e| ControlError::Invalid(format!("invalid request body: {}", e.body_text())))
}

/// The API's routes over `control`.
pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{name}",
            get(inspect_network).delete(remove_network),
        )
        .route(
            "/v1/networks/{name}/endpoints",
            axum::routing::post(connect),
        )
        .route("/v1/networks/{name}/endpoints/{target}", delete(disconnect))
        .route("/v1/networks/{name}/fdb", get(fdb))
        .route("/v1/networks/{name}/trace", axum::routing::post(trace))
        .route(
            "/v1/networks/{name}/policy",
            get(get_policy).put(put_policy),
        )
        .route(
            "/v1/networks/{name}/policy/rules",
            axum::routing::post(add_rule),
        )
        .route(
            "/v1/networks/{name}/policy/rules/{rule}",
            delete(remove_rule),
        )
        .route("/v1/networks/{name}/conntrack", get(conntrack))
        .route(
            "/v1/networks/{name}/endpoints/{target}/rate-limit",
            axum::routing::put(set_rate_limit),
        )
        .route("/v1/trunks", get(list_trunks).post(add_trunk))
        .route("/v1/trunks/{target}", delete(remove_trunk))
        .route("/v1/ports", get(ports))
        .route("/v1/mirrors", get(list_mirrors).post(add_mirror))
        .route("/v1/mirrors/{name}", delete(remove_mirror))
        .route("/v1/captures", axum::routing::post(start_capture))
        .route("/v1/captures/{id}", delete(stop_capture))
        .with_state(control)
}

async fn list_networks(State(c): State<Arc<Control>>) -> Reply<Vec<crate::model::NetworkRecord>> {
    Ok(Json(c.networks().await))
}

async fn create_network(
    State(c): State<Arc<Control>>,
    req: Result<Json<NetworkCreate>, JsonRejection>,
) -> Result<(StatusCode, Json<crate::model::NetworkRecord>), ControlError> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_network(body(req)?).await?),
    ))
}

async fn inspect_network(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<crate::control::NetworkView> {
    Ok(Json(c.inspect_network(&name).await?))
}

async fn remove_network(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    c.remove_network(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connect(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Result<Json<ConnectRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<crate::model::Connected>), ControlError> {
    Ok((
        StatusCode::CREATED,
        Json(c.connect(&name, body(req)?).await?),
    ))
}

async fn disconnect(
    State(c): State<Arc<Control>>,
    Path((name, target)): Path<(String, String)>,
) -> Reply<crate::model::EndpointRecord> {
    Ok(Json(c.disconnect(&name, &target).await?))
}

async fn fdb(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<Vec<crate::control::FdbInfo>> {
    Ok(Json(c.fdb(&name).await?))
}

async fn ports(State(c): State<Arc<Control>>) -> Reply<Vec<crate::control::PortInfo>> {
    Ok(Json(c.ports().await?))
}

async fn list_trunks(State(c): State<Arc<Control>>) -> Reply<Vec<TrunkRecord>> {
    Ok(Json(c.trunks().await))
}

async fn add_trunk(
    State(c): State<Arc<Control>>,
    req: Result<Json<TrunkCreate>, JsonRejection>,
) -> Result<(StatusCode, Json<TrunkRecord>), ControlError> {
    Ok((StatusCode::CREATED, Json(c.add_trunk(body(req)?).await?)))
}

async fn remove_trunk(
    State(c): State<Arc<Control>>,
    Path(target): Path<String>,
) -> Reply<TrunkRecord> {
    Ok(Json(c.remove_trunk(&target).await?))
}
