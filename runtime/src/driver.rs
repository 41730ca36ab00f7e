//! The driver: the thin tokio loop around the sans-IO `Node`.
//!
//! One task owns the `Node`. Link readers feed one bounded channel; the control
//! socket's thread ([`control::Server`]) sends parsed requests through another, of
//! which the loop answers a few per turn after its timers and frames. The loop sleeps
//! until the node's next absolute deadline, so heartbeats keep time against the
//! clock.
//!
//! Outputs are carried out in order: a `Persist` goes to the store's own thread
//! ([`crate::store::StoreWorker`]) and every output after it waits until it is
//! durable, except frames that carry only llt's heartbeat state, which keep their
//! schedule (a slow disk must not look like a dead node); a failure to write stops
//! the node. A `SelfFence` ends the loop at once, before any later output is
//! carried out, so the node stops presenting itself as a member; then the
//! configured action runs (a hook, reboot or halt, or the embedder's callback).

use crate::control::{
    self, Ctl, DaemonStatus, Direction, FaultCmd, LinkInfo, NodeInfo, Request, Response, TimersInfo,
};
use crate::logging::{self, wall_us};
use crate::notify::Notifier;
use crate::probes::{self, ProbeDone};
use crate::rt::{self, RtPolicy};
use crate::store::{GenerationStore, StateFile, StoreWorker, Stored};
use crate::watchdog::Watchdog;
use crate::{
    Authority, ControlSocket, Ending, Event, NodeHandle, Options, SelfFenceAction, StartError,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, info, warn};
use vigil::config::{
    ClusterConfig, FencingMode, LinkKind, NodeConfig, NodeLinkAddr, ProbeCheck, Realtime, SelfFence,
};
use vigil::health::{ProbeEvent, ProbeId};
use vigil::node::{HealthEvent, LltEvent, Node, Output, Transmit};
use vigil_fence::{FenceEvent, FenceReason, NodeState, WITNESS_ID};
use vigil_llt::driver::{EtherLink, Link, RxFrame, UdpLink};
use vigil_llt::types::{Incarnation, Instant, LinkAddr, LinkId, NodeId};
use vigil_llt::KeyId;
use vigil_membership::NodeSet;

/// Bound on frames queued between the link readers and the node.
const RX_QUEUE: usize = 4096;
/// Bound on control requests queued for the node; when full, a request is answered
/// "busy" by the control thread instead of waiting.
const CTL_QUEUE: usize = 16;
/// Most control requests the node answers per turn of its loop (timers and frames
/// come first in every turn).
const CTL_PER_TURN: usize = 4;
/// How long a stopping daemon waits for control connections to send their answers.
const ANSWER_GRACE: Duration = Duration::from_millis(500);
/// Events queued for each subscriber of [`NodeHandle::events`] before it lags.
const EVENT_QUEUE: usize = 1024;
/// A store write slower than this is logged (`state.slow_write`).
const SLOW_WRITE: Duration = Duration::from_millis(20);

/// The publishing ends of a running node, handed to its thread.
struct Publish {
    authority: watch::Sender<Option<Authority>>,
    events: broadcast::Sender<Event>,
}

/// [`crate::start`].
pub(crate) fn start(
    cfg: ClusterConfig,
    node: &str,
    options: Options,
) -> Result<NodeHandle, StartError> {
    let me = cfg
        .node_by_name(node)
        .cloned()
        .or_else(|| cfg.witness_node().filter(|w| w.name == node));
    let Some(me) = me else {
        let names: Vec<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(StartError::Config(format!(
            "{}: no node named {node:?} (nodes: {})",
            cfg.source.display(),
            names.join(", ")
        )));
    };
    let socket = match &options.control_socket {
        ControlSocket::FromConfig => Some(cfg.socket_path(&me)),
        ControlSocket::At(p) => Some(p.clone()),
        ControlSocket::Off => None,
    };
    let (authority_tx, authority) = watch::channel(None);
    let (events, _) = broadcast::channel(EVENT_QUEUE);
    let (requests, requests_rx) = mpsc::channel::<Ctl>(CTL_QUEUE);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ended_tx, ended) = watch::channel(None);
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<Result<(), StartError>>(1);
    let (id, name) = (me.id, me.name.clone());
    let publish = Publish {
        authority: authority_tx,
        events: events.clone(),
    };
    let (sock, ctl_tx) = (socket.clone(), requests.clone());
    let thread = std::thread::Builder::new()
        .name("vigil-node".into())
        .spawn(move || {
            let ending = node_thread(
                cfg,
                me,
                options,
                sock,
                publish,
                (ctl_tx, requests_rx),
                shutdown_rx,
                started_tx,
            );
            let _ = ended_tx.send(Some(ending));
        })
        .map_err(|e| StartError::Io(format!("cannot start the node's thread: {e}")))?;
    let failed = match started_rx.recv() {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(StartError::Io(
            "the node's thread ended while starting".into(),
        )),
    };
    if let Some(e) = failed {
        let _ = thread.join();
        return Err(e);
    }
    Ok(NodeHandle {
        id,
        name,
        socket,
        authority,
        events,
        requests,
        shutdown,
        ended,
        thread: Some(thread),
    })
}

/// The node's thread: real-time scheduling, its own runtime, the loop, then the
/// self-fence action.
#[allow(clippy::too_many_arguments)]
fn node_thread(
    cfg: ClusterConfig,
    me: NodeConfig,
    mut options: Options,
    socket: Option<PathBuf>,
    publish: Publish,
    ctl: (mpsc::Sender<Ctl>, mpsc::Receiver<Ctl>),
    shutdown: watch::Receiver<bool>,
    started: std::sync::mpsc::SyncSender<Result<(), StartError>>,
) -> Ending {
    // Real-time scheduling applies to this thread alone; probe threads, hooks and
    // the control thread start at normal priority (SCHED_RESET_ON_FORK).
    let realtime = if options.realtime {
        let policy = match cfg.daemon.realtime {
            Realtime::Off => None,
            Realtime::Fifo => Some(RtPolicy::Fifo),
            Realtime::Rr => Some(RtPolicy::Rr),
        };
        let rt = rt::apply(policy, cfg.daemon.rt_priority, cfg.daemon.mlockall);
        for w in &rt.warnings {
            warn!(
                event = "daemon.realtime_refused",
                ts_us = wall_us(),
                "{w}; running on without it"
            );
        }
        info!(
            event = "daemon.realtime",
            ts_us = wall_us(),
            policy = %rt.policy,
            mlocked = rt.mlocked,
            "node thread scheduling: {}{}",
            rt.policy,
            if rt.mlocked { ", memory locked" } else { "" }
        );
        format!(
            "{}{}",
            rt.policy,
            if rt.mlocked { ", mlockall" } else { "" }
        )
    } else {
        "as the embedder runs it".to_string()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let e = StartError::Io(format!("cannot start the node's runtime: {e}"));
            let _ = started.send(Err(e.clone()));
            return Ending::Failed(e.to_string());
        }
    };
    let self_fence = std::mem::take(&mut options.self_fence);
    let (cfg_fence, me_fence) = (cfg.clone(), me.clone());
    let authority = publish.authority.clone();
    let ending = runtime.block_on(serve(
        cfg, me, options, socket, realtime, publish, ctl, shutdown, started,
    ));
    let _ = authority.send(None);
    if let Ending::Fenced(reason) = &ending {
        match self_fence {
            SelfFenceAction::AsConfigured => {
                crate::fence_action::carry_out(&cfg_fence, &me_fence, reason)
            }
            SelfFenceAction::Callback(f) => f(reason),
        }
    }
    ending
}

/// An incarnation that grows across restarts: start time in microseconds, with
/// random low bits so two processes started in the same microsecond differ; above
/// `after` (the one being replaced, on a rejoin) even if the clock stepped back.
/// Checked: a clock so far ahead that the time does not fit (the year 2253) gives
/// the largest incarnation rather than a wrapped, small one.
pub fn fresh_incarnation(after: Option<Incarnation>) -> Incarnation {
    let r: u8 = rand::random();
    let from_clock = wall_us()
        .checked_mul(256)
        .map_or(u64::MAX, |t| t | u64::from(r) | 1);
    let above = after.map_or(0, |a| a.0.saturating_add(1));
    Incarnation(from_clock.max(above))
}

/// A node set as a JSON-style list of IDs, `[2,3,4]`, for log fields and messages.
fn ids(set: NodeSet) -> String {
    let list: Vec<String> = set.iter().map(|n| n.0.to_string()).collect();
    format!("[{}]", list.join(","))
}

/// `generation 7 [0,1,2]`, comma-separated.
fn known_views(views: &[vigil_fence::KnownView]) -> String {
    let list: Vec<String> = views
        .iter()
        .map(|v| format!("generation {} {}", v.generation.0, ids(v.members)))
        .collect();
    list.join(", ")
}

/// The stable name of a fence reason and the generation it is about.
pub(crate) fn reason_parts(r: &FenceReason) -> (&'static str, u64) {
    match r {
        FenceReason::RaceLost { slot } => ("race_lost", slot.0),
        FenceReason::NoDecision { slot } => ("no_decision", slot.0),
        FenceReason::Excluded { generation } => ("excluded", generation.0),
        FenceReason::Unhealthy { .. } => ("unhealthy", 0),
        FenceReason::Stalled { .. } => ("stalled", 0),
    }
}

/// A fence reason in words.
pub(crate) fn reason_text(r: &FenceReason) -> String {
    match r {
        FenceReason::RaceLost { slot } => format!(
            "this side's racer found no quorum of view {} within race_timeout",
            slot.0
        ),
        FenceReason::NoDecision { slot } => format!(
            "no view after generation {} was decided within race_timeout",
            slot.0
        ),
        FenceReason::Excluded { generation } => {
            format!("view {} was decided without this node", generation.0)
        }
        FenceReason::Unhealthy { probe } => {
            format!("health probe {probe} failed and the node could not leave gracefully, or is set to fence")
        }
        FenceReason::Stalled { stall_ms } => format!(
            "this node was not running for {stall_ms} ms, longer than its lease: its authority lapsed and its view may be stale"
        ),
    }
}

fn self_fence_name(s: &SelfFence) -> &'static str {
    match s {
        SelfFence::Exit => "exit",
        SelfFence::Hook(_) => "hook",
        SelfFence::Reboot => "reboot",
        SelfFence::Halt => "halt",
    }
}

struct Running {
    cfg: ClusterConfig,
    me: NodeConfig,
    config_file: PathBuf,
    /// The links, by link ID; `None` where this node is not attached (the witness
    /// on the links between the nodes).
    links: Vec<Option<Link>>,
    origin: std::time::Instant,
    node: Node,
    last_now: Instant,
    /// Where generations are made durable, on a thread of its own.
    store: StoreWorker,
    /// Generations handed to the store and not yet durable.
    persisting: usize,
    /// Outputs waiting for the generations before them to be durable.
    held: VecDeque<Output>,
    /// The configured probes of this node, by the ID the node gave them.
    checks: BTreeMap<ProbeId, (ProbeCheck, Duration)>,
    probe_tx: mpsc::UnboundedSender<ProbeDone>,
    realtime: String,
    dog: Dog,
    /// Fault injection (testing only): frames from these (peer, link) are dropped
    /// on arrival, frames to these are not sent.
    drop_in: BTreeSet<(NodeId, LinkId)>,
    drop_out: BTreeSet<(NodeId, LinkId)>,
    /// Who sends from which UDP address, to apply `drop_in`.
    senders: BTreeMap<std::net::SocketAddr, NodeId>,
    injected_drops: u64,
    /// The control socket's counters.
    control: Option<control::Monitor>,
    /// What clients may act on, as published to the handle.
    publish_authority: watch::Sender<Option<Authority>>,
    /// Every event, for the handle's subscribers.
    events: broadcast::Sender<Event>,
    /// `[[hooks]]`, run off this thread on changes of authority.
    hooks: crate::hooks::Hooks,
    /// The service manager, when `Options::notify` is set and it listens.
    notifier: Option<Notifier>,
    /// Something the `STATUS=` line shows may have changed.
    status_dirty: bool,
    /// What the metrics endpoint counts that the status does not (races).
    counters: std::sync::Arc<crate::metrics::Counters>,
}

/// The watchdog, when configured.
enum Dog {
    /// None configured.
    Off,
    /// Configured; armed once the node first holds authority.
    Waiting,
    /// Open and counting down; fed while the node holds authority.
    Armed {
        dog: Watchdog,
        last_pet: std::time::Instant,
        pets: u64,
    },
}

impl Running {
    /// Arm the watchdog at the first authority and feed it only while authority
    /// holds: a node whose user space hangs, or that keeps running without
    /// authority, is reset by the kernel. `Some` when the daemon must stop.
    fn tend_watchdog(&mut self) -> Option<Ending> {
        if matches!(self.dog, Dog::Off) {
            return None;
        }
        let now = self.now();
        if !self.node.authority_at(now) {
            return None;
        }
        match &mut self.dog {
            Dog::Off => None,
            Dog::Waiting => {
                let cfg = self.cfg.watchdog.as_ref()?;
                match Watchdog::open(&cfg.device, cfg.timeout, cfg.softdog) {
                    Ok(mut dog) => {
                        warn!(
                            event = "watchdog.armed",
                            ts_us = wall_us(),
                            node = self.me.id.0,
                            device = %cfg.device.display(),
                            timeout_ms = dog.timeout().as_millis() as u64,
                            test_device = dog.is_test_device(),
                            "watchdog {} armed ({} s): fed while this node holds authority",
                            cfg.device.display(),
                            dog.timeout().as_secs()
                        );
                        let pets = u64::from(dog.pet().is_ok());
                        self.dog = Dog::Armed {
                            dog,
                            last_pet: std::time::Instant::now(),
                            pets,
                        };
                        None
                    }
                    Err(e) => {
                        error!(
                        event = "watchdog.failed",
                        ts_us = wall_us(),
                        node = self.me.id.0,
                        "cannot arm the watchdog: {e}; the cluster counts on it, so this node stops"
                    );
                        Some(Ending::Failed(format!("cannot arm the watchdog: {e}")))
                    }
                }
            }
            Dog::Armed {
                dog,
                last_pet,
                pets,
            } => {
                if last_pet.elapsed() >= self.cfg.timers.heartbeat / 2 {
                    match dog.pet() {
                        Ok(()) => {
                            *pets += 1;
                            *last_pet = std::time::Instant::now();
                        }
                        Err(e) => {
                            warn!(event = "watchdog.pet_failed", ts_us = wall_us(), "{e}")
                        }
                    }
                }
                None
            }
        }
    }

    /// Whether an arriving frame is to be dropped by an injected fault.
    fn injected_drop(&mut self, link: LinkId, from: &LinkAddr) -> bool {
        if self.drop_in.is_empty() {
            return false;
        }
        let LinkAddr::Udp(addr) = from else {
            return false;
        };
        let hit = self
            .senders
            .get(addr)
            .is_some_and(|peer| self.drop_in.contains(&(*peer, link)));
        if hit {
            self.injected_drops += 1;
        }
        hit
    }

    /// `vigil fault`: change or show what is dropped.
    fn fault(&mut self, cmd: FaultCmd) -> Response {
        if !self.cfg.cluster.fault_injection {
            return Response::Error {
                message: "fault injection is disabled: it is a testing tool, enabled only with cluster.fault_injection = true in the config".into(),
            };
        }
        let links = |names: &[String]| -> Result<Vec<LinkId>, String> {
            if names.is_empty() {
                return Ok(self.cfg.links.iter().map(|l| l.id).collect());
            }
            names
                .iter()
                .map(|n| {
                    self.cfg
                        .links
                        .iter()
                        .find(|l| &l.name == n)
                        .map(|l| l.id)
                        .ok_or_else(|| format!("no link named {n}"))
                })
                .collect()
        };
        let witness = self.cfg.witness.as_ref().map(|_| WITNESS_ID);
        let peers = |ids: &[u8]| -> Result<Vec<NodeId>, String> {
            if ids.is_empty() {
                return Ok(self
                    .cfg
                    .nodes
                    .iter()
                    .map(|n| n.id)
                    .chain(witness)
                    .filter(|id| *id != self.me.id)
                    .collect());
            }
            ids.iter()
                .map(|i| {
                    self.cfg
                        .node(NodeId(*i))
                        .map(|n| n.id)
                        .or(witness.filter(|w| w.0 == *i))
                        .ok_or_else(|| format!("no node with ID {i}"))
                })
                .collect()
        };
        let result = match &cmd {
            FaultCmd::Block {
                peers: p,
                links: l,
                direction,
            } => peers(p).and_then(|p| {
                let l = links(l)?;
                for peer in &p {
                    for link in &l {
                        if matches!(direction, Direction::In | Direction::Both) {
                            self.drop_in.insert((*peer, *link));
                        }
                        if matches!(direction, Direction::Out | Direction::Both) {
                            self.drop_out.insert((*peer, *link));
                        }
                    }
                }
                Ok(())
            }),
            FaultCmd::Unblock { peers: p, links: l } => peers(p).and_then(|p| {
                let l = links(l)?;
                for peer in &p {
                    for link in &l {
                        self.drop_in.remove(&(*peer, *link));
                        self.drop_out.remove(&(*peer, *link));
                    }
                }
                Ok(())
            }),
            FaultCmd::Clear => {
                self.drop_in.clear();
                self.drop_out.clear();
                Ok(())
            }
            FaultCmd::Show => Ok(()),
            FaultCmd::SlowStore { ms } => {
                self.store.slow_down(*ms);
                Ok(())
            }
        };
        if let Err(message) = result {
            return Response::Error { message };
        }
        let faults = self.fault_lines();
        if cmd != FaultCmd::Show {
            warn!(
                event = "fault.injected",
                ts_us = wall_us(),
                node = self.me.id.0,
                command = ?cmd,
                dropping = %faults.join("; "),
                "fault injection (testing): {}",
                if faults.is_empty() { "nothing dropped".to_string() } else { faults.join("; ") }
            );
        }
        Response::Done {
            message: if faults.is_empty() {
                "dropping nothing".into()
            } else {
                faults.join("\n")
            },
        }
    }

    /// What injected faults drop, one line per direction and link.
    fn fault_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let slow = self.store.delay_ms();
        if slow > 0 {
            lines.push(format!("store: every write takes {slow} ms longer"));
        }
        for (set, what) in [(&self.drop_in, "from"), (&self.drop_out, "to")] {
            for l in &self.cfg.links {
                let peers: Vec<String> = set
                    .iter()
                    .filter(|(_, link)| *link == l.id)
                    .map(|(p, _)| p.0.to_string())
                    .collect();
                if !peers.is_empty() {
                    lines.push(format!(
                        "link {}: dropping frames {what} nodes {}",
                        l.name,
                        peers.join(",")
                    ));
                }
            }
        }
        lines
    }

    fn watchdog_word(&self) -> String {
        match &self.dog {
            Dog::Off => "none".into(),
            Dog::Waiting => {
                let device = self
                    .cfg
                    .watchdog
                    .as_ref()
                    .map_or_else(String::new, |w| w.device.display().to_string());
                format!("{device} configured, armed at the first authority")
            }
            Dog::Armed {
                dog,
                last_pet,
                pets,
            } => format!(
                "{} armed{}, timeout {} s, {pets} pets, last {} ms ago",
                dog.device().display(),
                if dog.is_test_device() {
                    " (test device)"
                } else {
                    ""
                },
                dog.timeout().as_secs(),
                last_pet.elapsed().as_millis()
            ),
        }
    }

    fn now(&mut self) -> Instant {
        let now = Instant::from_nanos(self.origin.elapsed().as_nanos() as u64);
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn peer_name(&self, id: NodeId) -> &str {
        self.cfg.node(id).map_or("?", |n| n.name.as_str())
    }

    fn link_name(&self, link: LinkId) -> &str {
        self.cfg
            .links
            .get(link.index())
            .map_or("?", |l| l.name.as_str())
    }

    /// Carry out everything the node produced, in order. `Some` when the node must
    /// stop: then the outputs still queued are not carried out.
    ///
    /// While a generation is on its way to the store, what follows it waits in
    /// `held`, except heartbeat-only frames (they carry no decision, so peers keep
    /// hearing a live node through a slow write) and a self-fence (nothing that
    /// waits may go out after it anyway).
    fn drain(&mut self) -> Option<Ending> {
        let mut left = false;
        loop {
            let next = if self.persisting == 0 {
                self.held.pop_front()
            } else {
                None
            };
            let Some(out) = next.or_else(|| self.node.poll_output()) else {
                break;
            };
            if self.persisting > 0 {
                let passes = match &out {
                    Output::Transmit(tx) => !vigil_llt::wire::carries_payload(&tx.bytes),
                    Output::Fence(FenceEvent::SelfFence { .. }) => true,
                    _ => false,
                };
                if !passes {
                    self.held.push_back(out);
                    continue;
                }
            }
            match out {
                Output::Transmit(tx) => self.transmit(tx),
                Output::Deliver(_) => {}
                Output::Llt(e) => {
                    self.status_dirty = true;
                    self.log_event(&e);
                    let _ = self.events.send(Event::Llt(e));
                }
                Output::Persist(g) => {
                    // Durably, before anything that follows it: the node may act on
                    // this generation only once it can never be reused.
                    if !self.store.persist(g) {
                        return Some(Ending::Failed(
                            "the generation store's thread has stopped".into(),
                        ));
                    }
                    self.persisting += 1;
                }
                Output::RunProbe(id) => {
                    if let Some((check, timeout)) = self.checks.get(&id) {
                        probes::spawn(
                            id,
                            check.clone(),
                            *timeout,
                            self.me.name.clone(),
                            self.probe_tx.clone(),
                        );
                    }
                }
                Output::Health(e) => {
                    self.log_health(&e);
                    let _ = self.events.send(Event::Health(e));
                }
                Output::Rejoin { stall } => {
                    let incarnation = fresh_incarnation(Some(self.node.incarnation()));
                    warn!(
                        event = "node.rejoin",
                        ts_us = wall_us(),
                        node = self.me.id.0,
                        stall_ms = stall.as_millis() as u64,
                        incarnation = %incarnation,
                        "not running for {} ms, longer than the lease: starting again as incarnation {incarnation}",
                        stall.as_millis()
                    );
                    let now = self.now();
                    self.node.rejoin(now, incarnation, rand::random());
                }
                Output::Fence(e) => {
                    self.status_dirty = true;
                    self.log_fence(&e);
                    self.counters.fence_event(&e);
                    let stop = match &e {
                        // Stop at once: nothing queued after it goes out.
                        FenceEvent::SelfFence { reason } => Some(Ending::Fenced(reason.clone())),
                        FenceEvent::Left { .. } => {
                            left = true;
                            None
                        }
                        _ => None,
                    };
                    if stop.is_some() {
                        let _ = self.publish_authority.send(None);
                    }
                    let _ = self.events.send(Event::Fence(e));
                    if stop.is_some() {
                        return stop;
                    }
                }
            }
        }
        left.then_some(Ending::Left)
    }

    /// The store finished a write. `Some` when the node must stop.
    fn stored(&mut self, done: Stored) -> Option<Ending> {
        self.persisting = self.persisting.saturating_sub(1);
        if let Err(e) = done.result {
            let message = format!(
                "cannot record generation {} in {}: {e}; stopping, since a generation that is not durable must not be acted on",
                done.state.highest.0,
                self.store.describe()
            );
            error!(
                event = "state.persist_failed",
                ts_us = wall_us(),
                generation = done.state.highest.0,
                store = %self.store.describe(),
                "{message}"
            );
            return Some(Ending::Failed(message));
        }
        if done.took > SLOW_WRITE {
            warn!(
                event = "state.slow_write",
                ts_us = wall_us(),
                generation = done.state.highest.0,
                took_ms = done.took.as_millis() as u64,
                "recording generation {} took {} ms; heartbeats went on meanwhile",
                done.state.highest.0,
                done.took.as_millis()
            );
        } else {
            debug!(
                event = "state.persisted",
                ts_us = wall_us(),
                generation = done.state.highest.0,
                took_us = done.took.as_micros() as u64,
                "generation recorded"
            );
        }
        None
    }

    /// Publish what clients may act on. Not while a generation is on its way to
    /// the store: the published authority then stays as it was (it only lapses).
    fn publish(&mut self) {
        if self.persisting > 0 || !self.held.is_empty() {
            return;
        }
        let now = self.now();
        let me = self.me.id;
        let origin = self.origin;
        let new = crate::authority::current(&self.node, me, now, origin);
        let mut changed = None;
        self.publish_authority.send_if_modified(|cur| {
            let material = match (cur.as_ref(), new.as_ref()) {
                (None, None) => false,
                (Some(a), Some(b)) => {
                    a.token != b.token
                        || a.primary != b.primary
                        || a.installed != b.installed
                        || a.view != b.view
                }
                _ => true,
            };
            // Moved, not cloned: most turns change only `valid_until`.
            if material {
                changed = Some(new.clone());
            }
            *cur = new;
            material
        });
        if let Some(a) = changed {
            self.status_dirty = true;
            self.log_authority(a.as_ref());
            self.hooks.changed(a.as_ref());
            let _ = self.events.send(Event::Authority(a));
        }
    }

    /// Tell the service manager what changed (see [`Options::notify`]): `READY=1`
    /// at the first authority, a new `STATUS=` line, `WATCHDOG=1` when due. Runs
    /// on every turn of the loop, so a loop that does not run feeds nothing.
    /// When the loop must next wake up for it.
    fn notify(&mut self) -> Option<std::time::Instant> {
        self.notifier.as_ref()?;
        let holds = self.publish_authority.borrow().is_some();
        let line = self.status_dirty.then(|| self.status_line());
        self.status_dirty = false;
        let n = self.notifier.as_mut()?;
        if let Some(line) = line {
            n.status(line);
        }
        if holds {
            n.ready();
        }
        n.tend_watchdog(std::time::Instant::now())
    }

    /// The `STATUS=` line: state, installed view, what clients may act on.
    fn status_line(&self) -> String {
        let fence = self.node.status().fence;
        let view = match &fence.installed {
            Some(v) => format!("view {} {}", v.generation.0, ids(v.node_set())),
            None => "no view".to_string(),
        };
        let authority = match self.publish_authority.borrow().as_ref() {
            Some(a) => format!(
                "clients may act on token {}, primary node {}{}",
                a.token.0,
                a.primary,
                if a.is_primary { " (this node)" } else { "" }
            ),
            None => "no authority".to_string(),
        };
        format!(
            "node {} {}: {}; {view}; {authority}",
            self.me.id,
            self.me.name,
            state_word(fence.state)
        )
    }

    /// `STOPPING=1`, with the reason as the status.
    fn notify_stopping(&mut self, why: &str) {
        if let Some(n) = self.notifier.as_mut() {
            n.status(format!("node {} {}: {why}", self.me.id, self.me.name));
            n.stopping();
        }
    }

    /// `authority.changed`: one line with the token and the primary.
    fn log_authority(&self, a: Option<&Authority>) {
        match a {
            Some(a) => info!(
                event = crate::events::AUTHORITY_CHANGED,
                ts_us = wall_us(),
                node = self.me.id.0,
                token = a.token.0,
                primary = a.primary.0,
                is_primary = a.is_primary,
                installed = a.installed.0,
                members = %ids(a.view.node_set()),
                "clients may act on view {} (token {}); primary is node {}{}",
                a.token.0,
                a.token.0,
                a.primary,
                if a.is_primary { " (this node)" } else { "" }
            ),
            None => info!(
                event = crate::events::AUTHORITY_CHANGED,
                ts_us = wall_us(),
                node = self.me.id.0,
                "clients may not act: this node holds no authority"
            ),
        }
    }

    fn transmit(&mut self, tx: Transmit) {
        if let Some(to) = tx.to {
            if self.drop_out.contains(&(to, tx.link)) {
                self.injected_drops += 1;
                return;
            }
        }
        let Some(link) = self.links.get(tx.link.index()).and_then(Option::as_ref) else {
            return;
        };
        let to = match tx.to {
            // One frame to every node: broadcast links only.
            None => None,
            // The witness: its address on its link.
            Some(WITNESS_ID) if self.cfg.witness.is_some() => match &self.cfg.witness {
                Some(w) if w.link == tx.link => Some(LinkAddr::Udp(w.address)),
                _ => return,
            },
            Some(to) => match self.cfg.node(to).and_then(|n| n.links.get(tx.link.index())) {
                Some(NodeLinkAddr::Udp { addr, .. }) => Some(LinkAddr::Udp(*addr)),
                Some(NodeLinkAddr::Ether { .. }) => tx.addr,
                Some(NodeLinkAddr::Absent) | None => return,
            },
        };
        if let Err(e) = link.send(to, &tx.bytes) {
            debug!(link = %tx.link, error = %e, "send failed");
        }
    }

    /// A fence or membership event: one line with its stable name.
    fn log_fence(&self, e: &FenceEvent) {
        let ts = wall_us();
        match e {
            FenceEvent::ViewInstalled { view } => info!(
                event = "view.installed",
                ts_us = ts,
                generation = view.generation.0,
                members = %ids(view.node_set()),
                "view {} installed: members {}",
                view.generation.0,
                ids(view.node_set())
            ),
            FenceEvent::ClientView { view } => info!(
                event = "view.client",
                ts_us = ts,
                generation = view.generation.0,
                members = %ids(view.node_set()),
                "clients now see view {}",
                view.generation.0
            ),
            FenceEvent::RaceStarted {
                slot,
                racer,
                proposal,
            } => warn!(
                event = "race.started",
                ts_us = ts,
                slot = slot.0,
                racer = racer.0,
                proposal = %ids(*proposal),
                "race for the view after generation {}: racer {racer} proposes {}",
                slot.0,
                ids(*proposal)
            ),
            FenceEvent::RaceWon {
                generation,
                members,
                duration,
            } => warn!(
                event = "race.won",
                ts_us = ts,
                generation = generation.0,
                members = %ids(*members),
                duration_ms = duration.as_millis() as u64,
                "race won: view {} with members {}",
                generation.0,
                ids(*members)
            ),
            FenceEvent::RaceLost { slot, duration } => error!(
                event = "race.lost",
                ts_us = ts,
                slot = slot.0,
                duration_ms = duration.as_millis() as u64,
                "race lost: no quorum of view {}",
                slot.0
            ),
            FenceEvent::AuthorityGained { generation } => info!(
                event = "authority.gained",
                ts_us = ts,
                generation = generation.0,
                "authority gained on view {}",
                generation.0
            ),
            FenceEvent::AuthorityLost { generation } => warn!(
                event = "authority.lost",
                ts_us = ts,
                generation = generation.0,
                "authority lost on view {}",
                generation.0
            ),
            FenceEvent::SelfFence { reason } => {
                let (name, generation) = reason_parts(reason);
                error!(
                    event = "node.self_fence",
                    ts_us = ts,
                    node = self.me.id.0,
                    reason = name,
                    generation,
                    action = self_fence_name(&self.cfg.cluster.self_fence),
                    "FENCING MYSELF: {}",
                    reason_text(reason)
                );
            }
            FenceEvent::ManualSeed { members, overrides } => warn!(
                event = "seed.manual",
                ts_us = ts,
                members = %ids(*members),
                overrides = %known_views(overrides),
                "MANUAL SEED (gabconfig -x): seeding with the reachable nodes {} only{}; if other nodes run apart from these, the cluster can split in two",
                ids(*members),
                if overrides.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", overriding the last known view(s) {} whose quorum is not here",
                        known_views(overrides)
                    )
                }
            ),
            FenceEvent::SeedWaiting { group, needs } => warn!(
                event = "seed.waiting",
                ts_us = ts,
                group = %ids(*group),
                needs = %known_views(needs),
                "not seeding with {}: it holds no quorum of the last known view(s) {}, which may still run elsewhere; waiting for more of its members (gabconfig -x overrides this)",
                ids(*group),
                known_views(needs)
            ),
            FenceEvent::Left { generation } => info!(
                event = "node.left",
                ts_us = ts,
                generation = generation.0,
                "left the cluster gracefully (last view {})",
                generation.0
            ),
        }
    }

    /// A health event: probes and stalls, one line each with a stable name.
    fn log_health(&self, e: &HealthEvent) {
        let ts = wall_us();
        match e {
            HealthEvent::Probe(ProbeEvent::Failed {
                name,
                failures,
                reason,
                ..
            }) => warn!(
                event = "probe.failed",
                ts_us = ts,
                probe = %name,
                failures,
                reason = %reason,
                "health probe {name} failed ({failures} in a row): {reason}"
            ),
            HealthEvent::Probe(ProbeEvent::Recovered { name, .. }) => info!(
                event = "probe.recovered",
                ts_us = ts,
                probe = %name,
                "health probe {name} passes again"
            ),
            HealthEvent::Probe(ProbeEvent::Unhealthy {
                name,
                action,
                reason,
                ..
            }) => error!(
                event = "node.unhealthy",
                ts_us = ts,
                node = self.me.id.0,
                probe = %name,
                action = ?action,
                reason = %reason,
                "health probe {name} reached its failure threshold ({reason}): {}",
                match action {
                    vigil::health::OnFailure::Leave => "leaving the cluster so the others take over",
                    vigil::health::OnFailure::Fence => "fencing this node",
                }
            ),
            HealthEvent::LeaveTimedOut { probe } => error!(
                event = "node.leave_timeout",
                ts_us = ts,
                node = self.me.id.0,
                probe = %probe,
                "the graceful leave after probe {probe} failed did not complete: fencing instead"
            ),
            HealthEvent::Stall { length, worst } => warn!(
                event = "node.stall",
                ts_us = ts,
                node = self.me.id.0,
                stall_us = length.as_micros() as u64,
                worst_us = worst.as_micros() as u64,
                "this node was not running for {:.1} ms (its timers fired that late); peers are not held to it",
                length.as_secs_f64() * 1e3
            ),
        }
    }

    /// A link state change: one line with the stable event name, peer and link.
    fn log_link(
        &self,
        warning: bool,
        event: &'static str,
        peer: NodeId,
        link: LinkId,
        state: &str,
    ) {
        let (ts, peer_name, link) = (wall_us(), self.peer_name(peer), self.link_name(link));
        if warning {
            warn!(
                event,
                ts_us = ts,
                peer = peer.0,
                peer_name,
                link,
                "link {state}"
            );
        } else {
            info!(
                event,
                ts_us = ts,
                peer = peer.0,
                peer_name,
                link,
                "link {state}"
            );
        }
    }

    fn log_event(&self, e: &LltEvent) {
        let ts = wall_us();
        match *e {
            LltEvent::Started => {
                info!(event = "llt.started", ts_us = ts, node = %self.me.id, incarnation = %self.node.incarnation(), "listening window passed; sending heartbeats")
            }
            LltEvent::LinkUp { peer, link } => self.log_link(false, "link.up", peer, link, "UP"),
            LltEvent::LinkTrouble { peer, link } => {
                self.log_link(true, "link.trouble", peer, link, "TROUBLE")
            }
            LltEvent::LinkDown { peer, link } => {
                self.log_link(true, "link.down", peer, link, "DOWN")
            }
            LltEvent::PeerUp { peer, incarnation } => {
                info!(event = "peer.up", ts_us = ts, peer = peer.0, peer_name = self.peer_name(peer), incarnation = %incarnation, "peer UP")
            }
            LltEvent::PeerDown { peer } => warn!(
                event = "peer.down",
                ts_us = ts,
                peer = peer.0,
                peer_name = self.peer_name(peer),
                "peer DOWN: every link silent"
            ),
            LltEvent::PeerRestarted { peer, old, new } => {
                info!(event = "peer.restarted", ts_us = ts, peer = peer.0, peer_name = self.peer_name(peer), old = %old, new = %new, "peer restarted with a new incarnation")
            }
            LltEvent::JeopardyEntered { peer, link } => warn!(
                event = "jeopardy.entered",
                ts_us = ts,
                peer = peer.0,
                peer_name = self.peer_name(peer),
                link = self.link_name(link),
                "peer in jeopardy: one link left"
            ),
            LltEvent::JeopardyCleared { peer } => info!(
                event = "jeopardy.cleared",
                ts_us = ts,
                peer = peer.0,
                peer_name = self.peer_name(peer),
                "peer out of jeopardy"
            ),
            LltEvent::DuplicateNodeId { link, incarnation } => {
                error!(event = "node.duplicate_id", ts_us = ts, node = self.me.id.0, link = self.link_name(link), other_incarnation = %incarnation, "another live process uses node ID {}", self.me.id)
            }
        }
    }

    fn status(&mut self) -> DaemonStatus {
        let now = self.now();
        let node = self.node.status();
        let t = &self.cfg.timers;
        DaemonStatus {
            cluster_name: self.cfg.cluster.name.clone(),
            cluster_id: self.cfg.cluster.id.0,
            local: self.me.id,
            node_name: self.me.name.clone(),
            pid: std::process::id(),
            config_file: self.config_file.clone(),
            authenticated: node.llt.keys.send.is_some(),
            uptime_ms: self.origin.elapsed().as_millis() as u64,
            now_ns: now.as_nanos(),
            timers: TimersInfo {
                heartbeat_ms: t.heartbeat.as_millis() as u64,
                heartbeat_lowpri_ms: t.heartbeat_lowpri.as_millis() as u64,
                peer_trouble_ms: t.peer_trouble.as_millis() as u64,
                peer_inactive_ms: t.peer_inactive.as_millis() as u64,
                link_up_count: t.link_up_count,
                race_timeout_ms: t.race_timeout.as_millis() as u64,
                lease_ms: t.lease.as_millis() as u64,
                stall_report_ms: t.stall_report.as_millis() as u64,
                profile: format!("{:?}", t.profile).to_lowercase(),
            },
            stall_action: format!("{:?}", self.cfg.daemon.stall_action).to_lowercase(),
            realtime: self.realtime.clone(),
            watchdog: self.watchdog_word(),
            faults: {
                let mut f = self.fault_lines();
                if self.injected_drops > 0 {
                    f.push(format!(
                        "{} frames dropped by injected faults",
                        self.injected_drops
                    ));
                }
                f
            },
            fencing: match self.cfg.cluster.fencing {
                FencingMode::Majority => "majority".into(),
                FencingMode::Disabled => "disabled".into(),
            },
            self_fence: self_fence_name(&self.cfg.cluster.self_fence).into(),
            max_drift_ppm: self.cfg.cluster.max_drift_ppm,
            links: self
                .cfg
                .links
                .iter()
                .zip(&self.links)
                .filter_map(|(lc, drv)| Some((lc, drv.as_ref()?)))
                .map(|(lc, drv)| LinkInfo {
                    id: lc.id.0,
                    name: lc.name.clone(),
                    kind: lc.kind.to_string(),
                    priority: format!("{:?}", lc.priority).to_lowercase(),
                    local_address: match (drv.local_addr(), &self.me.links[lc.id.index()]) {
                        (LinkAddr::Ether(_), NodeLinkAddr::Ether { interface }) => {
                            format!("{interface} {}", drv.local_addr())
                        }
                        (a, _) => a.to_string(),
                    },
                    driver: drv.stats(),
                })
                .collect(),
            nodes: self
                .cfg
                .nodes
                .iter()
                .cloned()
                .chain(self.cfg.witness_node())
                .map(|n| NodeInfo {
                    id: n.id,
                    name: n.name.clone(),
                    addresses: n
                        .links
                        .iter()
                        .map(|a| match a {
                            NodeLinkAddr::Udp { addr, .. } => addr.to_string(),
                            NodeLinkAddr::Ether { interface } => interface.clone(),
                            NodeLinkAddr::Absent => "-".to_string(),
                        })
                        .collect(),
                })
                .collect(),
            node,
            control: self
                .control
                .as_ref()
                .map(control::Monitor::stats)
                .unwrap_or_default(),
            log_lines_lost: logging::lost_lines(),
            store: self.store.describe().to_string(),
        }
    }
}

fn open_links(
    cfg: &ClusterConfig,
    me: &NodeConfig,
    rx: &mpsc::Sender<RxFrame>,
) -> Result<Vec<Option<Link>>, String> {
    let mut links = Vec::new();
    for lc in &cfg.links {
        let link = match (&me.links[lc.id.index()], lc.kind) {
            (NodeLinkAddr::Absent, _) => {
                links.push(None);
                continue;
            }
            (NodeLinkAddr::Udp { addr, interface }, LinkKind::Udp | LinkKind::Udp6) => {
                UdpLink::open(lc.id, *addr, interface.as_deref(), lc.dscp, rx.clone())
                    .map(Link::Udp)
            }
            (NodeLinkAddr::Ether { interface }, LinkKind::Ether) => {
                EtherLink::open(lc.id, interface, lc.ethertype, rx.clone()).map(Link::Ether)
            }
            _ => return Err(format!("link {}: address does not match its kind", lc.name)),
        };
        let link = link.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "; is another vigil daemon already running as node {}?",
                    me.name
                )
            } else {
                String::new()
            };
            format!("link {} ({}): {e}{hint}", lc.name, lc.kind)
        })?;
        links.push(Some(link));
    }
    Ok(links)
}

/// Bind the control socket: refuse if a live daemon answers on it, replace a stale one.
/// Mode 0600, or 0660 owned by `group` (`daemon.control_group`).
fn bind_control(
    path: &Path,
    group: Option<&str>,
) -> Result<std::os::unix::net::UnixListener, String> {
    let gid = group.map(control::group_id).transpose()?;
    // The socket's directory (`run_dir` by default) is created 0700 if missing and
    // must be private: whoever can write to it can replace the socket.
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            vigil::files::private_dir(dir, "control socket directory")?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "control socket {} is in use by a running daemon",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            format!(
                "cannot give control socket {} to group {} (daemon.control_group): {e}",
                path.display(),
                group.unwrap_or_default()
            )
        })?;
    }
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:o} on {}: {e}", path.display()))?;
    Ok(listener)
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: ClusterConfig,
    me: NodeConfig,
    options: Options,
    socket: Option<PathBuf>,
    realtime: String,
    publish: Publish,
    (ctl_tx, mut ctl_rx): (mpsc::Sender<Ctl>, mpsc::Receiver<Ctl>),
    mut shutdown: watch::Receiver<bool>,
    started: std::sync::mpsc::SyncSender<Result<(), StartError>>,
) -> Ending {
    let config_file = options
        .config_file
        .clone()
        .unwrap_or_else(|| cfg.source.clone());
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel::<Stored>();
    let opened = open(
        cfg,
        me,
        options,
        config_file,
        socket.as_deref(),
        realtime,
        publish,
        stored_tx,
    );
    let (mut run, listener, mut rx, mut probe_rx) = match opened {
        Ok(o) => o,
        Err(e) => {
            let _ = started.send(Err(e.clone()));
            return Ending::Failed(e.to_string());
        }
    };
    // The Prometheus endpoint, on a thread of its own: it asks for statuses
    // through the same bounded queue as the control socket.
    let metrics = match run.cfg.metrics {
        Some(m) => {
            match crate::metrics::Server::start(m.listen, ctl_tx.clone(), run.counters.clone()) {
                Ok(s) => {
                    info!(
                        event = "metrics.listening",
                        ts_us = wall_us(),
                        node = run.me.id.0,
                        listen = %s.local_addr(),
                        "serving Prometheus metrics on http://{}/metrics",
                        s.local_addr()
                    );
                    Some(s)
                }
                Err(e) => {
                    let _ = started.send(Err(StartError::Io(e.clone())));
                    return Ending::Failed(e);
                }
            }
        }
        None => None,
    };
    // The control socket is served on a thread of its own; only parsed requests
    // reach this loop, through a bounded queue.
    let server = match listener {
        Some(l) => match control::Server::start(
            l,
            ctl_tx,
            run.config_file.clone(),
            control::Feed {
                node: run.me.id,
                node_name: run.me.name.clone(),
                authority: run.publish_authority.subscribe(),
                events: run.events.clone(),
                control_group: run.cfg.daemon.control_group.clone(),
            },
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = started.send(Err(StartError::Io(e.clone())));
                return Ending::Failed(e);
            }
        },
        None => {
            drop(ctl_tx);
            None
        }
    };
    run.control = server.as_ref().map(control::Server::monitor);
    let _ = started.send(Ok(()));
    let race_timeout = run.cfg.timers.race_timeout;
    // `vigil stop`: when to give up waiting for the node to have left.
    let mut leave_deadline: Option<Instant> = None;
    // A stop decided while answering a control request.
    let mut stop_now: Option<Ending> = None;
    let ending = loop {
        if let Some(end) = run.drain() {
            break end;
        }
        run.publish();
        let notify_at = run.notify();
        if let Some(end) = run.tend_watchdog() {
            break end;
        }
        if let Some(end) = stop_now.take() {
            break end;
        }
        if run.node.refused() {
            let message = format!(
                "node ID {} ({}) is already in use by a live node in cluster {}; refusing to start",
                run.me.id, run.me.name, run.cfg.cluster.name
            );
            error!(
                event = "daemon.refused",
                ts_us = wall_us(),
                node = run.me.id.0,
                "{message}"
            );
            break Ending::Refused(message);
        }
        let wake = match (run.node.poll_timeout(), leave_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = wake.map(|t| run.origin + Duration::from_nanos(t.as_nanos()));
        let deadline = match (deadline, notify_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break Ending::Stopped;
                }
            }
            Some(done) = stored_rx.recv() => {
                if let Some(end) = run.stored(done) {
                    break end;
                }
            }
            _ = sleep => {
                let now = run.now();
                if leave_deadline.is_some_and(|d| now >= d) {
                    warn!(
                        event = "node.leave_timeout",
                        ts_us = wall_us(),
                        node = run.me.id.0,
                        "no confirmation of the graceful leave within 3 × race_timeout; stopping anyway"
                    );
                    break Ending::Stopped;
                }
                run.node.handle_timeout(now);
            }
            Some(frame) = rx.recv() => {
                // Take whatever else is already queued before going round again.
                let mut next = Some(frame);
                let mut more = 0;
                while let Some(f) = next.take() {
                    if !run.injected_drop(f.link, &f.from) {
                        let now = run.now();
                        run.node.handle_frame(now, f.link, Some(f.from), &f.bytes);
                    }
                    more += 1;
                    if more < 256 {
                        next = rx.try_recv().ok();
                    }
                }
            }
            Some(done) = probe_rx.recv() => {
                let now = run.now();
                run.node.probe_result(now, done.probe, done.result);
            }
            Some(ctl) = ctl_rx.recv() => {
                // A few per turn: the next turn serves timers and frames first.
                let mut next = Some(ctl);
                let mut answered = 0;
                while let Some(ctl) = next.take() {
                    let response = answer(&mut run, ctl.req, ctl.reloaded, &mut leave_deadline, &mut stop_now, race_timeout);
                    let _ = ctl.reply.send(response);
                    answered += 1;
                    if answered < CTL_PER_TURN && stop_now.is_none() {
                        next = ctl_rx.try_recv().ok();
                    }
                }
            }
        }
    };
    let _ = run.publish_authority.send(None);
    run.notify_stopping(&match &ending {
        Ending::Stopped => "stopped".to_string(),
        Ending::Left => "left the cluster".to_string(),
        Ending::Refused(m) | Ending::Failed(m) => m.clone(),
        Ending::Fenced(r) => format!("fenced: {}", reason_text(r)),
    });
    drop(metrics);
    match &ending {
        Ending::Fenced(_) => {
            // Stop serving at once; nothing more goes out: close the links before
            // acting.
            drop(server);
            if let Some(s) = &socket {
                let _ = std::fs::remove_file(s);
            }
            drop(std::mem::take(&mut run.links));
        }
        _ => {
            // A deliberate stop: the watchdog stands down (magic close). A fenced
            // node keeps it counting, so the kernel resets the machine if the
            // fence action does not.
            if let Dog::Armed { dog, .. } = std::mem::replace(&mut run.dog, Dog::Off) {
                match dog.disarm() {
                    Ok(()) => info!(
                        event = "watchdog.disarmed",
                        ts_us = wall_us(),
                        "watchdog stopped (magic close)"
                    ),
                    Err(e) => error!(event = "watchdog.disarm_failed", ts_us = wall_us(), "{e}"),
                }
            }
            // Let control connections in flight write their answers (`vigil stop`).
            drop(ctl_rx);
            if let Some(server) = server {
                server.stop(ANSWER_GRACE);
            }
            if let Some(s) = &socket {
                let _ = std::fs::remove_file(s);
            }
            info!(
                event = "daemon.stopped",
                ts_us = wall_us(),
                node = run.me.id.0,
                ending = ?ending,
                "node stopped"
            );
        }
    }
    ending
}

/// What [`open`] opened: the node, the control listener, and the queues its loop
/// reads.
type Opened = (
    Running,
    Option<std::os::unix::net::UnixListener>,
    mpsc::Receiver<RxFrame>,
    mpsc::UnboundedReceiver<ProbeDone>,
);

/// Open the store, the control socket and the links, and make the node.
#[allow(clippy::too_many_arguments)]
fn open(
    cfg: ClusterConfig,
    me: NodeConfig,
    options: Options,
    config_file: PathBuf,
    socket: Option<&Path>,
    realtime: String,
    publish: Publish,
    stored_tx: mpsc::UnboundedSender<Stored>,
) -> Result<Opened, StartError> {
    let origin = std::time::Instant::now();
    let notifier = if options.notify {
        Notifier::from_env().unwrap_or_else(|e| {
            warn!(
                event = "daemon.notify_failed",
                ts_us = wall_us(),
                "{e}; not notifying the service manager"
            );
            None
        })
    } else {
        None
    };
    if let Some(n) = &notifier {
        let every = n.watchdog_every();
        info!(
            event = "daemon.notify",
            ts_us = wall_us(),
            watchdog_ms = every.map(|d| d.as_millis() as u64),
            "notifying the service manager (READY=1 at the first authority){}",
            every.map_or(String::new(), |d| format!(
                ", WATCHDOG=1 every {} ms",
                d.as_millis()
            ))
        );
    }
    let incarnation = fresh_incarnation(None);
    let mut store: Box<dyn GenerationStore> = match options.store {
        Some(s) => s,
        None => {
            Box::new(StateFile::open(&cfg.cluster.state_dir, &me.name).map_err(StartError::Io)?)
        }
    };
    let persisted = store.load().map_err(StartError::Io)?;
    let store_name = store.describe();
    let store = StoreWorker::start(store, stored_tx).map_err(StartError::Io)?;
    let (rx_tx, rx) = mpsc::channel::<RxFrame>(RX_QUEUE);
    // Unbounded, but bounded in practice: at most one run per probe is out.
    let (probe_tx, probe_rx) = mpsc::unbounded_channel::<ProbeDone>();
    let listener = socket
        .map(|p| bind_control(p, cfg.daemon.control_group.as_deref()))
        .transpose()
        .map_err(StartError::Io)?;
    let links = open_links(&cfg, &me, &rx_tx).map_err(StartError::Io)?;
    drop(rx_tx);
    let mut node = Node::new(
        cfg.llt_config(),
        cfg.fence_config(),
        me.id,
        incarnation,
        Instant::ZERO,
        rand::random(),
        persisted,
    )
    .map_err(|e| StartError::Config(format!("{store_name}: {e}")))?;
    info!(
        event = "daemon.started",
        ts_us = wall_us(),
        node = me.id.0,
        name = %me.name,
        cluster = %cfg.cluster.name,
        incarnation = %incarnation,
        socket = %socket.map_or_else(|| "none".to_string(), |s| s.display().to_string()),
        persisted_generation = persisted.highest.0,
        store = %store_name,
        fencing = ?cfg.cluster.fencing,
        self_fence = self_fence_name(&cfg.cluster.self_fence),
        "listening for {} ms before sending",
        cfg.llt_config().listen_window.as_millis()
    );
    if cfg.cluster.insecure {
        warn!(
            event = "cluster.insecure",
            ts_us = wall_us(),
            node = me.id.0,
            config = %config_file.display(),
            "llt frames are NOT authenticated (cluster.insecure = true): anyone who can reach a cluster network can forge heartbeats and membership; make a key with `vigil keygen {}` and set cluster.key_file",
            cfg.suggested_key_file().display()
        );
    } else {
        let ring: Vec<String> = cfg.frame_keys().iter().map(|k| k.id.to_string()).collect();
        info!(
            event = "keys.loaded",
            ts_us = wall_us(),
            node = me.id.0,
            send = ring.first().map_or("", String::as_str),
            accept = %ring.join(","),
            "frames sent with key {}, accepted under {}",
            ring.first().map_or("", String::as_str),
            ring.join(", ")
        );
    }
    let mut checks = BTreeMap::new();
    for p in cfg.probes_for(me.id) {
        let id = node.add_probe(Instant::ZERO, p.spec.clone());
        checks.insert(id, (p.check.clone(), p.spec.timeout));
        info!(
            event = "probe.configured",
            ts_us = wall_us(),
            probe = %p.spec.name,
            check = ?p.check,
            interval_ms = p.spec.interval.as_millis() as u64,
            timeout_ms = p.spec.timeout.as_millis() as u64,
            threshold = p.spec.threshold,
            on_failure = ?p.spec.on_failure,
            "health probe {} configured",
            p.spec.name
        );
    }
    let mut senders = BTreeMap::new();
    for n in &cfg.nodes {
        for a in &n.links {
            if let NodeLinkAddr::Udp { addr, .. } = a {
                senders.insert(*addr, n.id);
            }
        }
    }
    if let Some(w) = &cfg.witness {
        senders.insert(w.address, WITNESS_ID);
    }
    let dog = if cfg.watchdog.is_some() {
        Dog::Waiting
    } else {
        Dog::Off
    };
    let hooks = crate::hooks::Hooks::start(&cfg.hooks, me.id, &me.name);
    let run = Running {
        hooks,
        cfg,
        me,
        config_file,
        links,
        origin,
        node,
        last_now: Instant::ZERO,
        store,
        persisting: 0,
        held: VecDeque::new(),
        checks,
        probe_tx,
        realtime,
        dog,
        drop_in: BTreeSet::new(),
        drop_out: BTreeSet::new(),
        senders,
        injected_drops: 0,
        control: None,
        publish_authority: publish.authority,
        events: publish.events,
        notifier,
        status_dirty: true,
        counters: Default::default(),
    };
    Ok((run, listener, rx, probe_rx))
}

/// The node's answer to one control request.
fn answer(
    run: &mut Running,
    req: Request,
    reloaded: Option<Result<Box<ClusterConfig>, String>>,
    leave_deadline: &mut Option<Instant>,
    stop_now: &mut Option<Ending>,
    race_timeout: Duration,
) -> Response {
    match req {
        Request::Status => Response::Status(Box::new(run.status())),
        // The control thread answers these itself.
        Request::Version | Request::Subscribe => Response::Error {
            message: format!("{} is not a request for the node", req.name()),
        },
        Request::ManualSeed => manual_seed(run),
        Request::Fault(cmd) => run.fault(cmd),
        Request::KeyReload => match reloaded {
            Some(Ok(cfg)) => run.reload_keys(&cfg),
            Some(Err(message)) => run.refuse_keys(message),
            None => Response::Error {
                message: "keys unchanged: the config was not read".into(),
            },
        },
        Request::Stop => {
            let now = run.now();
            let state = run.node.status().fence.state;
            if leave_deadline.is_some() {
                Response::Done {
                    message: "already leaving".into(),
                }
            } else if matches!(state, NodeState::Member | NodeState::Racing) {
                info!(
                    event = "node.leaving",
                    ts_us = wall_us(),
                    node = run.me.id.0,
                    "leaving the cluster gracefully"
                );
                run.node.leave(now);
                run.notify_stopping("leaving the cluster gracefully");
                *leave_deadline = Some(now + race_timeout.saturating_mul(3));
                Response::Done {
                    message: "leaving".into(),
                }
            } else {
                info!(event = "node.leaving", ts_us = wall_us(), node = run.me.id.0, state = ?state, "asked to leave but not a member; stopping at once");
                *stop_now = Some(Ending::Stopped);
                Response::Done {
                    message: format!("not a member ({}); stopping", state_word(state)),
                }
            }
        }
    }
}

/// The fence state as a word for people and JSON: `unseeded`, `member`, `racing`,
/// `left`, `fenced`.
pub fn state_word(s: NodeState) -> &'static str {
    match s {
        NodeState::Unseeded => "unseeded",
        NodeState::Member => "member",
        NodeState::Racing => "racing",
        NodeState::Left => "left",
        NodeState::Fenced => "fenced",
    }
}

/// `gabconfig -x`: only a node with no view yet can seed.
impl Running {
    /// `vigil key reload`: take `key_file` and `accept_key_files` from the config
    /// file as just read again (`cfg`, already checked like at start) and use them
    /// from now on. Refused when the cluster would change between keyed and
    /// unkeyed, or the file now describes another cluster or node.
    /// `vigil key reload` refused: log it and say so; the keys stay as they were.
    fn refuse_keys(&self, message: String) -> Response {
        warn!(
            event = "keys.reload_refused",
            ts_us = wall_us(),
            node = self.me.id.0,
            "{message}"
        );
        Response::Error {
            message: format!("keys unchanged: {message}"),
        }
    }

    fn reload_keys(&mut self, cfg: &ClusterConfig) -> Response {
        let refuse = |message: String| self.refuse_keys(message);
        let file = cfg.source.display();
        if cfg.cluster.id != self.cfg.cluster.id
            || cfg.node_by_name(&self.me.name).map(|n| n.id) != Some(self.me.id)
        {
            return refuse(format!(
                "{file} no longer describes this node ({} in cluster ID {}); restart the daemon to run another configuration",
                self.me.name, self.cfg.cluster.id.0
            ));
        }
        let old = self.node.status().llt.keys;
        let ring = cfg.frame_keys();
        match (old.send, ring.first()) {
            (Some(_), None) => {
                return refuse(format!(
                    "{file}: cluster.key_file: this cluster is keyed and the file now gives no key (insecure = true); a node without keys drops every frame of its keyed peers. Turning authentication off needs every node restarted"
                ))
            }
            (None, Some(_)) => {
                return refuse(format!(
                    "{file}: cluster.key_file: this node runs unauthenticated (it started with insecure = true); its peers drop keyed frames, so turning keys on needs every node restarted with the key"
                ))
            }
            _ => {}
        }
        let ids = |v: &[KeyId]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let new_ids: Vec<KeyId> = ring.iter().map(|k| k.id).collect();
        let describe = |send: Option<KeyId>, accept: &[KeyId]| match send {
            Some(s) => format!("sending with key {s}, accepting {}", ids(accept)),
            None => "unauthenticated".to_string(),
        };
        let now_text = describe(new_ids.first().copied(), &new_ids);
        let was_text = describe(old.send, &old.accept);
        // Whatever else changed in the file waits for a restart; say so.
        let mut others = cfg.clone();
        others.cluster.key_file = self.cfg.cluster.key_file.clone();
        others.cluster.key = self.cfg.cluster.key.clone();
        others.cluster.accept_key_files = self.cfg.cluster.accept_key_files.clone();
        others.cluster.accept_keys = self.cfg.cluster.accept_keys.clone();
        let later = if others == self.cfg {
            String::new()
        } else {
            "; the file's other changes take effect at the next restart".to_string()
        };
        if new_ids == old.accept && new_ids.first() == old.send.as_ref() {
            return Response::Done {
                message: format!("keys unchanged: {now_text}{later}"),
            };
        }
        self.node.set_frame_keys(ring);
        self.cfg.cluster.key_file = cfg.cluster.key_file.clone();
        self.cfg.cluster.key = cfg.cluster.key.clone();
        self.cfg.cluster.accept_key_files = cfg.cluster.accept_key_files.clone();
        self.cfg.cluster.accept_keys = cfg.cluster.accept_keys.clone();
        info!(
            event = "keys.reloaded",
            ts_us = wall_us(),
            node = self.me.id.0,
            send = %new_ids.first().map(ToString::to_string).unwrap_or_default(),
            accept = %ids(&new_ids),
            previous_send = %old.send.map(|k| k.to_string()).unwrap_or_default(),
            previous_accept = %ids(&old.accept),
            "key ring reloaded: {now_text} (was: {was_text})"
        );
        Response::Done {
            message: format!("{now_text} (was: {was_text}){later}"),
        }
    }
}

fn manual_seed(run: &mut Running) -> Response {
    let now = run.now();
    let status = run.node.status();
    if let Some(view) = status
        .fence
        .installed
        .as_ref()
        .or(status.fence.client_view.as_ref())
    {
        return Response::Error {
            message: format!(
                "already seeded: this node is in view {} (members {}); -x only seeds a node that has no view yet",
                view.generation.0,
                ids(view.node_set())
            ),
        };
    }
    if status.fence.state != NodeState::Unseeded {
        return Response::Error {
            message: format!(
                "this node is {}; -x only seeds a node that is waiting to seed",
                state_word(status.fence.state)
            ),
        };
    }
    let mut reachable: NodeSet = status
        .llt
        .peers
        .iter()
        .filter(|p| p.up)
        .map(|p| p.id)
        .collect();
    reachable.insert(run.me.id);
    warn!(
        event = "seed.manual_requested",
        ts_us = wall_us(),
        node = run.me.id.0,
        reachable = %ids(reachable),
        "gabconfig -x: seeding by hand with the reachable nodes {}",
        ids(reachable)
    );
    run.node.manual_seed(now);
    Response::Done {
        message: format!(
            "manual seed requested: the reachable nodes {} form the first view",
            ids(reachable)
        ),
    }
}
