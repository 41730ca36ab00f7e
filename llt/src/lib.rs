//! # vigil-llt — the low-latency multi-link heartbeat transport
//!
//! Every node heartbeats to every peer on every link; a peer is down only when all
//! of its links are silent, and a peer left with exactly one link is in jeopardy.
//! A cluster's witness ([`WitnessLink`]) is the exception: one link of its own, with
//! its own keys and timers, carries every frame to and from it and no other.
//!
//! The core, [`Llt`], is a sans-IO state machine: it is handed `now` with every input,
//! returns what to send and what happened as [`Output`] values, and says when it next
//! wants to be woken through [`Llt::poll_timeout`]. It never reads a clock, opens a
//! socket or draws from a global RNG. The daemon (feature `drivers`, UDP with socket2
//! and raw Ethernet with pnet) and the simulator drive the same core.
//!
//! ```
//! use std::time::Duration;
//! use vigil_llt::{Llt, LltConfig, LinkSpec, LinkPriority, Output, Event};
//! use vigil_llt::types::{ClusterId, Incarnation, Instant, LinkId, NodeId};
//!
//! let links = vec![LinkSpec { name: "a".into(), priority: LinkPriority::High, broadcast: false }];
//! let cfg = LltConfig::with_defaults(ClusterId(7), vec![NodeId(0), NodeId(1)], links);
//! let t0 = Instant::ZERO;
//! let mut nodes = [
//!     Llt::new(cfg.clone(), NodeId(0), Incarnation(10), t0, 1).unwrap(),
//!     Llt::new(cfg, NodeId(1), Incarnation(20), t0, 2).unwrap(),
//! ];
//!
//! // Drive both nodes for one second of virtual time, delivering every frame at once.
//! let mut now = t0;
//! let mut events = Vec::new();
//! while now < t0 + Duration::from_secs(1) {
//!     for i in 0..2 {
//!         nodes[i].handle_timeout(now);
//!         while let Some(out) = nodes[i].poll_output() {
//!             match out {
//!                 Output::Transmit(tx) => nodes[1 - i].handle_frame(now, tx.link, None, &tx.bytes),
//!                 Output::Event(e) => events.push((i, e)),
//!                 Output::Deliver(_) => {}
//!             }
//!         }
//!     }
//!     now += Duration::from_millis(10);
//! }
//! let up = Event::PeerUp { peer: NodeId(1), incarnation: Incarnation(20) };
//! assert!(events.contains(&(0, up)));
//! assert!(nodes[0].status().peers.iter().any(|p| p.id == NodeId(1) && p.up));
//! ```

pub mod config;
mod core;
mod deadlines;
pub mod stats;
pub mod types;
pub mod wire;

// The IO side: reading the clock and opening sockets is its job, so the core's
// lint bans (clippy.toml) do not apply here.
#[cfg(feature = "drivers")]
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
pub mod driver;

pub use crate::config::{LinkPriority, LinkSpec, LltConfig, WitnessLink};
pub use crate::core::{
    ConfigError, Deliver, Event, GapSummary, KeyRingStatus, LinkState, LinkStatus, Llt, Output,
    PeerLinkStatus, PeerStatus, PeerSummary, SendError, Status, Transmit, GAP_WINDOW,
};
pub use crate::stats::{DropCounts, DropReason, LinkStats, PeerLinkStats};
pub use crate::wire::{FrameKey, KeyId};
