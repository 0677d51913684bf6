//! The control API: HTTP + JSON over a Unix socket, as Docker's is, so `curl --unix-socket`
//! works. `ROUTES` is the one list of its routes: the server (`server`) serves each of them and
//! the typed client (`client`) has one method per route, so no URL is written twice. Errors
//! come back as `{"message": "..."}` with a 4xx status for refused input and 5xx for failures.
//! The request and response bodies are the model's records and the control plane's views.

pub mod client;
pub mod handover;
pub mod server;

use serde::{Deserialize, Serialize};

/// Header of a capture response carrying its id (for `DELETE /v1/captures/{id}`).
pub const CAPTURE_ID_HEADER: &str = "x-vswitch-capture";

/// Body of every error response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One sentence naming the problem.
    pub message: String,
}

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }
}

/// One route: a method and a path whose `{name}` segments are parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Its method.
    pub verb: Verb,
    /// Its path, in axum's syntax (`/v1/networks/{name}`).
    pub path: &'static str,
    /// What it does (the body it takes, if any, in parentheses).
    pub does: &'static str,
}

impl Route {
    /// The path with its parameters filled in, in order, each percent-encoded as one segment
    /// (a namespace path such as /run/netns/x has slashes of its own).
    pub fn path_with(&self, params: &[&str]) -> String {
        let mut params = params.iter();
        self.path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    let value = params.next().expect("a value for every path parameter");
                    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                } else {
                    segment.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

macro_rules! routes {
    ($($name:ident: $verb:ident $path:literal, $does:literal;)*) => {
        $(
            #[doc = $does]
            pub const $name: Route = Route { verb: Verb::$verb, path: $path, does: $does };
        )*
        /// Every route of the API, in the order `vswitch` documents them.
        pub const ROUTES: &[Route] = &[$($name),*];
    };
}

routes! {
    INFO: Get "/v1/info", "the daemon: versions, process, and whether it runs rootless";
    LIST_NETWORKS: Get "/v1/networks", "list networks";
    CREATE_NETWORK: Post "/v1/networks", "create a network (`NetworkCreate`)";
    INSPECT_NETWORK: Get "/v1/networks/{name}", "inspect a network, with its gateway's counters";
    REMOVE_NETWORK: Delete "/v1/networks/{name}", "remove a network";
    LIST_ENDPOINTS: Get "/v1/networks/{name}/endpoints", "a network's endpoints, with their addresses";
    CONNECT: Post "/v1/networks/{name}/endpoints", "connect a namespace (`ConnectRequest`)";
    INSPECT_ENDPOINT: Get "/v1/networks/{name}/endpoints/{target}", "one endpoint, by name or namespace";
    DISCONNECT: Delete "/v1/networks/{name}/endpoints/{target}", "disconnect an endpoint, by name or namespace";
    SET_RATE_LIMIT: Put "/v1/networks/{name}/endpoints/{target}/rate-limit", "set a port's limit (`RateLimit`; `{}` lifts it)";
    FDB: Get "/v1/networks/{name}/fdb", "MAC table of a network";
    TRACE: Post "/v1/networks/{name}/trace", "explain what the switch would do with a frame (`TraceRequest`)";
    POLICY: Get "/v1/networks/{name}/policy", "policy with rule hit counts";
    SET_POLICY: Put "/v1/networks/{name}/policy", "replace the policy (`NetworkPolicy`), atomically";
    SET_DEFAULT_ACTION: Put "/v1/networks/{name}/policy/default", "change the default action (`DefaultActionChange`), atomically";
    ADD_RULE: Post "/v1/networks/{name}/policy/rules", "add a rule (`RuleAdd`)";
    REMOVE_RULE: Delete "/v1/networks/{name}/policy/rules/{rule}", "remove a rule";
    CONNTRACK: Get "/v1/networks/{name}/conntrack", "tracked flows of a network";
    LIST_TRUNKS: Get "/v1/trunks", "list trunk ports";
    ADD_TRUNK: Post "/v1/trunks", "add a trunk port (`TrunkCreate`)";
    REMOVE_TRUNK: Delete "/v1/trunks/{target}", "remove a trunk port, by name or namespace";
    PORTS: Get "/v1/ports", "ports with counters";
    HOSTS: Get "/v1/hosts", "this host's underlay and the hosts its overlay networks reach, with counters";
    LIST_MIRRORS: Get "/v1/mirrors", "list port mirrors";
    ADD_MIRROR: Post "/v1/mirrors", "add a port mirror (`MirrorRecord`)";
    REMOVE_MIRROR: Delete "/v1/mirrors/{name}", "remove a port mirror";
    START_CAPTURE: Post "/v1/captures", "start a capture (`CaptureRequest`): a pcapng stream, its id in the `x-vswitch-capture` header";
    STOP_CAPTURE: Delete "/v1/captures/{id}", "stop a capture: its stream ends with interface statistics";
    EVENTS: Post "/v1/events", "a stream of what changes, one JSON object a line (`EventsRequest`: since, until, filters)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_filled_in_order_as_single_segments() {
        assert_eq!(
            DISCONNECT.path_with(&["app", "/run/netns/web"]),
            "/v1/networks/app/endpoints/%2Frun%2Fnetns%2Fweb"
        );
        assert_eq!(LIST_NETWORKS.path_with(&[]), "/v1/networks");
    }

    #[test]
    fn no_two_routes_share_method_and_path() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    (a.verb, a.path) != (b.verb, b.path),
                    "{} {} twice",
                    a.verb.as_str(),
                    a.path
                );
            }
        }
    }
}
