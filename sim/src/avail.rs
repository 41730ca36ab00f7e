//! The availability figure: how much of what the connectivity allows holds
//! authority. A report, never a violation.
//!
//! The connectivity is a graph over the nodes that could serve (running, not
//! fenced, not gone, not frozen): an edge where two nodes can exchange frames both
//! ways on some link. A clique of it *holds quorum* when it holds quorum of the
//! last decided view (`vigil_fence::has_quorum`, the rule the race decides by).
//! The best any protocol could keep is the largest such clique; a drill's figure
//! is the number of nodes holding authority against it. A self-fence is *needless*
//! when a quorum-holding clique containing the node existed at that instant, and
//! *needless beyond choice* when every largest one contained it (on a cut between
//! two nodes one of them has to go: its fence is needless, not beyond choice).

use vigil_fence::has_quorum;
use vigil_llt::types::NodeId;
use vigil_membership::NodeSet;

/// Bound on the steps of the clique search (a graph with more maximal cliques
/// than this is not judged: the search gives up and says so).
const MAX_STEPS: u32 = 1 << 16;

/// A connectivity: which nodes could serve, and who hears whom both ways.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connectivity {
    /// Bit i: node i could serve.
    pub live: u64,
    /// Bit j of `adj[i]`: i and j can exchange frames.
    pub adj: Vec<u64>,
}

impl Connectivity {
    /// `n` nodes, all live, no edge.
    pub fn new(n: usize) -> Connectivity {
        Connectivity {
            live: if n >= 64 { u64::MAX } else { (1u64 << n) - 1 },
            adj: vec![0; n],
        }
    }

    /// Connect `a` and `b` (both ways).
    pub fn connect(&mut self, a: usize, b: usize) {
        if a != b && a < self.adj.len() && b < self.adj.len() {
            self.adj[a] |= 1 << b;
            self.adj[b] |= 1 << a;
        }
    }

    /// Every maximal clique of live nodes, as bit sets; `None` past the bound.
    pub fn maximal_cliques(&self) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        let mut steps = 0u32;
        let p = self.live;
        self.bron_kerbosch(0, p, 0, &mut out, &mut steps)
            .then_some(out)
    }

    /// Bron–Kerbosch with a pivot: `r` the clique so far, `p` the candidates, `x`
    /// the excluded. `false` when the step bound was reached.
    fn bron_kerbosch(&self, r: u64, p: u64, x: u64, out: &mut Vec<u64>, steps: &mut u32) -> bool {
        *steps += 1;
        if *steps > MAX_STEPS {
            return false;
        }
        if p == 0 && x == 0 {
            out.push(r);
            return true;
        }
        let neighbours = |v: u32| self.adj.get(v as usize).copied().unwrap_or(0) & self.live;
        // The pivot with the most candidates among its neighbours.
        let pivot = bits(p | x)
            .max_by_key(|u| (p & neighbours(*u)).count_ones())
            .unwrap_or(0);
        let (mut p, mut x) = (p, x);
        for v in bits(p & !neighbours(pivot)) {
            let nv = neighbours(v);
            if !self.bron_kerbosch(r | 1 << v, p & nv, x & nv, out, steps) {
                return false;
            }
            p &= !(1 << v);
            x |= 1 << v;
        }
        true
    }

    /// The size of the largest clique that holds quorum of `prev`: `Some(0)` when
    /// none does, `None` when the search gave up.
    pub fn largest_quorum_clique(&self, prev: NodeSet) -> Option<usize> {
        let cliques = self.maximal_cliques()?;
        // A superset of a quorum holds quorum too: the maximal cliques suffice.
        Some(
            cliques
                .into_iter()
                .filter(|c| has_quorum(prev, NodeSet::from_bits(*c)))
                .map(|c| c.count_ones() as usize)
                .max()
                .unwrap_or(0),
        )
    }

    /// Whether a clique that holds quorum of `prev` contains `node`, and whether
    /// every largest such clique does (every best outcome keeps the node: its
    /// fence is needless even where a choice between nodes has to be made, as on
    /// a cut between two). `None`: the search gave up.
    pub fn quorum_cliques_with(&self, prev: NodeSet, node: usize) -> Option<(bool, bool)> {
        let cliques: Vec<u64> = self
            .maximal_cliques()?
            .into_iter()
            .filter(|c| has_quorum(prev, NodeSet::from_bits(*c)))
            .collect();
        let best = cliques.iter().map(|c| c.count_ones()).max().unwrap_or(0);
        let has = |c: &u64| c & (1 << node) != 0;
        let some = cliques.iter().any(has);
        let every = some && cliques.iter().filter(|c| c.count_ones() == best).all(has);
        Some((some, every))
    }
}

fn bits(mut set: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        if set == 0 {
            return None;
        }
        let b = set.trailing_zeros();
        set &= set - 1;
        Some(b)
    })
}

/// One drill's figure: how many nodes held authority at the end of the fault
/// phase, against the largest quorum-holding clique then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    pub holders: usize,
    /// 0 when no clique held quorum (nothing could serve).
    pub best: usize,
}

impl Availability {
    /// holders / best, `None` when nothing could serve.
    pub fn ratio(self) -> Option<f64> {
        (self.best > 0).then(|| self.holders as f64 / self.best as f64)
    }
}

/// The node set of ids.
pub fn set_of(ids: impl IntoIterator<Item = usize>) -> NodeSet {
    ids.into_iter().map(|i| NodeId(i as u8)).collect()
}
