//! Reachability: the reports nodes exchange (`Reach`), the clique of nodes that see
//! each other, and catch-up for peers behind our view.

use super::peers::IdTable;
use super::{micros, Fence};
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_membership::{Member, Msg, NodeSet, PortMask};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Report {
    pub(super) up: NodeSet,
    pub(super) ports: PortMask,
    pub(super) highest: Generation,
    /// When the first report from this peer came.
    pub(super) first: Instant,
    /// Since when each node missing from `up` has been missing, for those that went
    /// missing after the first report (the others: since `first`).
    pub(super) missing: Vec<(NodeId, Instant)>,
}

impl Report {
    /// The nodes missing from `up` for less than `hold` at `now`: a claim that a
    /// node is unreachable counts only once it has held that long, and another
    /// change in the report (a third node going or coming) does not restart it.
    fn missing_for_less_than(&self, hold: std::time::Duration, now: Instant) -> NodeSet {
        if now < self.first + hold {
            return NodeSet::from_bits(u64::MAX).difference(self.up);
        }
        self.missing
            .iter()
            .filter(|(_, since)| now < *since + hold)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Reachability: peers' reports, ours, and catch-ups sent.
#[derive(Clone, Debug, Default)]
pub(super) struct ReachState {
    pub(super) reports: IdTable<Report>,
    /// When our report was last sent, and what it said.
    pub(super) last_reach: Option<(Instant, NodeSet, PortMask, Generation)>,
    /// When each peer behind our view was last sent it.
    pub(super) catchup: IdTable<Instant>,
}

impl Fence {
    pub(super) fn send_reach(&mut self, now: Instant) {
        let up = self.up_set();
        let installed = self.advertised_generation();
        let due = match self.reach.last_reach {
            None => true,
            Some((t, u, p, g)) => {
                u != up || p != self.ports || g != installed || now >= t + self.cfg.heartbeat * 4
            }
        };
        if !due {
            return;
        }
        self.reach.last_reach = Some((now, up, self.ports, installed));
        let msg = Msg::Reach {
            up,
            ports: self.ports,
            highest: self.durable.highest,
            installed,
        };
        let me = self.me;
        for p in up.iter().filter(|p| *p != me) {
            self.send(p, msg.clone());
        }
    }

    /// `Reach`: a peer's report of whom it hears; each node it no longer hears is
    /// timed from the report that first left it out.
    pub(super) fn on_reach(
        &mut self,
        now: Instant,
        from: NodeId,
        up: NodeSet,
        ports: PortMask,
        highest: Generation,
    ) {
        let (first, mut missing) = match self.reach.reports.remove(&from) {
            Some(r) => {
                let mut missing = r.missing;
                missing.retain(|(id, _)| !up.contains(*id));
                for id in r.up.difference(up).iter() {
                    missing.push((id, now));
                }
                (r.first, missing)
            }
            None => (now, Vec::new()),
        };
        missing.sort_unstable();
        self.reach.reports.insert(
            from,
            Report {
                up,
                ports,
                highest,
                first,
                missing,
            },
        );
    }

    /// Peers advertising a lower generation get our view: laggards catch up, and an
    /// excluded node that wakes up learns it was excluded.
    pub(super) fn catch_up(&mut self, now: Instant) {
        let Some(v) = self.installed.clone() else {
            return;
        };
        let settle_us = self
            .pending_settle()
            .map_or(0, |t| micros(t.saturating_since(now)));
        let lagging: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, i)| i.up && i.generation < v.generation)
            .map(|(id, _)| *id)
            .collect();
        for p in lagging {
            if self
                .reach
                .catchup
                .get(&p)
                .is_some_and(|t| now < *t + self.cfg.heartbeat)
            {
                continue;
            }
            self.reach.catchup.insert(p, now);
            self.send(
                p,
                Msg::Decided {
                    view: (*v).clone(),
                    settle_us,
                },
            );
        }
    }

    /// Greedy clique over `candidates` (`me` first when present, then in the order
    /// given): each one joins if it and every one chosen see each other.
    ///
    /// What a node reaches is what its report says. For the members of `keep` (the
    /// current view's members) a report's claim that a node is unreachable only
    /// counts once that node has been missing from its reports for
    /// `peer_inactive` (timed per node: a third node coming or going does not
    /// restart it); before that, or with no report, a member is assumed to reach
    /// what we reach. That optimism costs at most one more view change, while
    /// trusting a report sent as links were still coming up would evict a healthy
    /// member. Nodes outside `keep` (seeding, joiners) must show in their own report
    /// that they reach the others.
    pub(super) fn clique(&self, candidates: &[Member], keep: NodeSet) -> Vec<Member> {
        let up = self.up_set();
        let hold = self.cfg.peer_inactive;
        let now = self.now;
        let me = self.me;
        let reach_of = |x: NodeId| -> NodeSet {
            if x == me {
                return up;
            }
            let report = self
                .reach
                .reports
                .get(&x)
                .filter(|_| self.peers.get(&x).is_some_and(|i| i.up));
            match (report, keep.contains(x)) {
                (Some(r), true) => {
                    r.up.union(up.intersection(r.missing_for_less_than(hold, now)))
                }
                (None, true) => up,
                (Some(r), false) => r.up,
                (None, false) => [x, me].into_iter().collect(),
            }
        };
        // Once per candidate, not once per pair.
        let mut table = [NodeSet::EMPTY; 64];
        for c in candidates {
            table[c.id.index() % 64] = reach_of(c.id);
        }
        let reach = |x: NodeId| table[x.index() % 64];
        // Us first, then the others in the order given (members before joiners).
        let ordered = candidates
            .iter()
            .filter(|m| m.id == self.me)
            .chain(candidates.iter().filter(|m| m.id != self.me))
            .copied();
        let mut chosen: Vec<Member> = Vec::with_capacity(candidates.len());
        // The chosen nodes (the witness aside) and the nodes every one of them
        // reaches: a candidate joins if it reaches all of the first and is in the
        // second, which is the pairwise check against every node chosen before it,
        // one set operation per candidate instead of one per pair.
        let mut chosen_nodes = NodeSet::EMPTY;
        let mut reached_by_all = NodeSet::from_bits(u64::MAX);
        for c in ordered {
            if !up.contains(c.id) {
                continue;
            }
            // The witness needs to reach us (the racer) only.
            if self.is_witness_id(c.id) {
                chosen.push(c);
                continue;
            }
            let r = reach(c.id);
            if chosen_nodes.is_subset(r) && reached_by_all.contains(c.id) {
                chosen.push(c);
                chosen_nodes.insert(c.id);
                reached_by_all = reached_by_all.intersection(r);
            }
        }
        chosen.sort();
        chosen
    }

    pub(super) fn ports_of(&self, id: NodeId, fallback: PortMask) -> PortMask {
        if id == self.me {
            self.ports
        } else {
            self.reach.reports.get(&id).map_or(fallback, |r| r.ports)
        }
    }
}
