//! The checker: S1–S4 of the spec, S5 (one primary, tokens that grow with each
//! change of primary), S6 (no phantom members) and S7 (no phantom peers) after
//! every event
//! (L1–L3 are checked by the runner over bounded time, see `run.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use vigil_llt::types::{Generation, Incarnation, Instant, NodeId};
use vigil_membership::{NodeSet, View};

/// A broken property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// `S1`..`S7`, `L1`..`L3`, or `livelock`.
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
    lease: Duration,
    drift_ppm: u32,
    /// Every decided view: member set and when it was first installed (S2, S4).
    decided: BTreeMap<Generation, (NodeSet, Instant)>,
    /// Per node: the last generation it installed, across restarts (S3).
    last_installed: Vec<Option<Generation>>,
    /// The slot the witness (node ID 63) runs in, when there is one.
    witness_slot: Option<usize>,
    /// Every process that ran: (node, incarnation) to when it started and, if it
    /// did, when it ended (a crash, a restart, a rejoin) (S6).
    processes: BTreeMap<(usize, Incarnation), (Instant, Option<Instant>)>,
    /// How long after a member's process ended a view may still be decided with it
    /// (S6): detection, a race, a settle window, and a stall excused at each.
    member_grace: Duration,
    /// The primary of every decided view (S2: part of the decided value).
    primaries: BTreeMap<Generation, NodeId>,
    /// The last process seen holding the primary role, and the highest token it
    /// held (S5).
    last_primary: Option<((usize, Incarnation), Generation)>,
    violation: Option<Violation>,
}

/// A node that holds authority now, by its own clock: what the checker sees of it
/// (from `Node::current_token`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub node: usize,
    /// The holding process.
    pub incarnation: Incarnation,
    /// Whether it is that view's primary.
    pub is_primary: bool,
    /// Its fencing token: its client view's generation.
    pub token: Generation,
}

impl Checker {
    pub fn new(n: u8, lease: Duration, drift_ppm: u32) -> Checker {
        Checker {
            lease,
            drift_ppm,
            decided: BTreeMap::new(),
            last_installed: vec![None; n as usize],
            processes: BTreeMap::new(),
            member_grace: Duration::MAX,
            witness_slot: None,
            primaries: BTreeMap::new(),
            last_primary: None,
            violation: None,
        }
    }

    /// Check S6 with this grace: a view decided more than `grace` after a member's
    /// process ended is a violation (without a call, only members that never ran
    /// are).
    pub fn with_member_grace(mut self, grace: Duration) -> Checker {
        self.member_grace = grace;
        self
    }

    /// The witness (node ID 63 in views) runs in slot `slot`.
    pub fn with_witness_slot(mut self, slot: usize) -> Checker {
        self.witness_slot = Some(slot);
        self
    }

    /// Node `node` started a process as `incarnation`.
    pub fn process_started(&mut self, now: Instant, node: usize, incarnation: Incarnation) {
        self.processes.insert((node, incarnation), (now, None));
    }

    /// Node `node`'s process `incarnation` ended (crashed, restarted or rejoined as
    /// another incarnation).
    pub fn process_ended(&mut self, now: Instant, node: usize, incarnation: Incarnation) {
        if let Some((_, end)) = self.processes.get_mut(&(node, incarnation)) {
            end.get_or_insert(now);
        }
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The member set of the newest view decided so far.
    pub fn last_decided(&self) -> Option<NodeSet> {
        self.decided.values().next_back().map(|(set, _)| *set)
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
        let primary = self.primaries.get(&view.generation).copied();
        match self.decided.get(&view.generation) {
            Some((other, _)) if *other != set => {
                let detail = format!(
                    "generation {} installed as {set:?} and as {other:?}",
                    view.generation.0
                );
                self.fail("S2", now, vec![node], detail);
            }
            Some(_) if primary != Some(view.primary) => {
                let detail = format!(
                    "generation {} installed with primary n{} and with n{}",
                    view.generation.0,
                    view.primary,
                    primary.map_or(-1, |p| i32::from(p.0))
                );
                self.fail("S2", now, vec![node], detail);
            }
            Some(_) => {}
            None => {
                self.decided.insert(view.generation, (set, now));
                self.primaries.insert(view.generation, view.primary);
                self.no_phantoms(now, node, view);
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

    /// S1, S4 and S5 over the nodes that hold authority now.
    pub fn check(&mut self, now: Instant, holders: &[Holder]) {
        self.one_primary(now, holders);
        // S1: one view, or one line of views: the older holder is a member of every
        // view decided since its own. (A holder's token is its client view's
        // generation.) Holders on one token (the usual case) have no pair to check.
        let one_token = holders.windows(2).all(|w| w[0].token == w[1].token);
        for hi in holders.iter().filter(|_| !one_token) {
            for hj in holders {
                let (i, j) = (hi.node, hj.node);
                let (gi, gj) = (hi.token, hj.token);
                if gi >= gj {
                    continue;
                }
                let me = NodeId(i as u8);
                let dropped = self
                    .decided
                    .range(gi..=gj)
                    .find(|(_, (set, _))| !set.contains(me))
                    .map(|(g, _)| *g);
                if let Some(g) = dropped {
                    let detail = format!(
                        "n{i} holds authority on generation {} while n{j} holds {} and generation {} excludes n{i}",
                        gi.0, gj.0, g.0
                    );
                    self.fail("S1", now, vec![i, j], detail);
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
            for h in holders {
                let i = h.node;
                if !set.contains(NodeId(i as u8)) && now > bound {
                    let detail = format!(
                        "n{i} holds authority on generation {} but generation {} excludes it",
                        h.token.0, g.0
                    );
                    self.fail("S4", now, vec![i], detail);
                }
            }
        }
    }

    /// S5: at most one process holds authority as primary at any instant, and when
    /// the primary changes (to another node or another incarnation), the new one's
    /// token is above every token the previous one held. A primary's token never
    /// goes back either.
    fn one_primary(&mut self, now: Instant, holders: &[Holder]) {
        let primaries: Vec<&Holder> = holders.iter().filter(|h| h.is_primary).collect();
        if let [a, b, ..] = primaries[..] {
            let detail = format!(
                "n{} (token {}) and n{} (token {}) both hold authority as primary",
                a.node, a.token.0, b.node, b.token.0
            );
            self.fail("S5", now, vec![a.node, b.node], detail);
            return;
        }
        let Some(p) = primaries.first() else {
            return;
        };
        let who = (p.node, p.incarnation);
        match self.last_primary {
            Some((last, top)) if last != who && p.token <= top => {
                let detail = format!(
                    "n{} is primary with token {} after n{} (incarnation {:#x}) held token {}",
                    p.node, p.token.0, last.0, last.1 .0, top.0
                );
                self.fail("S5", now, vec![last.0, p.node], detail);
            }
            Some((last, top)) if last == who && p.token < top => {
                let detail = format!(
                    "n{} is primary with token {} after holding token {}",
                    p.node, p.token.0, top.0
                );
                self.fail("S5", now, vec![p.node], detail);
            }
            _ => {}
        }
        let top = match self.last_primary {
            Some((last, top)) if last == who => top.max(p.token),
            _ => p.token,
        };
        self.last_primary = Some((who, top));
    }

    /// S6: every member of a newly decided view is a process that ran, in the
    /// view's incarnation, and had not ended longer than the grace ago: no view is
    /// decided with a member that only a recording speaks for.
    fn no_phantoms(&mut self, now: Instant, node: usize, view: &View) {
        for m in &view.members {
            let i = match self.witness_slot {
                Some(w) if m.id == vigil_fence::WITNESS_ID => w,
                _ => m.id.index(),
            };
            let detail = match self.processes.get(&(i, m.incarnation)) {
                None => format!(
                    "generation {} has n{i} in incarnation {:#x}, which never ran",
                    view.generation.0, m.incarnation.0
                ),
                Some((_, Some(end))) if now.saturating_since(*end) > self.member_grace => {
                    format!(
                        "generation {} has n{i} in incarnation {:#x}, which ended {} ms before",
                        view.generation.0,
                        m.incarnation.0,
                        now.saturating_since(*end).as_millis()
                    )
                }
                Some(_) => continue,
            };
            self.fail("S6", now, vec![node, i], detail);
        }
    }

    /// S7, at node `node`'s llt declaring peer `peer` up in `incarnation`: `taught`
    /// says whether that process was ever handed a frame of this incarnation of
    /// `node` (by the network or by the attacker). A peer counts only frames that
    /// echo the receiver's current incarnation, and a process can only echo an
    /// incarnation it has heard: a recording made before this incarnation started,
    /// replayed, does not echo it. A genuine frame delivered late does, and is not
    /// a violation.
    pub fn peer_up(
        &mut self,
        now: Instant,
        node: usize,
        peer: usize,
        incarnation: Incarnation,
        taught: bool,
    ) {
        if !taught {
            let detail = format!(
                "n{node} declares n{peer} up in incarnation {:#x}, which never heard from this incarnation of n{node}",
                incarnation.0
            );
            self.fail("S7", now, vec![node, peer], detail);
        }
    }

    /// The latest decided view, if any.
    pub fn latest(&self) -> Option<(Generation, NodeSet)> {
        self.decided.iter().next_back().map(|(g, (s, _))| (*g, *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_membership::Member;

    fn view(g: u64, primary: u8) -> View {
        let members = (0..3)
            .map(|i| Member {
                id: NodeId(i),
                incarnation: Incarnation(1),
                ports: 0,
            })
            .collect();
        let mut v = View::new(Generation(g), members, None);
        v.primary = NodeId(primary);
        v
    }

    fn holder(node: usize, inc: u64, g: u64, primary: u8) -> Holder {
        Holder {
            node,
            incarnation: Incarnation(inc),
            is_primary: node == usize::from(primary),
            token: Generation(g),
        }
    }

    fn checker() -> Checker {
        Checker::new(3, Duration::from_millis(70), 1000)
    }

    #[test]
    fn s5_two_primaries_at_once() {
        let mut c = checker();
        c.check(Instant::ZERO, &[holder(1, 1, 2, 1), holder(0, 1, 3, 0)]);
        assert_eq!(c.violation().map(|v| v.property), Some("S5"));
    }

    #[test]
    fn s5_a_new_primary_needs_a_higher_token() {
        let t = |ms: u64| Instant::from_nanos(ms * 1_000_000);
        // 1 is primary on 2 and 3 (sticky), then 0 takes over on 4: fine.
        let mut c = checker();
        c.check(t(1), &[holder(1, 1, 2, 1), holder(2, 1, 2, 1)]);
        c.check(t(2), &[holder(1, 1, 3, 1)]);
        c.check(t(3), &[]);
        c.check(t(4), &[holder(0, 1, 4, 0), holder(1, 1, 4, 0)]);
        assert_eq!(c.violation(), None);
        // A new primary with a token the previous one already held: caught.
        let mut c = checker();
        c.check(t(1), &[holder(1, 1, 3, 1)]);
        c.check(t(2), &[holder(0, 1, 3, 0)]);
        assert_eq!(c.violation().map(|v| v.property), Some("S5"));
        // The same node restarted is another primary: its token must grow too.
        let mut c = checker();
        c.check(t(1), &[holder(1, 1, 3, 1)]);
        c.check(t(2), &[holder(1, 2, 3, 1)]);
        assert_eq!(c.violation().map(|v| v.property), Some("S5"));
        // A primary whose token goes back: caught.
        let mut c = checker();
        c.check(t(1), &[holder(1, 1, 4, 1)]);
        c.check(t(2), &[holder(1, 1, 3, 1)]);
        assert_eq!(c.violation().map(|v| v.property), Some("S5"));
    }

    #[test]
    fn s2_compares_the_decided_primary() {
        let mut c = checker();
        for i in 0..3 {
            c.process_started(Instant::ZERO, i, Incarnation(1));
        }
        c.installed(Instant::ZERO, 0, &view(2, 1));
        c.installed(Instant::ZERO, 1, &view(2, 1));
        assert_eq!(c.violation(), None);
        c.installed(Instant::ZERO, 2, &view(2, 0));
        assert_eq!(c.violation().map(|v| v.property), Some("S2"));
    }
}
