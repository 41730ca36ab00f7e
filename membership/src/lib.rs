//! # vigil-membership — views, generations, seeding and ports
//!
//! A view is `(generation, members)`; each member is a node ID with the incarnation
//! it had when it joined. This crate holds the named types views are made of; the
//! view-change protocol that decides them (with the fence crate's quorum rule) is
//! built on these.

use serde::{Deserialize, Serialize};
use std::fmt;
use vigil_llt::types::{NodeId, MAX_NODE_ID};

pub mod msg;
pub mod view;

pub use msg::{Ballot, Msg};
pub use view::{port_bit, primary_after, Member, PortMask, View, BUILTIN_PORTS};

/// A set of node IDs (0..=63) as a bit set: cheap to copy, compare and enumerate in
/// ID order.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeSet(u64);

impl NodeSet {
    pub const EMPTY: NodeSet = NodeSet(0);

    /// The set with the given bits (bit `i` = node `i`).
    pub fn from_bits(bits: u64) -> NodeSet {
        NodeSet(bits)
    }
    pub fn bits(self) -> u64 {
        self.0
    }
    pub fn contains(self, n: NodeId) -> bool {
        n.0 <= MAX_NODE_ID && self.0 & (1 << n.0) != 0
    }
    pub fn insert(&mut self, n: NodeId) {
        if n.0 <= MAX_NODE_ID {
            self.0 |= 1 << n.0;
        }
    }
    pub fn remove(&mut self, n: NodeId) {
        if n.0 <= MAX_NODE_ID {
            self.0 &= !(1 << n.0);
        }
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The lowest node ID: the leader of a view, the racer of a side.
    pub fn min(self) -> Option<NodeId> {
        (self.0 != 0).then(|| NodeId(self.0.trailing_zeros() as u8))
    }
    pub fn union(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 | other.0)
    }
    pub fn intersection(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & other.0)
    }
    pub fn difference(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & !other.0)
    }
    pub fn is_subset(self, other: NodeSet) -> bool {
        self.0 & !other.0 == 0
    }
    /// Members in ID order.
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        (0..=MAX_NODE_ID)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(NodeId)
    }
}

impl FromIterator<NodeId> for NodeSet {
    fn from_iter<T: IntoIterator<Item = NodeId>>(iter: T) -> Self {
        let mut s = NodeSet::EMPTY;
        for n in iter {
            s.insert(n);
        }
        s
    }
}

impl fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, n) in self.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{n}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a: NodeSet = [NodeId(0), NodeId(3), NodeId(63)].into_iter().collect();
        assert_eq!(a.len(), 3);
        assert_eq!(a.min(), Some(NodeId(0)));
        assert!(a.contains(NodeId(63)) && !a.contains(NodeId(1)));
        assert!(!a.contains(NodeId(64)), "out of range is never a member");
        let b: NodeSet = [NodeId(3), NodeId(5)].into_iter().collect();
        assert_eq!(
            a.intersection(b).iter().collect::<Vec<_>>(),
            vec![NodeId(3)]
        );
        assert_eq!(format!("{:?}", a.union(b)), "{0,3,5,63}");
        assert_eq!(a.difference(b).min(), Some(NodeId(0)));
        assert!(NodeSet::EMPTY.min().is_none());
        assert!(b.intersection(a).is_subset(a));
    }
}
