//! vswitch: a userspace learning Ethernet switch for containers. The sans-IO core (`switch`,
//! `fdb`, `frame`, `reason`) decides; the daemon (`dataplane`, `api`, `state`) carries it out.

pub mod fdb;
pub mod frame;
pub mod reason;
pub mod switch;
