//! `vigil daemon` under a service manager: the systemd notification protocol
//! (`sd_notify(3)`) seen from the manager's side, a Unix datagram socket.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vigil_lab::harness::*;

/// What the daemon sent, with when it arrived.
struct Manager {
    sock: UnixDatagram,
    got: Vec<(Instant, String)>,
}

impl Manager {
    /// Receive for `within`, or until `until` holds for a message.
    fn recv_until(&mut self, within: Duration, until: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let done = text.lines().any(&until);
                    self.got.push((Instant::now(), text));
                    if done {
                        return true;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("receiving notifications: {e}"),
            }
        }
        false
    }

    /// The messages that arrived after `since` and are `what`.
    fn count_since(&self, since: Instant, what: &str) -> usize {
        self.got
            .iter()
            .filter(|(at, m)| *at >= since && m.lines().any(|l| l == what))
            .count()
    }

    fn all(&self) -> String {
        let lines: Vec<&str> = self.got.iter().map(|(_, m)| m.as_str()).collect();
        lines.join("\n")
    }
}

#[test]
fn daemon_notifies_ready_status_watchdog_and_stopping() {
    let dir = TempDir::new("notify");
    // The default timer profile, with a lease (peer_inactive - heartbeat) longer
    // than the SIGSTOP below: a node stopped for longer than its lease fences
    // itself when it runs again (exit 4), which is not what this test is about.
    let (config, _) = loopback_config(dir.path(), 3, "", "peer_inactive = 3000", "");
    let path = dir.path().join("notify.sock");
    let mut manager = Manager {
        sock: UnixDatagram::bind(&path).expect("bind the notify socket"),
        got: Vec::new(),
    };
    let socket = dir.path().join("n0.sock");
    let log = dir.path().join("n0.log");
    let child = Command::new(vigil_bin())
        .args(["daemon", "--log-format", "json", "--node", "n0", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn vigil daemon");
    let mut n0 = Daemon {
        name: "n0".into(),
        socket: socket.clone(),
        log,
        child: Some(child),
    };
    let _others: Vec<Daemon> = (1..3)
        .map(|i| {
            Daemon::start(
                &config,
                &format!("n{i}"),
                &dir.path().join(format!("n{i}.sock")),
                &dir.path().join(format!("n{i}.log")),
                None,
            )
        })
        .collect();

    // READY=1 once the node holds authority: a member of a view by then.
    assert!(
        manager.recv_until(Duration::from_secs(30), |l| l == "READY=1"),
        "no READY=1 within 30 s; got:\n{}",
        manager.all()
    );
    let gab = gabconfig_json(&socket).expect("n0 answers");
    let (generation, members) = port_a(&gab).expect("n0 is a member when it says READY=1");
    assert!(generation >= 1 && members.contains(&0), "{gab}");
    // The log line may still be on its way to the file.
    wait_for(
        Duration::from_secs(2),
        "n0's authority.changed line",
        || {
            n0.events_named("authority.changed")
                .iter()
                .any(|e| e["token"].as_u64().is_some())
        },
    );
    assert!(
        manager
            .all()
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("member") && l.contains("token"))
            || manager.recv_until(Duration::from_secs(10), |l| {
                l.starts_with("STATUS=") && l.contains("member") && l.contains("token")
            }),
        "no STATUS= line with the view and token; got:\n{}",
        manager.all()
    );

    // WATCHDOG=1 every 100 ms (half of WATCHDOG_USEC): about 20 in 2 s.
    let from = Instant::now();
    manager.recv_until(Duration::from_secs(2), |_| false);
    let pets = manager.count_since(from, "WATCHDOG=1");
    assert!(
        (8..=40).contains(&pets),
        "{pets} WATCHDOG=1 in 2 s at WATCHDOG_USEC=200000 (expected about 20)"
    );

    // A stopped loop feeds nothing.
    assert!(n0.signal(libc::SIGSTOP));
    std::thread::sleep(Duration::from_millis(50));
    manager.recv_until(Duration::from_millis(100), |_| false);
    let stopped = Instant::now();
    manager.recv_until(Duration::from_millis(1500), |_| false);
    let while_stopped = manager.count_since(stopped, "WATCHDOG=1");
    assert!(n0.signal(libc::SIGCONT));
    assert_eq!(
        while_stopped, 0,
        "WATCHDOG=1 arrived while the daemon was stopped"
    );
    assert!(
        manager.recv_until(Duration::from_secs(5), |l| l == "WATCHDOG=1"),
        "no WATCHDOG=1 after SIGCONT"
    );

    // A stop says STOPPING=1.
    n0.terminate();
    assert!(
        manager.recv_until(Duration::from_secs(10), |l| l == "STOPPING=1"),
        "no STOPPING=1 after SIGTERM; got:\n{}",
        manager.all()
    );
    assert_eq!(n0.wait_exit(Duration::from_secs(10)), Some(0));
}
