//! Reachability reports, the clique and catch-up.

use super::*;

#[test]
fn a_members_report_counts_only_once_it_has_held_for_peer_inactive() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now + Duration::from_millis(10);
    let mut f = net.take(0);
    f.observe([peer(1, 1, t), peer(2, 1, t)]);
    // Node 1 says it cannot hear node 2.
    let report = Msg::Reach {
        up: set(&[0, 1]),
        ports: 0,
        highest: Generation(1),
        installed: Generation(1),
    };
    deliver(&mut f, t, 1, &report);
    assert_eq!(without_reach(drain(&mut f)), vec![]);
    f.handle_timeout(before(t + INACTIVE));
    assert_eq!(without_reach(drain(&mut f)), vec![]);
    // Held for peer_inactive: the clique {0, 1} (node 2 is higher) is proposed.
    f.handle_timeout(t + INACTIVE);
    let slot = Generation(1);
    let prepare = Msg::Prepare {
        slot,
        ballot: ballot(2, 0),
    };
    assert_eq!(
        without_reach(drain(&mut f)),
        vec![
            event(FenceEvent::RaceStarted {
                slot,
                racer: n(0),
                proposal: set(&[0, 1])
            }),
            send(1, prepare.clone()),
            send(2, prepare),
        ]
    );
}

#[test]
fn a_peer_behind_our_view_is_sent_it_every_heartbeat() {
    let net = Net::seeded(&[0, 1, 2]);
    let t = net.now + Duration::from_millis(10);
    let mut f = net.take(0);
    // Node 2 restarted in the same incarnation number space but advertises 0.
    f.observe([peer(1, 1, t), peer(2, 0, t)]);
    f.handle_timeout(t);
    let decided = Msg::Decided {
        view: view(1, &[0, 1, 2]),
        settle_us: 0,
    };
    assert_eq!(without_reach(drain(&mut f)), vec![send(2, decided.clone())]);
    assert_eq!(f.timers().catch_up, Some((n(2), t + HB)));
    f.handle_timeout(t + HB);
    assert_eq!(without_reach(drain(&mut f)), vec![send(2, decided)]);
}
