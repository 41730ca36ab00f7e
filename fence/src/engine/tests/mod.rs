//! Unit tests of the fence core, one file per part, each asserting the exact list of
//! outputs a step produces, as the protocol steps are written in `docs/fencing.md`
//! and `docs/membership.md`.
//!
//! The harness drives [`Fence`] through its public verbs: `observe`,
//! `handle_message` with encoded [`Msg`]s, `handle_timeout`, and `poll_output`.
//! Tests also read the timer table (`Fence::timers`) to pin exact deadlines, and
//! the invariant tests in `queue.rs` call internal helpers to show the checks trip.

use super::{Fence, FenceOutput, PeerInfo};
use crate::types::{Durable, FenceConfig, FenceEvent, KnownView, StallAction};
use std::collections::VecDeque;
use std::time::Duration;
use vigil_llt::types::{Generation, Incarnation, Instant, NodeId};
use vigil_membership::{Ballot, Member, Msg, NodeSet, View};

mod acceptor;
mod lease;
mod queue;
mod racer;
mod reach;
mod seeding;
mod witness;

pub(super) const HB: Duration = Duration::from_millis(100);
pub(super) const RACE: Duration = Duration::from_millis(1000);
pub(super) const LEASE: Duration = Duration::from_millis(2000);
pub(super) const INACTIVE: Duration = Duration::from_millis(500);

pub(super) fn n(i: u8) -> NodeId {
    NodeId(i)
}

pub(super) fn ms(t: u64) -> Instant {
    Instant::from_nanos(t * 1_000_000)
}

pub(super) fn set(ids: &[u8]) -> NodeSet {
    ids.iter().map(|i| NodeId(*i)).collect()
}

/// Node `i` runs as incarnation `10 + i` throughout.
pub(super) fn inc(i: u8) -> Incarnation {
    Incarnation(10 + u64::from(i))
}

pub(super) fn member(i: u8) -> Member {
    Member {
        id: n(i),
        incarnation: inc(i),
        ports: 0,
    }
}

/// The view of `ids` at generation `g` (no previous view: the lowest is primary).
pub(super) fn view(g: u64, ids: &[u8]) -> View {
    View::new(
        Generation(g),
        ids.iter().map(|i| member(*i)).collect(),
        None,
    )
}

pub(super) fn ballot(round: u32, node: u8) -> Ballot {
    Ballot {
        round,
        node: n(node),
        incarnation: inc(node),
    }
}

/// Timings chosen so that every deadline in a test is a round number; no drift, so
/// settle and lease ends are exact.
pub(super) fn cfg(nodes: &[u8]) -> FenceConfig {
    FenceConfig {
        nodes: set(nodes),
        seed: nodes.len(),
        race_timeout: RACE,
        lease: LEASE,
        max_drift_ppm: 0,
        heartbeat: HB,
        peer_inactive: INACTIVE,
        self_fence: true,
        stall_report: HB / 2,
        stall_action: StallAction::Fence,
        watchdog: None,
        sabotage: None,
        gather_window: HB * 2,
        weights: crate::Weights::UNIFORM,
        witness: false,
    }
}

/// What a peer looks like to the transport: up, in its incarnation, advertising
/// `generation`, last heard and confirming our frames at `at`.
pub(super) fn peer(i: u8, generation: u64, at: Instant) -> (NodeId, PeerInfo) {
    (
        n(i),
        PeerInfo {
            up: true,
            incarnation: Some(inc(i)),
            generation: Generation(generation),
            last_heard: Some(at),
            confirmed: Some((at, Generation(generation))),
            quiet: false,
        },
    )
}

/// A peer the transport lost.
pub(super) fn down(i: u8) -> (NodeId, PeerInfo) {
    (
        n(i),
        PeerInfo {
            up: false,
            incarnation: Some(inc(i)),
            ..PeerInfo::default()
        },
    )
}

pub(super) fn send(to: u8, msg: Msg) -> FenceOutput {
    FenceOutput::Send { to: n(to), msg }
}

pub(super) fn event(e: FenceEvent) -> FenceOutput {
    FenceOutput::Event(e)
}

pub(super) fn known(g: u64, ids: &[u8]) -> KnownView {
    KnownView {
        generation: Generation(g),
        members: set(ids),
    }
}

/// Everything queued, in order.
pub(super) fn drain(f: &mut Fence) -> Vec<FenceOutput> {
    std::iter::from_fn(|| f.poll_output()).collect()
}

/// Only the messages and persists (reports and catch-ups filtered out), for tests
/// about one exchange.
pub(super) fn without_reach(out: Vec<FenceOutput>) -> Vec<FenceOutput> {
    out.into_iter()
        .filter(|o| {
            !matches!(
                o,
                FenceOutput::Send {
                    msg: Msg::Reach { .. },
                    ..
                }
            )
        })
        .collect()
}

/// Hand `msg` from `from` to `f`, encoded as it travels.
pub(super) fn deliver(f: &mut Fence, now: Instant, from: u8, msg: &Msg) {
    f.handle_message(now, n(from), &msg.encode());
}

/// A node of a fully connected cluster of `ids`, fresh (unseeded, nothing kept).
pub(super) fn fresh(me: u8, ids: &[u8]) -> Fence {
    Fence::new(cfg(ids), n(me), inc(me), ms(0), Durable::default())
}

/// A small in-memory cluster: every node hears every other one, messages arrive at
/// once. Used to bring nodes to a state (a seeded view) that the unit tests then
/// drive by hand.
pub(super) struct Net {
    pub(super) nodes: Vec<Fence>,
    pub(super) ids: Vec<u8>,
    pub(super) now: Instant,
    /// Pairs that cannot hear each other (both ways), lowest ID first.
    pub(super) cuts: std::collections::BTreeSet<(u8, u8)>,
    /// Nodes that crashed: never stepped, heard by nobody.
    pub(super) dead: std::collections::BTreeSet<u8>,
    /// Every event the nodes queued in rounds, with the node's ID.
    pub(super) events: Vec<(u8, FenceEvent)>,
}

impl Net {
    pub(super) fn new(ids: &[u8]) -> Net {
        Net::of(ids.iter().map(|i| fresh(*i, ids)).collect(), ids)
    }

    fn of(nodes: Vec<Fence>, ids: &[u8]) -> Net {
        Net {
            nodes,
            ids: ids.to_vec(),
            now: ms(0),
            cuts: Default::default(),
            dead: Default::default(),
            events: Vec::new(),
        }
    }

    /// Whether `a` and `b` hear each other.
    pub(super) fn linked(&self, a: u8, b: u8) -> bool {
        !self.dead.contains(&a)
            && !self.dead.contains(&b)
            && !self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// Cut `a` from `b`, both ways.
    pub(super) fn cut(&mut self, a: u8, b: u8) {
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// The fresh nodes `nodes` (seed = all of them) and their witness, ID 63.
    pub(super) fn with_witness(nodes: &[u8]) -> Net {
        let mut c = cfg(nodes);
        c.witness = true;
        let mut ids = nodes.to_vec();
        ids.push(crate::WITNESS_ID.0);
        let cores = ids
            .iter()
            .map(|i| Fence::new(c.clone(), n(*i), inc(*i), ms(0), Durable::default()))
            .collect();
        Net::of(cores, &ids)
    }

    /// The core of `id`.
    pub(super) fn node(&self, id: u8) -> &Fence {
        &self.nodes[self.index(n(id)).expect("a node of the net")]
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.ids.iter().position(|i| n(*i) == id)
    }

    /// Every node observes every other one as up at its advertised generation.
    fn observe_all(&mut self) {
        let gens: Vec<u64> = self
            .nodes
            .iter()
            .map(|f| f.advertised_generation().0)
            .collect();
        let ids = self.ids.clone();
        let links: Vec<Vec<bool>> = ids
            .iter()
            .map(|a| ids.iter().map(|b| self.linked(*a, *b)).collect())
            .collect();
        for (k, f) in self.nodes.iter_mut().enumerate() {
            let others: Vec<(NodeId, PeerInfo)> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(j, i)| {
                    if links[k][j] {
                        peer(*i, gens[j], self.now)
                    } else {
                        down(*i)
                    }
                })
                .collect();
            f.observe(others);
        }
    }

    /// One round at `now`: every node steps, and every message sent is delivered
    /// (and answered) until none is left.
    pub(super) fn round(&mut self) {
        self.observe_all();
        let now = self.now;
        let mut wire: VecDeque<(usize, NodeId, Msg)> = VecDeque::new();
        for k in 0..self.nodes.len() {
            if !self.dead.contains(&self.ids[k]) {
                self.nodes[k].handle_timeout(now);
            }
        }
        for _ in 0..10_000 {
            for k in 0..self.nodes.len() {
                let from = n(self.ids[k]);
                while let Some(o) = self.nodes[k].poll_output() {
                    match o {
                        FenceOutput::Send { to, msg } => {
                            if let Some(j) = self.index(to) {
                                if self.linked(self.ids[k], self.ids[j]) {
                                    wire.push_back((j, from, msg));
                                }
                            }
                        }
                        FenceOutput::Event(e) => self.events.push((self.ids[k], e)),
                        FenceOutput::Persist(_) => {}
                    }
                }
            }
            let Some((j, from, msg)) = wire.pop_front() else {
                break;
            };
            self.observe_all();
            self.nodes[j].handle_message(now, from, &msg.encode());
        }
    }

    /// Rounds every heartbeat until `until`.
    pub(super) fn run_until(&mut self, until: Instant) {
        while self.now < until {
            self.round();
            self.now += HB;
        }
        self.now = until;
        self.round();
    }

    /// A cluster of `ids` that seeded generation 1 and handed it to its clients,
    /// with every output drained; the clock at 1 s.
    pub(super) fn seeded(ids: &[u8]) -> Net {
        let mut net = Net::new(ids);
        net.run_until(ms(1000));
        for f in &net.nodes {
            assert_eq!(
                f.client_view().map(|v| v.generation),
                Some(Generation(1)),
                "the harness cluster seeds"
            );
        }
        net
    }

    /// Node `id`, taken out of the cluster to be driven by hand.
    pub(super) fn take(mut self, id: u8) -> Fence {
        let k = self
            .ids
            .iter()
            .position(|i| *i == id)
            .expect("a node of the net");
        self.nodes.swap_remove(k)
    }
}

#[test]
fn the_harness_seeds_a_three_node_cluster() {
    let net = Net::seeded(&[0, 1, 2]);
    for f in &net.nodes {
        assert_eq!(f.installed(), Some(&view(1, &[0, 1, 2])));
        assert!(f.authority_at(net.now));
        assert_eq!(f.status().durable.installed, Some(known(1, &[0, 1, 2])));
    }
}

/// One nanosecond before `t`.
pub(super) fn before(t: Instant) -> Instant {
    Instant::from_nanos(t.as_nanos() - 1)
}
