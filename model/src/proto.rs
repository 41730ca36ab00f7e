//! The model of the view-change protocol: node state, messages, actions and the
//! transition function, plus the safety properties as predicates on a state.
//!
//! Time is discrete. Every timer is kept relative to the present (an age since an
//! event, or the ticks left until one), capped at the lease, so the state does not
//! carry a clock and the reachable state space is finite under the bounds of
//! [`Config`](crate::Config).

// Loops run over node IDs, which index several per-node arrays at once.
#![allow(clippy::needless_range_loop)]

use crate::{Config, Seeding};
use std::fmt;
use vigil_fence::{has_quorum, Sabotage};
use vigil_membership::NodeSet;

/// The largest cluster the model holds (arrays are sized for it).
pub const MAX_NODES: usize = 4;

fn set(bits: u8) -> NodeSet {
    NodeSet::from_bits(u64::from(bits))
}

fn bit(id: usize) -> u8 {
    1 << id
}

/// A Paxos ballot: `(round, racer, racer's incarnation)`, ordered in that order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ballot {
    pub round: u8,
    pub node: u8,
    pub inc: u8,
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}.{}", self.round, self.node, self.inc)
    }
}

/// A view: generation, members (IDs with the incarnation each had when it joined)
/// and the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewV {
    pub gen: u8,
    pub ids: u8,
    pub incs: [u8; MAX_NODES],
    pub primary: u8,
}

impl ViewV {
    /// Whether the process `(id, inc)` is a member.
    pub fn contains(&self, id: usize, inc: u8) -> bool {
        self.ids & bit(id) != 0 && self.incs[id] == inc
    }

    /// `View::new`: the primary is the previous primary if the same process is a
    /// member (sticky), else the lowest member that was in `prev`, else the lowest.
    fn new(gen: u8, ids: u8, incs: [u8; MAX_NODES], prev: Option<&ViewV>, lowest: bool) -> ViewV {
        let mut v = ViewV {
            gen,
            ids,
            incs: [0; MAX_NODES],
            primary: 0,
        };
        for i in 0..MAX_NODES {
            if ids & bit(i) != 0 {
                v.incs[i] = incs[i];
            }
        }
        let low = ids.trailing_zeros() as u8;
        v.primary = match prev {
            _ if lowest => low,
            None => low,
            Some(p) => {
                let pp = usize::from(p.primary);
                if v.contains(pp, p.incs[pp]) {
                    p.primary
                } else {
                    (0..MAX_NODES)
                        .find(|i| v.ids & bit(*i) != 0 && p.contains(*i, v.incs[*i]))
                        .map_or(low, |i| i as u8)
                }
            }
        };
        v
    }
}

impl fmt::Display for ViewV {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}{{", self.gen)?;
        let mut first = true;
        for i in 0..MAX_NODES {
            if self.ids & bit(i) != 0 {
                if !first {
                    write!(f, ",")?;
                }
                first = false;
                write!(f, "{i}")?;
                if self.incs[i] > 0 {
                    write!(f, "'{}", self.incs[i])?;
                }
            }
        }
        write!(f, "}}p{}", self.primary)
    }
}

/// A protocol message. `slot` is the generation of the view being replaced (0: the
/// seed slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Body {
    Prepare {
        slot: u8,
        ballot: Ballot,
    },
    Promise {
        slot: u8,
        ballot: Ballot,
        accepted: Option<(Ballot, ViewV)>,
    },
    Accept {
        slot: u8,
        ballot: Ballot,
        value: ViewV,
    },
    /// `lapse`: ticks until the leases this acceptor gave to the members the value
    /// drops have all lapsed; `leaves_out`: (seeding) the value leaves out members
    /// of a view this acceptor knows.
    Accepted {
        slot: u8,
        ballot: Ballot,
        lapse: u8,
        leaves_out: bool,
    },
    /// `settle`: ticks the receiver keeps its clients on the view before.
    Decided {
        view: ViewV,
        settle: u8,
    },
}

/// A message in flight, addressed to one incarnation of its receiver (frames to an
/// earlier incarnation are stale and dropped, as llt's freshness check does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msg {
    pub from: u8,
    pub to: u8,
    pub to_inc: u8,
    pub body: Body,
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from, self.to);
        match self.body {
            Body::Prepare { slot, ballot } => {
                write!(f, "Prepare(slot {slot}, {ballot}) {from}->{to}")
            }
            Body::Promise {
                slot,
                ballot,
                accepted,
            } => {
                write!(f, "Promise(slot {slot}, {ballot}")?;
                if let Some((b, v)) = accepted {
                    write!(f, ", accepted {b} {v}")?;
                }
                write!(f, ") {from}->{to}")
            }
            Body::Accept {
                slot,
                ballot,
                value,
            } => write!(f, "Accept(slot {slot}, {ballot}, {value}) {from}->{to}"),
            Body::Accepted {
                slot,
                ballot,
                lapse,
                leaves_out,
            } => write!(
                f,
                "Accepted(slot {slot}, {ballot}, lapse {lapse}{}) {from}->{to}",
                if leaves_out { ", leaves out" } else { "" }
            ),
            Body::Decided { view, settle } => {
                write!(f, "Decided({view}, settle {settle}) {from}->{to}")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Prepare,
    Accept,
}

/// The race a node runs (as racer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Race {
    slot: u8,
    ballot: Ballot,
    /// Its own proposal, then (accept phase) the value it proposes.
    value: ViewV,
    /// Seeding: the group the race was started with (the prepare quorum under the fix).
    group: u8,
    phase: Phase,
    promises: u8,
    best: Option<(Ballot, ViewV)>,
    accepts: u8,
    lapse: u8,
    leaves_out: bool,
}

/// One node: a process (incarnation) with volatile state, and durable state that
/// outlives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    inc: u8,
    fenced: bool,
    // durable
    highest: u8,
    last_installed: Option<(u8, u8)>,
    last_accepted: Option<(u8, u8)>,
    // volatile
    installed: Option<ViewV>,
    installed_age: u8,
    client: Option<ViewV>,
    /// Ticks until the installed view reaches the clients (while `client` lags).
    settle: u8,
    promised: Ballot,
    accepted: Option<(Ballot, ViewV)>,
    max_round: u8,
    race: Option<Race>,
    /// Age of the last confirmation from each node (`lease`: none valid), and the
    /// generation it was given at.
    confirm_age: [u8; MAX_NODES],
    confirm_gen: [u8; MAX_NODES],
    /// Age of the last frame this node heard from each node (a confirmation either
    /// way or a protocol message).
    heard_age: [u8; MAX_NODES],
}

impl Node {
    fn fresh(inc: u8, lease: u8) -> Node {
        Node {
            inc,
            fenced: false,
            highest: 0,
            last_installed: None,
            last_accepted: None,
            installed: None,
            installed_age: lease,
            client: None,
            settle: 0,
            promised: Ballot::default(),
            accepted: None,
            max_round: 0,
            race: None,
            confirm_age: [lease; MAX_NODES],
            confirm_gen: [0; MAX_NODES],
            heard_age: [lease; MAX_NODES],
        }
    }

    /// Volatile state lost (restart or self-fence), durable kept.
    fn reset(&mut self, inc: u8, lease: u8) {
        let (highest, li, la) = (self.highest, self.last_installed, self.last_accepted);
        *self = Node::fresh(inc, lease);
        self.highest = highest;
        self.last_installed = li;
        self.last_accepted = la;
    }
}

/// A transition of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// One tick of time passes for everybody.
    Tick,
    /// The node crashes and restarts at once: a new incarnation, volatile state lost.
    Restart(u8),
    /// The link between two nodes goes down, or comes back up.
    Toggle { a: u8, b: u8 },
    /// A member starts a race for the next view with this proposal.
    Race { node: u8, value: ViewV },
    /// An unseeded node starts a seed race for this group.
    Seed { node: u8, value: ViewV },
    /// The message is delivered (`keep`: and stays in flight, a duplicate).
    Deliver { msg: Msg, keep: bool },
    /// The message is lost.
    Drop(Msg),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Tick => write!(f, "tick"),
            Action::Restart(n) => write!(f, "node {n} crashes and restarts"),
            Action::Toggle { a, b } => write!(f, "the link {a}-{b} goes down or up"),
            Action::Race { node, value } => write!(f, "node {node} races for {value}"),
            Action::Seed { node, value } => write!(f, "node {node} seeds {value}"),
            Action::Deliver { msg, keep: false } => write!(f, "deliver {msg}"),
            Action::Deliver { msg, keep: true } => write!(f, "deliver a copy of {msg}"),
            Action::Drop(msg) => write!(f, "lose {msg}"),
        }
    }
}

/// A safety property of docs/fencing.md and SPEC section 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// One authority: holders hold one view, or the older holder is a member of
    /// every view decided since.
    S1,
    /// One member set per generation.
    S2,
    /// Installed generations strictly increase per node, across restarts.
    S3,
    /// Excluded means fenced: once a view that excludes a process reached a
    /// client, that process holds no authority.
    S4,
    /// At most one node holds authority as primary.
    S5,
}

/// The whole system: nodes, the network (a multiset, sorted), and ghost state the
/// properties read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    nodes: [Node; MAX_NODES],
    /// Links that are down, one bit per pair (see [`pair`]).
    cut: u8,
    net: Vec<Msg>,
    crashes: u8,
    /// Every view any node installed (ghost).
    installs: Vec<ViewV>,
    /// The last generation each node ID installed in any incarnation (ghost).
    last_gen: [u8; MAX_NODES],
    s3_broken: bool,
}

/// The model: configuration and derived constants.
pub struct Model<'a> {
    cfg: &'a Config,
    n: usize,
}

impl<'a> Model<'a> {
    pub fn new(cfg: &'a Config) -> Model<'a> {
        Model { cfg, n: cfg.nodes }
    }

    /// The initial state: the nodes of `start_view` members of generation 1
    /// (nobody's lease confirmed yet), the others unseeded.
    pub fn initial(&self) -> State {
        let lease = self.cfg.lease;
        let mut s = State {
            nodes: [Node::fresh(0, lease); MAX_NODES],
            cut: 0,
            net: Vec::new(),
            crashes: 0,
            installs: Vec::new(),
            last_gen: [0; MAX_NODES],
            s3_broken: false,
        };
        let members = self.cfg.start_view & (((1u16 << self.n) - 1) as u8);
        if members != 0 {
            let v = ViewV::new(1, members, [0; MAX_NODES], None, false);
            for i in (0..self.n).filter(|i| members & bit(*i) != 0) {
                let nd = &mut s.nodes[i];
                nd.highest = 1;
                nd.last_installed = Some((1, members));
                nd.installed = Some(v);
                nd.client = Some(v);
                s.last_gen[i] = 1;
            }
            s.installs.push(v);
        }
        s
    }

    fn lowest_primary(&self) -> bool {
        self.cfg.sabotage == Some(Sabotage::LowestPrimary)
    }

    /// The quorum of a race among the members `prev` of the view it replaces.
    fn prev_quorum(&self, prev: u8, who: u8) -> bool {
        let (prev, who) = (set(prev), set(who));
        match self.cfg.sabotage {
            Some(Sabotage::AnyHalfWins) => 2 * who.intersection(prev).len() >= prev.len(),
            Some(Sabotage::FewerAccepts) => {
                let mut more = who;
                if let Some(m) = prev.difference(who).min() {
                    more.insert(m);
                }
                has_quorum(prev, more)
            }
            _ => has_quorum(prev, who),
        }
    }

    /// Whether the promises (`accepting == false`) or accepts gathered meet the
    /// race's quorum.
    fn race_quorum(&self, nd: &Node, r: &Race, who: u8, accepting: bool) -> bool {
        if r.slot > 0 {
            let prev = nd.installed.map_or(0, |v| v.ids);
            return self.prev_quorum(prev, who);
        }
        if self.cfg.seeding == Seeding::Count {
            return who.count_ones() as usize >= self.cfg.seed;
        }
        let need = if accepting { r.value.ids } else { r.group };
        need & !who == 0
    }

    /// Whether node `i` currently holds authority: a quorum of its installed view
    /// confirmed it within the lease (at its generation or older), and it has a
    /// client view.
    pub fn authority(&self, nd: &Node) -> bool {
        let (Some(v), Some(_)) = (nd.installed, nd.client) else {
            return false;
        };
        if nd.fenced {
            return false;
        }
        let mut who = 0u8;
        for j in 0..self.n {
            if nd.confirm_age[j] < self.cfg.lease && nd.confirm_gen[j] <= v.gen {
                who |= bit(j);
            }
        }
        has_quorum(set(v.ids), set(who & v.ids))
    }

    fn send(&self, s: &mut State, from: usize, to: usize, body: Body) {
        let msg = Msg {
            from: from as u8,
            to: to as u8,
            to_inc: s.nodes[to].inc,
            body,
        };
        if let Err(at) = s.net.binary_search(&msg) {
            // A full network loses the message (the model's bound on messages in
            // flight; loss is a fault the protocol must survive anyway).
            if s.net.len() < self.cfg.max_messages {
                s.net.insert(at, msg);
            }
        }
    }

    /// Whether node `i` is a live member of its installed view.
    fn member(&self, s: &State, i: usize) -> bool {
        let nd = &s.nodes[i];
        !nd.fenced && nd.installed.is_some_and(|v| v.contains(i, nd.inc))
    }

    /// Every action enabled in `s`, in a fixed order.
    pub fn actions(&self, s: &State, out: &mut Vec<Action>) {
        let lease = self.cfg.lease;
        // Time passes only when some timer still runs or a lease can be confirmed.
        let timers = s.nodes[..self.n].iter().any(|nd| {
            nd.confirm_age.iter().any(|a| *a < lease)
                || nd.heard_age.iter().any(|a| *a < lease)
                || nd.installed_age < lease
                || nd.client != nd.installed
                || nd.race.is_some_and(|r| r.lapse > 0)
        }) || (0..self.n).any(|i| self.member(s, i));
        if timers {
            out.push(Action::Tick);
        }
        if self.cfg.partitions {
            for a in 0..self.n {
                for b in a + 1..self.n {
                    out.push(Action::Toggle {
                        a: a as u8,
                        b: b as u8,
                    });
                }
            }
        }
        for i in 0..self.n {
            if s.crashes < self.cfg.max_crashes {
                out.push(Action::Restart(i as u8));
            }
        }
        for i in 0..self.n {
            let nd = &s.nodes[i];
            if nd.fenced || nd.max_round >= self.cfg.max_round {
                continue;
            }
            match nd.installed {
                Some(v) => {
                    if v.gen >= self.cfg.max_generation {
                        continue;
                    }
                    // The racer of a side is its lowest reachable member.
                    let lower = (0..i).any(|m| {
                        v.ids & bit(m) != 0
                            && s.linked(i, m)
                            && self.member(s, m)
                            && s.nodes[m]
                                .installed
                                .is_some_and(|w| w.contains(m, v.incs[m]))
                    });
                    if lower {
                        continue;
                    }
                    // Candidates: reachable members as the view has them, and
                    // reachable unseeded nodes (joiners) as they are now.
                    let mut incs = v.incs;
                    let mut pool = 0u8;
                    let mut stale = 0u8;
                    for j in 0..self.n {
                        if j == i {
                            continue;
                        }
                        let o = &s.nodes[j];
                        if !s.linked(i, j) {
                            // A report that lags may still show it.
                            stale |= v.ids & bit(j);
                            continue;
                        }
                        if v.contains(j, o.inc) && !o.fenced {
                            pool |= bit(j);
                        } else if o.installed.is_none() && !o.fenced {
                            pool |= bit(j);
                            incs[j] = o.inc;
                        }
                    }
                    // A change is needed when a member is missing or a joiner waits;
                    // every subset that holds the racer stands for some reachability
                    // report (reports lag, and the clique depends on them).
                    let current = (0..self.n).all(|j| {
                        v.ids & bit(j) == 0 || pool & bit(j) != 0 && incs[j] == v.incs[j] || j == i
                    });
                    let joiners = (0..self.n).any(|j| {
                        pool & bit(j) != 0 && (v.ids & bit(j) == 0 || incs[j] != v.incs[j])
                    });
                    if current && !joiners {
                        continue;
                    }
                    for sub in subsets(pool | stale) {
                        let ids = sub | bit(i);
                        let value =
                            ViewV::new(v.gen + 1, ids, incs, Some(&v), self.lowest_primary());
                        if value.ids == v.ids && value.incs == v.incs {
                            continue;
                        }
                        out.push(Action::Race {
                            node: i as u8,
                            value,
                        });
                    }
                }
                None => {
                    if nd.race.is_some() {
                        continue;
                    }
                    // A reachable running cluster: ask to join, never seed apart.
                    if (0..self.n).any(|j| j != i && s.linked(i, j) && self.member(s, j)) {
                        continue;
                    }
                    let mut pool = 0u8;
                    for j in i + 1..self.n {
                        let o = &s.nodes[j];
                        if o.installed.is_none() && !o.fenced && s.linked(i, j) {
                            pool |= bit(j);
                        }
                    }
                    for sub in subsets(pool) {
                        let ids = sub | bit(i);
                        if (ids.count_ones() as usize) < self.cfg.seed {
                            continue;
                        }
                        // The group sees itself whole.
                        let clique = (0..self.n).all(|a| {
                            (0..self.n)
                                .all(|b| ids & bit(a) == 0 || ids & bit(b) == 0 || s.linked(a, b))
                        });
                        if !clique {
                            continue;
                        }
                        let highest = (0..self.n)
                            .filter(|j| ids & bit(*j) != 0)
                            .map(|j| s.nodes[j].highest)
                            .max()
                            .unwrap_or(0);
                        if highest >= self.cfg.max_generation {
                            continue;
                        }
                        let mut incs = [0; MAX_NODES];
                        for (j, inc) in incs.iter_mut().enumerate().take(self.n) {
                            *inc = s.nodes[j].inc;
                        }
                        out.push(Action::Seed {
                            node: i as u8,
                            value: ViewV::new(highest + 1, ids, incs, None, false),
                        });
                    }
                }
            }
        }
        for m in &s.net {
            out.push(Action::Deliver {
                msg: *m,
                keep: false,
            });
            if self.cfg.duplication {
                out.push(Action::Deliver {
                    msg: *m,
                    keep: true,
                });
            }
            if self.cfg.loss {
                out.push(Action::Drop(*m));
            }
        }
    }

    /// The state after `a`.
    pub fn step(&self, s: &State, a: Action) -> State {
        let mut s = s.clone();
        let lease = self.cfg.lease;
        match a {
            Action::Tick => {
                for nd in &mut s.nodes[..self.n] {
                    for a in nd.confirm_age.iter_mut().chain(nd.heard_age.iter_mut()) {
                        *a = (*a + 1).min(lease);
                    }
                    nd.installed_age = (nd.installed_age + 1).min(lease);
                    if let Some(r) = &mut nd.race {
                        r.lapse = r.lapse.saturating_sub(1);
                    }
                    if nd.client != nd.installed {
                        nd.settle = nd.settle.saturating_sub(1);
                        if nd.settle == 0 {
                            nd.client = nd.installed;
                        }
                    }
                }
                // Heartbeats: every node hears the nodes it is linked to, and
                // confirms those that are members of its view, unless it accepted
                // a value for the next generation.
                for by in 0..self.n {
                    self.heartbeat(&mut s, by);
                }
            }
            Action::Restart(i) => {
                let i = usize::from(i);
                s.crashes += 1;
                let inc = s.nodes[i].inc + 1;
                s.nodes[i].reset(inc, lease);
                // Messages to the old incarnation are stale from now on.
                s.net
                    .retain(|m| !(usize::from(m.to) == i && m.to_inc != inc));
            }
            Action::Toggle { a, b } => {
                s.cut ^= pair(usize::from(a), usize::from(b));
            }
            Action::Race { node, value } => {
                let i = usize::from(node);
                let Some(v) = s.nodes[i].installed else {
                    return s;
                };
                self.start_race(&mut s, i, v.gen, v.ids, value);
            }
            Action::Seed { node, value } => {
                let i = usize::from(node);
                self.start_race(&mut s, i, 0, value.ids, value);
            }
            Action::Deliver { msg, keep } => {
                if !keep {
                    if let Ok(at) = s.net.binary_search(&msg) {
                        s.net.remove(at);
                    }
                }
                let to = usize::from(msg.to);
                if s.nodes[to].inc == msg.to_inc
                    && !s.nodes[to].fenced
                    && s.linked(usize::from(msg.from), to)
                {
                    s.nodes[to].heard_age[usize::from(msg.from)] = 0;
                    self.receive(&mut s, usize::from(msg.from), to, msg.body);
                }
            }
            Action::Drop(msg) => {
                if let Ok(at) = s.net.binary_search(&msg) {
                    s.net.remove(at);
                }
            }
        }
        s
    }

    fn start_race(&self, s: &mut State, i: usize, slot: u8, acceptors: u8, value: ViewV) {
        let nd = &mut s.nodes[i];
        nd.max_round = nd.max_round.max(nd.promised.round) + 1;
        let ballot = Ballot {
            round: nd.max_round,
            node: i as u8,
            inc: nd.inc,
        };
        nd.race = Some(Race {
            slot,
            ballot,
            value,
            group: value.ids,
            phase: Phase::Prepare,
            promises: 0,
            best: None,
            accepts: 0,
            lapse: 0,
            leaves_out: false,
        });
        for j in 0..self.n {
            if acceptors & bit(j) != 0 {
                if j == i {
                    self.receive(s, i, i, Body::Prepare { slot, ballot });
                } else {
                    self.send(s, i, j, Body::Prepare { slot, ballot });
                }
            }
        }
    }

    /// Node `by`'s frames of this instant: every node linked to it hears it, and it
    /// confirms the members of its installed view it is linked to (itself
    /// included) unless it accepted a value for the next generation.
    fn heartbeat(&self, s: &mut State, by: usize) {
        let b = s.nodes[by];
        for to in 0..self.n {
            if to == by || !s.linked(by, to) {
                continue;
            }
            s.nodes[to].heard_age[by] = 0;
        }
        let Some(v) = b.installed else { return };
        if b.fenced || b.accepted.is_some() {
            return;
        }
        for to in 0..self.n {
            let t = &mut s.nodes[to];
            if s.cut & pair(by, to) == 0 && v.contains(to, t.inc) && !t.fenced {
                t.confirm_age[by] = 0;
                t.confirm_gen[by] = v.gen;
            }
        }
    }

    /// Whether node `j` is an acceptor of `slot` now.
    fn eligible(&self, nd: &Node, j: usize, slot: u8) -> bool {
        !nd.fenced
            && match nd.installed {
                Some(v) => slot > 0 && v.gen == slot && v.contains(j, nd.inc),
                None => slot == 0,
            }
    }

    /// Handles `body` from `from` at `to` (self-addressed messages are handled at
    /// once, without the network).
    fn receive(&self, s: &mut State, from: usize, to: usize, body: Body) {
        let reply = |s: &mut State, body: Body| {
            if from == to {
                self.receive(s, to, to, body);
            } else {
                self.send(s, to, from, body);
            }
        };
        match body {
            Body::Prepare { slot, ballot } => {
                let nd = &mut s.nodes[to];
                if !self.eligible(nd, to, slot) || ballot < nd.promised {
                    return;
                }
                nd.promised = ballot;
                nd.max_round = nd.max_round.max(ballot.round);
                let accepted = nd.accepted;
                reply(
                    s,
                    Body::Promise {
                        slot,
                        ballot,
                        accepted,
                    },
                );
            }
            Body::Promise {
                slot,
                ballot,
                accepted,
            } => {
                let nd = s.nodes[to];
                let Some(mut r) = nd.race else { return };
                if r.slot != slot || r.ballot != ballot || r.phase != Phase::Prepare {
                    return;
                }
                r.promises |= bit(from);
                if let Some(a) = accepted {
                    if r.best.is_none_or(|b| a.0 > b.0) {
                        r.best = Some(a);
                    }
                }
                if !self.race_quorum(&nd, &r, r.promises, false) {
                    s.nodes[to].race = Some(r);
                    return;
                }
                r.phase = Phase::Accept;
                if let Some((_, v)) = r.best {
                    r.value = v;
                }
                s.nodes[to].race = Some(r);
                let acceptors = match nd.installed {
                    Some(v) => v.ids,
                    None => r.group | r.value.ids,
                };
                let value = r.value;
                for j in 0..self.n {
                    if acceptors & bit(j) != 0 {
                        let body = Body::Accept {
                            slot,
                            ballot,
                            value,
                        };
                        if j == to {
                            self.receive(s, to, to, body);
                        } else {
                            self.send(s, to, j, body);
                        }
                    }
                }
            }
            Body::Accept {
                slot,
                ballot,
                value,
            } => {
                let nd = &s.nodes[to];
                if !self.eligible(nd, to, slot) || ballot < nd.promised {
                    return;
                }
                let mut leaves_out = false;
                if slot == 0 {
                    let fresh = value.gen > nd.highest
                        || nd.accepted.is_some_and(|(_, a)| a.gen == value.gen);
                    if !fresh {
                        return;
                    }
                    if self.cfg.seeding != Seeding::Count {
                        let known = [nd.last_installed, nd.last_accepted];
                        for (_, ids) in known.iter().flatten() {
                            if !has_quorum(set(*ids), set(value.ids)) {
                                return;
                            }
                            leaves_out |= ids & !value.ids != 0;
                            // The view it knows may have dropped members whose
                            // settle window the crash cut short.
                            leaves_out |= self.cfg.seeding == Seeding::AllSettle;
                        }
                    }
                }
                // Ticks until the leases of the members the value drops have lapsed,
                // as far as this acceptor can tell: from when it last heard each.
                let mut lapse = 0;
                if let Some(v) = nd.installed {
                    for x in 0..self.n {
                        if x != to && v.ids & bit(x) != 0 && !value.contains(x, v.incs[x]) {
                            lapse = lapse.max(self.cfg.lease - nd.heard_age[x]);
                        }
                    }
                }
                // An acceptor the value drops holds a lease of its own, on
                // confirmations that include its own until now.
                let drops_me = nd.installed.is_some() && !value.contains(to, nd.inc);
                if drops_me && self.cfg.dropped_acceptor_reports_itself {
                    lapse = self.cfg.lease;
                }
                let nd = &mut s.nodes[to];
                nd.promised = ballot;
                nd.max_round = nd.max_round.max(ballot.round);
                nd.highest = nd.highest.max(value.gen);
                nd.accepted = Some((ballot, value));
                if nd.last_installed.is_none_or(|(g, _)| value.gen > g) {
                    nd.last_accepted = Some((value.gen, value.ids));
                }
                reply(
                    s,
                    Body::Accepted {
                        slot,
                        ballot,
                        lapse,
                        leaves_out,
                    },
                );
            }
            Body::Accepted {
                slot,
                ballot,
                lapse,
                leaves_out,
            } => {
                let nd = s.nodes[to];
                let Some(mut r) = nd.race else { return };
                if r.slot != slot || r.ballot != ballot || r.phase != Phase::Accept {
                    return;
                }
                r.accepts |= bit(from);
                r.lapse = r.lapse.max(lapse);
                r.leaves_out |= leaves_out;
                if !self.race_quorum(&nd, &r, r.accepts, true) {
                    s.nodes[to].race = Some(r);
                    return;
                }
                s.nodes[to].race = None;
                let mut settle = 0;
                match nd.installed {
                    Some(v) => {
                        let excludes = (0..self.n)
                            .any(|x| v.ids & bit(x) != 0 && !r.value.contains(x, v.incs[x]));
                        if excludes {
                            settle = (self.cfg.lease - nd.installed_age).max(r.lapse);
                        }
                    }
                    None => {
                        if self.cfg.seeding != Seeding::Count && r.leaves_out {
                            settle = self.cfg.lease;
                        }
                    }
                }
                if nd.client != nd.installed {
                    settle = settle.max(nd.settle);
                }
                if self.cfg.sabotage == Some(Sabotage::ZeroSettle) {
                    settle = 0;
                }
                let view = r.value;
                for j in 0..self.n {
                    if j != to {
                        self.send(s, to, j, Body::Decided { view, settle });
                    }
                }
                self.learn(s, to, view, settle);
            }
            Body::Decided { view, settle } => self.learn(s, to, view, settle),
        }
    }

    /// A decided view reached node `i`.
    fn learn(&self, s: &mut State, i: usize, view: ViewV, settle: u8) {
        let lease = self.cfg.lease;
        let nd = &mut s.nodes[i];
        if view.gen <= nd.installed.map_or(0, |v| v.gen) {
            return;
        }
        nd.highest = nd.highest.max(view.gen);
        if !view.contains(i, nd.inc) {
            if nd.installed.is_some() {
                // Excluded: fence (stop confirming, no authority, do nothing more).
                let inc = nd.inc;
                nd.reset(inc, lease);
                nd.fenced = true;
            }
            return;
        }
        let pending = nd.client != nd.installed;
        let mut settle = settle;
        if pending && self.cfg.sabotage != Some(Sabotage::ZeroSettle) {
            settle = settle.max(nd.settle);
        }
        nd.installed = Some(view);
        nd.installed_age = 0;
        nd.last_installed = Some((view.gen, view.ids));
        if nd.last_accepted.is_some_and(|(g, _)| g <= view.gen) {
            nd.last_accepted = None;
        }
        nd.promised = Ballot::default();
        nd.max_round = 0;
        nd.accepted = None;
        if nd.race.is_some_and(|r| r.slot < view.gen) {
            nd.race = None;
        }
        if settle == 0 {
            nd.client = Some(view);
            nd.settle = 0;
        } else {
            nd.settle = settle;
        }
        if view.gen <= s.last_gen[i] {
            s.s3_broken = true;
        }
        s.last_gen[i] = view.gen;
        if let Err(at) = s.installs.binary_search(&view) {
            s.installs.insert(at, view);
        }
        // A node that installs a view says so at once, confirming its members.
        self.heartbeat(s, i);
    }

    /// The first property `s` violates, with a line that says how.
    pub fn violation(&self, s: &State) -> Option<(Property, String)> {
        for (a, b) in s.installs.iter().zip(s.installs.iter().skip(1)) {
            if a.gen == b.gen {
                return Some((
                    Property::S2,
                    format!("generation {} installed as {a} and as {b}", a.gen),
                ));
            }
        }
        if s.s3_broken {
            return Some((
                Property::S3,
                "a node installed a generation not above one it installed before".into(),
            ));
        }
        let holders: Vec<(usize, ViewV)> = (0..self.n)
            .filter(|i| self.authority(&s.nodes[*i]))
            .filter_map(|i| s.nodes[i].client.map(|c| (i, c)))
            .collect();
        for &(a, va) in &holders {
            for &(b, vb) in &holders {
                if a == b || va.gen > vb.gen {
                    continue;
                }
                if va.gen == vb.gen && va != vb {
                    return Some((
                        Property::S1,
                        format!("node {a} holds authority on {va}, node {b} on {vb}"),
                    ));
                }
                let inc = s.nodes[a].inc;
                if let Some(w) = s
                    .installs
                    .iter()
                    .find(|w| w.gen > va.gen && w.gen <= vb.gen && !w.contains(a, inc))
                {
                    return Some((
                        Property::S1,
                        format!("node {a} holds authority on {va}, node {b} on {vb}, and {w} excludes node {a}"),
                    ));
                }
            }
        }
        for &(a, va) in &holders {
            let inc = s.nodes[a].inc;
            for y in 0..self.n {
                if let Some(c) = s.nodes[y].client {
                    if c.gen > va.gen && !c.contains(a, inc) {
                        return Some((
                            Property::S4,
                            format!("node {a} holds authority on {va} while node {y}'s clients act on {c}, which excludes it"),
                        ));
                    }
                }
            }
        }
        let primaries: Vec<&(usize, ViewV)> = holders
            .iter()
            .filter(|(i, v)| usize::from(v.primary) == *i && v.contains(*i, s.nodes[*i].inc))
            .collect();
        if primaries.len() > 1 {
            let (a, va) = primaries[0];
            let (b, vb) = primaries[1];
            return Some((
                Property::S5,
                format!("nodes {a} and {b} both hold authority as primary, on {va} and {vb}"),
            ));
        }
        None
    }
}

/// The bit of the link between `a` and `b` (0 for a node and itself).
fn pair(a: usize, b: usize) -> u8 {
    let (a, b) = (a.min(b), a.max(b));
    const INDEX: [[u8; MAX_NODES]; MAX_NODES] =
        [[0, 0, 1, 3], [0, 0, 2, 4], [0, 0, 0, 5], [0, 0, 0, 0]];
    if a == b {
        0
    } else {
        1 << INDEX[a][b]
    }
}

impl State {
    fn linked(&self, a: usize, b: usize) -> bool {
        self.cut & pair(a, b) == 0
    }
}

/// Every subset of `bits`, the empty one first.
fn subsets(bits: u8) -> impl Iterator<Item = u8> {
    let mut next = Some(0u8);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == bits {
            None
        } else {
            Some((cur.wrapping_sub(bits)) & bits)
        };
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_of_a_mask() {
        let all: Vec<u8> = subsets(0b1010).collect();
        assert_eq!(all, vec![0, 0b0010, 0b1000, 0b1010]);
        assert_eq!(subsets(0).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn sticky_primary() {
        let g1 = ViewV::new(1, 0b110, [0; MAX_NODES], None, false);
        assert_eq!(g1.primary, 1);
        // Node 0 joins: the primary stays 1; with the sabotage it becomes 0.
        let g2 = ViewV::new(2, 0b111, [0; MAX_NODES], Some(&g1), false);
        assert_eq!(g2.primary, 1);
        let g2 = ViewV::new(2, 0b111, [0; MAX_NODES], Some(&g1), true);
        assert_eq!(g2.primary, 0);
        // Node 1 restarted (incarnation 1): not sticky, not a survivor; 2 survives.
        let g3 = ViewV::new(3, 0b111, [0, 1, 0, 0], Some(&g1), false);
        assert_eq!(g3.primary, 2);
    }
}
