//! `vigil sim` on the command line: scenario files, sweeps (deterministic whatever the
//! thread count), sabotage caught with a reproducing command that reproduces, usage
//! errors, and the bench table.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sim/scenarios")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write temp file");
    p
}

/// The property named by the first `<P> violated at` line.
fn property(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.contains(" violated at "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn every_scenario_file_passes() {
    let files = scenario_files();
    assert!(!files.is_empty());
    let args: Vec<&str> = ["sim", "run"]
        .into_iter()
        .chain(files.iter().map(|p| p.to_str().expect("utf-8 path")))
        .collect();
    let out = vigil(&args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), files.len(), "one line per scenario:\n{text}");
    for l in lines {
        assert!(l.starts_with("PASS "), "{l}");
        assert!(l.contains("fault→decision"), "{l}");
    }
}

#[test]
fn a_scenario_file_that_does_not_parse_is_named() {
    let bad = temp("bad-scenario.toml", "name = \"x\"\nnodes = \"three\"\n");
    let good = &scenario_files()[0];
    let out = vigil(&[
        "sim",
        "run",
        bad.to_str().expect("utf-8 path"),
        good.to_str().expect("utf-8 path"),
    ]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(bad.to_str().expect("utf-8 path")), "{text}");
    assert!(text.contains("nodes"), "the parser's message: {text}");
    // The good file still runs.
    assert!(stdout(&out).starts_with("PASS "), "{text}");

    let missing = vigil(&["sim", "run", "/nonexistent/vigil-scenario.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(all_output(&missing).contains("/nonexistent/vigil-scenario.toml"));
}

#[test]
fn a_sweep_passes_and_is_the_same_whatever_the_thread_count() {
    let sweep = |jobs: &str| {
        let out = vigil(&[
            "sim", "sweep", "--seeds", "30", "--nodes", "3..5", "--jobs", jobs,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
        stdout(&out)
    };
    let a = sweep("2");
    let lines: Vec<&str> = a.lines().collect();
    assert!(lines[0].starts_with("drills"), "{a}");
    assert!(lines[0].contains("violations"), "{a}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..2], ["30", "0"], "30 drills, 0 violations: {a}");
    let hash = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("trace hash: 0x"))
            .map(str::to_string)
    };
    let ha = hash(&a).expect("trace hash line");
    let b = sweep("1");
    assert_eq!(Some(ha), hash(&b), "first run:\n{a}\nsecond run:\n{b}");
}

#[test]
fn a_sabotaged_sweep_is_caught_and_its_replay_reproduces_it() {
    let out = vigil(&[
        "sim",
        "sweep",
        "--seeds",
        "200",
        "--nodes",
        "3..6",
        "--sabotage",
        "any-half-wins",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert!(text.contains("sabotage any-half-wins: caught"), "{text}");
    let broken = property(&text).expect("the violation in full");
    let command = text
        .lines()
        .find_map(|l| l.strip_prefix("reproduce: "))
        .expect("a reproduce line");
    assert!(command.starts_with("vigil sim replay --seed "), "{command}");
    assert!(command.contains("--sabotage any-half-wins"), "{command}");

    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let replay = vigil(&args);
    let again = stdout(&replay);
    assert_eq!(replay.status.code(), Some(1), "{}", all_output(&replay));
    assert_eq!(property(&again), Some(broken), "{again}");
    // The scenario it ran is shown.
    assert!(again.contains("steps = ["), "{again}");
}

#[test]
fn bad_sweep_arguments_are_usage_errors_naming_the_flag() {
    for (args, flag) in [
        (vec!["--nodes", "9..3"], "--nodes"),
        (vec!["--nodes", "1..3"], "--nodes"),
        (vec!["--nodes", "3..65"], "--nodes"),
        (vec!["--nodes", "3-9"], "--nodes"),
        (vec!["--faults", "bogus"], "--faults"),
        (vec!["--faults", "partition,bogus"], "--faults"),
        (vec!["--sabotage", "bogus"], "--sabotage"),
        (vec!["--jobs", "0"], "--jobs"),
    ] {
        let mut all = vec!["sim", "sweep", "--seeds", "1"];
        all.extend(&args);
        let out = vigil(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    // Unknown fault kinds list the valid ones.
    let out = vigil(&["sim", "replay", "--seed", "1", "--faults", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("partition") && err.contains("one-way"),
        "{err}"
    );
    // And a sweep needs --seeds.
    assert_eq!(vigil(&["sim", "sweep"]).status.code(), Some(2));
}

#[test]
fn replay_prints_the_scenario_and_passes_a_good_seed() {
    let out = vigil(&[
        "sim",
        "replay",
        "--seed",
        "3",
        "--nodes",
        "3..4",
        "--faults",
        "partition,crash",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    assert!(text.contains("name = \"random-3\""), "{text}");
    assert!(text.contains("PASS random-3"), "{text}");
    assert!(text.contains("trace hash 0x"), "{text}");
}

#[test]
fn bench_prints_a_row_per_cluster_size() {
    let out = vigil(&["sim", "bench", "--seconds", "0", "--sizes", "3,5"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(text.starts_with("nodes"), "{text}");
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0][0], "3");
    assert_eq!(rows[1][0], "5");
    // nodes, drills, drills/s, per core, frames/drill, ns/frame, node-s/s: a drill
    // sends frames, and more of them at 5 nodes than at 3.
    let frames = |r: &[&str]| -> u64 { r[4].parse().unwrap_or(0) };
    assert!(rows.iter().all(|r| r.len() == 7), "{text}");
    assert!(frames(&rows[0]) > 0, "{text}");
    assert!(frames(&rows[1]) > frames(&rows[0]), "{text}");
    assert!(
        rows.iter()
            .all(|r| r[5].parse::<f64>().is_ok_and(|ns| ns > 0.0)),
        "{text}"
    );
}

/// The default sizes. One 64-node drill takes about 15 s in a release build and many
/// minutes in a debug build, so this runs only with `--release` (or `--run-ignored`).
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a 64-node drill takes minutes in a debug build; run with --release"
)]
fn bench_prints_rows_for_5_16_and_64_nodes() {
    let out = vigil(&["sim", "bench", "--seconds", "1"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let sizes: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(sizes, ["5", "16", "64"], "{text}");
}
