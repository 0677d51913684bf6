//! Adapters for container runtimes: each speaks one runtime's protocol and translates it onto
//! the control plane's own operations, as the CLI's requests are; nothing in the switch knows
//! about them. `docker` is Docker's remote network driver.

pub mod cni;
pub mod docker;
