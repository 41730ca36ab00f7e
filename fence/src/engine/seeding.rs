//! Before the first view and around it: the unseeded step (seed or ask to join), joins
//! and leaves, and `Excluded` for an incarnation that can never join again.

use super::racer::Quorum;
use super::Fence;
use crate::types::{FenceEvent, FenceReason, KnownView, Sabotage};
use vigil_llt::types::{Generation, Incarnation, Instant, NodeId};
use vigil_membership::{Member, Msg, NodeSet, PortMask, View};

/// Seeding and joining, before the first view.
#[derive(Clone, Debug, Default)]
pub(super) struct SeedState {
    /// A failed seed attempt may be tried again then.
    pub(super) seed_retry: Option<Instant>,
    /// `gabconfig -x` was given.
    pub(super) manual_seed: bool,
    /// The last `SeedWaiting` said, so it is said once per change.
    pub(super) seed_waiting: Option<(NodeSet, Vec<KnownView>)>,
    /// The last seed attempt was refused by a member of its group.
    pub(super) seed_refused: bool,
    /// When `Join` was last sent.
    pub(super) last_join: Option<Instant>,
}

impl Fence {
    /// Whether a seeded peer `id` is a running cluster this node may ask to join:
    /// any node, but not the witness (a seeded witness alone is no cluster; the
    /// witness itself asks every seeded node).
    pub(super) fn may_join(&self, id: NodeId) -> bool {
        !self.is_witness_id(id) || self.is_witness()
    }

    pub(super) fn unseeded_step(&mut self, now: Instant) {
        // Cleared before asking to join too: a retry due while a running cluster is
        // reachable would otherwise stay due, and the node ask to run at once for
        // ever (a seed race lost, then a seeded peer up before the retry).
        if self.seeding.seed_retry.is_some_and(|t| now >= t) {
            self.seeding.seed_retry = None;
        }
        let up = self.up_set();
        let seeded: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, i)| i.up && i.generation.0 > 0 && self.may_join(**id))
            .map(|(id, _)| *id)
            .collect();
        if !seeded.is_empty() {
            // A running cluster is reachable: ask to join it, never seed apart.
            if let Some(r) = &self.racing.race {
                if r.slot.0 == 0 {
                    self.racing.race = None;
                }
            }
            if self
                .seeding
                .last_join
                .is_none_or(|t| now >= t + self.cfg.heartbeat)
            {
                self.seeding.last_join = Some(now);
                for p in seeded {
                    self.send(
                        p,
                        Msg::Join {
                            incarnation: self.incarnation,
                            ports: self.ports,
                        },
                    );
                }
            }
            return;
        }
        if self.racing.race.is_some() || self.seeding.seed_retry.is_some() || self.is_witness() {
            return;
        }
        let candidates: Vec<Member> = self
            .nodes_of(up)
            .iter()
            .filter(|p| *p == self.me || self.peers.get(p).is_some_and(|i| i.generation.0 == 0))
            .filter_map(|p| {
                let incarnation = if p == self.me {
                    Some(self.incarnation)
                } else {
                    self.peers.get(&p).and_then(|i| i.incarnation)
                };
                incarnation.map(|incarnation| Member {
                    id: p,
                    incarnation,
                    ports: self.ports_of(p, 0),
                })
            })
            .collect();
        // The group is drawn from the candidates: too few of them, and no clique of
        // theirs can seed (the clique below is the step's costliest part while a
        // large cluster comes up).
        if !self.seeding.manual_seed && candidates.len() < self.cfg.seed {
            return;
        }
        let group = self.clique(&candidates, NodeSet::EMPTY);
        let ids: NodeSet = group.iter().map(|m| m.id).collect();
        if ids.min() != Some(self.me) {
            return;
        }
        if !self.seeding.manual_seed && group.len() < self.cfg.seed {
            return;
        }
        let overrides = self.durable.seed_overrides(&self.cfg.weights, ids);
        let quorum =
            if self.cfg.sabotage == Some(Sabotage::SeedWithoutViews) && !self.seeding.manual_seed {
                // The rule before views were kept: `seed` accepts, no views checked.
                Quorum::Seed(self.cfg.seed)
            } else {
                if !self.seeding.manual_seed && !overrides.is_empty() {
                    // A view this node knows may still run with a quorum elsewhere.
                    let waiting = Some((ids, overrides.clone()));
                    if self.seeding.seed_waiting != waiting {
                        self.seeding.seed_waiting = waiting;
                        self.event(FenceEvent::SeedWaiting {
                            group: ids,
                            needs: overrides,
                        });
                    }
                    return;
                }
                // Every member of the group accepts a seed, each after checking that
                // the group holds a quorum of every view it knows: a view unknown to
                // the seeder but known to a member is checked too.
                Quorum::All(ids)
            };
        let highest = group
            .iter()
            .filter_map(|m| {
                if m.id == self.me {
                    Some(self.durable.highest)
                } else {
                    self.reach.reports.get(&m.id).map(|r| r.highest)
                }
            })
            .max()
            .unwrap_or(self.durable.highest);
        let Some(generation) = highest.next() else {
            // At the top of the range: refuse to seed rather than wrap.
            return;
        };
        let value = View::new(generation, group, None);
        if self.seeding.manual_seed {
            self.event(FenceEvent::ManualSeed {
                members: ids,
                overrides,
            });
        }
        self.start_race(now, Generation(0), value, ids, quorum);
    }

    /// While leaving, tell the members every heartbeat until a view without us is
    /// decided (a single message may be lost).
    pub(super) fn send_leave(&mut self, now: Instant) {
        if !self.leave_requested || !self.is_member() {
            return;
        }
        if self
            .last_leave
            .is_some_and(|t| now < t + self.cfg.heartbeat)
        {
            return;
        }
        self.last_leave = Some(now);
        for p in self.up_members() {
            self.send(p, Msg::Leave);
        }
    }

    /// `Join`: remember the request, or tell an excluded incarnation so.
    pub(super) fn on_join(
        &mut self,
        now: Instant,
        from: NodeId,
        incarnation: Incarnation,
        ports: PortMask,
    ) {
        if let Some(v) = &self.installed {
            if self.excluded.contains(&(from, incarnation)) {
                // It was made a member of a view it never learned, and
                // dropped since: this incarnation can never join again.
                let generation = v.generation;
                self.send(
                    from,
                    Msg::Excluded {
                        incarnation,
                        generation,
                    },
                );
            } else {
                self.joins.insert(from, (incarnation, ports, now));
            }
        }
    }

    /// `Excluded`: our incarnation was dropped from a view we never learned.
    pub(super) fn on_excluded(&mut self, incarnation: Incarnation, generation: Generation) {
        if incarnation == self.incarnation && self.fenced.is_none() && !self.left {
            self.raise_highest(generation);
            self.self_fence(FenceReason::Excluded { generation });
        }
    }

    /// `Leave`: a member asks to be left out of the next view.
    pub(super) fn on_leave(&mut self, from: NodeId) {
        if self
            .installed
            .as_ref()
            .is_some_and(|v| v.member(from).is_some())
        {
            self.leaving.insert(from);
        }
    }
}
