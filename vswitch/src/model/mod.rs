//! The control plane's model: the records of networks, endpoints, trunks and mirrors as
//! persisted and as the API shows them (`records`), the pure checks that turn a request into a
//! record (`plan`, overlays in `overlay`, with address management in `ipam` and DHCP lease decisions in `leases`), and
//! where the records are kept (`store`). Nothing here does I/O but the store, and a request
//! that fails a check is refused (`ModelError`) before anything changes.

pub mod error;
pub mod events;
pub mod ipam;
pub mod leases;
pub mod limits;
mod names;
pub mod overlay;
mod plan;
pub mod pools;
pub mod publish;
mod records;
pub mod store;

pub use error::ModelError;
pub use names::{check_name, plan_endpoint_names};
pub use overlay::{OverlayRecord, RemoteEndpoint};
pub use plan::*;
pub use records::*;

#[cfg(test)]
mod tests;
