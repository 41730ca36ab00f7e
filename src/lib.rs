//! # vigil — the membership and majority-fencing kernel of an HA cluster
//!
//! The root crate is what an HA daemon embeds. It composes the sans-IO cores
//! (`vigil-llt`, `vigil-membership`, `vigil-fence`) into one [`node::Node`] state
//! machine, driven by the `vigil` daemon on real sockets and by the simulator in
//! virtual time. [`config::ClusterConfig`] loads and validates the cluster file.

pub mod config;
pub mod files;
pub mod health;
pub mod node;
#[doc(hidden)]
pub mod testing;

pub use config::ClusterConfig;
pub use node::Node;
pub use vigil_llt::types;
