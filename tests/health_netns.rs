//! Node health live, in network namespaces with real daemons: the half-dead node
//! (its probe directory turns read-only through a read-only bind mount inside the
//! node's own mount namespace) and the frozen node (SIGSTOP for 10 × peer_inactive,
//! then SIGCONT). Needs root; under `CI=true` it must run.

use std::time::{Duration, Instant};
use vigil_lab::harness::*;
use vigil_lab::netlab;

/// The daemon's exit code after fencing itself.
const FENCED: i32 = 4;
/// `peer_inactive` of the fencing lab.
const PEER_INACTIVE: Duration = Duration::from_millis(400);

/// A writable probe per node on its own directory `{dir}/probe-nI`. The highest
/// node's (the one whose disk breaks) is checked every 100 ms and failed after 2
/// failures in a row; the others' every second with a timeout (5 s) and threshold
/// (3) that a loaded machine does not trip.
fn probes(n: usize) -> String {
    (0..n)
        .map(|i| {
            let (interval, timeout, threshold) = if i + 1 == n {
                (100, 300, 2)
            } else {
                (1000, 5000, 3)
            };
            format!(
                "\n[[probes]]\nname = \"disk-n{i}\"\nkind = \"writable\"\npath = \"{{dir}}/probe-n{i}\"\n\
                 interval = {interval}\ntimeout = {timeout}\nthreshold = {threshold}\nnodes = [\"n{i}\"]\n"
            )
        })
        .collect()
}

/// Views `d` installed (generations), from its log.
fn installed(d: &Daemon) -> Vec<u64> {
    d.events_named("view.installed")
        .iter()
        .filter_map(|e| e["generation"].as_u64())
        .collect()
}

#[test]
fn a_read_only_probe_directory_takes_the_node_out_and_the_others_keep_authority() {
    if !root_or_skip("the read-only bind mount health test") {
        return;
    }
    let lab = lab("h", 3, &probes(3));
    for i in 0..3 {
        std::fs::create_dir_all(lab.dir.path().join(format!("probe-n{i}"))).expect("probe dir");
    }
    let probe_dir = lab.dir.path().join("probe-n2");
    let dir = probe_dir.to_str().expect("utf-8 path");
    // n2 runs in its own mount namespace, where its probe directory is a bind mount
    // of itself: remounting that read-only affects n2 alone.
    let wrapper = netlab::own_mount_ns(dir, "vigil-in-own-mount-ns");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut daemons: Vec<Daemon> = (0..2).map(|i| lab.start(i)).collect();
    daemons.push(lab.start_wrapped(2, &wrapper));
    let g0 = wait_view_with_authority(&daemons, &[0, 1, 2]);
    // Every probe passes before the fault.
    wait_for(Duration::from_secs(5), "n2's probe ran and passed", || {
        command_json(&daemons[2].socket, &["lltstat", "-c"]).is_some_and(|c| {
            c["health"]["probes"][0]["state"] == "ok"
                && c["health"]["probes"][0]["runs"].as_u64() > Some(1)
        })
    });

    let pid = daemons[2].pid().expect("n2 pid");
    let t0 = Instant::now();
    netlab::remount_ro(pid, dir).unwrap_or_else(|e| panic!("{e}"));
    // Outside n2's mount namespace the directory is still writable.
    std::fs::write(probe_dir.join("outside"), b"x").expect("the test's own view stays writable");
    std::fs::remove_file(probe_dir.join("outside")).expect("cleanup");

    let mut left_at = None;
    let mut authority_at = None;
    while t0.elapsed() < Duration::from_secs(15) && (left_at.is_none() || authority_at.is_none()) {
        if left_at.is_none() && !daemons[2].running() {
            let code = daemons[2].wait_exit(Duration::from_secs(1));
            left_at = Some((code, t0.elapsed()));
        }
        if authority_at.is_none() && all_hold_authority(&daemons[..2], &[0, 1], g0) {
            authority_at = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = dump(&daemons);
    eprintln!("n2 exited {left_at:?}; n0 and n1 hold authority on a view without n2 after {authority_at:?}");
    let unhealthy = daemons[2].events_named("node.unhealthy");
    assert_eq!(unhealthy.len(), 1, "n2 logged node.unhealthy once\n{log}");
    assert_eq!(unhealthy[0]["probe"], "disk-n2");
    let reason = unhealthy[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("Read-only file system"), "{reason}");
    assert_eq!(
        left_at.map(|l| l.0),
        Some(Some(0)),
        "n2 left gracefully (exit 0)\n{log}"
    );
    assert!(
        !daemons[2].events_named("node.left").is_empty(),
        "n2 logged node.left\n{log}"
    );
    assert!(authority_at.is_some(), "n0 and n1 took over\n{log}");
    for d in &daemons[..2] {
        let f = fenceadm_json(&d.socket).expect("fenceadm answers");
        assert_eq!(f["authority"], true, "{}: {f}", d.name);
        assert_eq!(f["members"], serde_json::json!([0, 1]), "{}: {f}", d.name);
        assert_eq!(
            f["health"]["probes"][0]["state"], "ok",
            "{}'s own probe still passes: {f}",
            d.name
        );
        assert!(
            d.events_named("node.self_fence").is_empty(),
            "{} must not fence\n{log}",
            d.name
        );
        // The node that left took nothing with it: the survivors' authority never
        // lapsed.
        assert!(
            d.events_named("authority.lost").is_empty(),
            "{} kept authority throughout\n{log}",
            d.name
        );
    }
}

#[test]
fn a_node_stopped_for_ten_failure_timeouts_fences_itself_and_disturbs_nobody() {
    if !root_or_skip("the SIGSTOP health test") {
        return;
    }
    let lab = lab("z", 3, "");
    let mut daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    let g0 = wait_view_with_authority(&daemons, &[0, 1, 2]);

    let frozen = PEER_INACTIVE * 10;
    let t0 = Instant::now();
    assert!(daemons[2].signal(libc::SIGSTOP));
    let mut removed = None;
    while t0.elapsed() < frozen {
        if removed.is_none() && all_hold_authority(&daemons[..2], &[0, 1], g0) {
            removed = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let views_before_wake: Vec<Vec<u64>> = daemons[..2].iter().map(installed).collect();
    assert!(daemons[2].signal(libc::SIGCONT));
    let woke = t0.elapsed();
    let code = daemons[2].wait_exit(Duration::from_secs(5));
    let exited = t0.elapsed();
    // Give a disturbance time to show on the survivors.
    std::thread::sleep(PEER_INACTIVE * 3);
    let log = dump(&daemons);
    eprintln!(
        "survivors removed n2 after {removed:?}; SIGCONT at {woke:?}; n2 exited {code:?} at {exited:?}"
    );
    assert!(
        removed.is_some(),
        "n0 and n1 removed n2 while it was stopped\n{log}"
    );
    assert_eq!(code, Some(FENCED), "n2 fenced itself on waking\n{log}");
    let fence = daemons[2].events_named("node.self_fence");
    assert_eq!(fence.len(), 1, "{log}");
    assert_eq!(
        fence[0]["reason"], "stalled",
        "n2 knew it had stalled\n{log}"
    );
    let stalls = daemons[2].events_named("node.stall");
    let longest = stalls
        .iter()
        .filter_map(|e| e["stall_us"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        longest >= (frozen - PEER_INACTIVE).as_micros() as u64,
        "n2 measured its own stall: {longest} µs\n{log}"
    );
    assert!(
        daemons[2]
            .events_named("authority.gained")
            .iter()
            .all(|e| e["generation"].as_u64() <= Some(g0)),
        "n2 never gained authority after waking\n{log}"
    );
    for (d, before) in daemons[..2].iter().zip(&views_before_wake) {
        let after = installed(d);
        assert_eq!(
            &after, before,
            "{}: no view change after n2's removal (before SIGCONT {before:?}, after {after:?})\n{log}",
            d.name
        );
        let f = fenceadm_json(&d.socket).expect("fenceadm answers");
        assert_eq!(f["authority"], true, "{}: {f}", d.name);
        assert_eq!(f["members"], serde_json::json!([0, 1]), "{}: {f}", d.name);
        assert!(
            d.events_named("node.self_fence").is_empty(),
            "{} must not fence\n{log}",
            d.name
        );
    }
    // The survivors each installed exactly one view after the stop: n2's removal.
    for (d, before) in daemons[..2].iter().zip(&views_before_wake) {
        let new: Vec<&u64> = before.iter().filter(|g| **g > g0).collect();
        assert_eq!(new.len(), 1, "{}: {before:?}\n{log}", d.name);
    }
}
