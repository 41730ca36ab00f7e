//! `Node`: the one sans-IO state machine a vigil node runs, composed of the llt
//! transport and the fence core (views, the race, leases). The daemon and the
//! simulator both drive it.

use crate::health::{Health, HealthOutput, OnFailure, ProbeEvent, ProbeId, ProbeSpec, ProbeStatus};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::VecDeque;
use std::time::Duration;
use vigil_fence::{
    Durable, Fence, FenceConfig, FenceEvent, FenceOutput, FenceReason, FenceStatus, PeerInfo,
    StallAction,
};
use vigil_llt::types::{Generation, Incarnation, Instant, LinkAddr, LinkId, NodeId, Port};
use vigil_llt::{FrameKey, Llt, LltConfig, SendError};
use vigil_membership::{port_bit, NodeSet, PortMask, View};

pub use vigil_llt::{ConfigError, Deliver, Event as LltEvent, Status as LltStatus, Transmit};

/// Past this many queued outputs the driver has stopped draining: every output
/// beyond it is counted (`Status::output_overflows`) and kept, never dropped (a lost
/// transmit or delivery would be a silent fault; the fence core's own queue keeps
/// its `Persist` and `SelfFence` the same way).
const MAX_OUTPUTS: usize = 64 * 1024;

/// What a node step produced, drained in order with [`Node::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A frame to put on a link.
    Transmit(Transmit),
    /// A port message for a client.
    Deliver(Deliver),
    /// Something that happened in the transport.
    Llt(LltEvent),
    /// Something that happened in membership and fencing. On
    /// [`FenceEvent::SelfFence`] the driver acts at once (the node already stopped
    /// sending).
    Fence(FenceEvent),
    /// Make this state durable (the highest generation and the views known; write,
    /// fsync, rename) before carrying out any output that follows it.
    Persist(Durable),
    /// Run this health probe now, off the heartbeat path, and hand its result to
    /// [`Node::probe_result`]. A run that does not answer within the probe's
    /// timeout has failed.
    RunProbe(ProbeId),
    /// Something about the node's own health: probes, stalls.
    Health(HealthEvent),
    /// After a stall longer than its lease (`stall_action = "rejoin"`), the node
    /// stopped presenting itself as a member: the driver calls [`Node::rejoin`]
    /// with a new, larger incarnation.
    Rejoin { stall: Duration },
}

/// The node's own health, for the logs and the commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthEvent {
    /// A probe failed, recovered, or reached its threshold (then the node stops
    /// being a member).
    Probe(ProbeEvent),
    /// A graceful leave after a failed probe did not complete in time: the node
    /// fences itself instead.
    LeaveTimedOut { probe: String },
    /// The node was not running for `length` (its timers fired that late). Its
    /// peers' silence during that time is not held against them.
    Stall { length: Duration, worst: Duration },
}

/// The node's own stalls: how late its timers fired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallStatus {
    /// Stalls longer than `stall_report`.
    pub count: u64,
    /// The longest stall since start.
    pub worst: Duration,
    /// The last stall longer than `stall_report`, and when it ended.
    pub last: Option<(Duration, Instant)>,
    /// Time lost in stalls longer than `stall_report`.
    pub total: Duration,
}

/// The node's health as the commands show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub probes: Vec<ProbeStatus>,
    pub stalls: StallStatus,
    /// The probe that failed and took the node out, if any.
    pub unhealthy: Option<String>,
    /// Health outputs queued while that queue held its bound (none dropped).
    #[serde(default)]
    pub output_overflows: u64,
}

/// A snapshot of the whole node, for the inspection commands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub llt: LltStatus,
    pub fence: FenceStatus,
    #[serde(default)]
    pub health: HealthStatus,
    /// The authority the node held at the snapshot's time
    /// ([`Node::current_authority`]); `None` when it held none.
    #[serde(default)]
    pub authority: Option<Authority>,
    /// Node outputs queued while its queue held its bound: the driver stopped
    /// draining it. None is dropped; non-zero is a bug to report.
    #[serde(default)]
    pub output_overflows: u64,
}

/// What a client of this node may act on right now: the view, whether this node is
/// its primary, and the fencing token to present to shared storage. From
/// [`Node::current_authority`]; see `docs/fencing.md`, "The primary and the
/// fencing token".
///
/// At no instant do two nodes hold an `Authority` with `is_primary` (the
/// simulator's S5), and the token of a new primary is above every token the
/// previous one held: storage that remembers the highest token it has seen and
/// refuses lower ones refuses a deposed primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// The fencing token: the generation of `view`, the view clients act on. It
    /// strictly increases with every change of primary (and grows with every view
    /// change clients see).
    pub token: Generation,
    /// The client view: the installed view once its settle window has passed, the
    /// one before until then.
    pub view: View,
    /// The generation of the installed view: `token` or above (above during a
    /// settle window). Not a token: clients act on `view`.
    pub installed: Generation,
    /// The primary of `view`.
    pub primary: NodeId,
    /// Whether this node (this incarnation) is `primary`.
    pub is_primary: bool,
    /// When the lease behind this authority lapses, on the node's own clock, unless
    /// a later step extends it. Check [`Node::current_authority`] again before
    /// acting after this.
    pub valid_until: Instant,
}

/// One vigil node as a sans-IO state machine.
#[derive(Clone, Debug)]
pub struct Node {
    llt: Llt,
    fence: Fence,
    ports: PortMask,
    outputs: VecDeque<Output>,
    /// Outputs queued beyond [`MAX_OUTPUTS`] (kept, never dropped).
    output_overflows: u64,
    /// Fingerprint of the peer facts the fence core last stepped on.
    peer_print: u64,
    /// The fence core has not stepped since an input that bypasses the fingerprint.
    fresh: bool,
    /// The peers llt currently confirms.
    confirming: NodeSet,
    /// The configs, kept to start again as a new incarnation.
    llt_cfg: LltConfig,
    fence_cfg: FenceConfig,
    health: Health,
    stalls: StallStatus,
    /// When the node last took an input (a frame, a timeout, a request).
    last_input: Instant,
    /// A failed probe made the node leave: fence if not gone by then.
    leave_deadline: Option<(Instant, String)>,
    unhealthy: Option<String>,
    /// Waiting for the driver to call [`Node::rejoin`].
    rejoining: bool,
    /// [`Node::poll_timeout`] as last computed: `None` once any input may have
    /// changed it (every `&mut` method but `poll_output` clears it first).
    deadline: Cell<Option<Option<Instant>>>,
    /// The fence core was handed an input since the transport last took its
    /// advertised generation and confirm set (see [`Node::fence_mut`]).
    fence_dirty: bool,
}

impl Node {
    /// A node `me` in `incarnation`, started at `now`, with what it kept durably
    /// before (from its state file): the generations it has seen and the views it
    /// knew (a bare [`Generation`] converts into one with no views).
    pub fn new(
        llt: LltConfig,
        fence: FenceConfig,
        me: NodeId,
        incarnation: Incarnation,
        now: Instant,
        rng_seed: u64,
        persisted: impl Into<Durable>,
    ) -> Result<Node, ConfigError> {
        let persisted: Durable = persisted.into();
        if persisted.highest.next().is_none() {
            return Err(ConfigError(format!(
                "the persisted generation {} is at the top of its range ({}): no view can follow it",
                persisted.highest.0,
                Generation::MAX.0
            )));
        }
        let llt_cfg = llt.clone();
        let fence_cfg = fence.clone();
        let llt = Llt::new(llt, me, incarnation, now, rng_seed)?;
        let fence = Fence::new(fence, me, incarnation, now, persisted);
        let mut node = Node {
            llt,
            fence,
            ports: 0,
            outputs: VecDeque::new(),
            output_overflows: 0,
            peer_print: 0,
            fresh: true,
            confirming: NodeSet::EMPTY,
            llt_cfg,
            fence_cfg,
            health: Health::new(),
            stalls: StallStatus::default(),
            last_input: now,
            leave_deadline: None,
            unhealthy: None,
            rejoining: false,
            deadline: Cell::new(None),
            fence_dirty: true,
        };
        node.pump(now);
        Ok(node)
    }

    pub fn me(&self) -> NodeId {
        self.llt.me()
    }

    pub fn incarnation(&self) -> Incarnation {
        self.llt.incarnation()
    }

    /// A frame arrived on `link`.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        from: Option<LinkAddr>,
        bytes: &[u8],
    ) {
        self.deadline.set(None);
        if self.wake(now) {
            return;
        }
        self.llt.handle_frame(now, link, from, bytes);
        self.pump(now);
    }

    /// The deadline from [`Node::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.deadline.set(None);
        if self.wake(now) {
            return;
        }
        self.health.handle_timeout(now);
        if let Some((t, probe)) = self.leave_deadline.clone() {
            if now >= t {
                self.leave_deadline = None;
            }
            if now >= t && !self.left() && !self.fenced() {
                self.push(Output::Health(HealthEvent::LeaveTimedOut {
                    probe: probe.clone(),
                }));
                self.fence_mut()
                    .fence_now(now, FenceReason::Unhealthy { probe });
            }
        }
        self.llt.handle_timeout(now);
        // The fence core steps inside pump, after it has seen the transport's
        // latest facts (confirmations included).
        self.fresh = true;
        self.pump(now);
    }

    /// When the node next needs [`Node::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(d) = self.deadline.get() {
            debug_assert_eq!(d, self.next_deadline(), "a stale cached deadline");
            return d;
        }
        let d = self.next_deadline();
        self.deadline.set(Some(d));
        d
    }

    /// [`Node::poll_timeout`] computed afresh from the parts.
    fn next_deadline(&self) -> Option<Instant> {
        if self.rejoining {
            return None;
        }
        let fence = if self.llt.running() {
            self.fence.poll_timeout()
        } else {
            None
        };
        let gone = self.fenced() || self.left();
        let health = if gone {
            None
        } else {
            self.health.poll_timeout()
        };
        let leave = self
            .leave_deadline
            .as_ref()
            .filter(|_| !gone)
            .map(|(t, _)| *t);
        [self.llt.poll_timeout(), fence, health, leave]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every input first checks how long the node was away. A driver that wakes
    /// later than the deadline it was given was not running (a frozen process, a
    /// stunned VM, a long scheduling delay): that time is not held against any peer,
    /// and a stall longer than the lease ends the node's membership as configured.
    /// Returns true when the node stopped (it fenced itself or must rejoin).
    fn wake(&mut self, now: Instant) -> bool {
        let since = now.saturating_since(self.last_input);
        self.last_input = self.last_input.max(now);
        if self.rejoining {
            return true;
        }
        let report = self.fence_cfg.stall_report;
        // Inputs come at least every heartbeat while the node runs; only a long
        // quiet spell can hide a stall, so the deadline is looked at only then.
        if since <= report {
            return false;
        }
        let Some(deadline) = self.next_deadline() else {
            return false;
        };
        let late = now.saturating_since(deadline);
        if late <= report {
            return false;
        }
        self.stalls.count = self.stalls.count.saturating_add(1);
        self.stalls.total = self.stalls.total.saturating_add(late);
        self.stalls.worst = self.stalls.worst.max(late);
        self.stalls.last = Some((late, now));
        self.push(Output::Health(HealthEvent::Stall {
            length: late,
            worst: self.stalls.worst,
        }));
        self.llt.excuse(late);
        self.fence_mut().excuse(late);
        if late > self.fence_cfg.lease && self.fence.in_view() {
            match self.fence_cfg.stall_action {
                StallAction::Fence => {
                    let stall_ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX);
                    self.fence_mut()
                        .fence_now(now, FenceReason::Stalled { stall_ms });
                    self.pump(now);
                    return true;
                }
                StallAction::Rejoin => {
                    self.llt.silence();
                    self.rejoining = true;
                    self.push(Output::Rejoin { stall: late });
                    return true;
                }
            }
        }
        false
    }

    /// Start again as `incarnation` (larger than any before) after
    /// [`Output::Rejoin`]: a fresh transport and fence core that keep the highest
    /// generation seen, the registered ports and the probes. The node joins the
    /// running cluster like a rebooted one.
    pub fn rejoin(&mut self, now: Instant, incarnation: Incarnation, rng_seed: u64) {
        self.deadline.set(None);
        let me = self.me();
        let persisted = self.fence.status().durable;
        let Ok(llt) = Llt::new(self.llt_cfg.clone(), me, incarnation, now, rng_seed) else {
            // The same config was accepted at start; only a zero incarnation fails.
            return;
        };
        self.llt = llt;
        self.fence = Fence::new(self.fence_cfg.clone(), me, incarnation, now, persisted);
        self.fence_dirty = true;
        self.peer_print = 0;
        self.fresh = true;
        self.confirming = NodeSet::EMPTY;
        self.last_input = now;
        self.rejoining = false;
        if self.ports != 0 {
            {
                let ports = self.ports;
                self.fence_mut().set_ports(now, ports);
            }
        }
        self.pump(now);
    }

    /// Register a health probe (a custom check of an embedding daemon, or one of
    /// the daemon's configured probes); its first run is due at once.
    pub fn add_probe(&mut self, now: Instant, spec: ProbeSpec) -> ProbeId {
        self.deadline.set(None);
        let id = self.health.add(now, spec);
        self.pump(now);
        id
    }

    /// The answer to [`Output::RunProbe`]: `Err` says why the check failed.
    pub fn probe_result(&mut self, now: Instant, probe: ProbeId, result: Result<(), String>) {
        self.deadline.set(None);
        if self.wake(now) {
            return;
        }
        self.health.handle_result(now, probe, result);
        self.pump(now);
    }

    /// Act on what the health core said: probes to run, failures to log, and a
    /// failed probe that takes the node out.
    fn health_step(&mut self, now: Instant) {
        while let Some(h) = self.health.poll_output() {
            match h {
                HealthOutput::Run { probe } => self.push(Output::RunProbe(probe)),
                HealthOutput::Event(e) => {
                    self.push(Output::Health(HealthEvent::Probe(e.clone())));
                    let ProbeEvent::Unhealthy { name, action, .. } = e else {
                        continue;
                    };
                    if self.unhealthy.is_some() || self.fenced() || self.left() {
                        continue;
                    }
                    self.unhealthy = Some(name.clone());
                    self.observe();
                    if action == OnFailure::Fence || !self.fence.in_view() {
                        // Not in a view, it cannot leave; and it must not join.
                        self.fence
                            .fence_now(now, FenceReason::Unhealthy { probe: name });
                    } else {
                        self.fence_mut().leave(now);
                        // Detection of the leave, a race and its retries.
                        let bound = self.fence_cfg.race_timeout.saturating_mul(3)
                            + self.fence_cfg.peer_inactive;
                        self.leave_deadline = Some((now + bound, name));
                    }
                }
            }
        }
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// `gabconfig -x`: seed by hand with whoever is reachable.
    pub fn manual_seed(&mut self, now: Instant) {
        self.deadline.set(None);
        self.observe();
        self.fence_mut().manual_seed(now);
        self.pump(now);
    }

    /// `vigil stop`: leave the cluster gracefully; [`FenceEvent::Left`] follows.
    pub fn leave(&mut self, now: Instant) {
        self.deadline.set(None);
        if self.wake(now) {
            return;
        }
        self.observe();
        self.fence_mut().leave(now);
        self.pump(now);
    }

    /// Whether this node left the cluster (graceful stop or failed health).
    pub fn left(&self) -> bool {
        self.fence.left()
    }

    /// Register on a client port (`c`..=`z`; `a` and `b` are always there). The
    /// port's membership changes through a view change, like a join.
    pub fn register_port(&mut self, now: Instant, port: Port) -> bool {
        self.deadline.set(None);
        let Some(bit) = port_bit(port) else {
            return false;
        };
        self.ports |= bit;
        self.observe();
        {
            let ports = self.ports;
            self.fence_mut().set_ports(now, ports);
        }
        self.pump(now);
        true
    }

    /// Send a port message to one peer.
    pub fn send(
        &mut self,
        now: Instant,
        to: NodeId,
        port: Port,
        body: &[u8],
    ) -> Result<(), SendError> {
        self.deadline.set(None);
        let r = self.llt.send(now, to, port, body);
        self.pump(now);
        r
    }

    /// Send a port message to every peer that is up.
    pub fn broadcast(&mut self, now: Instant, port: Port, body: &[u8]) -> Result<usize, SendError> {
        self.deadline.set(None);
        let r = self.llt.broadcast(now, port, body);
        self.pump(now);
        r
    }

    /// The installed generation. Not the fencing token: during a settle window
    /// clients still act on the view before; the token is
    /// [`Authority::token`] from [`Node::current_authority`].
    pub fn generation(&self) -> Generation {
        self.fence.advertised_generation()
    }

    /// The view clients act on, if any.
    pub fn view(&self) -> Option<&View> {
        self.fence.client_view()
    }

    /// Whether this node held authority at its last step. Before acting on it,
    /// use [`Node::authority_at`] with the current time.
    pub fn authority(&self) -> bool {
        self.fence.authority()
    }

    /// Whether this node holds authority at `now` (its lease has not lapsed since
    /// the last step): what a client checks before it acts on the view.
    pub fn authority_at(&self, now: Instant) -> bool {
        self.fence.authority_at(now)
    }

    /// The authority this node holds at `now`, on its own clock: `None` unless
    /// [`Node::authority_at`]. A client acts on `view` as primary only when
    /// `is_primary`, and presents `token` to whatever it writes to.
    pub fn current_authority(&self, now: Instant) -> Option<Authority> {
        if !self.fence.authority_at(now) {
            return None;
        }
        let view = self.fence.client_view()?.clone();
        let valid_until = self.fence.lease_until()?;
        let is_primary = view
            .primary_member()
            .is_some_and(|m| m.id == self.me() && m.incarnation == self.incarnation());
        Some(Authority {
            token: view.generation,
            installed: self.fence.advertised_generation(),
            primary: view.primary,
            is_primary,
            valid_until,
            view,
        })
    }

    /// [`Node::current_authority`] without copying its view: the token and whether
    /// this process is the primary, `None` unless it holds authority at `now`.
    /// For drivers that ask after every event (the simulator's checker).
    pub fn current_token(&self, now: Instant) -> Option<(Generation, bool)> {
        if !self.fence.authority_at(now) {
            return None;
        }
        let view = self.fence.client_view()?;
        self.fence.lease_until()?;
        let is_primary = view
            .primary_member()
            .is_some_and(|m| m.id == self.me() && m.incarnation == self.incarnation());
        Some((view.generation, is_primary))
    }

    /// Whether this node fenced itself.
    pub fn fenced(&self) -> bool {
        self.fence.fenced()
    }

    /// True when the node refused to start (its ID is in use by a live node).
    pub fn refused(&self) -> bool {
        self.llt.refused()
    }

    /// Replace llt's key ring (a key rotation, `vigil key reload`): frames are sent
    /// with the first key from now on and accepted under any of them; a later
    /// [`rejoin`](Self::rejoin) keeps the new ring. An empty ring turns
    /// authentication off, which a keyed cluster never does: the caller checks.
    pub fn set_frame_keys(&mut self, keys: Vec<FrameKey>) {
        self.deadline.set(None);
        self.llt_cfg.keys = keys.clone();
        self.llt.set_keys(keys);
    }

    /// A side-effect-free snapshot, its authority as of the node's last input (a
    /// driver that reads a clock calls [`Node::status_at`]).
    pub fn status(&self) -> Status {
        self.status_at(self.last_input)
    }

    /// A side-effect-free snapshot, its authority at `now`.
    pub fn status_at(&self, now: Instant) -> Status {
        Status {
            authority: self.current_authority(now),
            llt: self.llt.status(),
            fence: self.fence.status(),
            health: HealthStatus {
                probes: self.health.status(),
                stalls: self.stalls.clone(),
                unhealthy: self.unhealthy.clone(),
                output_overflows: self.health.output_overflows(),
            },
            output_overflows: self.output_overflows,
        }
    }

    /// Hand the fence core the transport's facts about the peers whose facts may
    /// have changed since it last saw them (every peer at first): it keeps a copy,
    /// so a frame costs the same whatever the number of peers.
    fn observe(&mut self) {
        self.fence_dirty = true;
        let changed = self.llt.take_changed();
        if changed == 0 {
            return;
        }
        let llt = &self.llt;
        let ids = (0u8..64)
            .filter(move |i| changed & (1u64 << i) != 0)
            .map(NodeId);
        self.fence.observe(ids.filter_map(|id| {
            llt.peer_summary(id).map(|s| {
                (
                    id,
                    PeerInfo {
                        up: s.up,
                        incarnation: s.incarnation,
                        generation: s.generation,
                        last_heard: s.last_heard,
                        confirmed: s.confirmed,
                        quiet: s.quiet,
                    },
                )
            })
        }));
    }

    /// The fence core, for an input: the transport's advertised generation and
    /// confirm set are brought up to date at the end of the next pump round.
    fn fence_mut(&mut self) -> &mut Fence {
        self.fence_dirty = true;
        &mut self.fence
    }

    fn push(&mut self, o: Output) {
        if self.outputs.len() >= MAX_OUTPUTS {
            self.output_overflows = self.output_overflows.saturating_add(1);
        }
        self.outputs.push_back(o);
    }

    /// Move outputs between the layers until both are quiet: transport deliveries on
    /// port `b` feed the fence core, whose messages go out through the transport.
    fn pump(&mut self, now: Instant) {
        self.health_step(now);
        for _ in 0..64 {
            let mut moved = false;
            if self.llt.silenced() {
                // Fenced or left: the transport sends nothing new; hand out what it
                // still holds (events).
                while let Some(o) = self.llt.poll_output() {
                    if let vigil_llt::Output::Event(e) = o {
                        self.push(Output::Llt(e));
                    }
                }
                return;
            }
            let mut news = false;
            while let Some(o) = self.llt.poll_output() {
                moved = true;
                match o {
                    vigil_llt::Output::Deliver(d) if d.port == Port::FENCE => {
                        // The handlers read the transport's facts: an acceptor reports
                        // when it last heard the members a value leaves out, and a
                        // racer's settle window rests on that. Heartbeats alone do
                        // not step the core, so without this the report could be
                        // older than a frame of theirs we have since echoed (a lease
                        // they hold past the settle window: S1).
                        self.observe();
                        self.fence_mut().handle_message(now, d.from, &d.body);
                    }
                    vigil_llt::Output::Deliver(d) => self.push(Output::Deliver(d)),
                    vigil_llt::Output::Transmit(t) => self.push(Output::Transmit(t)),
                    vigil_llt::Output::Event(e) => {
                        news = true;
                        self.push(Output::Llt(e));
                    }
                }
            }
            if !self.llt.running() {
                // Still listening for a duplicate node ID (or refused): no
                // membership decisions before the transport may speak.
                break;
            }
            // The fence core decides on peers up, their incarnations and
            // generations. Plain heartbeats that change none of it (they only
            // refresh lease confirmations, read at the core's next step, which comes
            // before the lease runs out) need no step.
            let print = self.llt.peers_fingerprint();
            let due = self.fence.poll_timeout().is_some_and(|t| t <= now);
            // A member waiting for authority steps on every frame: a confirmation
            // may be what it waits for.
            let waiting = self.fence.steps_on_frames();
            if news || due || waiting || print != self.peer_print || self.fresh {
                self.peer_print = print;
                self.fresh = false;
                self.observe();
                self.fence_mut().handle_timeout(now);
            }
            while let Some(f) = self.fence.poll_output() {
                moved = true;
                match f {
                    FenceOutput::Send { to, msg } => {
                        // A peer that is down misses it; races retransmit.
                        let _ = self.llt.send(now, to, Port::FENCE, &msg.encode());
                        // Keep the order: this message goes out before any event or
                        // persist that follows it (a `Lost` before our own fence).
                        while let Some(o) = self.llt.poll_output() {
                            if let vigil_llt::Output::Transmit(t) = o {
                                self.push(Output::Transmit(t));
                            } else if let vigil_llt::Output::Event(e) = o {
                                self.push(Output::Llt(e));
                            }
                        }
                    }
                    FenceOutput::Persist(g) => self.push(Output::Persist(g)),
                    FenceOutput::Event(e) => {
                        let stop =
                            matches!(e, FenceEvent::SelfFence { .. } | FenceEvent::Left { .. });
                        self.push(Output::Fence(e));
                        if stop {
                            // Stop presenting ourselves as a member before anything else.
                            self.llt.silence();
                        }
                    }
                }
            }
            // Both follow from the fence core's state alone: only an input to it
            // can change them.
            if self.fence_dirty {
                self.fence_dirty = false;
                self.llt.set_generation(self.fence.advertised_generation());
                let confirm: NodeSet = self.fence.confirm_set();
                if confirm != self.confirming {
                    let ids: Vec<NodeId> = self.llt.peer_ids().collect();
                    for id in ids {
                        self.llt.set_confirm(id, confirm.contains(id));
                    }
                    self.confirming = confirm;
                }
            }
            if !moved {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterConfig;
    use std::path::Path;
    use vigil_llt::KeyRingStatus;

    /// Node 0 (incarnation 7, nothing persisted) of the cluster `text` describes.
    fn node_zero(text: &str) -> Node {
        let cfg = ClusterConfig::parse(text, Path::new("/etc/vigil/cluster.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        Node::new(
            cfg.llt_config(),
            cfg.fence_config(),
            NodeId(0),
            Incarnation(7),
            Instant::ZERO,
            1,
            Generation(0),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn set_frame_keys_replaces_the_ring_and_a_rejoin_keeps_it() {
        let text = "[cluster]\nname = \"k\"\nid = 1\ninsecure = true\n\
                    [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5000\n\
                    [[nodes]]\nid = 0\nname = \"n0\"\nlinks = { a = \"10.0.0.1\" }\n";
        let mut node = node_zero(text);
        assert_eq!(node.status().llt.keys, KeyRingStatus::default());
        let a = FrameKey::from_material(&[1u8; 32]);
        let b = FrameKey::from_material(&[2u8; 32]);
        node.set_frame_keys(vec![b.clone(), a.clone()]);
        let ring = node.status().llt.keys;
        assert_eq!(ring.send, Some(b.id));
        assert_eq!(ring.accept, vec![b.id, a.id]);
        node.rejoin(Instant::from_nanos(1_000_000), Incarnation(8), 2);
        assert_eq!(node.status().llt.keys, ring, "a rejoin keeps the new ring");
    }

    /// A driver that stops draining loses nothing: past its bound the queue keeps
    /// every output and counts the overflow (in the status), and what it finally
    /// yields is exactly what a twin node, drained after every step, yielded.
    #[test]
    fn an_undrained_output_queue_drops_nothing_and_counts_the_overflow() {
        let text = "[cluster]\nname = \"k\"\nid = 1\ninsecure = true\n\
                    [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5000\n\
                    [[nodes]]\nid = 0\nname = \"n0\"\nlinks = { a = \"10.0.0.1\" }\n\
                    [[nodes]]\nid = 1\nname = \"n1\"\nlinks = { a = \"10.0.0.2\" }\n\
                    [[nodes]]\nid = 2\nname = \"n2\"\nlinks = { a = \"10.0.0.3\" }\n";
        let mut drained = node_zero(text);
        let mut kept = drained.clone();
        let mut seen = Vec::new();
        let mut steps = 0;
        while kept.status().output_overflows == 0 {
            let Some(t) = drained.poll_timeout() else {
                panic!("the node keeps sending heartbeats")
            };
            drained.handle_timeout(t);
            kept.handle_timeout(t);
            seen.extend(std::iter::from_fn(|| drained.poll_output()));
            steps += 1;
            assert!(steps < 1_000_000, "the queue never passed its bound");
        }
        assert_eq!(drained.status().output_overflows, 0);
        let all: Vec<Output> = std::iter::from_fn(|| kept.poll_output()).collect();
        assert_eq!(all.len(), seen.len());
        assert!(all == seen, "the undrained queue lost or reordered outputs");
    }

    #[test]
    fn current_authority_is_the_client_view_its_primary_and_its_token() {
        let text = "[cluster]\nname = \"k\"\nid = 1\ninsecure = true\n\
                    [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5000\n\
                    [[nodes]]\nid = 3\nname = \"n3\"\nlinks = { a = \"10.0.0.1\" }\n";
        let cfg = ClusterConfig::parse(text, Path::new("/etc/vigil/cluster.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut node = Node::new(
            cfg.llt_config(),
            cfg.fence_config(),
            NodeId(3),
            Incarnation(7),
            Instant::ZERO,
            1,
            Generation(4),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(node.current_authority(Instant::ZERO), None);
        assert_eq!(node.status().authority, None);
        // A one-node cluster seeds alone and gains authority.
        let mut now = Instant::ZERO;
        for _ in 0..1000 {
            if node.authority() {
                break;
            }
            now = node.poll_timeout().unwrap_or(now).max(now);
            node.handle_timeout(now);
            while node.poll_output().is_some() {}
        }
        let a = node
            .current_authority(now)
            .unwrap_or_else(|| panic!("no authority by {now:?}"));
        assert_eq!(a.token, Generation(5), "one above the persisted highest");
        assert_eq!(a.token, a.view.generation);
        assert_eq!(a.installed, a.token, "no settle window pending");
        assert_eq!(a.primary, NodeId(3));
        assert!(a.is_primary);
        assert!(a.valid_until > now);
        assert_eq!(node.status_at(now).authority, Some(a.clone()));
        assert_eq!(
            node.status().authority,
            Some(a.clone()),
            "at the last input"
        );
        // Past the lease, without a step that renews it: none, by the node's clock.
        assert_eq!(node.current_authority(a.valid_until), None);
        assert_eq!(node.status_at(a.valid_until).authority, None);
        let json = serde_json::to_value(&a).unwrap_or_default();
        assert_eq!(json["token"], 5);
        assert_eq!(json["primary"], 3);
        assert_eq!(json["is_primary"], true);
        // A node that left holds none.
        node.leave(now);
        assert_eq!(node.current_authority(now), None);
    }
}
