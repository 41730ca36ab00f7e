//! The fence core: the view change *is* the race.
//!
//! Each generation's successor is decided by single-decree Paxos among the members
//! of the current view, with [`has_quorum`](crate::has_quorum) over that view as the
//! quorum system. A side's racer is its lowest reachable member; a racer that finds
//! no quorum within `race_timeout` has lost, and its side fences itself. Seeding is a
//! Paxos instance of its own among unseeded nodes, decided by `seed` accepts.
//!
//! Authority is a lease: a member holds it while a quorum of its view has recently
//! confirmed hearing it (llt's echoed timestamps, on the member's own clock).
//! Survivors hand a new view to clients only once every excluded member's lease has
//! provably lapsed (the settle window, computed from what the accepting quorum last
//! heard from it).

use crate::types::{
    Durable, FenceConfig, FenceEvent, FenceReason, FenceStatus, KnownView, NodeState, RaceVerdict,
    Sabotage,
};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use vigil_llt::types::{Generation, Incarnation, Instant, NodeId};
use vigil_membership::{Ballot, Msg, NodeSet, PortMask, View};

mod acceptor;
mod lease;
mod peers;
mod racer;
mod reach;
mod seeding;
mod timers;

#[cfg(test)]
mod tests;

use acceptor::AcceptorState;
use lease::LeaseState;
use peers::PeerTable;
use racer::RaceState;
use reach::ReachState;
use seeding::SeedState;
use timers::Timers;

/// Past this many queued outputs the driver has stopped draining: each one more is
/// counted as an overflow (and still kept).
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
    /// Up, but silent on every link for `peer_trouble`: likely to go DOWN with the
    /// peers that already did (a racer waits a little to remove them together).
    pub quiet: bool,
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

/// The fence core of one node.
#[derive(Clone, Debug)]
pub struct Fence {
    cfg: FenceConfig,
    me: NodeId,
    incarnation: Incarnation,
    /// The transport's view of every peer, as of the last `observe`.
    peers: PeerTable,
    /// What peers report they reach; our own reports and catch-ups.
    reach: ReachState,
    /// Shared, so that a step reads it while it changes the rest of the core
    /// without copying its members.
    installed: Option<Arc<View>>,
    /// When the installed view was installed here.
    installed_at: Instant,
    /// What survives a restart: the highest generation, the last view installed
    /// and the last value accepted.
    durable: Durable,
    /// What this node promised and accepted in the current slot.
    acceptor: AcceptorState,
    /// The race this node runs or waits for.
    racing: RaceState,
    /// Seeding and joining, before the first view.
    seeding: SeedState,
    /// Authority, its lease and what clients see.
    lease: LeaseState,
    joins: BTreeMap<NodeId, (Incarnation, PortMask, Instant)>,
    leaving: NodeSet,
    excluded: VecDeque<(NodeId, Incarnation)>,
    ports: PortMask,
    fenced: Option<FenceReason>,
    left: bool,
    leave_requested: bool,
    last_leave: Option<Instant>,
    /// Messages to ourselves (our own promise and accept), handled within the step
    /// that queued them: at most a few per step, so bounded by construction.
    loopback: VecDeque<(NodeId, Msg)>,
    /// A peer's up state, incarnation, generation or quietness changed since the
    /// last step (what the step decides on, besides time and messages).
    news: bool,
    outputs: VecDeque<FenceOutput>,
    /// Outputs queued beyond [`MAX_OUTPUTS`] (kept, never dropped).
    output_overflows: u64,
    /// The durable state as of the last `Persist` queued: what outputs after it may
    /// rely on.
    persisted: Durable,
    bad_messages: u64,
    now: Instant,
    /// [`Fence::poll_timeout`] as last computed: `None` once an input may have
    /// changed it (every `&mut` method but `poll_output` clears it first).
    deadline: Cell<Option<Option<Instant>>>,
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
        let durable = persisted.into();
        Fence {
            cfg,
            me,
            incarnation,
            peers: PeerTable::default(),
            reach: ReachState::default(),
            installed: None,
            installed_at: now,
            durable,
            acceptor: AcceptorState::default(),
            racing: RaceState::default(),
            seeding: SeedState::default(),
            lease: LeaseState::default(),
            joins: BTreeMap::new(),
            leaving: NodeSet::EMPTY,
            excluded: VecDeque::new(),
            ports: 0,
            fenced: None,
            left: false,
            leave_requested: false,
            last_leave: None,
            loopback: VecDeque::new(),
            news: true,
            outputs: VecDeque::new(),
            output_overflows: 0,
            persisted: durable,
            bad_messages: 0,
            now,
            deadline: Cell::new(None),
        }
    }

    // ----- queries -------------------------------------------------------------

    /// The generation to advertise in llt frames: the installed one, 0 if none.
    pub fn advertised_generation(&self) -> Generation {
        self.installed
            .as_ref()
            .map_or(Generation(0), |v| v.generation)
    }

    pub fn fenced(&self) -> bool {
        self.fenced.is_some()
    }

    /// Left the cluster gracefully (after [`Fence::leave`]).
    pub fn left(&self) -> bool {
        self.left
    }

    pub fn installed(&self) -> Option<&View> {
        self.installed.as_deref()
    }

    pub fn client_view(&self) -> Option<&View> {
        self.lease.client_view.as_ref()
    }

    pub fn status(&self) -> FenceStatus {
        FenceStatus {
            state: self.state(),
            authority: self.lease.authority,
            self_fence: self.cfg.self_fence,
            installed: self.installed.as_deref().cloned(),
            client_view: self.lease.client_view.clone(),
            highest_generation: self.durable.highest,
            durable: self.durable,
            lease_until: self.lease.lease_until,
            settle_until: self.lease.settle_until,
            last_race: self.racing.last_race.clone(),
            fenced: self.fenced.clone(),
            bad_messages: self.bad_messages,
            output_overflows: self.output_overflows,
        }
    }

    fn state(&self) -> NodeState {
        if self.fenced.is_some() {
            NodeState::Fenced
        } else if self.left {
            NodeState::Left
        } else if self.installed.is_none() {
            NodeState::Unseeded
        } else if self.racing.race.is_some()
            || self.racing.change_since.is_some()
            || self.racing.stale_since.is_some()
        {
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

    /// Queue `o`, checking on the way the invariants that are cheap to check (kept on
    /// in release builds): nothing follows a self-fence, and what an output relies on
    /// was persisted before it.
    ///
    /// Nothing is ever dropped: the driver drains the queue after every `handle_*`,
    /// and one step queues a bounded number of outputs (a few per peer and message),
    /// so [`MAX_OUTPUTS`] is only passed by a driver that stopped draining. Every
    /// output queued beyond it is counted (`output_overflows` in the status) and
    /// still kept: a `Persist` or a `SelfFence` must never be lost.
    fn push(&mut self, o: FenceOutput) {
        assert!(
            self.fenced.is_none() || matches!(o, FenceOutput::Event(FenceEvent::SelfFence { .. })),
            "fence: {o:?} queued after a self-fence"
        );
        match &o {
            FenceOutput::Persist(d) => {
                assert!(
                    d.highest >= self.persisted.highest,
                    "fence: the persisted highest generation went back from {} to {}",
                    self.persisted.highest.0,
                    d.highest.0
                );
                self.persisted = *d;
            }
            FenceOutput::Send {
                msg: Msg::Accepted { .. },
                ..
            } => {
                let g = self.acceptor.accepted.as_ref().map(|(_, v)| v.generation);
                assert!(
                    g.is_some_and(|g| g <= self.persisted.highest),
                    "fence: Accepted sent for generation {g:?} before it was persisted"
                );
            }
            FenceOutput::Send {
                msg: Msg::Decided { view, .. },
                ..
            } => assert!(
                view.generation <= self.persisted.highest,
                "fence: Decided sent for generation {} before it was persisted",
                view.generation.0
            ),
            FenceOutput::Event(FenceEvent::ViewInstalled { view }) => assert!(
                self.persisted.installed == Some(KnownView::of(view)),
                "fence: view {} installed before it was persisted",
                view.generation.0
            ),
            _ => {}
        }
        if self.outputs.len() >= MAX_OUTPUTS {
            self.output_overflows = self.output_overflows.saturating_add(1);
        }
        self.outputs.push_back(o);
    }

    /// Promise `ballot` in the current slot: promises never go back within a slot.
    fn promise(&mut self, ballot: Ballot) {
        assert!(
            ballot >= self.acceptor.promised,
            "fence: promise went back from {:?} to {ballot:?}",
            self.acceptor.promised
        );
        self.acceptor.promised = ballot;
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
        assert!(
            self.durable.highest >= before.highest,
            "fence: the highest generation went back from {} to {}",
            before.highest.0,
            self.durable.highest.0
        );
        if self.durable != before {
            self.push(FenceOutput::Persist(self.durable));
        }
    }

    fn raise_highest(&mut self, g: Generation) {
        self.keep(|d| d.highest = d.highest.max(g));
    }

    pub fn poll_output(&mut self) -> Option<FenceOutput> {
        self.outputs.pop_front()
    }

    // ----- inputs --------------------------------------------------------------

    /// The transport's view of every peer, before a step.
    pub fn observe(&mut self, peers: impl IntoIterator<Item = (NodeId, PeerInfo)>) {
        for (id, info) in peers {
            if id != self.me {
                // The timer table reads a peer's up state and generation (catch-up,
                // join retries): the cached deadline is stale only when one changes.
                let timed = |i: &PeerInfo| (i.up, i.generation);
                let known = self.peers.get(&id);
                if known.map(timed) != Some(timed(&info)) {
                    self.deadline.set(None);
                }
                let decides = |i: &PeerInfo| (i.up, i.incarnation, i.generation, i.quiet);
                if known.map(decides) != Some(decides(&info)) {
                    self.news = true;
                }
                self.peers.insert(id, info);
            }
        }
    }

    /// `gabconfig -x`: seed with whoever is reachable.
    pub fn manual_seed(&mut self, now: Instant) {
        self.deadline.set(None);
        if self.installed.is_none() && self.fenced.is_none() {
            self.seeding.manual_seed = true;
            self.seeding.seed_retry = None;
            self.step(now);
        }
    }

    /// Fence at once for a reason found outside the race (a failed health probe, a
    /// stall longer than the lease). Nothing happens if already fenced or left.
    pub fn fence_now(&mut self, now: Instant, reason: FenceReason) {
        self.deadline.set(None);
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
        self.deadline.set(None);
        if let Some(r) = &mut self.racing.race {
            r.deadline += stall;
        }
        if let Some(t) = &mut self.racing.change_since {
            *t += stall;
        }
        if let Some(t) = &mut self.racing.stale_since {
            *t += stall;
        }
    }

    /// Whether the node is in a view (a member, or racing for the next view).
    pub fn in_view(&self) -> bool {
        self.is_member()
    }

    /// `vigil stop`: leave the cluster gracefully.
    pub fn leave(&mut self, now: Instant) {
        self.deadline.set(None);
        if self.fenced.is_some() || self.left {
            return;
        }
        self.leave_requested = true;
        if !self.is_member() {
            self.left = true;
            self.racing.race = None;
            let g = self.advertised_generation();
            self.lose_authority();
            self.event(FenceEvent::Left { generation: g });
            return;
        }
        self.step(now);
    }

    /// Register the local node on the ports in `mask` (bit 0 = `a`).
    pub fn set_ports(&mut self, now: Instant, mask: PortMask) {
        self.deadline.set(None);
        self.ports = mask;
        self.reach.last_reach = None;
        self.step(now);
    }

    /// A message from `from` on port `b`.
    pub fn handle_message(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        self.deadline.set(None);
        match Msg::decode(bytes) {
            Ok(Msg::Reach {
                up,
                ports,
                highest,
                installed: _,
            }) if self.loopback.is_empty()
                && self
                    .reach
                    .reports
                    .get(&from)
                    .is_some_and(|r| r.up == up && r.ports == ports && r.highest == highest) =>
            {
                // The same report again (every fourth heartbeat in a quiet
                // cluster): it changes nothing the step reads. Not even the core's
                // clock moves: the timer table is read against it, and a deadline
                // passed without a step would drop out of it unhandled.
            }
            Ok(msg) => {
                self.loopback.push_back((from, msg));
                self.step(now);
            }
            Err(_) => self.bad_messages = self.bad_messages.saturating_add(1),
        }
    }

    /// Timers: race retransmits and deadlines, settle, leases, reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.deadline.set(None);
        let t = self.timers();
        let refresh_due = t.lease_refresh.is_some_and(|r| r <= now);
        let other_due = Timers {
            lease_refresh: None,
            ..t
        }
        .next()
        .is_some_and(|d| d <= now);
        if refresh_due && !other_due && !self.news && self.loopback.is_empty() {
            // Only the lease's refresh is due and no peer changed: recompute the
            // lease from the confirmations that came, nothing else.
            self.now = self.now.max(now);
            let now = self.now;
            self.authority_step(now);
            return;
        }
        self.step(now);
    }

    /// When the core next needs [`Fence::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(d) = self.deadline.get() {
            debug_assert_eq!(d, self.timers().next(), "a stale cached deadline");
            return d;
        }
        let d = self.timers().next();
        self.deadline.set(Some(d));
        d
    }

    // ----- the step ------------------------------------------------------------

    fn step(&mut self, now: Instant) {
        self.news = false;
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
        if self.is_witness() {
            // An acceptor (handled above, with the views it learns) and a joiner:
            // it never seeds, races, waits as a spectator or catches others up (its
            // Decided would carry no settle window).
            if self.installed.is_none() {
                self.unseeded_step(now);
            }
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

    /// This core is a cluster's witness (`vigil witness`): an acceptor and a
    /// confirmer only.
    pub fn is_witness(&self) -> bool {
        self.cfg.witness && self.me == crate::WITNESS_ID
    }

    /// Whether `id` is this cluster's witness (seen from anywhere, the witness's
    /// own core included).
    fn is_witness_id(&self, id: NodeId) -> bool {
        self.cfg.witness && id == crate::WITNESS_ID
    }

    /// `set` without the witness: the nodes, whose reachability a view change is
    /// about (the witness needs to reach only the racer).
    fn nodes_of(&self, set: NodeSet) -> NodeSet {
        let mut s = set;
        if self.cfg.witness {
            s.remove(crate::WITNESS_ID);
        }
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
        self.seeding.seed_waiting = None;
        self.acceptor.promised = Ballot::ZERO;
        self.acceptor.accepted = None;
        self.acceptor.accepted_at = None;
        self.installed_at = now;
        if self
            .racing
            .race
            .as_ref()
            .is_some_and(|r| r.slot < view.generation)
        {
            self.racing.race = None;
        }
        self.racing.change_since = None;
        self.racing.stale_since = None;
        self.seeding.seed_retry = None;
        self.seeding.manual_seed = false;
        let ids = view.node_set();
        self.joins.retain(|id, _| !ids.contains(*id));
        self.leaving = self.leaving.intersection(ids);
        if let Some(r) = &mut self.racing.last_race {
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
        self.installed = Some(Arc::new(view.clone()));
        self.event(FenceEvent::ViewInstalled { view: view.clone() });
        if now >= settle_until {
            self.lease.pending_client = None;
            self.lease.settle_until = None;
            self.lease.client_view = Some(view.clone());
            self.event(FenceEvent::ClientView { view });
        } else {
            self.lease.pending_client = Some(view);
            self.lease.settle_until = Some(settle_until);
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
                self.racing.race = None;
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

    /// One message, to the part of the core it is for.
    fn on_message(&mut self, now: Instant, from: NodeId, msg: Msg) {
        match msg {
            Msg::Reach {
                up,
                ports,
                highest,
                installed: _,
            } => self.on_reach(now, from, up, ports, highest),
            Msg::Prepare { slot, ballot } => self.on_prepare(now, from, slot, ballot),
            Msg::Accept {
                slot,
                ballot,
                value,
                manual,
            } => self.on_accept(now, from, slot, ballot, value, manual),
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
            } => self.on_nack(now, slot, promised, highest),
            Msg::Decided { view, settle_us } => {
                let settle = self.drift(Duration::from_micros(settle_us));
                self.learn(now, view, now + settle);
            }
            Msg::Lost { slot } => self.on_lost(now, from, slot),
            Msg::Join { incarnation, ports } => self.on_join(now, from, incarnation, ports),
            Msg::Excluded {
                incarnation,
                generation,
            } => self.on_excluded(incarnation, generation),
            Msg::Leave => self.on_leave(from),
        }
    }
}
