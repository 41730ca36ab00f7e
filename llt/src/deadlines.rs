//! The earliest of up to 64 per-peer deadlines, kept as a tournament tree: setting
//! one peer's deadline costs six comparisons and reading the earliest costs none,
//! so a frame from one peer does not make the core look at every other peer.

use crate::types::{Instant, NodeId};

/// Peers a tree holds: every possible node ID.
const LEAVES: usize = 64;

/// No deadline.
const NONE: u64 = u64::MAX;

/// One optional deadline per node ID and the earliest of them.
#[derive(Clone, Debug)]
pub(crate) struct PeerDeadlines {
    /// `tree[1]` is the root; `tree[LEAVES + i]` is node `i`'s deadline in
    /// nanoseconds; every inner entry is the smaller of its two children.
    tree: [u64; 2 * LEAVES],
}

impl Default for PeerDeadlines {
    fn default() -> Self {
        PeerDeadlines {
            tree: [NONE; 2 * LEAVES],
        }
    }
}

impl PeerDeadlines {
    /// Set (or clear) `peer`'s deadline.
    pub(crate) fn set(&mut self, peer: NodeId, deadline: Option<Instant>) {
        let mut k = LEAVES + peer.index() % LEAVES;
        let v = deadline.map_or(NONE, |t| t.as_nanos().min(NONE - 1));
        if self.tree[k] == v {
            return;
        }
        self.tree[k] = v;
        while k > 1 {
            k /= 2;
            let m = self.tree[2 * k].min(self.tree[2 * k + 1]);
            if self.tree[k] == m {
                break;
            }
            self.tree[k] = m;
        }
    }

    /// The earliest deadline of any peer.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        (self.tree[1] != NONE).then(|| Instant::from_nanos(self.tree[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> Option<Instant> {
        Some(Instant::from_nanos(ns))
    }

    #[test]
    fn the_earliest_follows_every_change() {
        let mut d = PeerDeadlines::default();
        assert_eq!(d.earliest(), None);
        d.set(NodeId(5), at(50));
        d.set(NodeId(63), at(30));
        d.set(NodeId(0), at(40));
        assert_eq!(d.earliest(), at(30));
        // The earliest moves later: the next one takes over.
        d.set(NodeId(63), at(90));
        assert_eq!(d.earliest(), at(40));
        d.set(NodeId(0), None);
        assert_eq!(d.earliest(), at(50));
        d.set(NodeId(5), None);
        assert_eq!(d.earliest(), at(90));
        d.set(NodeId(63), None);
        assert_eq!(d.earliest(), None);
    }

    #[test]
    fn matches_a_scan_over_random_updates() {
        // A small deterministic generator: no dependency for a test.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut d = PeerDeadlines::default();
        let mut flat = [None; LEAVES];
        for _ in 0..20_000 {
            let peer = (next() % LEAVES as u64) as u8;
            let v = if next() % 5 == 0 {
                None
            } else {
                at(next() % 1000)
            };
            d.set(NodeId(peer), v);
            flat[usize::from(peer)] = v;
            assert_eq!(d.earliest(), flat.iter().flatten().min().copied());
        }
    }
}
