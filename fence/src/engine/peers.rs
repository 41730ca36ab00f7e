//! Tables indexed by node ID: the transport's facts about every peer, as the fence
//! core last observed them, and the per-peer records of reachability.

use super::PeerInfo;
use vigil_llt::types::NodeId;

/// Entries by node ID. Node IDs are below 64, so the table is a short vector
/// indexed by ID: a lookup is an index, an update a write, and iteration goes in
/// ID order (as an ordered map would).
#[derive(Clone, Debug)]
pub(super) struct IdTable<T> {
    slots: Vec<Option<(NodeId, T)>>,
}

impl<T> Default for IdTable<T> {
    fn default() -> Self {
        IdTable { slots: Vec::new() }
    }
}

/// Peer facts by node ID.
pub(super) type PeerTable = IdTable<PeerInfo>;

impl<T> IdTable<T> {
    pub(super) fn get(&self, id: &NodeId) -> Option<&T> {
        self.slots
            .get(id.index())
            .and_then(|s| s.as_ref())
            .map(|(_, i)| i)
    }

    pub(super) fn insert(&mut self, id: NodeId, value: T) {
        let k = id.index();
        if self.slots.len() <= k {
            self.slots.resize_with(k + 1, || None);
        }
        self.slots[k] = Some((id, value));
    }

    pub(super) fn remove(&mut self, id: &NodeId) -> Option<T> {
        self.slots
            .get_mut(id.index())
            .and_then(Option::take)
            .map(|(_, v)| v)
    }

    /// Every entry, in ID order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&NodeId, &T)> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(id, i)| (id, i)))
    }

    /// Every value, in ID order.
    pub(super) fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.iter().map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vigil_llt::types::Generation;

    #[test]
    fn behaves_as_an_ordered_map() {
        let mut t = PeerTable::default();
        let mut m = BTreeMap::new();
        for (k, id) in [5u8, 1, 63, 1, 0, 5].into_iter().enumerate() {
            let info = PeerInfo {
                up: k % 2 == 0,
                generation: Generation(k as u64),
                ..PeerInfo::default()
            };
            t.insert(NodeId(id), info);
            m.insert(NodeId(id), info);
            assert_eq!(t.iter().collect::<Vec<_>>(), m.iter().collect::<Vec<_>>());
        }
        for id in 0..64 {
            assert_eq!(t.get(&NodeId(id)), m.get(&NodeId(id)));
        }
        for id in [5u8, 2, 63, 5] {
            assert_eq!(t.remove(&NodeId(id)), m.remove(&NodeId(id)));
            assert_eq!(t.iter().collect::<Vec<_>>(), m.iter().collect::<Vec<_>>());
        }
    }
}
