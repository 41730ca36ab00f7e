//! The timer table: every deadline the core keeps, one named entry per kind, derived
//! from the state it belongs to. [`Fence::poll_timeout`] is the earliest entry.

use super::Fence;
use vigil_llt::types::{Instant, NodeId};

/// When the core next needs a step, by kind (`None`: that timer is not running).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timers {
    /// The racer sends its current phase again to acceptors that have not answered.
    pub(crate) race_retransmit: Option<Instant>,
    /// The race is lost when no quorum answered by then.
    pub(crate) race_deadline: Option<Instant>,
    /// A spectator that has heard no verdict by then fences (`NoDecision`).
    pub(crate) spectator_wait: Option<Instant>,
    /// A racer holding back for quiet members races then at the latest.
    pub(crate) gather_end: Option<Instant>,
    /// A member still seeing a newer generation it never received fences then.
    pub(crate) stale_generation: Option<Instant>,
    /// The settle window ends: the installed view reaches clients.
    pub(crate) settle_end: Option<Instant>,
    /// The lease lapses and with it the authority (only while authority is held).
    pub(crate) lease_end: Option<Instant>,
    /// Half the lease is left (or, past that, half a heartbeat on): the
    /// confirmations that came since extend it, so a lease held by a quiet cluster
    /// (whose frames do not step the core) does not lapse while they keep coming.
    pub(crate) lease_refresh: Option<Instant>,
    /// The reachability report is due again.
    pub(crate) reach_report: Option<Instant>,
    /// While leaving, `Leave` is sent again.
    pub(crate) leave_retransmit: Option<Instant>,
    /// Unseeded beside a running cluster, `Join` is sent again.
    pub(crate) join_retry: Option<Instant>,
    /// A seed attempt that failed may be tried again.
    pub(crate) seed_retry: Option<Instant>,
    /// The earliest peer behind our view that is due to be sent it again.
    pub(crate) catch_up: Option<(NodeId, Instant)>,
    /// A peer's report that a node is missing has held for `peer_inactive` and
    /// counts from then on (`Report::missing_for_less_than`).
    pub(crate) report_hold: Option<Instant>,
}

impl Timers {
    /// The earliest deadline in the table.
    pub(crate) fn next(&self) -> Option<Instant> {
        [
            self.race_retransmit,
            self.race_deadline,
            self.spectator_wait,
            self.gather_end,
            self.stale_generation,
            self.settle_end,
            self.lease_end,
            self.lease_refresh,
            self.reach_report,
            self.leave_retransmit,
            self.join_retry,
            self.seed_retry,
            self.catch_up.map(|(_, t)| t),
            self.report_hold,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Fence {
    /// Every running timer, as of the last step. Empty once fenced or left: such a
    /// node never needs another step.
    pub(crate) fn timers(&self) -> Timers {
        if self.fenced.is_some() || self.left {
            return Timers::default();
        }
        let hb = self.cfg.heartbeat;
        let mut t = Timers::default();
        if let Some(r) = &self.racing.race {
            t.race_retransmit = Some(r.next_send);
            t.race_deadline = Some(r.deadline);
        }
        t.spectator_wait = self.racing.change_since.map(|since| {
            let base = since + self.spectator_wait();
            // Past it, the spectator is waiting for a racer that still hears the
            // lost members: the longer wait's end.
            if base > self.now {
                base
            } else {
                base + self.cfg.peer_inactive
            }
        });
        t.gather_end = self
            .racing
            .gather_since
            .map(|since| since + self.gather_window());
        t.stale_generation = self
            .racing
            .stale_since
            .map(|since| since + self.cfg.race_timeout);
        t.settle_end = self.pending_settle();
        if self.lease.authority {
            t.lease_end = self.lease.lease_until;
            // At half the lease, or (once past it) half a heartbeat later, as long
            // as that is before the lease ends: confirmations come every heartbeat.
            let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            let (half_lease, half_beat) = (nanos(self.cfg.lease / 2), nanos(hb / 2));
            t.lease_refresh = self.lease.lease_until.and_then(|l| {
                let at = l
                    .as_nanos()
                    .saturating_sub(half_lease)
                    .max(self.now.as_nanos().saturating_add(half_beat));
                (at < l.as_nanos()).then(|| Instant::from_nanos(at))
            });
        }
        t.reach_report = self.reach.last_reach.map(|(at, ..)| at + hb * 4);
        if self.leave_requested {
            t.leave_retransmit = self.last_leave.map(|at| at + hb);
        }
        if self.installed.is_none() {
            let seeded_peer = self
                .peers
                .iter()
                .any(|(id, i)| i.up && i.generation.0 > 0 && self.may_join(*id));
            if seeded_peer {
                t.join_retry = Some(self.seeding.last_join.map_or(self.now, |at| at + hb));
            }
            t.seed_retry = self.seeding.seed_retry;
        }
        if let Some(v) = &self.installed {
            for (p, info) in self.peers.iter() {
                if info.up && info.generation < v.generation {
                    let due = self.reach.catchup.get(p).map_or(self.now, |at| *at + hb);
                    if t.catch_up.is_none_or(|(_, earliest)| due < earliest) {
                        t.catch_up = Some((*p, due));
                    }
                }
            }
        }
        if self.installed.is_some() {
            let hold = self.cfg.peer_inactive;
            let now = self.now;
            for r in self.reach.reports.values() {
                let claims = std::iter::once(r.first).chain(r.missing.iter().map(|(_, at)| *at));
                for at in claims {
                    let due = at + hold;
                    if due > now && t.report_hold.is_none_or(|e| due < e) {
                        t.report_hold = Some(due);
                    }
                }
            }
        }
        if self.is_witness() {
            // The witness's step only answers and asks to join (see `Fence::step`).
            return Timers {
                join_retry: t.join_retry,
                ..Timers::default()
            };
        }
        t
    }
}
