//! `vigil watch --json` against a live loopback cluster, the Python sidecar
//! following a node, hooks running on authority changes, and the inspection
//! commands against a node embedded through `vigil_runtime::start`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
// The lab helpers, in one place (they are moving to a crate of their own).
use vigil_lab::harness::{loopback_config, vigil_bin, wait_for, Daemon, TempDir};

const TIMERS: &str =
    "heartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 250\npeer_inactive = 500";
/// Far more than detection (peer_inactive) plus a race takes.
const CHANGE_WITHIN: Duration = Duration::from_secs(10);

fn start(dir: &Path, n: usize, tail: &str) -> (PathBuf, Vec<Daemon>) {
    let (config, _) = loopback_config(dir, n, "", TIMERS, tail);
    let daemons = (0..n)
        .map(|i| {
            Daemon::start(
                &config,
                &format!("n{i}"),
                &dir.join(format!("n{i}.sock")),
                &dir.join(format!("n{i}.log")),
                None,
            )
        })
        .collect();
    (config, daemons)
}

fn socket_up(socket: &Path) {
    wait_for(Duration::from_secs(10), "the control socket", || {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
}

/// A child whose stdout lines arrive on a channel; killed when dropped.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn spawn(cmd: &mut Command) -> Follow {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Follow { child, lines }
    }

    /// The next line within `within`, or `None`.
    fn next(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Lines until one satisfies `f` within `within`; that one.
    fn until(&self, within: Duration, what: &str, mut f: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(l) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if f(&l) {
                return l;
            }
            seen.push(l);
        }
        panic!("no line with {what} within {within:?}; saw {seen:#?}");
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(l: &str) -> Value {
    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
}

#[test]
fn watch_prints_the_authority_at_once_and_a_higher_token_after_a_node_dies() {
    let dir = TempDir::new("watch");
    let hook = "\n[[hooks]]\nname = \"rec\"\ncommand = [\"/bin/sh\", \"-c\", \"echo $VIGIL_EVENT $VIGIL_TOKEN $VIGIL_PRIMARY $VIGIL_IS_PRIMARY $VIGIL_MEMBERS >> {dir}/hook-$VIGIL_NODE\"]\non = [\"authority\"]\ntimeout = 5000\n";
    let (_config, mut daemons) = start(dir.path(), 3, hook);
    let socket = daemons[0].socket.clone();
    socket_up(&socket);
    let started = Instant::now();
    let watch = Follow::spawn(Command::new(vigil_bin()).args([
        "watch",
        "--json",
        "--socket",
        socket.to_str().expect("utf-8 path"),
    ]));
    // The current state at once, held or not.
    let first = json(&watch.next(Duration::from_secs(3)).expect("a line at once"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(first["protocol"], 1, "{first}");
    assert_eq!(first["event"], "subscribe", "{first}");
    for field in [
        "node",
        "token",
        "primary",
        "is_primary",
        "holds",
        "members",
        "installed_generation",
        "client_generation",
        "valid_for_ms",
        "ts_us",
    ] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }
    // Once the cluster has formed: a line with a token and all three members.
    let formed = if first["holds"] == true && first["members"].as_array().map(Vec::len) == Some(3) {
        first
    } else {
        json(
            &watch.until(Duration::from_secs(15), "a 3-member authority", |l| {
                let v = json(l);
                v["holds"] == true && v["members"].as_array().map(Vec::len) == Some(3)
            }),
        )
    };
    let token = formed["token"].as_u64().expect("a token");
    assert_eq!(formed["client_generation"], formed["token"]);
    // Kill -9 the primary if it is another node, else node 2.
    let primary = formed["primary"].as_u64().expect("a primary") as usize;
    let victim = if primary == 0 { 2 } else { primary };
    let killed = Instant::now();
    daemons[victim].kill();
    let after = json(&watch.until(CHANGE_WITHIN, "a higher token", |l| {
        json(l)["token"].as_u64().is_some_and(|t| t > token)
    }));
    eprintln!(
        "token {token} -> {} {:?} after kill -9 of n{victim}",
        after["token"],
        killed.elapsed()
    );
    assert!(killed.elapsed() < CHANGE_WITHIN);
    let members: Vec<u64> = after["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(!members.contains(&(victim as u64)), "{after}");
    // The hook ran on n0 with the new token, off the node's thread.
    let hook_log = dir.path().join("hook-n0");
    let new_token = after["token"].as_u64().expect("token").to_string();
    wait_for(
        Duration::from_secs(5),
        "the hook's run with the new token",
        || {
            std::fs::read_to_string(&hook_log)
                .unwrap_or_default()
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(new_token.as_str()))
        },
    );
    // The daemon goes away: watch says so and exits 1.
    daemons[0].kill();
    let mut watch = watch;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = watch.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "vigil watch did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
}

#[test]
fn the_python_sidecar_starts_the_service_on_the_primary_and_stops_it_when_the_node_goes() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let dir = TempDir::new("sidecar");
    let (_config, mut daemons) = start(dir.path(), 1, "");
    let socket = daemons[0].socket.clone();
    socket_up(&socket);
    let sidecar = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sidecar.py");
    let follow = Follow::spawn(
        Command::new("python3")
            .arg(&sidecar)
            .arg("--socket")
            .arg(&socket),
    );
    let started = follow.until(Duration::from_secs(15), "the service started", |l| {
        l.contains("started service")
    });
    assert!(started.contains("with token "), "{started}");
    daemons[0].kill();
    follow.until(Duration::from_secs(5), "the service stopped", |l| {
        l.contains("stopped service")
    });
}

#[test]
fn the_inspection_commands_answer_a_node_embedded_through_the_runtime() {
    let dir = TempDir::new("embedded");
    let (config, _) = loopback_config(dir.path(), 1, "", TIMERS, "");
    let cfg = vigil_runtime::ClusterConfig::load(&config).expect("config");
    let socket = dir.path().join("embedded.sock");
    let node = vigil_runtime::start(
        cfg,
        "n0",
        vigil_runtime::Options {
            control_socket: vigil_runtime::ControlSocket::At(socket.clone()),
            realtime: false,
            ..vigil_runtime::Options::default()
        },
    )
    .expect("start the embedded node");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--socket", socket.to_str().expect("utf-8 path")]);
        Command::new(vigil_bin())
            .args(&all)
            .output()
            .expect("run vigil")
    };
    wait_for(Duration::from_secs(15), "gabconfig -a: a member", || {
        run(&["gabconfig", "-a"]).status.success()
    });
    for args in [
        &["lltstat", "-nvv"][..],
        &["gabconfig", "-a"],
        &["fenceadm", "-d"],
    ] {
        let out = run(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.trim().is_empty(),
            "{args:?}: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The typed client: the version, and a subscription that starts with a token.
    let (protocol, name) = vigil_runtime::client::version(&socket).expect("version");
    assert_eq!((protocol, name.as_str()), (1, "n0"));
    let first = vigil_runtime::client::subscribe(&socket)
        .next()
        .expect("a line")
        .expect("an authority line");
    assert!(first.holds && first.is_valid_primary(), "{first:?}");
    assert_eq!(first.token, node.current_authority().map(|a| a.token.0));
    node.shutdown();
    assert_eq!(node.join(), vigil_runtime::Ending::Stopped);
}
