//! The TAP keeper: a small process that holds a duplicate of every queue of every container
//! interface, so the interfaces outlive the daemon. A TAP device lives as long as one fd of it
//! is open; with the keeper holding one, a daemon killed or upgraded leaves each container's
//! `eth0` up with its addresses and routes (frames sent meanwhile wait in the device's queue,
//! up to its length), and the next daemon takes the fds back (`Keeper::list`) and adopts them.
//!
//! Why a process and not persistent TAPs (TUNSETPERSIST): a persistent device with no fd
//! attached reports no carrier, so the container would see its link go down, and it keeps
//! existing after its container's daemon is gone for good. The keeper leaves the carrier on,
//! and it ends by itself once it holds nothing and no daemon is connected; while no daemon is,
//! it drops devices whose namespace went away (checked every few seconds).
//!
//! A TAP fd pins the namespace it was opened in, so a kept device never dies by itself: what
//! tells the keeper its container is gone is the namespace's reference (an `ip netns` file,
//! /proc/PID/ns/net, Docker's sandbox file) no longer naming that namespace, the same test
//! the daemon's watcher makes.
//!
//! Protocol, over a SOCK_SEQPACKET Unix socket (one message per request, fds as SCM_RIGHTS):
//! `PUT key\nPATH\nDEV\nINO` + fds, `DEL key`, `MOVE old\nnew\nPATH\nDEV\nINO` are each
//! answered `OK`; `LIST` is answered with one `KEY key` + fds per device, then `END`.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::fdpass::{self, receive, send};

/// How often a keeper without a daemon looks for devices whose namespace went away.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Why the keeper could not be reached or asked.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("cannot reach the TAP keeper at {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("cannot start the TAP keeper at {}: {source}", path.display())]
    Start { path: PathBuf, source: io::Error },
    #[error("the TAP keeper failed: {0}")]
    Io(#[from] io::Error),
    #[error("the TAP keeper answered {0:?}")]
    Protocol(String),
}

/// What a kept device's life hangs on: the file naming its container's namespace still names
/// that namespace (device and inode of the nsfs entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Life {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

impl Life {
    fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.path.display(), self.dev, self.ino)
    }

    fn decode(text: &str) -> Option<Life> {
        let mut lines = text.split('\n');
        let path = PathBuf::from(lines.next()?);
        let dev = lines.next()?.parse().ok()?;
        let ino = lines.next()?.parse().ok()?;
        Some(Life { path, dev, ino })
    }

    /// A device whose namespace the daemon cannot see (a rootless runtime's): kept until the
    /// daemon lets go of it.
    pub fn until_released() -> Life {
        Life {
            path: PathBuf::new(),
            dev: 0,
            ino: 0,
        }
    }

    /// Whether the path still names the namespace.
    pub fn holds(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.path.as_os_str().is_empty() {
            return true;
        }
        std::fs::metadata(&self.path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// A device the keeper holds: its queues and what its life hangs on.
struct Held {
    fds: Vec<OwnedFd>,
    life: Life,
}

/// The daemon's connection to its keeper.
#[derive(Debug)]
pub struct Keeper {
    conn: Mutex<OwnedFd>,
}

impl Keeper {
    /// Connects to the keeper at `path`, starting one if none answers: `start` is given the
    /// bound, listening socket to hand to the new keeper process (`serve`). The connection is
    /// made before the keeper runs, so it never sees itself without a daemon at birth. A
    /// keeper ending just as it was reached (it held nothing) is replaced.
    pub fn open(
        path: &Path,
        mut start: impl FnMut(OwnedFd) -> io::Result<()>,
    ) -> Result<Keeper, KeeperError> {
        let mut attempts = 3;
        loop {
            let keeper = Keeper::open_once(path, &mut start)?;
            attempts -= 1;
            // Asked once, so a keeper that was ending shows now, not at the first request.
            match keeper.list() {
                Ok(_) => return Ok(keeper),
                Err(e) if attempts == 0 => return Err(e),
                Err(_) => continue,
            }
        }
    }

    fn open_once(
        path: &Path,
        start: &mut impl FnMut(OwnedFd) -> io::Result<()>,
    ) -> Result<Keeper, KeeperError> {
        match fdpass::connect(path) {
            Ok(conn) => return Ok(Keeper::from_conn(conn)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED) | Some(libc::ENOENT)
                ) => {}
            Err(source) => {
                return Err(KeeperError::Connect {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let start_err = |source: io::Error| KeeperError::Start {
            path: path.to_path_buf(),
            source,
        };
        // Nobody listens: a socket left by a keeper that ended.
        let _ = std::fs::remove_file(path);
        let listener = fdpass::listen(path).map_err(start_err)?;
        let conn = fdpass::connect(path).map_err(start_err)?;
        start(listener).map_err(start_err)?;
        Ok(Keeper::from_conn(conn))
    }

    fn from_conn(conn: OwnedFd) -> Keeper {
        Keeper {
            conn: Mutex::new(conn),
        }
    }

    /// Keeps `fds` (a device's queues) under `key` while `life` holds, replacing what was kept
    /// under it.
    pub fn put(&self, key: &str, life: &Life, fds: &[BorrowedFd<'_>]) -> Result<(), KeeperError> {
        self.ask(&format!("PUT {key}\n{}", life.encode()), fds)
    }

    /// Lets go of what is kept under `key` (nothing kept is no error).
    pub fn remove(&self, key: &str) -> Result<(), KeeperError> {
        self.ask(&format!("DEL {key}"), &[])
    }

    /// Files what is kept under `old` under `new`, now living as long as `life` holds.
    pub fn rename(&self, old: &str, new: &str, life: &Life) -> Result<(), KeeperError> {
        self.ask(&format!("MOVE {old}\n{new}\n{}", life.encode()), &[])
    }

    /// Everything kept, by key: duplicates of the kept fds (the keeper keeps its own).
    pub fn list(&self) -> Result<BTreeMap<String, Vec<OwnedFd>>, KeeperError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        send(conn.as_fd(), "LIST", &[])?;
        let mut kept = BTreeMap::new();
        loop {
            let (text, fds) = receive(conn.as_fd())?.ok_or_else(|| {
                KeeperError::Protocol("nothing (it closed the connection)".into())
            })?;
            match text.split_once(' ') {
                Some(("KEY", key)) => {
                    kept.insert(key.to_string(), fds);
                }
                _ if text == "END" => return Ok(kept),
                _ => return Err(KeeperError::Protocol(text)),
            }
        }
    }

    fn ask(&self, request: &str, fds: &[BorrowedFd<'_>]) -> Result<(), KeeperError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        send(conn.as_fd(), request, fds)?;
        match receive(conn.as_fd())? {
            Some((text, _)) if text == "OK" => Ok(()),
            Some((text, _)) => Err(KeeperError::Protocol(text)),
            None => Err(KeeperError::Protocol(
                "nothing (it closed the connection)".into(),
            )),
        }
    }
}

/// The keeper process's life: serves daemons on `listener` until it holds nothing and no
/// daemon is connected. Runs in a session of its own, so a terminal's Ctrl-C meant for the
/// daemon does not reach it.
pub fn serve(listener: OwnedFd) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let _ = nix::unistd::setsid();
    let mut kept: BTreeMap<String, Held> = BTreeMap::new();
    let mut clients: Vec<OwnedFd> = Vec::new();
    loop {
        let timeout = if clients.is_empty() {
            PollTimeout::try_from(SWEEP_INTERVAL).expect("a short timeout")
        } else {
            PollTimeout::NONE
        };
        let (accepting, ready) = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                clients
                    .iter()
                    .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let ready_clients: Vec<bool> = fds[1..].iter().map(ready).collect();
            (ready(&fds[0]), ready_clients)
        };
        let mut closed = Vec::new();
        for (index, is_ready) in ready.iter().enumerate() {
            if *is_ready && !serve_request(clients[index].as_fd(), &mut kept) {
                closed.push(index);
            }
        }
        for index in closed.into_iter().rev() {
            clients.remove(index);
        }
        if accepting {
            if let Ok(conn) = fdpass::accept(listener.as_fd()) {
                clients.push(conn);
            }
        }
        if clients.is_empty() {
            kept.retain(|_, held| held.life.holds());
            // A daemon connecting right now must not find the socket dead: stay for it.
            if kept.is_empty() && !has_pending(listener.as_fd()) {
                return Ok(());
            }
        }
    }
}

/// Whether a connection waits on `listener`.
fn has_pending(listener: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// Answers one request of `client`; false when the client has gone.
fn serve_request(client: BorrowedFd<'_>, kept: &mut BTreeMap<String, Held>) -> bool {
    let Ok(Some((text, fds))) = receive(client) else {
        return false;
    };
    let (verb, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    let answered = match verb {
        "PUT" => match rest
            .split_once('\n')
            .and_then(|(k, l)| Some((k, Life::decode(l)?)))
        {
            Some((key, life)) => {
                kept.insert(key.to_string(), Held { fds, life });
                send(client, "OK", &[])
            }
            None => send(client, "ERR malformed PUT", &[]),
        },
        "DEL" => {
            kept.remove(rest);
            send(client, "OK", &[])
        }
        "MOVE" => {
            let parts = rest.split_once('\n').and_then(|(old, rest)| {
                let (new, life) = rest.split_once('\n')?;
                Some((old, new, Life::decode(life)?))
            });
            match parts {
                Some((old, new, life)) => {
                    if let Some(held) = kept.remove(old) {
                        kept.insert(
                            new.to_string(),
                            Held {
                                fds: held.fds,
                                life,
                            },
                        );
                    }
                    send(client, "OK", &[])
                }
                None => send(client, "ERR malformed MOVE", &[]),
            }
        }
        "LIST" => kept
            .iter()
            .try_for_each(|(key, held)| {
                let fds: Vec<BorrowedFd<'_>> = held.fds.iter().map(AsFd::as_fd).collect();
                send(client, &format!("KEY {key}"), &fds)
            })
            .and_then(|()| send(client, "END", &[])),
        _ => send(client, "ERR unknown request", &[]),
    };
    answered.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keeper served on a thread (the daemon runs it as a process of its own).
    fn keeper(dir: &Path) -> (Keeper, std::thread::JoinHandle<io::Result<()>>) {
        let mut served = None;
        let keeper = Keeper::open(&dir.join("keeper.sock"), |listener| {
            served = Some(std::thread::spawn(move || serve(listener)));
            Ok(())
        })
        .unwrap();
        (keeper, served.unwrap())
    }

    fn life_of(path: &Path) -> Life {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        Life {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    #[test]
    fn a_device_whose_namespace_reference_went_away_is_let_go_once_no_daemon_is_connected() {
        let dir = std::env::temp_dir().join(format!("tap-keeper-life-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        let (keeper, served) = keeper(&dir);
        let (read, _write) = pipe_fds();
        keeper
            .put("app/web", &life_of(&dir.join("ns")), &[read.as_fd()])
            .unwrap();
        assert_eq!(
            keeper.list().unwrap().len(),
            1,
            "kept while the daemon is there"
        );
        drop(keeper);
        // The "namespace" goes: within a sweep, the keeper lets go and, empty, ends.
        std::fs::remove_dir(dir.join("ns")).unwrap();
        served.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn pipe_fds() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe().unwrap()
    }

    #[test]
    fn kept_fds_come_back_under_their_keys_until_removed() {
        let dir = std::env::temp_dir().join(format!("tap-keeper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (keeper, served) = keeper(&dir);
        let (read, write) = pipe_fds();
        let life = life_of(&dir);
        keeper
            .put("app/web", &life, &[read.as_fd(), write.as_fd()])
            .unwrap();
        keeper.rename("app/web", "app/www", &life).unwrap();
        let mut kept = keeper.list().unwrap();
        let fds = kept.remove("app/www").expect("kept under its new key");
        assert!(kept.is_empty());
        // The fds came back as working duplicates: what goes in one pipe end comes out the other.
        nix::unistd::write(&fds[1], b"x").unwrap();
        let mut byte = [0u8; 1];
        nix::unistd::read(&read, &mut byte).unwrap();
        assert_eq!(&byte, b"x");
        // A second daemon finds the same: the keeper kept its own copies.
        let again =
            Keeper::open(&dir.join("keeper.sock"), |_| panic!("one keeper is enough")).unwrap();
        assert_eq!(again.list().unwrap().len(), 1);
        keeper.remove("app/www").unwrap();
        assert!(again.list().unwrap().is_empty());
        // Holding nothing, it ends when its daemons are gone.
        drop((keeper, again));
        served.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
