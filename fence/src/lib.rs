//! # vigil-fence — the quorum rule, the race and self-fencing
//!
//! [`has_quorum`] is the rule every fencing decision rests on: after a partition, a
//! side survives iff it holds more than half of the previous view's votes, or exactly
//! half including the view's leader (its lowest node ID). Every node holds one vote
//! unless configured otherwise ([`Weights`]); a witness (`vigil witness`) votes as
//! [`WITNESS_ID`]. Any two quorums of the same view intersect, which is why at most
//! one side can win.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use vigil_llt::types::NodeId;
use vigil_membership::NodeSet;

pub mod engine;
pub mod types;

pub use engine::{Fence, FenceOutput, PeerInfo};
pub use types::{
    Durable, FenceConfig, FenceEvent, FenceReason, FenceStatus, KnownView, NodeState, RaceRecord,
    RaceVerdict, Sabotage, StallAction,
};

/// The witness's place in the cluster's ID space: a cluster with a witness numbers
/// its nodes `0..=62`, and the witness votes (accepts, confirms) as ID 63. Being the
/// highest ID, it is never a view's leader, so the tie-break stays with the lowest
/// node.
pub const WITNESS_ID: NodeId = NodeId(63);

/// How many votes each ID holds (0 to 255; 1 unless configured otherwise). The
/// same table on every node: the quorum rule's intersection argument needs every
/// node to count a view's votes alike.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weights {
    votes: [u8; 64],
    /// Every ID holds one vote: totals are set sizes.
    uniform: bool,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights::UNIFORM
    }
}

impl Weights {
    /// One vote each.
    pub const UNIFORM: Weights = Weights {
        votes: [1; 64],
        uniform: true,
    };

    /// One vote each, except the `(id, weight)` pairs given (IDs above 63 are
    /// ignored; a later pair for the same ID wins).
    pub fn with(pairs: impl IntoIterator<Item = (NodeId, u8)>) -> Weights {
        let mut w = Weights::UNIFORM;
        for (id, weight) in pairs {
            if let Some(slot) = w.votes.get_mut(usize::from(id.0)) {
                *slot = weight;
            }
        }
        w.uniform = w.votes.iter().all(|v| *v == 1);
        w
    }

    /// The votes of `id` (0 for an ID outside `0..=63`).
    pub fn of(&self, id: NodeId) -> u8 {
        self.votes.get(usize::from(id.0)).copied().unwrap_or(0)
    }

    /// The votes held by `set`.
    pub fn total(&self, set: NodeSet) -> u32 {
        if self.uniform {
            return set.len() as u32;
        }
        set.iter().map(|id| u32::from(self.of(id))).sum()
    }

    /// Whether every ID holds one vote.
    pub fn is_uniform(&self) -> bool {
        self.uniform
    }

    /// The IDs whose weight is not 1, with their weights.
    pub fn non_uniform(&self) -> impl Iterator<Item = (NodeId, u8)> + '_ {
        (0u8..64)
            .map(NodeId)
            .map(|id| (id, self.of(id)))
            .filter(|(_, w)| *w != 1)
    }
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.uniform {
            return f.write_str("Weights(uniform)");
        }
        f.debug_map()
            .entries(self.non_uniform().map(|(id, w)| (id.0, w)))
            .finish()
    }
}

/// On the wire and in files: the `(id, weight)` pairs whose weight is not 1.
impl Serialize for Weights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.non_uniform())
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Weights, D::Error> {
        let pairs: Vec<(NodeId, u8)> = Vec::deserialize(d)?;
        if let Some((id, _)) = pairs.iter().find(|(id, _)| id.0 > 63) {
            return Err(serde::de::Error::custom(format!(
                "weight for node ID {}: IDs are 0..=63",
                id.0
            )));
        }
        Ok(Weights::with(pairs))
    }
}

/// Whether `side` has quorum of the previous view `prev`, one vote per node:
/// `2|S| > n`, or `2|S| = n` and `min(prev) ∈ S`. Only members of `prev` count.
pub fn has_quorum(prev: NodeSet, side: NodeSet) -> bool {
    has_weighted_quorum(&Weights::UNIFORM, prev, side)
}

/// The quorum rule counting votes: with `W` the votes of `prev` and `s` those of
/// `side ∩ prev`, `2s > W`, or `2s = W` and `min(prev) ∈ S`. Any two quorums of one
/// view intersect whatever the weights: disjoint ones would both hold exactly half
/// and both contain `min(prev)`.
pub fn has_weighted_quorum(weights: &Weights, prev: NodeSet, side: NodeSet) -> bool {
    let side = side.intersection(prev);
    let (s, n) = (weights.total(side), weights.total(prev));
    2 * s > n || (2 * s == n && prev.min().is_some_and(|leader| side.contains(leader)))
}

/// How a side of `size` nodes fares in a view of `n` nodes, for the golden table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Survives whoever is in it.
    Quorum,
    /// Survives only if it holds the view's leader (exact half).
    WithLeader,
    /// Never survives.
    NoQuorum,
}

/// The rule by sizes alone.
pub fn verdict_by_size(n: usize, size: usize) -> Verdict {
    if 2 * size > n {
        Verdict::Quorum
    } else if 2 * size == n && n > 0 {
        Verdict::WithLeader
    } else {
        Verdict::NoQuorum
    }
}

/// The golden table (`docs/quorum-table.md`): for views of 1 to `max_n` nodes, every
/// side size and its verdict.
pub fn golden_table(max_n: usize) -> String {
    let mut t = String::from(
        "# The quorum rule, by view size and side size\n\n\
         Generated by `cargo test -p vigil-fence` (set `VIGIL_BLESS=1` to rewrite it) from\n\
         `vigil_fence::has_quorum`, which is checked against every split of every view of up\n\
         to 12 nodes. `Q`: the side survives; `L`: it survives only if it holds the view's\n\
         leader (lowest node ID); `-`: it self-fences.\n\n| view size \\ side size |",
    );
    for k in 0..=max_n {
        t.push_str(&format!(" {k} |"));
    }
    t.push_str("\n| ---: |");
    for _ in 0..=max_n {
        t.push_str(" :-: |");
    }
    t.push('\n');
    for n in 1..=max_n {
        t.push_str(&format!("| {n} |"));
        for k in 0..=max_n {
            let cell = if k > n {
                " "
            } else {
                match verdict_by_size(n, k) {
                    Verdict::Quorum => "Q",
                    Verdict::WithLeader => "L",
                    Verdict::NoQuorum => "-",
                }
            };
            t.push_str(&format!(" {cell} |"));
        }
        t.push('\n');
    }
    t
}

/// The electorates `docs/quorum-table.md` lists split by split: a name, then each
/// voter's ID and votes ([`WITNESS_ID`] is the witness).
pub const WEIGHTED_EXAMPLES: &[(&str, &[(u8, u8)])] = &[
    ("Two nodes and a witness", &[(0, 1), (1, 1), (63, 1)]),
    (
        "Two nodes, the witness out of the view (down, or not yet back)",
        &[(0, 1), (1, 1)],
    ),
    ("Two nodes, node 1 preferred (weight 2)", &[(0, 1), (1, 2)]),
    (
        "Three nodes, node 0 preferred (weight 2)",
        &[(0, 2), (1, 1), (2, 1)],
    ),
    (
        "Four nodes and a witness",
        &[(0, 1), (1, 1), (2, 1), (3, 1), (63, 1)],
    ),
];

fn voter_name(id: NodeId) -> String {
    if id == WITNESS_ID {
        "W".to_string()
    } else {
        id.0.to_string()
    }
}

fn side_name(set: NodeSet) -> String {
    if set.is_empty() {
        return "(none)".to_string();
    }
    let names: Vec<String> = set.iter().map(voter_name).collect();
    format!("{{{}}}", names.join(","))
}

/// For each of [`WEIGHTED_EXAMPLES`], every two-way split of its voters (the side
/// holding the lowest ID first), the votes of each side and who survives.
pub fn weighted_table() -> String {
    let mut t = String::from(
        "\n## Weights and the witness\n\n\
         Every node holds one vote unless `[[nodes]] weight` says otherwise, and a witness\n\
         (`vigil witness`, ID `W`) holds `[witness] weight` (default 1) while it is a member\n\
         of the view. The rule counts votes: a side survives iff it holds more than half of\n\
         the view's votes, or exactly half and the view's lowest node ID. Every two-way\n\
         split of each electorate below, from `vigil_fence::has_weighted_quorum`, which is\n\
         checked against every split of every weighting of views of up to 6 voters.\n",
    );
    for (name, voters) in WEIGHTED_EXAMPLES {
        let weights = Weights::with(voters.iter().map(|(id, w)| (NodeId(*id), *w)));
        let view: NodeSet = voters.iter().map(|(id, _)| NodeId(*id)).collect();
        let votes: Vec<String> = voters
            .iter()
            .map(|(id, w)| format!("{} = {w}", voter_name(NodeId(*id))))
            .collect();
        t.push_str(&format!(
            "\n### {name}\n\nVotes: {} (total {}).\n\n| side A | votes | side B | votes | survives |\n| --- | ---: | --- | ---: | --- |\n",
            votes.join(", "),
            weights.total(view)
        ));
        let leader = view.min().unwrap_or(NodeId(0));
        let ids: Vec<NodeId> = view.iter().collect();
        for mask in 0u64..(1 << ids.len()) {
            let a: NodeSet = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, id)| *id)
                .collect();
            if !a.contains(leader) {
                continue;
            }
            let b = view.difference(a);
            let winner = match (
                has_weighted_quorum(&weights, view, a),
                has_weighted_quorum(&weights, view, b),
            ) {
                (true, false) => "A",
                (false, true) => "B",
                (false, false) => "neither",
                (true, true) => "both (broken rule)",
            };
            t.push_str(&format!(
                "| {} | {} | {} | {} | {winner} |\n",
                side_name(a),
                weights.total(a),
                side_name(b),
                weights.total(b)
            ));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u8]) -> NodeSet {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn the_drills_of_the_spec() {
        // 3|2 of 5: the 3 survive.
        let five = set(&[0, 1, 2, 3, 4]);
        assert!(has_quorum(five, set(&[2, 3, 4])));
        assert!(!has_quorum(five, set(&[0, 1])));
        // 2|2 of 4: the half with the lowest ID.
        let four = set(&[0, 1, 2, 3]);
        assert!(has_quorum(four, set(&[0, 3])));
        assert!(!has_quorum(four, set(&[1, 2])));
        // 2|2|1 of 5: nobody.
        for side in [set(&[0, 1]), set(&[2, 3]), set(&[4])] {
            assert!(!has_quorum(five, side));
        }
        // 1|1 of 2: node 0.
        assert!(has_quorum(set(&[0, 1]), set(&[0])));
        assert!(!has_quorum(set(&[0, 1]), set(&[1])));
        // The leader is the previous view's, not node 0 of the cluster.
        assert!(has_quorum(set(&[3, 5]), set(&[3])));
        // Nodes outside the view do not count.
        assert!(!has_quorum(four, set(&[0, 7, 8, 9])));
    }

    /// Every view of up to 12 nodes (IDs 0..12) and every split of it.
    #[test]
    fn exhaustive_over_every_split_of_every_view_up_to_12_nodes() {
        let mut checked = 0u64;
        for view in 1u64..(1 << 12) {
            let prev = NodeSet::from_bits(view);
            let n = prev.len();
            let leader = prev.min().unwrap();
            // Enumerate every subset of the view.
            let mut side = view;
            loop {
                let s = NodeSet::from_bits(side);
                let rest = prev.difference(s);
                let q = has_quorum(prev, s);
                // The definition, written out again by counting.
                let expect = 2 * s.len() > n || (2 * s.len() == n && s.contains(leader));
                assert_eq!(q, expect, "view {prev:?} side {s:?}");
                // Two sides of one split never both survive, and exactly one does.
                assert!(
                    q != has_quorum(prev, rest),
                    "view {prev:?}: {s:?} vs {rest:?}"
                );
                // Monotone: adding a member of the view never loses quorum.
                for extra in rest.iter() {
                    let mut bigger = s;
                    bigger.insert(extra);
                    assert!(
                        !q || has_quorum(prev, bigger),
                        "view {prev:?} side {s:?} + {extra}"
                    );
                }
                checked += 1;
                if side == 0 {
                    break;
                }
                side = (side - 1) & view;
            }
        }
        assert_eq!(checked, 3u64.pow(12) - 1, "every (view, side) pair");
    }

    /// Every view of up to 6 voters (IDs 0..5 and the witness's 63), every weighting
    /// of them with 0 to 3 votes each, and every side: the rule as defined, one
    /// winner of every two-way split, and monotone. Together the last two are the
    /// intersection of any two quorums: were `A` and `B` disjoint quorums, `B` would
    /// lie in `A`'s complement, which would then win too.
    #[test]
    fn weighted_exhaustive_over_every_split_of_every_weighting_up_to_6_voters() {
        let ids = [0u8, 1, 2, 3, 4, 63];
        let mut checked = 0u64;
        for view_mask in 1u32..(1 << ids.len()) {
            let members: Vec<NodeId> = (0..ids.len())
                .filter(|i| view_mask & (1 << i) != 0)
                .map(|i| NodeId(ids[i]))
                .collect();
            let prev: NodeSet = members.iter().copied().collect();
            let leader = prev.min().unwrap();
            for code in 0u32..4u32.pow(members.len() as u32) {
                let weights = Weights::with(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, id)| (*id, ((code >> (2 * i)) & 3) as u8)),
                );
                let votes = |s: NodeSet| -> u32 {
                    members
                        .iter()
                        .enumerate()
                        .filter(|(_, id)| s.contains(**id))
                        .map(|(i, _)| (code >> (2 * i)) & 3)
                        .sum()
                };
                let total = votes(prev);
                let sides: Vec<NodeSet> = (0u32..(1 << members.len()))
                    .map(|m| {
                        members
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| m & (1 << i) != 0)
                            .map(|(_, id)| *id)
                            .collect()
                    })
                    .collect();
                for s in &sides {
                    let q = has_weighted_quorum(&weights, prev, *s);
                    let v = votes(*s);
                    let expect = 2 * v > total || (2 * v == total && s.contains(leader));
                    assert_eq!(q, expect, "view {prev:?} weights {weights:?} side {s:?}");
                    let rest = prev.difference(*s);
                    assert!(
                        q != has_weighted_quorum(&weights, prev, rest),
                        "one winner: {prev:?} {weights:?} {s:?}"
                    );
                    for extra in rest.iter() {
                        let mut bigger = *s;
                        bigger.insert(extra);
                        assert!(!q || has_weighted_quorum(&weights, prev, bigger));
                    }
                    checked += 1;
                }
                // Uniform weights agree with the unweighted rule.
                if (0..members.len()).all(|i| (code >> (2 * i)) & 3 == 1) {
                    for s in &sides {
                        assert_eq!(
                            has_weighted_quorum(&weights, prev, *s),
                            has_quorum(prev, *s)
                        );
                    }
                }
            }
        }
        // sum over views of size k of 4^k weightings x 2^k sides = 9^6 - 1.
        assert_eq!(checked, 9u64.pow(6) - 1);
    }

    #[test]
    fn the_two_node_witness_cases() {
        let w = Weights::UNIFORM;
        let view = NodeSet::from_bits(0b11).union(NodeSet::from_bits(1 << 63));
        let (n0, n1, wit) = (NodeId(0), NodeId(1), WITNESS_ID);
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<NodeSet>();
        // Node 0 crashes: node 1 and the witness hold 2 of 3.
        assert!(has_weighted_quorum(&w, view, set(&[n1, wit])));
        // Node 1 crashes: node 0 and the witness.
        assert!(has_weighted_quorum(&w, view, set(&[n0, wit])));
        // A partition with the witness on node 1's side: node 1 wins, node 0 does not.
        assert!(!has_weighted_quorum(&w, view, set(&[n0])));
        // The witness alone never wins, and it is never the tie-break.
        assert!(!has_weighted_quorum(&w, view, set(&[wit])));
        assert!(!has_weighted_quorum(&w, set(&[n1, wit]), set(&[wit])));
        assert!(has_weighted_quorum(&w, set(&[n1, wit]), set(&[n1])));
        // Once the witness is out of the view, 1|1 is the lowest-ID rule again.
        assert!(has_weighted_quorum(&w, set(&[n0, n1]), set(&[n0])));
        assert!(!has_weighted_quorum(&w, set(&[n0, n1]), set(&[n1])));
        // Node 1 preferred: it survives 1|1 without a witness.
        let pref = Weights::with([(n1, 2)]);
        assert!(has_weighted_quorum(&pref, set(&[n0, n1]), set(&[n1])));
        assert!(!has_weighted_quorum(&pref, set(&[n0, n1]), set(&[n0])));
    }

    #[test]
    fn weights_round_trip_through_serde() {
        let w = Weights::with([(NodeId(1), 2), (NodeId(63), 3), (NodeId(5), 1)]);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, "[[1,2],[63,3]]");
        let back: Weights = serde_json::from_str(&json).unwrap();
        assert_eq!(back, w);
        assert_eq!(
            serde_json::from_str::<Weights>("[]").unwrap(),
            Weights::UNIFORM
        );
        assert!(serde_json::from_str::<Weights>("[[64,2]]")
            .unwrap_err()
            .to_string()
            .contains("IDs are 0..=63"));
    }

    #[test]
    fn three_way_splits_have_at_most_one_winner() {
        // Disjoint quorums are impossible (monotone + complement test above); check
        // three-way splits of 6 nodes directly for the record.
        let view = NodeSet::from_bits(0b11_1111);
        for a in 0u64..64 {
            for b in 0u64..64 {
                if a & b != 0 {
                    continue;
                }
                let c = 0b11_1111 & !(a | b);
                let winners = [a, b, c]
                    .iter()
                    .filter(|s| has_quorum(view, NodeSet::from_bits(**s)))
                    .count();
                assert!(winners <= 1);
            }
        }
    }

    #[test]
    fn the_golden_table_in_the_docs_is_current() {
        let table = golden_table(12) + &weighted_table();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/quorum-table.md");
        if std::env::var_os("VIGIL_BLESS").is_some() {
            std::fs::write(&path, &table).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk, table,
            "docs/quorum-table.md is stale: run with VIGIL_BLESS=1"
        );
        // And the table agrees with the set-based rule on concrete sets.
        for n in 1..=12u8 {
            let prev = NodeSet::from_bits((1u64 << n) - 1);
            for k in 0..=n {
                let with_leader = NodeSet::from_bits((1u64 << k) - 1);
                let without = NodeSet::from_bits(((1u64 << k) - 1) << (n - k));
                match verdict_by_size(n as usize, k as usize) {
                    Verdict::Quorum => assert!(has_quorum(prev, without)),
                    Verdict::WithLeader => {
                        assert!(has_quorum(prev, with_leader));
                        assert!(k == 0 || k == n || !has_quorum(prev, without));
                    }
                    Verdict::NoQuorum => assert!(!has_quorum(prev, with_leader)),
                }
            }
        }
    }
}
