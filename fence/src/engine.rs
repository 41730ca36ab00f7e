//! The fence core: the view change *is* the race.
//!
//! Each generation's successor is decided by single-decree Paxos among the members
//! of the current view, with [`has_quorum`] over that view as the
//! quorum system. A side's racer is its lowest reachable member; a racer that finds
//! no quorum within `race_timeout` has lost, and its side fences itself. Seeding is a
//! Paxos instance of its own among unseeded nodes, decided by `seed` accepts.
//!
//! Authority is a lease: a member holds it while a quorum of its view has recently
//! confirmed hearing it (llt's echoed timestamps, on the member's own clock).
//! Survivors hand a new view to clients only once every excluded member's lease has
//! provably lapsed (the settle window, computed from what the accepting quorum last
//! heard from it).

use crate::has_quorum;
use crate::types::{
    Durable, FenceConfig, FenceEvent, FenceReason, FenceStatus, KnownView, NodeState, RaceRecord,
    RaceVerdict, Sabotage,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use vigil_llt::types::{Generation, Incarnation, Instant, NodeId};
use vigil_membership::{Ballot, Member, Msg, NodeSet, PortMask, View};

/// Bound on queued outputs.
const MAX_OUTPUTS: usize = 16 * 1024;
/// Bound on remembered excluded incarnations.
const MAX_EXCLUDED: usize = 256;

/// What the transport knows about a peer, handed to the core before every step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub up: bool,
    pub incarnation: Option<Incarnation>,
    /// The generation the peer advertises in its frames (0: unseeded).
    pub generation: Generation,
    pub last_heard: Option<Instant>,
    /// The latest of our frames the peer confirmed hearing (on our clock), and the
    /// generation it advertised when it did.
    pub confirmed: Option<(Instant, Generation)>,
}

/// One step's results, drained in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceOutput {
    /// A message for a peer (port `b`).
    Send {
        to: NodeId,
        msg: Msg,
    },
    /// Make this durable state (the highest generation and the views known) durable
    /// before carrying out anything after it.
    Persist(Durable),
    Event(FenceEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Report {
    up: NodeSet,
    ports: PortMask,
    highest: Generation,
    /// When `up` last changed.
    since: Instant,
}

/// Which sets of acceptors decide a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quorum {
    /// The quorum rule over the previous view.
    Prev(NodeSet),
    /// Seeding: at least `count` of the configured nodes.
    Seed(usize),
    /// Manual seeding: every proposed member.
    All(NodeSet),
}

impl Quorum {
    fn met(self, who: NodeSet, sabotage: Option<Sabotage>) -> bool {
        match (self, sabotage) {
            (Quorum::Prev(prev), Some(Sabotage::AnyHalfWins)) => {
                2 * who.intersection(prev).len() >= prev.len()
            }
            (Quorum::Prev(prev), Some(Sabotage::FewerAccepts)) => {
                // One accept short: pretend an extra member accepted.
                let missing = prev.difference(who).min();
                let mut more = who;
                if let Some(m) = missing {
                    more.insert(m);
                }
                has_quorum(prev, more)
            }
            (Quorum::Prev(prev), _) => has_quorum(prev, who),
            (Quorum::Seed(count), _) => who.len() >= count,
            (Quorum::All(all), _) => all.is_subset(who),
        }
    }
}

#[derive(Clone, Debug)]
enum Phase {
    Prepare {
        promises: BTreeMap<NodeId, Option<(Ballot, View)>>,
    },
    Accept {
        value: View,
        accepts: BTreeMap<NodeId, (Instant, Vec<(NodeId, u64)>)>,
    },
}

#[derive(Clone, Debug)]
struct Race {
    slot: Generation,
    ballot: Ballot,
    own: View,
    acceptors: NodeSet,
    quorum: Quorum,
    /// A manual seed (`gabconfig -x`): acceptors do not check their known views.
    manual: bool,
    phase: Phase,
    started: Instant,
    deadline: Instant,
    next_send: Instant,
}

/// The fence core of one node.
#[derive(Clone, Debug)]
pub struct Fence {
    cfg: FenceConfig,
    me: NodeId,
    incarnation: Incarnation,
    peers: BTreeMap<NodeId, PeerInfo>,
    reports: BTreeMap<NodeId, Report>,
    installed: Option<View>,
    client_view: Option<View>,
    pending_client: Option<View>,
    settle_until: Option<Instant>,
    /// What survives a restart: the highest generation, the last view installed
    /// and the last value accepted.
    durable: Durable,
    promised: Ballot,
    accepted: Option<(Ballot, View)>,
    /// When we accepted a value for a newer generation than the installed one:
    /// from then on we confirm nobody, and our own confirmation stays at that time,
    /// until the view is installed.
    accepted_at: Option<Instant>,
    /// When the installed view was installed here.
    installed_at: Instant,
    race: Option<Race>,
    max_round: u32,
    seed_retry: Option<Instant>,
    change_since: Option<Instant>,
    /// The racer a spectator waits for since `change_since`.
    awaited_racer: Option<NodeId>,
    /// Since when a peer has advertised a newer generation than ours.
    stale_since: Option<Instant>,
    joins: BTreeMap<NodeId, (Incarnation, PortMask, Instant)>,
    leaving: NodeSet,
    excluded: VecDeque<(NodeId, Incarnation)>,
    ports: PortMask,
    lease_until: Option<Instant>,
    authority: bool,
    fenced: Option<FenceReason>,
    left: bool,
    leave_requested: bool,
    manual_seed: bool,
    /// The last `SeedWaiting` said, so it is said once per change.
    seed_waiting: Option<(NodeSet, Vec<KnownView>)>,
    /// The last seed attempt was refused by a member of its group.
    seed_refused: bool,
    last_race: Option<RaceRecord>,
    last_reach: Option<(Instant, NodeSet, PortMask, Generation)>,
    last_join: Option<Instant>,
    last_leave: Option<Instant>,
    catchup: BTreeMap<NodeId, Instant>,
    loopback: VecDeque<(NodeId, Msg)>,
    outputs: VecDeque<FenceOutput>,
    bad_messages: u64,
    now: Instant,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Fence {
    /// The core of node `me` in `incarnation`, with what it kept durably (its
    /// state file): the highest generation it ever saw and the views it knew.
    pub fn new(
        cfg: FenceConfig,
        me: NodeId,
        incarnation: Incarnation,
        now: Instant,
        persisted: impl Into<Durable>,
    ) -> Fence {
        Fence {
            cfg,
            me,
            incarnation,
            peers: BTreeMap::new(),
            reports: BTreeMap::new(),
            installed: None,
            client_view: None,
            pending_client: None,
            settle_until: None,
            durable: persisted.into(),
            promised: Ballot::ZERO,
            accepted: None,
            accepted_at: None,
            installed_at: now,
            race: None,
            max_round: 0,
            seed_retry: None,
            change_since: None,
            awaited_racer: None,
            stale_since: None,
            joins: BTreeMap::new(),
            leaving: NodeSet::EMPTY,
            excluded: VecDeque::new(),
            ports: 0,
            lease_until: None,
            authority: false,
            fenced: None,
            left: false,
            leave_requested: false,
            manual_seed: false,
            seed_waiting: None,
            seed_refused: false,
            last_race: None,
            last_reach: None,
            last_join: None,
            last_leave: None,
            catchup: BTreeMap::new(),
            loopback: VecDeque::new(),
            outputs: VecDeque::new(),
            bad_messages: 0,
            now,
        }
    }

    // ----- queries -------------------------------------------------------------

    /// The generation to advertise in llt frames: the installed one, 0 if none.
    pub fn advertised_generation(&self) -> Generation {
        self.installed
            .as_ref()
            .map_or(Generation(0), |v| v.generation)
    }

    /// Authority as of the last step. Before acting on it, check
    /// [`Fence::authority_at`] with the current time: a process that was not
    /// running (a frozen node) must not trust what it last computed.
    pub fn authority(&self) -> bool {
        self.authority
    }

    /// Whether the node holds authority at `now`: it held it at its last step and
    /// its lease has not lapsed since.
    pub fn authority_at(&self, now: Instant) -> bool {
        self.authority
            && self.fenced.is_none()
            && !self.left
            && self.lease_until.is_some_and(|l| now < l)
    }

    /// Until when the lease computed at the last step runs, if one does.
    pub fn lease_until(&self) -> Option<Instant> {
        self.lease_until
    }

    pub fn fenced(&self) -> bool {
        self.fenced.is_some()
    }

    /// Left the cluster gracefully (after [`Fence::leave`]).
    pub fn left(&self) -> bool {
        self.left
    }

    pub fn installed(&self) -> Option<&View> {
        self.installed.as_ref()
    }

    pub fn client_view(&self) -> Option<&View> {
        self.client_view.as_ref()
    }

    /// The peers whose frames we confirm (the lease confirmations llt carries):
    /// members of our view at our generation. Nobody once we accepted a value for
    /// the next generation: the race that may decide it counts on our
    /// confirmations having stopped by then (see `on_accepted`).
    pub fn confirm_set(&self) -> NodeSet {
        let Some(v) = &self.installed else {
            return NodeSet::EMPTY;
        };
        if self.fenced.is_some() || self.left || self.accepted.is_some() {
            return NodeSet::EMPTY;
        }
        v.members
            .iter()
            .filter(|m| m.id != self.me)
            .filter(|m| {
                self.peers
                    .get(&m.id)
                    .is_some_and(|i| i.incarnation == Some(m.incarnation))
            })
            .map(|m| m.id)
            .collect()
    }

    pub fn status(&self) -> FenceStatus {
        FenceStatus {
            state: self.state(),
            authority: self.authority,
            self_fence: self.cfg.self_fence,
            installed: self.installed.clone(),
            client_view: self.client_view.clone(),
            highest_generation: self.durable.highest,
            durable: self.durable,
            lease_until: self.lease_until,
            settle_until: self.settle_until,
            last_race: self.last_race.clone(),
            fenced: self.fenced.clone(),
            bad_messages: self.bad_messages,
        }
    }

    fn state(&self) -> NodeState {
        if self.fenced.is_some() {
            NodeState::Fenced
        } else if self.left {
            NodeState::Left
        } else if self.installed.is_none() {
            NodeState::Unseeded
        } else if self.race.is_some() || self.change_since.is_some() || self.stale_since.is_some() {
            NodeState::Racing
        } else {
            NodeState::Member
        }
    }

    fn is_member(&self) -> bool {
        self.installed
            .as_ref()
            .is_some_and(|v| v.contains(self.me, self.incarnation))
    }

    fn drift(&self, d: Duration) -> Duration {
        d.saturating_add(d.saturating_mul(self.cfg.max_drift_ppm) / 1_000_000)
    }

    // ----- outputs -------------------------------------------------------------

    fn push(&mut self, o: FenceOutput) {
        if self.outputs.len() >= MAX_OUTPUTS {
            self.outputs.pop_front();
        }
        self.outputs.push_back(o);
    }

    fn event(&mut self, e: FenceEvent) {
        self.push(FenceOutput::Event(e));
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        if to == self.me {
            self.loopback.push_back((to, msg));
        } else {
            self.push(FenceOutput::Send { to, msg });
        }
    }

    /// Change the durable state; a change is queued as one `Persist` before anything
    /// that follows it.
    fn keep(&mut self, change: impl FnOnce(&mut Durable)) {
        let before = self.durable;
        change(&mut self.durable);
        if self.durable.highest < before.highest {
            // Generations never go back; nothing here lowers one.
            self.durable.highest = before.highest;
        }
        if self.durable != before {
            self.push(FenceOutput::Persist(self.durable));
        }
    }

    fn raise_highest(&mut self, g: Generation) {
        self.keep(|d| d.highest = d.highest.max(g));
    }

    /// Whether `group` may seed: it holds a quorum of every view this node knows.
    fn seed_allowed(&self, group: NodeSet) -> bool {
        self.durable.seed_overrides(group).is_empty()
    }

    pub fn poll_output(&mut self) -> Option<FenceOutput> {
        self.outputs.pop_front()
    }

    // ----- inputs --------------------------------------------------------------

    /// The transport's view of every peer, before a step.
    pub fn observe(&mut self, peers: impl IntoIterator<Item = (NodeId, PeerInfo)>) {
        for (id, info) in peers {
            if id != self.me {
                self.peers.insert(id, info);
            }
        }
    }

    /// `gabconfig -x`: seed with whoever is reachable.
    pub fn manual_seed(&mut self, now: Instant) {
        if self.installed.is_none() && self.fenced.is_none() {
            self.manual_seed = true;
            self.seed_retry = None;
            self.step(now);
        }
    }

    /// Fence at once for a reason found outside the race (a failed health probe, a
    /// stall longer than the lease). Nothing happens if already fenced or left.
    pub fn fence_now(&mut self, now: Instant, reason: FenceReason) {
        self.now = self.now.max(now);
        if self.fenced.is_some() || self.left {
            return;
        }
        self.self_fence(reason);
    }

    /// The node was not running for `stall` (measured by its driver or `Node`): the
    /// deadlines that accuse others or give up on them move by that much, so no
    /// timer counts time during which this node could not hear anyone. Leases are
    /// not moved: they lapse on the node's own clock.
    pub fn excuse(&mut self, stall: Duration) {
        if let Some(r) = &mut self.race {
            r.deadline += stall;
        }
        if let Some(t) = &mut self.change_since {
            *t += stall;
        }
        if let Some(t) = &mut self.stale_since {
            *t += stall;
        }
    }

    /// Whether the node is in a view (a member, or racing for the next view).
    pub fn in_view(&self) -> bool {
        self.is_member()
    }

    /// `vigil stop`: leave the cluster gracefully.
    pub fn leave(&mut self, now: Instant) {
        if self.fenced.is_some() || self.left {
            return;
        }
        self.leave_requested = true;
        if !self.is_member() {
            self.left = true;
            self.race = None;
            let g = self.advertised_generation();
            self.lose_authority();
            self.event(FenceEvent::Left { generation: g });
            return;
        }
        self.step(now);
    }

    /// While leaving, tell the members every heartbeat until a view without us is
    /// decided (a single message may be lost).
    fn send_leave(&mut self, now: Instant) {
        if !self.leave_requested || !self.is_member() {
            return;
        }
        if self
            .last_leave
            .is_some_and(|t| now < t + self.cfg.heartbeat)
        {
            return;
        }
        self.last_leave = Some(now);
        for p in self.up_members() {
            self.send(p, Msg::Leave);
        }
    }

    /// Register the local node on the ports in `mask` (bit 0 = `a`).
    pub fn set_ports(&mut self, now: Instant, mask: PortMask) {
        self.ports = mask;
        self.last_reach = None;
        self.step(now);
    }

    /// A message from `from` on port `b`.
    pub fn handle_message(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        match Msg::decode(bytes) {
            Ok(msg) => {
                self.loopback.push_back((from, msg));
                self.step(now);
            }
            Err(_) => self.bad_messages = self.bad_messages.saturating_add(1),
        }
    }

    /// Timers: race retransmits and deadlines, settle, leases, reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    /// When the core next needs [`Fence::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.fenced.is_some() || self.left {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut take = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let hb = self.cfg.heartbeat;
        if let Some(r) = &self.race {
            take(r.next_send);
            take(r.deadline);
        }
        if let Some(t) = self.change_since {
            let base = t + self.cfg.race_timeout + hb * 2;
            // Past it, the spectator is waiting for a racer that still hears the
            // lost members: the longer wait's end.
            take(if base > self.now {
                base
            } else {
                base + self.cfg.peer_inactive
            });
        }
        if let Some(t) = self.stale_since {
            take(t + self.cfg.race_timeout);
        }
        if let (Some(t), Some(_)) = (self.settle_until, &self.pending_client) {
            take(t);
        }
        if self.authority {
            if let Some(t) = self.lease_until {
                take(t);
            }
        }
        if let Some((t, ..)) = self.last_reach {
            take(t + hb * 4);
        }
        if let (true, Some(t)) = (self.leave_requested, self.last_leave) {
            take(t + hb);
        }
        if self.installed.is_none() {
            let seeded_peer = self.peers.values().any(|i| i.up && i.generation.0 > 0);
            if seeded_peer {
                take(self.last_join.map_or(self.now, |t| t + hb));
            }
            if let Some(t) = self.seed_retry {
                take(t);
            }
        }
        if let Some(v) = &self.installed {
            for (p, info) in &self.peers {
                if info.up && info.generation < v.generation {
                    take(self.catchup.get(p).map_or(self.now, |t| *t + hb));
                }
            }
        }
        next
    }

    // ----- the step ------------------------------------------------------------

    fn step(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let now = self.now;
        // Bounded: every message handled may queue replies to ourselves.
        for _ in 0..256 {
            let Some((from, msg)) = self.loopback.pop_front() else {
                break;
            };
            if self.fenced.is_some() || self.left {
                self.loopback.clear();
                return;
            }
            self.on_message(now, from, msg);
        }
        if self.fenced.is_some() || self.left {
            return;
        }
        self.send_reach(now);
        self.send_leave(now);
        self.catch_up(now);
        if self.installed.is_none() {
            self.unseeded_step(now);
        } else {
            self.member_step(now);
        }
        if self.fenced.is_some() || self.left {
            return;
        }
        self.race_step(now);
        if self.fenced.is_some() || self.left {
            return;
        }
        if !self.loopback.is_empty() {
            // Our own promise or accept: handle it now rather than at the next input.
            let again: Vec<(NodeId, Msg)> = self.loopback.drain(..).collect();
            for (from, msg) in again {
                if self.fenced.is_none() && !self.left {
                    self.on_message(now, from, msg);
                }
            }
        }
        self.settle_step(now);
        self.authority_step(now);
    }

    fn up_set(&self) -> NodeSet {
        let mut s: NodeSet = self
            .peers
            .iter()
            .filter(|(_, i)| i.up)
            .map(|(id, _)| *id)
            .collect();
        s.insert(self.me);
        s
    }

    /// Members of `v` whose process (in the view's incarnation) is up, and us.
    fn live_members(&self, v: &View) -> NodeSet {
        v.members
            .iter()
            .filter(|m| {
                m.id == self.me
                    || self
                        .peers
                        .get(&m.id)
                        .is_some_and(|i| i.up && i.incarnation == Some(m.incarnation))
            })
            .map(|m| m.id)
            .collect()
    }

    fn up_members(&self) -> Vec<NodeId> {
        let up = self.up_set();
        match &self.installed {
            Some(v) => v
                .node_set()
                .intersection(up)
                .iter()
                .filter(|p| *p != self.me)
                .collect(),
            None => Vec::new(),
        }
    }

    fn send_reach(&mut self, now: Instant) {
        let up = self.up_set();
        let installed = self.advertised_generation();
        let due = match self.last_reach {
            None => true,
            Some((t, u, p, g)) => {
                u != up || p != self.ports || g != installed || now >= t + self.cfg.heartbeat * 4
            }
        };
        if !due {
            return;
        }
        self.last_reach = Some((now, up, self.ports, installed));
        let msg = Msg::Reach {
            up,
            ports: self.ports,
            highest: self.durable.highest,
            installed,
        };
        let me = self.me;
        for p in up.iter().filter(|p| *p != me) {
            self.send(p, msg.clone());
        }
    }

    /// When the settle window of the installed view ends, while it runs (the
    /// clients still have the view before).
    fn pending_settle(&self) -> Option<Instant> {
        self.settle_until.filter(|_| self.pending_client.is_some())
    }

    /// Peers advertising a lower generation get our view: laggards catch up, and an
    /// excluded node that wakes up learns it was excluded.
    fn catch_up(&mut self, now: Instant) {
        let Some(v) = self.installed.clone() else {
            return;
        };
        let settle_us = self
            .pending_settle()
            .map_or(0, |t| micros(t.saturating_since(now)));
        let lagging: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, i)| i.up && i.generation < v.generation)
            .map(|(id, _)| *id)
            .collect();
        for p in lagging {
            if self
                .catchup
                .get(&p)
                .is_some_and(|t| now < *t + self.cfg.heartbeat)
            {
                continue;
            }
            self.catchup.insert(p, now);
            self.send(
                p,
                Msg::Decided {
                    view: v.clone(),
                    settle_us,
                },
            );
        }
    }

    /// Greedy clique over `candidates` (`me` first when present, then in the order
    /// given): each one joins if it and every one chosen see each other.
    ///
    /// What a node reaches is what its report says. For the members of `keep` (the
    /// current view's members) a report only counts once it has held for
    /// `peer_inactive`; before that, or with no report, a member is assumed to reach
    /// what we reach. That optimism costs at most one more view change, while
    /// trusting a report sent as links were still coming up would evict a healthy
    /// member. Nodes outside `keep` (seeding, joiners) must show in their own report
    /// that they reach the others.
    fn clique(&self, candidates: &[Member], keep: NodeSet) -> Vec<Member> {
        let up = self.up_set();
        let hold = self.cfg.peer_inactive;
        let now = self.now;
        let me = self.me;
        let reach_of = |x: NodeId| -> NodeSet {
            if x == me {
                return up;
            }
            let report = self
                .reports
                .get(&x)
                .filter(|_| self.peers.get(&x).is_some_and(|i| i.up));
            match (report, keep.contains(x)) {
                (Some(r), true) if now >= r.since + hold => r.up,
                (Some(r), true) => r.up.union(up),
                (None, true) => up,
                (Some(r), false) => r.up,
                (None, false) => [x, me].into_iter().collect(),
            }
        };
        // Once per candidate, not once per pair.
        let mut table = [NodeSet::EMPTY; 64];
        for c in candidates {
            table[c.id.index() % 64] = reach_of(c.id);
        }
        let reach = |x: NodeId| table[x.index() % 64];
        // Us first, then the others in the order given (members before joiners).
        let mut ordered: Vec<Member> = candidates
            .iter()
            .filter(|m| m.id == self.me)
            .copied()
            .collect();
        ordered.extend(candidates.iter().filter(|m| m.id != self.me).copied());
        let mut chosen: Vec<Member> = Vec::new();
        for c in ordered {
            if !up.contains(c.id) {
                continue;
            }
            let ok = chosen
                .iter()
                .all(|o| reach(c.id).contains(o.id) && reach(o.id).contains(c.id));
            if ok {
                chosen.push(c);
            }
        }
        chosen.sort();
        chosen
    }

    fn ports_of(&self, id: NodeId, fallback: PortMask) -> PortMask {
        if id == self.me {
            self.ports
        } else {
            self.reports.get(&id).map_or(fallback, |r| r.ports)
        }
    }

    fn unseeded_step(&mut self, now: Instant) {
        let up = self.up_set();
        let seeded: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, i)| i.up && i.generation.0 > 0)
            .map(|(id, _)| *id)
            .collect();
        if !seeded.is_empty() {
            // A running cluster is reachable: ask to join it, never seed apart.
            if let Some(r) = &self.race {
                if r.slot.0 == 0 {
                    self.race = None;
                }
            }
            if self.last_join.is_none_or(|t| now >= t + self.cfg.heartbeat) {
                self.last_join = Some(now);
                for p in seeded {
                    self.send(
                        p,
                        Msg::Join {
                            incarnation: self.incarnation,
                            ports: self.ports,
                        },
                    );
                }
            }
            return;
        }
        if self.seed_retry.is_some_and(|t| now >= t) {
            self.seed_retry = None;
        }
        if self.race.is_some() || self.seed_retry.is_some() {
            return;
        }
        let candidates: Vec<Member> = up
            .iter()
            .filter(|p| *p == self.me || self.peers.get(p).is_some_and(|i| i.generation.0 == 0))
            .filter_map(|p| {
                let incarnation = if p == self.me {
                    Some(self.incarnation)
                } else {
                    self.peers.get(&p).and_then(|i| i.incarnation)
                };
                incarnation.map(|incarnation| Member {
                    id: p,
                    incarnation,
                    ports: self.ports_of(p, 0),
                })
            })
            .collect();
        let group = self.clique(&candidates, NodeSet::EMPTY);
        let ids: NodeSet = group.iter().map(|m| m.id).collect();
        if ids.min() != Some(self.me) {
            return;
        }
        if !self.manual_seed && group.len() < self.cfg.seed {
            return;
        }
        let overrides = self.durable.seed_overrides(ids);
        let quorum = if self.cfg.sabotage == Some(Sabotage::SeedWithoutViews) && !self.manual_seed {
            // The rule before views were kept: `seed` accepts, no views checked.
            Quorum::Seed(self.cfg.seed)
        } else {
            if !self.manual_seed && !overrides.is_empty() {
                // A view this node knows may still run with a quorum elsewhere.
                let waiting = Some((ids, overrides.clone()));
                if self.seed_waiting != waiting {
                    self.seed_waiting = waiting;
                    self.event(FenceEvent::SeedWaiting {
                        group: ids,
                        needs: overrides,
                    });
                }
                return;
            }
            // Every member of the group accepts a seed, each after checking that
            // the group holds a quorum of every view it knows: a view unknown to
            // the seeder but known to a member is checked too.
            Quorum::All(ids)
        };
        let highest = group
            .iter()
            .filter_map(|m| {
                if m.id == self.me {
                    Some(self.durable.highest)
                } else {
                    self.reports.get(&m.id).map(|r| r.highest)
                }
            })
            .max()
            .unwrap_or(self.durable.highest);
        let Some(generation) = highest.next() else {
            // At the top of the range: refuse to seed rather than wrap.
            return;
        };
        let value = View::new(generation, group, None);
        if self.manual_seed {
            self.event(FenceEvent::ManualSeed {
                members: ids,
                overrides,
            });
        }
        self.start_race(now, Generation(0), value, ids, quorum);
    }

    /// The members the next view should have, as this node sees it.
    fn desired(&self, v: &View) -> Vec<Member> {
        let mut candidates: Vec<Member> = Vec::new();
        for m in &v.members {
            if self.leaving.contains(m.id) || (m.id == self.me && self.leave_requested) {
                continue;
            }
            if m.id == self.me {
                candidates.push(Member {
                    ports: self.ports,
                    ..*m
                });
                continue;
            }
            let Some(info) = self.peers.get(&m.id) else {
                continue;
            };
            if info.incarnation == Some(m.incarnation) {
                candidates.push(Member {
                    ports: self.ports_of(m.id, m.ports),
                    ..*m
                });
            }
        }
        // Members first (in ID order), joiners after: a joiner that does not yet
        // see everyone waits; it never pushes a connected member out.
        candidates.sort();
        for (id, (inc, ports, _)) in &self.joins {
            let current = self.peers.get(id).and_then(|i| i.incarnation);
            if current == Some(*inc)
                && !self.excluded.contains(&(*id, *inc))
                && !candidates.iter().any(|c| c.id == *id)
            {
                candidates.push(Member {
                    id: *id,
                    incarnation: *inc,
                    ports: self.ports_of(*id, *ports),
                });
            }
        }
        self.clique(&candidates, v.node_set())
    }

    fn member_step(&mut self, now: Instant) {
        let Some(v) = self.installed.clone() else {
            return;
        };
        // A member that sees a newer generation it does not receive (it hears the
        // cluster, the cluster does not hear it) cannot be trusted: it fences.
        let newest = self
            .peers
            .values()
            .filter(|i| i.up)
            .map(|i| i.generation)
            .max()
            .unwrap_or_default();
        if newest > v.generation {
            let since = *self.stale_since.get_or_insert(now);
            if now >= since + self.cfg.race_timeout {
                self.self_fence(FenceReason::Excluded { generation: newest });
                return;
            }
        } else {
            self.stale_since = None;
        }
        // Drop join requests nobody refreshed.
        let stale = self.cfg.heartbeat * 10;
        self.joins.retain(|_, (_, _, t)| now < *t + stale);
        let up = self.up_set();
        // A member is reachable when its process, in the view's incarnation, is up:
        // a restarted member is a new process and no longer the view's member.
        let reachable = self.live_members(&v);
        let _ = up;
        let racer = match reachable.min() {
            Some(r) if r == self.me => self.lower_racer_elsewhere(&v, reachable).or(Some(r)),
            r => r,
        };
        let desired = self.desired(&v);
        let needed = !v.same_members(&desired) && !desired.is_empty();
        // As a spectator, a member we cannot reach is a change we wait for.
        let unreachable = reachable != v.node_set();
        // The spectator's clock runs only while a member is out of reach, and starts
        // again when the racer it waits for changes (that racer went out of reach
        // itself, or fenced): the next one gets a whole race_timeout. Each restart
        // needs a member to go, so the wait stays bounded.
        if unreachable && racer != Some(self.me) {
            if self.awaited_racer != racer {
                self.awaited_racer = racer;
                self.change_since = Some(now);
            } else {
                self.change_since.get_or_insert(now);
            }
        } else {
            self.change_since = None;
            self.awaited_racer = None;
        }
        if racer == Some(self.me) && needed && self.race.is_none() {
            let Some(generation) = v.generation.next() else {
                // At the top of the range: no view can follow this one.
                return;
            };
            let mut value = View::new(generation, desired, Some(&v));
            if self.cfg.sabotage == Some(Sabotage::LowestPrimary) {
                value.primary = value.leader().unwrap_or(value.primary);
            }
            let acceptors = v.node_set();
            self.start_race(
                now,
                v.generation,
                value,
                acceptors,
                Quorum::Prev(v.node_set()),
            );
        }
        if racer != Some(self.me) && self.race.is_none() {
            if let Some(t) = self.change_since {
                // A grace of two heartbeats lets the racer's own verdict arrive first.
                let mut wait = self.cfg.race_timeout + self.cfg.heartbeat * 2;
                // A racer that still hears the members we lost (a one-way fault)
                // acts on our report of them only once it has held for
                // peer_inactive: wait that long too, or the majority that would
                // have won fences itself waiting.
                let lost = v.node_set().difference(reachable);
                let racer_hears_them = racer
                    .and_then(|r| self.reports.get(&r))
                    .is_some_and(|rep| !lost.is_empty() && lost.is_subset(rep.up));
                if racer_hears_them {
                    wait += self.cfg.peer_inactive;
                }
                if unreachable && now >= t + wait {
                    self.self_fence(FenceReason::NoDecision { slot: v.generation });
                }
            }
        }
    }

    /// A member of `v` lower than us that we cannot reach but a member we reach
    /// still reports reaching: it is alive, and it races for the side that holds
    /// it. Racing beside it would duel for the same slot with a smaller group (a
    /// node cut from the lowest members but not from the rest would otherwise race
    /// with whoever it still reaches, and a quorum of acceptors could decide that
    /// smaller view), so we wait for its decision as a spectator instead.
    fn lower_racer_elsewhere(&self, v: &View, reachable: NodeSet) -> Option<NodeId> {
        // Not a node we hear ourselves: one we hear in another incarnation
        // restarted, and races for nobody.
        let lost = v.node_set().difference(reachable).difference(self.up_set());
        reachable
            .iter()
            .filter(|m| *m != self.me)
            .filter_map(|m| self.reports.get(&m))
            .map(|r| r.up.intersection(lost))
            .fold(NodeSet::EMPTY, NodeSet::union)
            .min()
            .filter(|lower| *lower < self.me)
    }

    fn start_race(
        &mut self,
        now: Instant,
        slot: Generation,
        own: View,
        acceptors: NodeSet,
        quorum: Quorum,
    ) {
        self.max_round = self.max_round.saturating_add(1);
        let ballot = Ballot {
            round: self.max_round,
            node: self.me,
            incarnation: self.incarnation,
        };
        self.event(FenceEvent::RaceStarted {
            slot,
            racer: self.me,
            proposal: own.node_set(),
        });
        self.last_race = Some(RaceRecord {
            slot,
            racer: self.me,
            proposal: own.node_set(),
            started: now,
            duration: None,
            verdict: RaceVerdict::Running,
        });
        self.race = Some(Race {
            slot,
            ballot,
            own,
            acceptors,
            quorum,
            manual: self.manual_seed && slot.0 == 0,
            phase: Phase::Prepare {
                promises: BTreeMap::new(),
            },
            started: now,
            deadline: now + self.cfg.race_timeout,
            next_send: now,
        });
    }

    fn race_step(&mut self, now: Instant) {
        let Some(race) = self.race.clone() else {
            return;
        };
        if now >= race.deadline {
            self.race = None;
            let duration = now.saturating_since(race.started);
            if let Some(r) = &mut self.last_race {
                r.verdict = RaceVerdict::Lost;
                r.duration = Some(duration);
            }
            self.event(FenceEvent::RaceLost {
                slot: race.slot,
                duration,
            });
            if race.slot.0 == 0 {
                // A seed attempt that failed: try again later; nobody fences. A
                // refused one waits longer: the group must change first.
                let mut wait = self.cfg.heartbeat * 4;
                if std::mem::take(&mut self.seed_refused) {
                    wait += self.cfg.race_timeout.max(self.cfg.peer_inactive);
                }
                self.seed_retry = Some(now + wait);
                return;
            }
            for p in self.up_members() {
                self.send(p, Msg::Lost { slot: race.slot });
            }
            self.self_fence(FenceReason::RaceLost { slot: race.slot });
            return;
        }
        if now < race.next_send {
            return;
        }
        let up = self.up_set();
        let (msg, answered): (Msg, NodeSet) = match &race.phase {
            Phase::Prepare { promises } => (
                Msg::Prepare {
                    slot: race.slot,
                    ballot: race.ballot,
                },
                promises.keys().copied().collect(),
            ),
            Phase::Accept { value, accepts } => (
                Msg::Accept {
                    slot: race.slot,
                    ballot: race.ballot,
                    value: value.clone(),
                    manual: race.manual,
                },
                accepts.keys().copied().collect(),
            ),
        };
        for p in race.acceptors.intersection(up).difference(answered).iter() {
            self.send(p, msg.clone());
        }
        if let Some(r) = &mut self.race {
            r.next_send = now + self.cfg.heartbeat;
        }
    }

    fn settle_step(&mut self, now: Instant) {
        if let (Some(t), Some(_)) = (self.settle_until, &self.pending_client) {
            if now >= t {
                if let Some(view) = self.pending_client.take() {
                    self.client_view = Some(view.clone());
                    self.event(FenceEvent::ClientView { view });
                }
            }
        }
    }

    fn authority_step(&mut self, now: Instant) {
        if self.fenced.is_some() || self.left {
            return self.lose_authority();
        }
        let Some(v) = self.installed.clone() else {
            return self.lose_authority();
        };
        if !self.is_member() {
            return self.lose_authority();
        }
        // Confirmations: ours is now (or when we accepted a newer value: from then
        // on we may be about to leave this view's lineage). A peer's counts when
        // it gave it at our generation or an older one: a peer already in a newer
        // view vouches for that view, not for ours, and the race that may replace
        // that newer view cannot see our view's quorums. Peers stop confirming
        // once they accept a value for the next generation, so every quorum of our
        // view holds a confirmer that stopped before that value was decided.
        let own = self.accepted_at.map_or(now, |t| t.min(now));
        let mut conf: Vec<(Instant, NodeId)> = vec![(own, self.me)];
        for m in v.members.iter().filter(|m| m.id != self.me) {
            if let Some(info) = self.peers.get(&m.id) {
                if let Some((t, g)) = info.confirmed {
                    if info.incarnation == Some(m.incarnation) && g <= v.generation {
                        conf.push((t, m.id));
                    }
                }
            }
        }
        conf.sort_by(|a, b| b.cmp(a));
        // The lease is what a quorum of *this* view confirmed: never carried over
        // from an earlier view, whose quorums need not meet the next race's.
        let mut who = NodeSet::EMPTY;
        self.lease_until = None;
        for (t, id) in &conf {
            who.insert(*id);
            if has_quorum(v.node_set(), who) {
                self.lease_until = Some(*t + self.cfg.lease);
                break;
            }
        }
        let newer = self
            .peers
            .values()
            .any(|i| i.up && i.generation > v.generation);
        let holds = self.client_view.is_some()
            && self.lease_until.is_some_and(|l| now < l)
            && !newer
            && !self.leave_requested;
        if holds && !self.authority {
            self.authority = true;
            self.event(FenceEvent::AuthorityGained {
                generation: v.generation,
            });
        } else if !holds {
            self.lose_authority();
        }
    }

    fn lose_authority(&mut self) {
        if self.authority {
            self.authority = false;
            let generation = self.advertised_generation();
            self.event(FenceEvent::AuthorityLost { generation });
        }
    }

    fn self_fence(&mut self, reason: FenceReason) {
        self.race = None;
        self.lose_authority();
        if !self.cfg.self_fence {
            // Fencing disabled: drop out of the view and wait, unseeded.
            self.installed = None;
            self.client_view = None;
            self.pending_client = None;
            self.change_since = None;
            self.accepted = None;
            self.accepted_at = None;
            self.promised = Ballot::ZERO;
            return;
        }
        self.fenced = Some(reason.clone());
        self.loopback.clear();
        self.event(FenceEvent::SelfFence { reason });
    }

    fn install(&mut self, now: Instant, view: View, settle_until: Instant) {
        let prev = self.installed.take();
        if let Some(p) = &prev {
            for m in &p.members {
                if !view.contains(m.id, m.incarnation) {
                    if self.excluded.len() >= MAX_EXCLUDED {
                        self.excluded.pop_front();
                    }
                    self.excluded.push_back((m.id, m.incarnation));
                }
            }
        }
        let known = KnownView::of(&view);
        self.keep(|d| {
            d.highest = d.highest.max(view.generation);
            d.installed = Some(known);
            if d.accepted.is_some_and(|a| a.generation <= known.generation) {
                d.accepted = None;
            }
        });
        self.seed_waiting = None;
        self.promised = Ballot::ZERO;
        self.accepted = None;
        self.accepted_at = None;
        self.installed_at = now;
        if self.race.as_ref().is_some_and(|r| r.slot < view.generation) {
            self.race = None;
        }
        self.change_since = None;
        self.stale_since = None;
        self.seed_retry = None;
        self.manual_seed = false;
        let ids = view.node_set();
        self.joins.retain(|id, _| !ids.contains(*id));
        self.leaving = self.leaving.intersection(ids);
        if let Some(r) = &mut self.last_race {
            if r.verdict == RaceVerdict::Running {
                r.verdict = RaceVerdict::Won;
                r.duration = Some(now.saturating_since(r.started));
            }
        }
        // A settle window still running for the view replaced carries over: the
        // clients go from the view before it straight to this one, and not before
        // that window ends (see `on_accepted`).
        let settle_until = match self.pending_settle() {
            Some(t) if self.cfg.sabotage != Some(Sabotage::ZeroSettle) => settle_until.max(t),
            _ => settle_until,
        };
        self.installed = Some(view.clone());
        self.event(FenceEvent::ViewInstalled { view: view.clone() });
        if now >= settle_until {
            self.pending_client = None;
            self.settle_until = None;
            self.client_view = Some(view.clone());
            self.event(FenceEvent::ClientView { view });
        } else {
            self.pending_client = Some(view);
            self.settle_until = Some(settle_until);
        }
    }

    /// A decided view reached us (as racer, by `Decided`, or by catch-up).
    fn learn(&mut self, now: Instant, view: View, settle_until: Instant) {
        if view.generation <= self.advertised_generation() {
            return;
        }
        self.raise_highest(view.generation);
        if view.contains(self.me, self.incarnation) {
            self.install(now, view, settle_until);
        } else if self.installed.is_some() {
            if self.leave_requested {
                self.left = true;
                self.race = None;
                self.lose_authority();
                self.event(FenceEvent::Left {
                    generation: view.generation,
                });
            } else {
                // IOFENCE: a view exists that excludes us.
                self.self_fence(FenceReason::Excluded {
                    generation: view.generation,
                });
            }
        }
        // Unseeded and not in it: a cluster exists; the next step asks to join.
    }

    fn current_slot(&self) -> Generation {
        self.advertised_generation()
    }

    fn eligible(&self, slot: Generation) -> bool {
        if slot != self.current_slot() {
            return false;
        }
        if slot.0 == 0 {
            self.installed.is_none()
        } else {
            self.is_member()
        }
    }

    /// Refuse `from` in `slot`: our promise and the highest generation we have seen.
    fn nack(&mut self, from: NodeId, slot: Generation) {
        let msg = Msg::Nack {
            slot,
            promised: self.promised,
            highest: self.durable.highest,
        };
        self.send(from, msg);
    }

    fn on_message(&mut self, now: Instant, from: NodeId, msg: Msg) {
        match msg {
            Msg::Reach {
                up,
                ports,
                highest,
                installed: _,
            } => {
                let since = match self.reports.get(&from) {
                    Some(r) if r.up == up => r.since,
                    _ => now,
                };
                self.reports.insert(
                    from,
                    Report {
                        up,
                        ports,
                        highest,
                        since,
                    },
                );
            }
            Msg::Prepare { slot, ballot } => {
                if let Some(v) = self.installed.clone() {
                    if slot < v.generation {
                        let settle_us = self
                            .pending_settle()
                            .map_or(0, |t| micros(t.saturating_since(now)));
                        self.send(from, Msg::Decided { view: v, settle_us });
                        return;
                    }
                }
                if !self.eligible(slot) {
                    return;
                }
                if ballot >= self.promised {
                    self.promised = ballot;
                    self.note_race(now, slot, ballot, None);
                    let accepted = self.accepted.clone();
                    self.send(
                        from,
                        Msg::Promise {
                            slot,
                            ballot,
                            accepted,
                        },
                    );
                } else {
                    self.nack(from, slot);
                }
            }
            Msg::Accept {
                slot,
                ballot,
                value,
                manual,
            } => {
                if !self.eligible(slot) {
                    return;
                }
                // A seed is accepted only by a node that sees it holds a quorum of
                // every view this node knows (which may still run elsewhere), or
                // when an operator seeds by hand.
                if slot.0 == 0
                    && !manual
                    && self.cfg.sabotage != Some(Sabotage::SeedWithoutViews)
                    && !self.seed_allowed(value.node_set())
                {
                    self.nack(from, slot);
                    return;
                }
                let fresh_seed = slot.0 > 0
                    || value.generation > self.durable.highest
                    || self
                        .accepted
                        .as_ref()
                        .is_some_and(|(_, a)| a.generation == value.generation);
                if ballot < self.promised || !fresh_seed {
                    self.nack(from, slot);
                    return;
                }
                self.promised = ballot;
                let newer = self
                    .durable
                    .installed
                    .is_none_or(|i| value.generation > i.generation);
                let known = KnownView::of(&value);
                self.keep(|d| {
                    d.highest = d.highest.max(value.generation);
                    if newer {
                        d.accepted = Some(known);
                    }
                });
                self.note_race(now, slot, ballot, Some(value.node_set()));
                let heard_ago_us = match &self.installed {
                    Some(v) => v
                        .members
                        .iter()
                        .filter(|m| value.member(m.id).is_none() && m.id != self.me)
                        .map(|m| {
                            let ago = self
                                .peers
                                .get(&m.id)
                                .and_then(|i| i.last_heard)
                                .map_or(u64::MAX, |t| micros(now.saturating_since(t)));
                            (m.id, ago)
                        })
                        .collect(),
                    // Seeding: members of the views this node knew that the seed
                    // leaves out may still hold a lease confirmed by this node's
                    // earlier incarnation, up to now: the seed reaches clients only
                    // a lease after this.
                    None if self.cfg.sabotage != Some(Sabotage::SeedWithoutViews) => self
                        .durable
                        .views()
                        .fold(NodeSet::EMPTY, |acc, v| acc.union(v.members))
                        .difference(value.node_set())
                        .iter()
                        .filter(|m| *m != self.me)
                        .map(|m| (m, 0))
                        .collect(),
                    None => Vec::new(),
                };
                self.accepted = Some((ballot, value));
                self.accepted_at.get_or_insert(now);
                self.send(
                    from,
                    Msg::Accepted {
                        slot,
                        ballot,
                        heard_ago_us,
                    },
                );
            }
            Msg::Promise {
                slot,
                ballot,
                accepted,
            } => self.on_promise(now, from, slot, ballot, accepted),
            Msg::Accepted {
                slot,
                ballot,
                heard_ago_us,
            } => self.on_accepted(now, from, slot, ballot, heard_ago_us),
            Msg::Nack {
                slot,
                promised,
                highest,
            } => {
                let Some(race) = &mut self.race else { return };
                if race.slot != slot {
                    return;
                }
                self.max_round = self.max_round.max(promised.round);
                if promised > race.ballot || (slot.0 == 0 && highest >= race.own.generation) {
                    // Outbid (or, seeding, our generation is too low): a new ballot.
                    self.max_round = self.max_round.saturating_add(1);
                    race.ballot = Ballot {
                        round: self.max_round,
                        node: self.me,
                        incarnation: self.incarnation,
                    };
                    if slot.0 == 0 && highest >= race.own.generation {
                        let Some(generation) = highest.next() else {
                            // Nothing above: this seed race cannot be won.
                            return;
                        };
                        let members = race.own.members.clone();
                        race.own = View::new(generation, members, None);
                    }
                    race.phase = Phase::Prepare {
                        promises: BTreeMap::new(),
                    };
                    race.next_send = now;
                } else if slot.0 == 0 {
                    // A member of the group refused the seed: it knows a view whose
                    // quorum the group lacks. Every member must accept a seed, so
                    // this one is lost; try again once the group may have changed.
                    race.deadline = now;
                    self.seed_refused = true;
                    self.race_step(now);
                }
            }
            Msg::Decided { view, settle_us } => {
                let settle = self.drift(Duration::from_micros(settle_us));
                self.learn(now, view, now + settle);
            }
            Msg::Lost { slot } => {
                let racer = self
                    .installed
                    .as_ref()
                    .and_then(|v| self.live_members(v).min());
                if slot == self.current_slot()
                    && slot.0 > 0
                    && self.is_member()
                    && racer == Some(from)
                {
                    if let Some(r) = &mut self.last_race {
                        r.verdict = RaceVerdict::Lost;
                        r.duration = Some(now.saturating_since(r.started));
                    }
                    self.self_fence(FenceReason::RaceLost { slot });
                }
            }
            Msg::Join { incarnation, ports } => {
                if let Some(v) = &self.installed {
                    if self.excluded.contains(&(from, incarnation)) {
                        // It was made a member of a view it never learned, and
                        // dropped since: this incarnation can never join again.
                        let generation = v.generation;
                        self.send(
                            from,
                            Msg::Excluded {
                                incarnation,
                                generation,
                            },
                        );
                    } else {
                        self.joins.insert(from, (incarnation, ports, now));
                    }
                }
            }
            Msg::Excluded {
                incarnation,
                generation,
            } => {
                if incarnation == self.incarnation && self.fenced.is_none() && !self.left {
                    self.raise_highest(generation);
                    self.self_fence(FenceReason::Excluded { generation });
                }
            }
            Msg::Leave => {
                if self
                    .installed
                    .as_ref()
                    .is_some_and(|v| v.member(from).is_some())
                {
                    self.leaving.insert(from);
                }
            }
        }
    }

    /// Spectators keep a record of the race they take part in.
    fn note_race(
        &mut self,
        now: Instant,
        slot: Generation,
        ballot: Ballot,
        proposal: Option<NodeSet>,
    ) {
        if ballot.node == self.me {
            return;
        }
        let same = self.last_race.as_ref().is_some_and(|r| {
            r.slot == slot && r.racer == ballot.node && r.verdict == RaceVerdict::Running
        });
        if same {
            if let (Some(r), Some(p)) = (&mut self.last_race, proposal) {
                r.proposal = p;
            }
            return;
        }
        self.last_race = Some(RaceRecord {
            slot,
            racer: ballot.node,
            proposal: proposal.unwrap_or(NodeSet::EMPTY),
            started: now,
            duration: None,
            verdict: RaceVerdict::Running,
        });
    }

    fn on_promise(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Generation,
        ballot: Ballot,
        accepted: Option<(Ballot, View)>,
    ) {
        let Some(race) = &mut self.race else { return };
        if race.slot != slot || race.ballot != ballot {
            return;
        }
        let Phase::Prepare { promises } = &mut race.phase else {
            return;
        };
        promises.insert(from, accepted);
        let who: NodeSet = promises.keys().copied().collect();
        if !race.quorum.met(who, self.cfg.sabotage) {
            return;
        }
        // The value: the highest-ballot one already accepted, else our own.
        let value = promises
            .values()
            .flatten()
            .max_by_key(|(b, _)| *b)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| race.own.clone());
        race.phase = Phase::Accept {
            value,
            accepts: BTreeMap::new(),
        };
        race.next_send = now;
        self.race_step(now);
    }

    fn on_accepted(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Generation,
        ballot: Ballot,
        heard: Vec<(NodeId, u64)>,
    ) {
        // A node whose user space hangs holds its lease at most `lease`, and its
        // watchdog resets it at most the watchdog's timeout after its last pet.
        let lease = self.drift(self.cfg.lease + self.cfg.watchdog.unwrap_or_default());
        let Some(race) = &mut self.race else { return };
        if race.slot != slot || race.ballot != ballot {
            return;
        }
        let Phase::Accept { value, accepts } = &mut race.phase else {
            return;
        };
        accepts.insert(from, (now, heard));
        let who: NodeSet = accepts.keys().copied().collect();
        if !race.quorum.met(who, self.cfg.sabotage) {
            return;
        }
        let value = value.clone();
        // Settle: every excluded member's lease has lapsed once the latest time any
        // acceptor heard it, plus the lease, has passed (with drift on both).
        let drift = self.cfg.max_drift_ppm;
        let mut settle_end = now;
        // An excluded member may still hold a lease on an older view than ours (it
        // never learned ours). Such a lease rests on confirmations given at that
        // older generation, which every confirmer stopped giving when it accepted
        // the view we replace, before we installed it here.
        let excludes = self.installed.as_ref().is_some_and(|v| {
            v.members
                .iter()
                .any(|m| !value.contains(m.id, m.incarnation))
        });
        if excludes {
            settle_end = settle_end.max(self.installed_at + lease);
        }
        for (received, heard) in accepts.values() {
            for (_, ago) in heard {
                if *ago == u64::MAX {
                    continue;
                }
                // From the network: saturating, never a panic or a wrap.
                let ago = Duration::from_micros(*ago);
                let ago = ago.saturating_sub(ago.saturating_mul(drift) / 1_000_000);
                let ago_ns = u64::try_from(ago.as_nanos()).unwrap_or(u64::MAX);
                let heard_at = Instant::from_nanos(received.as_nanos().saturating_sub(ago_ns));
                let lapse = heard_at + lease;
                settle_end = settle_end.max(lapse);
            }
        }
        let started = race.started;
        let duration = now.saturating_since(started);
        self.race = None;
        self.event(FenceEvent::RaceWon {
            generation: value.generation,
            members: value.node_set(),
            duration,
        });
        if let Some(r) = &mut self.last_race {
            r.verdict = RaceVerdict::Won;
            r.duration = Some(duration);
        }
        // A view change decided while the settle window of the view it replaces
        // still runs ends no earlier: that window covers members an earlier view
        // dropped, which may still hold a lease, and this view (a join, say, which
        // drops nobody) must not reach any client before it has passed. Without
        // this the random sweep found a racer that dropped a member (settle
        // pending) and at once decided a join, handing it to its clients while the
        // dropped member still held authority (S1, seeds 61399 and 62030).
        if let Some(t) = self.pending_settle() {
            settle_end = settle_end.max(t);
        }
        if self.cfg.sabotage == Some(Sabotage::ZeroSettle) {
            settle_end = now;
        }
        let settle_us = micros(settle_end.saturating_since(now));
        let up = self.up_set();
        let me = self.me;
        for p in up.iter().filter(|p| *p != me) {
            self.send(
                p,
                Msg::Decided {
                    view: value.clone(),
                    settle_us,
                },
            );
        }
        self.learn(now, value, settle_end);
    }
}
