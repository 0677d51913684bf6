//! Encrypted overlays: VXLAN inside WireGuard, laid out as the usual VXLAN-over-WireGuard setup
//! does it (a kernel vxlan device on a wg interface), so a wireguard-go or kernel WireGuard host
//! carrying a vxlan device is a peer like any other. A frame becomes IPv4/UDP(4789)/VXLAN/frame
//! between the two hosts' tunnel addresses, sealed with boringtun's WireGuard and sent on the
//! daemon's WireGuard socket; only public keys leave the host (the private key stays in the
//! state directory). On the underlay nothing of the frame is readable.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use vswitch_core::vxlan;

/// WireGuard's usual port.
pub const DEFAULT_PORT: u16 = 51820;
/// What an encrypted overlay takes off the underlay's MTU: outer IPv4 and UDP (28), WireGuard
/// (32), inner IPv4, UDP and VXLAN (36), inner Ethernet (14).
pub const OVERHEAD: u32 = 110;
/// Room for a sealed datagram: a frame at the largest MTU plus every header.
const BUF_LEN: usize = 65_536 + 256;
/// The inner UDP source port (the kernel's vxlan spreads it by flow; one is enough here).
const INNER_SOURCE_PORT: u16 = 49_152;

/// This host's WireGuard keys.
pub struct Keys {
    secret: StaticSecret,
    public: PublicKey,
}

impl Keys {
    /// The keys in `path` (the private key, base64, as `wg genkey` writes it), made and saved
    /// (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> io::Result<Keys> {
        let secret = match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes: [u8; 32] = B64
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{} is not a WireGuard private key", path.display()),
                        )
                    })?;
                StaticSecret::from(bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(io::Error::from)?;
                let secret = StaticSecret::from(bytes);
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                use std::io::Write;
                writeln!(file, "{}", B64.encode(secret.to_bytes()))?;
                secret
            }
            Err(e) => return Err(e),
        };
        let public = PublicKey::from(&secret);
        Ok(Keys { secret, public })
    }

    /// The public key, base64, as `wg pubkey` prints it.
    pub fn public_key(&self) -> String {
        B64.encode(self.public.as_bytes())
    }
}

/// A peer's public key from its base64 text.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    B64.decode(text.trim()).ok()?.try_into().ok()
}

/// One other host over WireGuard.
pub struct Peer {
    tunn: Mutex<Tunn>,
    endpoint: SocketAddr,
    /// Its tunnel address (the inner packets' destination).
    inner: Ipv4Addr,
}

/// The daemon's WireGuard socket and its peers, by underlay address.
pub struct WireGuard {
    socket: UdpSocket,
    keys: Keys,
    /// This host's tunnel address (the inner packets' source).
    inner: Ipv4Addr,
    peers: RwLock<HashMap<IpAddr, Arc<Peer>>>,
    next_index: Mutex<u32>,
}

thread_local! {
    /// Per thread: the inner packet being built, and the sealed datagram.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        std::cell::RefCell::new((Vec::with_capacity(BUF_LEN), vec![0; BUF_LEN]));
}

impl WireGuard {
    /// Binds the WireGuard socket at `address`, with this host's `keys` and tunnel address.
    pub fn bind(address: SocketAddr, keys: Keys, inner: Ipv4Addr) -> io::Result<WireGuard> {
        let socket = UdpSocket::bind(address)?;
        socket.set_nonblocking(true)?;
        Ok(WireGuard {
            socket,
            keys,
            inner,
            peers: RwLock::default(),
            next_index: Mutex::new(1),
        })
    }

    /// This host's public key.
    pub fn public_key(&self) -> String {
        self.keys.public_key()
    }

    /// The socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The descriptor a worker polls.
    pub fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The peer at `endpoint` with `public_key` and tunnel address `inner`, made on first use.
    pub fn peer(&self, endpoint: SocketAddr, public_key: [u8; 32], inner: Ipv4Addr) -> Arc<Peer> {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.get(&endpoint.ip()) {
            return peer.clone();
        }
        let index = {
            let mut next = self
                .next_index
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next
        };
        let tunn = Tunn::new(
            self.keys.secret.clone(),
            PublicKey::from(public_key),
            None,
            Some(25),
            index,
            None,
        )
        .expect("valid keys");
        let peer = Arc::new(Peer {
            tunn: Mutex::new(tunn),
            endpoint,
            inner,
        });
        peers.insert(endpoint.ip(), peer.clone());
        peer
    }

    /// Forgets the peer at `host`.
    pub fn remove_peer(&self, host: IpAddr) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&host);
    }

    /// Seals one frame of `vni` (in parts) for `peer` and sends it; returns the frame's length.
    pub fn send(&self, peer: &Peer, vni: u32, frame: &[&[u8]]) -> io::Result<usize> {
        BUFFERS.with(|buffers| {
            let (inner, sealed) = &mut *buffers.borrow_mut();
            let len = inner_packet(inner, self.inner, peer.inner, vni, frame);
            let mut tunn = peer.tunn.lock().unwrap_or_else(PoisonError::into_inner);
            match tunn.encapsulate(inner, sealed) {
                TunnResult::WriteToNetwork(datagram) => {
                    self.socket.send_to(datagram, peer.endpoint)?;
                    Ok(len)
                }
                // Queued until the handshake (just sent) completes.
                TunnResult::Done => Ok(len),
                TunnResult::Err(e) => Err(io::Error::other(format!("{e:?}"))),
                _ => Ok(len),
            }
        })
    }

    /// Reads one datagram and opens it: the sender's underlay address and the VXLAN payload
    /// (VNI and frame) copied into `out` at `out[..len]`, if it held a frame. Handshakes and
    /// keepalives are answered here; a datagram that does not authenticate is refused.
    pub fn recv(&self, out: &mut [u8]) -> io::Result<Option<(IpAddr, usize)>> {
        // The datagram lands in this thread's sealed-datagram buffer (reused, not zeroed per read).
        BUFFERS.with(|buffers| {
            let datagram = &mut buffers.borrow_mut().1;
            self.open(datagram, out)
        })
    }

    fn open(&self, datagram: &mut [u8], out: &mut [u8]) -> io::Result<Option<(IpAddr, usize)>> {
        let (len, from) = self.socket.recv_from(datagram)?;
        let Some(peer) = self
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&from.ip())
            .cloned()
        else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown peer"));
        };
        let mut tunn = peer.tunn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut opened = None;
        let mut result = tunn.decapsulate(Some(from.ip()), &datagram[..len], out);
        loop {
            match result {
                TunnResult::WriteToNetwork(packet) => {
                    let _ = self.socket.send_to(packet, peer.endpoint);
                    // Packets queued while the handshake ran go out now.
                    result = tunn.decapsulate(None, &[], out);
                    continue;
                }
                TunnResult::WriteToTunnelV4(packet, _) => {
                    let packet_len = packet.len();
                    opened = Some(packet_len);
                }
                TunnResult::Err(e) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")));
                }
                _ => {}
            }
            break;
        }
        let Some(packet_len) = opened else {
            return Ok(None);
        };
        match vxlan_payload(&out[..packet_len]) {
            Some(start) => {
                out.copy_within(start..packet_len, 0);
                Ok(Some((from.ip(), packet_len - start)))
            }
            None => Err(io::Error::new(io::ErrorKind::InvalidData, "not VXLAN")),
        }
    }

    /// Runs every peer's timers (handshakes, keepalives): call every 100-250 ms.
    pub fn tick(&self) {
        let peers: Vec<Arc<Peer>> = self
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut buf = vec![0u8; 256];
        for peer in peers {
            let mut tunn = peer.tunn.lock().unwrap_or_else(PoisonError::into_inner);
            if let TunnResult::WriteToNetwork(packet) = tunn.update_timers(&mut buf) {
                let _ = self.socket.send_to(packet, peer.endpoint);
            }
        }
    }
}

/// Writes IPv4/UDP(4789)/VXLAN(vni)/frame from `src` to `dst` into `out`; returns the frame's
/// length. The UDP checksum is zero, which IPv4 allows and Linux's vxlan accepts.
fn inner_packet(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    vni: u32,
    frame: &[&[u8]],
) -> usize {
    let frame_len: usize = frame.iter().map(|p| p.len()).sum();
    let udp_len = 8 + vxlan::HEADER_LEN + frame_len;
    let total = 20 + udp_len;
    out.clear();
    out.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let checksum = !fold(
        out.chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum(),
    );
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(&INNER_SOURCE_PORT.to_be_bytes());
    out.extend_from_slice(&vxlan::DEFAULT_PORT.to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&vxlan::header(vni));
    for part in frame {
        out.extend_from_slice(part);
    }
    frame_len
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Where the VXLAN header starts in an inner IPv4 packet to UDP port 4789, if it is one.
fn vxlan_payload(packet: &[u8]) -> Option<usize> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != 17 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let udp = packet.get(ihl..ihl + 8)?;
    (u16::from_be_bytes([udp[2], udp[3]]) == vxlan::DEFAULT_PORT).then_some(ihl + 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_packet_is_ipv4_udp_vxlan_and_reads_back() {
        let mut out = Vec::new();
        let frame = [0xabu8; 60];
        let len = inner_packet(
            &mut out,
            Ipv4Addr::new(10, 99, 0, 1),
            Ipv4Addr::new(10, 99, 0, 3),
            42,
            &[&frame[..20], &frame[20..]],
        );
        assert_eq!(len, 60);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&out).unwrap();
        assert_eq!(ip.total_len() as usize, out.len());
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
        let start = vxlan_payload(&out).unwrap();
        assert_eq!(vswitch_core::vxlan::parse(&out[start..]), Ok((42, 8)));
        assert_eq!(&out[start + 8..], &frame[..]);
    }

    #[test]
    fn two_hosts_seal_and_open_each_others_frames() {
        let dir = std::env::temp_dir().join(format!("vswitch-wg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a_keys = Keys::load_or_create(&dir.join("a.key")).unwrap();
        let b_keys = Keys::load_or_create(&dir.join("b.key")).unwrap();
        let again = Keys::load_or_create(&dir.join("a.key")).unwrap();
        assert_eq!(again.public_key(), a_keys.public_key(), "the key is kept");
        let (a_pub, b_pub) = (a_keys.public.to_bytes(), b_keys.public.to_bytes());
        let a = WireGuard::bind(
            "127.0.0.1:0".parse().unwrap(),
            a_keys,
            Ipv4Addr::new(10, 99, 0, 1),
        )
        .unwrap();
        let b = WireGuard::bind(
            "127.0.0.1:0".parse().unwrap(),
            b_keys,
            Ipv4Addr::new(10, 99, 0, 2),
        )
        .unwrap();
        let to_b = a.peer(b.local_addr().unwrap(), b_pub, Ipv4Addr::new(10, 99, 0, 2));
        // Both ends listen on 127.0.0.1: one peer each, told apart by address only in tests of
        // a single pair.
        b.peer(a.local_addr().unwrap(), a_pub, Ipv4Addr::new(10, 99, 0, 1));
        let frame = [7u8; 100];
        a.send(&to_b, 9, &[&frame]).unwrap();
        let mut out = vec![0u8; BUF_LEN];
        let mut got = None;
        for _ in 0..200 {
            for side in [&a, &b] {
                match side.recv(&mut out) {
                    Ok(Some((_, len))) => got = Some(out[..len].to_vec()),
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let got = got.expect("the frame arrives after the handshake");
        assert_eq!(vswitch_core::vxlan::parse(&got), Ok((9, 8)));
        assert_eq!(&got[8..], &frame[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
