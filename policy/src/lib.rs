//! Traffic policy for vswitch, as pure functions: frames and metadata in, verdicts out, no I/O,
//! no clock of its own. The switch core asks it before learning or forwarding a frame:
//! - `port_security`: the anti-spoofing check of every frame a container sends;
//! - `rules`, `matcher`, `conntrack`, `engine`: ordered allow/deny/reject rules over endpoint
//!   names and labels, compiled into an index, with connection tracking;
//! - `ratelimit`: token buckets for port limits and storm control;
//! - `reject`: the reset or ICMP error a `reject` rule answers with.

pub mod conntrack;
pub mod engine;
pub mod matcher;
pub mod packet;
pub mod port_security;
pub mod ratelimit;
pub mod reject;
pub mod rules;

pub use engine::{Decision, Engine, Explanation, FlowRow, RuleName, RuleStats};
pub use matcher::Endpoint;
pub use packet::Packet;
pub use port_security::{PortSecurity, Violation};
pub use ratelimit::{Limiter, RateLimit, TokenBucket};
pub use rules::{DefaultAction, Direction, NetworkPolicy, Protocol, Rule, RuleAction, RuleError};
