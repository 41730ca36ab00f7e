//! The llt core driven in virtual time through a small test network.

mod common;

use common::{all_up, at, base_config, l, ms, n, Net, Sent, DELAY, HB, INACTIVE, TROUBLE};
use std::time::Duration;
use vigil_llt::types::{ClusterId, Incarnation, Instant, NodeId, Port};
use vigil_llt::wire::{self, FrameKey, Kind};
use vigil_llt::{DropReason, Event, LinkPriority, LinkSpec, LinkState, Llt, LltConfig, Output};

/// Nodes 0..`nodes` joined by link a (unicast) and link b (broadcast), keyed with
/// `key` if any.
fn config(nodes: u8, key: Option<FrameKey>) -> LltConfig {
    let links = vec![
        LinkSpec {
            name: "a".into(),
            priority: LinkPriority::High,
            broadcast: false,
        },
        LinkSpec {
            name: "b".into(),
            priority: LinkPriority::High,
            broadcast: true,
        },
    ];
    let mut cfg = base_config((0..nodes).map(NodeId).collect(), links);
    cfg.keys = key.into_iter().collect();
    cfg
}

/// Nodes 0..`count`, in slots 0..`count`.
fn cluster(count: u8, key: Option<FrameKey>) -> Net {
    Net::new(&config(count, key))
}

#[test]
fn cluster_comes_up_after_listening_and_hysteresis() {
    let mut net = cluster(3, None);
    net.run_until(at(ms(250)));
    assert!(net.sent.is_empty(), "nothing may be sent while listening");
    net.run_until(at(ms(1000)));
    assert!(all_up(&net));
    // Each link needs 3 fresh heartbeats. Every node starts at 300 ms having heard
    // nobody, so the first beat is a hello (it echoes no incarnation and only
    // teaches the sender's); the fresh ones follow at 400, 500 and 600 ms.
    let ups = net.events_of(
        n(0),
        |e| matches!(e, Event::PeerUp { peer, .. } if *peer == n(1)),
    );
    assert_eq!(ups, vec![at(ms(600) + DELAY)]);
    assert_eq!(
        net.drops(n(0), 0, DropReason::NoEcho),
        2,
        "one hello from each peer"
    );
}

#[test]
fn silent_peer_goes_trouble_then_down_on_time() {
    let mut net = cluster(3, None);
    net.run_until(at(ms(2000)));
    assert!(all_up(&net));
    let stop = at(ms(2000));
    net.stopped.insert(2);
    net.run_until(at(ms(4000)));
    for observer in [n(0), n(1)] {
        let trouble = net.events_of(
            observer,
            |e| matches!(e, Event::LinkTrouble { peer, .. } if *peer == n(2)),
        );
        let down = net.events_of(
            observer,
            |e| matches!(e, Event::LinkDown { peer, .. } if *peer == n(2)),
        );
        let peer_down = net.events_of(observer, |e| *e == Event::PeerDown { peer: n(2) });
        assert_eq!(trouble.len(), 2, "both links go TROUBLE");
        assert_eq!(down.len(), 2, "both links go DOWN");
        assert_eq!(peer_down.len(), 1);
        // Last heard at most one heartbeat before the stop: TROUBLE and DOWN come
        // exactly peer_trouble and peer_inactive after that, so within one heartbeat.
        for t in &trouble {
            assert!(
                *t >= stop + (TROUBLE - HB) && *t <= stop + TROUBLE + DELAY,
                "TROUBLE at {t:?}"
            );
        }
        for t in down.iter().chain(&peer_down) {
            assert!(
                *t >= stop + (INACTIVE - HB) && *t <= stop + INACTIVE + DELAY,
                "DOWN at {t:?}"
            );
        }
        assert!(!net.node(observer).peer_up(n(2)));
        assert!(net.node(observer).peer_up(n(1 - observer.0)));
    }
}

#[test]
fn losing_one_of_two_links_is_jeopardy_not_down() {
    let mut net = cluster(3, None);
    net.run_until(at(ms(2000)));
    // Links coming up one after the other at start is no jeopardy.
    assert!(net
        .events_of(n(0), |e| matches!(e, Event::JeopardyEntered { .. }))
        .is_empty());
    net.cut_both(n(0), n(1), 1);
    net.run_until(at(ms(4000)));
    assert_eq!(net.link_state(n(0), n(1), 1), LinkState::Down);
    assert_eq!(net.link_state(n(0), n(1), 0), LinkState::Up);
    assert!(net.nodes[0].peer_up(n(1)));
    assert!(net.nodes[1].peer_up(n(0)));
    let link_down = net.events_of(n(0), |e| matches!(e, Event::LinkDown { .. }));
    let jeopardy = net.events_of(n(0), |e| {
        *e == Event::JeopardyEntered {
            peer: n(1),
            link: l(0),
        }
    });
    assert_eq!(link_down.len(), 1);
    assert_eq!(jeopardy, link_down);
    assert!(net
        .events_of(n(0), |e| matches!(e, Event::PeerDown { .. }))
        .is_empty());
    // Node 2 still has both links to everyone.
    assert!(net.nodes[2].status().peers.iter().all(|p| !p.jeopardy));
    // Losing the last link makes the peer down.
    net.cut_both(n(0), n(1), 0);
    net.run_until(at(ms(6000)));
    assert_eq!(
        net.events_of(n(0), |e| *e == Event::PeerDown { peer: n(1) })
            .len(),
        1
    );
}

#[test]
fn a_returning_link_needs_the_hysteresis_count() {
    let mut net = cluster(2, None);
    net.run_until(at(ms(2000)));
    net.events.clear();
    net.cut_both(n(0), n(1), 1);
    net.run_until(at(ms(3000)));
    assert_eq!(net.link_state(n(0), n(1), 1), LinkState::Down);
    // Let exactly one heartbeat through, then cut again: not enough to come up.
    net.heal_both(n(0), n(1), 1);
    net.run_until(at(ms(3050)));
    net.cut_both(n(0), n(1), 1);
    net.run_until(at(ms(3600)));
    assert_eq!(net.link_state(n(0), n(1), 1), LinkState::Down);
    let link1_up = |e: &Event| matches!(e, Event::LinkUp { link, .. } if *link == l(1));
    assert!(net.events_of(n(0), link1_up).is_empty());
    // Healed for good: UP only after 3 consecutive heartbeats.
    let healed = at(ms(4000));
    net.run_until(healed);
    net.heal_both(n(0), n(1), 1);
    net.run_until(at(ms(5000)));
    let ups = net.events_of(n(0), link1_up);
    assert_eq!(ups.len(), 1);
    assert!(
        ups[0] >= healed + HB * 2,
        "came up at {:?}, before 3 heartbeats",
        ups[0]
    );
    assert!(ups[0] <= healed + HB * 3 + DELAY);
    assert_eq!(
        net.events_of(n(0), |e| matches!(e, Event::JeopardyCleared { .. })),
        ups
    );
}

#[test]
fn heartbeats_keep_the_clock_when_woken_late() {
    let mut cfg = config(2, None);
    cfg.listen_window = Duration::ZERO;
    let mut node = Llt::new(cfg, n(0), Incarnation(5), Instant::ZERO, 0).unwrap();
    let mut beats = Vec::new();
    // Wake up late every time (37 ms after each deadline).
    for _ in 0..10 {
        let due = node.poll_timeout().unwrap();
        let now = due + ms(37);
        node.handle_timeout(now);
        while let Some(o) = node.poll_output() {
            if let Output::Transmit(t) = o {
                if t.link == l(0) {
                    beats.push(now);
                }
            }
        }
    }
    // Deadlines stay on the 100 ms grid: 0, 100, 200, ... (each woken 37 ms late).
    let expect: Vec<Instant> = (0..10).map(|k| at(HB * k + ms(37))).collect();
    assert_eq!(beats, expect);
}

#[test]
fn bad_frames_are_dropped_and_counted() {
    let key = FrameKey::from_material(b"the cluster key, 32 bytes or so");
    let mut net = cluster(3, Some(key.clone()));
    // Half-way between beats, so the captured frame has been delivered.
    net.run_until(at(ms(2050)));
    assert!(all_up(&net));
    let now = net.now;
    let real = net.capture(n(1), n(0), 0);
    let accepted_before = net.nodes[0].status().links[0].stats.frames_accepted;

    // Replay: a frame node 0 already accepted.
    net.nodes[0].handle_frame(now, l(0), None, &real);
    assert_eq!(net.drops(n(0), 0, DropReason::Replay), 1);

    // Truncated at several points.
    for cut in [0, 3, 10, 65, real.len() - 1] {
        net.nodes[0].handle_frame(now, l(0), None, &real[..cut]);
    }
    assert_eq!(net.drops(n(0), 0, DropReason::Truncated), 5);

    // Garbage.
    net.nodes[0].handle_frame(
        now,
        l(0),
        None,
        b"GET / HTTP/1.1\r\n\r\nnot a frame, really",
    );
    assert_eq!(net.drops(n(0), 0, DropReason::BadMagic), 1);

    let mut h = wire::decode(&real).unwrap().header;
    h.seq += 1_000;
    // Forged: right everything, wrong key; and unsigned in a keyed cluster.
    let forged = wire::encode(
        &h,
        &[],
        Some(&FrameKey {
            id: key.id,
            key: wire::derive_key(b"not the cluster key"),
        }),
    );
    net.nodes[0].handle_frame(now, l(0), None, &forged);
    net.nodes[0].handle_frame(now, l(0), None, &wire::encode(&h, &[], None));
    assert_eq!(net.drops(n(0), 0, DropReason::Auth), 2);
    // A key this node does not hold.
    let other_key = FrameKey::from_material(b"not the cluster key");
    net.nodes[0].handle_frame(now, l(0), None, &wire::encode(&h, &[], Some(&other_key)));
    assert_eq!(net.drops(n(0), 0, DropReason::UnknownKey), 1);

    // Another cluster.
    let mut other = h;
    other.cluster = ClusterId(8);
    net.nodes[0].handle_frame(now, l(0), None, &wire::encode(&other, &[], Some(&key)));
    assert_eq!(net.drops(n(0), 0, DropReason::WrongCluster), 1);

    // Stale incarnation of node 1, correctly signed.
    let mut stale = h;
    stale.incarnation = Incarnation(h.incarnation.0 - 1);
    net.nodes[0].handle_frame(now, l(0), None, &wire::encode(&stale, &[], Some(&key)));
    assert_eq!(net.drops(n(0), 0, DropReason::StaleIncarnation), 1);

    // Claims link 1 while arriving on link 0.
    let mut wrong_link = h;
    wrong_link.link = l(1);
    let bytes = wire::encode(&wrong_link, &[], Some(&key));
    net.nodes[0].handle_frame(now, l(0), None, &bytes);
    assert_eq!(net.drops(n(0), 0, DropReason::WrongLink), 1);

    // Unknown node; a version from the future; a reserved flag bit set.
    let mut unknown = h;
    unknown.src = n(9);
    net.nodes[0].handle_frame(now, l(0), None, &wire::encode(&unknown, &[], Some(&key)));
    assert_eq!(net.drops(n(0), 0, DropReason::UnknownNode), 1);
    let mut v2 = real.clone();
    v2[2] = 3;
    net.nodes[0].handle_frame(now, l(0), None, &v2);
    assert_eq!(net.drops(n(0), 0, DropReason::BadVersion), 1);
    let mut flags = real.clone();
    flags[4] |= 0x80;
    net.nodes[0].handle_frame(now, l(0), None, &flags);
    assert_eq!(net.drops(n(0), 0, DropReason::Malformed), 1);

    let st = net.nodes[0].status();
    // 16 bad frames, and the two hellos of the start.
    assert_eq!(st.links[0].stats.drops.no_echo, 2);
    assert_eq!(st.links[0].stats.drops.total(), 16 + 2);
    assert_eq!(
        st.links[0].stats.frames_accepted, accepted_before,
        "no bad frame accepted"
    );
    // And nothing was disturbed.
    net.run_until(at(ms(4000)));
    assert!(all_up(&net));
    assert!(net
        .events_of(n(0), |e| matches!(
            e,
            Event::PeerDown { .. } | Event::LinkDown { .. }
        ))
        .is_empty());
}

#[test]
fn a_restarted_peer_is_a_new_incarnation_and_old_frames_are_stale() {
    let mut net = cluster(2, None);
    net.run_until(at(ms(2000)));
    let old_frame = net.capture(n(1), n(0), 0);
    // Node 1 restarts quickly with a higher incarnation.
    net.nodes[1] = Llt::new(config(2, None), n(1), Incarnation(5000), net.now, 9).unwrap();
    net.run_until(at(ms(3000)));
    let restarted: Vec<&Event> = net
        .events
        .iter()
        .filter(|(_, i, e)| *i == n(0) && matches!(e, Event::PeerRestarted { .. }))
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        restarted,
        vec![&Event::PeerRestarted {
            peer: n(1),
            old: Incarnation(1001),
            new: Incarnation(5000)
        }]
    );
    assert!(net
        .events_of(n(0), |e| matches!(e, Event::PeerDown { .. }))
        .is_empty());
    let now = net.now;
    net.nodes[0].handle_frame(now, l(0), None, &old_frame);
    assert_eq!(net.drops(n(0), 0, DropReason::StaleIncarnation), 1);
}

#[test]
fn a_second_process_with_a_live_node_id_refuses_to_start() {
    let mut net = cluster(3, None);
    net.run_until(at(ms(2000)));
    // An impostor for node 1 with its own incarnation, on a segment where it hears
    // node 1's broadcast frames.
    let mut impostor = Llt::new(config(3, None), n(1), Incarnation(9999), net.now, 3).unwrap();
    let mut h = wire::decode(&net.capture(n(1), n(0), 0)).unwrap().header;
    h.dst = None;
    impostor.handle_frame(net.now, l(0), None, &wire::encode(&h, &[], None));
    assert!(impostor.refused());
    let mut out = Vec::new();
    impostor.handle_timeout(net.now + ms(500));
    while let Some(o) = impostor.poll_output() {
        out.push(o);
    }
    assert_eq!(
        out,
        vec![Output::Event(Event::DuplicateNodeId {
            link: l(0),
            incarnation: Incarnation(1001)
        })]
    );
    assert_eq!(impostor.poll_timeout(), None);
}

#[test]
fn broadcast_heartbeats_let_a_silent_starter_find_its_twin() {
    let mut net = cluster(3, None);
    net.run_until(at(ms(2000)));
    // Listening for its window, the impostor hears what goes to every node on the
    // broadcast link (b), and nothing addressed to others.
    let mut impostor = Llt::new(config(3, None), n(1), Incarnation(9999), net.now, 3).unwrap();
    let from = net.sent.len();
    net.run_until(at(ms(2300)));
    let heard: Vec<Vec<u8>> = net.sent[from..]
        .iter()
        .filter(|s| {
            s.from == n(1)
                && s.reaches(n(0))
                && s.link == l(1)
                && wire::decode(&s.bytes).unwrap().header.dst.is_none()
        })
        .map(|s| s.bytes.clone())
        .collect();
    assert!(
        !heard.is_empty(),
        "node 1 broadcast within the listening window"
    );
    for b in &heard {
        impostor.handle_frame(net.now, l(1), None, b);
    }
    assert!(impostor.refused());
    // The live nodes accept broadcast heartbeats as liveness and are not disturbed.
    assert!(all_up(&net));
}

#[test]
fn port_data_goes_over_every_link_and_is_delivered_once() {
    let mut net = cluster(2, None);
    net.run_until(at(ms(2000)));
    let now = net.now;
    net.nodes[0].send(now, n(1), Port(b'c'), b"hello").unwrap();
    let before = net.sent.len();
    net.drain(0);
    let data_frames = net.sent[before..]
        .iter()
        .filter(|s| wire::decode(&s.bytes).unwrap().header.kind == Kind::Data)
        .count();
    assert_eq!(data_frames, 2);
    net.run_until(at(ms(2100)));
    assert_eq!(
        net.delivered,
        vec![(n(1), n(0), Port(b'c'), b"hello".to_vec())]
    );
    let dups: u64 = net.nodes[1].status().peers[0]
        .links
        .iter()
        .map(|l| l.stats.data_duplicates)
        .sum();
    assert_eq!(dups, 1);
    // With one link cut the message still arrives, once.
    net.cut_both(n(0), n(1), 0);
    net.nodes[0]
        .send(net.now, n(1), Port(b'c'), b"again")
        .unwrap();
    net.run_until(at(ms(2200)));
    assert_eq!(net.delivered.len(), 2);
}

#[test]
fn rtt_is_measured_per_link() {
    let mut net = cluster(2, None);
    net.run_until(at(ms(2000)));
    let st = net.nodes[0].status();
    for link in &st.peers[0].links {
        // One-way delay 1 ms each way; the echo's hold time is subtracted.
        assert_eq!(link.rtt_us, Some(2000), "link {}", link.name);
    }
}

/// Plays every recorded frame addressed to `to`, in the order sent and 1 ms apart,
/// into `to`'s current core.
fn replay_into(net: &mut Net, recorded: &[Sent], to: usize) {
    let mut t = net.now;
    for s in recorded {
        if !s.reaches(net.ids[to]) {
            continue;
        }
        t += ms(1);
        net.nodes[to].handle_timeout(t);
        net.nodes[to].handle_frame(t, s.link, None, &s.bytes);
    }
    net.now = t;
    net.drain(to);
}

#[test]
fn frames_recorded_before_a_restart_count_for_nothing() {
    let key = FrameKey::from_material(b"the cluster key, 32 bytes or so");
    let mut net = cluster(3, Some(key.clone()));
    net.run_until(at(ms(3000)));
    assert!(all_up(&net));
    // Everything the peers ever sent to node 0, with valid MACs.
    let recorded: Vec<_> = net
        .sent
        .iter()
        .filter(|s| s.reaches(n(0)))
        .cloned()
        .collect();
    assert!(recorded.len() > 50);
    // Node 0 restarts (a new incarnation) cut off from its peers, and an attacker
    // plays the recording to it: hellos, then frames that echo the old incarnation.
    net.stopped.insert(1);
    net.stopped.insert(2);
    net.nodes[0] = Llt::new(config(3, Some(key)), n(0), Incarnation(5000), net.now, 9).unwrap();
    net.events.clear();
    net.delivered.clear();
    net.run_until(net.now + ms(400));
    replay_into(&mut net, &recorded, 0);
    replay_into(&mut net, &recorded, 0);
    let st = net.nodes[0].status();
    assert!(
        st.peers.iter().all(|p| !p.up && p.incarnation.is_none()),
        "a recording made a peer up or confirmed: {:?}",
        st.peers
    );
    assert!(net
        .events_of(n(0), |e| matches!(e, Event::PeerUp { .. }))
        .is_empty());
    assert!(
        net.delivered.is_empty(),
        "port data delivered from a recording"
    );
    let stale =
        net.drops(n(0), 0, DropReason::StaleEcho) + net.drops(n(0), 1, DropReason::StaleEcho);
    assert!(
        stale > 40,
        "only {stale} replayed frames counted as stale_echo"
    );
}

#[test]
fn the_freshness_sabotage_lets_a_recording_through() {
    // The same attack with the check off: the checker-facing sabotage must really
    // break something, or the simulator's test of it proves nothing.
    let key = FrameKey::from_material(b"the cluster key, 32 bytes or so");
    let mut net = cluster(3, Some(key.clone()));
    net.run_until(at(ms(3000)));
    let recorded: Vec<_> = net
        .sent
        .iter()
        .filter(|s| s.reaches(n(0)))
        .cloned()
        .collect();
    net.stopped.insert(1);
    net.stopped.insert(2);
    let mut cfg = config(3, Some(key));
    cfg.sabotage_stale_frames = true;
    net.nodes[0] = Llt::new(cfg, n(0), Incarnation(5000), net.now, 9).unwrap();
    net.run_until(net.now + ms(400));
    replay_into(&mut net, &recorded, 0);
    assert!(net.nodes[0].status().peers.iter().any(|p| p.up));
}

#[test]
fn a_restarted_peer_is_confirmed_by_its_first_fresh_frame() {
    let mut net = cluster(3, None);
    net.run_until(at(ms(2000)));
    assert!(all_up(&net));
    // Node 2 restarts: its new core heard node 0 while listening, so its first
    // frames already echo node 0's incarnation and node 0 sees a restart.
    net.nodes[2] = Llt::new(config(3, None), n(2), Incarnation(7000), net.now, 5).unwrap();
    net.run_until(net.now + ms(600));
    let restarts = net.events_of(n(0), |e| {
        matches!(e, Event::PeerRestarted { peer, new, .. } if *peer == n(2) && *new == Incarnation(7000))
    });
    assert_eq!(restarts.len(), 1);
    net.run_until(net.now + ms(400));
    assert!(all_up(&net));
}

#[test]
fn keys_rotate_without_losing_a_frame() {
    let a = FrameKey::from_material(b"key A: 32 bytes of key material..");
    let b = FrameKey::from_material(b"key B: 32 bytes of key material..");
    assert_ne!(a.id, b.id);
    let mut net = cluster(3, Some(a.clone()));
    net.run_until(at(ms(2000)));
    assert!(all_up(&net));
    // Step 1, node by node: accept B beside A (still sending with A).
    for i in 0..3 {
        net.nodes[i].set_keys(vec![a.clone(), b.clone()]);
        net.run_until(net.now + ms(150));
    }
    // Step 2, node by node: send with B, still accept A.
    for i in 0..3 {
        net.nodes[i].set_keys(vec![b.clone(), a.clone()]);
        net.run_until(net.now + ms(150));
    }
    // Step 3: drop A.
    for i in 0..3 {
        net.nodes[i].set_keys(vec![b.clone()]);
        net.run_until(net.now + ms(150));
    }
    net.run_until(net.now + ms(1000));
    assert!(all_up(&net));
    for i in 0..3 {
        for link in 0..2 {
            let d = net.nodes[i].status().links[link].stats.drops;
            assert_eq!(d.auth + d.unknown_key, 0, "node {i} link {link}: {d:?}");
        }
    }
    assert!(net
        .events
        .iter()
        .all(|(_, _, e)| !matches!(e, Event::LinkTrouble { .. })));
    // A node still on A alone now hears nothing it accepts.
    net.nodes[1].set_keys(vec![a]);
    net.run_until(net.now + ms(200));
    assert!(net.drops(n(1), 0, DropReason::UnknownKey) > 0);
}

/// A caller that stops draining loses nothing: past its bound the queue keeps every
/// output and counts the overflow, and what it finally yields is exactly what a twin
/// core, drained after every step, yielded.
#[test]
fn an_undrained_output_queue_drops_nothing_and_counts_the_overflow() {
    let mut drained = Llt::new(config(3, None), n(0), Incarnation(5), Instant::ZERO, 0).unwrap();
    let mut kept = drained.clone();
    let mut seen = Vec::new();
    let mut steps = 0;
    while kept.status().output_overflows == 0 {
        let t = drained.poll_timeout().expect("heartbeats keep running");
        drained.handle_timeout(t);
        kept.handle_timeout(t);
        seen.extend(std::iter::from_fn(|| drained.poll_output()));
        steps += 1;
        assert!(steps < 1_000_000, "the queue never passed its bound");
    }
    // Some more, to be sure the overflow keeps being kept.
    for _ in 0..10 {
        let t = drained.poll_timeout().expect("heartbeats keep running");
        drained.handle_timeout(t);
        kept.handle_timeout(t);
        seen.extend(std::iter::from_fn(|| drained.poll_output()));
    }
    assert_eq!(drained.status().output_overflows, 0);
    let overflows = kept.status().output_overflows;
    let all: Vec<Output> = std::iter::from_fn(|| kept.poll_output()).collect();
    assert!(overflows > 1);
    assert_eq!(all.len(), seen.len());
    assert!(all == seen, "the undrained queue lost or reordered outputs");
}

#[test]
fn a_low_priority_link_keeps_the_high_pace_for_a_peer_no_high_link_reaches() {
    let mut cfg = config(2, None);
    cfg.links[1].priority = LinkPriority::Low;
    cfg.links[1].broadcast = false;
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(3000)));
    assert!(all_up(&net));
    // Both links UP: the low-priority link beats every 250 ms.
    let slow = net.beats(n(0), n(1), 1, at(ms(2000)), at(ms(3000)));
    assert!(
        (3..=5).contains(&slow),
        "{slow} low-priority beats in 1 s beside an UP high link"
    );
    // The high-priority link fails: once it is TROUBLE (400 ms), the low one beats
    // every heartbeat (100 ms) for that peer.
    net.cut_both(n(0), n(1), 0);
    net.run_until(at(ms(5000)));
    assert_eq!(net.link_state(n(0), n(1), 0), LinkState::Down);
    assert_eq!(net.link_state(n(0), n(1), 1), LinkState::Up);
    let fast = net.beats(n(0), n(1), 1, at(ms(4000)), at(ms(5000)));
    assert!(
        (9..=11).contains(&fast),
        "{fast} low-priority beats in 1 s with the high link down"
    );
    // The high link comes back (three beats of hysteresis): the slow pace again.
    net.heal_both(n(0), n(1), 0);
    net.run_until(at(ms(7000)));
    assert_eq!(net.link_state(n(0), n(1), 0), LinkState::Up);
    let slow = net.beats(n(0), n(1), 1, at(ms(6000)), at(ms(7000)));
    assert!(
        (3..=5).contains(&slow),
        "{slow} low-priority beats in 1 s after the high link returned"
    );
}

#[test]
fn a_confirmation_never_vouches_for_a_frame_the_confirmer_did_not_count() {
    // Both links low priority and link b an Ethernet-style broadcast link: the
    // broadcast goes out on every `heartbeat_lowpri` round, between the promoted
    // unicast beats, and echoes nobody's incarnation, so it is not counted as heard.
    // A peer's confirmation (what the lease rests on) must never name a frame later
    // than the last one it counted (what the racer's settle window rests on).
    let mut cfg = config(2, None);
    for spec in &mut cfg.links {
        spec.priority = LinkPriority::Low;
    }
    cfg.heartbeat_lowpri = ms(130);
    let mut net = Net::new(&cfg);
    // Node 1 starts 45 ms later, so its frames do not arrive in the same instant as
    // node 0's (which would hide a confirmation running ahead of what was counted).
    net.nodes[1] = Llt::new(cfg, n(1), Incarnation(1001), at(ms(45)), 1).unwrap();
    for i in 0..2u8 {
        net.nodes[usize::from(i)].set_confirm(n(1 - i), true);
    }
    let mut checked = 0;
    let mut t = at(ms(1000));
    while t < at(ms(6000)) {
        net.run_until(t);
        for i in 0..2u8 {
            let me = usize::from(i);
            let peer = usize::from(1 - i);
            let Some((confirmed, _)) = net.nodes[me]
                .peer_summary(n(1 - i))
                .and_then(|s| s.confirmed)
            else {
                continue;
            };
            let heard = net.nodes[peer]
                .peer_summary(n(i))
                .and_then(|s| s.last_heard)
                .expect("the peer heard us: it confirmed a frame");
            // The last counted frame was sent DELAY before it arrived.
            assert!(
                confirmed + DELAY <= heard,
                "node {i} holds a confirmation of its frame sent at {confirmed:?}, but node {} \
                 last counted a frame of it that arrived at {heard:?}",
                1 - i
            );
            checked += 1;
        }
        t += ms(1);
    }
    assert!(checked > 5000, "only {checked} checks");
    assert!(all_up(&net));
    assert!(
        net.drops(n(0), 1, DropReason::NoEcho) > 10,
        "no broadcast was sent"
    );
}
