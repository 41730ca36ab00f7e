//! The stable event names: every log line an operator may alert on carries one in
//! its `event` field, and [`crate::Event::name`] gives the same name. They do not
//! change between releases; new ones are added.

use vigil::health::ProbeEvent;
use vigil::node::{HealthEvent, LltEvent};
use vigil_fence::FenceEvent;

/// The published authority changed: gained, lost, a new token or primary.
pub const AUTHORITY_CHANGED: &str = "authority.changed";

/// The primary, or whether this node is it, changed: the `VIGIL_EVENT` of a hook
/// run for that reason.
pub const PRIMARY_CHANGED: &str = "primary.changed";

/// Every stable name, with what it means.
pub const ALL: &[(&str, &str)] = &[
    (
        "llt.started",
        "the listening window passed; heartbeats start",
    ),
    ("link.up", "a link to a peer is up"),
    ("link.trouble", "a link to a peer missed peer_trouble"),
    ("link.down", "a link to a peer missed peer_inactive"),
    ("peer.up", "a peer is heard on some link"),
    ("peer.down", "every link to a peer is silent"),
    ("peer.restarted", "a peer came back as a new incarnation"),
    ("jeopardy.entered", "one link left to a peer"),
    ("jeopardy.cleared", "more than one link to a peer again"),
    (
        "node.duplicate_id",
        "another live process uses this node ID",
    ),
    ("view.installed", "a view was decided and installed here"),
    ("view.client", "clients now see this view"),
    ("race.started", "a race for the next view started"),
    ("race.won", "this side's racer decided the next view"),
    ("race.lost", "this side's racer found no quorum"),
    ("authority.gained", "this node holds authority"),
    ("authority.lost", "this node no longer holds authority"),
    (
        AUTHORITY_CHANGED,
        "what clients may act on changed (token, primary)",
    ),
    (
        PRIMARY_CHANGED,
        "the primary changed (VIGIL_EVENT of a hook run)",
    ),
    ("hook.ran", "a hook ran and exited 0"),
    ("hook.failed", "a hook exited non-zero or could not start"),
    ("hook.timeout", "a hook ran longer than its timeout: killed"),
    (
        "control.subscriber_dropped",
        "a control subscriber did not read its line in time",
    ),
    ("node.self_fence", "this node fences itself"),
    ("seed.manual", "seeded by hand (gabconfig -x)"),
    (
        "seed.waiting",
        "not seeding: the group lacks a quorum of a view this node knows",
    ),
    ("node.left", "this node left the cluster gracefully"),
    ("probe.failed", "a health probe failed"),
    ("probe.recovered", "a health probe passes again"),
    ("node.unhealthy", "a health probe reached its threshold"),
    (
        "node.leave_timeout",
        "a graceful leave did not complete in time",
    ),
    (
        "node.stall",
        "this node was not running for longer than stall_report",
    ),
    ("state.persisted", "a generation was recorded"),
    (
        "state.slow_write",
        "recording a generation took longer than 20 ms",
    ),
    (
        "state.persist_failed",
        "a generation could not be recorded: the node stops",
    ),
    (
        "daemon.signal",
        "vigil daemon got SIGTERM or SIGINT: leaving, or stopping at once",
    ),
    (
        "daemon.leave_timeout",
        "vigil daemon stopped the node: its leave outlasted the bound",
    ),
    (
        "daemon.reload",
        "vigil daemon re-read its configuration on SIGHUP",
    ),
];

/// The stable name of a transport event.
pub fn llt_name(e: &LltEvent) -> &'static str {
    match e {
        LltEvent::Started => "llt.started",
        LltEvent::LinkUp { .. } => "link.up",
        LltEvent::LinkTrouble { .. } => "link.trouble",
        LltEvent::LinkDown { .. } => "link.down",
        LltEvent::PeerUp { .. } => "peer.up",
        LltEvent::PeerDown { .. } => "peer.down",
        LltEvent::PeerRestarted { .. } => "peer.restarted",
        LltEvent::JeopardyEntered { .. } => "jeopardy.entered",
        LltEvent::JeopardyCleared { .. } => "jeopardy.cleared",
        LltEvent::DuplicateNodeId { .. } => "node.duplicate_id",
    }
}

/// The stable name of a membership or fencing event.
pub fn fence_name(e: &FenceEvent) -> &'static str {
    match e {
        FenceEvent::ViewInstalled { .. } => "view.installed",
        FenceEvent::ClientView { .. } => "view.client",
        FenceEvent::RaceStarted { .. } => "race.started",
        FenceEvent::RaceWon { .. } => "race.won",
        FenceEvent::RaceLost { .. } => "race.lost",
        FenceEvent::AuthorityGained { .. } => "authority.gained",
        FenceEvent::AuthorityLost { .. } => "authority.lost",
        FenceEvent::SelfFence { .. } => "node.self_fence",
        FenceEvent::ManualSeed { .. } => "seed.manual",
        FenceEvent::SeedWaiting { .. } => "seed.waiting",
        FenceEvent::Left { .. } => "node.left",
    }
}

/// The stable name of a health event.
pub fn health_name(e: &HealthEvent) -> &'static str {
    match e {
        HealthEvent::Probe(ProbeEvent::Failed { .. }) => "probe.failed",
        HealthEvent::Probe(ProbeEvent::Recovered { .. }) => "probe.recovered",
        HealthEvent::Probe(ProbeEvent::Unhealthy { .. }) => "node.unhealthy",
        HealthEvent::LeaveTimedOut { .. } => "node.leave_timeout",
        HealthEvent::Stall { .. } => "node.stall",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), before, "a name is listed twice");
        let e = FenceEvent::Left {
            generation: vigil_llt::types::Generation(1),
        };
        assert!(names.contains(&fence_name(&e)));
        assert!(names.contains(&llt_name(&LltEvent::Started)));
    }
}
