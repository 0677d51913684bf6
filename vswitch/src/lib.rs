//! vswitch: a userspace learning Ethernet switch for containers. The sans-IO core (`switch`,
//! `fdb`, `frame`, `reason`) decides; the data path (`dataplane`, `offload`) carries decisions
//! out on TAP devices; the control plane (`control`, `model`, `ipam`, `state`) owns networks and
//! endpoints and serves them (`api`, `daemon`) to the CLI (`cli`, `client`) and `topology` files.
//! Each network's `gateway` (smoltcp: ARP, ICMP, NDP and router advertisements, DHCP with
//! `leases`, DNS from the `directory`, upstream servers from `resolv`) is a port of the switch.

pub mod api;
pub mod capture;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod gateway;
pub mod metrics;
pub mod model;
