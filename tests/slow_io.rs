//! A node whose log reader stops reading and whose disk is slow keeps its
//! heartbeats: log lines are dropped and counted, generations are written on a
//! thread of their own, and nobody is removed.
//!
//! Five daemons on loopback (default timers: heartbeat 100 ms, peer_inactive 600
//! ms). n1's standard error is a 4 KiB pipe that nobody reads, and every write of
//! its state file is made 2 s slower (`vigil fault slow-store`), longer than
//! peer_inactive. Then 10,000 log lines are provoked on n1 (each `fault clear` is
//! logged) and n4 is killed, so that the others install a view without n4 and n1
//! must record its generation. n1 must stay a member throughout, its heartbeat
//! gaps stay under peer_inactive, and `lltstat --json` counts the lost lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use vigil_lab::harness::*;

/// Send `{"cmd":"fault","op":"clear"}` to `socket` `count` times, one connection
/// each; how many were answered.
fn provoke_log_lines(socket: &std::path::Path, count: usize) -> usize {
    let mut answered = 0;
    for _ in 0..count {
        let Ok(mut s) = UnixStream::connect(socket) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"{\"cmd\":\"fault\",\"op\":\"clear\"}\n")
            .is_err()
        {
            continue;
        }
        let mut line = String::new();
        if BufReader::new(s).read_line(&mut line).is_ok() && line.contains("done") {
            answered += 1;
        }
    }
    answered
}

#[test]
fn a_blocked_log_and_a_slow_disk_stop_no_heartbeat() {
    let dir = TempDir::new("slow-io");
    let (config, _) = loopback_config(&dir.0, 5, "fault_injection = true\n", "", "");
    let mut daemons = start_daemons(&dir.0, &vec![config.clone(); 5]);
    // n1 again, its standard error a small pipe that nobody reads.
    daemons[1].kill();
    let sock1 = dir.0.join("n1.sock");
    let _ = std::fs::remove_file(&sock1);
    let mut n1 = Command::new(vigil_bin())
        .args(["daemon", "--log-format", "json", "--node", "n1", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&sock1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn n1");
    let pipe = n1.stderr.take().expect("n1's stderr");
    // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ takes an int.
    let size = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size >= 4096,
        "cannot shrink the pipe: {}",
        std::io::Error::last_os_error()
    );
    let all = [0u64, 1, 2, 3, 4];
    let others: Vec<&Daemon> = [0, 2, 3, 4].iter().map(|&i| &daemons[i]).collect();
    wait_for(
        Duration::from_secs(30),
        "n0, n2, n3, n4 see all five",
        || same_view(&others, &all).is_some(),
    );
    let first = same_view(&others, &all).expect("a view of five");
    let out = vigil(&[
        "fault",
        "--socket",
        sock1.to_str().expect("utf-8"),
        "slow-store",
        "2000",
    ]);
    assert!(
        out.status.success(),
        "slow-store: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let answered = provoke_log_lines(&sock1, 10_000);
    assert!(
        answered > 9_000,
        "n1 answered only {answered} of 10000 requests"
    );
    assert!(
        matches!(n1.try_wait(), Ok(None)),
        "n1 died with its log blocked"
    );

    daemons[4].kill();
    let four = [0u64, 1, 2, 3];
    let others: Vec<&Daemon> = [0, 2, 3].iter().map(|&i| &daemons[i]).collect();
    let (second, took) = wait_same_view(&others, &four, Duration::from_secs(20));
    println!("view {second} of [0,1,2,3] after {took:?} (view {first} before)");
    assert!(second > first);
    // n1 records `second` slowly, and in the meantime keeps its heartbeats.
    std::thread::sleep(Duration::from_secs(3));
    assert!(matches!(n1.try_wait(), Ok(None)), "n1 stopped");
    let stats = lltstat_json(&sock1, &[]).expect("n1 answers lltstat");
    let lost = stats["log_lines_lost"].as_u64().expect("log_lines_lost");
    let max_gap_ms = stats["heartbeat"]["max_us"]
        .as_u64()
        .expect("heartbeat max")
        / 1000;
    println!("n1: {lost} log lines lost, longest heartbeat gap {max_gap_ms} ms");
    assert!(lost > 0, "nothing was lost, so the log was never blocked");
    assert!(
        max_gap_ms < 600,
        "n1's heartbeats stopped for {max_gap_ms} ms, longer than peer_inactive"
    );
    // Nobody was removed: every view n0 installed after the first has n1, and
    // the view after n4's loss is the one all four hold.
    for e in daemons[0].events() {
        if e["event"] == "view.installed" {
            let members: Vec<u64> =
                serde_json::from_str(e["members"].as_str().unwrap_or("[]")).unwrap_or_default();
            assert!(members.contains(&1), "n0 installed a view without n1: {e}");
        }
    }
    let gab = gabconfig_json(&sock1).expect("n1 answers gabconfig");
    let (g1, members) = port_a(&gab).expect("n1 has port a");
    assert_eq!((g1, members), (second, four.to_vec()), "n1's view");
    let _ = n1.kill();
    let _ = n1.wait();
    drop(pipe);
}
