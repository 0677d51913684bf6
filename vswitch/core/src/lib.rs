//! The sans-IO core of vswitch: `Switch::process(now, in_port, frame)` decides where one frame
//! goes, and nothing here blocks, touches a device or reads a clock. Ports and networks are
//! indices (`ids`); frames are read through views (`frame`); every drop has one reason
//! (`reason`); the MAC table is `fdb`; `trace` builds test frames and explains decisions;
//! `offload` reads virtio_net_hdr metadata and cuts large segments into wire frames; `vxlan`
//! frames them for the overlay. The daemon
//! (`vswitch`) carries the decisions out; fuzzing and criterion build only this crate.

pub mod coalesce;
pub mod fdb;
pub mod frame;
pub mod ids;
pub mod offload;
pub mod reason;
pub mod suppress;
pub mod switch;
pub mod trace;
pub mod vxlan;
