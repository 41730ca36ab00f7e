//! Whole small clusters of `Node`s in virtual time, on the simulator's `World`
//! (real frames, S1-S4 checked after every event), driven step by step so each
//! drill of the spec reads as a test. Random sweeps live in `vigil-sim`.

use std::collections::BTreeSet;
use std::time::Duration;
use vigil::node::Node;
use vigil_fence::{FenceEvent, FenceReason};
use vigil_llt::types::{Generation, Instant, NodeId};
use vigil_sim::{Fault, Timers, World};

const INACTIVE: Duration = Duration::from_millis(80);
const RACE_TIMEOUT: Duration = Duration::from_millis(60);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

struct Cluster {
    w: World,
}

impl Cluster {
    fn new(n: u8, seed: usize) -> Cluster {
        let timers = Timers::default();
        assert_eq!(timers.peer_inactive, INACTIVE);
        assert_eq!(timers.race_timeout, RACE_TIMEOUT);
        Cluster {
            w: World::new(n, seed, 0, timers, None),
        }
    }

    fn start(&mut self, i: usize) {
        self.w.start(i);
    }

    fn start_all(&mut self) {
        self.w.start_all();
    }

    fn crash(&mut self, i: usize) {
        self.w.apply(&Fault::Crash { node: i as u8 });
    }

    fn stall(&mut self, i: usize, d: Duration) {
        let for_ms = d.as_millis() as u64;
        self.w.apply(&Fault::Stall {
            node: i as u8,
            for_ms,
            drop_backlog: false,
        });
    }

    fn one_way(&mut self, from: usize, to: usize) {
        self.w.apply(&Fault::OneWay {
            from: vec![from as u8],
            to: vec![to as u8],
        });
    }

    fn now(&self) -> Instant {
        self.w.now()
    }

    fn running(&self, i: usize) -> bool {
        self.w.running(i)
    }

    fn run_for(&mut self, d: Duration) {
        self.w.run_for(d);
        if let Some(v) = self.w.violation() {
            panic!("{v}");
        }
    }

    fn partition(&mut self, sides: &[&[usize]]) {
        let sides = sides
            .iter()
            .map(|s| s.iter().map(|x| *x as u8).collect())
            .collect();
        self.w.apply(&Fault::Partition { sides });
    }

    fn heal(&mut self) {
        self.w.apply(&Fault::Heal);
    }

    fn node(&self, i: usize) -> &Node {
        self.w.node(i).expect("node running")
    }

    fn members(&self, i: usize) -> Vec<u8> {
        self.w.members(i)
    }

    fn generation(&self, i: usize) -> Generation {
        self.node(i).view().map_or(Generation(0), |v| v.generation)
    }

    fn authority(&self, i: usize) -> bool {
        self.w.authority(i)
    }

    fn self_fenced(&self, i: usize) -> Option<FenceReason> {
        let inc = self.w.restarts(i);
        self.w.events.iter().find_map(|(_, n, c, e)| match e {
            FenceEvent::SelfFence { reason } if *n == i && *c == inc => Some(reason.clone()),
            _ => None,
        })
    }

    fn authority_lost_count(&self, i: usize, since: Instant) -> usize {
        self.w
            .events
            .iter()
            .filter(|(t, n, _, e)| {
                *n == i && *t >= since && matches!(e, FenceEvent::AuthorityLost { .. })
            })
            .count()
    }

    fn views_installed_since(&self, i: usize, since: Instant) -> Vec<Generation> {
        self.w
            .views_installed_since(since)
            .remove(&i)
            .unwrap_or_default()
    }

    /// Bring the cluster up and wait until every node holds authority on one view.
    fn boot(n: u8) -> Cluster {
        let mut c = Cluster::new(n, n as usize);
        c.start_all();
        c.run_for(ms(1000));
        let g = c.generation(0);
        for i in 0..n as usize {
            assert!(c.authority(i), "node {i} has no authority after boot");
            assert_eq!(c.generation(i), g);
            assert_eq!(c.members(i), (0..n).collect::<Vec<_>>());
        }
        c
    }
}

#[test]
fn five_nodes_seed_one_view_and_all_hold_authority() {
    let c = Cluster::boot(5);
    assert!(c.generation(0) > Generation(0));
}

#[test]
fn majority_split_3_2_the_three_survive_and_the_two_fence() {
    let mut c = Cluster::boot(5);
    let g0 = c.generation(2);
    let t0 = c.now();
    c.partition(&[&[0, 1], &[2, 3, 4]]);
    c.run_for(ms(1000));
    for i in [2, 3, 4] {
        assert!(c.authority(i), "survivor {i} lost authority");
        assert!(c.generation(i) > g0);
        assert_eq!(c.members(i), vec![2, 3, 4]);
        assert_eq!(c.authority_lost_count(i, t0), 0, "survivor {i} blinked");
    }
    for i in [0, 1] {
        assert!(c.self_fenced(i).is_some(), "loser {i} did not fence");
        assert!(!c.authority(i));
    }
    // Decision well within detection + race timeout.
    let won =
        c.w.events
            .iter()
            .find(|(_, n, _, e)| *n == 2 && matches!(e, FenceEvent::RaceWon { .. }))
            .map(|(t, ..)| *t)
            .unwrap();
    assert!(
        won.saturating_since(t0) < INACTIVE + RACE_TIMEOUT,
        "decided after {:?}",
        won.saturating_since(t0)
    );
}

#[test]
fn even_split_2_2_the_half_with_the_lowest_id_survives() {
    let mut c = Cluster::boot(4);
    c.partition(&[&[0, 1], &[2, 3]]);
    c.run_for(ms(1000));
    for i in [0, 1] {
        assert!(c.authority(i));
        assert_eq!(c.members(i), vec![0, 1]);
    }
    for i in [2, 3] {
        assert!(
            matches!(c.self_fenced(i), Some(FenceReason::RaceLost { .. })),
            "{i}: {:?}",
            c.self_fenced(i)
        );
    }
}

#[test]
fn three_way_split_2_2_1_of_5_everyone_fences() {
    let mut c = Cluster::boot(5);
    c.partition(&[&[0, 1], &[2, 3], &[4]]);
    c.run_for(ms(1000));
    for i in 0..5 {
        assert!(c.self_fenced(i).is_some(), "node {i} did not fence");
        assert!(!c.authority(i));
    }
}

#[test]
fn two_nodes_1_1_node_0_survives() {
    let mut c = Cluster::boot(2);
    c.partition(&[&[0], &[1]]);
    c.run_for(ms(1000));
    assert!(c.authority(0));
    assert_eq!(c.members(0), vec![0]);
    assert!(c.self_fenced(1).is_some());
}

#[test]
fn a_frozen_node_fences_on_waking_and_disturbs_nobody() {
    let mut c = Cluster::boot(3);
    let t0 = c.now();
    c.stall(2, INACTIVE * 10);
    c.run_for(INACTIVE * 5);
    // The survivors removed it.
    for i in [0, 1] {
        assert_eq!(c.members(i), vec![0, 1]);
        assert!(c.authority(i));
    }
    let removed_at = c.now();
    let g = c.generation(0);
    // It wakes with everything it missed at once.
    c.run_for(INACTIVE * 10);
    assert!(c.self_fenced(2).is_some(), "the frozen node did not fence");
    assert!(!c.authority(2));
    for i in [0, 1] {
        assert_eq!(
            c.generation(i),
            g,
            "survivor {i} changed view after the removal"
        );
        assert!(c.views_installed_since(i, removed_at).is_empty());
        assert_eq!(c.authority_lost_count(i, t0), 0);
        assert!(c.authority(i));
    }
}

#[test]
fn a_rebooted_node_joins_as_a_new_incarnation_and_nobody_loses_authority() {
    let mut c = Cluster::boot(3);
    let t0 = c.now();
    let g0 = c.generation(0);
    c.crash(1);
    c.start(1);
    c.run_for(ms(1000));
    for i in 0..3 {
        assert_eq!(c.members(i), vec![0, 1, 2], "node {i}");
        assert!(c.authority(i), "node {i}");
        assert!(c.generation(i) > g0);
    }
    let view = c.node(0).view().unwrap();
    assert_eq!(
        view.member(NodeId(1)).unwrap().incarnation,
        c.node(1).incarnation()
    );
    for i in [0, 2] {
        assert_eq!(c.authority_lost_count(i, t0), 0, "node {i} lost authority");
    }
    assert!(c
        .w
        .events
        .iter()
        .all(|(_, _, _, e)| !matches!(e, FenceEvent::SelfFence { .. })));
}

#[test]
fn a_slow_reboot_is_a_leave_then_a_join_with_authority_kept() {
    let mut c = Cluster::boot(3);
    let t0 = c.now();
    c.crash(1);
    c.run_for(ms(500));
    assert_eq!(c.members(0), vec![0, 2]);
    c.start(1);
    c.run_for(ms(1000));
    assert_eq!(c.members(0), vec![0, 1, 2]);
    for i in [0, 2] {
        assert_eq!(c.authority_lost_count(i, t0), 0, "node {i} lost authority");
    }
}

#[test]
fn a_restarted_node_behind_a_partition_waits_and_fences_nobody() {
    let mut c = Cluster::boot(3);
    c.partition(&[&[0, 1], &[2]]);
    c.run_for(ms(500));
    assert!(c.self_fenced(2).is_some());
    let g = c.generation(0);
    let since = c.now();
    // The fenced node restarts while the partition persists.
    c.start(2);
    c.run_for(ms(3000));
    let n2 = c.node(2);
    assert!(n2.view().is_none(), "restarted node seeded on its own");
    assert!(!c.authority(2));
    assert!(c.self_fenced(2).is_none(), "the new incarnation fenced");
    for i in [0, 1] {
        assert!(c.authority(i));
        assert_eq!(c.generation(i), g);
        assert_eq!(c.authority_lost_count(i, since), 0);
    }
    // Healed: it joins.
    c.heal();
    c.run_for(ms(1000));
    for i in 0..3 {
        assert_eq!(c.members(i), vec![0, 1, 2]);
        assert!(c.authority(i));
    }
}

#[test]
fn non_transitive_links_end_with_one_two_node_view() {
    let mut c = Cluster::boot(3);
    c.one_way(0, 2);
    c.one_way(2, 0);
    c.run_for(ms(2000));
    let holders: Vec<usize> = (0..3).filter(|i| c.authority(*i)).collect();
    assert_eq!(holders.len(), 2, "holders {holders:?}");
    let views: BTreeSet<Vec<u8>> = holders.iter().map(|i| c.members(*i)).collect();
    assert_eq!(views.len(), 1);
    let view = views.into_iter().next().unwrap();
    assert_eq!(view.len(), 2);
    let outside = (0..3u8).find(|i| !view.contains(i)).unwrap();
    assert!(c.self_fenced(outside as usize).is_some());
}

#[test]
fn a_join_racing_a_partition_keeps_s1_to_s4() {
    // Node 3 starts late; while it joins, the cluster splits. The checker runs after
    // every step; at the end at most one side holds authority.
    for offset in [0u64, 5, 15, 40, 80, 120] {
        let mut c = Cluster::new(4, 3);
        for i in 0..3 {
            c.start(i);
        }
        c.run_for(ms(600));
        c.start(3);
        c.run_for(ms(offset + 100));
        c.partition(&[&[0, 3], &[1, 2]]);
        c.run_for(ms(1500));
        let holders: Vec<usize> = (0..4)
            .filter(|i| c.running(*i) && c.authority(*i))
            .collect();
        let views: BTreeSet<Vec<u8>> = holders.iter().map(|i| c.members(*i)).collect();
        assert!(views.len() <= 1, "offset {offset}: views {views:?}");
    }
}

#[test]
fn generations_keep_growing_across_a_full_restart() {
    let mut c = Cluster::boot(3);
    let g = c.generation(0);
    for i in 0..3 {
        c.crash(i);
    }
    c.run_for(ms(100));
    c.start_all();
    c.run_for(ms(1000));
    for i in 0..3 {
        assert!(c.authority(i));
        assert!(
            c.generation(i) > g,
            "node {i}: {:?} after {g:?}",
            c.generation(i)
        );
    }
}

#[test]
fn an_unseeded_pair_of_three_does_not_seed() {
    let mut c = Cluster::new(3, 3);
    c.start(0);
    c.start(1);
    c.run_for(ms(2000));
    assert!(c.node(0).view().is_none());
    assert!(c.node(1).view().is_none());
    // By hand, it does.
    c.w.with_node(0, |n, now| n.manual_seed(now));
    c.run_for(ms(500));
    assert_eq!(c.members(0), vec![0, 1]);
    assert!(c.authority(0));
    assert!(c
        .w
        .events
        .iter()
        .any(|(_, _, _, e)| matches!(e, FenceEvent::ManualSeed { .. })));
}

#[test]
fn a_graceful_leave_changes_the_view_and_fences_nobody() {
    let mut c = Cluster::boot(3);
    c.w.with_node(2, |n, now| n.leave(now));
    c.run_for(ms(500));
    assert_eq!(c.members(0), vec![0, 1]);
    assert!(c
        .w
        .events
        .iter()
        .any(|(_, n, _, e)| *n == 2 && matches!(e, FenceEvent::Left { .. })));
    assert!(c
        .w
        .events
        .iter()
        .all(|(_, _, _, e)| !matches!(e, FenceEvent::SelfFence { .. })));
    assert!(c.authority(0) && c.authority(1));
}

#[test]
fn one_way_partition_the_deaf_side_of_the_cut_is_removed_and_fences() {
    // Node 2's frames are lost; it still hears the others.
    let mut c = Cluster::boot(3);
    let t0 = c.now();
    c.one_way(2, 0);
    c.one_way(2, 1);
    c.run_for(ms(1000));
    for i in [0, 1] {
        assert_eq!(c.members(i), vec![0, 1]);
        assert!(c.authority(i));
        assert_eq!(c.authority_lost_count(i, t0), 0);
    }
    assert!(
        c.self_fenced(2).is_some(),
        "node 2 kept running on a stale view"
    );
}

#[test]
fn one_way_partition_the_mute_side_of_the_cut_fences_itself() {
    // Node 2 hears nothing; the others still hear it.
    let mut c = Cluster::boot(3);
    c.one_way(0, 2);
    c.one_way(1, 2);
    c.run_for(ms(1000));
    assert!(
        matches!(c.self_fenced(2), Some(FenceReason::RaceLost { .. })),
        "{:?}",
        c.self_fenced(2)
    );
    for i in [0, 1] {
        assert_eq!(c.members(i), vec![0, 1]);
        assert!(c.authority(i));
    }
}

#[test]
fn a_persisted_generation_at_the_top_of_its_range_is_refused() {
    use vigil_fence::FenceConfig;
    use vigil_llt::types::{ClusterId, Incarnation};
    use vigil_llt::{LinkPriority, LinkSpec, LltConfig};
    use vigil_membership::NodeSet;
    let nodes: Vec<NodeId> = (0..3).map(NodeId).collect();
    let links = vec![LinkSpec {
        name: "a".into(),
        priority: LinkPriority::High,
        broadcast: false,
    }];
    let llt = LltConfig::with_defaults(ClusterId(1), nodes.clone(), links);
    let fence = FenceConfig {
        nodes: nodes.iter().copied().collect::<NodeSet>(),
        seed: 2,
        race_timeout: RACE_TIMEOUT,
        lease: ms(70),
        max_drift_ppm: 1000,
        heartbeat: ms(10),
        peer_inactive: INACTIVE,
        self_fence: true,
        stall_report: ms(50),
        stall_action: Default::default(),
        watchdog: None,
        gather_window: Duration::ZERO,
        weights: Default::default(),
        witness: false,
        sabotage: None,
    };
    let start = |g: Generation| {
        Node::new(
            llt.clone(),
            fence.clone(),
            NodeId(0),
            Incarnation(7),
            Instant::ZERO,
            1,
            g,
        )
    };
    for top in [Generation::MAX, Generation(u64::MAX)] {
        match start(top) {
            Ok(_) => panic!("generation {} accepted", top.0),
            Err(e) => assert!(e.0.contains("top of its range"), "{e}"),
        }
    }
    assert!(start(Generation(Generation::MAX.0 - 1)).is_ok());
    // Generations never wrap: the last one has no successor.
    assert_eq!(
        Generation(Generation::MAX.0 - 1).next(),
        Some(Generation::MAX)
    );
    assert_eq!(Generation::MAX.next(), None);
    assert_eq!(Generation(u64::MAX).next(), None);
}
