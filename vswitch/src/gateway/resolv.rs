//! resolv.conf, both ways: the daemon's own (where names no network knows are forwarded), and
//! the one written for each `ip netns` namespace (`/etc/netns/NAME/resolv.conf`, which
//! `ip netns exec` bind-mounts over /etc/resolv.conf) so the container's resolver asks its
//! gateways.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::dns;

/// The daemon's resolv.conf.
const SYSTEM_RESOLV_CONF: &str = "/etc/resolv.conf";
/// First line of every resolv.conf vswitch writes: only those are ever replaced or removed.
pub const MARKER: &str = "# written by vswitch: DNS of the container's networks";

/// Upstream servers from the daemon's own resolv.conf (empty if it cannot be read).
pub fn system_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string(SYSTEM_RESOLV_CONF)
        .map(|text| dns::upstreams_from_resolv_conf(&text))
        .unwrap_or_default()
}

/// Where `ip netns exec NAME` finds the namespace's resolv.conf.
pub fn netns_resolv_conf(name: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(name).join("resolv.conf")
}

/// The resolv.conf text for a container whose DNS servers are `servers`.
pub fn render(servers: &[IpAddr]) -> String {
    let mut text = format!("{MARKER}\n");
    // glibc reads at most three nameservers.
    for server in servers.iter().take(3) {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

/// Writes (or, with no servers, removes) the resolv.conf of namespace `name`, unless a file
/// that vswitch did not write is there. Returns the text written.
pub fn update(name: &str, servers: &[IpAddr]) -> std::io::Result<Option<String>> {
    let path = netns_resolv_conf(name);
    match std::fs::read_to_string(&path) {
        Ok(existing) if !existing.starts_with(MARKER) => return Ok(None),
        _ => {}
    }
    let dir = path.parent().expect("path has a directory");
    if servers.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Only removes the directory if nothing else is in it.
        let _ = std::fs::remove_dir(dir);
        return Ok(None);
    }
    std::fs::create_dir_all(dir)?;
    let text = render(servers);
    std::fs::write(&path, &text)?;
    Ok(Some(text))
}

/// Removes the resolv.conf files vswitch wrote for `ip netns` namespaces that no longer exist
/// (left by a daemon that was killed, or whose containers went while it was down); returns the
/// namespaces cleaned.
pub fn remove_orphans() -> Vec<String> {
    // `ip netns` names and their files are root's: an unprivileged daemon has none of them.
    if tap::in_user_namespace() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/etc/netns") else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if tap::NetnsRef::Name(name.clone()).identity().is_some() {
            continue;
        }
        let ours = std::fs::read_to_string(netns_resolv_conf(&name))
            .is_ok_and(|text| text.starts_with(MARKER));
        if ours && update(&name, &[]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_at_most_three_servers_after_the_marker() {
        let servers: Vec<IpAddr> = ["10.0.0.1", "fd00::1", "10.1.0.1", "10.2.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let text = render(&servers);
        assert!(text.starts_with(MARKER));
        assert_eq!(text.matches("nameserver").count(), 3);
        assert!(text.contains("nameserver fd00::1\n"));
    }
}
