//! Authority, leases, the settle window and the client view.

use super::*;

#[test]
fn a_lease_lapses_exactly_at_the_confirmation_plus_the_lease() {
    let net = Net::seeded(&[0, 1, 2]);
    let c = net.now;
    let mut f = net.take(0);
    // Nodes 1 and 2 last confirmed our frames at `c`; nothing newer comes.
    f.observe([peer(1, 1, c), peer(2, 1, c)]);
    f.handle_timeout(c);
    drain(&mut f);
    assert_eq!(f.lease_until(), Some(c + LEASE));
    assert_eq!(f.timers().lease_end, Some(c + LEASE));
    let just_before = before(c + LEASE);
    f.handle_timeout(just_before);
    assert_eq!(without_reach(drain(&mut f)), vec![]);
    assert!(f.authority_at(just_before));
    assert!(!f.authority_at(c + LEASE));
    f.handle_timeout(c + LEASE);
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![event(FenceEvent::AuthorityLost {
            generation: Generation(1)
        })]
    );
    // A fresh confirmation from one peer (a quorum with ours) restores it.
    let later = c + LEASE + HB;
    f.observe([peer(1, 1, later)]);
    f.handle_timeout(later);
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![event(FenceEvent::AuthorityGained {
            generation: Generation(1)
        })]
    );
    assert_eq!(f.lease_until(), Some(later + LEASE));
}

#[test]
fn a_decided_view_that_excludes_a_member_reaches_clients_after_the_settle_window() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(1);
    let v1 = view(1, &[0, 1, 2]);
    let v2 = View::new(Generation(2), vec![member(0), member(1)], Some(&v1));
    // Node 0, the racer, is at generation 2 already.
    f.observe([peer(0, 2, t), down(2)]);
    deliver(
        &mut f,
        t,
        0,
        &Msg::Decided {
            view: v2.clone(),
            settle_us: 1_500_000,
        },
    );
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![
            // The generation is raised first, then the view kept.
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(1, &[0, 1, 2])),
                accepted: None,
            }),
            FenceOutput::Persist(Durable {
                highest: Generation(2),
                installed: Some(known(2, &[0, 1])),
                accepted: None,
            }),
            event(FenceEvent::ViewInstalled { view: v2.clone() }),
        ]
    );
    // Clients still see generation 1 until the window ends.
    assert_eq!(f.client_view(), Some(&v1));
    let end = t + Duration::from_millis(1500);
    assert_eq!(f.timers().settle_end, Some(end));
    f.observe([peer(0, 2, t), down(2)]);
    f.handle_timeout(before(end));
    assert_eq!(without_reach(drain(&mut f)), vec![]);
    f.handle_timeout(end);
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![event(FenceEvent::ClientView { view: v2.clone() }),]
    );
    assert_eq!(f.client_view(), Some(&v2));
}

#[test]
fn a_decided_view_that_excludes_us_fences_us() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now;
    let mut f = net.take(2);
    let v2 = View::new(
        Generation(2),
        vec![member(0), member(1)],
        Some(&view(1, &[0, 1, 2])),
    );
    deliver(
        &mut f,
        t,
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
            event(FenceEvent::AuthorityLost {
                generation: Generation(1)
            }),
            event(FenceEvent::SelfFence {
                reason: crate::types::FenceReason::Excluded {
                    generation: Generation(2)
                }
            }),
        ]
    );
}
