//! The CLI's side of the control API: one HTTP/1.1 request per connection over the Unix socket.

use std::path::Path;

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::api::ErrorBody;

/// `text` made safe as one segment of a URL path (a namespace path such as /run/netns/x has
/// slashes of its own).
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Sends `method path` with a JSON body and returns the response as it streams (after checking
/// its status: an error is the daemon's message).
pub async fn call_streaming(
    socket: &Path,
    method: Method,
    path: &str,
    body: &impl Serialize,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let response = send(socket, method, path, Some(body)).await?;
    if !response.status().is_success() {
        let bytes = response.into_body().collect().await?.to_bytes();
        return Err(anyhow!(error_message(&bytes)));
    }
    Ok(response)
}

fn error_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
}

async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the vswitch daemon at {} (is `vswitch daemon` running?)",
            socket.display()
        )
    })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body = match body {
        Some(b) => Bytes::from(serde_json::to_vec(b)?),
        None => Bytes::new(),
    };
    let request = Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    Ok(sender.send_request(request).await?)
}

/// Sends `method path` with an optional JSON body; returns the decoded answer, or the daemon's
/// error message as the error.
pub async fn call<T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> anyhow::Result<T> {
    let response = send(socket, method, path, body).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(anyhow!(error_message(&bytes)));
    }
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).context("the daemon sent an answer this client cannot read")
}
