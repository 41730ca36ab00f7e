//! # vigil-model — an exhaustive check of the view-change protocol
//!
//! A model of vigil's view change (single-decree Paxos per generation among the
//! members of the current view, quorums by [`vigil_fence::has_quorum`] over that
//! view; leases confirmed by a quorum; the settle window; self-fencing on exclusion;
//! seeding), explored breadth-first over every interleaving of node steps and faults
//! (message loss, duplication and reordering, crash and restart, stalls, passing
//! time), checking the safety properties S1–S5 in every reachable state. What is
//! modelled and what is abstracted away is in `docs/fencing.md`, "The model checker".
//!
//! ```
//! let report = vigil_model::check(&vigil_model::Config {
//!     nodes: 2,
//!     max_generation: 2,
//!     max_crashes: 0,
//!     max_depth: 0,
//!     ..vigil_model::Config::default()
//! });
//! assert!(report.violation.is_none());
//! assert!(report.complete);
//! ```

mod proto;

pub use proto::{Action, Ballot, Body, Msg, Property, ViewV, MAX_NODES};
use proto::{Model, State};
pub use vigil_fence::Sabotage;

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

/// What to explore. Every field bounds the state space; the defaults are the CI
/// check of three nodes (`vigil model` with no flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Nodes, 1 to [`MAX_NODES`].
    pub nodes: usize,
    /// Unseeded nodes that seed a first view together (`seed` in the config).
    pub seed: usize,
    /// The lease, in ticks (at least 1).
    pub lease: u8,
    /// No race or seed proposes a generation above this.
    pub max_generation: u8,
    /// Crash-and-restarts in a run, over all nodes.
    pub max_crashes: u8,
    /// Ballot rounds a node uses per incarnation and slot (1: no retries).
    pub max_round: u8,
    /// Messages in flight; a send beyond it is lost.
    pub max_messages: usize,
    /// Stop after this many steps from the initial state (0: no bound, explore
    /// until no new state appears).
    pub max_depth: usize,
    /// Give up (incomplete) after this many distinct states.
    pub max_states: usize,
    /// Links may go down and come back (one action per pair; frames and messages
    /// cross a link only while it is up).
    pub partitions: bool,
    /// Messages may be lost (an action drops any message in flight).
    pub loss: bool,
    /// Messages may be duplicated (an action delivers a message and keeps it in
    /// flight).
    pub duplication: bool,
    /// The run starts with these nodes (bit `i`: node `i`) members of generation 1
    /// (no lease confirmed yet) and the others unseeded, never members (0: a cold
    /// start, every node unseeded).
    pub start_view: u8,
    /// How a seed value is decided and when it reaches clients.
    pub seeding: Seeding,
    /// A deliberate protocol break (see [`Sabotage`]).
    pub sabotage: Option<Sabotage>,
    /// An acceptor that accepts a value which drops itself reports, in `Accepted`,
    /// that its own lease may run a full lease from now (as it reports the members
    /// it last heard). `false` is the fence engine as of this crate's first commit,
    /// which reports only the other dropped members: the checker finds an S1/S4
    /// violation (docs/fencing.md, "The model checker").
    pub dropped_acceptor_reports_itself: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 3,
            seed: 2,
            lease: 1,
            max_generation: 3,
            max_crashes: 2,
            max_round: 1,
            max_messages: 4,
            max_depth: 9,
            max_states: 20_000_000,
            partitions: true,
            loss: true,
            duplication: false,
            start_view: 0b1111,
            seeding: Seeding::AllSettle,
            sabotage: None,
            dropped_acceptor_reports_itself: true,
        }
    }
}

/// The seeding rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seeding {
    /// The old rule: a seed value is decided by `seed` accepts; acceptors check
    /// nothing but its generation; no settle window.
    Count,
    /// The fix as specified in issue 13: decided only when every member of the
    /// group accepts; an acceptor accepts only if the group holds a quorum of its
    /// `last_installed` view and of its `last_accepted` value; a seeded view that
    /// leaves out members of an acceptor's known views reaches clients after a
    /// settle window of one lease. The checker finds S1 broken by a crash that cuts
    /// a settle window short (docs/fencing.md, "The model checker").
    All,
    /// [`Seeding::All`], and the settle window of one lease applies whenever an
    /// acceptor knows an earlier view, whoever the seed leaves out.
    AllSettle,
}

/// A property that failed, and the actions that lead to it from the initial state.
#[derive(Clone, Debug)]
pub struct Violation {
    pub property: Property,
    /// What the state shows, in a line.
    pub detail: String,
    pub trace: Vec<Action>,
}

/// The outcome of [`check`].
#[derive(Clone, Debug)]
pub struct Report {
    /// Distinct states reached (the initial one included).
    pub states: usize,
    /// The deepest level explored (steps from the initial state).
    pub depth: usize,
    /// Every reachable state within the bounds was checked: no state was left at
    /// `max_depth` with successors unexplored, and `max_states` was not reached.
    pub complete: bool,
    pub elapsed: Duration,
    /// The first violation found (on a shortest trace: the search is breadth-first).
    pub violation: Option<Violation>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:?} violated: {}", self.property, self.detail)?;
        writeln!(f, "trace ({} steps):", self.trace.len())?;
        for (k, a) in self.trace.iter().enumerate() {
            writeln!(f, "{:4}. {a}", k + 1)?;
        }
        Ok(())
    }
}

/// A 64-bit multiply-rotate hash over the words the derived `Hash` feeds it; two of
/// them with different keys make a state's 128-bit fingerprint.
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn fingerprint(s: &State) -> u128 {
    let mut a = Mix(0x243f_6a88_85a3_08d3);
    let mut b = Mix(0x1319_8a2e_0370_7344);
    s.hash(&mut a);
    s.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// A fingerprint is already well mixed: the table uses its low bits as they are.
#[derive(Default)]
struct Id(u64);

impl Hasher for Id {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u128 fingerprints are hashed")
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

type Seen = HashSet<u128, BuildHasherDefault<Id>>;

/// Explores every state reachable within the bounds of `cfg`, breadth-first, and
/// checks S1–S5 in each; stops at the first violation.
///
/// States are remembered by a 128-bit fingerprint (as TLC does): two distinct
/// states share one with a probability below 10^-20 at 10^8 states, which would
/// leave one of them unexplored.
///
/// # Panics
/// When `cfg.nodes` is 0 or above [`MAX_NODES`], or `cfg.lease` is 0.
pub fn check(cfg: &Config) -> Report {
    assert!(
        (1..=MAX_NODES).contains(&cfg.nodes),
        "nodes must be 1 to {MAX_NODES}"
    );
    assert!(cfg.lease > 0, "the lease must be at least one tick");
    let started = Instant::now();
    let model = Model::new(cfg);
    let init = model.initial();
    let mut seen = Seen::default();
    // For each state (by number): its parent and the index of the action from it
    // among the parent's enabled actions.
    let mut parent: Vec<(u32, u16)> = vec![(0, u16::MAX)];
    seen.insert(fingerprint(&init));
    let report = |seen: &Seen, depth, complete, violation| Report {
        states: seen.len(),
        depth,
        complete,
        elapsed: started.elapsed(),
        violation,
    };
    if let Some((property, detail)) = model.violation(&init) {
        let v = Violation {
            property,
            detail,
            trace: Vec::new(),
        };
        return report(&seen, 0, true, Some(v));
    }
    let mut frontier = vec![(init, 0u32)];
    let mut depth = 0;
    let mut complete = true;
    let mut actions = Vec::new();
    while !frontier.is_empty() {
        if cfg.max_depth > 0 && depth >= cfg.max_depth {
            complete = false;
            break;
        }
        let mut next = Vec::new();
        for (s, id) in &frontier {
            actions.clear();
            model.actions(s, &mut actions);
            for (k, a) in actions.iter().enumerate() {
                let t = model.step(s, *a);
                if !seen.insert(fingerprint(&t)) {
                    continue;
                }
                let tid = parent.len() as u32;
                parent.push((*id, k as u16));
                if let Some((property, detail)) = model.violation(&t) {
                    let v = Violation {
                        property,
                        detail,
                        trace: trace_to(&model, &parent, tid),
                    };
                    return report(&seen, depth + 1, false, Some(v));
                }
                next.push((t, tid));
                if seen.len() >= cfg.max_states {
                    return report(&seen, depth + 1, false, None);
                }
            }
        }
        if !next.is_empty() {
            depth += 1;
        }
        frontier = next;
    }
    report(&seen, depth, complete, None)
}

/// The actions from the initial state to state `id`, found again by replaying the
/// recorded action indexes.
fn trace_to(model: &Model<'_>, parent: &[(u32, u16)], mut id: u32) -> Vec<Action> {
    let mut path = Vec::new();
    while id != 0 {
        let (p, k) = parent[id as usize];
        path.push(k);
        id = p;
    }
    path.reverse();
    let mut s = model.initial();
    let mut out = Vec::new();
    let mut actions = Vec::new();
    for k in path {
        actions.clear();
        model.actions(&s, &mut actions);
        let a = actions[usize::from(k)];
        s = model.step(&s, a);
        out.push(a);
    }
    out
}
