//! Where state shared by several hosts lives: etcd (`etcd`), reached through its HTTP gateway,
//! over TLS if asked (`tls`).
//! One host's own state stays in its state file (`model::store`).

pub mod etcd;
pub mod tls;
