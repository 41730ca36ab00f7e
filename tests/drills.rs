//! `vigil drill`, the README's main job, run as a user would: real daemon processes,
//! a fault, a timeline and a verdict. On loopback for everyone; every drill of SPEC
//! section 1 in network namespaces when root (under `CI=true` they must run).

use serde_json::Value;
use std::time::Instant;
use vigil_lab::harness::*;

/// `vigil drill NAME --json ...`: the outcome document and the exit code.
fn drill(name: &str, extra: &[&str]) -> (Value, Option<i32>) {
    // The default profile: the fast one tolerates only 40 ms stalls, which a
    // debug build on two cores shared with other test binaries does not promise.
    let mut args = vec!["drill", name, "--json"];
    if !extra.contains(&"--profile") {
        args.extend_from_slice(&["--profile", "default"]);
    }
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = vigil(&args);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "vigil drill {name}: no JSON ({e}); stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!(
        "drill {name} {extra:?}: pass {} decision {} ms (ran {:?}) failures {}",
        doc["pass"],
        doc["decision_ms"],
        started.elapsed(),
        doc["failures"]
    );
    (doc, out.status.code())
}

fn assert_pass(name: &str, doc: &Value, code: Option<i32>) {
    assert_eq!(doc["pass"], true, "{name}: {doc:#}");
    assert_eq!(code, Some(0), "{name} exits 0 on PASS");
    assert_eq!(doc["drill"], name);
}

#[test]
fn the_main_job_prints_the_timeline_and_pass() {
    let out = vigil(&["drill", "--brief"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("t0: partition [0, 1] | [2, 3, 4]"), "{text}");
    assert!(text.contains("timeline (ms after t0"), "{text}");
    for i in 0..5 {
        assert!(
            text.contains(&format!("\n  n{i} ")),
            "a row for n{i}: {text}"
        );
    }
    assert!(text.contains("PASS split-3-2"), "{text}");
}

#[test]
fn half_dead_and_freeze_on_loopback() {
    for name in ["half-dead", "freeze"] {
        let (doc, code) = drill(name, &[]);
        assert_pass(name, &doc, code);
        let n4 = &doc["nodes"][4];
        match name {
            "half-dead" => {
                assert!(n4["left_ms"].is_number(), "{doc:#}");
                assert_eq!(n4["exit"]["code"], 0, "{doc:#}");
            }
            _ => {
                assert_eq!(n4["self_fence"]["reason"], "stalled", "{doc:#}");
                assert_eq!(n4["exit"]["code"], 4, "{doc:#}");
            }
        }
    }
}

#[test]
fn a_wrong_node_count_is_refused_with_a_reason() {
    let out = vigil(&["drill", "two-node", "--nodes", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("two-node runs with 2 nodes"), "{err}");
}

macro_rules! netns_drill {
    ($test:ident, $name:expr) => {
        netns_drill!($test, $name, []);
    };
    ($test:ident, $name:expr, [$($arg:expr),*]) => {
        #[test]
        fn $test() {
            if !root_or_skip(concat!("the --netns drill ", $name)) {
                return;
            }
            let (doc, code) = drill($name, &["--netns", $($arg),*]);
            assert_pass($name, &doc, code);
        }
    };
}

netns_drill!(netns_split_3_2, "split-3-2");
netns_drill!(netns_even_split, "even-split");
netns_drill!(netns_two_node, "two-node");
netns_drill!(netns_freeze, "freeze");
netns_drill!(netns_half_dead, "half-dead");
netns_drill!(netns_kill, "kill");
netns_drill!(netns_link_loss, "link-loss");
netns_drill!(netns_flap, "flap");
netns_drill!(netns_reboot, "reboot");
netns_drill!(netns_one_way, "one-way");
netns_drill!(netns_fence_loop, "fence-loop");
netns_drill!(netns_non_transitive, "non-transitive");
netns_drill!(netns_cascading, "cascading");
netns_drill!(netns_pair_cut, "pair-cut");
// The same cut on the fast profile (the daemons ask for real-time scheduling, which
// root gets): a cut between two non-leader members removes at most one of them.
netns_drill!(netns_pair_cut_fast, "pair-cut", ["--profile", "fast"]);
netns_drill!(netns_three_cuts, "three-cuts");
