//! Views, members, ports: what a membership decision is about.

use crate::NodeSet;
use serde::{Deserialize, Serialize};
use vigil_llt::types::{Generation, Incarnation, NodeId, Port};

/// Ports are `a`..=`z`; a member's registered ports are a bit set (bit 0 = `a`).
pub type PortMask = u32;

/// Port `a` (membership) and `b` (fencing): every member has them.
pub const BUILTIN_PORTS: PortMask = 0b11;

/// The bit of `port` in a [`PortMask`], if it is a port letter.
pub fn port_bit(port: Port) -> Option<PortMask> {
    port.0.is_ascii_lowercase().then(|| 1 << (port.0 - b'a'))
}

/// One member of a view: a node in one incarnation, with the ports it registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub incarnation: Incarnation,
    pub ports: PortMask,
}

/// A decided view: a generation and its members, in ID order, the member that is
/// primary, plus the generation at which each port's membership last changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    pub generation: Generation,
    pub members: Vec<Member>,
    /// The one member that holds the primary role in this view (a member, unless
    /// the view is empty). Part of the decided value, computed by [`View::new`]
    /// from the previous view: see `docs/fencing.md`, "The primary and the
    /// fencing token".
    pub primary: NodeId,
    /// `(port, generation)` for every port that has members, in port order.
    pub port_generations: Vec<(Port, Generation)>,
}

impl View {
    /// A view of `members` (any order) at `generation`, with port generations
    /// carried over from `prev` where a port's membership did not change, and its
    /// primary chosen by [`primary_after`].
    pub fn new(generation: Generation, mut members: Vec<Member>, prev: Option<&View>) -> View {
        members.sort();
        members.dedup_by_key(|m| m.id);
        let primary = primary_after(prev, &members);
        let mut view = View {
            generation,
            members,
            primary,
            port_generations: Vec::new(),
        };
        for letter in b'a'..=b'z' {
            let port = Port(letter);
            let now = view.port_members(port);
            if now.is_empty() {
                continue;
            }
            let gen = match prev {
                Some(p) if p.port_members(port) == now => {
                    p.port_generation(port).unwrap_or(generation)
                }
                _ => generation,
            };
            view.port_generations.push((port, gen));
        }
        view
    }

    /// The member IDs.
    pub fn node_set(&self) -> NodeSet {
        self.members.iter().map(|m| m.id).collect()
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Whether `(id, incarnation)` is a member.
    pub fn contains(&self, id: NodeId, incarnation: Incarnation) -> bool {
        self.member(id)
            .is_some_and(|m| m.incarnation == incarnation)
    }

    /// The view's leader: its lowest node ID (the quorum rule's tie-break). Not
    /// the primary: see [`View::primary`].
    pub fn leader(&self) -> Option<NodeId> {
        self.node_set().min()
    }

    /// The primary's member entry (`None` only for an empty view).
    pub fn primary_member(&self) -> Option<&Member> {
        self.member(self.primary)
    }

    /// Members registered on `port` (every member for `a` and `b`).
    pub fn port_members(&self, port: Port) -> NodeSet {
        let Some(bit) = port_bit(port) else {
            return NodeSet::EMPTY;
        };
        self.members
            .iter()
            .filter(|m| (m.ports | BUILTIN_PORTS) & bit != 0)
            .map(|m| m.id)
            .collect()
    }

    pub fn port_generation(&self, port: Port) -> Option<Generation> {
        self.port_generations
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, g)| *g)
    }

    /// Same members, incarnations and ports (generations aside).
    pub fn same_members(&self, other: &[Member]) -> bool {
        if other.is_sorted() {
            // The usual case (a clique comes out sorted): no copy to sort.
            return self.members == other;
        }
        let mut o = other.to_vec();
        o.sort();
        self.members == o
    }
}

/// The primary of a view of `members` (sorted by ID) that follows `prev`:
///
/// 1. `prev`'s primary, if the same process (same ID and incarnation) is a member
///    (sticky: a join, even of a lower ID, never moves the role);
/// 2. otherwise the lowest member that was in `prev` in the same incarnation (a
///    survivor; a restarted node is a new process, not a survivor);
/// 3. otherwise (a seed view, or no survivor) the lowest member.
///
/// An empty `members` gives node 0, which is then no member (no view is empty).
pub fn primary_after(prev: Option<&View>, members: &[Member]) -> NodeId {
    let survivor = |m: &&Member| prev.is_some_and(|p| p.contains(m.id, m.incarnation));
    let sticky = prev
        .and_then(View::primary_member)
        .filter(|p| {
            members
                .iter()
                .any(|m| m.id == p.id && m.incarnation == p.incarnation)
        })
        .map(|p| p.id);
    sticky
        .or_else(|| members.iter().find(survivor).map(|m| m.id))
        .or_else(|| members.first().map(|m| m.id))
        .unwrap_or(NodeId(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u8, inc: u64, ports: PortMask) -> Member {
        Member {
            id: NodeId(id),
            incarnation: Incarnation(inc),
            ports,
        }
    }

    #[test]
    fn port_generations_change_only_with_their_membership() {
        let c = port_bit(Port(b'c')).unwrap();
        let v1 = View::new(Generation(5), vec![m(1, 1, c), m(0, 1, 0)], None);
        assert_eq!(v1.members[0].id, NodeId(0));
        assert_eq!(v1.port_generation(Port(b'a')), Some(Generation(5)));
        assert_eq!(v1.port_generation(Port(b'c')), Some(Generation(5)));
        assert_eq!(v1.port_members(Port(b'c')).len(), 1);
        // Node 2 joins without port c: a and b change, c does not.
        let v2 = View::new(
            Generation(6),
            vec![m(0, 1, 0), m(1, 1, c), m(2, 1, 0)],
            Some(&v1),
        );
        assert_eq!(v2.port_generation(Port(b'a')), Some(Generation(6)));
        assert_eq!(v2.port_generation(Port(b'c')), Some(Generation(5)));
        assert_eq!(v2.port_generation(Port(b'd')), None);
        assert_eq!(v2.leader(), Some(NodeId(0)));
        assert!(v2.contains(NodeId(2), Incarnation(1)));
        assert!(!v2.contains(NodeId(2), Incarnation(2)));
    }

    fn ids(v: &View) -> Vec<u8> {
        v.members.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn a_seed_view_makes_its_lowest_member_primary() {
        let v = View::new(
            Generation(1),
            vec![m(2, 1, 0), m(1, 1, 0), m(3, 1, 0)],
            None,
        );
        assert_eq!(v.primary, NodeId(1));
        assert_eq!(v.primary_member(), Some(&m(1, 1, 0)));
    }

    #[test]
    fn the_primary_is_sticky_across_a_join_of_a_lower_id() {
        let v1 = View::new(Generation(4), vec![m(1, 1, 0), m(2, 1, 0)], None);
        assert_eq!(v1.primary, NodeId(1));
        // Node 0 joins: the leader (quorum tie-break) is 0, the primary stays 1.
        let v2 = View::new(
            Generation(5),
            vec![m(0, 9, 0), m(1, 1, 0), m(2, 1, 0)],
            Some(&v1),
        );
        assert_eq!(ids(&v2), vec![0, 1, 2]);
        assert_eq!(v2.primary, NodeId(1));
        assert_eq!(v2.leader(), Some(NodeId(0)));
        // A port registration (same processes) keeps it too.
        let c = port_bit(Port(b'c')).unwrap();
        let v3 = View::new(
            Generation(6),
            vec![m(0, 9, 0), m(1, 1, c), m(2, 1, 0)],
            Some(&v2),
        );
        assert_eq!(v3.primary, NodeId(1));
    }

    #[test]
    fn a_restarted_primary_is_not_sticky_and_the_lowest_survivor_takes_over() {
        let v1 = View::new(
            Generation(4),
            vec![m(1, 1, 0), m(2, 1, 0), m(3, 1, 0)],
            None,
        );
        // Node 1 restarted (incarnation 2) and joins back in the same view change
        // that drops its old process: a new process, not the primary.
        let v2 = View::new(
            Generation(5),
            vec![m(1, 2, 0), m(2, 1, 0), m(3, 1, 0)],
            Some(&v1),
        );
        assert_eq!(v2.primary, NodeId(2));
        // The primary leaves; a lower joiner (0) is not a survivor; 3 is.
        let v3 = View::new(
            Generation(6),
            vec![m(0, 1, 0), m(1, 2, 0), m(3, 1, 0)],
            Some(&v2),
        );
        assert_eq!(v3.primary, NodeId(1), "1 (incarnation 2) survived from v2");
        let v4 = View::new(Generation(7), vec![m(0, 1, 0), m(3, 1, 0)], Some(&v3));
        assert_eq!(v4.primary, NodeId(0), "0 and 3 survived; the lowest");
    }

    #[test]
    fn with_no_survivor_the_lowest_member_is_primary() {
        let v1 = View::new(Generation(4), vec![m(1, 1, 0), m(2, 1, 0)], None);
        let v2 = View::new(Generation(5), vec![m(2, 2, 0), m(3, 1, 0)], Some(&v1));
        assert_eq!(v2.primary, NodeId(2));
        assert_eq!(primary_after(Some(&v1), &[]), NodeId(0));
    }
}
