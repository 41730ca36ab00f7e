//! The fence layer's public vocabulary: configuration, events, verdicts, status.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_membership::{NodeSet, View};

/// What the fence core needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceConfig {
    /// Every configured node.
    pub nodes: NodeSet,
    /// Nodes that must see each other (and agree) before the first view forms.
    pub seed: usize,
    /// A race that finds no quorum within this is lost.
    pub race_timeout: Duration,
    /// How long a quorum's confirmation keeps a member's authority.
    pub lease: Duration,
    /// Bound on clock-rate drift between nodes, parts per million.
    pub max_drift_ppm: u32,
    /// Retransmission period of race messages, joins and reachability reports.
    pub heartbeat: Duration,
    /// llt's failure timeout. A peer's report that it cannot reach a member is acted
    /// on only once it has held this long, so links still coming up (or a report
    /// overtaken by a newer one) never push a healthy member out.
    pub peer_inactive: Duration,
    /// `false` (fencing = "disabled"): races are still run, but a lost race or an
    /// exclusion only drops authority; the node never self-fences.
    pub self_fence: bool,
    /// A stall of the node's own loop longer than this is logged (and the time it
    /// was not running is never counted against its peers).
    #[serde(default = "default_stall_report")]
    pub stall_report: Duration,
    /// What a member does after a stall longer than its lease.
    #[serde(default)]
    pub stall_action: StallAction,
    /// The hardware or software watchdog's timeout, when the nodes arm one: a node
    /// whose user space hangs is reset by then, so survivors add it to the settle
    /// window.
    #[serde(default)]
    pub watchdog: Option<Duration>,
    /// How long a racer holds back a needed race while members of the view are
    /// quiet, so that members that fell silent together leave in one view (zero:
    /// race at the first DOWN). Spectators wait this much longer for a verdict.
    #[serde(default)]
    pub gather_window: Duration,
    /// The votes each node (and the witness, at [`crate::WITNESS_ID`]) holds in the
    /// quorum rule: one each unless configured. Every node must use the same table.
    #[serde(default)]
    pub weights: crate::Weights,
    /// The cluster has a witness (`vigil witness`), voting as
    /// [`crate::WITNESS_ID`]: an acceptor of every race and a confirmer of leases
    /// while it is a member of the view, joined and dropped like a node. It needs
    /// to reach the racer only: what other members report about it is not asked,
    /// and a member that cannot reach it waits for no view change. The witness's
    /// own core has this set too, with `me` = `WITNESS_ID`: it never seeds, races or
    /// spectates, and holds no authority.
    #[serde(default)]
    pub witness: bool,
    /// Testing only, never set from a config file: break the protocol on purpose so
    /// that the simulator's checker can be shown to catch it.
    #[serde(default)]
    pub sabotage: Option<Sabotage>,
}

fn default_stall_report() -> Duration {
    Duration::from_millis(50)
}

/// What a member does when it finds it was not running for longer than its lease
/// (a frozen process, a stunned VM): its authority has lapsed and its view may be
/// stale, since its peers may have removed it meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StallAction {
    /// Fence itself at once (default).
    #[default]
    Fence,
    /// Stop presenting itself as a member and start again as a new incarnation,
    /// which joins the running cluster like a rebooted node.
    Rejoin,
}

/// A deliberate protocol break, for showing that the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sabotage {
    /// Any side holding exactly half of the previous view survives.
    AnyHalfWins,
    /// The racer decides with one accept fewer than a quorum.
    FewerAccepts,
    /// Survivors hand a new view to clients at once, without the settle window.
    ZeroSettle,
    /// The racer makes the lowest member of its proposal primary, ignoring the
    /// sticky rule ([`vigil_membership::primary_after`]): a lower ID that joins
    /// takes the role while the old primary still holds authority on the view
    /// before.
    LowestPrimary,
    /// Seeding as before views were kept: `seed` accepts decide a seed, nobody
    /// checks the views it knows, and no settle window follows. A group that
    /// restarted beside a running view can start a second cluster.
    SeedWithoutViews,
    /// The witness votes for every proposal of a generation: it promises every
    /// ballot without naming the value it accepted, and accepts whatever it is
    /// asked, so each side of a partition can decide its own view with it.
    WitnessVotesTwice,
}

/// A view as a node remembers it across restarts: its generation and member IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KnownView {
    pub generation: Generation,
    pub members: NodeSet,
}

impl KnownView {
    /// The generation and member IDs of `view`.
    pub fn of(view: &View) -> KnownView {
        KnownView {
            generation: view.generation,
            members: view.node_set(),
        }
    }
}

/// What a node keeps durably (its state file): the highest generation it has seen,
/// the last view it installed and the last value it accepted for a newer
/// generation. Seeding reads the views: a group may seed only if it holds a quorum
/// of every one its members know (see `docs/membership.md`, "Seeding after a
/// view"), so no group can start a second cluster beside a view that may still run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Durable {
    pub highest: Generation,
    /// The last view installed here.
    pub installed: Option<KnownView>,
    /// The last value accepted here for a generation above `installed`'s: it may
    /// have been decided without this node learning it.
    pub accepted: Option<KnownView>,
}

impl From<Generation> for Durable {
    /// Only a highest generation (a state file written before views were kept).
    fn from(highest: Generation) -> Durable {
        Durable {
            highest,
            installed: None,
            accepted: None,
        }
    }
}

impl Durable {
    /// The views this node knows of, newest last.
    pub fn views(&self) -> impl Iterator<Item = KnownView> {
        self.installed.into_iter().chain(self.accepted)
    }

    /// The known views of which `group` holds no quorum: seeding `group` would
    /// override them.
    pub fn seed_overrides(&self, weights: &crate::Weights, group: NodeSet) -> Vec<KnownView> {
        self.views()
            .filter(|v| !crate::has_weighted_quorum(weights, v.members, group))
            .collect()
    }
}

/// Why a node fences itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum FenceReason {
    /// Its side's racer found no quorum within `race_timeout`.
    RaceLost { slot: Generation },
    /// No view was decided within `race_timeout` of a needed change.
    NoDecision { slot: Generation },
    /// It learned of a decided view that excludes it (IOFENCE).
    Excluded { generation: Generation },
    /// A health probe failed and the node fenced itself (the probe says so, or it
    /// could not leave gracefully).
    Unhealthy { probe: String },
    /// The node was not running for longer than its lease.
    Stalled { stall_ms: u64 },
}

/// What a member of the cluster is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// No view yet: waiting to seed or to join.
    Unseeded,
    /// A member of the installed view.
    Member,
    /// A member whose side is racing for the next view.
    Racing,
    /// Left the cluster gracefully.
    Left,
    /// Fenced itself; it does nothing more.
    Fenced,
}

/// Outcome of a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaceVerdict {
    Running,
    Won,
    Lost,
}

/// The last race this node took part in (as racer or spectator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaceRecord {
    /// The generation the race replaces (0: seeding).
    pub slot: Generation,
    pub racer: NodeId,
    /// The proposal this node made or saw.
    pub proposal: NodeSet,
    pub started: Instant,
    pub duration: Option<Duration>,
    pub verdict: RaceVerdict,
}

/// Something that happened, for the layer above and the logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FenceEvent {
    /// A view was decided and installed here.
    ViewInstalled {
        view: View,
    },
    /// The installed view is now the one clients see (after the settle window).
    ClientView {
        view: View,
    },
    RaceStarted {
        slot: Generation,
        racer: NodeId,
        proposal: NodeSet,
    },
    RaceWon {
        generation: Generation,
        members: NodeSet,
        duration: Duration,
    },
    RaceLost {
        slot: Generation,
        duration: Duration,
    },
    AuthorityGained {
        generation: Generation,
    },
    AuthorityLost {
        generation: Generation,
    },
    /// The node fences itself: stop presenting as a member, then act.
    SelfFence {
        reason: FenceReason,
    },
    /// `gabconfig -x`: seeding by hand with whoever is reachable.
    ManualSeed {
        members: NodeSet,
        /// The views this node knows of whose quorum the group lacks: what the
        /// manual seed overrides (empty when an automatic seed would have been
        /// allowed too).
        overrides: Vec<KnownView>,
    },
    /// Seeding is held back: the reachable group lacks a quorum of a view this
    /// node knows of, which may still be running elsewhere. Said once per change
    /// of the group or of the views.
    SeedWaiting {
        group: NodeSet,
        needs: Vec<KnownView>,
    },
    /// Left after a graceful stop.
    Left {
        generation: Generation,
    },
}

/// A side-effect-free snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceStatus {
    pub state: NodeState,
    pub authority: bool,
    pub self_fence: bool,
    /// The view decided and installed here.
    pub installed: Option<View>,
    /// The view clients see (the installed one once its settle window passed).
    pub client_view: Option<View>,
    pub highest_generation: Generation,
    /// The views this node keeps durably (last installed, last accepted).
    pub durable: Durable,
    pub lease_until: Option<Instant>,
    pub settle_until: Option<Instant>,
    pub last_race: Option<RaceRecord>,
    pub fenced: Option<FenceReason>,
    /// Messages that failed to decode.
    pub bad_messages: u64,
    /// Outputs queued while the output queue already held its bound: the driver
    /// stopped draining it. None is dropped; non-zero is a bug to report.
    #[serde(default)]
    pub output_overflows: u64,
}
