//! AF_PACKET raw sockets inside a namespace: the source MACs of the frames on an interface, and
//! a hand-built ARP request (optionally VLAN-tagged) whose reply's VLAN is read back.

use std::time::{Duration, Instant};

use super::netns::spawn_in_netns;

/// Source MACs of every frame seen on `ifname` in `netns` (both directions) while `during`
/// runs; captured with an AF_PACKET socket, so nothing outside the namespace is involved.
pub fn capture_sources(netns: &str, ifname: &str, during: impl FnOnce()) -> Vec<[u8; 6]> {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let capture = spawn_in_netns(netns, move || {
        // SAFETY: plain socket syscalls on values owned by this thread; `fd` is closed below.
        unsafe {
            let fd = packet_socket(&ifname);
            ready_tx.send(()).unwrap();
            let mut sources = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(60);
            while stop_rx.try_recv().is_err() && Instant::now() < deadline {
                let n = libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0);
                if n >= 12 {
                    sources.push(buf[6..12].try_into().unwrap());
                }
            }
            libc::close(fd);
            sources
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    during();
    // Let the last frames arrive.
    std::thread::sleep(Duration::from_millis(300));
    stop_tx.send(()).unwrap();
    capture.join().unwrap()
}

/// Sends each of `frames` out of `ifname` in `netns` as it is (an AF_PACKET socket), as fast
/// as the socket takes them; returns how many were sent.
pub fn send_frames(netns: &str, ifname: &str, frames: Vec<Vec<u8>>) -> usize {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    spawn_in_netns(netns, move || {
        // SAFETY: plain socket syscalls on buffers owned by this thread; `fd` is closed below.
        unsafe {
            let fd = packet_socket(&ifname);
            let sent = frames
                .iter()
                .filter(|f| libc::send(fd, f.as_ptr() as *const _, f.len(), 0) == f.len() as isize)
                .count();
            libc::close(fd);
            sent
        }
    })
    .join()
    .unwrap()
}

/// An AF_PACKET socket bound to `ifname` of the calling thread's namespace, with a 100 ms
/// receive timeout. The caller closes it.
///
/// # Safety
/// Plain socket syscalls; the returned fd belongs to the caller.
unsafe fn packet_socket(ifname: &std::ffi::CStr) -> libc::c_int {
    unsafe {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
        assert!(fd >= 0, "AF_PACKET socket");
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = libc::if_nametoindex(ifname.as_ptr()) as i32;
        assert!(addr.sll_ifindex > 0, "interface exists");
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        assert_eq!(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            0
        );
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let tv_len = std::mem::size_of::<libc::timeval>() as u32;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const _ as *const _,
            tv_len,
        );
        fd
    }
}

/// Parses "02:..:.." into bytes.
pub fn mac_bytes(text: &str) -> [u8; 6] {
    let v: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// An ARP request for `target_ip` from `sender_mac`/`sender_ip`, tagged with `vid` if given.
fn arp_request(
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
    vid: Option<u16>,
) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sender_mac);
    if let Some(vid) = vid {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

/// Sends an ARP request for `target_ip` out of `ifname` in `netns` through a raw socket, tagged
/// with `vid` if given, and waits up to 1.5 s for the reply. Returns the VLAN the reply came
/// back on (0 for untagged), or `None` if nobody answered. The kernel strips received tags into
/// packet metadata, read here with PACKET_AUXDATA.
pub fn arp_over_raw_socket(
    netns: &str,
    ifname: &str,
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
    vid: Option<u16>,
) -> Option<u16> {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let request = arp_request(sender_mac, sender_ip, target_ip, vid);
    spawn_in_netns(netns, move || {
        // SAFETY: socket syscalls on buffers owned by this thread; `fd` is closed before return.
        unsafe {
            let fd = packet_socket(&ifname);
            let on: libc::c_int = 1;
            let int_len = std::mem::size_of::<libc::c_int>() as u32;
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                &on as *const _ as *const _,
                int_len,
            );
            let sent = libc::send(fd, request.as_ptr() as *const _, request.len(), 0);
            assert_eq!(sent, request.len() as isize, "raw send");

            let deadline = Instant::now() + Duration::from_millis(1500);
            let mut answer = None;
            let mut buf = [0u8; 2048];
            let mut control = [0u64; 16];
            while answer.is_none() && Instant::now() < deadline {
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr() as *mut _,
                    iov_len: buf.len(),
                };
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr() as *mut _;
                msg.msg_controllen = std::mem::size_of_val(&control);
                let n = libc::recvmsg(fd, &mut msg, 0);
                if n < 42 {
                    continue;
                }
                let frame = &buf[..n as usize];
                let is_reply_from_target = frame[12..14] == [0x08, 0x06]
                    && frame[20..22] == [0, 2]
                    && frame[28..32] == target_ip;
                if !is_reply_from_target {
                    continue;
                }
                let mut vlan = 0;
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_PACKET
                        && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata
                        );
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            vlan = aux.tp_vlan_tci & 0x0fff;
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
                answer = Some(vlan);
            }
            libc::close(fd);
            answer
        }
    })
    .join()
    .unwrap()
}
