//! The gateway's smoltcp device: frames the switch delivered wait in a bounded queue until the
//! interface polls them; frames the interface emits are collected for the gateway to send.
//! No I/O here: the gateway moves frames between these queues and its link to the switch.
//!
//! The TCP terminator's queues (`FrameQueues::offloaded`) carry bare IP packets of up to 64 KB
//! both ways, as a TAP with TSO does: smoltcp leaves TCP checksums alone (the container's kernel
//! leaves them for the receiver, and the gateway marks them for the receiver to fill in), and
//! every packet it emits has room in front for the Ethernet and virtio headers.

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames waiting for the interface beyond this are dropped (the stack is far behind).
pub const RX_QUEUE_LIMIT: usize = 1024;
/// The largest IP packet: what offloaded queues carry.
pub const MAX_IP_PACKET: usize = 65_535;

/// Frame queues between the gateway and its smoltcp interface.
pub struct FrameQueues {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
    medium: Medium,
    /// Bytes left free in front of each emitted packet.
    headroom: usize,
    /// TCP checksums are neither checked nor computed.
    offloaded: bool,
}

impl FrameQueues {
    /// Queues of Ethernet frames for an interface whose L3 MTU is `mtu`.
    pub fn new(mtu: usize) -> FrameQueues {
        FrameQueues {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
            medium: Medium::Ethernet,
            headroom: 0,
            offloaded: false,
        }
    }

    /// Queues of bare IP packets of up to 64 KB, TCP checksums left to the receiver, each
    /// emitted packet behind `headroom` free bytes.
    pub fn offloaded(headroom: usize) -> FrameQueues {
        FrameQueues {
            medium: Medium::Ip,
            headroom,
            offloaded: true,
            ..FrameQueues::new(MAX_IP_PACKET)
        }
    }

    /// Queues a frame for the interface; false (frame dropped) when the queue is full.
    pub fn push_rx(&mut self, frame: Vec<u8>) -> bool {
        if self.rx.len() >= RX_QUEUE_LIMIT {
            return false;
        }
        self.rx.push_back(frame);
        true
    }

    /// Frames the interface emitted since the last call.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }
}

/// A received frame, handed to smoltcp.
pub struct RxToken(Vec<u8>);

/// Room for one frame to send, behind `headroom` bytes.
pub struct TxToken<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    headroom: usize,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; self.headroom + len];
        let result = f(&mut frame[self.headroom..]);
        self.tx.push(frame);
        result
    }
}

impl phy::Device for FrameQueues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        let tx = TxToken {
            tx: &mut self.tx,
            headroom: self.headroom,
        };
        Some((RxToken(frame), tx))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            tx: &mut self.tx,
            headroom: self.headroom,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = match self.medium {
            Medium::Ethernet => self.mtu + vswitch_core::frame::ETH_HEADER_LEN,
            _ => self.mtu,
        };
        if self.offloaded {
            caps.checksum.tcp = Checksum::None;
        }
        caps
    }
}
