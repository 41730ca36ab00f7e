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

/// A decided view: a generation and its members, in ID order, plus the generation
/// at which each port's membership last changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    pub generation: Generation,
    pub members: Vec<Member>,
    /// `(port, generation)` for every port that has members, in port order.
    pub port_generations: Vec<(Port, Generation)>,
}

impl View {
    /// A view of `members` (any order) at `generation`, with port generations
    /// carried over from `prev` where a port's membership did not change.
    pub fn new(generation: Generation, mut members: Vec<Member>, prev: Option<&View>) -> View {
        members.sort();
        members.dedup_by_key(|m| m.id);
        let mut view = View {
            generation,
            members,
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

    /// The view's leader: its lowest node ID.
    pub fn leader(&self) -> Option<NodeId> {
        self.node_set().min()
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
        let mut o = other.to_vec();
        o.sort();
        self.members == o
    }
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
}
