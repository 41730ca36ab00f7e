//! `vigil bench`: live benchmarks that print figures (they assert no times).

pub mod common;
pub mod corosync;
pub mod cost;
pub mod failover;
pub mod host;
pub mod jitter;
pub mod roles;
pub mod soak;
pub mod stalls;
pub mod witness;
