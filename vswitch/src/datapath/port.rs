//! A port as one worker sees it: the queue it reads and writes (a TAP queue, or the in-memory
//! link to a gateway inside this process), its share of the counters, and how a frame is
//! written out: with its offload header, or cut into wire frames where the port takes none.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::link::LinkEnd;
use crate::overlay::Tunnel;

use vswitch_core::frame::ETH_HEADER_LEN;
use vswitch_core::offload::{Offload, Segmenter, VNET_HDR_LEN};
use vswitch_core::reason::{DropCounters, DropReason};

/// Traffic counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames read from the device.
    pub rx_packets: u64,
    /// Bytes read from the device.
    pub rx_bytes: u64,
    /// Frames written to the device.
    pub tx_packets: u64,
    /// Bytes written to the device.
    pub tx_bytes: u64,
    /// Frames dropped on ingress (by the core) or egress (device refused, too large), by reason.
    pub drops: DropCounters,
}

impl PortCounters {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.drops.merge(&other.drops);
    }
}

/// Where a port's frames come from and go to.
pub(crate) enum PortQueue {
    /// One queue of a TAP device in a container's namespace.
    Tap(Arc<tap::Queue>),
    /// This worker's end of the link to a port inside this process (a network's gateway).
    Gateway(Box<LinkEnd>),
    /// The way to another host of an overlay network (never read: the underlay is).
    Tunnel(Arc<Tunnel>),
}

impl PortQueue {
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PortQueue::Tap(device) => device.recv(buf),
            // Read by the worker without a copy (`Worker::drain_link`).
            PortQueue::Gateway(_) => Err(io::ErrorKind::WouldBlock.into()),
            PortQueue::Tunnel(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        match self {
            PortQueue::Tap(device) => device.send(frame),
            PortQueue::Gateway(end) => end.send(&[IoSlice::new(frame)]),
            PortQueue::Tunnel(tunnel) => tunnel.send(&[IoSlice::new(frame)]),
        }
    }

    fn send_vectored(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            PortQueue::Tap(device) => device.send_vectored(iov),
            PortQueue::Gateway(end) => end.send(iov),
            PortQueue::Tunnel(tunnel) => tunnel.send(iov),
        }
    }

    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            PortQueue::Tap(device) => device.as_raw_fd(),
            PortQueue::Gateway(end) => end.link.switch_fd(),
            PortQueue::Tunnel(tunnel) => tunnel.as_raw_fd(),
        }
    }
}

/// One worker's view of one port: its queue and its share of the counters.
pub(crate) struct PortIo {
    pub queue: PortQueue,
    /// This worker reads from the queue (else it only writes to it).
    pub read: bool,
    /// Frames in both directions carry a virtio_net_hdr.
    pub vnet_hdr: bool,
    /// Largest L3 payload the device takes: larger frames are dropped, never truncated.
    pub mtu: usize,
    pub counters: PortCounters,
    /// Datagrams laid end to end for one GSO send (tunnels only; reused).
    pub batch: Vec<u8>,
}

impl PortIo {
    /// Counts a write; returns the drop if it failed.
    fn count_tx(&mut self, result: io::Result<usize>) -> Option<DropReason> {
        match result {
            Ok(written) => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += written as u64;
                None
            }
            Err(_) => {
                self.counters.drops.count(&DropReason::TxError);
                Some(DropReason::TxError)
            }
        }
    }
}

/// Largest UDP payload of one GSO send (65,535 less the IPv4 and UDP headers), and most
/// datagrams in one (the kernel's UDP_MAX_SEGMENTS).
const MAX_GSO_BYTES: usize = 65_507;
const MAX_GSO_SEGMENTS: usize = 64;

/// Sends a segmented frame's wire frames to another host in as few system calls as UDP GSO
/// allows: each batch holds datagrams of one size, the last maybe shorter.
fn send_through_tunnel<'f>(
    out: &mut PortIo,
    tunnel: &Tunnel,
    frames: impl Iterator<Item = &'f [u8]>,
) -> Option<DropReason> {
    let mut batch = std::mem::take(&mut out.batch);
    let mut dropped = None;
    let mut flush = |out: &mut PortIo, batch: &mut Vec<u8>, segment: usize, count: usize| {
        if count == 0 {
            return;
        }
        match tunnel.send_batch(batch, segment as u16) {
            Ok(sent) => {
                out.counters.tx_packets += count as u64;
                out.counters.tx_bytes += (sent - count * tunnel.header().len()) as u64;
            }
            Err(_) => {
                out.counters.drops.count(&DropReason::TxError);
                dropped = Some(DropReason::TxError);
            }
        }
        batch.clear();
    };
    batch.clear();
    let (mut segment, mut count, mut closed) = (0, 0, false);
    for frame in frames {
        let size = tunnel.header().len() + frame.len();
        if count > 0
            && (closed
                || size > segment
                || count == MAX_GSO_SEGMENTS
                || batch.len() + size > MAX_GSO_BYTES)
        {
            flush(out, &mut batch, segment, count);
            count = 0;
        }
        if count == 0 {
            segment = size;
            closed = false;
        }
        closed |= size < segment;
        batch.extend_from_slice(tunnel.header());
        batch.extend_from_slice(frame);
        count += 1;
    }
    flush(out, &mut batch, segment, count);
    out.batch = batch;
    dropped
}

/// Writes one frame, given as the parts of its egress form, to `out`: with its offload header
/// if the port takes one, else as wire frames (segmented, checksums filled in) if it must.
/// A frame larger than the port's MTU is dropped and counted. Returns the drop, if any.
pub(crate) fn dispatch_frame(
    out: &mut PortIo,
    parts: [&[u8]; 3],
    offload: Offload,
    segmenter: &mut Segmenter,
) -> Option<DropReason> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let l2_len = ETH_HEADER_LEN + parts[1].len();
    if offload.wire_len(len).saturating_sub(l2_len) > out.mtu {
        out.counters.drops.count(&DropReason::OverMtu);
        return Some(DropReason::OverMtu);
    }
    if out.vnet_hdr {
        let hdr = offload.emit();
        let iov = [
            IoSlice::new(&hdr),
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let result = out.queue.send_vectored(&iov);
        out.count_tx(result.map(|n| n.saturating_sub(VNET_HDR_LEN)))
    } else if offload.is_gso() || offload.needs_csum() {
        let tunnel = match &out.queue {
            PortQueue::Tunnel(tunnel) if offload.is_gso() && !tunnel.is_sealed() => {
                Some(tunnel.clone())
            }
            _ => None,
        };
        match segmenter.wire_frames(&parts, offload) {
            Ok(frames) if tunnel.is_some() => {
                send_through_tunnel(out, tunnel.as_deref().expect("checked"), frames)
            }
            Ok(frames) => {
                let mut dropped = None;
                for frame in frames {
                    let result = out.queue.send(frame);
                    dropped = dropped.or(out.count_tx(result));
                }
                dropped
            }
            Err(reason) => {
                out.counters.drops.count(&reason);
                Some(reason)
            }
        }
    } else {
        let iov = [
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let result = out.queue.send_vectored(&iov);
        out.count_tx(result)
    }
}
