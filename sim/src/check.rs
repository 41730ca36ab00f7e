//! The checker: S1–S4 of the spec after every event (L1–L3 are checked by the
//! runner over bounded time, see `run.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_membership::{NodeSet, View};

/// A broken property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `S1`..`S4`, `L1`..`L3`, or `livelock`.
    pub property: &'static str,
    pub at: Instant,
    pub nodes: Vec<usize>,
    pub detail: String,
    /// The last trace lines before it (filled in by the runner).
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} violated at {:.3} ms, nodes {:?}: {}",
            self.property,
            self.at.as_nanos() as f64 / 1e6,
            self.nodes,
            self.detail
        )?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// Checks the safety properties over every view installed and every authority holder.
#[derive(Clone, Debug)]
pub struct Checker {
    n: u8,
    lease: Duration,
    drift_ppm: u32,
    /// Every decided view: member set and when it was first installed (S2, S4).
    decided: BTreeMap<Generation, (NodeSet, Instant)>,
    /// Per node: the last generation it installed, across restarts (S3).
    last_installed: Vec<Option<Generation>>,
    violation: Option<Violation>,
}

impl Checker {
    pub fn new(n: u8, lease: Duration, drift_ppm: u32) -> Checker {
        Checker {
            n,
            lease,
            drift_ppm,
            decided: BTreeMap::new(),
            last_installed: vec![None; n as usize],
            violation: None,
        }
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    fn fail(&mut self, property: &'static str, at: Instant, nodes: Vec<usize>, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                property,
                at,
                nodes,
                detail,
                trace: Vec::new(),
            });
        }
    }

    pub fn report_livelock(&mut self, at: Instant) {
        self.fail(
            "livelock",
            at,
            Vec::new(),
            "a node keeps asking to run at the same instant".into(),
        );
    }

    /// Record a property that failed outside the per-event checks (L1–L3, expectations).
    pub fn fail_property(
        &mut self,
        property: &'static str,
        at: Instant,
        nodes: Vec<usize>,
        detail: String,
    ) {
        self.fail(property, at, nodes, detail);
    }

    /// A node installed a view (S2, S3).
    pub fn installed(&mut self, now: Instant, node: usize, view: &View) {
        let set = view.node_set();
        match self.decided.get(&view.generation) {
            Some((other, _)) if *other != set => {
                let detail = format!(
                    "generation {} installed as {set:?} and as {other:?}",
                    view.generation.0
                );
                self.fail("S2", now, vec![node], detail);
            }
            Some(_) => {}
            None => {
                self.decided.insert(view.generation, (set, now));
            }
        }
        if let Some(last) = self.last_installed[node] {
            if view.generation <= last {
                let detail = format!(
                    "installed generation {} after {}",
                    view.generation.0, last.0
                );
                self.fail("S3", now, vec![node], detail);
            }
        }
        self.last_installed[node] = Some(view.generation);
    }

    /// S1 and S4 over the nodes that hold authority now, with their client views.
    pub fn check(&mut self, now: Instant, holders: &[(usize, View)]) {
        let _ = self.n;
        // S1: one view, or one line of views: the older holder is a member of every
        // view decided since its own.
        for (i, vi) in holders {
            for (j, vj) in holders {
                if vi.generation >= vj.generation {
                    continue;
                }
                let me = NodeId(*i as u8);
                let dropped = self
                    .decided
                    .range(vi.generation..=vj.generation)
                    .find(|(_, (set, _))| !set.contains(me))
                    .map(|(g, _)| *g);
                if let Some(g) = dropped {
                    let detail = format!(
                        "n{i} holds authority on generation {} while n{j} holds {} and generation {} excludes n{i}",
                        vi.generation.0, vj.generation.0, g.0
                    );
                    self.fail("S1", now, vec![*i, *j], detail);
                }
            }
        }
        // S4: outside the latest decided view, no authority once a lease (with drift)
        // has passed since the decision.
        if let Some((g, (set, at))) = self.decided.iter().next_back() {
            let bound = *at
                + self.lease
                + self.lease * self.drift_ppm / 1_000_000
                + Duration::from_millis(1);
            let (g, set) = (*g, *set);
            for (i, v) in holders {
                if !set.contains(NodeId(*i as u8)) && now > bound {
                    let detail = format!(
                        "n{i} holds authority on generation {} but generation {} excludes it",
                        v.generation.0, g.0
                    );
                    self.fail("S4", now, vec![*i], detail);
                }
            }
        }
    }

    /// The latest decided view, if any.
    pub fn latest(&self) -> Option<(Generation, NodeSet)> {
        self.decided.iter().next_back().map(|(g, (s, _))| (*g, *s))
    }
}
