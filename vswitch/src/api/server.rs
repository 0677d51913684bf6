//! The API's server side: one axum handler per route of `ROUTES`, each a thin translation of
//! HTTP onto a `Control` call, and the mapping of control errors onto HTTP statuses.

use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use axum::{Json, Router};

use crate::control::TraceReport;
use crate::model::TraceRequest;

use super::{ErrorBody, Route, Verb, CAPTURE_ID_HEADER};
use crate::control::error::ErrorKind;
use crate::control::{
    Control, ControlError, FdbInfo, HostInfo, NetworkView, PolicyChange, PolicyView, PortInfo,
};
use crate::model::{
    CaptureRequest, ConnectRequest, Connected, DaemonInfo, DefaultActionChange, EndpointRecord,
    MirrorRecord, NetworkCreate, NetworkRecord, RuleAdd, TrunkCreate, TrunkRecord,
};

type Reply<T> = Result<Json<T>, ControlError>;
type Created<T> = Result<(StatusCode, Json<T>), ControlError>;
type Body<T> = Result<Json<T>, JsonRejection>;

/// The API's routes over `control`.
pub fn router(control: Arc<Control>) -> Router {
    use super::*;
    let routes = Router::new();
    let routes = serve(routes, INFO, info);
    let routes = serve(routes, LIST_NETWORKS, list_networks);
    let routes = serve(routes, CREATE_NETWORK, create_network);
    let routes = serve(routes, INSPECT_NETWORK, inspect_network);
    let routes = serve(routes, REMOVE_NETWORK, remove_network);
    let routes = serve(routes, LIST_ENDPOINTS, list_endpoints);
    let routes = serve(routes, CONNECT, connect);
    let routes = serve(routes, INSPECT_ENDPOINT, inspect_endpoint);
    let routes = serve(routes, DISCONNECT, disconnect);
    let routes = serve(routes, SET_RATE_LIMIT, set_rate_limit);
    let routes = serve(routes, FDB, fdb);
    let routes = serve(routes, TRACE, trace);
    let routes = serve(routes, POLICY, policy);
    let routes = serve(routes, SET_POLICY, set_policy);
    let routes = serve(routes, SET_DEFAULT_ACTION, set_default_action);
    let routes = serve(routes, ADD_RULE, add_rule);
    let routes = serve(routes, REMOVE_RULE, remove_rule);
    let routes = serve(routes, CONNTRACK, conntrack);
    let routes = serve(routes, LIST_TRUNKS, list_trunks);
    let routes = serve(routes, ADD_TRUNK, add_trunk);
    let routes = serve(routes, REMOVE_TRUNK, remove_trunk);
    let routes = serve(routes, PORTS, ports);
    let routes = serve(routes, HOSTS, hosts);
    let routes = serve(routes, LIST_MIRRORS, list_mirrors);
    let routes = serve(routes, ADD_MIRROR, add_mirror);
    let routes = serve(routes, REMOVE_MIRROR, remove_mirror);
    let routes = serve(routes, START_CAPTURE, start_capture);
    let routes = serve(routes, STOP_CAPTURE, stop_capture);
    let routes = serve(routes, EVENTS, events);
    routes.with_state(control)
}

/// Adds `route` to `router`, served by `handler` (routes sharing a path are merged by method).
fn serve<H, T>(router: Router<Arc<Control>>, route: Route, handler: H) -> Router<Arc<Control>>
where
    H: Handler<T, Arc<Control>>,
    T: 'static,
{
    let filter = match route.verb {
        Verb::Get => MethodFilter::GET,
        Verb::Post => MethodFilter::POST,
        Verb::Put => MethodFilter::PUT,
        Verb::Delete => MethodFilter::DELETE,
    };
    router.route(route.path, axum::routing::on(filter, handler))
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = self.to_string();
        (status, Json(ErrorBody { message })).into_response()
    }
}

/// A JSON body that failed to parse is refused with the parser's message.
fn body<T>(parsed: Body<T>) -> Result<T, ControlError> {
    parsed
        .map(|Json(v)| v)
        .map_err(|e| ControlError::Invalid(format!("invalid request body: {}", e.body_text())))
}

async fn info(State(c): State<Arc<Control>>) -> Reply<DaemonInfo> {
    Ok(Json(c.info()))
}

async fn list_networks(State(c): State<Arc<Control>>) -> Reply<Vec<NetworkRecord>> {
    Ok(Json(c.networks().await))
}

async fn create_network(
    State(c): State<Arc<Control>>,
    req: Body<NetworkCreate>,
) -> Created<NetworkRecord> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_network(body(req)?).await?),
    ))
}

async fn inspect_network(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<NetworkView> {
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
    req: Body<ConnectRequest>,
) -> Created<Connected> {
    Ok((
        StatusCode::CREATED,
        Json(c.connect(&name, body(req)?).await?),
    ))
}

async fn list_endpoints(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<Vec<EndpointRecord>> {
    Ok(Json(c.endpoints(&name).await?))
}

async fn inspect_endpoint(
    State(c): State<Arc<Control>>,
    Path((name, target)): Path<(String, String)>,
) -> Reply<EndpointRecord> {
    Ok(Json(c.endpoint(&name, &target).await?))
}

async fn disconnect(
    State(c): State<Arc<Control>>,
    Path((name, target)): Path<(String, String)>,
) -> Reply<EndpointRecord> {
    Ok(Json(c.disconnect(&name, &target).await?))
}

async fn set_rate_limit(
    State(c): State<Arc<Control>>,
    Path((name, target)): Path<(String, String)>,
    req: Body<policy::RateLimit>,
) -> Reply<EndpointRecord> {
    Ok(Json(
        c.set_rate_limit(&name, &target, Some(body(req)?)).await?,
    ))
}

async fn fdb(State(c): State<Arc<Control>>, Path(name): Path<String>) -> Reply<Vec<FdbInfo>> {
    Ok(Json(c.fdb(&name).await?))
}

async fn trace(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Body<TraceRequest>,
) -> Reply<TraceReport> {
    Ok(Json(c.trace(&name, body(req)?).await?))
}

async fn policy(State(c): State<Arc<Control>>, Path(name): Path<String>) -> Reply<PolicyView> {
    Ok(Json(c.policy(&name).await?))
}

async fn set_policy(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Body<policy::NetworkPolicy>,
) -> Reply<PolicyView> {
    let change = PolicyChange::Replace(body(req)?);
    Ok(Json(c.change_policy(&name, change).await?))
}

async fn set_default_action(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Body<DefaultActionChange>,
) -> Reply<PolicyView> {
    let change = PolicyChange::SetDefault(body(req)?.default);
    Ok(Json(c.change_policy(&name, change).await?))
}

async fn add_rule(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    req: Body<RuleAdd>,
) -> Created<PolicyView> {
    let change = PolicyChange::AddRule(body(req)?);
    Ok((
        StatusCode::CREATED,
        Json(c.change_policy(&name, change).await?),
    ))
}

async fn remove_rule(
    State(c): State<Arc<Control>>,
    Path((name, rule)): Path<(String, String)>,
) -> Reply<PolicyView> {
    let change = PolicyChange::RemoveRule(rule);
    Ok(Json(c.change_policy(&name, change).await?))
}

async fn conntrack(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<Vec<policy::FlowRow>> {
    Ok(Json(c.conntrack(&name).await?))
}

async fn list_trunks(State(c): State<Arc<Control>>) -> Reply<Vec<TrunkRecord>> {
    Ok(Json(c.trunks().await))
}

async fn add_trunk(State(c): State<Arc<Control>>, req: Body<TrunkCreate>) -> Created<TrunkRecord> {
    Ok((StatusCode::CREATED, Json(c.add_trunk(body(req)?).await?)))
}

async fn remove_trunk(
    State(c): State<Arc<Control>>,
    Path(target): Path<String>,
) -> Reply<TrunkRecord> {
    Ok(Json(c.remove_trunk(&target).await?))
}

async fn ports(State(c): State<Arc<Control>>) -> Reply<Vec<PortInfo>> {
    Ok(Json(c.ports().await?))
}

async fn hosts(State(c): State<Arc<Control>>) -> Reply<Vec<HostInfo>> {
    Ok(Json(c.hosts().await?))
}

async fn list_mirrors(State(c): State<Arc<Control>>) -> Reply<Vec<MirrorRecord>> {
    Ok(Json(c.mirrors().await))
}

async fn add_mirror(
    State(c): State<Arc<Control>>,
    req: Body<MirrorRecord>,
) -> Created<MirrorRecord> {
    Ok((StatusCode::CREATED, Json(c.add_mirror(body(req)?).await?)))
}

async fn remove_mirror(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> Reply<MirrorRecord> {
    Ok(Json(c.remove_mirror(&name).await?))
}

async fn start_capture(
    State(c): State<Arc<Control>>,
    req: Body<CaptureRequest>,
) -> Result<Response, ControlError> {
    let stream = c.start_capture(body(req)?).await?;
    // Each batch goes out piece by piece: large frames are the data path's own copies.
    let batches = futures::stream::unfold(stream.bytes, |mut rx| async move {
        rx.recv().await.map(|batch| (batch, rx))
    });
    let chunks = batches
        .map(|batch| futures::stream::iter(batch.into_iter().map(Ok::<_, Infallible>)))
        .flatten();
    Ok((
        [
            ("content-type", "application/x-pcapng".to_string()),
            (CAPTURE_ID_HEADER, stream.id.to_string()),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

async fn events(
    State(c): State<Arc<Control>>,
    req: Body<crate::model::events::EventsRequest>,
) -> Result<Response, ControlError> {
    use tokio::sync::broadcast::error::RecvError;
    let req = body(req)?;
    let crate::control::EventSubscription {
        past,
        live,
        mut stopping,
    } = c.subscribe_events(req.since);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let until = req.until;
    let live = futures::stream::unfold(live, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                // A reader too slow for the burst misses some; it carries on with the rest.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let events = match until {
        // In the past: the kept events only.
        Some(until) if until <= now.as_secs() => futures::stream::iter(past).boxed(),
        Some(until) => {
            let left = std::time::Duration::from_secs(until) - now;
            futures::stream::iter(past)
                .chain(live.take_until(tokio::time::sleep(left)))
                .boxed()
        }
        None => futures::stream::iter(past).chain(live).boxed(),
    };
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let lines = events
        .take_until(stopped)
        .filter(move |e| {
            let wanted = e.passes(&req.filters) && until.is_none_or(|u| e.time <= u);
            std::future::ready(wanted)
        })
        .map(|e| {
            let mut line = serde_json::to_vec(&e).expect("an event serializes");
            line.push(b'\n');
            Ok::<_, Infallible>(bytes::Bytes::from(line))
        });
    Ok((
        [("content-type", "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::DataPathConfig;
    use crate::model::store::StateStore;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// Every route of `ROUTES` reaches a handler: it answers with the control plane's JSON (an
    /// error about the made-up names is fine), never the router's bare 404 or 405.
    #[tokio::test]
    async fn every_listed_route_is_served() {
        let dir = std::env::temp_dir().join(format!("vswitch-routes-{}", std::process::id()));
        let config = DataPathConfig {
            workers: 1,
            ..DataPathConfig::default()
        };
        let control = Control::start(StateStore::new(&dir), config, None)
            .await
            .unwrap();
        let app = router(control);
        for route in super::super::ROUTES {
            let params: Vec<&str> = route.path.matches('{').map(|_| "0").collect();
            let request = axum::http::Request::builder()
                .method(route.verb.as_str())
                .uri(route.path_with(&params))
                .header("content-type", "application/json")
                // Events stream until told when to stop: a moment past.
                .body(axum::body::Body::from(if *route == super::super::EVENTS {
                    r#"{"until": 1}"#
                } else {
                    "{}"
                }))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route:?}");
            let answered =
                status.is_success() || serde_json::from_slice::<ErrorBody>(&bytes).is_ok();
            assert!(answered, "{route:?}: {status} {bytes:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
