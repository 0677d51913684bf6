//! What an unprivileged daemon needs to do a root daemon's work: a user namespace in which it is
//! root, as rootlesskit and Podman make. Containers started for it (`vswitch run`) get their
//! network namespaces inside that user namespace, so the daemon may enter them and create their
//! TAP devices. The daemon stays in the network namespace it was started in: its sockets there
//! are ordinary ones.
//!
//! A small process of its own (the binary run as `vswitch __hold-userns`, its PID in the state
//! directory) holds the user namespace, as Podman's pause process does, so that a restarted
//! daemon joins the same one and finds its containers' namespaces still its own. Entering a user namespace is only allowed to a
//! single-threaded process: this runs before the daemon starts any thread.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::Pid;

/// The argument that makes the binary the process holding the user namespace (`hold`).
pub const HOLDER_ARG: &str = "__hold-userns";
/// File in the state directory with the holder's PID.
pub const HOLDER_PID_FILE: &str = "userns.pid";

/// Why an unprivileged daemon could not get its user namespace.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    /// Threads were started before.
    #[error(
        "only a single-threaded process may enter a user namespace, and this one has {0} threads"
    )]
    Threads(usize),
    /// The kernel refused a new user namespace.
    #[error("cannot create a user namespace ({0}); unprivileged user namespaces may be turned off: check the sysctls user.max_user_namespaces (> 0) and, on Debian and Ubuntu, kernel.unprivileged_userns_clone (1) and kernel.apparmor_restrict_unprivileged_userns (0)")]
    Create(nix::Error),
    /// Mapping the user to root in it failed.
    #[error("cannot map this user to root in its user namespace: writing {file}: {source}")]
    Map {
        /// The file written.
        file: &'static str,
        /// What failed.
        source: io::Error,
    },
    /// The holder could not be started.
    #[error("cannot start the process that holds the user namespace: {0}")]
    Holder(io::Error),
    /// The holder's PID file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    PidFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// Joining the existing user namespace failed.
    #[error("cannot join the user namespace held by process {pid}: {source}")]
    Join {
        /// The holder.
        pid: i32,
        /// What failed.
        source: io::Error,
    },
}

/// The user namespace the daemon is now in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserNamespace {
    /// The process that holds it.
    pub holder: Pid,
    /// Whether it was made now (false: joined, after a restart).
    pub created: bool,
}

/// Puts this process into its user namespace: the one named in `state_dir` if its holder is
/// still there, a new one otherwise, held by `holder` (this binary with `HOLDER_ARG`, which
/// calls `hold`).
pub fn enter(
    state_dir: &Path,
    holder: std::process::Command,
) -> Result<UserNamespace, RootlessError> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        return Err(RootlessError::Threads(threads));
    }
    let pid_file = state_dir.join(HOLDER_PID_FILE);
    if let Some(holder) = live_holder(&pid_file) {
        join(holder)?;
        return Ok(UserNamespace {
            holder,
            created: false,
        });
    }
    let holder = create(holder)?;
    write_pid_file(&pid_file, holder)?;
    Ok(UserNamespace {
        holder,
        created: true,
    })
}

/// Joins the user namespace of process `pid` (for the child that becomes a container of a
/// rootless daemon). Nothing to do if this process is in it already.
pub fn join(pid: Pid) -> Result<(), RootlessError> {
    let join_err = |source| RootlessError::Join {
        pid: pid.as_raw(),
        source,
    };
    let target = File::open(format!("/proc/{pid}/ns/user")).map_err(join_err)?;
    if same_file(&target, "/proc/self/ns/user") {
        return Ok(());
    }
    setns(&target, CloneFlags::CLONE_NEWUSER).map_err(|e| join_err(e.into()))
}

/// The holder named in `pid_file`, if it is alive, ours, and holds a user namespace this user
/// owns (a PID reused by another process is not taken for it).
fn live_holder(pid_file: &Path) -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if !cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == HOLDER_ARG.as_bytes())
    {
        return None;
    }
    let userns = File::open(format!("/proc/{pid}/ns/user")).ok()?;
    (owner_uid(&userns)? == nix::unistd::geteuid().as_raw()).then_some(Pid::from_raw(pid))
}

/// The user who created the user namespace open as `file` (ioctl NS_GET_OWNER_UID).
fn owner_uid(file: &File) -> Option<u32> {
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer, which points at one.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_OWNER_UID, &mut uid) };
    (rc == 0).then_some(uid)
}

fn same_file(file: &File, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Makes a user namespace with this user as root in it, enters it, and starts its holder.
fn create(mut holder: std::process::Command) -> Result<Pid, RootlessError> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(RootlessError::Create)?;
    for (file, text) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ] {
        std::fs::write(file, text).map_err(|source| RootlessError::Map { file, source })?;
    }
    use std::process::Stdio;
    // Its own session, no terminal, none of the daemon's output: it outlives the daemon.
    let child = holder
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(RootlessError::Holder)?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// The holder's life: in a session of its own (no terminal's signals reach it), it waits until
/// it is killed (its user namespace lives as long as it, or a container in it, does).
pub fn hold() -> ! {
    let _ = nix::unistd::setsid();
    loop {
        nix::unistd::pause();
    }
}

fn write_pid_file(path: &Path, pid: Pid) -> Result<(), RootlessError> {
    let pid_err = |source| RootlessError::PidFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(pid_err)?;
    }
    let tmp = path.with_extension(format!("pid.{}", std::process::id()));
    std::fs::write(&tmp, format!("{pid}\n")).map_err(pid_err)?;
    std::fs::rename(&tmp, path).map_err(pid_err)
}
