//! Overlay networks across hosts: frames to another host leave as VXLAN (RFC 7348) in UDP
//! datagrams on one ordinary socket, the underlay (no kernel vxlan device, no privilege, so a
//! rootless daemon can take part). Each remote host of an overlay network is a tunnel port of
//! the switch (`Tunnel`), so the core's FDB says which host a MAC lives behind and its flooding
//! is head-end replication; `Underlay` receives for every overlay and says which tunnel port a
//! datagram came in on (by its sender's address and its VNI).

pub mod wireguard;

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, PoisonError, RwLock};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};

use vswitch_core::ids::PortId;
use vswitch_core::reason::{DropCounters, DropReason};
use vswitch_core::vxlan;

/// The daemon's VXLAN socket and which tunnel port each (remote host, VNI) is.
pub struct Underlay {
    socket: UdpSocket,
    routes: RwLock<HashMap<(IpAddr, u32), PortId>>,
    /// Datagrams received, and bytes.
    received: Mutex<(u64, u64)>,
    /// Datagrams dropped before they reached a port, by reason.
    drops: Mutex<DropCounters>,
}

impl Underlay {
    /// Binds the VXLAN socket. Outer packets are sent with "don't fragment": a frame too large
    /// for the underlay fails to send and is counted, rather than fragmented behind our back.
    pub fn bind(address: SocketAddr) -> io::Result<Underlay> {
        let socket = UdpSocket::bind(address)?;
        socket.set_nonblocking(true)?;
        let (level, option) = match address {
            SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
        };
        let value: libc::c_int = libc::IP_PMTUDISC_PROBE;
        // SAFETY: a valid socket, an int option and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        size_buffers(&socket);
        // Datagrams of one sender and size arrive together (UDP GRO): one read for a burst.
        // Without kernel support, one at a time as before.
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::UdpGroSegment, &true);
        Ok(Underlay {
            socket,
            routes: RwLock::default(),
            received: Mutex::default(),
            drops: Mutex::default(),
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Frames of `vni` from `host` come in on `port`.
    pub fn add_route(&self, host: IpAddr, vni: u32, port: PortId) {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((canonical(host), vni), port);
    }

    /// Forgets where frames of `vni` from `host` go.
    pub fn remove_route(&self, host: IpAddr, vni: u32) {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(canonical(host), vni));
    }

    /// The descriptor a worker polls.
    pub fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Reads one datagram, or a burst of them from one sender laid end to end (UDP GRO), into
    /// `buf`: the bytes read, the sender, and the size of each datagram (the last may be
    /// shorter); WouldBlock when there is none.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        let mut iov = [std::io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(i32);
        let msg = recvmsg::<SockaddrStorage>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT,
        )?;
        let len = msg.bytes;
        let mut segment = len;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::UdpGroSegments(size) = cmsg {
                segment = usize::try_from(size).unwrap_or(len).max(1);
            }
        }
        let from = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                    })
            })
            .ok_or_else(|| io::Error::other("a datagram without a sender"))?;
        Ok((len, from, segment.min(len.max(1))))
    }

    /// The tunnel port a received datagram came in on and where its inner frame starts; a
    /// datagram that is no VXLAN frame of a known host and VNI is counted and refused.
    pub fn route(&self, from: SocketAddr, datagram: &[u8]) -> Result<(PortId, usize), DropReason> {
        {
            let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
            received.0 += 1;
            received.1 += datagram.len() as u64;
        }
        let routed = vxlan::parse(datagram).and_then(|(vni, start)| {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            match routes.get(&(canonical(from.ip()), vni)) {
                Some(port) => Ok((*port, start)),
                None => Err(DropReason::UnknownTunnel),
            }
        });
        if let Err(reason) = &routed {
            self.drops
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .count(reason);
        }
        routed
    }

    /// The tunnel port of frames of `vni` from `host` (opened by WireGuard); unknown ones are
    /// counted and refused.
    pub fn port_of(&self, host: IpAddr, vni: u32) -> Option<PortId> {
        let port = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(canonical(host), vni))
            .copied();
        if port.is_none() {
            self.count_drop(&DropReason::UnknownTunnel);
        }
        port
    }

    /// Counts a datagram refused before it reached a port.
    pub fn count_drop(&self, reason: &DropReason) {
        self.drops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(reason);
    }

    /// Counts a datagram received (opened by WireGuard: not through `route`).
    pub fn count_received(&self, len: usize) {
        let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.0 += 1;
        received.1 += len as u64;
    }

    /// Datagrams and bytes received, and drops before a port, by reason.
    pub fn counters(&self) -> (u64, u64, DropCounters) {
        let (packets, bytes) = *self.received.lock().unwrap_or_else(PoisonError::into_inner);
        let drops = *self.drops.lock().unwrap_or_else(PoisonError::into_inner);
        (packets, bytes, drops)
    }

    fn send_to(
        &self,
        header: &[u8],
        frame: &[IoSlice<'_>],
        to: &SockaddrStorage,
    ) -> io::Result<usize> {
        // No allocation per frame: a frame comes in at most three parts (header, tag, rest).
        let mut iov = [IoSlice::new(&[]); 4];
        iov[0] = IoSlice::new(header);
        let parts = frame.len().min(3);
        iov[1..=parts].copy_from_slice(&frame[..parts]);
        let sent = sendmsg(
            self.socket.as_raw_fd(),
            &iov[..=parts],
            &[],
            MsgFlags::MSG_DONTWAIT,
            Some(to),
        )?;
        Ok(sent.saturating_sub(header.len()))
    }
}

/// Socket buffers for bursts: a 64 KB TCP segment leaves as ~45 datagrams, and the default
/// (208 KB) overflows at a few such segments. Beyond `net.core.rmem_max` only with privilege
/// (SO_RCVBUFFORCE); an unprivileged daemon gets what the system allows.
fn size_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

/// Bytes of socket buffer asked for each direction.
const SOCKET_BUFFER: usize = 8 << 20;

/// An IPv4 address as itself even when it arrives mapped into IPv6 (a dual-stack socket).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The way to one remote host for one overlay network: frames written here leave as VXLAN
/// datagrams of its VNI to that host.
pub struct Tunnel {
    underlay: std::sync::Arc<Underlay>,
    remote: SockaddrStorage,
    header: [u8; vxlan::HEADER_LEN],
    /// Sealed with WireGuard (an encrypted overlay): the socket, the peer, the VNI.
    sealed: Option<(
        std::sync::Arc<wireguard::WireGuard>,
        std::sync::Arc<wireguard::Peer>,
        u32,
    )>,
}

impl Tunnel {
    /// A tunnel to `remote` carrying `vni`.
    pub fn new(underlay: std::sync::Arc<Underlay>, remote: SocketAddr, vni: u32) -> Tunnel {
        Tunnel {
            underlay,
            remote: SockaddrStorage::from(remote),
            header: vxlan::header(vni),
            sealed: None,
        }
    }

    /// A tunnel whose frames are sealed with WireGuard for `peer`.
    pub fn sealed(
        underlay: std::sync::Arc<Underlay>,
        remote: SocketAddr,
        vni: u32,
        wireguard: std::sync::Arc<wireguard::WireGuard>,
        peer: std::sync::Arc<wireguard::Peer>,
    ) -> Tunnel {
        let mut tunnel = Tunnel::new(underlay, remote, vni);
        tunnel.sealed = Some((wireguard, peer, vni));
        tunnel
    }

    /// Whether its frames are sealed (each on its own: no GSO batches).
    pub fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// Sends one frame, given in parts; returns the frame bytes sent.
    pub fn send(&self, frame: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.sealed {
            Some((wireguard, peer, vni)) => {
                // No allocation per frame: a frame comes in at most four parts.
                let mut parts: [&[u8]; 4] = [&[]; 4];
                for (slot, part) in parts.iter_mut().zip(frame) {
                    *slot = part;
                }
                wireguard.send(peer, *vni, &parts[..frame.len().min(4)])
            }
            None => self.underlay.send_to(&self.header, frame, &self.remote),
        }
    }

    /// Sends `datagrams`, VXLAN datagrams of `segment` bytes each (the last may be shorter),
    /// laid end to end, in one call: the kernel cuts them apart (UDP GSO), so a 64 KB TCP
    /// segment costs one system call instead of ~45.
    pub fn send_batch(&self, datagrams: &[u8], segment: u16) -> io::Result<usize> {
        let iov = [IoSlice::new(datagrams)];
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        Ok(sendmsg(
            self.underlay.socket.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_DONTWAIT,
            Some(&self.remote),
        )?)
    }

    /// The VXLAN header of this tunnel's frames.
    pub fn header(&self) -> &[u8; vxlan::HEADER_LEN] {
        &self.header
    }

    /// The underlay's descriptor (a tunnel is never read: the underlay is).
    pub fn as_raw_fd(&self) -> RawFd {
        self.underlay.as_raw_fd()
    }
}
