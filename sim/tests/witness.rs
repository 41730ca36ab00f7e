//! Two nodes and a witness (`vigil witness`, node ID 63, slot 2 of the world) in
//! virtual time, on real frames, with S1-S7 checked after every event: either
//! node crashes, a partition with the witness on one side or on both, the witness
//! down and then a partition, the witness restarting in a partition, and a witness
//! that votes twice (caught by the checker). On the legacy timers and on both
//! shipped profiles.

use std::time::Duration;
use vigil::health::OnFailure;
use vigil_fence::{Sabotage, StallAction};
use vigil_sim::{sim_config, Fault, Profile, World};

const W: u8 = 2;

fn world(profile: Profile, witness_sabotage: Option<Sabotage>) -> (World, f64) {
    let cfg = sim_config(profile, 2, Some(2), OnFailure::Leave, StallAction::Fence, 1)
        .expect("a two-node config");
    let scale = cfg.scale();
    let mut w = World::with_witness(&cfg, 7, None, witness_sabotage);
    w.start_all();
    w.start(W as usize);
    let mut world = (w, scale);
    run(&mut world, 600);
    let (w, _) = &world;
    for i in [0, 1, W as usize] {
        assert_eq!(w.members(i), vec![0, 1, 63], "slot {i}: the witness joined");
    }
    assert!(w.authority(0) && w.authority(1));
    world
}

/// Run for `ms` legacy milliseconds (scaled to the profile), failing on a violation.
fn run((w, scale): &mut (World, f64), ms: u64) {
    w.run_for(Duration::from_millis((ms as f64 * *scale) as u64));
    if let Some(v) = w.violation() {
        panic!("{v}");
    }
}

const PROFILES: [Profile; 3] = [Profile::Legacy, Profile::Default, Profile::Fast];

#[test]
fn either_node_crashing_leaves_the_other_with_authority() {
    for profile in PROFILES {
        for (victim, survivor) in [(0u8, 1usize), (1, 0)] {
            let mut c = world(profile, None);
            c.0.apply(&Fault::Crash { node: victim });
            run(&mut c, 1000);
            let w = &c.0;
            assert!(
                w.authority(survivor),
                "{profile}: {survivor} holds authority after {victim} crashed"
            );
            assert_eq!(w.members(survivor), vec![survivor as u8, 63], "{profile}");
        }
    }
}

#[test]
fn a_partition_goes_to_the_side_that_holds_the_witness() {
    for profile in PROFILES {
        for (lone, other) in [(0u8, 1u8), (1, 0)] {
            let mut c = world(profile, None);
            c.0.apply(&Fault::Partition {
                sides: vec![vec![lone], vec![other, W]],
            });
            run(&mut c, 1000);
            let w = &c.0;
            assert!(
                w.authority(other as usize),
                "{profile}: {other} with the witness wins"
            );
            assert!(!w.running(lone as usize), "{profile}: {lone} fenced");
            assert_eq!(w.members(other as usize), vec![other, 63]);
        }
    }
}

/// The witness behind a slow link (a twelfth of race_timeout each way, as much
/// jitter: a race's two round trips fit): either crash and a one-sided partition
/// are still decided for the side that holds the witness; a link too slow for a
/// race costs the survivor, never two sides.
#[test]
fn a_witness_on_a_slow_link_still_decides() {
    for profile in PROFILES {
        let slow = |c: &mut (World, f64), twelfths: f64| {
            let race_ms =
                vigil_sim::sim_config(profile, 2, Some(2), OnFailure::Leave, StallAction::Fence, 1)
                    .expect("config")
                    .cluster
                    .timers
                    .race_timeout
                    .as_secs_f64()
                    * 1e3;
            c.0.apply(&Fault::SlowNode {
                node: W,
                delay_ms: race_ms * twelfths / 12.0,
                jitter_ms: race_ms / 12.0,
            });
            run(c, 300);
        };
        for (victim, survivor) in [(0u8, 1usize), (1, 0)] {
            let mut c = world(profile, None);
            slow(&mut c, 1.0);
            c.0.apply(&Fault::Crash { node: victim });
            run(&mut c, 1000);
            assert!(
                c.0.authority(survivor),
                "{profile}: {survivor} survives {victim}'s crash; members {:?}\n{}",
                c.0.members(survivor),
                c.0.trace_tail().join("\n")
            );
            assert_eq!(c.0.members(survivor), vec![survivor as u8, 63], "{profile}");
        }
        let mut c = world(profile, None);
        slow(&mut c, 1.0);
        c.0.apply(&Fault::Partition {
            sides: vec![vec![0], vec![1, W]],
        });
        run(&mut c, 1000);
        assert!(c.0.authority(1), "{profile}: 1 with the slow witness wins");
        assert!(!c.0.running(0), "{profile}: 0 fenced");
        // A witness further away than a race can wait: nobody wins, nobody twice.
        let mut c = world(profile, None);
        slow(&mut c, 12.0);
        c.0.apply(&Fault::Cut { a: 0, b: 1 });
        run(&mut c, 1500);
        let winners = [0, 1].into_iter().filter(|i| c.0.authority(*i)).count();
        assert!(winners <= 1, "{profile}: {winners} winners");
    }
}

#[test]
fn a_partition_with_the_witness_on_both_sides_has_one_winner() {
    for profile in PROFILES {
        let mut c = world(profile, None);
        c.0.apply(&Fault::Cut { a: 0, b: 1 });
        run(&mut c, 1000);
        let w = &c.0;
        let winners: Vec<usize> = [0, 1].into_iter().filter(|i| w.authority(*i)).collect();
        let running: Vec<usize> = [0, 1].into_iter().filter(|i| w.running(*i)).collect();
        assert_eq!(winners.len(), 1, "{profile}: one winner, {winners:?}");
        assert_eq!(running, winners, "{profile}: the other fenced");
    }
}

#[test]
fn with_the_witness_down_a_partition_falls_back_to_the_lowest_id() {
    for profile in PROFILES {
        let mut c = world(profile, None);
        c.0.apply(&Fault::Crash { node: W });
        run(&mut c, 600);
        assert_eq!(c.0.members(0), vec![0, 1], "{profile}: the witness dropped");
        assert!(c.0.authority(0) && c.0.authority(1), "{profile}");
        c.0.apply(&Fault::Cut { a: 0, b: 1 });
        run(&mut c, 1000);
        assert!(c.0.authority(0), "{profile}: node 0 keeps authority");
        assert!(!c.0.running(1), "{profile}: node 1 fenced");
        // The witness returns: it joins again, and a crash of node 0 is survived.
    }
}

#[test]
fn the_witness_returns_and_then_either_node_may_crash() {
    for profile in PROFILES {
        let mut c = world(profile, None);
        c.0.apply(&Fault::Crash { node: W });
        run(&mut c, 600);
        assert_eq!(c.0.members(1), vec![0, 1], "{profile}");
        c.0.apply(&Fault::Restart { node: W });
        run(&mut c, 600);
        assert_eq!(
            c.0.members(1),
            vec![0, 1, 63],
            "{profile}: the witness rejoined"
        );
        c.0.apply(&Fault::Crash { node: 0 });
        run(&mut c, 1000);
        assert!(
            c.0.authority(1),
            "{profile}: node 1 survives node 0's crash"
        );
    }
}

#[test]
fn a_witness_restarting_during_a_partition_never_lets_two_sides_win() {
    for profile in PROFILES {
        for delay in [0u64, 5, 20, 60, 150] {
            let mut c = world(profile, None);
            c.0.apply(&Fault::Cut { a: 0, b: 1 });
            run(&mut c, delay);
            c.0.apply(&Fault::Crash { node: W });
            c.0.apply(&Fault::Restart { node: W });
            run(&mut c, 1500);
            let w = &c.0;
            let holders = [0, 1].into_iter().filter(|i| w.authority(*i)).count();
            assert!(
                holders <= 1,
                "{profile}, restart after {delay} ms: {holders} holders"
            );
        }
    }
}

#[test]
fn a_witness_that_votes_twice_is_caught_by_the_checker() {
    let mut caught = 0;
    for profile in PROFILES {
        let (mut w, scale) = world(profile, Some(Sabotage::WitnessVotesTwice));
        w.apply(&Fault::Cut { a: 0, b: 1 });
        w.run_for(Duration::from_millis((1000.0 * scale) as u64));
        if let Some(v) = w.violation() {
            caught += 1;
            let text = v.to_string();
            assert!(
                text.contains("S1") || text.contains("S2"),
                "{profile}: {text}"
            );
        }
    }
    assert_eq!(
        caught,
        PROFILES.len(),
        "the sabotage is caught on every profile"
    );
}

#[test]
fn random_drills_with_a_witness_and_weights_hold_every_property() {
    use vigil_sim::{run_random, FaultKind, Options};
    let opts = Options {
        witness: true,
        ..Options::default()
    };
    for seed in 0..150 {
        let out = run_random(seed, (2, 5), &FaultKind::LEGACY, opts);
        assert!(out.violation.is_none(), "seed {seed}: {:?}", out.violation);
    }
}

#[test]
fn a_sweep_finds_a_witness_that_votes_twice() {
    use vigil_sim::{run_random, FaultKind, Options};
    let opts = Options {
        witness: true,
        sabotage: Some(Sabotage::WitnessVotesTwice),
        ..Options::default()
    };
    let found = (0..200u64).find_map(|seed| {
        run_random(seed, (2, 5), &FaultKind::LEGACY, opts)
            .violation
            .filter(|v| v.property.starts_with('S'))
            .map(|v| (seed, v.property))
    });
    assert!(
        found.is_some(),
        "200 drills and the double vote went unseen"
    );
}
