//! Counters kept by the llt core: per link, and per peer on each link. This is what
//! `lltstat` shows.

use serde::{Deserialize, Serialize};

/// Why a received frame was dropped. Every drop is counted under exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than its header or its own length fields.
    Truncated,
    /// Not a vigil frame at all.
    BadMagic,
    /// A vigil frame of a version this node does not speak.
    BadVersion,
    /// A field holds a value no sender produces.
    Malformed,
    /// From another cluster ID.
    WrongCluster,
    /// Missing or failing MAC (or a MAC when no key is configured).
    Auth,
    /// Claims a different link than the one it arrived on.
    WrongLink,
    /// Addressed to another node.
    NotForUs,
    /// From a node ID that is not in the configuration.
    UnknownNode,
    /// Our own frame, looped back.
    OwnFrame,
    /// From another live process using our node ID.
    DuplicateNode,
    /// From an older incarnation of the peer than one already heard.
    StaleIncarnation,
    /// A sequence number already seen, or too old for the replay window.
    Replay,
    /// Made with a key ID this node does not hold (a key not yet, or no longer, in
    /// its key ring).
    UnknownKey,
    /// Echoes no incarnation of this node yet: a hello. It teaches the sender's
    /// incarnation (to echo back) and nothing else.
    NoEcho,
    /// Echoes another incarnation of this node: made for an earlier start of it (a
    /// recorded frame played back, or one long delayed). Counts for nothing.
    StaleEcho,
}

impl DropReason {
    pub const ALL: [DropReason; 16] = [
        DropReason::Truncated,
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::Malformed,
        DropReason::WrongCluster,
        DropReason::Auth,
        DropReason::WrongLink,
        DropReason::NotForUs,
        DropReason::UnknownNode,
        DropReason::OwnFrame,
        DropReason::DuplicateNode,
        DropReason::StaleIncarnation,
        DropReason::Replay,
        DropReason::UnknownKey,
        DropReason::NoEcho,
        DropReason::StaleEcho,
    ];

    /// The stable name used in `lltstat` and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadMagic => "bad_magic",
            DropReason::BadVersion => "bad_version",
            DropReason::Malformed => "malformed",
            DropReason::WrongCluster => "wrong_cluster",
            DropReason::Auth => "auth",
            DropReason::WrongLink => "wrong_link",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnknownNode => "unknown_node",
            DropReason::OwnFrame => "own_frame",
            DropReason::DuplicateNode => "duplicate_node",
            DropReason::StaleIncarnation => "stale_incarnation",
            DropReason::Replay => "replay",
            DropReason::UnknownKey => "unknown_key",
            DropReason::NoEcho => "no_echo",
            DropReason::StaleEcho => "stale_echo",
        }
    }
}

/// Drop counters, one per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounts {
    pub truncated: u64,
    pub bad_magic: u64,
    pub bad_version: u64,
    pub malformed: u64,
    pub wrong_cluster: u64,
    pub auth: u64,
    pub wrong_link: u64,
    pub not_for_us: u64,
    pub unknown_node: u64,
    pub own_frame: u64,
    pub duplicate_node: u64,
    pub stale_incarnation: u64,
    pub replay: u64,
    #[serde(default)]
    pub unknown_key: u64,
    #[serde(default)]
    pub no_echo: u64,
    #[serde(default)]
    pub stale_echo: u64,
}

impl DropCounts {
    fn slot(&mut self, r: DropReason) -> &mut u64 {
        match r {
            DropReason::Truncated => &mut self.truncated,
            DropReason::BadMagic => &mut self.bad_magic,
            DropReason::BadVersion => &mut self.bad_version,
            DropReason::Malformed => &mut self.malformed,
            DropReason::WrongCluster => &mut self.wrong_cluster,
            DropReason::Auth => &mut self.auth,
            DropReason::WrongLink => &mut self.wrong_link,
            DropReason::NotForUs => &mut self.not_for_us,
            DropReason::UnknownNode => &mut self.unknown_node,
            DropReason::OwnFrame => &mut self.own_frame,
            DropReason::DuplicateNode => &mut self.duplicate_node,
            DropReason::StaleIncarnation => &mut self.stale_incarnation,
            DropReason::Replay => &mut self.replay,
            DropReason::UnknownKey => &mut self.unknown_key,
            DropReason::NoEcho => &mut self.no_echo,
            DropReason::StaleEcho => &mut self.stale_echo,
        }
    }

    pub fn bump(&mut self, r: DropReason) {
        let c = self.slot(r);
        *c = c.saturating_add(1);
    }

    pub fn get(&self, r: DropReason) -> u64 {
        let mut copy = *self;
        *copy.slot(r)
    }

    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// Counters for one link, all peers together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Frames accepted (passed every check).
    pub frames_accepted: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub heartbeats_out: u64,
    pub data_out: u64,
    pub drops: DropCounts,
}

/// Counters for one peer on one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLinkStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Transitions between UP, TROUBLE and DOWN.
    pub state_changes: u64,
    /// Data frames that arrived after the same message came over another link.
    pub data_duplicates: u64,
    /// Frames from this peer dropped as replays or stale incarnations.
    pub replays: u64,
    /// Frames from this peer that echoed no incarnation of this node (hellos) or an
    /// earlier one (stale): they count for nothing beyond teaching the peer's
    /// incarnation.
    #[serde(default)]
    pub unfresh: u64,
}
