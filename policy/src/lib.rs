//! Traffic policy for vswitch, as pure functions: frames and metadata in, verdicts out, no I/O,
//! no clock of its own. The switch core asks it before learning or forwarding a frame.
//! Today: port security (`port_security`), the anti-spoofing check of every frame a container
//! sends.

pub mod port_security;

pub use port_security::{PortSecurity, Violation};
