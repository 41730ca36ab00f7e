//! The output queue keeps everything, even for a driver that stopped draining it.

use super::*;
use crate::types::FenceReason;

#[test]
fn a_queue_past_its_bound_drops_nothing_and_counts_the_overflow() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(1);
    let slot = Generation(1);
    // Every Prepare is answered: fill the queue well past its bound without draining.
    let total = super::super::MAX_OUTPUTS + 100;
    for round in 0..total {
        let b = ballot(u32::try_from(round).unwrap() + 1, 0);
        deliver(&mut f, t, 0, &Msg::Prepare { slot, ballot: b });
    }
    // Then the node is told a view excluding it: a Persist and a SelfFence at the end.
    let v2 = View::new(Generation(2), vec![member(0), member(2)], f.installed());
    deliver(
        &mut f,
        t,
        0,
        &Msg::Decided {
            view: v2,
            settle_us: 0,
        },
    );
    assert_eq!(f.status().output_overflows, 103);
    let out = drain(&mut f);
    assert_eq!(out.len(), total + 3);
    // The first promise is still there: nothing was dropped from the front.
    assert_eq!(
        out[0],
        send(
            0,
            Msg::Promise {
                slot,
                ballot: ballot(1, 0),
                accepted: None
            }
        )
    );
    assert_eq!(
        out[total..],
        [
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[0, 1, 2])),
                accepted: None,
            }),
            event(FenceEvent::AuthorityLost {
                generation: Generation(1)
            }),
            event(FenceEvent::SelfFence {
                reason: FenceReason::Excluded {
                    generation: Generation(2)
                }
            }),
        ]
    );
}

#[test]
#[should_panic(expected = "queued after a self-fence")]
fn queueing_after_a_self_fence_is_a_bug_caught_in_release_too() {
    let mut f = fresh(0, &[0, 1, 2]);
    f.fence_now(ms(1), FenceReason::Stalled { stall_ms: 9 });
    // No public verb can do this; the invariant holds even if a future change tried.
    f.event(FenceEvent::Left {
        generation: Generation(0),
    });
}

#[test]
#[should_panic(expected = "promise went back")]
fn a_promise_that_goes_back_is_a_bug() {
    let mut f = fresh(0, &[0, 1, 2]);
    f.promise(ballot(5, 1));
    f.promise(ballot(4, 1));
}

#[test]
#[should_panic(expected = "installed before it was persisted")]
fn a_view_installed_without_its_persist_is_a_bug() {
    let mut f = fresh(0, &[0, 1, 2]);
    f.event(FenceEvent::ViewInstalled {
        view: view(1, &[0, 1, 2]),
    });
}
