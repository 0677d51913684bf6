//! Persistence of networks and endpoints in the state directory, so a restarted daemon comes back
//! with the same networks. One JSON file, replaced atomically and durably: the new contents are
//! written to a temporary file and fsynced, renamed over the old file, and the directory is
//! fsynced, so a crash or power loss leaves the old state or the new one, never half of each
//! and never an empty file. A file found damaged anyway (by an older version, or by hand) stops
//! the daemon with an error naming it; `--reset-state` moves it aside and starts empty, so
//! nothing is lost and nothing is forgotten silently. One daemon at a time owns a state
//! directory: it holds a lock on `lock` in it (with its PID inside) for its whole life.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::records::State;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or file could not be read or written.
    #[error("state file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Another daemon owns the directory.
    #[error(
        "state directory {} is in use by the vswitch daemon with PID {pid}; give each daemon \
         its own --state-dir",
        dir.display()
    )]
    Locked { dir: PathBuf, pid: String },
    /// The file is not valid state.
    #[error(
        "state file {} is damaged ({error}); start the daemon with --reset-state to keep it \
         aside and start with no networks",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// The state file in a state directory.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// The directory's lock, once taken: released when the store is dropped.
    lock: Option<nix::fcntl::Flock<fs::File>>,
    /// Makes every temporary file's name unique.
    saves: std::sync::atomic::AtomicU64,
}

impl StateStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore {
            dir: dir.into(),
            lock: None,
            saves: Default::default(),
        }
    }

    /// Takes the directory for this process (creating it), or names the daemon that holds it.
    /// Taking it again is a no-op.
    pub fn lock(&mut self) -> Result<(), StateError> {
        use nix::fcntl::{Flock, FlockArg};
        if self.lock.is_some() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir).map_err(Self::io_err(&self.dir))?;
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Self::io_err(&path))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let pid = fs::read_to_string(&path).unwrap_or_default();
                return Err(StateError::Locked {
                    dir: self.dir.clone(),
                    pid: pid.trim().to_string(),
                });
            }
            Err((_, errno)) => return Err(Self::io_err(&path)(errno.into())),
        };
        lock.set_len(0)
            .and_then(|()| write!(lock, "{}", std::process::id()))
            .and_then(|()| lock.sync_all())
            .map_err(Self::io_err(&path))?;
        self.lock = Some(lock);
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |error| StateError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    /// Reads the saved state; a missing file is an empty state, a file that is not valid state
    /// an error.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(Self::io_err(&path)(e)),
        };
        serde_json::from_str(&text).map_err(|error| StateError::Damaged { path, error })
    }

    /// Moves the saved state, if any, aside to `state.json.reset-SECONDS`, so the next load is
    /// empty and nothing is lost; returns where it went.
    pub fn set_aside(&self) -> Result<Option<PathBuf>, StateError> {
        let path = self.dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = self.dir.join(format!("{STATE_FILE}.reset-{seconds}"));
        fs::rename(&path, &aside).map_err(Self::io_err(&aside))?;
        Ok(Some(aside))
    }

    /// Replaces the saved state with `state`, durably: when this returns, a power loss keeps it.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(Self::io_err(&self.dir))?;
        let path = self.dir.join(STATE_FILE);
        let n = self
            .saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{STATE_FILE}.tmp-{}-{n}", std::process::id()));
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
        assert_eq!(store.load().unwrap(), state);
        let leftovers = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0, "no temporary file left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_refused_by_name_and_reset_keeps_it_aside() {
        let dir =
            std::env::temp_dir().join(format!("vswitch-state-damaged-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let store = StateStore::new(&dir);
        assert_eq!(store.set_aside().unwrap(), None);
        for damage in ["", "{\"networks\": {"] {
            fs::write(dir.join(STATE_FILE), damage).unwrap();
            let error = store.load().unwrap_err();
            assert!(matches!(error, StateError::Damaged { .. }));
            let message = error.to_string();
            assert!(
                message.contains("state.json") && message.contains("--reset-state"),
                "{message}"
            );
            let aside = store.set_aside().unwrap().expect("moved aside");
            assert_eq!(
                fs::read_to_string(&aside).unwrap(),
                damage,
                "damaged copy kept"
            );
            assert_eq!(store.load().unwrap(), State::default());
            fs::remove_file(aside).unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_store_at_a_time_owns_a_directory() {
        let dir = std::env::temp_dir().join(format!("vswitch-state-lock-{}", std::process::id()));
        let mut first = StateStore::new(&dir);
        first.lock().unwrap();
        first.lock().unwrap();
        let mut second = StateStore::new(&dir);
        let error = second.lock().unwrap_err().to_string();
        assert!(
            error.contains(&format!("PID {}", std::process::id())),
            "{error}"
        );
        drop(first);
        second.lock().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
