//! Seeding, joins and leaves.

use super::*;

fn reach(up: &[u8]) -> Msg {
    Msg::Reach {
        up: set(up),
        ports: 0,
        highest: Generation(0),
        installed: Generation(0),
    }
}

#[test]
fn three_fresh_nodes_that_see_each_other_seed_generation_one() {
    let mut f = fresh(0, &[0, 1, 2]);
    let t = ms(10);
    f.observe([peer(1, 0, t), peer(2, 0, t)]);
    // Without the others' reports, node 0 cannot know they see each other.
    f.handle_timeout(t);
    assert_eq!(
        drain(&mut f),
        vec![send(1, reach(&[0, 1, 2])), send(2, reach(&[0, 1, 2]))]
    );
    deliver(&mut f, t, 1, &reach(&[0, 1, 2]));
    assert_eq!(drain(&mut f), vec![]);
    deliver(&mut f, t, 2, &reach(&[0, 1, 2]));
    let slot = Generation(0);
    let prepare = Msg::Prepare {
        slot,
        ballot: ballot(1, 0),
    };
    assert_eq!(
        drain(&mut f),
        vec![
            event(FenceEvent::RaceStarted {
                slot,
                racer: n(0),
                proposal: set(&[0, 1, 2])
            }),
            send(1, prepare.clone()),
            send(2, prepare),
        ]
    );
}

#[test]
fn a_group_lacking_a_quorum_of_a_kept_view_waits_and_says_so_once() {
    let kept = Durable {
        highest: Generation(4),
        installed: Some(known(4, &[0, 1, 2, 3, 4])),
        accepted: None,
    };
    let mut c = cfg(&[0, 1, 2, 3, 4]);
    c.seed = 2;
    let mut f = Fence::new(c, n(0), inc(0), ms(0), kept);
    let t = ms(10);
    f.observe([peer(1, 0, t)]);
    deliver(&mut f, t, 1, &reach(&[0, 1]));
    assert_eq!(
        drain(&mut f),
        vec![
            send(
                1,
                Msg::Reach {
                    up: set(&[0, 1]),
                    ports: 0,
                    highest: Generation(4),
                    installed: Generation(0)
                }
            ),
            event(FenceEvent::SeedWaiting {
                group: set(&[0, 1]),
                needs: vec![known(4, &[0, 1, 2, 3, 4])]
            }),
        ]
    );
    f.handle_timeout(t + HB);
    assert_eq!(drain(&mut f), vec![]);
}

#[test]
fn an_unseeded_node_beside_a_running_cluster_asks_to_join_every_heartbeat() {
    let mut f = fresh(3, &[0, 1, 2, 3]);
    let t = ms(10);
    f.observe([peer(0, 1, t), peer(1, 1, t)]);
    f.handle_timeout(t);
    let join = Msg::Join {
        incarnation: inc(3),
        ports: 0,
    };
    let r = Msg::Reach {
        up: set(&[0, 1, 3]),
        ports: 0,
        highest: Generation(0),
        installed: Generation(0),
    };
    assert_eq!(
        drain(&mut f),
        vec![
            send(0, r.clone()),
            send(1, r),
            send(0, join.clone()),
            send(1, join.clone())
        ]
    );
    assert_eq!(f.timers().join_retry, Some(t + HB));
    f.handle_timeout(before(t + HB));
    assert_eq!(drain(&mut f), vec![]);
    f.handle_timeout(t + HB);
    assert_eq!(drain(&mut f), vec![send(0, join.clone()), send(1, join)]);
}

#[test]
fn a_join_from_an_excluded_incarnation_is_answered_excluded() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(0);
    // Generation 2 dropped node 2 (its incarnation 12).
    let v2 = View::new(Generation(2), vec![member(0), member(1)], f.installed());
    f.observe([peer(1, 1, t), down(2)]);
    deliver(
        &mut f,
        t,
        1,
        &Msg::Decided {
            view: v2,
            settle_us: 0,
        },
    );
    drain(&mut f);
    deliver(
        &mut f,
        t,
        2,
        &Msg::Join {
            incarnation: inc(2),
            ports: 0,
        },
    );
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![send(
            2,
            Msg::Excluded {
                incarnation: inc(2),
                generation: Generation(2)
            }
        )]
    );
}

#[test]
fn an_excluded_incarnation_raises_its_generation_and_fences() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(2);
    let g = Generation(3);
    deliver(
        &mut f,
        t,
        0,
        &Msg::Excluded {
            incarnation: inc(2),
            generation: g,
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![
            FenceOutput::Persist(Durable {
                highest: g,
                installed: Some(known(1, &[0, 1, 2])),
                accepted: None,
            }),
            event(FenceEvent::AuthorityLost {
                generation: Generation(1)
            }),
            event(FenceEvent::SelfFence {
                reason: crate::types::FenceReason::Excluded { generation: g }
            }),
        ]
    );
}

#[test]
fn a_leaving_member_drops_authority_and_tells_the_members_every_heartbeat() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(2);
    f.leave(t);
    assert_eq!(
        drain(&mut f),
        vec![
            send(0, Msg::Leave),
            send(1, Msg::Leave),
            event(FenceEvent::AuthorityLost {
                generation: Generation(1)
            }),
        ]
    );
    assert_eq!(f.timers().leave_retransmit, Some(t + HB));
    f.handle_timeout(t + HB);
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![send(0, Msg::Leave), send(1, Msg::Leave)]
    );
    // The view without it arrives: it has left, and says so.
    let v2 = View::new(Generation(2), vec![member(0), member(1)], f.installed());
    deliver(
        &mut f,
        t + HB,
        0,
        &Msg::Decided {
            view: v2,
            settle_us: 0,
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[0, 1, 2])),
                accepted: None,
            }),
            event(FenceEvent::Left {
                generation: Generation(2)
            }),
        ]
    );
    assert!(f.left());
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn a_seed_accepted_earlier_with_a_process_that_ended_is_not_proposed_again() {
    // Node 0 seeds {0, 1, 2}. Node 1 accepted an earlier seed of generation 1 that
    // named node 2's earlier process (incarnation 99), which ended persisting it;
    // node 2 runs again as incarnation 12. Re-proposing that value would decide a
    // view with a member that no longer runs: node 0 proposes its own group, at a
    // generation above the one that may have been decided.
    let mut f = fresh(0, &[0, 1, 2]);
    let t = ms(10);
    f.observe([peer(1, 0, t), peer(2, 0, t)]);
    f.handle_timeout(t);
    deliver(&mut f, t, 1, &reach(&[0, 1, 2]));
    deliver(&mut f, t, 2, &reach(&[0, 1, 2]));
    drain(&mut f);
    let slot = Generation(0);
    let old = Member {
        incarnation: Incarnation(99),
        ..member(2)
    };
    let earlier = View::new(Generation(1), vec![member(0), member(1), old], None);
    for (from, accepted) in [(1, Some((ballot(1, 1), earlier))), (2, None)] {
        deliver(
            &mut f,
            t,
            from,
            &Msg::Promise {
                slot,
                ballot: ballot(1, 0),
                accepted,
            },
        );
    }
    let accept = Msg::Accept {
        slot,
        ballot: ballot(1, 0),
        value: view(2, &[0, 1, 2]),
        manual: false,
    };
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![
            send(1, accept.clone()),
            send(2, accept),
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: None,
                accepted: Some(known(2, &[0, 1, 2])),
            }),
        ]
    );
}

#[test]
fn a_seed_refused_for_its_generation_is_not_proposed_again_below_the_raised_one() {
    // Node 0 never seeded; nodes 1 and 2 restarted knowing generation 1. Node 0
    // accepted its own first proposal (generation 1); node 1 refuses it, naming
    // generation 1, and node 0 raises its proposal to 2. Its own earlier value
    // comes back in its promise: proposed again, node 1 would refuse it at every
    // retry, for ever. Node 0 proposes generation 2.
    let mut f = fresh(0, &[0, 1, 2]);
    let t = ms(10);
    f.observe([peer(1, 0, t), peer(2, 0, t)]);
    f.handle_timeout(t);
    deliver(&mut f, t, 1, &reach(&[0, 1, 2]));
    deliver(&mut f, t, 2, &reach(&[0, 1, 2]));
    let slot = Generation(0);
    for from in [1, 2] {
        let promise = Msg::Promise {
            slot,
            ballot: ballot(1, 0),
            accepted: None,
        };
        deliver(&mut f, t, from, &promise);
    }
    drain(&mut f);
    assert_eq!(f.status().durable.accepted, Some(known(1, &[0, 1, 2])));
    let nack = Msg::Nack {
        slot,
        promised: Ballot::ZERO,
        highest: Generation(1),
    };
    deliver(&mut f, t, 1, &nack);
    drain(&mut f);
    for from in [1, 2] {
        let promise = Msg::Promise {
            slot,
            ballot: ballot(2, 0),
            accepted: None,
        };
        deliver(&mut f, t, from, &promise);
    }
    let accept = Msg::Accept {
        slot,
        ballot: ballot(2, 0),
        value: view(2, &[0, 1, 2]),
        manual: false,
    };
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![
            send(1, accept.clone()),
            send(2, accept),
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: None,
                accepted: Some(known(2, &[0, 1, 2])),
            }),
        ]
    );
}

#[test]
fn a_seed_retry_due_beside_a_running_cluster_does_not_stay_due() {
    // A seed race refused and lost sets a retry; a seeded peer comes up before it
    // is due. Once due, the node asks to join and the retry is gone: its next
    // deadline is the next Join, not the past.
    let mut f = fresh(0, &[0, 1, 2]);
    let t = ms(10);
    f.observe([peer(1, 0, t), peer(2, 0, t)]);
    f.handle_timeout(t);
    deliver(&mut f, t, 1, &reach(&[0, 1, 2]));
    deliver(&mut f, t, 2, &reach(&[0, 1, 2]));
    let refused = Msg::Nack {
        slot: Generation(0),
        promised: Ballot::ZERO,
        highest: Generation(0),
    };
    deliver(&mut f, t, 1, &refused);
    drain(&mut f);
    let retry = f.timers().seed_retry.expect("a lost seed race is retried");
    let later = retry + HB;
    f.observe([peer(1, 1, later), peer(2, 1, later)]);
    f.handle_timeout(later);
    drain(&mut f);
    assert_eq!(f.timers().seed_retry, None);
    assert!(f.poll_timeout().is_some_and(|d| d > later));
}
