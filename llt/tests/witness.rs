//! The witness link: one link of its own joins the nodes to the witness (node 63),
//! with its own keys and timers, and carries nothing else.

mod common;

use common::{all_up, at, base_config, drop_count, l, ms, n, Net, Sent, DELAY, HB, INACTIVE};
use std::time::Duration;
use vigil_llt::types::{ClusterId, Generation, Incarnation, Instant, LinkId, NodeId, Port};
use vigil_llt::wire::{self, FrameKey, Header, Kind};
use vigil_llt::{
    DropReason, Event, LinkPriority, LinkSpec, LinkState, Llt, LltConfig, WitnessLink,
};

/// The witness link's timers, chosen so that none of the cluster's would do: its
/// beats are further apart than the cluster's `peer_trouble`.
const W_HB: Duration = Duration::from_millis(500);
const W_TROUBLE: Duration = Duration::from_millis(1500);
const W_INACTIVE: Duration = Duration::from_millis(3000);
const WITNESS: NodeId = NodeId(63);

fn spec(name: &str, priority: LinkPriority) -> LinkSpec {
    LinkSpec {
        name: name.into(),
        priority,
        broadcast: false,
    }
}

/// Nodes 0..`nodes` and the witness; `links` are the links' names, all high
/// priority, and the last one is the witness link.
fn config(nodes: u8, links: &[&str]) -> LltConfig {
    let specs = links
        .iter()
        .map(|name| spec(name, LinkPriority::High))
        .collect();
    let mut ids: Vec<NodeId> = (0..nodes).map(NodeId).collect();
    ids.push(WITNESS);
    let mut cfg = base_config(ids, specs);
    cfg.witness = Some(WitnessLink {
        id: WITNESS,
        link: l(links.len() as u8 - 1),
        keys: Vec::new(),
        heartbeat: W_HB,
        peer_trouble: W_TROUBLE,
        peer_inactive: W_INACTIVE,
    });
    cfg
}

fn witness_mut(cfg: &mut LltConfig) -> &mut WitnessLink {
    cfg.witness.as_mut().expect("a witness config")
}

/// Whether a frame between `a` and `b` belongs on `link` of `links`: the witness
/// link for the witness's frames, the others for the nodes'.
fn belongs(a: NodeId, b: NodeId, link: LinkId, links: usize) -> bool {
    let witness_link = l(links as u8 - 1);
    (link == witness_link) == (a == WITNESS || b == WITNESS)
}

#[test]
fn nodes_beat_on_their_links_and_the_witness_on_its_own() {
    let cfg = config(2, &["a", "w"]);
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(5000)));
    assert!(all_up(&net), "{:?}", net.nodes[0].status().peers);
    for id in [n(0), n(1), WITNESS] {
        let ups = net.events_of(id, |e| matches!(e, Event::PeerUp { .. }));
        assert_eq!(ups.len(), 2, "{id} saw both peers come up once");
    }
    // No link ever went TROUBLE: the witness link's slow beats are held to its own
    // timers, not the cluster's.
    assert!(net
        .events
        .iter()
        .all(|(_, _, e)| !matches!(e, Event::LinkTrouble { .. } | Event::LinkDown { .. })));
    // Every frame went on the link that carries its pair, and both links were used.
    assert!(net.sent.len() > 50);
    for s in &net.sent {
        let to = s.to.expect("no broadcast link");
        assert!(
            belongs(s.from, to, s.link, 2),
            "{} -> {to} on link {}",
            s.from,
            s.link
        );
    }
    let on = |link: u8| net.sent.iter().filter(|s| s.link == l(link)).count();
    assert!(on(0) > 0 && on(1) > 0);
    for id in [n(0), n(1), WITNESS] {
        for link in 0..2 {
            let d = net.drops(id, link, DropReason::WrongLink);
            assert_eq!(d, 0, "{id} dropped {d} frames as wrong_link on link {link}");
        }
    }
    // Paces: 100 ms between nodes, 500 ms to and from the witness.
    let (from, to) = (at(ms(3000)), at(ms(5000)));
    assert_eq!(net.beats(n(0), n(1), 0, from, to), 20);
    assert_eq!(net.beats(n(0), WITNESS, 1, from, to), 4);
    assert_eq!(net.beats(WITNESS, n(1), 1, from, to), 4);
    // What carries what, as the API and lltstat see it.
    let node0 = net.node(n(0));
    assert!(node0.carries(l(0), n(1)) && !node0.carries(l(1), n(1)));
    assert!(!node0.carries(l(0), WITNESS) && node0.carries(l(1), WITNESS));
    let witness = net.node(WITNESS);
    assert!(witness.carries(l(1), n(0)) && !witness.carries(l(0), n(0)));
    assert!(!node0.carries(l(2), n(1)), "no such link");
    let st = node0.status();
    let carried = |peer: NodeId| -> Vec<bool> {
        let p = st.peers.iter().find(|p| p.id == peer).unwrap();
        p.links.iter().map(|pl| pl.carried).collect()
    };
    assert_eq!(carried(n(1)), vec![true, false]);
    assert_eq!(carried(WITNESS), vec![false, true]);
    assert_eq!(net.link_state(n(0), WITNESS, 0), LinkState::Down);
    assert_eq!(net.link_state(n(0), WITNESS, 1), LinkState::Up);
}

#[test]
fn broadcasts_go_only_where_the_senders_twin_would_be() {
    let mut cfg = config(2, &["a", "w"]);
    for s in &mut cfg.links {
        s.broadcast = true;
    }
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(3000)));
    let broadcasts: Vec<&Sent> = net.sent.iter().filter(|s| s.to.is_none()).collect();
    let by = |id: NodeId, link: u8| {
        broadcasts
            .iter()
            .filter(|s| s.from == id && s.link == l(link))
            .count()
    };
    assert!(by(n(0), 0) > 0 && by(WITNESS, 1) > 0);
    assert_eq!(
        by(n(0), 1) + by(n(1), 1),
        0,
        "a node broadcast on the witness link"
    );
    assert_eq!(by(WITNESS, 0), 0, "the witness broadcast on a node link");
    // The witness sends nothing at all on the node link.
    assert!(net.sent.iter().all(|s| s.from != WITNESS || s.link == l(1)));
}

/// A fresh heartbeat from `src` to `dst` on `link`, echoing `echo` (the receiver's
/// incarnation), as a peer that heard the receiver would send it.
fn forge(
    src: NodeId,
    dst: NodeId,
    link: LinkId,
    echo: Incarnation,
    seq: u64,
    now: Instant,
    key: Option<&FrameKey>,
) -> Vec<u8> {
    let h = Header {
        kind: Kind::Heartbeat,
        link,
        src,
        dst: Some(dst),
        cluster: ClusterId(7),
        incarnation: Incarnation(5000 + u64::from(src.0)),
        seq,
        generation: Generation(0),
        tx_time_us: now.as_micros().max(1),
        echo_time_us: 0,
        echo_hold_us: 0,
        echo_incarnation: echo,
        confirm: false,
    };
    wire::encode(&h, &[], key)
}

/// Node `me` of `cfg`, running at once, fed fresh heartbeats from `src` on `link`
/// every `every` for 5 s. Returns the core afterwards.
fn feed(
    cfg: &LltConfig,
    me: NodeId,
    src: NodeId,
    link: u8,
    every: Duration,
    key: Option<&FrameKey>,
) -> Llt {
    let mut cfg = cfg.clone();
    cfg.listen_window = Duration::ZERO;
    let inc = Incarnation(77);
    let mut node = Llt::new(cfg, me, inc, Instant::ZERO, 0).unwrap();
    let mut t = Instant::ZERO;
    let mut seq = 0;
    while t < at(ms(5000)) {
        seq += 1;
        node.handle_timeout(t);
        node.handle_frame(t, l(link), None, &forge(src, me, l(link), inc, seq, t, key));
        while node.poll_output().is_some() {}
        t += every;
    }
    node
}

fn peer_heard(node: &Llt, peer: NodeId) -> bool {
    let st = node.status();
    let p = st.peers.iter().find(|p| p.id == peer).unwrap();
    p.up || p.incarnation.is_some() || p.links.iter().any(|pl| pl.last_heard.is_some())
}

#[test]
fn frames_on_a_link_that_does_not_carry_their_pair_are_dropped() {
    let cfg = config(2, &["a", "w"]);
    // The forged frames are good ones: on the right link they bring the peer up.
    let node = feed(&cfg, n(0), WITNESS, 1, W_HB, None);
    assert!(node.peer_up(WITNESS));
    let node = feed(&cfg, n(0), n(1), 0, HB, None);
    assert!(node.peer_up(n(1)));
    // The witness on the node link, a node on the witness link: dropped, and they
    // teach nothing of the sender.
    let node = feed(&cfg, n(0), WITNESS, 0, HB, None);
    assert!(drop_count(&node, 0, DropReason::WrongLink) >= 50);
    assert!(!peer_heard(&node, WITNESS), "{:?}", node.status().peers);
    let node = feed(&cfg, n(0), n(1), 1, HB, None);
    assert!(drop_count(&node, 1, DropReason::WrongLink) >= 50);
    assert!(!peer_heard(&node, n(1)), "{:?}", node.status().peers);
    // The witness's own core: a node's frames on the node link count for nothing.
    let node = feed(&cfg, WITNESS, n(0), 0, HB, None);
    assert!(drop_count(&node, 0, DropReason::WrongLink) >= 50);
    assert!(!peer_heard(&node, n(0)));
    // And on the witness link they do.
    let node = feed(&cfg, WITNESS, n(0), 1, W_HB, None);
    assert!(node.peer_up(n(0)));
}

#[test]
fn the_witness_link_has_its_own_key_ring() {
    let cluster = FrameKey::from_material(b"the cluster key, 32 bytes or so");
    let witness = FrameKey::from_material(b"the witness key, 32 bytes or so");
    let mut cfg = config(2, &["a", "w"]);
    cfg.keys = vec![cluster.clone()];
    witness_mut(&mut cfg).keys = vec![witness.clone()];

    // Each link sends with its own key.
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(4000)));
    assert!(all_up(&net));
    for s in &net.sent {
        let key = wire::decode(&s.bytes).unwrap().key_id;
        let want = if s.link == l(1) {
            witness.id
        } else {
            cluster.id
        };
        assert_eq!(key, Some(want), "{} on link {}", s.from, s.link);
    }
    for id in [n(0), n(1), WITNESS] {
        for link in 0..2u8 {
            let d = net.node(id).status().links[usize::from(link)].stats.drops;
            assert_eq!(d.auth + d.unknown_key, 0, "{id} link {link}: {d:?}");
        }
    }

    // Each link accepts only its own ring.
    let node = feed(&cfg, n(0), WITNESS, 1, W_HB, Some(&witness));
    assert!(node.peer_up(WITNESS));
    let node = feed(&cfg, n(0), WITNESS, 1, W_HB, Some(&cluster));
    assert!(drop_count(&node, 1, DropReason::UnknownKey) >= 9);
    assert!(!peer_heard(&node, WITNESS));
    let node = feed(&cfg, n(0), n(1), 0, HB, Some(&witness));
    assert!(drop_count(&node, 0, DropReason::UnknownKey) >= 49);
    assert!(!peer_heard(&node, n(1)));
    // The cluster key's material under the witness key's ID fails the MAC; an
    // unsigned frame fails on a keyed witness link.
    let forged = FrameKey {
        id: witness.id,
        key: cluster.key,
    };
    let node = feed(&cfg, n(0), WITNESS, 1, W_HB, Some(&forged));
    assert!(drop_count(&node, 1, DropReason::Auth) >= 9);
    assert!(!peer_heard(&node, WITNESS));
    let node = feed(&cfg, n(0), WITNESS, 1, W_HB, None);
    assert!(drop_count(&node, 1, DropReason::Auth) >= 9);

    // An insecure witness link in a keyed cluster: no MAC there, and one there fails.
    let mut open = cfg.clone();
    witness_mut(&mut open).keys = Vec::new();
    let node = feed(&open, n(0), WITNESS, 1, W_HB, None);
    assert!(node.peer_up(WITNESS));
    let node = feed(&open, n(0), WITNESS, 1, W_HB, Some(&cluster));
    assert!(drop_count(&node, 1, DropReason::Auth) >= 9);

    // The witness ring rotates on its own; set_witness_keys leaves the cluster's.
    let next = FrameKey::from_material(b"the next witness key, 32 bytes..");
    for i in 0..3 {
        net.nodes[i].set_witness_keys(vec![witness.clone(), next.clone()]);
    }
    net.run_until(net.now + ms(1000));
    for i in 0..3 {
        net.nodes[i].set_witness_keys(vec![next.clone()]);
    }
    let from = net.sent.len();
    net.run_until(net.now + ms(2000));
    assert!(all_up(&net));
    for s in &net.sent[from..] {
        let key = wire::decode(&s.bytes).unwrap().key_id;
        let want = if s.link == l(1) { next.id } else { cluster.id };
        assert_eq!(key, Some(want));
    }
    // Without a witness it does nothing.
    let mut plain = Llt::new(
        LltConfig::with_defaults(
            ClusterId(7),
            vec![n(0), n(1)],
            vec![spec("a", LinkPriority::High)],
        ),
        n(0),
        Incarnation(3),
        Instant::ZERO,
        0,
    )
    .unwrap();
    plain.set_witness_keys(vec![next]);
    assert!(plain.config().witness.is_none());
}

#[test]
fn the_witness_link_goes_down_on_its_own_timers() {
    let cfg = config(2, &["a", "w"]);
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(4000)));
    assert!(all_up(&net));
    let stop = net.now;
    let w = net.index(WITNESS);
    net.stopped.insert(w);
    // Past the cluster's peer_inactive the witness is still up (TROUBLE at most).
    net.run_until(stop + INACTIVE + ms(200));
    assert!(net.node(n(0)).peer_up(WITNESS));
    assert_eq!(net.link_state(n(0), WITNESS, 1), LinkState::Up);
    net.run_until(stop + ms(6000));
    for node in [n(0), n(1)] {
        let trouble = net.events_of(
            node,
            |e| matches!(e, Event::LinkTrouble { peer, .. } if *peer == WITNESS),
        );
        let down = net.events_of(node, |e| {
            *e == Event::LinkDown {
                peer: WITNESS,
                link: l(1),
            }
        });
        let peer_down = net.events_of(node, |e| *e == Event::PeerDown { peer: WITNESS });
        assert_eq!(trouble.len(), 1);
        assert_eq!(down.len(), 1);
        assert_eq!(peer_down, down);
        // Last heard at most one witness heartbeat before the stop.
        assert!(
            trouble[0] >= stop + (W_TROUBLE - W_HB) && trouble[0] <= stop + W_TROUBLE + DELAY,
            "TROUBLE at {:?}",
            trouble[0]
        );
        assert!(
            down[0] >= stop + (W_INACTIVE - W_HB) && down[0] <= stop + W_INACTIVE + DELAY,
            "DOWN at {:?}",
            down[0]
        );
        // The nodes keep each other.
        assert!(net.node(node).peer_up(n(1 - node.0)));
    }
    // A node goes down on the cluster's timers, to the other node and the witness.
    net.stopped.remove(&w);
    net.run_until(net.now + ms(4000));
    assert!(all_up(&net));
    let stop = net.now;
    net.stopped.insert(net.index(n(1)));
    net.run_until(stop + ms(5000));
    // (The witness saw the nodes down once already, when it ran again after its
    // stop: only what follows this stop counts.)
    let after =
        |ts: Vec<Instant>| -> Vec<Instant> { ts.into_iter().filter(|t| *t >= stop).collect() };
    let down0 = after(net.events_of(n(0), |e| *e == Event::PeerDown { peer: n(1) }));
    assert_eq!(down0.len(), 1);
    assert!(down0[0] >= stop + (INACTIVE - HB) && down0[0] <= stop + INACTIVE + DELAY);
    // The witness hears node 1 on the witness link only: its timers there.
    let down_w = after(net.events_of(WITNESS, |e| *e == Event::PeerDown { peer: n(1) }));
    assert_eq!(down_w.len(), 1);
    assert!(
        down_w[0] >= stop + (W_INACTIVE - W_HB) && down_w[0] <= stop + W_INACTIVE + DELAY,
        "witness saw node 1 down at {:?}",
        down_w[0]
    );
}

#[test]
fn jeopardy_counts_only_the_links_that_carry_the_peer() {
    let cfg = config(2, &["a", "b", "w"]);
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(5000)));
    // The witness, up over its one link, is in jeopardy nowhere; nor are the nodes
    // in the witness's view.
    assert!(all_up(&net), "{:?}", net.nodes[0].status().peers);
    assert!(net
        .events
        .iter()
        .all(|(_, _, e)| !matches!(e, Event::JeopardyEntered { .. })));
    // Node 0 loses b to node 1: node 1 is left on a alone, the witness link not
    // counting for node-to-node traffic.
    net.cut_both(n(0), n(1), 1);
    net.run_until(at(ms(8000)));
    assert_eq!(net.link_state(n(0), n(1), 1), LinkState::Down);
    let jeopardy = net.events_of(n(0), |e| {
        *e == Event::JeopardyEntered {
            peer: n(1),
            link: l(0),
        }
    });
    assert_eq!(jeopardy.len(), 1);
    let st = net.node(n(0)).status();
    for p in &st.peers {
        assert!(p.up);
        assert_eq!(p.jeopardy, p.id == n(1), "{:?}", p);
    }
    assert!(net.node(WITNESS).status().peers.iter().all(|p| !p.jeopardy));

    // Port data to the witness goes on its link; to a node on every carried link.
    let now = net.now;
    net.nodes[0]
        .send(now, WITNESS, Port(b'w'), b"vote?")
        .unwrap();
    net.nodes[0].send(now, n(1), Port(b'c'), b"hi").unwrap();
    let from = net.sent.len();
    net.drain(0);
    let data: Vec<(Option<NodeId>, LinkId)> = net.sent[from..]
        .iter()
        .filter(|s| wire::decode(&s.bytes).unwrap().header.kind == Kind::Data)
        .map(|s| (s.to, s.link))
        .collect();
    assert_eq!(data, vec![(Some(WITNESS), l(2)), (Some(n(1)), l(0))]);
    net.run_until(net.now + ms(50));
    net.delivered.sort();
    assert_eq!(
        net.delivered,
        vec![
            (n(1), n(0), Port(b'c'), b"hi".to_vec()),
            (WITNESS, n(0), Port(b'w'), b"vote?".to_vec())
        ]
    );
}

#[test]
fn the_witness_link_keeps_its_own_pace_and_promotes_nothing() {
    // a high, b low, and the witness link configured low: it beats at the witness
    // pace all the same (not b's rounds), and b carries nothing to the witness.
    let mut cfg = config(2, &["a", "b", "w"]);
    cfg.links[1].priority = LinkPriority::Low;
    cfg.links[2].priority = LinkPriority::Low;
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(5000)));
    assert!(all_up(&net));
    let (from, to) = (at(ms(3000)), at(ms(5000)));
    let slow = net.beats(n(0), n(1), 1, from, to);
    assert!((7..=9).contains(&slow), "{slow} beats on b in 2 s");
    assert_eq!(net.beats(n(0), n(1), 0, from, to), 20);
    assert_eq!(net.beats(n(0), WITNESS, 2, from, to), 4);
    assert_eq!(net.beats(WITNESS, n(0), 2, from, to), 4);
    // The heartbeat pacing statistics measure a, not the witness link, even when
    // the witness link comes first.
    let mut cfg = config(2, &["w", "a"]);
    witness_mut(&mut cfg).link = l(0);
    let mut net = Net::new(&cfg);
    net.run_until(at(ms(3000)));
    assert!(all_up(&net));
    let gaps = net.node(n(0)).heartbeat_gaps();
    assert!(gaps.count >= 25, "{gaps:?}");
    assert_eq!(gaps.p50_us, 100_000);
}

#[test]
fn a_witness_config_is_checked() {
    let good = config(2, &["a", "w"]);
    let new =
        |cfg: &LltConfig, me: NodeId| Llt::new(cfg.clone(), me, Incarnation(1), Instant::ZERO, 0);
    assert!(new(&good, n(0)).is_ok());
    assert!(new(&good, WITNESS).is_ok());
    let err = |cfg: LltConfig| -> String {
        match new(&cfg, n(0)) {
            Ok(_) => panic!("accepted {:?}", cfg.witness),
            Err(e) => e.to_string(),
        }
    };
    let mut c = good.clone();
    witness_mut(&mut c).link = l(2);
    assert!(err(c).contains("witness link"));
    let mut c = good.clone();
    c.nodes.retain(|id| *id != WITNESS);
    assert!(err(c).contains("not in the configuration"));
    let mut c = good.clone();
    c.links.truncate(1);
    witness_mut(&mut c).link = l(0);
    assert!(err(c).contains("besides the witness link"));
    for (hb, trouble, inactive) in [
        (0, 1500, 3000),
        (500, 500, 3000),
        (500, 1500, 1500),
        (500, 1500, 1000),
    ] {
        let mut c = good.clone();
        let w = witness_mut(&mut c);
        w.heartbeat = ms(hb);
        w.peer_trouble = ms(trouble);
        w.peer_inactive = ms(inactive);
        assert!(
            err(c).contains("witness timers"),
            "{hb} {trouble} {inactive}"
        );
    }
    // The witness's timers need not follow the cluster's (slower here, or faster).
    let mut c = good.clone();
    let w = witness_mut(&mut c);
    w.heartbeat = ms(20);
    w.peer_trouble = ms(60);
    w.peer_inactive = ms(90);
    assert!(new(&c, n(0)).is_ok());
}

#[test]
fn without_a_witness_every_link_carries_every_peer() {
    let mut cfg = config(2, &["a", "w"]);
    cfg.witness = None;
    let node = Llt::new(cfg, n(0), Incarnation(1), Instant::ZERO, 0).unwrap();
    for link in 0..2 {
        for peer in [n(1), WITNESS] {
            assert!(node.carries(l(link), peer));
        }
    }
    assert!(node
        .status()
        .peers
        .iter()
        .all(|p| p.links.iter().all(|pl| pl.carried)));
}
