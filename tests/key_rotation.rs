//! A running keyed cluster moves from key A to key B by the documented procedure
//! (docs/config.md, "Rotating the key"), one `vigil key reload` per node and step,
//! with no view change, no peer or link trouble and no frame dropped for its key.

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_lab::harness::*;

const N: usize = 3;
const TIMERS: &str =
    "heartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 250\npeer_inactive = 500";

/// Rewrite the `[cluster]` key lines of `config`: `key_file` and `accept_key_files`.
fn set_keys(config: &Path, send: &Path, accept: &[&Path]) {
    let text = std::fs::read_to_string(config).expect("config");
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("key_file") || line.starts_with("accept_key_files") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "[cluster]" {
            out.push_str(&format!("key_file = \"{}\"\n", send.display()));
            let list: Vec<String> = accept
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect();
            out.push_str(&format!("accept_key_files = [{}]\n", list.join(", ")));
        }
    }
    std::fs::write(config, out).expect("write config");
}

fn reload(d: &Daemon) -> String {
    let out = vigil(&[
        "key",
        "reload",
        "--socket",
        d.socket.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}: vigil key reload: {}",
        d.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// (`send`, `accept`) key IDs from `lltstat --json`.
fn ring(d: &Daemon) -> (Option<String>, Vec<String>) {
    let v = lltstat_json(&d.socket, &[]).expect("lltstat");
    assert_eq!(v["authenticated"], true, "{v}");
    let send = v["keys"]["send"].as_str().map(str::to_string);
    let accept = v["keys"]["accept"]
        .as_array()
        .expect("accept")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    (send, accept)
}

/// Frames dropped for `reason` on every link, and accepted, from `lltstat --json`.
fn counts(d: &Daemon) -> (u64, u64, u64) {
    let v = lltstat_json(&d.socket, &[]).expect("lltstat");
    let sum = |f: &dyn Fn(&Value) -> u64| -> u64 {
        v["links"].as_array().expect("links").iter().map(f).sum()
    };
    (
        sum(&|l| l["drops"]["auth"].as_u64().unwrap_or(0)),
        sum(&|l| l["drops"]["unknown_key"].as_u64().unwrap_or(0)),
        sum(&|l| l["frames_accepted"].as_u64().unwrap_or(0)),
    )
}

/// Events since `since_us` that would mean the rotation disturbed the cluster in
/// view `g`.
fn trouble(d: &Daemon, g: u64, since_us: u64) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["ts_us"].as_u64().is_some_and(|t| t >= since_us))
        .filter(|e| {
            let ev = e["event"].as_str().unwrap_or("");
            let later_view = ev.starts_with("view.") && e["generation"].as_u64() > Some(g);
            later_view
                || [
                    "peer.down",
                    "peer.restarted",
                    "link.down",
                    "link.trouble",
                    "jeopardy.entered",
                    "race.started",
                    "authority.lost",
                    "keys.reload_refused",
                ]
                .contains(&ev)
        })
        .collect()
}

/// One step of the procedure, applied to every node in turn.
struct Step<'a> {
    what: &'a str,
    send: &'a Path,
    accept: Vec<&'a Path>,
    /// The ring every node shows after it: key IDs, the sending key first.
    want: Vec<&'a str>,
}

#[test]
fn a_running_cluster_rotates_its_key_without_a_view_change() {
    let dir = TempDir::new("rotate");
    let key_a = dir.path().join("a.key");
    let key_b = dir.path().join("b.key");
    let id_a = keygen(&key_a);
    let cluster = format!("key_file = \"{}\"\n", key_a.display());
    // One config file per node, as on real hosts; the same contents to start.
    let (first, _) = loopback_config(dir.path(), N, &cluster, TIMERS, "");
    let text = std::fs::read_to_string(&first).expect("config");
    let configs: Vec<_> = (0..N)
        .map(|i| {
            let p = dir.path().join(format!("n{i}.toml"));
            std::fs::write(&p, &text).expect("write config");
            p
        })
        .collect();
    let daemons: Vec<Daemon> = (0..N)
        .map(|i| {
            Daemon::start(
                &configs[i],
                &format!("n{i}"),
                &dir.path().join(format!("n{i}.sock")),
                &dir.path().join(format!("n{i}.log")),
                None,
            )
        })
        .collect();
    let g = wait_view_with_authority(&daemons, &[0, 1, 2]);
    for d in &daemons {
        assert_eq!(ring(d), (Some(id_a.clone()), vec![id_a.clone()]));
    }
    let before: Vec<_> = daemons.iter().map(counts).collect();
    let started = Instant::now();
    let since_us = wall_us();

    // (1) a new key, copied to every node (here: one file all nodes read).
    let id_b = keygen(&key_b);
    assert_ne!(id_a, id_b);
    // Each step on every node in turn, with heartbeats flowing between nodes that
    // are at different steps.
    let pause = || std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (key_a.as_path(), key_b.as_path());
    let steps = [
        Step {
            what: "(2) accept B",
            send: a,
            accept: vec![b],
            want: vec![&id_a, &id_b],
        },
        Step {
            what: "(3) send with B, accept A",
            send: b,
            accept: vec![a],
            want: vec![&id_b, &id_a],
        },
        Step {
            what: "(4) B alone",
            send: b,
            accept: vec![],
            want: vec![&id_b],
        },
    ];
    for step in &steps {
        for (i, d) in daemons.iter().enumerate() {
            set_keys(&configs[i], step.send, &step.accept);
            let msg = reload(d);
            eprintln!("{}: n{i}: {msg}", step.what);
            let want: Vec<String> = step.want.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                ring(d),
                (want.first().cloned(), want),
                "{} on n{i}",
                step.what
            );
            pause();
        }
    }
    let took = started.elapsed();
    pause();

    // Nothing moved: the same view everywhere, no trouble, nothing dropped for its
    // key, and frames kept flowing.
    let refs: Vec<&Daemon> = daemons.iter().collect();
    assert_eq!(same_view(&refs, &[0, 1, 2]), Some(g), "{}", dump(&daemons));
    assert!(all_hold_authority(&daemons, &[0, 1, 2], g - 1));
    eprintln!(
        "rotation A {id_a} -> B {id_b} on {N} nodes in {} ms: view generation {g} before and after",
        took.as_millis()
    );
    for (i, d) in daemons.iter().enumerate() {
        let t = trouble(d, g, since_us);
        assert!(t.is_empty(), "n{i}: {t:?}\n{}", dump(&daemons));
        let after = counts(d);
        let (auth, unknown, accepted) = (
            after.0 - before[i].0,
            after.1 - before[i].1,
            after.2 - before[i].2,
        );
        eprintln!(
            "n{i}: during the rotation {accepted} frames accepted, {auth} auth drops, {unknown} unknown_key drops; sending with {}",
            ring(d).0.unwrap_or_default()
        );
        assert_eq!((auth, unknown), (0, 0), "n{i} dropped frames for their key");
        assert!(accepted > 0);
        assert_eq!(d.events_named("keys.reloaded").len(), 3, "n{i}");
    }

    // A node put back on A alone no longer understands its peers (nor they it):
    // their frames are dropped as unknown_key, and the reload said what it did.
    set_keys(&configs[2], &key_a, &[]);
    reload(&daemons[2]);
    let (_, u0, _) = counts(&daemons[2]);
    let mut unknown = 0;
    wait_for(Duration::from_secs(2), "unknown_key drops on n2", || {
        unknown = counts(&daemons[2]).1 - u0;
        unknown > 5
    });
    eprintln!("n2 back on A alone: {unknown} frames of its peers dropped as unknown_key");

    // And a reload that would leave the cluster unkeyed is refused, keys unchanged.
    let text = std::fs::read_to_string(&configs[0]).expect("config");
    let insecure: String = text
        .lines()
        .map(|l| {
            if l.starts_with("key_file") {
                "insecure = true".to_string()
            } else if l.starts_with("accept_key_files") {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&configs[0], insecure).expect("write config");
    let out = vigil(&[
        "key",
        "reload",
        "--socket",
        daemons[0].socket.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keys unchanged"), "{err}");
    assert!(err.contains("cluster.key_file"), "{err}");
    assert_eq!(ring(&daemons[0]), (Some(id_b.clone()), vec![id_b.clone()]));
}
