//! What the fuzz targets and the seed-corpus generator share: the llt core
//! target's input format.

use std::time::Duration;
use vigil_llt::types::{ClusterId, NodeId};
use vigil_llt::{FrameKey, KeyId, LinkPriority, LinkSpec, LltConfig};

/// The cluster ID of the llt core target's cluster.
pub const CLUSTER: ClusterId = ClusterId(7);
/// The key of the llt core target's cluster, when it is keyed.
pub const KEY: [u8; 32] = [0x42; 32];

/// The llt core target's frame key: [`KEY`] under a fixed key ID.
pub fn frame_key() -> FrameKey {
    FrameKey {
        id: KeyId(0x4242_4242),
        key: KEY,
    }
}
/// Nodes `0..NODES` are configured in the llt core target's cluster.
pub const NODES: u8 = 4;

/// llt core target operation: advance the clock by a `u16` count of 100 µs, then
/// `handle_timeout`.
pub const OP_TIMEOUT: u8 = 0;
/// llt core target operation: a raw frame, `link: u8`, `len: u16`, then the bytes.
pub const OP_RAW: u8 = 1;

/// The llt core target's setup byte: bit 0 keyed, bits 1-2 the link count (1 + value
/// mod 3; link 0 is high-priority, the others low, link 2 broadcast), bits 3-4 the
/// local node, bit 5 no listening window, bit 6 `link_up_count = 1`.
/// Returns the config and the local node.
pub fn llt_setup(setup: u8) -> (LltConfig, NodeId) {
    let nlinks = 1 + (setup >> 1) % 3;
    let me = NodeId((setup >> 3) % NODES);
    let links = (0..nlinks)
        .map(|i| LinkSpec {
            name: format!("l{i}"),
            priority: if i == 0 {
                LinkPriority::High
            } else {
                LinkPriority::Low
            },
            broadcast: i == 2,
        })
        .collect();
    let mut cfg = LltConfig::with_defaults(CLUSTER, (0..NODES).map(NodeId).collect(), links);
    if setup & 1 != 0 {
        cfg.keys = vec![frame_key()];
    }
    if setup & 0x20 != 0 {
        cfg.listen_window = Duration::ZERO;
    }
    if setup & 0x40 != 0 {
        cfg.link_up_count = 1;
    }
    (cfg, me)
}
