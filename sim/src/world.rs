//! The simulated world: nodes running the real `Node`, one virtual network per link
//! carrying the real encoded frames, virtual time, faults, and the checker.

use crate::avail::{Availability, Connectivity};
use crate::check::{Checker, Holder, Violation};
use crate::fault::{Fault, Scenario, Tap};
use crate::profile::{legacy_config, SimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vigil::config::ClusterConfig;
use vigil::health::{OnFailure, ProbeId};
use vigil::node::{Node, Output};
use vigil_fence::{
    FenceConfig, FenceEvent, FenceReason, NodeState, Sabotage, StallAction, WITNESS_ID,
};
use vigil_llt::types::{Generation, Incarnation, Instant, LinkId, NodeId};
use vigil_llt::LltConfig;

/// Links per simulated node in the legacy config.
pub const LINKS: u8 = 2;
/// Bound on frames in flight (a runaway is a bug, not a reason to eat memory).
const MAX_FLIGHTS: usize = 1 << 20;
/// Bound on trace lines kept for a violation report.
const TRACE_TAIL: usize = 40;
/// Bound on the frames the attacker keeps in one recording.
pub const MAX_TAPE: usize = 1 << 16;
/// Bound on the frames one replay injects.
const MAX_INJECTIONS: u64 = 1 << 18;
/// The shortest spacing of replayed frames.
const MIN_REPLAY_INTERVAL: Duration = Duration::from_micros(100);

/// The timers a world is timed by (from its config). The default is the
/// simulator's legacy set, which the scenario files are tuned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub heartbeat: Duration,
    pub peer_trouble: Duration,
    pub peer_inactive: Duration,
    pub race_timeout: Duration,
    pub lease: Duration,
    pub max_drift_ppm: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heartbeat: Duration::from_millis(10),
            peer_trouble: Duration::from_millis(40),
            peer_inactive: Duration::from_millis(80),
            race_timeout: Duration::from_millis(60),
            lease: Duration::from_millis(70),
            max_drift_ppm: 1000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct LinkQuality {
    loss: f64,
    delay: Duration,
    jitter: Duration,
    duplicate: f64,
    reorder: f64,
    reorder_delay: Duration,
}

/// How a node's simulated health probe answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ProbeMode {
    #[default]
    Healthy,
    /// Every run fails (a read-only disk).
    Failing,
    /// Runs never answer (a hung NFS mount).
    Hung,
}

/// The probe every simulated node runs: a check of its (virtual) disk.
pub use crate::profile::SIM_PROBE;

/// How a node's state file fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreFault {
    /// The next write fails (an I/O error), then the disk is fine again.
    Once,
    /// Every write fails until then (a full disk).
    Until(Instant),
}

struct Flight {
    due: Instant,
    seq: u64,
    /// The sender and its restart count (which incarnation sent it).
    from: (usize, u64),
    to: usize,
    link: LinkId,
    bytes: Vec<u8>,
    /// Put on the wire by the attacker, not by the sender.
    injected: bool,
}

/// Frames in flight, in the order they arrive: by arrival time, then in the order
/// they were sent. One bucket per arrival time: most frames of a drill share a few
/// (the links' fixed delay), so a frame is appended to a vector rather than sifted
/// through a heap of all, and a whole instant's frames leave at once.
#[derive(Default)]
struct FlightQueue {
    buckets: BTreeMap<Instant, Vec<Flight>>,
    len: usize,
    /// Emptied buckets, kept for their capacity.
    spare: Vec<Vec<Flight>>,
}

impl FlightQueue {
    fn len(&self) -> usize {
        self.len
    }

    /// Frames are pushed in the order they were sent (`seq` grows), so each bucket
    /// stays in that order.
    fn push(&mut self, f: Flight) {
        self.len += 1;
        let spare = &mut self.spare;
        let bucket = self
            .buckets
            .entry(f.due)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        debug_assert!(bucket.last().is_none_or(|l| l.seq < f.seq));
        bucket.push(f);
    }

    /// When the next frame arrives.
    fn next_due(&self) -> Option<Instant> {
        self.buckets.first_key_value().map(|(t, _)| *t)
    }

    /// Move every frame arriving by `now` to `out`, in arrival order.
    fn take_due(&mut self, now: Instant, out: &mut Vec<Flight>) {
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            let mut bucket = entry.remove();
            self.len -= bucket.len();
            out.append(&mut bucket);
            self.spare.push(bucket);
        }
    }
}

/// A frame the attacker recorded: when, who sent it to whom, and its bytes.
#[derive(Clone)]
struct Taped {
    at: Instant,
    from: (usize, u64),
    to: usize,
    link: LinkId,
    bytes: Vec<u8>,
}

/// What the attacker records, until when.
struct Recording {
    until: Instant,
    from: Vec<usize>,
    links: Vec<u8>,
    tap: Tap,
}

/// One replay under way: its frames with their offsets from the start of a pass,
/// played pass after pass until `until`.
struct Replayer {
    frames: Vec<(Duration, Taped)>,
    period: Duration,
    start: Instant,
    until: Instant,
    pass: u32,
    next: usize,
    injected: u64,
}

impl Replayer {
    /// When the next frame goes in, if the replay is not over.
    fn due(&self) -> Option<Instant> {
        let (offset, _) = self.frames.get(self.next)?;
        let at = self.start + self.period * self.pass + *offset;
        (at < self.until && self.injected < MAX_INJECTIONS).then_some(at)
    }

    fn advance(&mut self) {
        self.injected += 1;
        self.next += 1;
        if self.next == self.frames.len() {
            self.next = 0;
            self.pass += 1;
        }
    }
}

/// One node slot: the running node, its durable state and its clock.
struct Slot {
    node: Option<Node>,
    /// What the node's state file durably holds: what a restart starts from.
    persisted: vigil_fence::Durable,
    /// The state file's writes fail (one, or all for a while).
    store_fault: Option<StoreFault>,
    /// `vigil stop` was asked: the process ends when the node has left, or at this
    /// instant (three race timeouts, as the daemon gives up waiting).
    stopping: Option<Instant>,
    restarts: u64,
    frozen_until: Option<Instant>,
    backlog: Vec<Flight>,
    /// Clock rate error, parts per million.
    skew_ppm: i32,
    /// Global instant at which the local clock read `local_base`.
    clock_base: (Instant, Instant),
    probe: ProbeMode,
    /// Frames that arrive while frozen are lost.
    drop_backlog: bool,
    /// The processes (node, restart count) that were handed a frame of this node's
    /// current incarnation, by the network or by the attacker: the only ones that
    /// can know that incarnation and echo it (S7).
    taught: BTreeSet<(usize, u64)>,
}

impl Slot {
    /// A slot with no process, nothing kept, a true clock.
    fn blank() -> Slot {
        Slot {
            node: None,
            persisted: vigil_fence::Durable::default(),
            store_fault: None,
            stopping: None,
            restarts: 0,
            frozen_until: None,
            backlog: Vec::new(),
            skew_ppm: 0,
            clock_base: (Instant::ZERO, Instant::ZERO),
            probe: ProbeMode::Healthy,
            drop_backlog: false,
            taught: BTreeSet::new(),
        }
    }

    fn local(&self, global: Instant) -> Instant {
        let (g0, l0) = self.clock_base;
        let d = global.as_nanos().saturating_sub(g0.as_nanos()) as i128;
        let l = l0.as_nanos() as i128 + d + div(d * i128::from(self.skew_ppm), 1_000_000);
        Instant::from_nanos(l.max(0) as u64)
    }
    fn global(&self, local: Instant) -> Instant {
        let (g0, l0) = self.clock_base;
        let d = local.as_nanos() as i128 - l0.as_nanos() as i128;
        let g = div(d * 1_000_000, 1_000_000 + i128::from(self.skew_ppm));
        // Round up so that local(global(t)) >= t.
        Instant::from_nanos((g0.as_nanos() as i128 + g + 1).max(0) as u64)
    }
}

/// `n / d` (truncated, as `/` does), in 64 bits when both fit: the clock
/// conversions run for every frame delivered and every timer polled, and 128-bit
/// division costs several times more (hours of virtual time fit).
fn div(n: i128, d: i128) -> i128 {
    match (i64::try_from(n), i64::try_from(d)) {
        (Ok(n), Ok(d)) => i128::from(n / d),
        _ => n / d,
    }
}

/// The simulated cluster.
pub struct World {
    pub timers: Timers,
    /// The validated config every node is built from, as the daemon builds it.
    config: ClusterConfig,
    n: u8,
    /// A witness (`vigil witness`) runs in slot `n`, as node ID 63: an llt peer
    /// of every node whose core only accepts, confirms and joins.
    witness: bool,
    /// What the witness is broken by, if anything (the nodes run `sabotage`).
    witness_sabotage: Option<Sabotage>,
    sabotage: Option<Sabotage>,
    now: Instant,
    rng: StdRng,
    slots: Vec<Slot>,
    cut: BTreeSet<(usize, usize)>,
    link_down: BTreeSet<(usize, u8)>,
    quality: Vec<LinkQuality>,
    /// Frames in flight, the next to arrive on top.
    flights: FlightQueue,
    /// The frames arriving at the current instant (kept for its capacity).
    due: Vec<Flight>,
    /// A node's outputs being carried out (kept for its capacity).
    outs: Vec<Output>,
    /// `Fault::SlowNode`: the extra delay and jitter of the frames from or to a
    /// slot.
    slow: BTreeMap<usize, (Duration, Duration)>,
    flight_seq: u64,
    /// Frames the nodes sent (see [`World::frames_sent`]).
    frames_sent: u64,
    pub checker: Checker,
    trace: Vec<String>,
    /// How many trace lines a violation report shows: [`TRACE_TAIL`], or
    /// `VIGIL_SIM_TRACE` when set (a debugging aid; it changes no behaviour).
    trace_tail: usize,
    trace_hash: u64,
    /// Fence events: (global time, node, restart count, event).
    pub events: Vec<(Instant, usize, u64, FenceEvent)>,
    first_fault: Option<Instant>,
    /// Links each node declared TROUBLE or DOWN: (global time, node, event).
    pub accusations: Vec<(Instant, usize, String)>,
    /// Pending flap toggles: (when, node, link, goes down).
    flaps: Vec<(Instant, usize, u8, bool)>,
    /// Probe answers on their way: (when, node, restart count, probe, passed).
    probe_answers: Vec<(Instant, usize, u64, ProbeId, bool)>,
    /// What a failed probe makes a node do.
    pub probe_action: OnFailure,
    /// What a member does after a stall longer than its lease.
    pub stall_action: StallAction,
    /// Testing only: every node's llt accepts frames that do not echo its current
    /// incarnation (`LltConfig::sabotage_stale_frames`), to show that the checker
    /// catches what a replay then does. Set before the nodes start.
    pub stale_frames: bool,
    /// The attacker: what it records now, what it recorded, what it replays.
    recording: Option<Recording>,
    tape: Vec<Taped>,
    replays: Vec<Replayer>,
    /// Self-fences while a quorum-holding clique containing the node existed in
    /// the connectivity (fences for its own health excepted): (time, node, every
    /// largest such clique contained it).
    pub needless_fences: Vec<(Instant, usize, bool)>,
    /// The checker's list of holders, kept to save an allocation per event.
    holders: Vec<Holder>,
}

/// Node `i`'s incarnation after `restarts` starts (rejoins count): always growing.
fn incarnation(i: usize, restarts: u64) -> Incarnation {
    Incarnation(((i as u64 + 1) << 40) | restarts)
}

/// The process (node, restart count) of a simulated incarnation.
fn process_of(inc: Incarnation) -> Option<(usize, u64)> {
    let node = (inc.0 >> 40).checked_sub(1)?;
    Some((node as usize, inc.0 & ((1 << 40) - 1)))
}

/// S6's grace: a member's process may end just after the racer last heard it
/// (detection), during a race, and before the settle window ends; a stall of up to
/// a lease is excused at each of those. Twice that.
fn member_grace(t: &Timers) -> Duration {
    (t.peer_inactive + t.race_timeout + t.lease * 3) * 2
}

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    let mut h = hash;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl World {
    /// A world of `n` nodes with `timers`, two links, no key and `seed_count`:
    /// the legacy config (see [`crate::profile::Profile::Legacy`]).
    pub fn new(
        n: u8,
        seed_count: usize,
        rng_seed: u64,
        timers: Timers,
        sabotage: Option<Sabotage>,
    ) -> World {
        match legacy_config(
            n,
            Some(seed_count),
            timers,
            OnFailure::Leave,
            StallAction::Fence,
        ) {
            Ok(c) => World::from_config(&c, rng_seed, sabotage),
            Err(e) => panic!("the legacy config does not validate: {e}"),
        }
    }

    /// A world whose nodes run `config` (its probe's `on_failure` and its
    /// `stall_action` become [`World::probe_action`] and [`World::stall_action`]).
    pub fn from_config(config: &SimConfig, rng_seed: u64, sabotage: Option<Sabotage>) -> World {
        let timers = config.timers();
        let n = config.nodes();
        let cfg = config.cluster.clone();
        let probe_action = cfg
            .probes
            .first()
            .map_or(OnFailure::Leave, |p| p.spec.on_failure);
        let stall_action = cfg.daemon.stall_action;
        let links = cfg.links.len();
        let mut w = World {
            timers,
            config: cfg,
            n,
            witness: false,
            witness_sabotage: None,
            sabotage,
            now: Instant::ZERO,
            rng: StdRng::seed_from_u64(rng_seed),
            slots: Vec::new(),
            cut: BTreeSet::new(),
            link_down: BTreeSet::new(),
            quality: vec![LinkQuality::default(); links],
            flights: FlightQueue::default(),
            due: Vec::new(),
            outs: Vec::new(),
            slow: BTreeMap::new(),
            flight_seq: 0,
            frames_sent: 0,
            checker: Checker::new(n, timers.lease, timers.max_drift_ppm)
                .with_member_grace(member_grace(&timers)),
            trace: Vec::new(),
            trace_tail: std::env::var("VIGIL_SIM_TRACE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(TRACE_TAIL)
                .clamp(1, 1 << 20),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            events: Vec::new(),
            first_fault: None,
            accusations: Vec::new(),
            flaps: Vec::new(),
            probe_answers: Vec::new(),
            probe_action,
            stall_action,
            stale_frames: false,
            holders: Vec::new(),
            recording: None,
            tape: Vec::new(),
            replays: Vec::new(),
            needless_fences: Vec::new(),
        };
        for _ in 0..n {
            w.slots.push(Slot::blank());
        }
        w
    }

    /// Frames the nodes sent so far, one per destination, whatever became of them
    /// (cut, lost, duplicated); the attacker's replays aside.
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// A world of `config`'s nodes and a witness in slot `n` (node ID 63), which
    /// `witness_sabotage` breaks when given. Faults name the witness by its slot.
    pub fn with_witness(
        config: &SimConfig,
        rng_seed: u64,
        sabotage: Option<Sabotage>,
        witness_sabotage: Option<Sabotage>,
    ) -> World {
        let mut w = World::from_config(config, rng_seed, sabotage);
        assert!(
            !w.config.nodes.iter().any(|n| n.id == WITNESS_ID),
            "a cluster with a witness numbers its nodes 0..=62"
        );
        w.witness = true;
        w.witness_sabotage = witness_sabotage;
        w.slots.push(Slot::blank());
        let slots = w.slots.len();
        w.checker = Checker::new(slots as u8, w.timers.lease, w.timers.max_drift_ppm)
            .with_member_grace(member_grace(&w.timers))
            .with_witness_slot(w.n as usize);
        w
    }

    /// The witness's slot, when there is one.
    pub fn witness_slot(&self) -> Option<usize> {
        self.witness.then_some(self.n as usize)
    }

    /// The node ID of slot `i`.
    fn id_of(&self, i: usize) -> NodeId {
        if self.witness_slot() == Some(i) {
            WITNESS_ID
        } else {
            NodeId(i as u8)
        }
    }

    /// The slot of node ID `id`.
    fn slot_of(&self, id: NodeId) -> usize {
        match self.witness_slot() {
            Some(w) if id == WITNESS_ID => w,
            _ => id.index(),
        }
    }

    pub fn nodes(&self) -> u8 {
        self.n
    }

    /// FNV-1a over every trace line so far: equal for equal seeds and code.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    /// The last trace lines, for a violation report.
    pub fn trace_tail(&self) -> &[String] {
        &self.trace
    }

    pub fn first_fault(&self) -> Option<Instant> {
        self.first_fault
    }

    fn log(&mut self, line: String) {
        let stamped = format!("{:>10.3}ms {line}", self.now.as_nanos() as f64 / 1e6);
        self.trace_hash = fnv(self.trace_hash, stamped.as_bytes());
        self.trace_hash = fnv(self.trace_hash, b"\n");
        if self.trace.len() >= self.trace_tail {
            self.trace.remove(0);
        }
        self.trace.push(stamped);
    }

    /// The node's llt config, as the daemon makes it from the file.
    fn llt_config(&self) -> LltConfig {
        let mut c = self.config.llt_config();
        c.sabotage_stale_frames = self.stale_frames;
        if self.witness {
            c.nodes.push(WITNESS_ID);
        }
        c
    }

    /// The node's fence config, as the daemon makes it from the file (the world's
    /// stall action and sabotage on top).
    fn fence_config(&self) -> FenceConfig {
        let mut c = self.config.fence_config();
        c.stall_action = self.stall_action;
        c.sabotage = self.sabotage;
        c.witness = self.witness;
        c
    }

    /// The links of the config.
    pub fn links(&self) -> u8 {
        self.config.links.len() as u8
    }

    /// The seed count of the config.
    pub fn seed_count(&self) -> usize {
        self.config.cluster.seed
    }

    /// Start (or restart as a new incarnation, state file kept) node `i`.
    pub fn start(&mut self, i: usize) {
        let llt = self.llt_config();
        let mut fence = self.fence_config();
        let id = self.id_of(i);
        let is_witness = self.witness_slot() == Some(i);
        if is_witness {
            fence.sabotage = self.witness_sabotage;
        }
        let probes: Vec<_> = self
            .config
            .probes_for(id)
            .filter(|_| !is_witness)
            .map(|p| {
                let mut spec = p.spec.clone();
                spec.on_failure = self.probe_action;
                spec
            })
            .collect();
        let now = self.now;
        let s = &mut self.slots[i];
        if s.node.is_some() {
            self.checker
                .process_ended(now, i, incarnation(i, s.restarts));
        }
        s.restarts += 1;
        s.stopping = None;
        s.frozen_until = None;
        s.backlog.clear();
        s.taught.clear();
        // A restart repairs the disk.
        s.probe = ProbeMode::Healthy;
        let local = s.local(now);
        let inc = incarnation(i, s.restarts);
        match Node::new(llt, fence, id, inc, local, i as u64, s.persisted) {
            Ok(mut node) => {
                for probe in probes {
                    node.add_probe(local, probe);
                }
                s.node = Some(node);
                self.checker.process_started(now, i, inc);
            }
            Err(e) => panic!("simulated node {i} refused its config: {e}"),
        }
        let r = s.restarts;
        self.log(format!("n{i} start (incarnation {r})"));
        self.drain(i);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.n as usize {
            self.start(i);
        }
    }

    pub fn node(&self, i: usize) -> Option<&Node> {
        self.slots[i].node.as_ref()
    }

    /// Act on node `i` at its local now (an operator command, a client call), then
    /// carry out what it produced.
    pub fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant)) {
        let local = self.slots[i].local(self.now);
        if let Some(n) = self.slots[i].node.as_mut() {
            f(n, local);
        }
        self.drain(i);
    }

    /// Running, not fenced and not gone.
    pub fn running(&self, i: usize) -> bool {
        self.slots[i]
            .node
            .as_ref()
            .is_some_and(|n| !n.fenced() && !n.left())
    }

    pub fn restarts(&self, i: usize) -> u64 {
        self.slots[i].restarts
    }

    /// Whether node `i` holds authority now (by its own clock).
    pub fn authority(&self, i: usize) -> bool {
        let s = &self.slots[i];
        s.node
            .as_ref()
            .is_some_and(|n| n.authority_at(s.local(self.now)))
    }

    /// Whether node `i` could serve now: a process that runs, is not fenced, has
    /// not left and is not frozen.
    fn live(&self, i: usize) -> bool {
        self.running(i) && self.slots[i].frozen_until.is_none_or(|t| self.now >= t)
    }

    /// The connectivity now: the nodes that could serve, and the pairs that can
    /// exchange frames both ways on some link.
    pub fn connectivity(&self) -> Connectivity {
        let n = self.n as usize;
        let mut c = Connectivity::new(n);
        c.live = (0..n)
            .filter(|i| self.live(*i))
            .fold(0u64, |m, i| m | 1 << i);
        for a in 0..n {
            for b in a + 1..n {
                let cut = self.cut.contains(&(a, b)) || self.cut.contains(&(b, a));
                let link = (0..self.links()).any(|l| {
                    !self.link_down.contains(&(a, l)) && !self.link_down.contains(&(b, l))
                });
                if !cut && link {
                    c.connect(a, b);
                }
            }
        }
        c
    }

    /// Whether a clique of the connectivity that holds quorum of the last decided
    /// view contains node `i` (counted as live: it is the one asking), and whether
    /// every largest one does.
    fn in_quorum_clique(&self, i: usize) -> (bool, bool) {
        let Some(prev) = self.checker.last_decided() else {
            return (false, false);
        };
        let mut c = self.connectivity();
        c.live |= 1 << i;
        c.quorum_cliques_with(prev, i).unwrap_or((false, false))
    }

    /// The availability figure now: nodes holding authority against the largest
    /// quorum-holding clique (`None` before any view, or when the clique search
    /// gave up).
    pub fn availability(&self) -> Option<Availability> {
        let prev = self.checker.last_decided()?;
        let best = self.connectivity().largest_quorum_clique(prev)?;
        let holders = (0..self.n as usize).filter(|i| self.authority(*i)).count();
        Some(Availability { holders, best })
    }

    /// Apply one fault now.
    pub fn apply(&mut self, fault: &Fault) {
        if !fault.passive() {
            self.first_fault.get_or_insert(self.now);
        }
        self.log(format!("fault {fault:?}"));
        let ids = |v: &[u8]| -> Vec<usize> { v.iter().map(|x| *x as usize).collect() };
        match fault {
            Fault::Partition { sides } => {
                self.cut.clear();
                for (a, sa) in sides.iter().enumerate() {
                    for (b, sb) in sides.iter().enumerate() {
                        if a != b {
                            for x in ids(sa) {
                                for y in ids(sb) {
                                    self.cut.insert((x, y));
                                }
                            }
                        }
                    }
                }
            }
            Fault::OneWay { from, to } => {
                for x in ids(from) {
                    for y in ids(to) {
                        if x != y {
                            self.cut.insert((x, y));
                        }
                    }
                }
            }
            Fault::Cut { a, b } => {
                self.cut.insert((*a as usize, *b as usize));
                self.cut.insert((*b as usize, *a as usize));
            }
            Fault::Heal => self.cut.clear(),
            Fault::LinkDown { node, link } => {
                self.link_down.insert((*node as usize, *link));
            }
            Fault::LinkUp { node, link } => {
                self.link_down.remove(&(*node as usize, *link));
            }
            Fault::Flap {
                node,
                link,
                period_ms,
                count,
            } => {
                let period = Duration::from_millis(*period_ms);
                for k in 0..*count {
                    let t = self.now + period * (2 * k);
                    self.flaps.push((t, *node as usize, *link, true));
                    self.flaps.push((t + period, *node as usize, *link, false));
                }
            }
            Fault::LinkQuality {
                link,
                loss,
                delay_ms,
                jitter_ms,
                duplicate,
                reorder,
                reorder_ms,
            } => {
                if let Some(q) = self.quality.get_mut(*link as usize) {
                    *q = LinkQuality {
                        loss: *loss,
                        delay: Duration::from_secs_f64(delay_ms.max(0.0) / 1e3),
                        jitter: Duration::from_secs_f64(jitter_ms.max(0.0) / 1e3),
                        duplicate: *duplicate,
                        reorder: *reorder,
                        reorder_delay: Duration::from_secs_f64(reorder_ms.max(0.0) / 1e3),
                    };
                }
            }
            Fault::SlowNode {
                node,
                delay_ms,
                jitter_ms,
            } => {
                let ms = |v: &f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
                let (d, j) = (ms(delay_ms), ms(jitter_ms));
                if d.is_zero() && j.is_zero() {
                    self.slow.remove(&(*node as usize));
                } else {
                    self.slow.insert(*node as usize, (d, j));
                }
            }
            Fault::Stall {
                node,
                for_ms,
                drop_backlog,
            } => {
                let s = &mut self.slots[*node as usize];
                if s.node.is_some() {
                    s.frozen_until = Some(self.now + Duration::from_millis(*for_ms));
                    s.drop_backlog = *drop_backlog;
                }
            }
            Fault::Crash { node } => {
                let i = *node as usize;
                self.slots[i].stopping = None;
                if self.slots[i].node.take().is_some() {
                    let inc = incarnation(i, self.slots[i].restarts);
                    self.checker.process_ended(self.now, i, inc);
                }
            }
            Fault::Restart { node } => self.start(*node as usize),
            Fault::Stop { node } => self.stop(*node as usize),
            Fault::ManualSeed { node } => self.manual_seed(*node as usize),
            Fault::StoreFail { node, for_ms } => {
                self.slots[*node as usize].store_fault = Some(if *for_ms == 0 {
                    StoreFault::Once
                } else {
                    StoreFault::Until(self.now + Duration::from_millis(*for_ms))
                });
            }
            Fault::ProbeFail { node, hang } => {
                self.slots[*node as usize].probe = if *hang {
                    ProbeMode::Hung
                } else {
                    ProbeMode::Failing
                };
            }
            Fault::ClockSkew { node, ppm } => {
                let now = self.now;
                let s = &mut self.slots[*node as usize];
                let local = s.local(now);
                s.clock_base = (now, local);
                s.skew_ppm = *ppm;
            }
            Fault::Record {
                from,
                links,
                for_ms,
                tap,
            } => {
                self.tape.clear();
                self.recording = Some(Recording {
                    until: self.now + Duration::from_millis(*for_ms),
                    from: ids(from),
                    links: links.clone(),
                    tap: *tap,
                });
            }
            Fault::Replay {
                from,
                to,
                for_ms,
                interval_us,
            } => self.replay(&ids(from), &ids(to), *for_ms, *interval_us),
        }
    }

    /// `vigil stop` on node `i`, as the daemon carries it out.
    fn stop(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.as_ref() else {
            return;
        };
        let state = node.status().fence.state;
        if self.slots[i].stopping.is_some() {
            return;
        }
        if matches!(state, NodeState::Member | NodeState::Racing) {
            let give_up = self.now + self.timers.race_timeout * 3;
            self.slots[i].stopping = Some(give_up);
            self.with_node(i, |n, now| n.leave(now));
        } else {
            self.end_process(i, "vigil stop: not a member");
        }
    }

    /// `gabconfig -x` on node `i`, where the daemon and a careful operator would.
    fn manual_seed(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.as_ref() else {
            return;
        };
        let f = node.status().fence;
        let waiting =
            f.state == NodeState::Unseeded && f.installed.is_none() && f.client_view.is_none();
        let running_view = (0..self.n as usize).any(|j| {
            self.running(j)
                && self.slots[j]
                    .node
                    .as_ref()
                    .is_some_and(|n| n.status().fence.installed.is_some())
        });
        if !waiting || running_view {
            self.log(format!("n{i} manual seed skipped"));
            return;
        }
        self.with_node(i, |n, now| n.manual_seed(now));
    }

    /// Copy a frame seen at `tap` onto the attacker's tape if it is recording there,
    /// this sender and this link.
    fn record(&mut self, tap: Tap, from: (usize, u64), to: usize, link: LinkId, bytes: &[u8]) {
        let Some(r) = &self.recording else { return };
        if self.now >= r.until {
            self.recording = None;
            return;
        }
        let wanted = r.tap == tap
            && (r.from.is_empty() || r.from.contains(&from.0))
            && (r.links.is_empty() || r.links.contains(&link.0));
        if wanted && self.tape.len() < MAX_TAPE {
            self.tape.push(Taped {
                at: self.now,
                from,
                to,
                link,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// Start replaying the tape's frames from `from` to `to` (empty: any).
    fn replay(&mut self, from: &[usize], to: &[usize], for_ms: u64, interval_us: Option<u64>) {
        let picked: Vec<&Taped> = self
            .tape
            .iter()
            .filter(|t| from.is_empty() || from.contains(&t.from.0))
            .filter(|t| to.is_empty() || to.contains(&t.to))
            .collect();
        let Some(first) = picked.first().map(|t| t.at) else {
            self.log("replay: nothing recorded to replay".into());
            return;
        };
        let interval = interval_us.map(|us| Duration::from_micros(us).max(MIN_REPLAY_INTERVAL));
        let frames: Vec<(Duration, Taped)> = picked
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let offset = match interval {
                    Some(d) => d * k as u32,
                    None => t.at.saturating_since(first),
                };
                (offset, (*t).clone())
            })
            .collect();
        // A pass lasts as long as the recording, and one heartbeat (or interval)
        // separates its last frame from the next pass's first.
        let last = frames.last().map_or(Duration::ZERO, |(o, _)| *o);
        let period = last + interval.unwrap_or(self.timers.heartbeat);
        self.log(format!(
            "replay: {} recorded frames, {} ms a pass",
            frames.len(),
            period.as_secs_f64() * 1e3
        ));
        self.replays.push(Replayer {
            frames,
            period,
            start: self.now,
            until: self.now + Duration::from_millis(for_ms),
            pass: 0,
            next: 0,
            injected: 0,
        });
    }

    fn send_frame(&mut self, from: usize, to: usize, link: LinkId, mut bytes: Vec<u8>) {
        self.frames_sent += 1;
        let sender = (from, self.slots[from].restarts);
        if self.recording.is_some() && !self.link_down.contains(&(from, link.0)) {
            self.record(Tap::Sender, sender, to, link, &bytes);
        }
        if self.cut.contains(&(from, to))
            || self.link_down.contains(&(from, link.0))
            || self.link_down.contains(&(to, link.0))
            || self.flights.len() >= MAX_FLIGHTS
        {
            return;
        }
        let q = self.quality.get(link.index()).copied().unwrap_or_default();
        if q.loss > 0.0 && self.rng.gen_bool(q.loss.clamp(0.0, 1.0)) {
            return;
        }
        let copies = if q.duplicate > 0.0 && self.rng.gen_bool(q.duplicate.clamp(0.0, 1.0)) {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut delay = Duration::from_micros(100) + q.delay;
            if !q.jitter.is_zero() {
                delay += q.jitter.mul_f64(self.rng.gen_range(0.0..1.0));
            }
            if q.reorder > 0.0 && self.rng.gen_bool(q.reorder.clamp(0.0, 1.0)) {
                delay += q.reorder_delay;
            }
            if !self.slow.is_empty() {
                for end in [from, to] {
                    if let Some((d, j)) = self.slow.get(&end).copied() {
                        delay += d;
                        if !j.is_zero() {
                            delay += j.mul_f64(self.rng.gen_range(0.0..1.0));
                        }
                    }
                }
            }
            self.flight_seq += 1;
            self.flights.push(Flight {
                due: self.now + delay,
                seq: self.flight_seq,
                from: sender,
                to,
                link,
                bytes: if copy + 1 < copies {
                    bytes.clone()
                } else {
                    std::mem::take(&mut bytes)
                },
                injected: false,
            });
        }
    }

    /// Carry out `Output::Persist` for node `i`: write its state file. `false` when
    /// the write failed: then the node must stop, as the daemon does
    /// (`Ending::Failed`), and nothing that followed the write is carried out.
    fn persist(&mut self, i: usize, d: vigil_fence::Durable) -> bool {
        let now = self.now;
        let s = &mut self.slots[i];
        let failed = match s.store_fault {
            Some(StoreFault::Once) => {
                s.store_fault = None;
                true
            }
            Some(StoreFault::Until(t)) if now < t => true,
            Some(StoreFault::Until(_)) => {
                s.store_fault = None;
                false
            }
            None => false,
        };
        if !failed && d.highest >= s.persisted.highest {
            s.persisted = d;
        }
        !failed
    }

    /// Node `i`'s process ends (a crash, a failed write, the end of `vigil stop`):
    /// what its state file holds stays.
    fn end_process(&mut self, i: usize, why: &str) {
        if self.slots[i].node.take().is_some() {
            let inc = incarnation(i, self.slots[i].restarts);
            self.checker.process_ended(self.now, i, inc);
            self.log(format!("n{i} process ends: {why}"));
        }
        self.slots[i].stopping = None;
        self.slots[i].frozen_until = None;
        self.slots[i].backlog.clear();
    }

    fn drain(&mut self, i: usize) {
        let restarts = self.slots[i].restarts;
        let mut outs = std::mem::take(&mut self.outs);
        if let Some(node) = self.slots[i].node.as_mut() {
            while let Some(o) = node.poll_output() {
                outs.push(o);
            }
        }
        if outs.is_empty() {
            self.outs = outs;
            return;
        }
        for o in outs.drain(..) {
            if self.slots[i].node.is_none() {
                // The process ended at an earlier output: the rest never happens.
                break;
            }
            match o {
                Output::Transmit(t) => match t.to {
                    Some(p) => self.send_frame(i, self.slot_of(p), t.link, t.bytes),
                    None => {
                        for j in (0..self.slots.len()).filter(|j| *j != i) {
                            self.send_frame(i, j, t.link, t.bytes.clone());
                        }
                    }
                },
                Output::Persist(d) => {
                    if !self.persist(i, d) {
                        self.log(format!("n{i} cannot record generation {}", d.highest.0));
                        self.end_process(i, "the state file cannot be written");
                    }
                }
                Output::Fence(e) => {
                    self.log(format!("n{i} {e:?}"));
                    match &e {
                        FenceEvent::ViewInstalled { view } => {
                            self.checker.installed(self.now, i, view);
                        }
                        FenceEvent::SelfFence { reason } => {
                            let own = matches!(
                                reason,
                                FenceReason::Unhealthy { .. } | FenceReason::Stalled { .. }
                            );
                            if !own {
                                if let (true, every) = self.in_quorum_clique(i) {
                                    self.needless_fences.push((self.now, i, every));
                                }
                            }
                        }
                        _ => {}
                    }
                    let left = matches!(e, FenceEvent::Left { .. });
                    let witness_out =
                        self.witness_slot() == Some(i) && matches!(e, FenceEvent::SelfFence { .. });
                    self.events.push((self.now, i, restarts, e));
                    if witness_out {
                        // A witness dropped from the view starts again as a new
                        // incarnation, which joins like a rebooted node.
                        self.log(format!("n{i} witness starts again"));
                        self.reincarnate(i);
                    }
                    if left && self.slots[i].stopping.is_some() {
                        self.end_process(i, "vigil stop: left the cluster");
                    }
                }
                Output::Llt(e) => {
                    let up = match &e {
                        vigil::node::LltEvent::PeerUp { peer, incarnation } => {
                            Some((self.slot_of(*peer), *incarnation))
                        }
                        vigil::node::LltEvent::PeerRestarted { peer, new, .. } => {
                            Some((self.slot_of(*peer), *new))
                        }
                        _ => None,
                    };
                    if let Some((p, inc)) = up {
                        let taught = process_of(inc)
                            .is_some_and(|r| r.0 == p && self.slots[i].taught.contains(&r));
                        self.checker.peer_up(self.now, i, p, inc, taught);
                    }
                    if matches!(
                        e,
                        vigil::node::LltEvent::LinkTrouble { .. }
                            | vigil::node::LltEvent::LinkDown { .. }
                            | vigil::node::LltEvent::PeerDown { .. }
                    ) {
                        self.accusations.push((self.now, i, format!("{e:?}")));
                    }
                    self.log(format!("n{i} {e:?}"))
                }
                Output::Deliver(_) => {}
                Output::RunProbe(p) => {
                    // The check itself takes a quarter of a heartbeat (half the
                    // probe's timeout if that is shorter).
                    let timeout = self.config.probes.first().map(|p| p.spec.timeout);
                    let took = timeout.map_or(self.timers.heartbeat / 4, |t| {
                        (self.timers.heartbeat / 4).min(t / 2)
                    });
                    let at = self.now + took;
                    match self.slots[i].probe {
                        ProbeMode::Healthy => self.probe_answers.push((at, i, restarts, p, true)),
                        ProbeMode::Failing => self.probe_answers.push((at, i, restarts, p, false)),
                        ProbeMode::Hung => {}
                    }
                }
                Output::Health(h) => self.log(format!("n{i} {h:?}")),
                Output::Rejoin { stall } => {
                    self.log(format!("n{i} rejoins after a stall of {stall:?}"));
                    self.reincarnate(i);
                    // Its outputs are drained on the next round.
                }
            }
        }
        self.outs = outs;
    }

    /// Node `i`'s process starts again in place as a new incarnation, state file
    /// kept (a rejoin after a stall; a witness dropped from the view).
    fn reincarnate(&mut self, i: usize) {
        let now = self.now;
        let s = &mut self.slots[i];
        self.checker
            .process_ended(now, i, incarnation(i, s.restarts));
        s.restarts += 1;
        s.taught.clear();
        let local = s.local(now);
        let inc = incarnation(i, s.restarts);
        if let Some(node) = s.node.as_mut() {
            node.rejoin(local, inc, i as u64 + s.restarts);
        }
        self.checker.process_started(now, i, inc);
    }

    fn check(&mut self) {
        let mut holders = std::mem::take(&mut self.holders);
        holders.clear();
        holders.extend((0..self.n as usize).filter_map(|i| {
            let s = &self.slots[i];
            let n = s.node.as_ref()?;
            let (token, is_primary) = n.current_token(s.local(self.now))?;
            Some(Holder {
                node: i,
                incarnation: n.incarnation(),
                is_primary,
                token,
            })
        }));
        self.checker.check(self.now, &holders);
        self.holders = holders;
    }

    /// Hand a frame to node `to`'s process (at its local time `local`), noting that
    /// the process now knows the sender's incarnation, if that is still current.
    fn hand(&mut self, to: usize, local: Instant, f: &Flight) {
        let receiver = (to, self.slots[to].restarts);
        let Some(node) = self.slots[to].node.as_mut() else {
            return;
        };
        node.handle_frame(local, f.link, None, &f.bytes);
        let (from, restarts) = f.from;
        if self.slots[from].restarts == restarts {
            self.slots[from].taught.insert(receiver);
        }
    }

    /// Run until `until` (global virtual time), event by event.
    pub fn run_until(&mut self, until: Instant) {
        let mut same = 0u32;
        let mut last = self.now;
        loop {
            if self.checker.violation().is_some() {
                return;
            }
            if self.now == last {
                same += 1;
                if same > 200_000 {
                    self.checker.report_livelock(self.now);
                    return;
                }
            } else {
                same = 0;
                last = self.now;
            }
            for i in 0..self.slots.len() {
                self.drain(i);
            }
            self.check();
            let mut next: Option<Instant> = self.flights.next_due();
            let mut take = |t: Instant| next = Some(next.map_or(t, |x: Instant| x.min(t)));
            for (t, ..) in &self.flaps {
                take(*t);
            }
            for (t, ..) in &self.probe_answers {
                take(*t);
            }
            for s in &self.slots {
                if let Some(t) = s.stopping {
                    take(t);
                }
            }
            for r in &self.replays {
                if let Some(t) = r.due() {
                    take(t);
                }
            }
            for s in &self.slots {
                let Some(node) = &s.node else { continue };
                match s.frozen_until {
                    Some(t) if self.now < t => take(t),
                    _ => {
                        if let Some(l) = node.poll_timeout() {
                            take(s.global(l).max(self.now));
                        }
                    }
                }
            }
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                self.check();
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            // Flaps due.
            let (due_flaps, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flaps)
                .into_iter()
                .partition(|f| f.0 <= now);
            self.flaps = rest;
            for (_, node, link, down) in due_flaps {
                if down {
                    self.link_down.insert((node, link));
                } else {
                    self.link_down.remove(&(node, link));
                }
                self.log(format!(
                    "flap n{node} l{link} {}",
                    if down { "down" } else { "up" }
                ));
            }
            // `vigil stop` gives up waiting for the leave.
            for i in 0..self.slots.len() {
                if self.slots[i].stopping.is_some_and(|t| now >= t) {
                    self.end_process(i, "vigil stop: no confirmation of the leave");
                }
            }
            // Thaw: everything missed at once, then the timers.
            for i in 0..self.slots.len() {
                if self.slots[i].frozen_until.is_some_and(|t| now >= t) {
                    self.slots[i].frozen_until = None;
                    self.log(format!("n{i} thaws"));
                    let mut backlog = std::mem::take(&mut self.slots[i].backlog);
                    backlog.sort_by_key(|f| (f.due, f.seq));
                    let local = self.slots[i].local(now);
                    if self.slots[i].node.is_some() {
                        for f in backlog {
                            self.hand(i, local, &f);
                        }
                    }
                    if let Some(node) = self.slots[i].node.as_mut() {
                        node.handle_timeout(local);
                    }
                    self.drain(i);
                }
            }
            // Probe answers due (a frozen node gets them when it thaws).
            let (answers, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.probe_answers)
                .into_iter()
                .partition(|a| a.0 <= now);
            self.probe_answers = rest;
            for (at, i, restarts, probe, passed) in answers {
                if self.slots[i].frozen_until.is_some_and(|t| now < t) {
                    self.probe_answers.push((
                        self.slots[i].frozen_until.unwrap_or(at),
                        i,
                        restarts,
                        probe,
                        passed,
                    ));
                    continue;
                }
                if self.slots[i].restarts != restarts {
                    continue;
                }
                let local = self.slots[i].local(now);
                if let Some(node) = self.slots[i].node.as_mut() {
                    let result = if passed {
                        Ok(())
                    } else {
                        Err("read-only file system".to_string())
                    };
                    node.probe_result(local, probe, result);
                }
                self.drain(i);
            }
            let mut due = std::mem::take(&mut self.due);
            self.flights.take_due(now, &mut due);
            // Replayed frames due, at their receivers (whose link must be up).
            for r in &mut self.replays {
                while let Some(at) = r.due().filter(|t| *t <= now) {
                    let t = &r.frames[r.next].1;
                    if !self.link_down.contains(&(t.to, t.link.0)) {
                        self.flight_seq += 1;
                        due.push(Flight {
                            due: at,
                            seq: self.flight_seq,
                            from: t.from,
                            to: t.to,
                            link: t.link,
                            bytes: t.bytes.clone(),
                            injected: true,
                        });
                    }
                    r.advance();
                }
            }
            self.replays.retain(|r| r.due().is_some());
            due.sort_by_key(|f| (f.due, f.seq));
            for f in due.drain(..) {
                let to = f.to;
                if !f.injected && self.recording.is_some() && self.slots[to].node.is_some() {
                    self.record(Tap::Receiver, f.from, to, f.link, &f.bytes);
                }
                if self.slots[to].frozen_until.is_some_and(|t| now < t) {
                    if !self.slots[to].drop_backlog {
                        self.slots[to].backlog.push(f);
                    }
                    continue;
                }
                let local = self.slots[to].local(now);
                self.hand(to, local, &f);
                self.drain(to);
            }
            self.due = due;
            for i in 0..self.slots.len() {
                let s = &self.slots[i];
                if s.frozen_until.is_some_and(|t| now < t) {
                    continue;
                }
                let local = s.local(now);
                let due = s
                    .node
                    .as_ref()
                    .and_then(|n| n.poll_timeout())
                    .is_some_and(|t| t <= local);
                if due {
                    if let Some(node) = self.slots[i].node.as_mut() {
                        node.handle_timeout(local);
                    }
                    self.drain(i);
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Members of node `i`'s client view.
    pub fn members(&self, i: usize) -> Vec<u8> {
        self.node(i)
            .and_then(|n| n.view())
            .map(|v| v.members.iter().map(|m| m.id.0).collect())
            .unwrap_or_default()
    }

    /// Whether node `i`, in the incarnation it had at `restarts`, fenced itself.
    pub fn fenced_incarnation(&self, i: usize, restarts: u64) -> Option<Instant> {
        self.events.iter().find_map(|(t, n, r, e)| {
            (*n == i && *r == restarts && matches!(e, FenceEvent::SelfFence { .. })).then_some(*t)
        })
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.checker.violation()
    }

    /// Views installed after `since`, by node.
    pub fn views_installed_since(&self, since: Instant) -> BTreeMap<usize, Vec<Generation>> {
        let mut m: BTreeMap<usize, Vec<Generation>> = BTreeMap::new();
        for (t, n, _, e) in &self.events {
            if let FenceEvent::ViewInstalled { view } = e {
                if *t >= since {
                    m.entry(*n).or_default().push(view.generation);
                }
            }
        }
        m
    }

    /// Apply the scenario's steps in order, then run `run_ms` more.
    pub fn play(&mut self, sc: &Scenario) {
        self.play_split(sc, None, |_| {});
    }

    /// [`World::play`], calling `at_split` once `split_ms` (from the start of the
    /// steps) is reached, before the steps of that instant.
    pub fn play_split(
        &mut self,
        sc: &Scenario,
        split_ms: Option<u64>,
        mut at_split: impl FnMut(&World),
    ) {
        let start = self.now;
        let mut split = split_ms.map(|ms| start + Duration::from_millis(ms));
        let mut steps = sc.steps.clone();
        steps.sort_by_key(|s| s.at_ms);
        for step in &steps {
            let at = start + Duration::from_millis(step.at_ms);
            if let Some(t) = split.filter(|t| *t <= at) {
                self.run_until(t);
                at_split(self);
                split = None;
            }
            self.run_until(at);
            if self.violation().is_some() {
                return;
            }
            self.apply(&step.fault);
        }
        self.run_for(Duration::from_millis(sc.run_ms));
    }
}
