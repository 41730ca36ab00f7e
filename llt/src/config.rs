//! What the llt core needs to know, already validated by the root crate's config loader.

use crate::types::{ClusterId, LinkId, NodeId};
use crate::wire::FrameKey;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether a link carries heartbeats at the fast rate and data at all times (`High`),
/// or heartbeats at the slow rate and data only when no high-priority link is up (`Low`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPriority {
    High,
    Low,
}

/// One link as the core sees it; its index in [`LltConfig::links`] is its `LinkId`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSpec {
    /// The link's name from the config, for statistics and logs.
    pub name: String,
    pub priority: LinkPriority,
    /// The link reaches every node with one frame (Ethernet). On such links every
    /// other heartbeat round also sends one broadcast heartbeat, so that a node
    /// starting with a node ID already in use hears the live owner of that ID.
    #[serde(default)]
    pub broadcast: bool,
}

/// The link that joins the nodes of a cluster to its witness, and what differs on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessLink {
    /// The witness's node ID (vigil uses 63); must be in `LltConfig::nodes`.
    pub id: NodeId,
    /// The link that carries the frames between the witness and the nodes, and no others.
    pub link: LinkId,
    /// The keys of the frames on that link (sent with the first, accepted under any);
    /// the cluster's `keys` are never used on it, and these never on other links.
    /// Empty: frames on the witness link carry no MAC (an insecure cluster).
    pub keys: Vec<FrameKey>,
    /// Heartbeat interval on the witness link.
    pub heartbeat: Duration,
    /// Silence on the witness link before it is TROUBLE.
    pub peer_trouble: Duration,
    /// Silence on the witness link before it is DOWN.
    pub peer_inactive: Duration,
}

/// The llt core's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LltConfig {
    /// Frames carrying another cluster ID are dropped and counted.
    pub cluster_id: ClusterId,
    /// Every configured node, the local one included.
    pub nodes: Vec<NodeId>,
    /// The links, in config order; index = `LinkId`.
    pub links: Vec<LinkSpec>,
    /// Heartbeat interval on high-priority links.
    pub heartbeat: Duration,
    /// Heartbeat interval on low-priority links.
    pub heartbeat_lowpri: Duration,
    /// Silence after which a peer's link is in TROUBLE.
    pub peer_trouble: Duration,
    /// Silence after which a peer's link is DOWN.
    pub peer_inactive: Duration,
    /// Consecutive heartbeats (each within `peer_trouble` of the last) a DOWN link
    /// needs before it is UP again: the hysteresis that keeps a flapping link quiet.
    pub link_up_count: u32,
    /// Shared keys for frame authentication. Frames are sent with the first and
    /// accepted under any of them (a key rotation holds two); empty sends and
    /// accepts frames without a MAC.
    pub keys: Vec<FrameKey>,
    /// How long a starting node listens, sending nothing, to find a live node that
    /// already uses its ID.
    pub listen_window: Duration,
    /// Testing only, never set from a config file: accept frames that do not echo
    /// this node's incarnation (the freshness check off), so that the simulator's
    /// checker can be shown to catch a replay.
    #[serde(default)]
    pub sabotage_stale_frames: bool,
    /// The cluster's witness, if it has one: a peer reached over one link of its own
    /// (and that link reaching no other peer), with its own keys and timers.
    #[serde(default)]
    pub witness: Option<WitnessLink>,
}

impl LltConfig {
    /// A configuration with the default timers for `nodes` and `links`, for tests and
    /// embedders that build one by hand.
    pub fn with_defaults(cluster_id: ClusterId, nodes: Vec<NodeId>, links: Vec<LinkSpec>) -> Self {
        LltConfig {
            cluster_id,
            nodes,
            links,
            heartbeat: Duration::from_millis(100),
            heartbeat_lowpri: Duration::from_millis(250),
            peer_trouble: Duration::from_millis(400),
            peer_inactive: Duration::from_millis(800),
            link_up_count: 3,
            keys: Vec::new(),
            listen_window: Duration::from_millis(300),
            sabotage_stale_frames: false,
            witness: None,
        }
    }
}
