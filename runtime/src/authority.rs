//! What the node's clients may act on, taken from the sans-IO node.

use vigil::node::Node;
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_membership::View;

/// The node's authority at one instant, on the node's clock.
pub(crate) struct Current {
    pub token: Generation,
    pub view: View,
    pub installed: Generation,
    pub primary: NodeId,
    pub valid_until: Instant,
}

/// The authority `node` holds at `now`, if any.
pub(crate) fn current(node: &Node, now: Instant) -> Option<Current> {
    if !node.authority_at(now) {
        return None;
    }
    let f = node.status().fence;
    let view = f.client_view?;
    let primary = view.leader()?;
    Some(Current {
        token: view.generation,
        installed: f
            .installed
            .as_ref()
            .map_or(view.generation, |v| v.generation),
        primary,
        valid_until: f.lease_until?,
        view,
    })
}
