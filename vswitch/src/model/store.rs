//! Persistence of networks and endpoints in the state directory, so a restarted daemon comes back
//! with the same networks. One JSON file, replaced atomically and durably: the new contents are
//! written to a temporary file and fsynced, renamed over the old file, and the directory is
//! fsynced, so a crash or power loss leaves the old state or the new one, never half of each
//! and never an empty file. A file found damaged anyway is moved aside, named in the log, and
//! the daemon starts empty rather than refusing to start.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::records::State;

const STATE_FILE: &str = "state.json";

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
}

/// What `StateStore::load` found.
#[derive(Debug)]
pub struct Loaded {
    /// The saved state (empty if there was none, or it was damaged).
    pub state: State,
    /// A damaged state file, moved to this path, and why it could not be read.
    pub damaged: Option<(PathBuf, StateError)>,
}

impl StateStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
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

    /// Reads the saved state; a missing file is an empty state. A file that is not valid state
    /// (truncated by a crash of an older version, edited by hand) is renamed to
    /// `state.json.damaged-SECONDS` so nothing is lost, and the state starts empty.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let path = self.dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    state: State::default(),
                    damaged: None,
                })
            }
            Err(e) => return Err(Self::io_err(&path)(e)),
        };
        match serde_json::from_str(&text) {
            Ok(state) => Ok(Loaded {
                state,
                damaged: None,
            }),
            Err(source) => {
                let seconds = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = self.dir.join(format!("{STATE_FILE}.damaged-{seconds}"));
                fs::rename(&path, &aside).map_err(Self::io_err(&aside))?;
                let error = StateError::Corrupt { path, source };
                Ok(Loaded {
                    state: State::default(),
                    damaged: Some((aside, error)),
                })
            }
        }
    }

    /// Replaces the saved state with `state`, durably: when this returns, a power loss keeps it.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(Self::io_err(&self.dir))?;
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(state).expect("state serializes");
        let mut file = fs::File::create(&tmp).map_err(Self::io_err(&tmp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(Self::io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(Self::io_err(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io_err(&self.dir))
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
        assert_eq!(store.load().unwrap().state, State::default());
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
        assert_eq!(store.load().unwrap().state, state);
        assert!(!dir.join("state.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_the_state_starts_empty() {
        let dir =
            std::env::temp_dir().join(format!("vswitch-state-damaged-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let store = StateStore::new(&dir);
        for damage in ["", "{\"networks\": {"] {
            fs::write(dir.join(STATE_FILE), damage).unwrap();
            let loaded = store.load().unwrap();
            assert_eq!(loaded.state, State::default());
            let (aside, error) = loaded.damaged.expect("damage reported");
            assert!(matches!(error, StateError::Corrupt { .. }));
            assert!(error.to_string().contains("state.json"), "{error}");
            assert_eq!(
                fs::read_to_string(&aside).unwrap(),
                damage,
                "damaged copy kept"
            );
            assert!(!dir.join(STATE_FILE).exists());
            fs::remove_file(aside).unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
