//! A client of etcd's v3 API through its HTTP/JSON gateway (served on the same port as gRPC,
//! `/v3/...`): leases, puts, ranges, deletes, create-if-absent transactions and watches. The
//! gateway, rather than the `etcd-client` crate: that crate's gRPC code is generated at build
//! time by `protoc`, a tool a fresh machine does not have, and building vswitch must need
//! nothing beyond Cargo. Keys and values are base64 on the wire, int64s are strings.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// How long one call may take before the store counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("the store (etcd at {endpoints}) is unreachable: {reason}")]
    Unreachable { endpoints: String, reason: String },
    /// etcd answered with an error.
    #[error("the store (etcd) refused {what}: {message}")]
    Refused { what: &'static str, message: String },
}

/// An HTTP/1 connection over `io`, its driver spawned.
async fn handshake<T>(
    io: TokioIo<T>,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One key and its value, as a range returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// A range's keys and the store revision it was read at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
}

/// etcd, at one or more `host:port` endpoints (the first that answers is used), over TLS if
/// given a client configuration.
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Value,
}

fn decode_kvs(value: &Value) -> Vec<KeyValue> {
    let kvs: Vec<RawKv> = value
        .get("kvs")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    kvs.into_iter()
        .map(|kv| KeyValue {
            key: String::from_utf8_lossy(&B64.decode(kv.key).unwrap_or_default()).into_owned(),
            value: B64.decode(kv.value).unwrap_or_default(),
            mod_revision: int(&kv.mod_revision),
        })
        .collect()
}

fn int(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    B64.encode(end)
}

impl Etcd {
    /// A client of the etcd at `endpoints` (`host:port`, or `http://host:port`).
    pub fn new(endpoints: &str) -> Etcd {
        Etcd {
            endpoints: endpoints
                .split(',')
                .map(|e| {
                    e.trim()
                        .trim_start_matches("http://")
                        .trim_start_matches("https://")
                        .trim_end_matches('/')
                        .to_string()
                })
                .filter(|e| !e.is_empty())
                .collect(),
            tls: None,
        }
    }

    /// The same, over TLS with `config`.
    pub fn with_tls(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Etcd {
        self.tls = Some(config);
        self
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    fn unreachable(&self, reason: impl ToString) -> EtcdError {
        EtcdError::Unreachable {
            endpoints: self.endpoints(),
            reason: reason.to_string(),
        }
    }

    /// Opens an HTTP/1 connection to the first endpoint that takes it.
    async fn connect(
        &self,
    ) -> Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, String), EtcdError> {
        let mut last = String::from("no endpoints given");
        for endpoint in &self.endpoints {
            let stream =
                match tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(endpoint)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        last = format!("{endpoint}: {e}");
                        continue;
                    }
                    Err(_) => {
                        last = format!("{endpoint}: connection timed out");
                        continue;
                    }
                };
            let sender = match &self.tls {
                Some(config) => {
                    let host = endpoint
                        .rsplit_once(':')
                        .map_or(endpoint.as_str(), |(h, _)| h);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let name = rustls::pki_types::ServerName::try_from(host.to_string())
                        .map_err(|e| self.unreachable(format!("{endpoint}: {e}")))?;
                    let connector = tokio_rustls::TlsConnector::from(config.clone());
                    let stream =
                        tokio::time::timeout(CALL_TIMEOUT, connector.connect(name, stream))
                            .await
                            .map_err(|_| {
                                self.unreachable(format!("{endpoint}: TLS handshake timed out"))
                            })?
                            .map_err(|e| self.unreachable(format!("{endpoint}: TLS: {e}")))?;
                    handshake(TokioIo::new(stream)).await
                }
                None => handshake(TokioIo::new(stream)).await,
            };
            return Ok((sender.map_err(|e| self.unreachable(e))?, endpoint.clone()));
        }
        Err(self.unreachable(last))
    }

    async fn send(&self, path: &str, body: &Value) -> Result<hyper::Response<Incoming>, EtcdError> {
        let (mut sender, endpoint) = self.connect().await?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let request = Request::post(format!("{scheme}://{endpoint}{path}"))
            .header("host", endpoint)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// One call: its JSON answer, or why it failed.
    async fn call(&self, what: &'static str, path: &str, body: Value) -> Result<Value, EtcdError> {
        let exchange = async {
            let response = self.send(path, &body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if !status.is_success() || value.get("error").is_some() {
                let message = value
                    .get("message")
                    .or_else(|| value.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_string();
                return Err(EtcdError::Refused { what, message });
            }
            Ok(value)
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| self.unreachable(format!("no answer to {what} within {CALL_TIMEOUT:?}")))?
    }

    /// Grants a lease of `ttl`; returns its ID.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let answer = self
            .call(
                "a lease",
                "/v3/lease/grant",
                json!({ "TTL": ttl.as_secs() }),
            )
            .await?;
        Ok(int(&answer["ID"]))
    }

    /// Renews lease `id`; false if it has expired (it is gone, with its keys).
    pub async fn keep_alive(&self, id: i64) -> Result<bool, EtcdError> {
        let answer = self
            .call(
                "a lease renewal",
                "/v3/lease/keepalive",
                json!({ "ID": id.to_string() }),
            )
            .await?;
        Ok(int(&answer["result"]["TTL"]) > 0)
    }

    /// Sets `key` to `value`, bound to `lease` (0: none); returns the store's revision after.
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string() });
        let answer = self.call("a write", "/v3/kv/put", body).await?;
        Ok(int(&answer["header"]["revision"]))
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        let body = json!({ "key": B64.encode(key) });
        self.call("a delete", "/v3/kv/deleterange", body)
            .await
            .map(drop)
    }

    /// Every key under `prefix`, and the revision it was read at.
    pub async fn range(&self, prefix: &str) -> Result<Snapshot, EtcdError> {
        let body = json!({ "key": B64.encode(prefix), "range_end": prefix_end(prefix) });
        let answer = self.call("a read", "/v3/kv/range", body).await?;
        Ok(Snapshot {
            kvs: decode_kvs(&answer),
            revision: int(&answer["header"]["revision"]),
        })
    }

    /// Creates `key` with `value` (bound to `lease`) only if no such key exists, atomically;
    /// returns whether it did. Two hosts racing for one key: exactly one wins.
    pub async fn create(&self, key: &str, value: &[u8], lease: i64) -> Result<bool, EtcdError> {
        let key = B64.encode(key);
        let body = json!({
            "compare": [{ "target": "CREATE", "key": key, "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": B64.encode(value), "lease": lease.to_string() } }],
        });
        let answer = self.call("a transaction", "/v3/kv/txn", body).await?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// Sets `key` to `value` (no lease) only if it has not changed since `mod_revision` (0: it
    /// does not exist), atomically; returns the store's revision after, if it did.
    pub async fn put_if_unchanged(
        &self,
        key: &str,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let key = B64.encode(key);
        let body = json!({
            "compare": [{ "target": "MOD", "key": key, "mod_revision": mod_revision.to_string() }],
            "success": [{ "request_put": { "key": key, "value": B64.encode(value) } }],
        });
        let answer = self.call("a transaction", "/v3/kv/txn", body).await?;
        let succeeded = answer["succeeded"].as_bool().unwrap_or(false);
        Ok(succeeded.then(|| int(&answer["header"]["revision"])))
    }

    /// The changes under `prefix` after `revision`, waiting for the first for at most
    /// `limit` (then none). A watch over the gateway is a stream of JSON objects, one per
    /// batch of events; the first only confirms the watch.
    pub async fn watch(
        &self,
        prefix: &str,
        revision: i64,
        limit: Duration,
    ) -> Result<Vec<Change>, EtcdError> {
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": prefix_end(prefix),
            "start_revision": (revision + 1).to_string(),
        }});
        let response = self.send("/v3/watch", &body).await?;
        let mut body = response.into_body();
        let mut pending = Vec::new();
        let watch = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| self.unreachable(e))?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                let mut stream =
                    serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
                let mut consumed = 0;
                while let Some(Ok(message)) = stream.next() {
                    consumed = stream.byte_offset();
                    let result = &message["result"];
                    if result["compact_revision"]
                        .as_str()
                        .is_some_and(|r| r != "0")
                    {
                        return Err(EtcdError::Refused {
                            what: "a watch",
                            message: "the revision asked for was compacted".into(),
                        });
                    }
                    let changes = decode_changes(result);
                    if !changes.is_empty() {
                        return Ok(changes);
                    }
                }
                pending.drain(..consumed);
            }
            Err(self.unreachable("the watch ended"))
        };
        match tokio::time::timeout(limit, watch).await {
            Ok(result) => result,
            Err(_) => Ok(Vec::new()),
        }
    }
}

/// One change a watch reports: a key set (to `value`) or deleted (`None`), at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub revision: i64,
}

fn decode_changes(result: &Value) -> Vec<Change> {
    let Some(events) = result["events"].as_array() else {
        return Vec::new();
    };
    events
        .iter()
        .map(|event| {
            let kv = &event["kv"];
            let text = |field: &str| {
                B64.decode(kv[field].as_str().unwrap_or(""))
                    .unwrap_or_default()
            };
            let deleted = event["type"].as_str() == Some("DELETE");
            Change {
                key: String::from_utf8_lossy(&text("key")).into_owned(),
                value: (!deleted).then(|| text("value")),
                revision: int(&kv["mod_revision"]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(B64.decode(prefix_end("/vswitch/")).unwrap(), b"/vswitch0");
    }

    #[test]
    fn endpoints_are_taken_with_or_without_a_scheme() {
        let etcd = Etcd::new("http://10.0.0.1:2379/, 10.0.0.2:2379");
        assert_eq!(etcd.endpoints(), "10.0.0.1:2379,10.0.0.2:2379");
    }

    #[test]
    fn watch_events_decode_as_sets_and_deletes() {
        let result = json!({ "events": [
            { "kv": { "key": B64.encode("/a"), "value": B64.encode("1"), "mod_revision": "7" } },
            { "type": "DELETE", "kv": { "key": B64.encode("/b"), "mod_revision": "8" } }
        ]});
        assert_eq!(
            decode_changes(&result),
            vec![
                Change {
                    key: "/a".into(),
                    value: Some(b"1".to_vec()),
                    revision: 7
                },
                Change {
                    key: "/b".into(),
                    value: None,
                    revision: 8
                },
            ]
        );
    }

    #[test]
    fn answers_decode_base64_keys_and_string_integers() {
        let answer = json!({
            "header": { "revision": "42" },
            "kvs": [{ "key": B64.encode("/a"), "value": B64.encode("x"), "create_revision": "3", "mod_revision": "5" }]
        });
        assert_eq!(int(&answer["header"]["revision"]), 42);
        assert_eq!(
            decode_kvs(&answer),
            vec![KeyValue {
                key: "/a".into(),
                value: b"x".to_vec(),
                mod_revision: 5
            }]
        );
    }
}
