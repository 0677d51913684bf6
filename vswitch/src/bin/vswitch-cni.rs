//! `vswitch-cni`: the CNI plugin (spec 1.0 and 1.1) that attaches a runtime's containers (root
//! Podman, or any CNI runtime) to vswitch networks through the daemon's API. The runtime runs
//! it with CNI_* variables and the network configuration on standard input; it prints a result
//! or a CNI error object (exit status 1). Its translations are `vswitch::adapters::cni`.
//!
//! Conflist: `{"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "vswitch-cni",
//! "network": NET, "capabilities": {"portMappings": true, "aliases": true}}]}`, plus an optional
//! `"socket"` naming the daemon's control socket.
//!
//! Published ports (`portMappings`): a root runtime's are the daemon's (it listens and forwards,
//! keeping the client's address), unless the conflist chains Podman's `portmap` plugin instead.
//! Rootless Podman forwards them itself (rootlessport, dialling from inside the container's
//! namespace), so there the daemon is not asked to listen on them.

use std::io::Read;
use std::process::ExitCode;

use serde_json::Value;

use vswitch::adapters::cni::{self, code, CniError, Env, NetConf};
use vswitch::api::client::{Client, ClientError};
use vswitch::api::handover::{self, HandoverError};
use vswitch::model::{ConnectRequest, EndpointRecord, NetworkRecord};
use vswitch_core::frame::MacAddr;

fn main() -> ExitCode {
    let mut version = String::new();
    let outcome = (|| {
        let env = Env::read(|name| std::env::var(name).ok())?;
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).map_err(|e| {
            CniError::new(code::DECODE, format!("cannot read the configuration: {e}"))
        })?;
        let conf: NetConf = if input.trim().is_empty() && env.command == "VERSION" {
            NetConf::default()
        } else {
            serde_json::from_str(&input).map_err(|e| {
                CniError::new(
                    code::DECODE,
                    format!("malformed network configuration: {e}"),
                )
            })?
        };
        version = conf.cni_version.clone();
        if env.command != "VERSION" && !cni::SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str())
        {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported (supported: {})",
                    conf.cni_version,
                    cni::SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::new(code::DAEMON, format!("cannot start: {e}")))?;
        runtime.block_on(run(&env, &conf))
    })();
    match outcome {
        Ok(Some(answer)) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let e = e.in_version(&version);
            println!(
                "{}",
                serde_json::to_string(&e).expect("an error object serializes")
            );
            ExitCode::FAILURE
        }
    }
}

/// Carries out the command; `Some` is what to print.
async fn run(env: &Env, conf: &NetConf) -> Result<Option<Value>, CniError> {
    let socket = conf
        .socket
        .clone()
        .unwrap_or_else(vswitch::daemon::default_socket);
    let client = Client::new(socket);
    let network = conf.network();
    match env.command.as_str() {
        "VERSION" => Ok(Some(cni::version_info(&conf.cni_version))),
        "ADD" => add(&client, env, conf).await.map(Some),
        "DEL" => del(&client, env, network).await.map(|()| None),
        "CHECK" => check(&client, env, conf).await.map(|()| None),
        "GC" => gc(&client, conf).await.map(|()| None),
        "STATUS" => match client.inspect_network(network).await {
            Ok(_) => Ok(None),
            Err(e) => Err(CniError::new(code::NOT_AVAILABLE, e.to_string())),
        },
        _ => unreachable!("Env::read refuses other commands"),
    }
}

async fn add(client: &Client, env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    if std::fs::metadata(&env.netns).is_err() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "the container's network namespace {} does not exist",
                env.netns
            ),
        ));
    }
    let mut request = cni::connect_request(conf, env)?;
    let network = client
        .inspect_network(conf.network())
        .await
        .map_err(|e| daemon_error(e, code::INVALID_CONFIG))?
        .network;
    // Inside a user namespace (a rootless runtime's), the daemon cannot reach the container's
    // namespace: make the device here and hand it over.
    let endpoint = if tap::in_user_namespace() {
        // Rootless Podman (its marker in the environment it runs plugins with) holds the host
        // ports and forwards them itself (rootlessport, which dials from inside the container's
        // namespace): the daemon must not listen on them too.
        if std::env::var_os("_CONTAINERS_ROOTLESS_UID").is_some() {
            request.publish.clear();
        }
        hand_over(client, conf, &request, &network).await?
    } else {
        client
            .connect(conf.network(), &request)
            .await
            .map_err(|e| daemon_error(e, code::DAEMON))?
            .endpoint
    };
    Ok(cni::result(conf, &endpoint, &network))
}

/// Makes the device bare in the container's namespace, hands its fd to the daemon with the
/// request, and configures it as the daemon planned it (undoing the connect if that fails).
async fn hand_over(
    client: &Client,
    conf: &NetConf,
    request: &ConnectRequest,
    network: &NetworkRecord,
) -> Result<EndpointRecord, CniError> {
    use std::os::fd::AsFd;
    let failed =
        |what: &str, e: &dyn std::fmt::Display| CniError::new(code::DAEMON, format!("{what}: {e}"));
    let unknown = |e: tap::Error| CniError::new(code::UNKNOWN_CONTAINER, e.to_string());
    let reference: tap::NetnsRef = request.netns.parse().map_err(unknown)?;
    let ns = tap::Namespace::open(&reference).map_err(unknown)?;
    let ifname = request.ifname.clone().unwrap_or_else(|| "eth0".into());
    let bare = tap::TapConfig {
        ifname: ifname.clone(),
        mac: MacAddr::local_from_seed(request.netns.as_bytes()).0,
        mtu: network.mtu,
        addresses: Vec::new(),
        gateways: Vec::new(),
        offload: request.offload.unwrap_or(true),
        queues: 1,
        disable_ipv6: false,
        ipv6_autoconf: false,
        handover: true,
    };
    let device = tap::attach(&ns, &bare).map_err(|e| failed("cannot make the interface", &e))?;
    let fds = device
        .duplicate_fds()
        .map_err(|e| failed("cannot hand the interface over", &e))?;
    let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
    let connected = handover::hand_over(client.socket(), conf.network(), request, &borrowed)
        .map_err(|e| match e {
            HandoverError::Unreachable { .. } => CniError::new(code::TRY_AGAIN, e.to_string()),
            other => CniError::new(code::DAEMON, other.to_string()),
        })?;
    // The daemon holds the device now.
    drop((fds, device));
    let endpoint = connected.endpoint;
    let config = tap::TapConfig {
        ifname,
        ..network.tap_config(&endpoint)
    };
    if let Err(e) = tap::configure(&ns, &config) {
        let _ = client.disconnect(conf.network(), &endpoint.name).await;
        return Err(failed("cannot configure the interface", &e));
    }
    Ok(endpoint)
}

/// Removes the container's endpoint; nothing to remove (network, endpoint or daemon state
/// already gone) is no error.
async fn del(client: &Client, env: &Env, network: &str) -> Result<(), CniError> {
    let endpoints = match client.endpoints(network).await {
        Ok(endpoints) => endpoints,
        Err(ClientError::Daemon { status: 404, .. }) => return Ok(()),
        Err(e) => return Err(daemon_error(e, code::DAEMON)),
    };
    let attached = endpoints
        .iter()
        .find(|e| e.cni_container.as_deref() == Some(env.container_id.as_str()));
    if let Some(endpoint) = attached {
        match client.disconnect(network, &endpoint.name).await {
            Ok(_) | Err(ClientError::Daemon { status: 404, .. }) => {}
            Err(e) => return Err(daemon_error(e, code::DAEMON)),
        }
    }
    Ok(())
}

async fn check(client: &Client, env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let endpoints = client
        .endpoints(conf.network())
        .await
        .map_err(|e| daemon_error(e, code::INVALID_CONFIG))?;
    let endpoint = endpoints
        .iter()
        .find(|e| e.cni_container.as_deref() == Some(env.container_id.as_str()))
        .ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "container {} is not attached to {}",
                    env.container_id,
                    conf.network()
                ),
            )
        })?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(code::INVALID_CONFIG, "CHECK needs the prevResult ADD gave")
    })?;
    match cni::drift(prev, endpoint) {
        Some(what) => Err(CniError::new(code::DRIFT, what)),
        None => Ok(()),
    }
}

/// Removes this network's CNI attachments that the runtime no longer lists.
async fn gc(client: &Client, conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let endpoints = match client.endpoints(conf.network()).await {
        Ok(endpoints) => endpoints,
        Err(ClientError::Daemon { status: 404, .. }) => return Ok(()),
        Err(e) => return Err(daemon_error(e, code::DAEMON)),
    };
    for endpoint in endpoints {
        let Some(container) = &endpoint.cni_container else {
            continue;
        };
        let kept = valid
            .iter()
            .any(|a| &a.container_id == container && a.ifname == endpoint.ifname);
        if !kept {
            match client.disconnect(conf.network(), &endpoint.name).await {
                Ok(_) | Err(ClientError::Daemon { status: 404, .. }) => {}
                Err(e) => return Err(daemon_error(e, code::DAEMON)),
            }
        }
    }
    Ok(())
}

/// A daemon's refusal as a CNI error: unreachable is "try again later", an unknown network or
/// refused input `refused`, the rest the plugin's own code.
fn daemon_error(error: ClientError, refused: u32) -> CniError {
    let code = match &error {
        ClientError::Unreachable { .. } | ClientError::Denied { .. } => code::TRY_AGAIN,
        ClientError::Daemon { status, .. } if *status < 500 => refused,
        _ => code::DAEMON,
    };
    CniError::new(code, error.to_string())
}
