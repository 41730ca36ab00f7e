//! What the node's clients may act on, taken from the sans-IO node and put on the
//! monotonic clock of this process.

use crate::Authority;
use std::time::Duration;
use vigil::node::Node;
use vigil_llt::types::{Instant, NodeId};

/// The authority `node` (node `me`) holds at `now`, if any, with `valid_until` on
/// the clock whose zero is `origin`.
pub(crate) fn current(
    node: &Node,
    me: NodeId,
    now: Instant,
    origin: std::time::Instant,
) -> Option<Authority> {
    let a = node.current_authority(now)?;
    Some(Authority {
        node: me,
        token: a.token,
        view: a.view,
        installed: a.installed,
        primary: a.primary,
        is_primary: a.is_primary,
        valid_until: origin + Duration::from_nanos(a.valid_until.as_nanos()),
    })
}
