//! The transport's facts about every peer, as the fence core last observed them:
//! a table indexed by node ID, iterated in ID order.

use super::PeerInfo;
use vigil_llt::types::NodeId;

/// Peer facts by node ID. Node IDs are below 64, so the table is a short vector
/// indexed by ID: a lookup is an index, an update a write, and iteration goes in
/// ID order (as an ordered map would).
#[derive(Clone, Debug, Default)]
pub(super) struct PeerTable {
    slots: Vec<Option<(NodeId, PeerInfo)>>,
}

impl PeerTable {
    pub(super) fn get(&self, id: &NodeId) -> Option<&PeerInfo> {
        self.slots
            .get(id.index())
            .and_then(|s| s.as_ref())
            .map(|(_, i)| i)
    }

    pub(super) fn insert(&mut self, id: NodeId, info: PeerInfo) {
        let k = id.index();
        if self.slots.len() <= k {
            self.slots.resize(k + 1, None);
        }
        self.slots[k] = Some((id, info));
    }

    /// Every peer with its facts, in ID order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&NodeId, &PeerInfo)> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(id, i)| (id, i)))
    }

    /// Every peer's facts, in ID order.
    pub(super) fn values(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
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
    }
}
