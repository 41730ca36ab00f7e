//! The llt state machine.

use crate::config::{LinkPriority, LltConfig};
use crate::deadlines::PeerDeadlines;
use crate::stats::{DropReason, LinkStats, PeerLinkStats};
use crate::types::{Generation, Incarnation, Instant, LinkAddr, LinkId, NodeId, Port, MAX_LINKS};
use crate::wire::{self, DecodeError, FrameKey, Header, KeyId, Kind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Past this many queued outputs the caller has stopped draining: every output queued
/// beyond it is counted (`Status::output_overflows`) and kept. Nothing is dropped: a
/// lost `PeerDown` or delivery would be a silent protocol fault. A caller that drains
/// after every step keeps the queue at one step's outputs (a bounded number per link
/// and peer).
const MAX_OUTPUTS: usize = 64 * 1024;
/// Width of the per-peer, per-link replay window, in sequence numbers.
const REPLAY_WINDOW: u64 = 64;

/// State of one peer on one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LinkState {
    Up,
    Trouble,
    Down,
}

impl LinkState {
    /// UP or TROUBLE: the link still counts for the peer.
    pub fn is_alive(self) -> bool {
        self != LinkState::Down
    }
}

/// Something that happened, for the layer above and for the logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The start-up listening window passed without finding our ID in use.
    Started,
    LinkUp {
        peer: NodeId,
        link: LinkId,
    },
    LinkTrouble {
        peer: NodeId,
        link: LinkId,
    },
    LinkDown {
        peer: NodeId,
        link: LinkId,
    },
    PeerUp {
        peer: NodeId,
        incarnation: Incarnation,
    },
    PeerDown {
        peer: NodeId,
    },
    /// A peer that was up is now heard with a newer incarnation: it restarted.
    PeerRestarted {
        peer: NodeId,
        old: Incarnation,
        new: Incarnation,
    },
    /// The peer is up over exactly one link.
    JeopardyEntered {
        peer: NodeId,
        link: LinkId,
    },
    JeopardyCleared {
        peer: NodeId,
    },
    /// Another live process uses our node ID. While starting up, the core refuses to
    /// run on ([`Llt::refused`]); the driver must exit.
    DuplicateNodeId {
        link: LinkId,
        incarnation: Incarnation,
    },
}

/// A frame to put on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub link: LinkId,
    /// The receiver, or `None` for one frame to every node (broadcast links only).
    pub to: Option<NodeId>,
    /// The address the peer's frames last came from on this link, if any.
    pub addr: Option<LinkAddr>,
    pub bytes: Vec<u8>,
}

/// A port message received from a peer (after de-duplication across links).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deliver {
    pub from: NodeId,
    pub port: Port,
    pub body: Vec<u8>,
}

/// One step's results, drained with [`Llt::poll_output`] in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Transmit(Transmit),
    Deliver(Deliver),
    Event(Event),
}

/// The configuration cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

/// Why a port message could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No link to the peer is up.
    PeerDown,
    /// Not a peer in the configuration.
    UnknownPeer,
    /// Larger than [`wire::MAX_DATA_BODY`].
    TooLarge,
    /// Still listening for a duplicate node ID, or refused.
    NotRunning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Fenced or stopped: sends nothing more.
    Silent,
    Listening {
        until: Instant,
    },
    Running,
    Refused,
}

/// Sliding window of seen sequence numbers (bit `i` = `highest - i` seen).
#[derive(Clone, Copy, Debug, Default)]
struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// Records `seq`; false if it was seen before or is too old to tell.
    fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            let shift = seq.saturating_sub(self.highest);
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
            return true;
        }
        let back = self.highest.saturating_sub(seq);
        if back >= REPLAY_WINDOW || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

#[derive(Clone, Debug)]
struct PeerLink {
    state: LinkState,
    /// The link has been UP at least once.
    ever_up: bool,
    last_heard: Option<Instant>,
    /// Time this node itself was not running since `last_heard` (stalls): it does
    /// not count toward the link's TROUBLE and DOWN deadlines.
    excused: Duration,
    /// Consecutive frames counted toward bringing a DOWN link UP.
    run: u32,
    /// When the last frame counted toward `run` arrived.
    run_counted: Option<Instant>,
    replay: ReplayWindow,
    /// The peer's last `tx_time_us` on this link and when we got it, to echo back.
    echo: Option<(u64, Instant)>,
    rtt: Option<Duration>,
    srtt: Option<Duration>,
    addr: Option<LinkAddr>,
    stats: PeerLinkStats,
}

impl PeerLink {
    fn new() -> Self {
        PeerLink {
            state: LinkState::Down,
            ever_up: false,
            last_heard: None,
            excused: Duration::ZERO,
            run: 0,
            run_counted: None,
            replay: ReplayWindow::default(),
            echo: None,
            rtt: None,
            srtt: None,
            addr: None,
            stats: PeerLinkStats::default(),
        }
    }
}

#[derive(Clone, Debug)]
struct Peer {
    /// The peer's incarnation as confirmed by a fresh frame (one that echoed ours):
    /// what the layers above see.
    incarnation: Option<Incarnation>,
    /// The highest incarnation of the peer in any authentic frame, fresh or not:
    /// what our frames echo, and below which frames are stale.
    heard: Option<Incarnation>,
    up: bool,
    /// When the peer last came up.
    up_since: Option<Instant>,
    jeopardy: bool,
    generation: Generation,
    links: Vec<PeerLink>,
    /// The links that carry frames between this node and the peer, bit `i` for link
    /// `i`: every link; with a witness, the witness link alone between the witness
    /// and a node, and every other link between two nodes.
    carried: LinkMask,
    data_seen: ReplayWindow,
    /// Our frames to this peer carry lease confirmations.
    confirm: bool,
    /// The latest of our frames the peer confirmed, and its generation then.
    confirmed: Option<(Instant, Generation)>,
    /// This peer's share of [`Llt::peers_fingerprint`], as last tallied.
    term: u64,
}

#[derive(Clone, Debug)]
struct Link {
    /// The next heartbeat: the next round on a high-priority link; on a
    /// low-priority one the next beat to the peers it carries for (those without
    /// an UP high-priority link), due only while there are any.
    next_heartbeat: Instant,
    /// A low-priority link's next round to every peer, every `heartbeat_lowpri`.
    next_round: Instant,
    /// Heartbeat rounds sent, to pace broadcast announcements.
    rounds: u64,
    seq: u64,
    stats: LinkStats,
}

/// A cheap summary of one peer for the layers above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    pub up: bool,
    pub jeopardy: bool,
    pub incarnation: Option<Incarnation>,
    /// The generation the peer advertised in its last accepted frame.
    pub generation: Generation,
    pub last_heard: Option<Instant>,
    /// The latest of our frames it confirmed hearing (our clock), and its generation.
    pub confirmed: Option<(Instant, Generation)>,
    /// Up, but silent on every link for `peer_trouble` (no link UP): it may be
    /// about to go DOWN.
    pub quiet: bool,
}

/// Snapshot of one peer on one link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLinkStatus {
    pub link: LinkId,
    pub name: String,
    /// The link carries frames between this node and the peer (false: a link that
    /// never does, as a cluster's other links for its witness).
    #[serde(default = "carried_by_default")]
    pub carried: bool,
    pub state: LinkState,
    pub last_heard: Option<Instant>,
    pub rtt_us: Option<u64>,
    pub srtt_us: Option<u64>,
    pub addr: Option<LinkAddr>,
    pub stats: PeerLinkStats,
}

/// Status written before links could be limited to some peers: every link carried.
fn carried_by_default() -> bool {
    true
}

/// Snapshot of one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: NodeId,
    pub incarnation: Option<Incarnation>,
    pub up: bool,
    pub jeopardy: bool,
    pub generation: Generation,
    pub links: Vec<PeerLinkStatus>,
}

/// Snapshot of one link, all peers together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub link: LinkId,
    pub name: String,
    pub priority: LinkPriority,
    pub stats: LinkStats,
}

/// A side-effect-free snapshot of the core, for `lltstat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub me: NodeId,
    pub incarnation: Incarnation,
    /// `listening`, `running` or `refused`.
    pub phase: String,
    pub generation: Generation,
    pub links: Vec<LinkStatus>,
    pub peers: Vec<PeerStatus>,
    /// Heartbeat pacing: gaps between consecutive rounds on the first
    /// high-priority link.
    #[serde(default)]
    pub heartbeat: GapSummary,
    /// The key ring: which key frames go out with, which are accepted.
    #[serde(default)]
    pub keys: KeyRingStatus,
    /// Outputs queued while the queue already held its bound: the caller stopped
    /// draining it. None is dropped; non-zero is a bug to report.
    #[serde(default)]
    pub output_overflows: u64,
}

/// The key ring as `lltstat` shows it: key IDs only, never keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRingStatus {
    /// The ID of the key every frame is sent with; `None` on an unauthenticated
    /// cluster (frames carry no MAC).
    pub send: Option<KeyId>,
    /// The IDs of every key a frame is accepted under, the sending key first.
    pub accept: Vec<KeyId>,
}

/// The llt core: heartbeats, link and peer state, port data, statistics.
#[derive(Clone, Debug)]
pub struct Llt {
    cfg: LltConfig,
    me: NodeId,
    incarnation: Incarnation,
    phase: Phase,
    generation: Generation,
    links: Vec<Link>,
    peers: BTreeMap<NodeId, Peer>,
    next_msg_id: u64,
    outputs: VecDeque<Output>,
    /// Outputs queued beyond [`MAX_OUTPUTS`] (kept, never dropped).
    output_overflows: u64,
    duplicates_reported: Vec<Incarnation>,
    gaps: HeartbeatGaps,
    /// Some peer has no UP high-priority link, so the low-priority links carry its
    /// heartbeats at the high-priority rate (as of the last timeout step).
    promoted: bool,
    /// Every peer's next TROUBLE, DOWN or jeopardy deadline, kept up to date as
    /// peers change (see [`Llt::tally`]), so that a frame costs the same whatever
    /// the number of peers.
    deadlines: PeerDeadlines,
    /// [`Llt::peers_fingerprint`]: the XOR of every peer's `term`.
    print: u64,
    /// The peer the frame being handled came from, to tally afterwards.
    touched: Option<NodeId>,
    /// Peers (bit = node ID) whose facts may have changed since the last
    /// [`Llt::take_changed`]: what the layers above need to read again.
    changed: u64,
    /// The links heartbeats are scheduled on: those that carry some peer, or that
    /// carry this node's own ID (its broadcasts, for a twin to hear).
    active: LinkMask,
    /// The links that beat at the fast rate and carry data at all times: the
    /// high-priority links and the witness link.
    high: LinkMask,
}

/// A set of links, bit `i` for link `i`.
type LinkMask = u8;
const _: () = assert!(MAX_LINKS <= LinkMask::BITS as usize);

fn bit(li: usize) -> LinkMask {
    1 << li
}

/// Whether link `li` carries the frames between nodes `a` and `b`: with a witness,
/// its link carries exactly the frames to and from the witness; without, every
/// link carries every frame.
fn link_carries(cfg: &LltConfig, li: usize, a: NodeId, b: NodeId) -> bool {
    li < cfg.links.len()
        && cfg
            .witness
            .as_ref()
            .is_none_or(|w| (li == w.link.index()) == (a == w.id || b == w.id))
}

/// The key ring of the frames on link `li`.
fn ring(cfg: &LltConfig, li: usize) -> &[FrameKey] {
    match &cfg.witness {
        Some(w) if w.link.index() == li => &w.keys,
        _ => &cfg.keys,
    }
}

/// The heartbeat interval and the TROUBLE and DOWN silences on link `li`.
#[derive(Clone, Copy)]
struct Timers {
    heartbeat: Duration,
    trouble: Duration,
    inactive: Duration,
}

fn timers(cfg: &LltConfig, li: usize) -> Timers {
    match &cfg.witness {
        Some(w) if w.link.index() == li => Timers {
            heartbeat: w.heartbeat,
            trouble: w.peer_trouble,
            inactive: w.peer_inactive,
        },
        _ => Timers {
            heartbeat: cfg.heartbeat,
            trouble: cfg.peer_trouble,
            inactive: cfg.peer_inactive,
        },
    }
}

/// The links of `links` (a peer's) in `mask`, with their indices.
fn links_in(links: &[PeerLink], mask: LinkMask) -> impl Iterator<Item = (usize, &PeerLink)> {
    links
        .iter()
        .enumerate()
        .filter(move |(i, _)| mask & bit(*i) != 0)
}

/// How many heartbeat gaps the pacing statistics keep.
pub const GAP_WINDOW: usize = 4096;

/// The gaps between consecutive heartbeat rounds on the first high-priority link, as
/// seen by the core (the time it was handed when it sent them): how well the driver
/// keeps the beat. The last [`GAP_WINDOW`] gaps, and the largest ever.
#[derive(Clone, Debug, Default)]
struct HeartbeatGaps {
    /// The link whose rounds are measured: the first high-priority one.
    link: Option<usize>,
    last_round: Option<Instant>,
    ring: Vec<u32>,
    next: usize,
    count: u64,
    max_us: u64,
}

impl HeartbeatGaps {
    fn round(&mut self, now: Instant) {
        if let Some(prev) = self.last_round.replace(now) {
            let us = now.saturating_since(prev).as_micros();
            let us = u32::try_from(us).unwrap_or(u32::MAX);
            if self.ring.len() < GAP_WINDOW {
                self.ring.push(us);
            } else {
                self.ring[self.next] = us;
            }
            self.next = self.next.saturating_add(1) % GAP_WINDOW;
            self.count = self.count.saturating_add(1);
            self.max_us = self.max_us.max(u64::from(us));
        }
    }

    fn summary(&self, interval: Duration) -> GapSummary {
        let mut v = self.ring.clone();
        v.sort_unstable();
        let pick = |q: f64| -> u64 {
            if v.is_empty() {
                return 0;
            }
            // Nearest rank.
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v.get(rank.saturating_sub(1)).map_or(0, |g| u64::from(*g))
        };
        GapSummary {
            interval_us: interval.as_micros() as u64,
            count: self.count,
            window: v.len() as u64,
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            window_max_us: v.last().map_or(0, |m| u64::from(*m)),
            max_us: self.max_us,
        }
    }
}

/// Heartbeat pacing as measured by the core: gaps between consecutive rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapSummary {
    /// The configured heartbeat interval.
    pub interval_us: u64,
    /// Gaps measured since start.
    pub count: u64,
    /// Gaps in the window the percentiles are taken over (the last 4096).
    pub window: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The largest gap in the window.
    pub window_max_us: u64,
    /// The largest gap since start.
    pub max_us: u64,
}

/// A peer's share of the fingerprint: its ID, up state, incarnation and advertised
/// generation, mixed (splitmix64) so that the XOR over peers tells facts apart.
/// Up with no link UP: every link it is alive on has been silent for `peer_trouble`.
fn is_quiet(p: &Peer) -> bool {
    p.up && p.links.iter().all(|l| l.state != LinkState::Up)
}

fn peer_term(id: NodeId, p: &Peer) -> u64 {
    let mut h = u64::from(id.0) | u64::from(p.up) << 8;
    for v in [p.incarnation.map_or(0, |i| i.0), p.generation.0] {
        h = mix(h ^ mix(v));
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// When the core must next look at peer `p`: a link going TROUBLE or DOWN, or the
/// peer entering jeopardy once its other links had their chance.
fn peer_deadline(cfg: &LltConfig, p: &Peer) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    let mut take = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
    if let (false, Some(since)) = (p.jeopardy, p.up_since) {
        let alive = links_in(&p.links, p.carried)
            .filter(|(_, l)| l.state.is_alive())
            .count();
        if alive == 1 && p.carried.count_ones() >= 2 {
            take(since + cfg.peer_inactive);
        }
    }
    for (li, pl) in links_in(&p.links, p.carried) {
        let Some(last) = pl.last_heard else { continue };
        let last = last + pl.excused;
        let t = timers(cfg, li);
        match pl.state {
            LinkState::Up => take(last + t.trouble),
            LinkState::Trouble => take(last + t.inactive),
            LinkState::Down => {}
        }
    }
    next
}

impl Llt {
    /// A core for node `me`, started at `now`. It listens for `listen_window` before it
    /// sends anything. The core draws no randomness today; `rng_seed` keeps the common
    /// constructor shape of vigil's cores.
    pub fn new(
        cfg: LltConfig,
        me: NodeId,
        incarnation: Incarnation,
        now: Instant,
        rng_seed: u64,
    ) -> Result<Llt, ConfigError> {
        let _ = rng_seed;
        if cfg.links.is_empty() || cfg.links.len() > MAX_LINKS {
            return Err(ConfigError(format!(
                "need 1 to {MAX_LINKS} links, got {}",
                cfg.links.len()
            )));
        }
        if !cfg.nodes.contains(&me) {
            return Err(ConfigError(format!(
                "node {me} is not in the configuration"
            )));
        }
        if cfg.heartbeat.is_zero()
            || cfg.heartbeat_lowpri < cfg.heartbeat
            || cfg.peer_trouble <= cfg.heartbeat_lowpri
            || cfg.peer_inactive <= cfg.peer_trouble
        {
            return Err(ConfigError(
                "timers must satisfy 0 < heartbeat <= heartbeat_lowpri < peer_trouble < peer_inactive"
                    .into(),
            ));
        }
        if incarnation.0 == 0 {
            return Err(ConfigError("incarnation 0 is reserved".into()));
        }
        if let Some(w) = &cfg.witness {
            if w.link.index() >= cfg.links.len() {
                return Err(ConfigError(format!(
                    "the witness link {} is not one of the {} links",
                    w.link,
                    cfg.links.len()
                )));
            }
            if !cfg.nodes.contains(&w.id) {
                return Err(ConfigError(format!(
                    "the witness {} is not in the configuration",
                    w.id
                )));
            }
            if cfg.links.len() < 2 {
                return Err(ConfigError(
                    "a cluster with a witness needs a link besides the witness link".into(),
                ));
            }
            if w.heartbeat.is_zero()
                || w.peer_trouble <= w.heartbeat
                || w.peer_inactive <= w.peer_trouble
            {
                return Err(ConfigError(
                    "witness timers must satisfy 0 < heartbeat < peer_trouble < peer_inactive"
                        .into(),
                ));
            }
        }
        let carried = |peer: NodeId| -> LinkMask {
            (0..cfg.links.len())
                .filter(|li| link_carries(&cfg, *li, me, peer))
                .fold(0, |m, li| m | bit(li))
        };
        let high = (0..cfg.links.len())
            .filter(|li| {
                cfg.links[*li].priority == LinkPriority::High
                    || cfg.witness.as_ref().is_some_and(|w| w.link.index() == *li)
            })
            .fold(0, |m, li| m | bit(li));
        // Our own ID: the links our broadcasts (for a twin) go on.
        let mut active = carried(me);
        let peers: BTreeMap<NodeId, Peer> = cfg
            .nodes
            .iter()
            .filter(|n| **n != me)
            .map(|n| {
                let peer = Peer {
                    incarnation: None,
                    heard: None,
                    up: false,
                    up_since: None,
                    jeopardy: false,
                    generation: Generation::default(),
                    links: cfg.links.iter().map(|_| PeerLink::new()).collect(),
                    carried: carried(*n),
                    data_seen: ReplayWindow::default(),
                    confirm: false,
                    confirmed: None,
                    term: 0,
                };
                (*n, peer)
            })
            .collect();
        for p in peers.values() {
            active |= p.carried;
        }
        let links = cfg
            .links
            .iter()
            .map(|_| Link {
                next_heartbeat: now + cfg.listen_window,
                next_round: now + cfg.listen_window,
                rounds: 0,
                seq: 0,
                stats: LinkStats::default(),
            })
            .collect();
        let phase = if cfg.listen_window.is_zero() {
            Phase::Running
        } else {
            Phase::Listening {
                until: now + cfg.listen_window,
            }
        };
        let mut llt = Llt {
            cfg,
            me,
            incarnation,
            phase,
            generation: Generation::default(),
            links,
            peers,
            next_msg_id: 0,
            outputs: VecDeque::new(),
            output_overflows: 0,
            duplicates_reported: Vec::new(),
            gaps: HeartbeatGaps::default(),
            promoted: false,
            deadlines: PeerDeadlines::default(),
            print: 0,
            touched: None,
            changed: 0,
            active,
            high,
        };
        llt.tally_all();
        // The first high-priority link that beats at the cluster's pace: never the
        // witness link, nor one that carries nothing (a witness's other links).
        llt.gaps.link = (0..llt.cfg.links.len()).find(|li| {
            llt.cfg.links[*li].priority == LinkPriority::High
                && !llt.is_witness_link(*li)
                && llt.active & bit(*li) != 0
        });
        if llt.phase == Phase::Running {
            llt.push(Output::Event(Event::Started));
        }
        Ok(llt)
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    pub fn config(&self) -> &LltConfig {
        &self.cfg
    }

    /// True once a live duplicate of our node ID was found while starting: the core
    /// sends nothing more and the driver must exit.
    pub fn refused(&self) -> bool {
        self.phase == Phase::Refused
    }

    /// Whether the peer is up (some link UP or TROUBLE).
    pub fn peer_up(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.up)
    }

    /// The peers that are up, in ID order.
    pub fn up_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.iter().filter(|(_, p)| p.up).map(|(id, _)| *id)
    }

    /// Whether our frames to `peer` confirm hearing it (the lease confirmations the
    /// fence layer asks for).
    pub fn set_confirm(&mut self, peer: NodeId, on: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.confirm = on;
        }
    }

    /// Replace the key ring (a key rotation): frames are sent with the first key from
    /// now on and accepted under any of them. An empty ring turns authentication off,
    /// which a keyed cluster never does; the caller checks.
    pub fn set_keys(&mut self, keys: Vec<FrameKey>) {
        self.cfg.keys = keys;
    }

    /// Replace the witness link's key ring, as [`Llt::set_keys`] does the cluster's.
    /// Does nothing in a cluster without a witness.
    pub fn set_witness_keys(&mut self, keys: Vec<FrameKey>) {
        if let Some(w) = &mut self.cfg.witness {
            w.keys = keys;
        }
    }

    /// Whether `link` carries the frames between this node and `peer`: every link
    /// does, except that with a witness its link carries only the frames to and from
    /// the witness, and the other links only the frames between nodes.
    pub fn carries(&self, link: LinkId, peer: NodeId) -> bool {
        link_carries(&self.cfg, link.index(), self.me, peer)
    }

    fn is_witness_link(&self, li: usize) -> bool {
        self.cfg
            .witness
            .as_ref()
            .is_some_and(|w| w.link.index() == li)
    }

    /// Past the listening window and not refused or silenced: the node may speak.
    pub fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Silenced for good (fenced or left).
    pub fn silenced(&self) -> bool {
        self.phase == Phase::Silent
    }

    /// Stop sending anything, for good (the node fenced itself or left).
    pub fn silence(&mut self) {
        self.phase = Phase::Silent;
    }

    /// What the layers above need to know of a peer, without a full status.
    pub fn peer_summary(&self, peer: NodeId) -> Option<PeerSummary> {
        let p = self.peers.get(&peer)?;
        Some(PeerSummary {
            up: p.up,
            jeopardy: p.jeopardy,
            incarnation: p.incarnation,
            generation: p.generation,
            last_heard: p.links.iter().filter_map(|l| l.last_heard).max(),
            confirmed: p.confirmed,
            quiet: is_quiet(p),
        })
    }

    /// A fingerprint of every peer's up state, incarnation and advertised
    /// generation: what the layers above decide on. Equal facts give equal
    /// fingerprints. Kept as peers change: reading it costs nothing.
    pub fn peers_fingerprint(&self) -> u64 {
        debug_assert_eq!(
            self.print,
            self.peers
                .iter()
                .fold(0, |h, (id, p)| h ^ peer_term(*id, p)),
            "a stale peer fingerprint"
        );
        self.print
    }

    /// Bring `id`'s share of the fingerprint and its deadline up to date: called
    /// after anything that may have changed the peer.
    fn tally(&mut self, id: NodeId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let term = peer_term(id, p);
        self.print ^= p.term ^ term;
        p.term = term;
        self.changed |= 1u64.checked_shl(u32::from(id.0)).unwrap_or(0);
        let deadline = peer_deadline(&self.cfg, p);
        self.deadlines.set(id, deadline);
    }

    /// The peers whose facts ([`Llt::peer_summary`]) may have changed since the last
    /// call, as a bit set of node IDs (bit `i` = node `i`), and forget them: a layer
    /// that keeps a copy of the facts reads only those again. At first, every peer.
    pub fn take_changed(&mut self) -> u64 {
        std::mem::take(&mut self.changed)
    }

    fn tally_all(&mut self) {
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        for id in ids {
            self.tally(id);
        }
    }

    /// The configured peers, in ID order.
    pub fn peer_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// The generation advertised in every frame.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The generation to advertise in every frame from now on.
    pub fn set_generation(&mut self, generation: Generation) {
        self.generation = generation;
    }

    fn push(&mut self, out: Output) {
        if self.outputs.len() >= MAX_OUTPUTS {
            self.output_overflows = self.output_overflows.saturating_add(1);
        }
        self.outputs.push_back(out);
    }

    fn event(&mut self, e: Event) {
        self.push(Output::Event(e));
    }

    /// Next output of the last steps, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the core next needs [`Llt::handle_timeout`]: absolute, derived from state.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut take = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        match self.phase {
            Phase::Refused | Phase::Silent => return None,
            Phase::Listening { until } => take(until),
            Phase::Running => {
                for (li, l) in self.links.iter().enumerate() {
                    if self.active & bit(li) == 0 {
                        continue;
                    }
                    if self.high & bit(li) != 0 {
                        take(l.next_heartbeat);
                    } else {
                        take(l.next_round);
                        if self.promoted {
                            take(l.next_heartbeat);
                        }
                    }
                }
            }
        }
        debug_assert_eq!(
            self.deadlines.earliest(),
            self.peers
                .values()
                .filter_map(|p| peer_deadline(&self.cfg, p))
                .min(),
            "a stale peer deadline"
        );
        if let Some(t) = self.deadlines.earliest() {
            take(t);
        }
        next
    }

    /// This node was not running for `stall` (its driver woke that late): no link's
    /// TROUBLE or DOWN deadline counts that time, so a peer is never accused for
    /// time during which we could not hear it. The time is taken off again when
    /// the peer is next heard.
    pub fn excuse(&mut self, stall: Duration) {
        for p in self.peers.values_mut() {
            for pl in &mut p.links {
                if pl.last_heard.is_some() && pl.state.is_alive() {
                    pl.excused = pl.excused.saturating_add(stall);
                }
            }
        }
        self.tally_all();
    }

    /// Heartbeat pacing so far: gaps between consecutive rounds.
    pub fn heartbeat_gaps(&self) -> GapSummary {
        self.gaps.summary(self.cfg.heartbeat)
    }

    /// Advance timers: end of listening, heartbeats due, links going TROUBLE or DOWN.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Listening { until } = self.phase {
            if now >= until {
                self.phase = Phase::Running;
                self.event(Event::Started);
                for l in &mut self.links {
                    l.next_heartbeat = now;
                    l.next_round = now;
                }
            }
        }
        self.expire(now);
        if self.phase != Phase::Running {
            return;
        }
        // Promoted for a peer a low-priority link carries and no UP high-priority
        // link reaches (a witness, reached over its link alone, promotes nothing).
        self.promoted = self
            .peers
            .values()
            .any(|p| p.carried & !self.high != 0 && !self.has_high_up(p));
        for li in 0..self.links.len() {
            if self.active & bit(li) == 0 {
                continue;
            }
            let low = self.high & bit(li) == 0;
            // A high-priority link beats to every peer it carries every `heartbeat`
            // (the witness link every witness `heartbeat`). A low-priority one goes
            // in rounds every `heartbeat_lowpri` to the peers an UP high-priority
            // link reaches, and beats every `heartbeat` to the others (it is
            // promoted for them, so their leases and failure detection keep the
            // high-priority pace).
            let round = if low {
                now >= self.links[li].next_round
            } else {
                now >= self.links[li].next_heartbeat
            };
            let beat = low && self.promoted && now >= self.links[li].next_heartbeat;
            if !round && !beat {
                continue;
            }
            let peers: Vec<NodeId> = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    if p.carried & bit(li) == 0 {
                        false
                    } else if !low {
                        true
                    } else if self.has_high_up(p) {
                        round
                    } else {
                        beat
                    }
                })
                .map(|(id, _)| *id)
                .collect();
            for peer in peers {
                self.send_frame(now, LinkId(li as u8), Some(peer), Kind::Heartbeat, &[]);
            }
            // Keep the beat against the clock: the next deadline follows the previous
            // one, and missed beats are skipped rather than sent in a burst.
            let link = &mut self.links[li];
            if low {
                while link.next_heartbeat <= now {
                    link.next_heartbeat += self.cfg.heartbeat;
                }
            }
            if !round {
                continue;
            }
            let (due, interval) = if low {
                (&mut link.next_round, self.cfg.heartbeat_lowpri)
            } else {
                (&mut link.next_heartbeat, timers(&self.cfg, li).heartbeat)
            };
            while *due <= now {
                *due += interval;
            }
            link.rounds = link.rounds.saturating_add(1);
            let rounds = link.rounds;
            if Some(li) == self.gaps.link {
                self.gaps.round(now);
            }
            // Broadcasts go where this node's own ID is carried, where its twin
            // would be: a witness's on the witness link, a node's on the others.
            if self.cfg.links[li].broadcast
                && rounds % 2 == 1
                && link_carries(&self.cfg, li, self.me, self.me)
            {
                self.send_frame(now, LinkId(li as u8), None, Kind::Heartbeat, &[]);
            }
        }
    }

    /// Whether one of the high-priority links that carry `p` (its witness link, for
    /// the witness) is UP.
    fn has_high_up(&self, p: &Peer) -> bool {
        links_in(&p.links, p.carried & self.high).any(|(_, pl)| pl.state == LinkState::Up)
    }

    fn expire(&mut self, now: Instant) {
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        for id in ids {
            let mut changes = Vec::new();
            if let Some(p) = self.peers.get_mut(&id) {
                let carried = p.carried;
                for (li, pl) in p.links.iter_mut().enumerate() {
                    if carried & bit(li) == 0 {
                        continue;
                    }
                    let Some(last) = pl.last_heard else { continue };
                    let last = last + pl.excused;
                    let link = LinkId(li as u8);
                    let Timers {
                        trouble, inactive, ..
                    } = timers(&self.cfg, li);
                    if pl.state.is_alive() && now >= last + inactive {
                        pl.state = LinkState::Down;
                        pl.run = 0;
                        pl.stats.state_changes = pl.stats.state_changes.saturating_add(1);
                        changes.push(Event::LinkDown { peer: id, link });
                    } else if pl.state == LinkState::Up && now >= last + trouble {
                        pl.state = LinkState::Trouble;
                        pl.stats.state_changes = pl.stats.state_changes.saturating_add(1);
                        changes.push(Event::LinkTrouble { peer: id, link });
                    }
                }
            }
            for e in changes {
                self.event(e);
            }
            self.update_peer(id, now);
            self.tally(id);
        }
    }

    /// Recompute peer up/down and jeopardy after its links changed; emit the events.
    ///
    /// Jeopardy is a peer up over exactly one of the two or more links that carry it
    /// once the others had their chance: another link has been UP before, or the
    /// peer has been up for `peer_inactive`. Links coming up one after the other at
    /// start are no jeopardy. (A witness, carried by its link alone, never is.)
    fn update_peer(&mut self, id: NodeId, now: Instant) {
        let grace = self.cfg.peer_inactive;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let nlinks = p.carried.count_ones();
        let alive: Vec<usize> = links_in(&p.links, p.carried)
            .filter(|(_, l)| l.state.is_alive())
            .map(|(i, _)| i)
            .collect();
        let up = !alive.is_empty();
        let others_had_their_chance = alive.len() == 1
            && (links_in(&p.links, p.carried).any(|(i, l)| i != alive[0] && l.ever_up)
                || p.up_since.is_some_and(|t| now >= t + grace));
        let jeopardy = up && nlinks >= 2 && others_had_their_chance;
        let mut events = Vec::new();
        if up && !p.up {
            p.up = true;
            p.up_since = Some(now);
            if let Some(inc) = p.incarnation {
                events.push(Event::PeerUp {
                    peer: id,
                    incarnation: inc,
                });
            }
        }
        if jeopardy != p.jeopardy {
            p.jeopardy = jeopardy;
            events.push(if jeopardy {
                Event::JeopardyEntered {
                    peer: id,
                    link: LinkId(alive[0] as u8),
                }
            } else {
                Event::JeopardyCleared { peer: id }
            });
        }
        if !up && p.up {
            p.up = false;
            p.up_since = None;
            events.push(Event::PeerDown { peer: id });
        }
        for e in events {
            self.event(e);
        }
    }

    fn drop_frame(&mut self, link: LinkId, reason: DropReason) {
        if let Some(l) = self.links.get_mut(link.index()) {
            l.stats.drops.bump(reason);
        }
    }

    /// A frame arrived on `link` from `from` (when the driver knows). Bad frames of
    /// every kind are counted and dropped; nothing here can panic on input.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        from: Option<LinkAddr>,
        bytes: &[u8],
    ) {
        self.receive(now, link, from, bytes);
        if let Some(id) = self.touched.take() {
            self.tally(id);
        }
    }

    /// [`Llt::handle_frame`]: notes in `touched` the peer it may change.
    fn receive(&mut self, now: Instant, link: LinkId, from: Option<LinkAddr>, bytes: &[u8]) {
        let li = link.index();
        let Some(l) = self.links.get_mut(li) else {
            return;
        };
        l.stats.frames_in = l.stats.frames_in.saturating_add(1);
        l.stats.bytes_in = l.stats.bytes_in.saturating_add(bytes.len() as u64);
        let frame = match wire::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                let reason = match e {
                    DecodeError::Truncated => DropReason::Truncated,
                    DecodeError::BadMagic => DropReason::BadMagic,
                    DecodeError::BadVersion(_) => DropReason::BadVersion,
                    DecodeError::Malformed(_) => DropReason::Malformed,
                };
                return self.drop_frame(link, reason);
            }
        };
        let h = frame.header;
        if h.cluster != self.cfg.cluster_id {
            return self.drop_frame(link, DropReason::WrongCluster);
        }
        // The ring of the link the frame arrived on: the witness link has its own.
        let keys = ring(&self.cfg, li);
        let authentic = match frame.key_id {
            None => keys.is_empty(),
            Some(id) => match keys.iter().find(|k| k.id == id) {
                Some(key) => wire::verify(&frame, key),
                None if keys.is_empty() => false,
                None => return self.drop_frame(link, DropReason::UnknownKey),
            },
        };
        if !authentic {
            return self.drop_frame(link, DropReason::Auth);
        }
        if h.link != link {
            return self.drop_frame(link, DropReason::WrongLink);
        }
        // A link that does not carry the frames between the sender and us: the
        // witness's frames on a node link, or a node's on the witness link.
        if !link_carries(&self.cfg, li, self.me, h.src) {
            return self.drop_frame(link, DropReason::WrongLink);
        }
        if h.dst.is_some_and(|d| d != self.me) {
            return self.drop_frame(link, DropReason::NotForUs);
        }
        if h.src == self.me {
            if h.incarnation == self.incarnation {
                return self.drop_frame(link, DropReason::OwnFrame);
            }
            self.drop_frame(link, DropReason::DuplicateNode);
            if !self.duplicates_reported.contains(&h.incarnation)
                && self.duplicates_reported.len() < 16
            {
                self.duplicates_reported.push(h.incarnation);
                self.event(Event::DuplicateNodeId {
                    link,
                    incarnation: h.incarnation,
                });
            }
            if matches!(self.phase, Phase::Listening { .. }) {
                self.phase = Phase::Refused;
            }
            return;
        }
        self.touched = Some(h.src);
        let Some(peer) = self.peers.get_mut(&h.src) else {
            return self.drop_frame(link, DropReason::UnknownNode);
        };
        // Incarnations only grow: older is stale, newer is a restart.
        match peer.heard {
            Some(known) if h.incarnation < known => {
                peer.links[li].stats.replays = peer.links[li].stats.replays.saturating_add(1);
                return self.drop_frame(link, DropReason::StaleIncarnation);
            }
            Some(known) if h.incarnation == known => {}
            _ => {
                // A new incarnation: reset the per-incarnation state. Only what
                // the peer's frames are checked against changes here; the peer
                // counts as restarted once a fresh frame of it arrives.
                for pl in &mut peer.links {
                    pl.replay = ReplayWindow::default();
                    pl.echo = None;
                }
                peer.data_seen = ReplayWindow::default();
                peer.confirmed = None;
                peer.heard = Some(h.incarnation);
            }
        }
        let pl = &mut peer.links[li];
        if !pl.replay.accept(h.seq) {
            pl.stats.replays = pl.stats.replays.saturating_add(1);
            return self.drop_frame(link, DropReason::Replay);
        }
        // Freshness: a frame counts for liveness, RTT, leases and data only if it
        // echoes this node's current incarnation, which is new at every start and
        // which the peer can only have learned from this run's frames. A recorded
        // frame from an earlier start of this node, or from another cluster that
        // uses the same key, echoes something else. Such a frame (and a hello,
        // which echoes nothing yet) only teaches the peer's incarnation, so that
        // our next frames echo it.
        let fresh = h.echo_incarnation == self.incarnation || self.cfg.sabotage_stale_frames;
        if !fresh {
            // Not echoed either: an echo with `confirm` set vouches for a frame we
            // counted as heard. Our frames' confirmations carry the peer's lease,
            // and the racer's settle window rests on when the acceptors last heard
            // it (`last_heard`, which this frame does not move); echoing a frame
            // heard later than that (an Ethernet link's broadcast, which echoes
            // nothing) let a lease outlast the settle window (S1, found by a
            // random-profile sweep, seed 21840 at 2..12 nodes).
            pl.stats.unfresh = pl.stats.unfresh.saturating_add(1);
            if pl.addr.is_none() && from.is_some() {
                pl.addr = from;
            }
            let reason = if h.echo_incarnation.0 == 0 {
                DropReason::NoEcho
            } else {
                DropReason::StaleEcho
            };
            return self.drop_frame(link, reason);
        }
        // Accepted.
        let mut restarted = None;
        if peer.incarnation != Some(h.incarnation) {
            if let (true, Some(old)) = (peer.up, peer.incarnation) {
                restarted = Some(old);
            }
            peer.incarnation = Some(h.incarnation);
        }
        let pl = &mut peer.links[li];
        pl.stats.frames_in = pl.stats.frames_in.saturating_add(1);
        pl.stats.bytes_in = pl.stats.bytes_in.saturating_add(bytes.len() as u64);
        if from.is_some() {
            pl.addr = from;
        }
        if h.confirm && h.echo_incarnation == self.incarnation && h.echo_time_us != 0 {
            let at = Instant::from_nanos(h.echo_time_us.saturating_mul(1_000));
            if peer.confirmed.is_none_or(|(t, _)| at >= t) {
                peer.confirmed = Some((at, h.generation));
            }
        }
        let pl = &mut peer.links[li];
        if h.echo_incarnation == self.incarnation && h.echo_time_us != 0 {
            let rtt_us = now
                .as_micros()
                .saturating_sub(h.echo_time_us)
                .saturating_sub(u64::from(h.echo_hold_us));
            let rtt = Duration::from_micros(rtt_us);
            pl.rtt = Some(rtt);
            pl.srtt = Some(match pl.srtt {
                Some(s) => s
                    .saturating_mul(7)
                    .saturating_add(rtt)
                    .checked_div(8)
                    .unwrap_or(rtt),
                None => rtt,
            });
        }
        pl.echo = Some((h.tx_time_us, now));
        let previous = pl.last_heard.replace(now);
        pl.excused = Duration::ZERO;
        let mut events = Vec::new();
        match pl.state {
            LinkState::Up => {}
            LinkState::Trouble => {
                pl.state = LinkState::Up;
                pl.stats.state_changes = pl.stats.state_changes.saturating_add(1);
                events.push(Event::LinkUp { peer: h.src, link });
            }
            LinkState::Down => {
                // Frames closer together than half a heartbeat (a broadcast and a
                // unicast of the same round, a duplicate) count once.
                let t = timers(&self.cfg, li);
                let in_run = previous.is_some_and(|p| now < p + t.trouble);
                let spaced = pl
                    .run_counted
                    .is_none_or(|c| now >= c + t.heartbeat.checked_div(2).unwrap_or_default());
                if !in_run {
                    pl.run = 1;
                    pl.run_counted = Some(now);
                } else if spaced {
                    pl.run = pl.run.saturating_add(1);
                    pl.run_counted = Some(now);
                }
                if pl.run >= self.cfg.link_up_count {
                    pl.state = LinkState::Up;
                    pl.ever_up = true;
                    pl.run = 0;
                    pl.stats.state_changes = pl.stats.state_changes.saturating_add(1);
                    events.push(Event::LinkUp { peer: h.src, link });
                }
            }
        }
        peer.generation = h.generation;
        let mut deliver = None;
        if h.kind == Kind::Data {
            if let Ok(msg) = wire::decode_data(frame.payload) {
                if peer.data_seen.accept(msg.msg_id) {
                    deliver = Some(Deliver {
                        from: h.src,
                        port: msg.port,
                        body: msg.body.to_vec(),
                    });
                } else {
                    pl.stats.data_duplicates = pl.stats.data_duplicates.saturating_add(1);
                }
            }
        }
        self.links[li].stats.frames_accepted =
            self.links[li].stats.frames_accepted.saturating_add(1);
        if let Some(old) = restarted {
            self.event(Event::PeerRestarted {
                peer: h.src,
                old,
                new: h.incarnation,
            });
        }
        let changed = !events.is_empty();
        for e in events {
            self.event(e);
        }
        if changed {
            self.update_peer(h.src, now);
        }
        if let Some(d) = deliver {
            self.push(Output::Deliver(d));
        }
    }

    fn send_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        to: Option<NodeId>,
        kind: Kind,
        payload: &[u8],
    ) {
        let li = link.index();
        debug_assert!(
            link_carries(&self.cfg, li, self.me, to.unwrap_or(self.me)),
            "a frame on a link that does not carry it"
        );
        let (echo, echo_incarnation, confirm) = match to {
            Some(id) => match self.peers.get(&id) {
                Some(p) => (p.links[li].echo, p.heard, p.confirm),
                None => return,
            },
            None => (None, None, false),
        };
        let (echo_time_us, echo_hold_us) = match echo {
            Some((t, at)) => (
                t,
                u32::try_from(now.saturating_since(at).as_micros()).unwrap_or(u32::MAX),
            ),
            None => (0, 0),
        };
        let l = &mut self.links[li];
        // At one frame per microsecond this takes half a million years to reach;
        // should it ever, frames repeat the last number and are dropped as replays.
        l.seq = l.seq.saturating_add(1);
        let header = Header {
            kind,
            link,
            src: self.me,
            dst: to,
            cluster: self.cfg.cluster_id,
            incarnation: self.incarnation,
            seq: l.seq,
            generation: self.generation,
            // Never 0: 0 means "nothing to echo".
            tx_time_us: now.as_micros().max(1),
            echo_time_us,
            echo_hold_us,
            echo_incarnation: echo_incarnation.unwrap_or(Incarnation(0)),
            confirm,
        };
        let bytes = wire::encode(&header, payload, ring(&self.cfg, li).first());
        l.stats.frames_out = l.stats.frames_out.saturating_add(1);
        l.stats.bytes_out = l.stats.bytes_out.saturating_add(bytes.len() as u64);
        match kind {
            Kind::Heartbeat => l.stats.heartbeats_out = l.stats.heartbeats_out.saturating_add(1),
            Kind::Data => l.stats.data_out = l.stats.data_out.saturating_add(1),
        }
        let mut addr = None;
        if let Some(id) = to {
            if let Some(pl) = self.peers.get_mut(&id).map(|p| &mut p.links[li]) {
                pl.stats.frames_out = pl.stats.frames_out.saturating_add(1);
                pl.stats.bytes_out = pl.stats.bytes_out.saturating_add(bytes.len() as u64);
                addr = pl.addr;
            }
        }
        self.push(Output::Transmit(Transmit {
            link,
            to,
            addr,
            bytes,
        }));
    }

    /// The links a port message to `peer` goes over: every live high-priority link that
    /// carries it, or, when none is up, every live low-priority one (to the witness:
    /// its link).
    fn data_links(&self, peer: NodeId) -> Vec<LinkId> {
        let Some(p) = self.peers.get(&peer) else {
            return Vec::new();
        };
        let alive = |mask: LinkMask| -> Vec<LinkId> {
            links_in(&p.links, p.carried & mask)
                .filter(|(_, l)| l.state.is_alive())
                .map(|(i, _)| LinkId(i as u8))
                .collect()
        };
        let high = alive(self.high);
        if high.is_empty() {
            alive(!self.high)
        } else {
            high
        }
    }

    /// Send a port message to `peer` over every live link of the best priority; the
    /// receiver de-duplicates, so one lossy link does not slow a decision.
    pub fn send(
        &mut self,
        now: Instant,
        peer: NodeId,
        port: Port,
        body: &[u8],
    ) -> Result<(), SendError> {
        if self.phase != Phase::Running {
            return Err(SendError::NotRunning);
        }
        if body.len() > wire::MAX_DATA_BODY {
            return Err(SendError::TooLarge);
        }
        if !self.peers.contains_key(&peer) {
            return Err(SendError::UnknownPeer);
        }
        let links = self.data_links(peer);
        if links.is_empty() {
            return Err(SendError::PeerDown);
        }
        // Saturates (never wraps): a repeated ID is de-duplicated away, not mistaken.
        self.next_msg_id = self.next_msg_id.saturating_add(1);
        let payload = wire::encode_data(port, self.next_msg_id, body);
        for link in links {
            self.send_frame(now, link, Some(peer), Kind::Data, &payload);
        }
        Ok(())
    }

    /// Send a port message to every peer that is up. Returns how many it went to.
    pub fn broadcast(&mut self, now: Instant, port: Port, body: &[u8]) -> Result<usize, SendError> {
        let peers: Vec<NodeId> = self.up_peers().collect();
        let mut sent: usize = 0;
        for p in peers {
            match self.send(now, p, port, body) {
                Ok(()) => sent = sent.saturating_add(1),
                Err(SendError::PeerDown) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// A snapshot for `lltstat`; no side effects.
    pub fn status(&self) -> Status {
        let links = self
            .cfg
            .links
            .iter()
            .zip(&self.links)
            .enumerate()
            .map(|(i, (spec, l))| LinkStatus {
                link: LinkId(i as u8),
                name: spec.name.clone(),
                priority: spec.priority,
                stats: l.stats,
            })
            .collect();
        let peers = self
            .peers
            .iter()
            .map(|(id, p)| PeerStatus {
                id: *id,
                incarnation: p.incarnation,
                up: p.up,
                jeopardy: p.jeopardy,
                generation: p.generation,
                links: p
                    .links
                    .iter()
                    .enumerate()
                    .map(|(i, pl)| PeerLinkStatus {
                        link: LinkId(i as u8),
                        name: self.cfg.links[i].name.clone(),
                        carried: p.carried & bit(i) != 0,
                        state: pl.state,
                        last_heard: pl.last_heard,
                        rtt_us: pl.rtt.map(|d| d.as_micros() as u64),
                        srtt_us: pl.srtt.map(|d| d.as_micros() as u64),
                        addr: pl.addr,
                        stats: pl.stats,
                    })
                    .collect(),
            })
            .collect();
        Status {
            me: self.me,
            incarnation: self.incarnation,
            phase: match self.phase {
                Phase::Listening { .. } => "listening",
                Phase::Running => "running",
                Phase::Refused => "refused",
                Phase::Silent => "silent",
            }
            .to_string(),
            generation: self.generation,
            links,
            peers,
            heartbeat: self.heartbeat_gaps(),
            keys: KeyRingStatus {
                send: self.cfg.keys.first().map(|k| k.id),
                accept: self.cfg.keys.iter().map(|k| k.id).collect(),
            },
            output_overflows: self.output_overflows,
        }
    }
}
