//! The simulator itself: determinism, scenario files, random sweeps, and that the
//! checker catches deliberate protocol breaks.

use vigil_fence::Sabotage;
use vigil_sim::{run, run_random, FaultKind, Options, Scenario};

fn sweep(seeds: std::ops::Range<u64>, opts: Options) -> Vec<vigil_sim::Outcome> {
    seeds
        .map(|s| run_random(s, (3, 9), &FaultKind::LEGACY, opts))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a: Vec<u64> = sweep(0..20, Options::default())
        .iter()
        .map(|o| o.trace_hash)
        .collect();
    let b: Vec<u64> = sweep(0..20, Options::default())
        .iter()
        .map(|o| o.trace_hash)
        .collect();
    assert_eq!(a, b);
    // And different seeds differ.
    let distinct: std::collections::BTreeSet<u64> = a.iter().copied().collect();
    assert!(distinct.len() > 15);
}

#[test]
fn every_scenario_file_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for p in names {
        let sc = Scenario::from_toml(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let out = run(&sc, Options::default());
        if let Some(v) = &out.violation {
            panic!("{}: {v}", p.display());
        }
        eprintln!(
            "{}: ok, fault to decision {:?}",
            sc.name, out.fault_to_decision
        );
    }
}

#[test]
fn a_random_sweep_finds_no_violation() {
    let seeds: u64 = std::env::var("VIGIL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for out in sweep(1000..1000 + seeds, Options::default()) {
        if let Some(v) = &out.violation {
            panic!(
                "{}: {v}\nreproduce: vigil sim replay --seed {}",
                out.name,
                &out.name["random-".len()..]
            );
        }
    }
}

/// The first seed at which the checker catches `sabotage`, with the property broken.
/// Only safety properties count: a break must be caught as what it is, and the same
/// seed must pass without the break.
fn caught(sabotage: Sabotage, limit: u64) -> Option<(u64, &'static str)> {
    (0..limit).find_map(|s| {
        let broken = Options {
            sabotage: Some(sabotage),
            ..Options::default()
        };
        let out = run_random(s, (3, 9), &FaultKind::LEGACY, broken);
        let property = out
            .violation
            .filter(|v| v.property.starts_with('S'))?
            .property;
        let clean = run_random(s, (3, 9), &FaultKind::LEGACY, Options::default());
        assert!(
            clean.violation.is_none(),
            "seed {s} fails without sabotage too"
        );
        Some((s, property))
    })
}

#[test]
fn the_checker_catches_a_quorum_rule_that_lets_any_half_survive() {
    let seed = caught(Sabotage::AnyHalfWins, 2000);
    assert!(seed.is_some(), "not caught in 2000 seeds");
    eprintln!("any-half-wins caught at seed {seed:?}");
}

#[test]
fn the_checker_catches_a_racer_deciding_on_fewer_accepts_than_a_quorum() {
    let seed = caught(Sabotage::FewerAccepts, 2000);
    assert!(seed.is_some(), "not caught in 2000 seeds");
    eprintln!("fewer-accepts caught at seed {seed:?}");
}

#[test]
fn the_checker_catches_a_settle_window_of_zero() {
    let seed = caught(Sabotage::ZeroSettle, 2000);
    assert!(seed.is_some(), "not caught in 2000 seeds");
    eprintln!("zero-settle caught at seed {seed:?}");
}

#[test]
fn the_checker_catches_a_primary_that_moves_to_a_lower_joiner() {
    // The scenario: passes with the sticky rule, fails S5 without it.
    let sc = scenario("26-lower-id-joins.toml");
    if let Some(v) = run(&sc, Options::default()).violation {
        panic!("26-lower-id-joins: {v}");
    }
    let broken = Options {
        sabotage: Some(Sabotage::LowestPrimary),
        ..Options::default()
    };
    let v = run(&sc, broken).violation.expect("not caught");
    assert_eq!(v.property, "S5", "{v}");
    // And the random drills.
    let seed = caught(Sabotage::LowestPrimary, 2000);
    assert!(
        seed.is_some_and(|(_, p)| p == "S5"),
        "not caught as S5 in 2000 seeds: {seed:?}"
    );
    eprintln!("lowest-primary caught at seed {seed:?}");
}

fn scenario(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn the_checker_catches_replayed_frames_when_freshness_is_off() {
    let off = Options {
        stale_frames: true,
        ..Options::default()
    };
    // The attacker's scenarios: a restarted node fed a recording counts it.
    for name in ["21-replay-phantom-seed.toml", "23-replay-phantom-join.toml"] {
        let sc = scenario(name);
        assert!(run(&sc, Options::default()).violation.is_none(), "{name}");
        let v = run(&sc, off).violation.expect("not caught");
        assert_eq!(v.property, "S7", "{name}: {v}");
    }
    // And random drills of the attacker alone: the first seed caught must pass
    // with the freshness check on.
    let seed = (0..200).find_map(|s| {
        let out = run_random(s, (3, 9), &[FaultKind::Replay], off);
        let property = out
            .violation
            .filter(|v| v.property.starts_with('S'))?
            .property;
        let clean = run_random(s, (3, 9), &[FaultKind::Replay], Options::default());
        assert!(
            clean.violation.is_none(),
            "seed {s} fails with freshness on too"
        );
        Some((s, property))
    });
    assert!(seed.is_some(), "not caught in 200 seeds");
    eprintln!("stale frames caught at seed {seed:?}");
}

#[test]
fn a_sweep_of_the_attacker_alone_finds_no_violation() {
    for s in 0..40 {
        let out = run_random(s, (3, 9), &[FaultKind::Replay], Options::default());
        if let Some(v) = &out.violation {
            panic!(
                "{}: {v}\nreproduce: vigil sim replay --seed {s} --faults replay",
                out.name
            );
        }
    }
}

/// The seed-count split (five nodes, `seed = 3`, nodes restarted beside a running
/// view seed a second cluster) passes with the views kept, and is caught when
/// seeding ignores them.
#[test]
fn the_checker_catches_seeding_beside_a_running_view() {
    let sc = scenario("28-seed-beside-a-running-view.toml");
    let ok = vigil_sim::run(&sc, Options::default());
    assert!(ok.violation.is_none(), "{:?}", ok.violation);
    let broken = vigil_sim::run(
        &sc,
        Options {
            sabotage: Some(Sabotage::SeedWithoutViews),
            ..Options::default()
        },
    );
    let v = broken
        .violation
        .expect("a second cluster seeded beside the first");
    assert!(v.property == "S2" || v.property == "S1", "{v:?}");
}
