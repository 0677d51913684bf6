//! vswitch: a userspace learning Ethernet switch for containers. The sans-IO core (`switch`,
//! `fdb`, `frame`, `reason`) decides; the data path (`dataplane`, `offload`) carries decisions
//! out on TAP devices; the control plane (`control`, `model`, `ipam`, `state`) owns networks and
//! endpoints and serves them (`api`, `daemon`) to the CLI (`cli`, `client`) and `topology` files.

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
