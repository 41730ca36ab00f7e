//! The acceptor: `Prepare` → `Promise`/`Nack`, `Accept` → `Persist`, `Accepted`.

use super::*;

/// Node 1 of the seeded view {0, 1, 2} at generation 1, as the harness left it.
fn member_one() -> (Fence, Instant) {
    let net = Net::seeded(&[0, 1, 2]);
    let now = net.now;
    (net.take(1), now)
}

#[test]
fn a_member_answers_prepare_with_a_promise_of_what_it_accepted() {
    let (mut f, now) = member_one();
    let slot = Generation(1);
    // Nothing accepted yet: the promise carries nothing.
    deliver(
        &mut f,
        now,
        0,
        &Msg::Prepare {
            slot,
            ballot: ballot(5, 0),
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![send(
            0,
            Msg::Promise {
                slot,
                ballot: ballot(5, 0),
                accepted: None
            }
        )]
    );
    // After accepting a value, a higher ballot's promise carries it.
    let value = View::new(Generation(2), vec![member(0), member(1)], f.installed());
    deliver(&mut f, now, 0, &accept(slot, ballot(5, 0), value.clone()));
    drain(&mut f);
    deliver(
        &mut f,
        now,
        2,
        &Msg::Prepare {
            slot,
            ballot: ballot(6, 2),
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![send(
            2,
            Msg::Promise {
                slot,
                ballot: ballot(6, 2),
                accepted: Some((ballot(5, 0), value))
            }
        )]
    );
    // A lower ballot than promised is refused with the promise and the highest
    // generation seen.
    deliver(
        &mut f,
        now,
        0,
        &Msg::Prepare {
            slot,
            ballot: ballot(5, 0),
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![send(
            0,
            Msg::Nack {
                slot,
                promised: ballot(6, 2),
                highest: Generation(2)
            }
        )]
    );
}

#[test]
fn an_accepted_value_is_persisted_before_accepted_is_sent() {
    let (mut f, now) = member_one();
    let slot = Generation(1);
    let value = View::new(Generation(2), vec![member(0), member(1)], f.installed());
    deliver(&mut f, now, 0, &accept(slot, ballot(5, 0), value));
    assert_eq!(
        drain(&mut f),
        vec![
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[0, 1, 2])),
                accepted: Some(known(2, &[0, 1])),
            }),
            // Node 2, which the value leaves out, was last heard just now.
            send(
                0,
                Msg::Accepted {
                    slot,
                    ballot: ballot(5, 0),
                    heard_ago_us: vec![(n(2), 0)]
                }
            ),
        ]
    );
    // From then on it confirms nobody: the race may decide without it.
    assert_eq!(f.confirm_set(), NodeSet::EMPTY);
}

#[test]
fn an_accept_below_the_promise_is_nacked_and_persists_nothing() {
    let (mut f, now) = member_one();
    let slot = Generation(1);
    deliver(
        &mut f,
        now,
        2,
        &Msg::Prepare {
            slot,
            ballot: ballot(7, 2),
        },
    );
    drain(&mut f);
    let value = View::new(Generation(2), vec![member(0), member(1)], f.installed());
    deliver(&mut f, now, 0, &accept(slot, ballot(5, 0), value));
    assert_eq!(
        drain(&mut f),
        vec![send(
            0,
            Msg::Nack {
                slot,
                promised: ballot(7, 2),
                highest: Generation(1)
            }
        )]
    );
    assert_eq!(f.status().durable.accepted, None);
}

/// Node 3 restarted unseeded; it keeps the view {1, 2, 3} of generation 1.
fn restarted_three() -> Fence {
    let kept = Durable {
        highest: Generation(1),
        installed: Some(known(1, &[1, 2, 3])),
        accepted: None,
    };
    Fence::new(cfg(&[0, 1, 2, 3]), n(3), inc(3), ms(0), kept)
}

#[test]
fn a_seed_from_a_group_lacking_a_quorum_of_the_kept_view_is_nacked_and_persists_nothing() {
    let mut f = restarted_three();
    let seed = view(2, &[0, 3]);
    let slot = Generation(0);
    deliver(&mut f, ms(10), 0, &accept(slot, ballot(1, 0), seed.clone()));
    assert_eq!(
        drain(&mut f),
        vec![send(
            0,
            Msg::Nack {
                slot,
                promised: Ballot::ZERO,
                highest: Generation(1)
            }
        )]
    );
    assert_eq!(
        f.status().durable,
        Durable {
            highest: Generation(1),
            installed: Some(known(1, &[1, 2, 3])),
            accepted: None
        }
    );
    // By hand (`gabconfig -x`) the operator overrides the view: accepted, persisted
    // first; node 1 and 2, left out, may hold a lease confirmed by the node's
    // earlier incarnation up to now (0 µs ago), and so may node 3 itself (a
    // settle window its earlier incarnation was running).
    deliver(
        &mut f,
        ms(20),
        0,
        &Msg::Accept {
            slot,
            ballot: ballot(1, 0),
            value: seed,
            manual: true,
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[1, 2, 3])),
                accepted: Some(known(2, &[0, 3])),
            }),
            send(
                0,
                Msg::Accepted {
                    slot,
                    ballot: ballot(1, 0),
                    heard_ago_us: vec![(n(1), 0), (n(2), 0), (n(3), 0)]
                }
            ),
        ]
    );
}

#[test]
fn a_seed_from_a_group_holding_a_quorum_of_the_kept_view_is_accepted() {
    let mut f = restarted_three();
    let seed = view(2, &[2, 3]);
    let slot = Generation(0);
    deliver(&mut f, ms(10), 2, &accept(slot, ballot(1, 2), seed));
    assert_eq!(
        drain(&mut f),
        vec![
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[1, 2, 3])),
                accepted: Some(known(2, &[2, 3])),
            }),
            send(
                2,
                Msg::Accepted {
                    slot,
                    ballot: ballot(1, 2),
                    heard_ago_us: vec![(n(1), 0), (n(3), 0)]
                }
            ),
        ]
    );
}

#[test]
fn a_prepare_for_an_older_slot_is_answered_with_the_view_that_decided_it() {
    let (mut f, now) = member_one();
    deliver(
        &mut f,
        now,
        0,
        &Msg::Prepare {
            slot: Generation(0),
            ballot: ballot(9, 0),
        },
    );
    assert_eq!(
        drain(&mut f),
        vec![send(
            0,
            Msg::Decided {
                view: view(1, &[0, 1, 2]),
                settle_us: 0
            }
        )]
    );
}

/// A value that drops the acceptor itself: its own lease may rest on confirmers
/// outside the accepting quorum, so it reports itself as heard just now and the
/// settle window covers its lease (the hole the model checker found).
#[test]
fn an_acceptor_dropped_by_the_value_reports_itself_for_the_settle_window() {
    let (mut f, now) = member_one();
    let slot = Generation(1);
    let value = View::new(Generation(2), vec![member(0), member(2)], f.installed());
    deliver(&mut f, now, 0, &accept(slot, ballot(5, 0), value));
    let out = drain(&mut f);
    let heard = out.iter().find_map(|o| match o {
        FenceOutput::Send {
            msg: Msg::Accepted { heard_ago_us, .. },
            ..
        } => Some(heard_ago_us.clone()),
        _ => None,
    });
    assert_eq!(heard, Some(vec![(n(1), 0)]), "{out:?}");
}

#[test]
fn a_seed_naming_an_earlier_process_of_this_node_is_nacked_and_persists_nothing() {
    // Node 2 restarted after its earlier process (incarnation 99) failed to persist
    // a seed that named it; the others kept that value and a racer offers it again.
    let mut f = fresh(2, &[0, 1, 2]);
    let old = Member {
        incarnation: Incarnation(99),
        ..member(2)
    };
    let value = View::new(Generation(1), vec![member(0), member(1), old], None);
    let slot = Generation(0);
    deliver(&mut f, ms(10), 0, &accept(slot, ballot(1, 0), value));
    assert_eq!(
        drain(&mut f),
        vec![send(
            0,
            Msg::Nack {
                slot,
                promised: Ballot::ZERO,
                highest: Generation(0)
            }
        )]
    );
    assert_eq!(f.status().durable, Durable::default());
}

/// An `Accept` for `slot` at `ballot` carrying `value` (not a manual seed).
fn accept(slot: Generation, ballot: Ballot, value: View) -> Msg {
    Msg::Accept {
        slot,
        ballot,
        value,
        manual: false,
    }
}
