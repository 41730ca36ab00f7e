//! The acceptor: every member (and every unseeded node, for seeds) answers
//! `Prepare` with a `Promise` or a `Nack`, and `Accept` with `Accepted` once the value
//! is persisted. A seed is accepted only by a node whose kept views the seeding group
//! holds a quorum of (`docs/membership.md`, "Seeding after a view").

use super::{micros, Fence};
use crate::types::{KnownView, RaceRecord, RaceVerdict, Sabotage};
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_membership::{Ballot, Msg, NodeSet, View};

/// What this node promised and accepted in the current slot (reset when a view is
/// installed).
#[derive(Clone, Debug)]
pub(super) struct AcceptorState {
    pub(super) promised: Ballot,
    pub(super) accepted: Option<(Ballot, View)>,
    /// When we accepted a value for a newer generation than the installed one:
    /// from then on we confirm nobody, and our own confirmation stays at that time,
    /// until the view is installed.
    pub(super) accepted_at: Option<Instant>,
}

impl Default for AcceptorState {
    fn default() -> AcceptorState {
        AcceptorState {
            promised: Ballot::ZERO,
            accepted: None,
            accepted_at: None,
        }
    }
}

impl Fence {
    /// Whether `group` may seed: it holds a quorum of every view this node knows.
    pub(super) fn seed_allowed(&self, group: NodeSet) -> bool {
        self.durable
            .seed_overrides(&self.cfg.weights, group)
            .is_empty()
    }

    /// [`Sabotage::WitnessVotesTwice`], on the witness.
    fn witness_votes_twice(&self) -> bool {
        self.is_witness() && self.cfg.sabotage == Some(Sabotage::WitnessVotesTwice)
    }

    pub(super) fn current_slot(&self) -> Generation {
        self.advertised_generation()
    }

    pub(super) fn eligible(&self, slot: Generation) -> bool {
        if slot != self.current_slot() {
            return false;
        }
        if slot.0 == 0 {
            self.installed.is_none()
        } else {
            self.is_member()
        }
    }

    /// Refuse `from` in `slot`: our promise and the highest generation we have seen.
    pub(super) fn nack(&mut self, from: NodeId, slot: Generation) {
        let msg = Msg::Nack {
            slot,
            promised: self.acceptor.promised,
            highest: self.durable.highest,
        };
        self.send(from, msg);
    }

    /// `Prepare`: promise (with what we accepted) unless promised higher; a racer
    /// behind our view learns it instead.
    pub(super) fn on_prepare(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Generation,
        ballot: Ballot,
    ) {
        if let Some(v) = self.installed.clone() {
            if slot < v.generation {
                let settle_us = self
                    .pending_settle()
                    .map_or(0, |t| micros(t.saturating_since(now)));
                self.send(
                    from,
                    Msg::Decided {
                        view: (*v).clone(),
                        settle_us,
                    },
                );
                return;
            }
        }
        if !self.eligible(slot) {
            return;
        }
        if self.witness_votes_twice() {
            self.send(
                from,
                Msg::Promise {
                    slot,
                    ballot,
                    accepted: None,
                },
            );
            return;
        }
        if ballot >= self.acceptor.promised {
            self.promise(ballot);
            self.note_race(now, slot, ballot, None);
            let accepted = self.acceptor.accepted.clone();
            self.send(
                from,
                Msg::Promise {
                    slot,
                    ballot,
                    accepted,
                },
            );
        } else {
            self.nack(from, slot);
        }
    }

    /// `Accept`: persist the value, then answer `Accepted` with when we last heard
    /// every member the value leaves out.
    pub(super) fn on_accept(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Generation,
        ballot: Ballot,
        value: View,
        manual: bool,
    ) {
        if !self.eligible(slot) {
            return;
        }
        if value
            .member(self.me)
            .is_some_and(|m| m.incarnation != self.incarnation)
        {
            // The value names an earlier process of this node: it must not be
            // decided with this process's accept.
            self.nack(from, slot);
            return;
        }
        // A seed is accepted only by a node that sees it holds a quorum of
        // every view this node knows (which may still run elsewhere), or
        // when an operator seeds by hand.
        if slot.0 == 0
            && !manual
            && self.cfg.sabotage != Some(Sabotage::SeedWithoutViews)
            && !self.seed_allowed(value.node_set())
        {
            self.nack(from, slot);
            return;
        }
        let fresh_seed = slot.0 > 0
            || value.generation > self.durable.highest
            || self
                .acceptor
                .accepted
                .as_ref()
                .is_some_and(|(_, a)| a.generation == value.generation);
        let twice = self.witness_votes_twice();
        if (ballot < self.acceptor.promised && !twice) || !fresh_seed {
            self.nack(from, slot);
            return;
        }
        if !twice {
            self.promise(ballot);
        }
        let newer = self
            .durable
            .installed
            .is_none_or(|i| value.generation > i.generation);
        let known = KnownView::of(&value);
        self.keep(|d| {
            d.highest = d.highest.max(value.generation);
            if newer {
                d.accepted = Some(known);
            }
        });
        self.note_race(now, slot, ballot, Some(value.node_set()));
        let heard_ago_us: Vec<(NodeId, u64)> = match &self.installed {
            Some(v) => {
                let mut heard: Vec<(NodeId, u64)> = v
                    .members
                    .iter()
                    .filter(|m| value.member(m.id).is_none() && m.id != self.me)
                    .map(|m| {
                        let ago = self
                            .peers
                            .get(&m.id)
                            .and_then(|i| i.last_heard)
                            .map_or(u64::MAX, |t| micros(now.saturating_since(t)));
                        (m.id, ago)
                    })
                    .collect();
                // A value that drops us: our own lease may rest on our own
                // confirmation (frozen from now on) and on confirmers outside the
                // accepting quorum, which the racer cannot see. It lapses at the
                // latest a lease after now: say so (found by the model checker).
                if v.member(self.me).is_some() && value.member(self.me).is_none() {
                    heard.push((self.me, 0));
                }
                heard
            }
            // Seeding after a view: a lease confirmed by this node's earlier
            // incarnation (for a member the seed leaves out, or for one whose
            // settle window that incarnation was still running when it stopped)
            // lapses at the latest a lease after now: the seed reaches clients
            // only then (the model checker found the second case).
            None if self.cfg.sabotage != Some(Sabotage::SeedWithoutViews)
                && self
                    .durable
                    .views()
                    .any(|v| v.generation < value.generation) =>
            {
                // The views kept from before this seed (not the value itself,
                // just recorded as accepted).
                let mut heard: Vec<(NodeId, u64)> = self
                    .durable
                    .views()
                    .filter(|v| v.generation < value.generation)
                    .fold(NodeSet::EMPTY, |acc, v| acc.union(v.members))
                    .difference(value.node_set())
                    .iter()
                    .filter(|m| *m != self.me)
                    .map(|m| (m, 0))
                    .collect();
                heard.push((self.me, 0));
                heard
            }
            None => Vec::new(),
        };
        self.acceptor.accepted = Some((ballot, value));
        self.acceptor.accepted_at.get_or_insert(now);
        self.send(
            from,
            Msg::Accepted {
                slot,
                ballot,
                heard_ago_us,
            },
        );
    }

    /// Spectators keep a record of the race they take part in.
    pub(super) fn note_race(
        &mut self,
        now: Instant,
        slot: Generation,
        ballot: Ballot,
        proposal: Option<NodeSet>,
    ) {
        if ballot.node == self.me {
            return;
        }
        let same = self.racing.last_race.as_ref().is_some_and(|r| {
            r.slot == slot && r.racer == ballot.node && r.verdict == RaceVerdict::Running
        });
        if same {
            if let (Some(r), Some(p)) = (&mut self.racing.last_race, proposal) {
                r.proposal = p;
            }
            return;
        }
        self.racing.last_race = Some(RaceRecord {
            slot,
            racer: ballot.node,
            proposal: proposal.unwrap_or(NodeSet::EMPTY),
            started: now,
            duration: None,
            verdict: RaceVerdict::Running,
        });
    }
}
