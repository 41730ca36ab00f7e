//! Node health live on loopback (no root needed): a stall of half of peer_inactive
//! changes nothing and is measured, and the watchdog (a FIFO test device) is armed
//! at the first authority, fed only while authority holds, left counting by a fenced
//! node, stood down by a graceful stop, and counted in the survivors' settle window.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_lab::harness::*;

const TIMERS: &str =
    "heartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 200\npeer_inactive = 400\nrace_timeout = 300";
const PEER_INACTIVE: Duration = Duration::from_millis(400);

#[test]
fn a_stall_of_half_peer_inactive_removes_nobody_and_is_measured() {
    let dir = TempDir::new("short-stall");
    let (config, _) = loopback_config(dir.path(), 3, "", TIMERS, "");
    let daemons = start_daemons(dir.path(), &[config.clone(), config.clone(), config]);
    let g = wait_view_with_authority(&daemons, &[0, 1, 2]);
    let t0 = wall_us();
    assert!(daemons[2].signal(libc::SIGSTOP));
    std::thread::sleep(PEER_INACTIVE / 2);
    assert!(daemons[2].signal(libc::SIGCONT));
    std::thread::sleep(PEER_INACTIVE * 3);
    let after = |d: &Daemon, name: &str| -> usize {
        d.events_named(name)
            .iter()
            .filter(|e| e["ts_us"].as_u64().is_some_and(|t| t >= t0))
            .count()
    };
    for d in &daemons {
        assert_eq!(after(d, "view.installed"), 0, "{} changed view", d.name);
        assert_eq!(after(d, "node.self_fence"), 0, "{} fenced", d.name);
        assert_eq!(after(d, "peer.down"), 0, "{} declared a peer down", d.name);
        assert!(
            holds_authority(d, &[0, 1, 2], g - 1).is_some(),
            "{} holds authority",
            d.name
        );
    }
    // The stalled node accused nobody, and knows how long it was away.
    assert_eq!(after(&daemons[2], "link.down"), 0);
    let stalls = daemons[2].events_named("node.stall");
    let worst = stalls
        .iter()
        .filter_map(|e| e["stall_us"].as_u64())
        .max()
        .unwrap_or(0);
    eprintln!(
        "n2 measured its stall: {worst} µs ({} node.stall events)",
        stalls.len()
    );
    assert!(
        (150_000..400_000).contains(&worst),
        "stall of ~200 ms measured as {worst} µs"
    );
    let j = lltstat_json(&daemons[2].socket, &[]).expect("lltstat --json");
    assert_eq!(j["stalls"]["worst_us"].as_u64(), Some(worst), "{j}");
    assert!(j["heartbeat"]["max_us"].as_u64() >= Some(150_000), "{j}");
    let out = vigil(&[
        "lltstat",
        "--socket",
        daemons[2].socket.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(text.contains("Stalls of this node: "), "{text}");
    assert!(text.contains(&format!("worst {}.", worst / 1000)), "{text}");
}

/// A FIFO at `path` and its read end (non-blocking).
fn fifo(path: &Path) -> std::fs::File {
    let c = CString::new(path.to_str().expect("utf-8")).expect("no NUL");
    // SAFETY: `c` is a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open the FIFO")
}

/// Bytes written to the test watchdog since the last call.
fn drain(f: &mut std::fs::File) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    all
}

#[test]
fn the_watchdog_is_fed_only_while_authority_holds_and_delays_the_survivors() {
    let dir = TempDir::new("watchdog");
    let mut fifos = Vec::new();
    let mut configs = Vec::new();
    for i in 0..3 {
        let sub = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&sub).expect("dir");
        let dev = dir.path().join(format!("wd-n{i}"));
        fifos.push(fifo(&dev));
        // Every node has the same cluster; only the watchdog device differs.
        let (config, _) = loopback_config(
            &sub,
            3,
            "fault_injection = true",
            TIMERS,
            &format!(
                "\n[watchdog]\ndevice = \"{}\"\ntimeout = 1000\n",
                dev.display()
            ),
        );
        configs.push(config);
    }
    // The same ports for everyone: rewrite the other configs from the first.
    let text = std::fs::read_to_string(&configs[0]).expect("config");
    for (i, c) in configs.iter().enumerate().skip(1) {
        std::fs::write(c, text.replace("wd-n0", &format!("wd-n{i}"))).expect("config");
    }
    let mut daemons = start_daemons(dir.path(), &configs);
    let g = wait_view_with_authority(&daemons, &[0, 1, 2]);
    std::thread::sleep(Duration::from_millis(200));
    for (i, f) in fifos.iter_mut().enumerate() {
        let pets = drain(f);
        assert!(
            pets.len() >= 2 && pets.iter().all(|b| *b == b'.'),
            "n{i} pets: {pets:?}"
        );
        let armed = daemons[i].events_named("watchdog.armed");
        assert_eq!(armed.len(), 1, "n{i} armed once");
        assert_eq!(armed[0]["test_device"], true);
    }

    // Cut n2 off: it loses authority, stops feeding, and fences itself.
    let socks: Vec<String> = daemons
        .iter()
        .map(|d| d.socket.to_str().expect("utf-8").to_string())
        .collect();
    let sock = |i: usize| socks[i].clone();
    let t0 = Instant::now();
    for (i, peers) in [(0, "2"), (1, "2"), (2, "0,1")] {
        let out = vigil(&["fault", "--socket", &sock(i), "block", "--peers", peers]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut last_pet = Duration::ZERO;
    let mut n2_bytes = Vec::new();
    let mut survivors_at = None;
    while t0.elapsed() < Duration::from_secs(6) {
        let b = drain(&mut fifos[2]);
        if !b.is_empty() {
            last_pet = t0.elapsed();
            n2_bytes.extend(b);
        }
        if survivors_at.is_none() && all_hold_authority(&daemons[..2], &[0, 1], g) {
            survivors_at = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let code = daemons[2].wait_exit(Duration::from_secs(1));
    eprintln!(
        "n2 last fed its watchdog {last_pet:?} after the cut, exited {code:?}; survivors held authority on [0,1] after {survivors_at:?}"
    );
    assert_eq!(code, Some(4), "n2 fenced itself");
    // Lease 350 ms (peer_inactive - heartbeat), plus polling slack.
    assert!(
        last_pet < Duration::from_millis(500),
        "n2 stopped feeding once its lease lapsed: {last_pet:?}"
    );
    assert!(
        !n2_bytes.contains(&b'V'),
        "a fenced node leaves its watchdog counting"
    );
    // The survivors waited for n2's lease and its watchdog (1 s) to have run out.
    let at = survivors_at.expect("the survivors took over");
    assert!(
        at >= Duration::from_millis(1300),
        "settle includes the watchdog timeout: {at:?}"
    );

    // A graceful stop stands the watchdog down with the magic 'V'.
    let out = vigil(&["stop", "--socket", &sock(1)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(daemons[1].wait_exit(Duration::from_secs(5)), Some(0));
    let tail = drain(&mut fifos[1]);
    assert_eq!(tail.last(), Some(&b'V'), "n1 disarmed: {tail:?}");
    assert_eq!(daemons[1].events_named("watchdog.disarmed").len(), 1);
    daemons[0].kill();
}

#[test]
fn fault_injection_is_refused_unless_enabled() {
    let dir = TempDir::new("fault-off");
    let (config, _) = loopback_config(dir.path(), 2, "", TIMERS, "");
    let daemons = start_daemons(dir.path(), &[config.clone(), config]);
    wait_view_with_authority(&daemons, &[0, 1]);
    let out = vigil(&[
        "fault",
        "--socket",
        daemons[0].socket.to_str().expect("utf-8"),
        "block",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fault injection is disabled"), "{err}");
    assert!(err.contains("cluster.fault_injection = true"), "{err}");
}
