//! The race: who races and when (`member_step`), the racer's Prepare and Accept
//! phases, nacks, the deadline, the decision and its settle window. A spectator waits
//! for its racer's verdict and fences when none comes.

use super::{micros, Fence};
use crate::types::{FenceEvent, FenceReason, RaceRecord, RaceVerdict, Sabotage};
use crate::{has_weighted_quorum, Weights};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_membership::{Ballot, Member, Msg, NodeSet, View};

/// Which sets of acceptors decide a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Quorum {
    /// The quorum rule over the previous view.
    Prev(NodeSet),
    /// Seeding: at least `count` of the configured nodes.
    Seed(usize),
    /// Manual seeding: every proposed member.
    All(NodeSet),
}

impl Quorum {
    pub(super) fn met(self, who: NodeSet, weights: &Weights, sabotage: Option<Sabotage>) -> bool {
        match (self, sabotage) {
            (Quorum::Prev(prev), Some(Sabotage::AnyHalfWins)) => {
                2 * weights.total(who.intersection(prev)) >= weights.total(prev)
            }
            (Quorum::Prev(prev), Some(Sabotage::FewerAccepts)) => {
                // One accept short: pretend an extra member accepted.
                let missing = prev.difference(who).min();
                let mut more = who;
                if let Some(m) = missing {
                    more.insert(m);
                }
                has_weighted_quorum(weights, prev, more)
            }
            (Quorum::Prev(prev), _) => has_weighted_quorum(weights, prev, who),
            (Quorum::Seed(count), _) => who.len() >= count,
            (Quorum::All(all), _) => all.is_subset(who),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Phase {
    Prepare {
        promises: BTreeMap<NodeId, Option<(Ballot, View)>>,
    },
    Accept {
        value: View,
        accepts: BTreeMap<NodeId, (Instant, Vec<(NodeId, u64)>)>,
    },
}

#[derive(Clone, Debug)]
pub(super) struct Race {
    pub(super) slot: Generation,
    pub(super) ballot: Ballot,
    pub(super) own: View,
    pub(super) acceptors: NodeSet,
    pub(super) quorum: Quorum,
    /// A manual seed (`gabconfig -x`): acceptors do not check their known views.
    pub(super) manual: bool,
    pub(super) phase: Phase,
    pub(super) started: Instant,
    pub(super) deadline: Instant,
    pub(super) next_send: Instant,
}

/// The race this node runs (as racer) or waits for (as spectator).
#[derive(Clone, Debug, Default)]
pub(super) struct RaceState {
    pub(super) race: Option<Race>,
    /// The highest ballot round seen: a new ballot goes above it.
    pub(super) max_round: u32,
    /// Since when a spectator has been waiting for a verdict.
    pub(super) change_since: Option<Instant>,
    /// The racer a spectator waits for since `change_since`.
    pub(super) awaited_racer: Option<NodeId>,
    /// Since when a peer has advertised a newer generation than ours.
    pub(super) stale_since: Option<Instant>,
    /// Since when the racer has held back a needed race while members of the view
    /// are quiet (see [`Fence::gather_window`]).
    pub(super) gather_since: Option<Instant>,
    pub(super) last_race: Option<RaceRecord>,
}

impl Fence {
    /// The members the next view should have, as this node sees it.
    pub(super) fn desired(&self, v: &View) -> Vec<Member> {
        let mut candidates: Vec<Member> = Vec::new();
        for m in &v.members {
            if self.leaving.contains(m.id) || (m.id == self.me && self.leave_requested) {
                continue;
            }
            if m.id == self.me {
                candidates.push(Member {
                    ports: self.ports,
                    ..*m
                });
                continue;
            }
            let Some(info) = self.peers.get(&m.id) else {
                continue;
            };
            if info.incarnation == Some(m.incarnation) {
                candidates.push(Member {
                    ports: self.ports_of(m.id, m.ports),
                    ..*m
                });
            }
        }
        // Members first (in ID order), joiners after: a joiner that does not yet
        // see everyone waits; it never pushes a connected member out.
        candidates.sort();
        for (id, (inc, ports, _)) in &self.joins {
            let current = self.peers.get(id).and_then(|i| i.incarnation);
            if current == Some(*inc)
                && !self.excluded.contains(&(*id, *inc))
                && !candidates.iter().any(|c| c.id == *id)
            {
                candidates.push(Member {
                    id: *id,
                    incarnation: *inc,
                    ports: self.ports_of(*id, *ports),
                });
            }
        }
        let chosen = self.clique(&candidates, v.node_set());
        if chosen.iter().all(|m| self.is_witness_id(m.id)) {
            // A view of the witness alone is no cluster (the last node leaving):
            // no view is proposed, as when nobody is left.
            return Vec::new();
        }
        chosen
    }

    pub(super) fn member_step(&mut self, now: Instant) {
        let Some(v) = self.installed.clone() else {
            return;
        };
        // A member that sees a newer generation it does not receive (it hears the
        // cluster, the cluster does not hear it) cannot be trusted: it fences.
        let newest = self
            .peers
            .values()
            .filter(|i| i.up)
            .map(|i| i.generation)
            .max()
            .unwrap_or_default();
        if newest > v.generation {
            let since = *self.racing.stale_since.get_or_insert(now);
            if now >= since + self.cfg.race_timeout {
                self.self_fence(FenceReason::Excluded { generation: newest });
                return;
            }
        } else {
            self.racing.stale_since = None;
        }
        // Drop join requests nobody refreshed.
        let stale = self.cfg.heartbeat * 10;
        self.joins.retain(|_, (_, _, t)| now < *t + stale);
        let up = self.up_set();
        // A member is reachable when its process, in the view's incarnation, is up:
        // a restarted member is a new process and no longer the view's member.
        let reachable = self.live_members(&v);
        let _ = up;
        let racer = match reachable.min() {
            Some(r) if r == self.me => self.lower_racer_elsewhere(&v, reachable).or(Some(r)),
            r => r,
        };
        let desired = self.desired(&v);
        let needed = !v.same_members(&desired) && !desired.is_empty();
        // As a spectator, a member we cannot reach is a change we wait for.
        // The witness needs to reach the racer only: a member that lost it waits for
        // no view change (the racer drops it if it lost it too).
        let unreachable = !self.nodes_of(v.node_set()).is_subset(reachable);
        // The spectator's clock runs only while a member is out of reach, and starts
        // again when the racer it waits for changes (that racer went out of reach
        // itself, or fenced): the next one gets a whole race_timeout. Each restart
        // needs a member to go, so the wait stays bounded.
        if unreachable && racer != Some(self.me) {
            if self.racing.awaited_racer != racer {
                self.racing.awaited_racer = racer;
                self.racing.change_since = Some(now);
            } else {
                self.racing.change_since.get_or_insert(now);
            }
        } else {
            self.racing.change_since = None;
            self.racing.awaited_racer = None;
        }
        // Members that fell silent together (a partition) go DOWN within about a
        // heartbeat of each other. Racing at the first DOWN would remove them one
        // view at a time, each new view a lease after the last for clients (the
        // settle window); the racer waits, at most `gather_window`, while a member
        // the new view would keep is quiet, and removes every one that went DOWN
        // meanwhile in one view.
        let may_race = racer == Some(self.me) && needed && self.racing.race.is_none();
        let gathering = may_race
            && desired
                .iter()
                .any(|m| m.id != self.me && self.peers.get(&m.id).is_some_and(|i| i.quiet));
        if gathering {
            let since = *self.racing.gather_since.get_or_insert(now);
            if now < since + self.gather_window() {
                return self.spectate(now, &v, racer, reachable, unreachable);
            }
        } else {
            self.racing.gather_since = None;
        }
        if may_race {
            self.racing.gather_since = None;
            let Some(generation) = v.generation.next() else {
                // At the top of the range: no view can follow this one.
                return;
            };
            let mut value = View::new(generation, desired, Some(&v));
            if self.cfg.sabotage == Some(Sabotage::LowestPrimary) {
                value.primary = value.leader().unwrap_or(value.primary);
            }
            let acceptors = v.node_set();
            self.start_race(
                now,
                v.generation,
                value,
                acceptors,
                Quorum::Prev(v.node_set()),
            );
        }
        self.spectate(now, &v, racer, reachable, unreachable);
    }

    /// How long a racer holds back a needed race while members are quiet
    /// (`FenceConfig::gather_window`; two heartbeats give the members that fell
    /// silent with the first one time to be declared DOWN too: their last frames
    /// came within a heartbeat of each other).
    pub(super) fn gather_window(&self) -> std::time::Duration {
        self.cfg.gather_window
    }

    /// How long a spectator waits for the racer's verdict once a member is out of
    /// reach: the race, the racer's gather window, and two heartbeats of grace for
    /// the verdict to arrive.
    pub(super) fn spectator_wait(&self) -> std::time::Duration {
        self.cfg.race_timeout + self.gather_window() + self.cfg.heartbeat * 2
    }

    /// A spectator's side of [`Fence::member_step`]: no verdict within its wait
    /// fences it (`NoDecision`).
    fn spectate(
        &mut self,
        now: Instant,
        v: &View,
        racer: Option<NodeId>,
        reachable: NodeSet,
        unreachable: bool,
    ) {
        if racer != Some(self.me) && self.racing.race.is_none() {
            if let Some(t) = self.racing.change_since {
                let mut wait = self.spectator_wait();
                // A racer that still hears the members we lost (a one-way fault)
                // acts on our report of them only once it has held for
                // peer_inactive: wait that long too, or the majority that would
                // have won fences itself waiting.
                let lost = self.nodes_of(v.node_set()).difference(reachable);
                let racer_hears_them = racer
                    .and_then(|r| self.reach.reports.get(&r))
                    .is_some_and(|rep| !lost.is_empty() && lost.is_subset(rep.up));
                if racer_hears_them {
                    wait += self.cfg.peer_inactive;
                }
                if unreachable && now >= t + wait {
                    self.self_fence(FenceReason::NoDecision { slot: v.generation });
                }
            }
        }
    }

    /// A member of `v` lower than us that we cannot reach but a member we reach
    /// still reports reaching: it is alive, and it races for the side that holds
    /// it. Racing beside it would duel for the same slot with a smaller group (a
    /// node cut from the lowest members but not from the rest would otherwise race
    /// with whoever it still reaches, and a quorum of acceptors could decide that
    /// smaller view), so we wait for its decision as a spectator instead.
    fn lower_racer_elsewhere(&self, v: &View, reachable: NodeSet) -> Option<NodeId> {
        // Not a node we hear ourselves: one we hear in another incarnation
        // restarted, and races for nobody.
        let lost = v.node_set().difference(reachable).difference(self.up_set());
        reachable
            .iter()
            .filter(|m| *m != self.me)
            .filter_map(|m| self.reach.reports.get(&m))
            .map(|r| r.up.intersection(lost))
            .fold(NodeSet::EMPTY, NodeSet::union)
            .min()
            .filter(|lower| *lower < self.me)
    }

    pub(super) fn start_race(
        &mut self,
        now: Instant,
        slot: Generation,
        own: View,
        acceptors: NodeSet,
        quorum: Quorum,
    ) {
        self.racing.max_round = self.racing.max_round.saturating_add(1);
        let ballot = Ballot {
            round: self.racing.max_round,
            node: self.me,
            incarnation: self.incarnation,
        };
        self.event(FenceEvent::RaceStarted {
            slot,
            racer: self.me,
            proposal: own.node_set(),
        });
        self.racing.last_race = Some(RaceRecord {
            slot,
            racer: self.me,
            proposal: own.node_set(),
            started: now,
            duration: None,
            verdict: RaceVerdict::Running,
        });
        self.racing.race = Some(Race {
            slot,
            ballot,
            own,
            acceptors,
            quorum,
            manual: self.seeding.manual_seed && slot.0 == 0,
            phase: Phase::Prepare {
                promises: BTreeMap::new(),
            },
            started: now,
            deadline: now + self.cfg.race_timeout,
            next_send: now,
        });
    }

    pub(super) fn race_step(&mut self, now: Instant) {
        let Some(race) = self.racing.race.clone() else {
            return;
        };
        if now >= race.deadline {
            self.racing.race = None;
            let duration = now.saturating_since(race.started);
            if let Some(r) = &mut self.racing.last_race {
                r.verdict = RaceVerdict::Lost;
                r.duration = Some(duration);
            }
            self.event(FenceEvent::RaceLost {
                slot: race.slot,
                duration,
            });
            if race.slot.0 == 0 {
                // A seed attempt that failed: try again later; nobody fences. A
                // refused one waits longer: the group must change first.
                let mut wait = self.cfg.heartbeat * 4;
                if std::mem::take(&mut self.seeding.seed_refused) {
                    wait += self.cfg.race_timeout.max(self.cfg.peer_inactive);
                }
                self.seeding.seed_retry = Some(now + wait);
                return;
            }
            for p in self.up_members() {
                self.send(p, Msg::Lost { slot: race.slot });
            }
            self.self_fence(FenceReason::RaceLost { slot: race.slot });
            return;
        }
        if now < race.next_send {
            return;
        }
        let up = self.up_set();
        let (msg, answered): (Msg, NodeSet) = match &race.phase {
            Phase::Prepare { promises } => (
                Msg::Prepare {
                    slot: race.slot,
                    ballot: race.ballot,
                },
                promises.keys().copied().collect(),
            ),
            Phase::Accept { value, accepts } => (
                Msg::Accept {
                    slot: race.slot,
                    ballot: race.ballot,
                    value: value.clone(),
                    manual: race.manual,
                },
                accepts.keys().copied().collect(),
            ),
        };
        for p in race.acceptors.intersection(up).difference(answered).iter() {
            self.send(p, msg.clone());
        }
        if let Some(r) = &mut self.racing.race {
            r.next_send = now + self.cfg.heartbeat;
        }
    }

    pub(super) fn on_promise(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Generation,
        ballot: Ballot,
        accepted: Option<(Ballot, View)>,
    ) {
        let Some(race) = &mut self.racing.race else {
            return;
        };
        if race.slot != slot || race.ballot != ballot {
            return;
        }
        let Phase::Prepare { promises } = &mut race.phase else {
            return;
        };
        promises.insert(from, accepted);
        let who: NodeSet = promises.keys().copied().collect();
        if !race.quorum.met(who, &self.cfg.weights, self.cfg.sabotage) {
            return;
        }
        // The value: the highest-ballot one already accepted, else our own.
        let mut value = promises
            .values()
            .flatten()
            .max_by_key(|(b, _)| *b)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| race.own.clone());
        if race.slot.0 == 0
            && (value.generation < race.own.generation
                || !value
                    .members
                    .iter()
                    .all(|m| race.own.contains(m.id, m.incarnation)))
        {
            // A seed accepted earlier that names a process our group does not hold
            // (a member that has ended or restarted since, as when a node died
            // persisting it): re-proposing it would decide a view with a member
            // that no longer runs. One below our generation, which a Nack raised
            // above an acceptor's highest: that acceptor refuses it, for ever (a
            // node that never seeded kept its own first proposal, and the
            // restarted others, which know generation 1, refused it at every
            // retry). Either may have been decided, so its generation is not
            // reused; our own group is proposed above it. That is a seed after a
            // view its acceptors keep (they persisted it before accepting), which
            // they check as any other (`docs/membership.md`).
            let generation = value.generation.next().map(|g| g.max(race.own.generation));
            let Some(generation) = generation else {
                // Nothing above: this seed race cannot be won.
                return;
            };
            value = View::new(generation, race.own.members.clone(), None);
        }
        race.phase = Phase::Accept {
            value,
            accepts: BTreeMap::new(),
        };
        race.next_send = now;
        self.race_step(now);
    }

    pub(super) fn on_accepted(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Generation,
        ballot: Ballot,
        heard: Vec<(NodeId, u64)>,
    ) {
        // A node whose user space hangs holds its lease at most `lease`, and its
        // watchdog resets it at most the watchdog's timeout after its last pet.
        let lease = self.drift(self.cfg.lease + self.cfg.watchdog.unwrap_or_default());
        let Some(race) = &mut self.racing.race else {
            return;
        };
        if race.slot != slot || race.ballot != ballot {
            return;
        }
        let Phase::Accept { value, accepts } = &mut race.phase else {
            return;
        };
        accepts.insert(from, (now, heard));
        let who: NodeSet = accepts.keys().copied().collect();
        if !race.quorum.met(who, &self.cfg.weights, self.cfg.sabotage) {
            return;
        }
        let value = value.clone();
        // Settle: every excluded member's lease has lapsed once the latest time any
        // acceptor heard it, plus the lease, has passed (with drift on both).
        let drift = self.cfg.max_drift_ppm;
        let mut settle_end = now;
        // An excluded member may still hold a lease on an older view than ours (it
        // never learned ours). Such a lease rests on confirmations given at that
        // older generation, which every confirmer stopped giving when it accepted
        // the view we replace, before we installed it here.
        let excludes = self.installed.as_ref().is_some_and(|v| {
            v.members
                .iter()
                .any(|m| !value.contains(m.id, m.incarnation))
        });
        if excludes {
            settle_end = settle_end.max(self.installed_at + lease);
        }
        for (received, heard) in accepts.values() {
            for (_, ago) in heard {
                if *ago == u64::MAX {
                    continue;
                }
                // From the network: saturating, never a panic or a wrap.
                let ago = Duration::from_micros(*ago);
                let ago = ago.saturating_sub(ago.saturating_mul(drift) / 1_000_000);
                let ago_ns = u64::try_from(ago.as_nanos()).unwrap_or(u64::MAX);
                let heard_at = Instant::from_nanos(received.as_nanos().saturating_sub(ago_ns));
                let lapse = heard_at + lease;
                settle_end = settle_end.max(lapse);
            }
        }
        let started = race.started;
        let duration = now.saturating_since(started);
        self.racing.race = None;
        self.event(FenceEvent::RaceWon {
            generation: value.generation,
            members: value.node_set(),
            duration,
        });
        if let Some(r) = &mut self.racing.last_race {
            r.verdict = RaceVerdict::Won;
            r.duration = Some(duration);
        }
        // A view change decided while the settle window of the view it replaces
        // still runs ends no earlier: that window covers members an earlier view
        // dropped, which may still hold a lease, and this view (a join, say, which
        // drops nobody) must not reach any client before it has passed. Without
        // this the random sweep found a racer that dropped a member (settle
        // pending) and at once decided a join, handing it to its clients while the
        // dropped member still held authority (S1, seeds 61399 and 62030).
        if let Some(t) = self.pending_settle() {
            settle_end = settle_end.max(t);
        }
        if self.cfg.sabotage == Some(Sabotage::ZeroSettle) {
            settle_end = now;
        }
        let settle_us = micros(settle_end.saturating_since(now));
        let up = self.up_set();
        let me = self.me;
        for p in up.iter().filter(|p| *p != me) {
            self.send(
                p,
                Msg::Decided {
                    view: value.clone(),
                    settle_us,
                },
            );
        }
        self.learn(now, value, settle_end);
    }

    /// `Nack`: outbid (or, seeding, a generation too low) starts a new ballot; a
    /// seed refused by a member of its group is lost at once.
    pub(super) fn on_nack(
        &mut self,
        now: Instant,
        slot: Generation,
        promised: Ballot,
        highest: Generation,
    ) {
        let Some(race) = &mut self.racing.race else {
            return;
        };
        if race.slot != slot {
            return;
        }
        self.racing.max_round = self.racing.max_round.max(promised.round);
        if promised > race.ballot || (slot.0 == 0 && highest >= race.own.generation) {
            // Outbid (or, seeding, our generation is too low): a new ballot.
            self.racing.max_round = self.racing.max_round.saturating_add(1);
            race.ballot = Ballot {
                round: self.racing.max_round,
                node: self.me,
                incarnation: self.incarnation,
            };
            if slot.0 == 0 && highest >= race.own.generation {
                let Some(generation) = highest.next() else {
                    // Nothing above: this seed race cannot be won.
                    return;
                };
                let members = race.own.members.clone();
                race.own = View::new(generation, members, None);
            }
            race.phase = Phase::Prepare {
                promises: BTreeMap::new(),
            };
            race.next_send = now;
        } else if slot.0 == 0 {
            // A member of the group refused the seed: it knows a view whose
            // quorum the group lacks. Every member must accept a seed, so
            // this one is lost; try again once the group may have changed.
            race.deadline = now;
            self.seeding.seed_refused = true;
            self.race_step(now);
        }
    }

    /// `Lost` from our side's racer: the race is lost, fence.
    pub(super) fn on_lost(&mut self, now: Instant, from: NodeId, slot: Generation) {
        let racer = self
            .installed
            .as_ref()
            .and_then(|v| self.live_members(v).min());
        if slot == self.current_slot() && slot.0 > 0 && self.is_member() && racer == Some(from) {
            if let Some(r) = &mut self.racing.last_race {
                r.verdict = RaceVerdict::Lost;
                r.duration = Some(now.saturating_since(r.started));
            }
            self.self_fence(FenceReason::RaceLost { slot });
        }
    }
}
