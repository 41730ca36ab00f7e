//! Authority and what clients see: the lease a quorum of the view confirmed, the
//! settle window before a new view reaches clients, and self-fencing.

use super::Fence;
use crate::has_weighted_quorum;
use crate::types::{FenceEvent, FenceReason};
use vigil_llt::types::{Instant, NodeId};
use vigil_membership::{Ballot, NodeSet, View};

/// Authority, its lease, and the view clients see.
#[derive(Clone, Debug, Default)]
pub(super) struct LeaseState {
    pub(super) lease_until: Option<Instant>,
    pub(super) authority: bool,
    pub(super) client_view: Option<View>,
    /// The installed view, waiting for its settle window to end.
    pub(super) pending_client: Option<View>,
    pub(super) settle_until: Option<Instant>,
}

impl Fence {
    /// Authority as of the last step. Before acting on it, check
    /// [`Fence::authority_at`] with the current time: a process that was not
    /// running (a frozen node) must not trust what it last computed.
    pub fn authority(&self) -> bool {
        self.lease.authority
    }

    /// Whether a frame that changed no peer's facts should still step the core: a
    /// member without authority waits for lease confirmations, which come on any
    /// frame and do not step the core by themselves; a core that queued a
    /// message to itself (its own promise or accept) handles it. An unseeded
    /// node otherwise has nothing a plain frame can change: what can (a peer's
    /// facts, a message, a timer) steps it anyway. At 64 nodes, stepping every
    /// unseeded node on each of the ~126 frames a heartbeat brings was most of
    /// the work of bringing a cluster up.
    pub fn steps_on_frames(&self) -> bool {
        !self.lease.authority
            && self.fenced.is_none()
            && (self.installed.is_some() || !self.loopback.is_empty())
    }

    /// Whether the node holds authority at `now`: it held it at its last step and
    /// its lease has not lapsed since.
    pub fn authority_at(&self, now: Instant) -> bool {
        self.lease.authority
            && self.fenced.is_none()
            && !self.left
            && self.lease.lease_until.is_some_and(|l| now < l)
    }

    /// Until when the lease computed at the last step runs, if one does.
    pub fn lease_until(&self) -> Option<Instant> {
        self.lease.lease_until
    }

    /// The peers whose frames we confirm (the lease confirmations llt carries):
    /// members of our view at our generation. Nobody once we accepted a value for
    /// the next generation: the race that may decide it counts on our
    /// confirmations having stopped by then (see `on_accepted`).
    pub fn confirm_set(&self) -> NodeSet {
        let Some(v) = &self.installed else {
            return NodeSet::EMPTY;
        };
        if self.fenced.is_some() || self.left || self.acceptor.accepted.is_some() {
            return NodeSet::EMPTY;
        }
        v.members
            .iter()
            .filter(|m| m.id != self.me)
            .filter(|m| {
                self.peers
                    .get(&m.id)
                    .is_some_and(|i| i.incarnation == Some(m.incarnation))
            })
            .map(|m| m.id)
            .collect()
    }

    /// When the settle window of the installed view ends, while it runs (the
    /// clients still have the view before).
    pub(super) fn pending_settle(&self) -> Option<Instant> {
        self.lease
            .settle_until
            .filter(|_| self.lease.pending_client.is_some())
    }

    pub(super) fn settle_step(&mut self, now: Instant) {
        if let (Some(t), Some(_)) = (self.lease.settle_until, &self.lease.pending_client) {
            if now >= t {
                if let Some(view) = self.lease.pending_client.take() {
                    self.lease.client_view = Some(view.clone());
                    self.event(FenceEvent::ClientView { view });
                }
            }
        }
    }

    pub(super) fn authority_step(&mut self, now: Instant) {
        if self.fenced.is_some() || self.left {
            return self.lose_authority();
        }
        let Some(v) = self.installed.clone() else {
            return self.lose_authority();
        };
        if !self.is_member() {
            return self.lose_authority();
        }
        // Confirmations: ours is now (or when we accepted a newer value: from then
        // on we may be about to leave this view's lineage). A peer's counts when
        // it gave it at our generation or an older one: a peer already in a newer
        // view vouches for that view, not for ours, and the race that may replace
        // that newer view cannot see our view's quorums. Peers stop confirming
        // once they accept a value for the next generation, so every quorum of our
        // view holds a confirmer that stopped before that value was decided.
        let own = self.acceptor.accepted_at.map_or(now, |t| t.min(now));
        // At most one per node ID: on the stack, as this runs at every step.
        let mut buf = [(Instant::ZERO, NodeId(0)); 64];
        buf[0] = (own, self.me);
        let mut len = 1;
        for m in v.members.iter().filter(|m| m.id != self.me) {
            if let Some(info) = self.peers.get(&m.id) {
                if let Some((t, g)) = info.confirmed {
                    if info.incarnation == Some(m.incarnation) && g <= v.generation && len < 64 {
                        buf[len] = (t, m.id);
                        len += 1;
                    }
                }
            }
        }
        let conf = &mut buf[..len];
        // Node IDs are distinct: no two entries tie, an unstable sort is exact.
        conf.sort_unstable_by(|a, b| b.cmp(a));
        // The lease is what a quorum of *this* view confirmed: never carried over
        // from an earlier view, whose quorums need not meet the next race's.
        let mut who = NodeSet::EMPTY;
        self.lease.lease_until = None;
        for (t, id) in conf.iter() {
            who.insert(*id);
            if has_weighted_quorum(&self.cfg.weights, v.node_set(), who) {
                self.lease.lease_until = Some(*t + self.cfg.lease);
                break;
            }
        }
        let newer = self
            .peers
            .values()
            .any(|i| i.up && i.generation > v.generation);
        let holds = self.lease.client_view.is_some()
            && self.lease.lease_until.is_some_and(|l| now < l)
            && !newer
            && !self.leave_requested;
        if holds && !self.lease.authority {
            self.lease.authority = true;
            self.event(FenceEvent::AuthorityGained {
                generation: v.generation,
            });
        } else if !holds {
            self.lose_authority();
        }
    }

    pub(super) fn lose_authority(&mut self) {
        if self.lease.authority {
            self.lease.authority = false;
            let generation = self.advertised_generation();
            self.event(FenceEvent::AuthorityLost { generation });
        }
    }

    pub(super) fn self_fence(&mut self, reason: FenceReason) {
        self.racing.race = None;
        self.lose_authority();
        if !self.cfg.self_fence {
            // Fencing disabled: drop out of the view and wait, unseeded.
            self.installed = None;
            self.lease.client_view = None;
            self.lease.pending_client = None;
            self.racing.change_since = None;
            self.acceptor.accepted = None;
            self.acceptor.accepted_at = None;
            self.acceptor.promised = Ballot::ZERO;
            return;
        }
        self.fenced = Some(reason.clone());
        self.loopback.clear();
        self.event(FenceEvent::SelfFence { reason });
    }
}
