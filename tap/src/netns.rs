//! Naming and entering network namespaces. A namespace is given as an `ip netns` name, a path
//! (`/run/netns/x`, `/proc/PID/ns/net`) or `pid:PID`. Work inside it runs on a short-lived
//! thread of its own, because `setns` changes only the calling thread and must never leak into
//! a thread that other code (a runtime's pool) will reuse.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sched::{setns, CloneFlags};

use crate::Error;

/// Where `ip netns add` puts its namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// How the user named a network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetnsRef {
    /// An `ip netns` name, i.e. `/run/netns/NAME`.
    Name(String),
    /// A namespace file such as `/proc/PID/ns/net` or a bind mount of one.
    Path(PathBuf),
    /// The namespace of a process: `pid:PID`.
    Pid(u32),
}

impl NetnsRef {
    /// The namespace file this reference stands for.
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Name(name) => Path::new(NETNS_RUN_DIR).join(name),
            NetnsRef::Path(path) => path.clone(),
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    /// Identity of the namespace the reference points at now, if it still exists.
    pub fn identity(&self) -> Option<NsIdentity> {
        std::fs::metadata(self.path()).ok().map(|m| NsIdentity {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

impl FromStr for NetnsRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidNetns(s.to_string());
        if let Some(pid) = s.strip_prefix("pid:") {
            return pid.parse().map(NetnsRef::Pid).map_err(|_| invalid());
        }
        if s.starts_with('/') {
            return Ok(NetnsRef::Path(PathBuf::from(s)));
        }
        let valid_name = !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if valid_name {
            Ok(NetnsRef::Name(s.to_string()))
        } else {
            Err(invalid())
        }
    }
}

impl fmt::Display for NetnsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsRef::Name(name) => f.write_str(name),
            NetnsRef::Path(path) => write!(f, "{}", path.display()),
            NetnsRef::Pid(pid) => write!(f, "pid:{pid}"),
        }
    }
}

/// Device and inode of a namespace file: equal identities mean the same namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NsIdentity {
    /// Device of the nsfs entry.
    pub dev: u64,
    /// Inode of the namespace.
    pub ino: u64,
}

/// An open network namespace.
#[derive(Debug)]
pub struct Namespace {
    file: File,
    reference: NetnsRef,
    description: String,
    identity: NsIdentity,
}

impl Namespace {
    /// Opens the namespace `reference` names, checking that it is a network namespace.
    pub fn open(reference: &NetnsRef) -> Result<Namespace, Error> {
        let description = reference.to_string();
        let file = File::open(reference.path()).map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied && unprivileged() {
                return Error::ForeignNamespace {
                    netns: description.clone(),
                    source,
                };
            }
            Error::OpenNamespace {
                netns: description.clone(),
                source,
            }
        })?;
        let meta = file.metadata().map_err(|source| Error::OpenNamespace {
            netns: description.clone(),
            source,
        })?;
        let ns = Namespace {
            file,
            reference: reference.clone(),
            description,
            identity: NsIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        };
        // Entering it is the one reliable check that it is a network namespace.
        ns.run(|| ())?;
        Ok(ns)
    }

    /// This process's own network namespace, opened without entering it (an unprivileged
    /// daemon may not enter even its own, which its user namespace does not own).
    pub fn own() -> Result<Namespace, Error> {
        let reference = NetnsRef::Pid(std::process::id());
        let description = reference.to_string();
        let open_err = |source| Error::OpenNamespace {
            netns: description.clone(),
            source,
        };
        let file = File::open(reference.path()).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        Ok(Namespace {
            identity: NsIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            file,
            reference,
            description,
        })
    }

    /// How the user named it.
    pub fn reference(&self) -> &NetnsRef {
        &self.reference
    }

    /// The name to use in messages.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Identity when opened; compare with `NetnsRef::identity` to see whether it is gone.
    pub fn identity(&self) -> NsIdentity {
        self.identity
    }

    /// What this namespace's life hangs on, for the TAP keeper: its reference's file.
    pub fn life(&self) -> crate::keeper::Life {
        crate::keeper::Life {
            path: self.reference.path(),
            dev: self.identity.dev,
            ino: self.identity.ino,
        }
    }

    /// Whether the reference still points at this namespace (the container is still there).
    pub fn is_alive(&self) -> bool {
        self.reference.identity() == Some(self.identity)
    }

    /// Runs `work` on a fresh thread inside this namespace and returns its result.
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> Result<R, Error> {
        let netns = || self.description.clone();
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("netns".into())
                .spawn_scoped(scope, || {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)?;
                    Ok(work())
                })
                .map_err(|source| Error::Thread {
                    netns: netns(),
                    source,
                })?;
            match handle.join() {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(nix::errno::Errno::EINVAL)) => Err(Error::NotNetns { netns: netns() }),
                Ok(Err(nix::errno::Errno::EPERM)) if unprivileged() => {
                    Err(Error::ForeignNamespace {
                        netns: netns(),
                        source: nix::errno::Errno::EPERM.into(),
                    })
                }
                Ok(Err(errno)) => Err(Error::EnterNamespace {
                    netns: netns(),
                    source: errno.into(),
                }),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// Whether this process lacks root's rights over namespaces it did not make.
fn unprivileged() -> bool {
    !nix::unistd::getuid().is_root() || in_user_namespace()
}

/// Whether this process runs in a user namespace other than the initial one (whose map is the
/// identity over every uid): then it is root there at most, whatever uid it has inside.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// Creates a named namespace as `ip netns add NAME` does.
pub async fn create_named(name: &str) -> Result<(), Error> {
    rtnetlink::NetworkNamespace::add(name.to_string())
        .await
        .map_err(|source| Error::NamedNamespace {
            step: "create",
            name: name.to_string(),
            source: Box::new(source),
        })
}

/// Deletes a named namespace as `ip netns del NAME` does.
pub async fn delete_named(name: &str) -> Result<(), Error> {
    rtnetlink::NetworkNamespace::del(name.to_string())
        .await
        .map_err(|source| Error::NamedNamespace {
            step: "delete",
            name: name.to_string(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            "web".parse::<NetnsRef>().unwrap(),
            NetnsRef::Name("web".into())
        );
        assert_eq!(
            "/proc/1/ns/net".parse::<NetnsRef>().unwrap(),
            NetnsRef::Path("/proc/1/ns/net".into())
        );
        assert_eq!("pid:42".parse::<NetnsRef>().unwrap(), NetnsRef::Pid(42));
        assert_eq!(NetnsRef::Pid(42).path(), PathBuf::from("/proc/42/ns/net"));
        assert_eq!(
            NetnsRef::Name("a".into()).path(),
            PathBuf::from("/run/netns/a")
        );
        for bad in ["", "pid:x", "pid:", "a/b", "..", "sp ace"] {
            assert!(bad.parse::<NetnsRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused() {
        let err = Namespace::open(&NetnsRef::Path("/proc/self/status".into())).unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
        let err = Namespace::open(&NetnsRef::Name("vswitch-no-such-ns".into())).unwrap_err();
        assert!(matches!(err, Error::OpenNamespace { .. }), "{err}");
    }

    #[test]
    fn own_namespace_opens_and_is_alive() {
        let ns = Namespace::open(&NetnsRef::Path("/proc/self/ns/net".into())).unwrap();
        assert!(ns.is_alive());
    }
}
