//! Benchmarks of vswitch: criterion micro-benchmarks of the switching core (`benches/core.rs`)
//! and policy (`benches/policy.rs`), the FDB's memory per entry (`examples/fdb_memory.rs`), and
//! the end-to-end harnesses beside them (`bench/*.py`). This library only holds the frame
//! builders the benchmarks share.

use vswitch_core::frame::MacAddr;

/// A 60-byte Ethernet frame (minimum size, IPv4 EtherType) from `src` to `dst`.
pub fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// The `n`-th of a family of distinct unicast, locally administered MACs.
pub fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
}
