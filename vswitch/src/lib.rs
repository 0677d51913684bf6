//! vswitch, the daemon around the sans-IO core (`vswitch-core`): the data path (`datapath`)
//! carries the core's decisions out on TAP devices and copies frames for captures (`capture`);
//! each network's `gateway` (smoltcp: ARP, ICMP, NDP and router advertisements, DHCP, DNS) is a
//! port of the switch; the control plane (`control`) owns networks and endpoints as the
//! `model` records them, and serves them over the `api` from the `daemon`, with `metrics` for
//! Prometheus. The `vswitch` binary (src/bin/vswitch) is the daemon's CLI.

pub mod adapters;
pub mod api;
pub mod capture;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod gateway;
pub mod metrics;
pub mod model;
pub mod overlay;
pub mod rootless;
pub mod service;
pub mod store;
