//! SIGTERM to `vigil daemon` is a graceful leave: its peers install the view
//! without it at once (the racer's round starts on the `Leave`, not on a
//! detection), long before `peer_inactive` would have told them; the daemon exits
//! 0. A second SIGTERM stops at once.

use serde_json::Value;
use std::time::{Duration, Instant};
use vigil_lab::harness::*;

/// Every node's port `a` view is `members`; that generation.
fn all_in(daemons: &[Daemon], of: &[usize], members: &[u64]) -> Option<u64> {
    let mut generation = None;
    for &i in of {
        let (g, m) = port_a(&gabconfig_json(&daemons[i].socket)?)?;
        if m != members || generation.is_some_and(|h| h != g) {
            return None;
        }
        generation = Some(g);
    }
    generation
}

fn ts(e: &Value) -> u64 {
    e["ts_us"].as_u64().expect("ts_us")
}

#[test]
fn sigterm_leaves_gracefully_and_peers_move_on_without_a_race() {
    let dir = TempDir::new("sigterm");
    // The default profile: peer_inactive 600 ms, race_timeout 200 ms.
    let (config, _) = loopback_config(dir.path(), 3, "", "", "");
    let mut daemons = start_daemons(
        dir.path(),
        &[config.clone(), config.clone(), config.clone()],
    );
    wait_for(Duration::from_secs(30), "a view of all three", || {
        all_in(&daemons, &[0, 1, 2], &[0, 1, 2]).is_some()
    });

    let sent = Instant::now();
    daemons[2].terminate();
    let took = wait_for(
        Duration::from_secs(10),
        "n0 and n1 in a view without n2",
        || all_in(&daemons, &[0, 1], &[0, 1]).is_some(),
    );
    assert_eq!(
        daemons[2].wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        daemons[2].log_text()
    );
    let exited = sent.elapsed();

    // From the logs: n2's leave began at `daemon.signal`; n0 and n1 installed the
    // new view within 400 ms of it (peer_inactive is 600 ms).
    let signal = daemons[2]
        .events_named("daemon.signal")
        .first()
        .map(ts)
        .unwrap_or_else(|| panic!("n2 logged no daemon.signal\n{}", daemons[2].log_text()));
    for d in &daemons[..2] {
        let installed = d
            .events_named("view.installed")
            .into_iter()
            .filter(|e| e["members"] == "[0,1]")
            .map(|e| ts(&e))
            .next()
            .unwrap_or_else(|| panic!("{} installed no view [0,1]\n{}", d.name, d.log_text()));
        assert!(
            installed.saturating_sub(signal) < 400_000,
            "{} installed [0,1] {} ms after n2's SIGTERM (polling saw it after {took:?})",
            d.name,
            installed.saturating_sub(signal) / 1000
        );
        // The view change is always a race (the racer's Paxos round); what a leave
        // spares is the detection: the race starts at once, no `peer.down` for n2
        // comes before the view, and no race is lost.
        let race = d
            .events_named("race.started")
            .into_iter()
            .map(|e| ts(&e))
            .find(|&t| t >= signal);
        if let Some(race) = race {
            assert!(
                race.saturating_sub(signal) < 300_000,
                "{}'s race began {} ms after n2's SIGTERM",
                d.name,
                race.saturating_sub(signal) / 1000
            );
        }
        let detected: Vec<Value> = d
            .events_named("peer.down")
            .into_iter()
            .filter(|e| e["peer"] == 2 && ts(e) <= installed)
            .collect();
        assert!(
            detected.is_empty(),
            "{} detected n2 down before the view: {detected:?}",
            d.name
        );
        assert!(
            d.events_named("race.lost").is_empty(),
            "{} lost a race",
            d.name
        );
    }
    assert!(
        exited < Duration::from_secs(5),
        "n2 took {exited:?} to exit after SIGTERM"
    );
}

#[test]
fn second_sigterm_during_a_leave_stops_at_once() {
    let dir = TempDir::new("sigterm2");
    // A long leave bound (3 × race_timeout = 6 s in the node, + 2 s in the daemon).
    let (config, _) = loopback_config(dir.path(), 3, "", "race_timeout = 2000", "");
    let mut daemons = start_daemons(
        dir.path(),
        &[config.clone(), config.clone(), config.clone()],
    );
    wait_for(Duration::from_secs(30), "a view of all three", || {
        all_in(&daemons, &[0, 1, 2], &[0, 1, 2]).is_some()
    });
    // With its peers stopped, nobody confirms n2's leave: it would wait out the
    // bound.
    assert!(daemons[0].signal(libc::SIGSTOP) && daemons[1].signal(libc::SIGSTOP));
    daemons[2].terminate();
    wait_for(Duration::from_secs(5), "n2 to begin leaving", || {
        !daemons[2].events_named("node.leaving").is_empty()
    });
    assert!(daemons[2].running(), "n2 ended its leave without its peers");
    let second = Instant::now();
    daemons[2].terminate();
    let code = daemons[2].wait_exit(Duration::from_secs(5));
    let took = second.elapsed();
    assert!(daemons[0].signal(libc::SIGCONT) && daemons[1].signal(libc::SIGCONT));
    assert_eq!(code, Some(0), "{}", daemons[2].log_text());
    assert!(
        took < Duration::from_millis(1500),
        "n2 took {took:?} to stop after the second SIGTERM (the leave bound is 8 s)"
    );
}
