//! The racer: start, Prepare and Accept phases, the decision, a lost race; and the
//! spectator that waits for a verdict.

use super::*;
use crate::types::FenceReason;

/// Node 0 of the seeded view {0..4}, which now loses node 4 at `t`: its step starts
/// the race for a view without 4. Returns the node, `t` and the step's outputs.
fn racer_losing_four() -> (Fence, Instant, Vec<FenceOutput>) {
    let net = Net::seeded(&[0, 1, 2, 3, 4]);
    let t = net.now + Duration::from_millis(10);
    let mut f = net.take(0);
    f.observe([peer(1, 1, t), peer(2, 1, t), peer(3, 1, t), down(4)]);
    f.handle_timeout(t);
    let out = drain(&mut f);
    (f, t, out)
}

#[test]
fn a_racer_prepares_at_every_live_acceptor() {
    let (f, t, out) = racer_losing_four();
    let slot = Generation(1);
    let prepare = Msg::Prepare {
        slot,
        ballot: ballot(2, 0),
    };
    assert_eq!(
        out,
        vec![
            // Its report first (node 4 went out of reach), then the race.
            send(
                1,
                Msg::Reach {
                    up: set(&[0, 1, 2, 3]),
                    ports: 0,
                    highest: slot,
                    installed: slot
                }
            ),
            send(
                2,
                Msg::Reach {
                    up: set(&[0, 1, 2, 3]),
                    ports: 0,
                    highest: slot,
                    installed: slot
                }
            ),
            send(
                3,
                Msg::Reach {
                    up: set(&[0, 1, 2, 3]),
                    ports: 0,
                    highest: slot,
                    installed: slot
                }
            ),
            event(FenceEvent::RaceStarted {
                slot,
                racer: n(0),
                proposal: set(&[0, 1, 2, 3])
            }),
            send(1, prepare.clone()),
            send(2, prepare.clone()),
            send(3, prepare),
        ]
    );
    let timers = f.timers();
    assert_eq!(timers.race_retransmit, Some(t + HB));
    assert_eq!(timers.race_deadline, Some(t + RACE));
}

#[test]
fn a_racer_with_a_quorum_of_promises_sends_accept_to_the_acceptors_it_has_not_heard_from() {
    let (mut f, t, _) = racer_losing_four();
    let slot = Generation(1);
    let b = ballot(2, 0);
    // One promise (with our own: 2 of 5) is not a quorum.
    deliver(
        &mut f,
        t,
        1,
        &Msg::Promise {
            slot,
            ballot: b,
            accepted: None,
        },
    );
    assert_eq!(drain(&mut f), vec![]);
    // The second is (3 of 5): Accept goes to every live acceptor, none has accepted.
    deliver(
        &mut f,
        t,
        2,
        &Msg::Promise {
            slot,
            ballot: b,
            accepted: None,
        },
    );
    let value = View::new(
        Generation(2),
        vec![member(0), member(1), member(2), member(3)],
        Some(&view(1, &[0, 1, 2, 3, 4])),
    );
    let accept = Msg::Accept {
        slot,
        ballot: b,
        value: value.clone(),
        manual: false,
    };
    assert_eq!(
        drain(&mut f),
        vec![
            send(1, accept.clone()),
            send(2, accept.clone()),
            send(3, accept.clone()),
            // The racer's own acceptor takes the value too: persisted before its
            // `Accepted` (which stays inside the node) counts.
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[0, 1, 2, 3, 4])),
                accepted: Some(known(2, &[0, 1, 2, 3])),
            }),
        ]
    );
    // Node 1 accepts; a heartbeat later only 2 and 3, not heard from, get it again.
    deliver(
        &mut f,
        t,
        1,
        &Msg::Accepted {
            slot,
            ballot: b,
            heard_ago_us: vec![(n(4), 0)],
        },
    );
    assert_eq!(drain(&mut f), vec![]);
    f.handle_timeout(t + HB);
    assert_eq!(
        drain(&mut f),
        vec![send(2, accept.clone()), send(3, accept)]
    );
}

#[test]
fn a_quorum_of_accepts_decides_and_tells_every_peer() {
    let (mut f, t, _) = racer_losing_four();
    let slot = Generation(1);
    let b = ballot(2, 0);
    for p in [1, 2] {
        deliver(
            &mut f,
            t,
            p,
            &Msg::Promise {
                slot,
                ballot: b,
                accepted: None,
            },
        );
    }
    drain(&mut f);
    let value = View::new(
        Generation(2),
        vec![member(0), member(1), member(2), member(3)],
        Some(&view(1, &[0, 1, 2, 3, 4])),
    );
    let at = t + Duration::from_millis(5);
    deliver(
        &mut f,
        at,
        1,
        &Msg::Accepted {
            slot,
            ballot: b,
            heard_ago_us: vec![(n(4), 0)],
        },
    );
    deliver(
        &mut f,
        at,
        2,
        &Msg::Accepted {
            slot,
            ballot: b,
            heard_ago_us: vec![(n(4), 0)],
        },
    );
    // Node 4's lease, last confirmed by 1 and 2 at `at`, lapses at `at` + lease.
    let settle_us = 2_000_000;
    let reach = Msg::Reach {
        up: set(&[0, 1, 2, 3]),
        ports: 0,
        highest: Generation(2),
        installed: Generation(2),
    };
    let again = Msg::Decided {
        view: value.clone(),
        settle_us,
    };
    let decided = Msg::Decided {
        view: value.clone(),
        settle_us,
    };
    assert_eq!(
        drain(&mut f),
        vec![
            event(FenceEvent::RaceWon {
                generation: Generation(2),
                members: set(&[0, 1, 2, 3]),
                duration: Duration::from_millis(5),
            }),
            send(1, decided.clone()),
            send(2, decided.clone()),
            send(3, decided),
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(2, &[0, 1, 2, 3])),
                accepted: None,
            }),
            event(FenceEvent::ViewInstalled {
                view: value.clone()
            }),
            // Its report (generation 2 now), and catch-up: the peers still
            // advertise generation 1, so they are sent the view again at once.
            send(1, reach.clone()),
            send(2, reach.clone()),
            send(3, reach),
            send(1, again.clone()),
            send(2, again.clone()),
            send(3, again),
        ]
    );
    assert_eq!(f.timers().settle_end, Some(at + LEASE));
}

#[test]
fn a_lost_race_sends_lost_to_its_side_then_self_fences_and_then_nothing() {
    let net = Net::seeded(&[0, 1, 2, 3, 4]);
    let t = net.now + Duration::from_millis(10);
    let mut f = net.take(0);
    // Node 0 keeps only node 1: two of five, no quorum.
    f.observe([peer(1, 1, t), down(2), down(3), down(4)]);
    f.handle_timeout(t);
    drain(&mut f);
    f.handle_timeout(before(t + RACE));
    assert!(!f.fenced());
    drain(&mut f);
    f.handle_timeout(t + RACE);
    let slot = Generation(1);
    assert_eq!(
        drain(&mut f),
        vec![
            event(FenceEvent::RaceLost {
                slot,
                duration: RACE
            }),
            send(1, Msg::Lost { slot }),
            // (No AuthorityLost: it went at `t`, {0, 1} being no quorum of five.)
            event(FenceEvent::SelfFence {
                reason: FenceReason::RaceLost { slot }
            }),
        ]
    );
    // Fenced: no message, timer or step produces anything more.
    assert_eq!(f.poll_timeout(), None);
    deliver(
        &mut f,
        t + RACE,
        1,
        &Msg::Prepare {
            slot,
            ballot: ballot(9, 1),
        },
    );
    f.observe([peer(1, 1, t + RACE), peer(2, 1, t + RACE)]);
    f.handle_timeout(t + RACE * 2);
    f.fence_now(t + RACE * 2, FenceReason::Stalled { stall_ms: 1 });
    f.leave(t + RACE * 2);
    assert_eq!(drain(&mut f), vec![]);
}

#[test]
fn a_spectator_that_hears_no_verdict_fences_after_the_gather_window_the_race_and_two_heartbeats() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now + Duration::from_millis(10);
    let mut f = net.take(1);
    // Node 1 loses node 2; its racer is node 0, which never answers.
    f.observe([peer(0, 1, t), down(2)]);
    f.handle_timeout(t);
    drain(&mut f);
    // The racer may hold back two heartbeats for quiet members, then race.
    let end = t + HB * 2 + RACE + HB * 2;
    assert_eq!(f.timers().spectator_wait, Some(end));
    f.handle_timeout(before(end));
    assert!(!f.fenced());
    drain(&mut f);
    // The racer's last report still shows node 2: it acts on ours only once that
    // has held for peer_inactive, so the spectator waits that much longer.
    f.handle_timeout(end);
    assert_eq!(without_reach(drain(&mut f)), vec![]);
    assert_eq!(f.timers().spectator_wait, Some(end + INACTIVE));
    f.handle_timeout(before(end + INACTIVE));
    assert!(!f.fenced());
    drain(&mut f);
    f.handle_timeout(end + INACTIVE);
    let slot = Generation(1);
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![
            event(FenceEvent::AuthorityLost { generation: slot }),
            event(FenceEvent::SelfFence {
                reason: FenceReason::NoDecision { slot }
            }),
        ]
    );
}

#[test]
fn a_lost_message_from_our_racer_fences_the_side() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(1);
    deliver(
        &mut f,
        t,
        0,
        &Msg::Lost {
            slot: Generation(1),
        },
    );
    let slot = Generation(1);
    assert_eq!(
        drain(&mut f),
        vec![
            event(FenceEvent::AuthorityLost { generation: slot }),
            event(FenceEvent::SelfFence {
                reason: FenceReason::RaceLost { slot }
            }),
        ]
    );
}

#[test]
fn an_outbid_racer_prepares_again_above_the_promise_it_was_refused_with() {
    let (mut f, t, _) = racer_losing_four();
    let slot = Generation(1);
    deliver(
        &mut f,
        t,
        1,
        &Msg::Nack {
            slot,
            promised: ballot(7, 1),
            highest: slot,
        },
    );
    let prepare = Msg::Prepare {
        slot,
        ballot: ballot(8, 0),
    };
    assert_eq!(
        drain(&mut f),
        vec![
            send(1, prepare.clone()),
            send(2, prepare.clone()),
            send(3, prepare),
        ]
    );
}

/// [`peer`], silent on every link for `peer_trouble` (quiet).
fn quiet(i: u8, at: Instant) -> (NodeId, PeerInfo) {
    let (id, info) = peer(i, 1, at);
    (
        id,
        PeerInfo {
            quiet: true,
            ..info
        },
    )
}

fn started(out: &[FenceOutput]) -> Vec<NodeSet> {
    out.iter()
        .filter_map(|o| match o {
            FenceOutput::Event(FenceEvent::RaceStarted { proposal, .. }) => Some(*proposal),
            _ => None,
        })
        .collect()
}

/// Node 0 of the seeded view {0..4} at `t`: node 4 went DOWN and node 3, silent
/// with it, is quiet. No race yet; the racer steps again when its gather window
/// ends.
fn racer_gathering() -> (Fence, Instant) {
    let net = Net::seeded(&[0, 1, 2, 3, 4]);
    let t = net.now + Duration::from_millis(10);
    let mut f = net.take(0);
    f.observe([peer(1, 1, t), peer(2, 1, t), quiet(3, t), down(4)]);
    f.handle_timeout(t);
    assert_eq!(started(&drain(&mut f)), vec![]);
    assert_eq!(f.timers().gather_end, Some(t + HB * 2));
    (f, t)
}

#[test]
fn a_racer_waits_for_quiet_members_and_removes_them_with_the_first_in_one_view() {
    let (mut f, t) = racer_gathering();
    // Node 3 goes DOWN within the window: one race removes both.
    let t3 = t + HB;
    f.observe([peer(1, 1, t3), peer(2, 1, t3), down(3), down(4)]);
    f.handle_timeout(t3);
    assert_eq!(started(&drain(&mut f)), vec![set(&[0, 1, 2])]);
    assert_eq!(f.timers().gather_end, None);
}

#[test]
fn a_racer_waits_for_quiet_members_no_longer_than_its_gather_window() {
    let (mut f, t) = racer_gathering();
    f.handle_timeout(before(t + HB * 2));
    assert_eq!(started(&drain(&mut f)), vec![]);
    // Node 3 is still quiet (a slow peer, not a failed one): race without only 4.
    f.handle_timeout(t + HB * 2);
    assert_eq!(started(&drain(&mut f)), vec![set(&[0, 1, 2, 3])]);
}

#[test]
fn a_racer_with_no_quiet_member_races_at_once() {
    let (_, _, out) = racer_losing_four();
    assert_eq!(started(&out), vec![set(&[0, 1, 2, 3])]);
}
