//! Majority fencing live: five daemons in five network namespaces, two UDP links on
//! two bridges, split 3|2 with nftables. The two self-fence (exit code 4), the three
//! race, win and hold authority on a new view. And generations survive a restart of
//! the whole cluster through the state files. Needs root; under `CI=true` it must run.

use std::time::{Duration, Instant};
use vigil_lab::harness::*;

/// The daemon's exit code after fencing itself (`self_fence = "exit"`).
const FENCED: i32 = 4;

#[test]
fn a_3_2_split_leaves_the_three_with_authority_and_fences_the_two() {
    if !root_or_skip("the network-namespace fencing test") {
        return;
    }
    let lab = lab("s", 5, "");
    let mut daemons: Vec<Daemon> = (0..5).map(|i| lab.start(i)).collect();
    // Every node holds authority before the split.
    let g0 = wait_view_with_authority(&daemons, &[0, 1, 2, 3, 4]);

    let t0 = Instant::now();
    lab.split(&[&[0, 1], &[2, 3, 4]]);
    let applied = t0.elapsed();

    let (survivors, losers) = ([2usize, 3, 4], [0usize, 1]);
    let mut exited: Vec<Option<(i32, Duration)>> = vec![None; 5];
    let mut authority: Vec<Option<(u64, Duration)>> = vec![None; 5];
    let deadline = Duration::from_secs(15);
    while t0.elapsed() < deadline
        && (losers.iter().any(|&i| exited[i].is_none())
            || survivors.iter().any(|&i| authority[i].is_none()))
    {
        for &i in &losers {
            if exited[i].is_none() && !daemons[i].running() {
                let code = daemons[i].wait_exit(Duration::from_secs(1)).unwrap_or(-1);
                exited[i] = Some((code, t0.elapsed()));
            }
        }
        for &i in &survivors {
            if authority[i].is_none() {
                if let Some(g) = holds_authority(&daemons[i], &[2, 3, 4], g0) {
                    authority[i] = Some((g, t0.elapsed()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("partition applied in {applied:?} (nft in 5 namespaces)");
    for i in 0..5 {
        eprintln!(
            "n{i}: exited {:?}, authority on the new view {:?}",
            exited[i], authority[i]
        );
    }
    let log = dump(&daemons);
    for &i in &losers {
        assert_eq!(
            exited[i].map(|e| e.0),
            Some(FENCED),
            "n{i} should have fenced itself (exit {FENCED}) within {deadline:?}\n{log}"
        );
    }
    for &i in &survivors {
        assert!(
            authority[i].is_some(),
            "n{i} should hold authority on a view of [2,3,4] above {g0} within {deadline:?}\n{log}"
        );
    }
    let g1 = authority[2].map_or(0, |a| a.0);
    let to_authority = survivors
        .iter()
        .filter_map(|&i| authority[i].map(|a| a.1))
        .max()
        .unwrap_or_default();
    let to_fenced = losers
        .iter()
        .filter_map(|&i| exited[i].map(|e| e.1))
        .max()
        .unwrap_or_default();
    eprintln!(
        "partition -> every survivor has authority on view {g1}: {to_authority:?}; \
         partition -> both losers exited: {to_fenced:?}"
    );

    // The survivors agree: gabconfig shows the new view, fenceadm the race node 2 won.
    let survivor_refs: Vec<&Daemon> = survivors.iter().map(|&i| &daemons[i]).collect();
    let (g, _) = wait_same_view(&survivor_refs, &[2, 3, 4], Duration::from_secs(5));
    assert_eq!(g, g1, "gabconfig and fenceadm show the same generation");
    assert!(g1 > g0);
    for &i in &survivors {
        let d = &daemons[i];
        let f = fenceadm_json(&d.socket).expect("fenceadm answers");
        assert_eq!(f["authority"], true, "n{i}: {f}");
        assert_eq!(f["generation"], g1, "n{i}: {f}");
        assert_eq!(f["state"], "member", "n{i}: {f}");
        assert_eq!(f["last_race"]["verdict"], "won", "n{i}: {f}");
        assert_eq!(f["last_race"]["racer"], 2, "n{i}: {f}");
        let installed = d.events_named("view.installed");
        assert!(
            installed.iter().any(|e| e["generation"] == g1),
            "n{i} logged view.installed for {g1}: {installed:?}"
        );
        assert!(
            d.events_named("node.self_fence").is_empty(),
            "n{i} must not fence itself\n{log}"
        );
        // The state file has the new generation.
        let state = std::fs::read_to_string(lab.dir.path().join(format!("state/n{i}.generation")))
            .unwrap_or_default();
        assert!(
            state.starts_with(&format!("generation {g1}\ninstalled {g1} ")),
            "n{i}: {state:?}"
        );
    }
    let won = daemons[2].events_named("race.won");
    assert!(
        won.iter().any(|e| e["generation"] == g1),
        "n2 logged race.won for {g1}: {won:?}"
    );
    for &i in &losers {
        let fenced = daemons[i].events_named("node.self_fence");
        assert!(!fenced.is_empty(), "n{i} logged node.self_fence\n{log}");
        assert!(fenced[0]["reason"].is_string(), "{fenced:?}");
        assert!(
            daemons[i]
                .events_named("authority.gained")
                .iter()
                .all(|e| e["generation"].as_u64() <= Some(g0)),
            "n{i} never gained authority after the split\n{log}"
        );
    }
    for (cmd, flag) in [("gabconfig", "-a"), ("fenceadm", "-d")] {
        let out = vigil(&[
            cmd,
            flag,
            "--socket",
            daemons[2].socket.to_str().expect("utf-8 path"),
        ]);
        eprintln!(
            "$ {cmd} {flag}   # on n2 after the split\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for d in &mut daemons {
        d.kill();
    }
}

#[test]
fn generations_keep_growing_across_a_full_restart() {
    if !root_or_skip("the network-namespace restart test") {
        return;
    }
    let lab = lab("r", 3, "");
    let mut daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    let (g, took) = wait_same_view(
        &daemons.iter().collect::<Vec<_>>(),
        &[0, 1, 2],
        Duration::from_secs(20),
    );
    eprintln!("first view {g} after {took:?}");

    // One link lost is jeopardy, not a membership change.
    lab.nodes[2].ip(&["link", "set", "eth2", "down"]);
    wait_for(Duration::from_secs(5), "n2 in jeopardy on n0", || {
        gabconfig_json(&daemons[0].socket)
            .is_some_and(|v| v["ports"][0]["jeopardy"] == serde_json::json!([2]))
    });
    let out = vigil(&[
        "gabconfig",
        "-a",
        "--socket",
        daemons[0].socket.to_str().expect("utf-8 path"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("$ gabconfig -a   # on n0, n2 lost link b\n{text}");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text.contains(&format!(
            "Port a gen   {g:08x} membership 012\nPort a gen   {g:08x} jeopardy     2\n"
        )),
        "{text}"
    );
    lab.nodes[2].ip(&["link", "set", "eth2", "up"]);
    wait_for(Duration::from_secs(5), "n2 out of jeopardy", || {
        gabconfig_json(&daemons[0].socket)
            .is_some_and(|v| v["ports"][0]["jeopardy"] == serde_json::json!([]))
    });
    assert_eq!(
        same_view(&daemons.iter().collect::<Vec<_>>(), &[0, 1, 2]),
        Some(g),
        "a link failure changes no view"
    );

    for d in &mut daemons {
        d.terminate();
    }
    for d in &mut daemons {
        let code = d.wait_exit(Duration::from_secs(10));
        assert!(
            matches!(code, Some(0) | Some(FENCED)),
            "{} stopped with {code:?}\n{}",
            d.name,
            d.log_text()
        );
    }
    for i in 0..3 {
        let state = std::fs::read_to_string(lab.dir.path().join(format!("state/n{i}.generation")))
            .unwrap_or_default();
        let stored: u64 = state
            .lines()
            .next()
            .unwrap_or_default()
            .strip_prefix("generation ")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        assert!(stored >= g, "n{i}'s state file {state:?} holds {g} or more");
    }
    let daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    let (g2, took) = wait_same_view(
        &daemons.iter().collect::<Vec<_>>(),
        &[0, 1, 2],
        Duration::from_secs(20),
    );
    eprintln!("after a full restart: view {g2} (was {g}) after {took:?}");
    assert!(g2 > g, "generation {g2} after the restart must exceed {g}");
    for d in &daemons {
        let started = d.events_named("daemon.started");
        assert!(
            started
                .first()
                .and_then(|e| e["persisted_generation"].as_u64())
                .is_some_and(|p| p >= g),
            "{} started from its state file: {started:?}",
            d.name
        );
    }
}
