//! A storm on one node's control socket changes nothing in the cluster (no root
//! needed): a live three-node loopback cluster on the default timer profile, then
//! for several seconds dozens of concurrent clients of the daemon's own user send
//! requests at the size bound, over it (64 KiB + 1 and 4 MiB) and hold idle
//! connections. No view changes, no link goes TROUBLE anywhere, and the stormed
//! node's heartbeat gaps stay far below `peer_trouble`. The figures are printed
//! (run with `--nocapture`).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_lab::harness::*;

/// The daemon's bound on a request line, newline included.
const MAX_REQUEST: usize = 64 << 10;
/// `peer_trouble` of the default profile.
const PEER_TROUBLE_US: u64 = 300_000;
const STORM: Duration = Duration::from_secs(6);
const AT_LIMIT: usize = 24;
const OVER_LIMIT: usize = 4;
const HUGE: usize = 4;
const IDLE: usize = 12;

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    status: AtomicU64,
    busy: AtomicU64,
    too_long: AtomicU64,
    other_error: AtomicU64,
    no_answer: AtomicU64,
    idle_closed: AtomicU64,
}

fn add(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// One request of `body` (the newline is added), and what came back.
fn once(socket: &Path, body: &[u8], t: &Tally) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        add(&t.no_answer);
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    add(&t.sent);
    // The daemon may close before taking everything: read its answer anyway.
    let _ = s.write_all(body).and_then(|()| s.write_all(b"\n"));
    let mut line = String::new();
    let _ = BufReader::new(s).take(8 << 20).read_line(&mut line);
    match serde_json::from_str::<Value>(&line) {
        Ok(v) if v.get("status").is_some() => add(&t.status),
        Ok(v) if v.get("busy").is_some() => add(&t.busy),
        Ok(v)
            if v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("longer than")) =>
        {
            add(&t.too_long)
        }
        Ok(_) => add(&t.other_error),
        Err(_) => add(&t.no_answer),
    }
}

/// Hold a connection open without sending until the daemon closes it; again.
fn idle(socket: &Path, until: Instant, t: &Tally) {
    while Instant::now() < until {
        let Ok(mut s) = UnixStream::connect(socket) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => {
                    add(&t.idle_closed);
                    break;
                }
                // A refusal ("busy") arrives as a line before the close.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    add(&t.idle_closed);
                    break;
                }
            }
        }
    }
}

#[test]
fn a_control_socket_storm_changes_nothing_in_the_cluster() {
    let dir = TempDir::new("control-storm");
    let (config, _) = loopback_config(dir.path(), 3, "", "profile = \"default\"", "");
    let mut daemons = start_daemons(dir.path(), &[config.clone(), config.clone(), config]);
    let g = wait_view_with_authority(&daemons, &[0, 1, 2]);
    let socket: PathBuf = daemons[0].socket.clone();

    // A status request padded with blanks to exactly the bound, newline included.
    let mut at_limit = br#"{"cmd":"status"}"#.to_vec();
    at_limit.resize(MAX_REQUEST - 1, b' ');
    let over = vec![b' '; MAX_REQUEST];
    let huge = vec![b' '; 4 << 20];

    let t0 = wall_us();
    let started = Instant::now();
    let until = started + STORM;
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    let kinds = [
        (AT_LIMIT, Some(Arc::new(at_limit))),
        (OVER_LIMIT, Some(Arc::new(over))),
        (HUGE, Some(Arc::new(huge))),
        (IDLE, None),
    ];
    for (count, body) in kinds {
        for _ in 0..count {
            let (socket, tally, body) = (socket.clone(), tally.clone(), body.clone());
            threads.push(std::thread::spawn(move || match body {
                Some(b) => {
                    while Instant::now() < until {
                        once(&socket, &b, &tally);
                    }
                }
                None => idle(&socket, until, &tally),
            }));
        }
    }
    for t in threads {
        t.join().expect("storm thread");
    }
    let took = started.elapsed();
    // Let every node look at the aftermath for a while.
    std::thread::sleep(Duration::from_secs(1));

    let mut report = format!(
        "storm of {:.1} s on n0 ({AT_LIMIT} clients at {MAX_REQUEST} bytes, {OVER_LIMIT} at {} bytes, {HUGE} at 4 MiB, {IDLE} idle):\n  \
         clients: {} requests sent, {} status answers, {} busy, {} refused as too long, {} other errors, {} without answer; {} idle connections closed by the daemon\n",
        took.as_secs_f64(),
        MAX_REQUEST + 1,
        get(&tally.sent),
        get(&tally.status),
        get(&tally.busy),
        get(&tally.too_long),
        get(&tally.other_error),
        get(&tally.no_answer),
        get(&tally.idle_closed),
    );
    let mut worst_gap = 0;
    for d in &mut daemons {
        assert!(d.running(), "{} stopped:\n{}", d.name, d.log_text());
        let j = lltstat_json(&d.socket, &[]).expect("lltstat --json after the storm");
        let hb = &j["heartbeat"];
        let max_us = hb["max_us"].as_u64().unwrap_or(u64::MAX);
        worst_gap = worst_gap.max(max_us);
        report.push_str(&format!(
            "  {}: heartbeat gap p50 {} µs, p99 {} µs, max {} µs; control {}\n",
            d.name, hb["p50_us"], hb["p99_us"], max_us, j["control"]
        ));
    }
    eprintln!("{report}");

    let after = |d: &Daemon, name: &str| -> usize {
        d.events_named(name)
            .iter()
            .filter(|e| e["ts_us"].as_u64().is_some_and(|t| t >= t0))
            .count()
    };
    for d in &daemons {
        for bad in [
            "view.installed",
            "race.started",
            "node.self_fence",
            "peer.down",
            "link.trouble",
            "link.down",
        ] {
            assert_eq!(
                after(d, bad),
                0,
                "{}: {bad} during the storm\n{report}",
                d.name
            );
        }
        let (gen, members) =
            port_a(&gabconfig_json(&d.socket).expect("gabconfig -a")).expect("port a");
        assert_eq!(
            (gen, members),
            (g, vec![0, 1, 2]),
            "{}: view changed",
            d.name
        );
    }
    assert!(
        worst_gap < PEER_TROUBLE_US,
        "a heartbeat gap of {worst_gap} µs reached peer_trouble\n{report}"
    );

    // The stormed node counted what it refused, and answered at the bound.
    let c = &lltstat_json(&socket, &[]).expect("lltstat")["control"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    assert_eq!(n("max_request_bytes"), MAX_REQUEST as u64, "{c}");
    assert!(get(&tally.status) > 0, "{report}");
    assert!(n("served") >= get(&tally.status), "{c}");
    assert!(
        n("oversize") > 0 && get(&tally.too_long) > 0,
        "{c}\n{report}"
    );
    assert!(n("refused") > 0, "{c}\n{report}");
    assert!(
        n("timed_out") > 0,
        "idle connections were closed: {c}\n{report}"
    );
    assert!(n("open") <= n("max_connections"), "{c}");
}
