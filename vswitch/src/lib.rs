//! vswitch: a userspace learning Ethernet switch for containers. The sans-IO core (`switch`,
//! `fdb`, `frame`, `reason`) decides; the daemon (`dataplane`, `api`, `state`) carries it out.

pub mod api;
pub mod cli;
pub mod client;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod error;
pub mod fdb;
pub mod frame;
pub mod ipam;
pub mod model;
pub mod offload;
pub mod reason;
pub mod state;
pub mod switch;
pub mod topology;
