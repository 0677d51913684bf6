//! Copies of traffic: live captures streamed as pcapng, and port mirrors (SPAN), both naming
//! the ports they copy by endpoint or network.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info};

use vswitch_core::ids::PortId;

use super::{Control, ControlError, Inner};
use crate::capture::filter::Filter;
use crate::capture::{write_pcapng, WriterConfig, DEFAULT_SNAPLEN};
use crate::datapath::fanout::{Mirror, Scope};
use crate::model::{check_name, is_target, CaptureRequest, MirrorRecord};

/// A running capture's output: pcapng bytes as they are written.
pub struct CaptureStream {
    /// Its id, for `stop_capture`.
    pub id: u64,
    /// The bytes, in batches of pieces; the stream ends when the capture does.
    pub bytes: mpsc::Receiver<Vec<bytes::Bytes>>,
}

/// Hands memory freed by a capture (up to its share of `CAPTURE_BYTES`) back to the system:
/// glibc keeps freed memory in its arenas otherwise, and the daemon's RSS would stay at its
/// peak after captures end.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A port the way a capture or mirror names it.
struct NamedPort {
    port: PortId,
    name: String,
}

impl Control {
    /// Starts a live capture; its pcapng output streams from the returned receiver until the
    /// count is reached, `stop_capture` is called, or the receiver is dropped.
    pub async fn start_capture(&self, req: CaptureRequest) -> Result<CaptureStream, ControlError> {
        let (ports, both_directions) = {
            let inner = self.inner.lock().await;
            match (&req.port, &req.network) {
                (Some(port), None) => (vec![inner.endpoint_port(port)?], true),
                (None, Some(network)) => (inner.network_ports(network)?, false),
                _ => {
                    return Err(ControlError::Invalid(
                        "capture either one endpoint (--port) or a network (--network)".into(),
                    ))
                }
            }
        };
        if let Some(filter) = &req.filter {
            Filter::compile(filter)?;
        }
        let snaplen = req
            .snaplen
            .unwrap_or(DEFAULT_SNAPLEN)
            .clamp(1, DEFAULT_SNAPLEN);
        let config = WriterConfig {
            interfaces: ports.iter().map(|p| p.name.clone()).collect(),
            snaplen,
            filter: req.filter.clone(),
            count: req.count,
        };
        let scope = Scope {
            ports: ports.iter().map(|p| p.port).collect(),
            both_directions,
        };
        let fanout = self.dataplane.fanout().clone();
        let (id, frames) = fanout.start_capture(scope, req.drops, snaplen)?;
        let stopped = Arc::new(AtomicBool::new(false));
        self.captures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, stopped.clone());
        // Batches of pcapng waiting for the client (charged to the capture's budget).
        let (bytes_tx, bytes) = mpsc::channel(2);
        let spawned = std::thread::Builder::new()
            .name(format!("capture{id}"))
            .spawn(move || {
                let finish = || fanout.stop_capture(id).unwrap_or_default();
                let emit = |b: Vec<bytes::Bytes>| bytes_tx.blocking_send(b).is_ok();
                let (ended, written) = write_pcapng(&config, &frames, &stopped, finish, emit);
                fanout.stop_capture(id);
                drop(frames);
                release_free_memory();
                debug!(capture = id, ?ended, written, "capture ended");
            });
        if let Err(error) = spawned {
            self.dataplane.fanout().stop_capture(id);
            return Err(ControlError::Io {
                what: "start a capture thread",
                error,
            });
        }
        let scope = match (&req.port, &req.network) {
            (Some(port), _) => format!("port {port}"),
            (None, Some(network)) => format!("network {network}"),
            (None, None) => String::new(),
        };
        info!(capture = id, %scope, "capture started");
        Ok(CaptureStream { id, bytes })
    }

    /// Stops a capture: its stream ends with the interface statistics.
    pub fn stop_capture(&self, id: u64) -> Result<(), ControlError> {
        let stopped = self
            .captures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id)
            .ok_or(ControlError::UnknownCapture(id))?;
        stopped.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Stops every capture (the daemon is stopping): their streams end, so that the server's
    /// graceful shutdown does not wait on them.
    pub fn stop_captures(&self) {
        let captures = self
            .captures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for stopped in captures.values() {
            stopped.store(true, Ordering::Relaxed);
        }
    }

    /// Frames captures had to skip (slow readers), all captures so far.
    pub fn capture_skipped(&self) -> u64 {
        self.dataplane.fanout().skipped_total()
    }

    /// Adds a port mirror.
    pub async fn add_mirror(&self, mirror: MirrorRecord) -> Result<MirrorRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        check_name("mirror", &mirror.name)?;
        if inner.mirrors.contains_key(&mirror.name) {
            return Err(ControlError::MirrorExists(mirror.name));
        }
        inner.resolve_mirror(&mirror)?;
        inner.mirrors.insert(mirror.name.clone(), mirror.clone());
        if let Err(e) = self.commit(&inner) {
            inner.mirrors.remove(&mirror.name);
            self.commit(&inner)?;
            return Err(e);
        }
        info!(mirror = %mirror.name, from = %mirror.from, to = %mirror.to, "mirror added");
        Ok(mirror)
    }

    /// Removes a port mirror.
    pub async fn remove_mirror(&self, name: &str) -> Result<MirrorRecord, ControlError> {
        let mut inner = self.inner.lock().await;
        let mirror = inner
            .mirrors
            .remove(name)
            .ok_or_else(|| ControlError::UnknownMirror(name.to_string()))?;
        self.commit(&inner)?;
        info!(mirror = %name, "mirror removed");
        Ok(mirror)
    }

    /// Every port mirror.
    pub async fn mirrors(&self) -> Vec<MirrorRecord> {
        let inner = self.inner.lock().await;
        inner.mirrors.values().cloned().collect()
    }
}

impl Inner {
    /// Finds an endpoint's port by name, `NETWORK/NAME`, or namespace.
    fn endpoint_port(&self, target: &str) -> Result<NamedPort, ControlError> {
        let (network, name) = match target.split_once('/') {
            Some((n, e)) if self.networks.contains_key(n) => (Some(n), e),
            _ => (None, target),
        };
        let matches: Vec<NamedPort> = self
            .networks
            .iter()
            .filter(|(n, _)| network.is_none_or(|want| want == n.as_str()))
            .flat_map(|(_, net)| {
                net.record
                    .endpoints
                    .values()
                    .filter(|e| is_target(name, &e.name, &e.netns))
                    .filter_map(|e| {
                        Some(NamedPort {
                            port: net.ports.get(&e.name)?.port,
                            name: e.name.clone(),
                        })
                    })
            })
            .collect();
        let mut matches = matches.into_iter();
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err(ControlError::UnknownPort(target.to_string())),
            (Some(_), Some(_)) => Err(ControlError::Invalid(format!(
                "endpoint {target} is on several networks: name it NETWORK/{name}"
            ))),
        }
    }

    /// The ports a mirror copies from and to, as they are now.
    pub(super) fn resolve_mirror(&self, mirror: &MirrorRecord) -> Result<Mirror, ControlError> {
        let target = self.endpoint_port(&mirror.to)?;
        let (ports, both_directions) = if self.networks.contains_key(&mirror.from) {
            (self.network_ports(&mirror.from)?, false)
        } else {
            (vec![self.endpoint_port(&mirror.from)?], true)
        };
        let ports: Vec<PortId> = ports
            .into_iter()
            .map(|p| p.port)
            .filter(|p| *p != target.port)
            .collect();
        if ports.is_empty() {
            return Err(ControlError::Invalid(format!(
                "mirror {}: {} would mirror onto itself",
                mirror.name, mirror.to
            )));
        }
        Ok(Mirror {
            name: mirror.name.clone(),
            scope: Scope {
                ports,
                both_directions,
            },
            target: target.port,
        })
    }

    /// Every port of a network: its endpoints, its gateway and the trunks carrying it.
    fn network_ports(&self, network: &str) -> Result<Vec<NamedPort>, ControlError> {
        let net = self.network(network)?;
        let mut ports: Vec<NamedPort> = net
            .ports
            .iter()
            .map(|(name, e)| NamedPort {
                port: e.port,
                name: name.clone(),
            })
            .collect();
        ports.push(NamedPort {
            port: net.gateway.port,
            name: "gateway".into(),
        });
        for (name, trunk) in &self.trunks {
            if trunk.record.carries(network) {
                ports.push(NamedPort {
                    port: trunk.port.port,
                    name: format!("trunk {name}"),
                });
            }
        }
        ports.sort_by_key(|p| p.port);
        Ok(ports)
    }
}
