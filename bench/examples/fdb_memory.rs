//! Memory the FDB uses per learned entry: fills a table with 1 M entries (the scale
//! target) and reports the growth of this process's resident set, per entry.

use std::time::{Duration, Instant};

use vswitch_bench::mac;
use vswitch_core::fdb::Fdb;
use vswitch_core::ids::{NetworkId, PortId};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm field");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn main() {
    let entries: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let before = resident_bytes();
    let now = Instant::now();
    let mut fdb = Fdb::new(Duration::from_secs(300), u32::MAX);
    for n in 0..entries {
        fdb.learn(now, NetworkId(n % 4), mac(n), PortId(n % 256));
    }
    let after = resident_bytes();
    assert_eq!(fdb.len(), entries as usize);
    println!(
        "{{\"entries\": {entries}, \"resident_bytes\": {}, \"bytes_per_entry\": {:.1}}}",
        after - before,
        (after - before) as f64 / f64::from(entries)
    );
}
