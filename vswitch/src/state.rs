//! Persistence of networks and endpoints in the state directory, so a restarted daemon comes back
//! with the same networks. One JSON file, replaced atomically (write, rename): a crash leaves the
//! old state or the new one, never half of each. The fsync that makes it survive a machine crash
//! is deferred to `flush` (the daemon calls it every second and on exit), because it costs ~30 ms
//! here and would otherwise be most of every connect: a daemon crash loses nothing (the kernel
//! holds the written file), a power loss at most the last second of changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::ControlError;
use crate::model::{MirrorRecord, NetworkRecord, TrunkRecord};

const STATE_FILE: &str = "state.json";

/// Everything the daemon persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Networks by name, each with its endpoints.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Trunk ports by name.
    #[serde(default)]
    pub trunks: BTreeMap<String, TrunkRecord>,
    /// Port mirrors by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, MirrorRecord>,
}

impl State {
    /// The name of the endpoint of `network` that `target` names (its name, or its namespace as
    /// given to connect).
    pub fn endpoint_name(&self, network: &str, target: &str) -> Result<String, ControlError> {
        let record = self
            .networks
            .get(network)
            .ok_or_else(|| ControlError::UnknownNetwork(network.to_string()))?;
        record
            .endpoints
            .values()
            .find(|e| is_target(target, &e.name, &e.netns))
            .map(|e| e.name.clone())
            .ok_or_else(|| ControlError::UnknownEndpoint {
                target: target.to_string(),
                network: network.to_string(),
            })
    }
}

/// Whether `target` names the endpoint called `name` in namespace `netns`.
pub fn is_target(target: &str, name: &str, netns: &str) -> bool {
    name == target
        || target
            .parse::<tap::NetnsRef>()
            .is_ok_and(|n| n.to_string() == netns)
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid state.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The state file in a state directory.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// Written since the last fsync.
    dirty: AtomicBool,
}

impl StateStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore {
            dir: dir.into(),
            dirty: AtomicBool::new(false),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Reads the saved state; a missing file is an empty state.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(Self::io_err(&path)(e)),
        };
        serde_json::from_str(&text).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Replaces the saved state with `state`.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(Self::io_err(&self.dir))?;
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(state).expect("state serializes");
        let mut file = fs::File::create(&tmp).map_err(Self::io_err(&tmp))?;
        file.write_all(text.as_bytes())
            .map_err(Self::io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(Self::io_err(&path))?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes the last saved state durable (file and directory entry), if anything changed.
    pub fn flush(&self) -> Result<(), StateError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let path = self.dir.join(STATE_FILE);
        let sync = |p: &Path| fs::File::open(p).and_then(|f| f.sync_all());
        let result = sync(&path)
            .map_err(Self::io_err(&path))
            .and_then(|()| sync(&self.dir).map_err(Self::io_err(&self.dir)));
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{plan_network, NetworkCreate};

    #[test]
    fn save_then_load_round_trips() {
        let dir = std::env::temp_dir().join(format!("vswitch-state-test-{}", std::process::id()));
        let store = StateStore::new(&dir);
        assert_eq!(store.load().unwrap(), State::default());
        let req = NetworkCreate {
            name: "app".into(),
            subnets: vec!["10.9.0.0/24".into()],
            ..Default::default()
        };
        let mut state = State::default();
        state
            .networks
            .insert("app".into(), plan_network(&req, &state.networks).unwrap());
        store.save(&state).unwrap();
        store.flush().unwrap();
        assert_eq!(store.load().unwrap(), state);
        fs::write(dir.join(STATE_FILE), "{").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
