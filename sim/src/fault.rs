//! Faults as values, and scenarios as lists of timed faults with an expected outcome.

use serde::{Deserialize, Serialize};

/// One fault (or repair), applied at a virtual instant. Faults compose: each changes
/// one aspect of the network or of a node and stays until repaired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Full partition: no frame crosses between different sides (every link).
    Partition { sides: Vec<Vec<u8>> },
    /// One-way: frames from any node of `from` to any node of `to` are lost.
    OneWay { from: Vec<u8>, to: Vec<u8> },
    /// Non-transitive: the pair `a`–`b` cannot talk (both ways, every link).
    Cut { a: u8, b: u8 },
    /// Every partition, one-way and cut is repaired (link faults stay).
    Heal,
    /// Link `link` of `node` is down (both directions, with every peer).
    LinkDown { node: u8, link: u8 },
    /// Link `link` of `node` is back.
    LinkUp { node: u8, link: u8 },
    /// Link `link` of `node` goes down and up every `period_ms`, `count` times.
    Flap {
        node: u8,
        link: u8,
        period_ms: u64,
        count: u32,
    },
    /// Frames on `link` are lost with probability `loss`, delayed by `delay_ms` plus
    /// up to `jitter_ms`, duplicated with probability `duplicate`, and delayed by a
    /// further `reorder_ms` with probability `reorder` (which reorders them).
    LinkQuality {
        link: u8,
        #[serde(default)]
        loss: f64,
        #[serde(default)]
        delay_ms: f64,
        #[serde(default)]
        jitter_ms: f64,
        #[serde(default)]
        duplicate: f64,
        #[serde(default)]
        reorder: f64,
        #[serde(default)]
        reorder_ms: f64,
    },
    /// Every frame from or to `node` takes `delay_ms` longer, plus up to `jitter_ms`
    /// drawn per frame: a node behind a slower link than the others (a witness on
    /// another site). `delay_ms` and `jitter_ms` 0 end it; `Heal` does not.
    SlowNode {
        node: u8,
        #[serde(default)]
        delay_ms: f64,
        #[serde(default)]
        jitter_ms: f64,
    },
    /// The node gets no input and no timers for `for_ms`, then everything it missed
    /// (or, with `drop_backlog`, nothing: the frames that came meanwhile were lost,
    /// as when a socket buffer overflows).
    Stall {
        node: u8,
        for_ms: u64,
        #[serde(default)]
        drop_backlog: bool,
    },
    /// The node's process dies.
    Crash { node: u8 },
    /// The node starts again: a new incarnation, its state file kept (or starts for
    /// the first time: a node the scenario leaves out at the start joins).
    #[serde(alias = "start")]
    Restart { node: u8 },
    /// `vigil stop` (SIGTERM): a member leaves gracefully and its process ends once
    /// it has left, or after three race timeouts (as the daemon gives up waiting);
    /// a node that is not a member stops at once.
    Stop { node: u8 },
    /// `gabconfig -x` on the node: seed by hand with whoever is reachable. Carried
    /// out only where the daemon would (the node is waiting to seed and has no
    /// view) and an operator may (no running node holds a view: seeding beside a
    /// running cluster overrides the protection); skipped otherwise.
    ManualSeed { node: u8 },
    /// The node's state file fails: the next write (`for_ms` 0), or every write
    /// for `for_ms` (a full disk). A node whose write fails stops, as the daemon
    /// does; a restart starts from what was durably written.
    StoreFail {
        node: u8,
        #[serde(default)]
        for_ms: u64,
    },
    /// The node's clock runs `ppm` parts per million fast (or slow, negative).
    ClockSkew { node: u8, ppm: i32 },
    /// The node's health probe fails from now on (the half-dead node: a read-only
    /// disk), or with `hang` never answers (a hung mount). It leaves, or fences
    /// itself, as the scenario's `probe_on_failure` says. A restart repairs it.
    ProbeFail {
        node: u8,
        #[serde(default)]
        hang: bool,
    },
    /// The attacker starts a new recording (the previous one is discarded): for
    /// `for_ms`, every frame from a node of `from` (empty: any node) on a link of
    /// `links` (empty: every link) is copied, byte for byte, where `tap` says. At
    /// most `world::MAX_TAPE` frames are kept. Recording changes nothing for the
    /// nodes.
    Record {
        #[serde(default)]
        from: Vec<u8>,
        #[serde(default)]
        links: Vec<u8>,
        for_ms: u64,
        #[serde(default)]
        tap: Tap,
    },
    /// The attacker injects the recording for `for_ms`: each frame sent by a node of
    /// `from` (empty: any) to a node of `to` (empty: any) goes, byte for byte, to the
    /// node it was sent to, on the link it was sent on, as if from its sender. The
    /// attacker sits next to the receiver: partitions and cuts do not stop it, a
    /// receiver's link that is down does. Frames keep their recorded spacing, or
    /// come one every `interval_us` (at least 100 µs), and the recording is played
    /// again from its start until `for_ms` is over.
    Replay {
        #[serde(default)]
        from: Vec<u8>,
        #[serde(default)]
        to: Vec<u8>,
        for_ms: u64,
        interval_us: Option<u64>,
    },
}

/// Where the attacker records frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tap {
    /// At the receiver's port: the frames the network delivers (a replay can then
    /// only repeat what a node already received, or received in an earlier life).
    #[default]
    Receiver,
    /// At the sender's port: every frame as it is sent, before the network loses
    /// or delays it, so also the frames a partition stops (a replay of those is a
    /// genuine frame delivered late).
    Sender,
}

impl Fault {
    /// Whether the fault only watches (a recording): it does not count as the first
    /// fault of a scenario, from which decisions are timed.
    pub fn passive(&self) -> bool {
        matches!(self, Fault::Record { .. })
    }
}

/// A fault at a virtual time (ms after the cluster was started).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at_ms: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// What must hold at the end of a scenario.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly these nodes hold authority (on one view) at the end.
    pub authority: Option<Vec<u8>>,
    /// These nodes (the incarnation running at the fault) have fenced themselves.
    #[serde(default)]
    pub fenced: Vec<u8>,
    /// ... by this many ms after the first fault.
    pub by_ms: Option<u64>,
    /// No view is installed after the first fault (L2/L3 drills).
    #[serde(default)]
    pub no_view_change: bool,
    /// No node fences itself at all.
    #[serde(default)]
    pub no_fence: bool,
    /// These nodes left the cluster gracefully.
    #[serde(default)]
    pub left: Vec<u8>,
    /// These nodes declare no peer's link TROUBLE or DOWN after the first fault
    /// (a node that stalled must not accuse anyone for its own absence).
    #[serde(default)]
    pub quiet: Vec<u8>,
    /// No node installs more than this many views after the first fault (a
    /// frozen node that wakes up must not disturb the survivors).
    pub max_views: Option<usize>,
    /// The fault is decided (the last survivor's clients see the new view and the
    /// last loser fenced) within this many ms of the first fault.
    pub decision_by_ms: Option<u64>,
    /// These nodes fenced themselves for this reason (`stalled`, `unhealthy`,
    /// `race_lost`, `no_decision`, `excluded`).
    pub fence_reason: Option<String>,
    /// These nodes install no view at all after the first fault (a restarted node
    /// cut off from its peers, fed recorded frames, must not form a view of
    /// phantoms).
    #[serde(default)]
    pub no_view: Vec<u8>,
}

/// A drill: a cluster, its faults, and the expected outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub nodes: u8,
    /// Seed count (default: every node).
    pub seed: Option<usize>,
    /// RNG seed for loss, jitter and the like.
    #[serde(default)]
    pub rng_seed: u64,
    /// How long the cluster runs before the first step may happen (ms); the cluster
    /// must have seeded by then.
    #[serde(default = "default_warmup")]
    pub warmup_ms: u64,
    /// How long to run after the last step (ms).
    #[serde(default = "default_settle")]
    pub run_ms: u64,
    /// Faults applied as the cluster starts, before the warm-up (for example a
    /// recording of the seeding, to replay later).
    #[serde(default)]
    pub at_start: Vec<Fault>,
    /// Nodes not started with the others: a `restart` (or `start`) step starts
    /// them, or the repair phase of a random drill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<u8>,
    /// Steps during the warm-up, timed from the start (a manual seed, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup_steps: Vec<Step>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The timers the nodes run: `"legacy"` (default: the simulator's own set,
    /// which the scenario files' expectations are tuned to), `"default"` or
    /// `"fast"` (the shipped profiles, as the config produces them). Durations in
    /// the file are not scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::Profile>,
    /// What a failed health probe makes a node do: `"leave"` (default) or `"fence"`.
    #[serde(default)]
    pub probe_on_failure: vigil::health::OnFailure,
    /// What a member does after a stall longer than its lease: `"fence"` (default)
    /// or `"rejoin"`.
    #[serde(default)]
    pub stall_action: vigil_fence::StallAction,
    #[serde(default)]
    pub expect: Expect,
}

fn default_warmup() -> u64 {
    600
}
fn default_settle() -> u64 {
    2000
}

impl Scenario {
    /// Parse a scenario file.
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
