//! # vigil-sim — the deterministic simulator
//!
//! Many nodes' real [`vigil::node::Node`]s in one process: virtual time, one virtual
//! network per link carrying the real encoded frames, faults as values
//! ([`Fault`]), and a checker of the spec's safety properties after every event
//! ([`check::Checker`]). The same seed and code give the same trace, byte for byte
//! ([`run::Outcome::trace_hash`]).
//!
//! ```
//! use vigil_sim::{run, Scenario, Options};
//! let sc = Scenario::from_toml(r#"
//!     name = "majority split"
//!     nodes = 5
//!     steps = [ { at_ms = 0, fault = "partition", sides = [[0, 1], [2, 3, 4]] } ]
//!     [expect]
//!     authority = [2, 3, 4]
//!     fenced = [0, 1]
//! "#).unwrap();
//! let out = run(&sc, Options::default());
//! assert!(out.violation.is_none(), "{}", out.violation.unwrap());
//! ```

pub mod avail;
pub mod check;
pub mod fault;
pub mod profile;
pub mod run;
pub mod world;

pub use avail::{Availability, Connectivity};
pub use check::{Checker, Holder, Violation};
pub use fault::{Expect, Fault, Scenario, Step, Tap};
pub use profile::{sim_config, Profile, SimConfig};
pub use run::{
    percentiles, random_drill, random_scenario, run, run_random, FaultKind, Options, Outcome,
};
pub use world::{Timers, World};
