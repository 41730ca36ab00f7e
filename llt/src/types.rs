//! Named numbers shared by every layer: node and link identities, incarnations,
//! generations, cluster IDs and the core's notion of time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Highest node ID a cluster may use (IDs are `0..=MAX_NODE_ID`).
pub const MAX_NODE_ID: u8 = 63;
/// Most links a node may have.
pub const MAX_LINKS: usize = 8;

/// A node's identity in the cluster, `0..=63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u8);

impl NodeId {
    /// `Some` when `raw` is a valid node ID.
    pub fn new(raw: u8) -> Option<NodeId> {
        (raw <= MAX_NODE_ID).then_some(NodeId(raw))
    }
    pub fn get(self) -> u8 {
        self.0
    }
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A link's index in the cluster's link list, `0..8`. Every node numbers its links
/// the same way (the order of `[[links]]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkId(pub u8);

impl LinkId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one run of a node's process. Fresh at every start and, as the daemon
/// draws it (start time in microseconds with random low bits), increasing across
/// restarts: a frame from a lower incarnation than the one known is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A membership generation. Carried opaquely by llt; only membership gives it meaning.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// The highest generation a cluster can install. A generation above it, read
    /// from a frame, a message or a state file, is refused where it is read, so
    /// every generation a node holds has a [`Generation::next`] — except this one,
    /// which a node at the top of the range cannot go past: it refuses to race
    /// rather than wrap. (At one view change per millisecond it takes 146 million
    /// years to get here.)
    pub const MAX: Generation = Generation(1 << 62);

    /// The generation after this one, or `None` at [`Generation::MAX`] and above:
    /// never a wrap.
    pub fn next(self) -> Option<Generation> {
        if self < Generation::MAX {
            self.0.checked_add(1).map(Generation)
        } else {
            None
        }
    }

    /// Whether a node may hold this generation (at most [`Generation::MAX`]).
    pub fn is_valid(self) -> bool {
        self <= Generation::MAX
    }
}

/// The cluster's ID; frames from another cluster are dropped and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterId(pub u32);

/// A client port (`a` membership, `b` fencing, `c`.. for embedders), as its letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Port(pub u8);

impl Port {
    pub const MEMBERSHIP: Port = Port(b'a');
    pub const FENCE: Port = Port(b'b');
}

/// A point on a monotonic clock, in nanoseconds since an arbitrary origin chosen by
/// the driver (the daemon's start, or the simulator's zero). Cores never read a clock;
/// they are handed an `Instant` with every input.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_micros(self) -> u64 {
        self.0 / 1_000
    }
    /// Time since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl std::ops::AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

/// Where a frame came from, or should go to, on a link. Opaque to the core except
/// that it remembers the last address an accepted frame from a peer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkAddr {
    Udp(std::net::SocketAddr),
    Ether([u8; 6]),
}

impl fmt::Display for LinkAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkAddr::Udp(a) => write!(f, "{a}"),
            LinkAddr::Ether(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }
}
