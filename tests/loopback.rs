//! Three real daemons on 127.0.0.1, each with two UDP links.

use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_lab::harness::*;
use vigil_llt::types::{ClusterId, Generation, Incarnation, LinkId, NodeId};
use vigil_llt::wire::{self, Header, Kind};

const HEARTBEAT_MS: u64 = 50;
const PEER_INACTIVE_MS: u64 = 500;

struct Cluster {
    dir: TempDir,
    config: PathBuf,
    ports: Vec<u16>,
    daemons: Vec<Daemon>,
}

fn write_config(dir: &Path, n: usize, key: Option<&[u8]>) -> (PathBuf, Vec<u16>) {
    let mut cluster = String::new();
    if let Some(key) = key {
        let kp = dir.join("key");
        std::fs::write(&kp, key).unwrap();
        std::fs::set_permissions(&kp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        cluster.push_str("key_file = \"key\"\n");
    }
    let timers = format!(
        "heartbeat = {HEARTBEAT_MS}\nheartbeat_lowpri = 100\npeer_trouble = 250\npeer_inactive = {PEER_INACTIVE_MS}"
    );
    loopback_config(dir, n, &cluster, &timers, "")
}

impl Cluster {
    fn start(tag: &str, n: usize, key: Option<&[u8]>) -> Cluster {
        let dir = TempDir::new(tag);
        let (config, ports) = write_config(dir.path(), n, key);
        let daemons = (0..n)
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
        Cluster {
            dir,
            config,
            ports,
            daemons,
        }
    }

    fn nvv(&self, i: usize) -> Option<Value> {
        lltstat_json(&self.daemons[i].socket, &["-nvv"])
    }

    fn wait_all_up(&self) {
        wait_for(
            Duration::from_secs(20),
            "every node to see every peer UP on both links",
            || (0..self.daemons.len()).all(|i| self.nvv(i).is_some_and(|v| all_peers_up(&v))),
        );
    }
}

#[test]
fn three_daemons_see_each_other_and_report_a_killed_one_down() {
    let mut c = Cluster::start("kill", 3, None);
    c.wait_all_up();
    // Every node lists every node with both links, addresses and RTTs.
    for i in 0..3 {
        let v = c.nvv(i).unwrap();
        assert_eq!(v["local"], i as u64);
        assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
        for peer in (0..3).filter(|p| *p != i) {
            let e = node_entry(&v, peer as u64).unwrap();
            assert_eq!(e["name"], format!("n{peer}"));
            let links = e["links"].as_array().unwrap();
            assert_eq!(links.len(), 2);
            assert_eq!(
                links[0]["address"],
                format!("127.0.0.1:{}", c.ports[2 * peer])
            );
            assert!(
                links.iter().all(|l| l["rtt_us"].as_u64().is_some()),
                "RTT missing: {e}"
            );
        }
    }
    let killed_at = wall_us();
    c.daemons[2].kill();
    for i in 0..2 {
        wait_for(Duration::from_secs(5), "n2 reported DOWN", || {
            c.nvv(i).is_some_and(|v| {
                let e = node_entry(&v, 2).unwrap().clone();
                e["state"] == "CONNWAIT"
                    && e["links"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|l| l["state"] == "DOWN")
            })
        });
        // The daemon's own decision time, from its log: within peer_inactive plus
        // two heartbeats of the kill.
        let down: Vec<Value> = c.daemons[i]
            .events()
            .into_iter()
            .filter(|e| e["event"] == "peer.down" && e["peer"] == 2)
            .collect();
        assert_eq!(down.len(), 1, "one peer.down for n2 on n{i}");
        let at = down[0]["ts_us"].as_u64().unwrap();
        let after_ms = (at.saturating_sub(killed_at)) as f64 / 1000.0;
        let bound = (PEER_INACTIVE_MS + 2 * HEARTBEAT_MS) as f64;
        eprintln!("n{i}: n2 DOWN {after_ms:.1} ms after the kill (bound {bound} ms)");
        assert!(after_ms <= bound, "n{i} took {after_ms} ms");
        assert!(
            after_ms >= (PEER_INACTIVE_MS / 2) as f64,
            "suspiciously early: {after_ms} ms"
        );
        // The survivors still see each other.
        let v = c.nvv(i).unwrap();
        assert_eq!(node_entry(&v, 1 - i as u64).unwrap()["state"], "OPEN");
    }
    // The log carries the stable event names for links too.
    let ev = c.daemons[0].events();
    assert!(ev
        .iter()
        .any(|e| e["event"] == "link.down" && e["peer"] == 2));
    assert!(ev.iter().any(|e| e["event"] == "peer.up" && e["peer"] == 1));
}

fn drops(stats: &Value, link: usize, reason: &str) -> u64 {
    stats["links"][link]["drops"][reason].as_u64().unwrap()
}

#[test]
fn bad_frames_are_counted_and_change_nothing() {
    let key = b"a cluster key of enough bytes for the test";
    let mut c = Cluster::start("bad", 3, Some(key));
    c.wait_all_up();
    let sock = &c.daemons[0].socket.clone();
    // Let node 1's sequence numbers run well past the 64-frame replay window, so an
    // old sequence number is a replay and not a frame that never arrived.
    wait_for(
        Duration::from_secs(20),
        "node 1 to send 200 frames on link a",
        || {
            lltstat_json(&c.daemons[1].socket, &[])
                .is_some_and(|s| s["links"][0]["frames_out"].as_u64().unwrap_or(0) > 200)
        },
    );
    let before = lltstat_json(sock, &[]).unwrap();
    let inc1 = node_entry(&c.nvv(0).unwrap(), 1).unwrap()["incarnation"]
        .as_u64()
        .unwrap();
    let frame_key = wire::FrameKey::from_material(key);
    let header = Header {
        kind: Kind::Heartbeat,
        link: LinkId(0),
        src: NodeId(1),
        dst: Some(NodeId(0)),
        cluster: ClusterId(4711),
        incarnation: Incarnation(inc1),
        seq: 1,
        generation: Generation(0),
        tx_time_us: 1,
        echo_time_us: 0,
        echo_hold_us: 0,
        echo_incarnation: Incarnation(0),
        confirm: false,
    };
    let target = format!("127.0.0.1:{}", c.ports[0]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |b: &[u8]| {
        tx.send_to(b, &target).unwrap();
    };
    const N: u64 = 5;
    for k in 0..N {
        // Garbage.
        send(b"\x00\x01garbage that is no frame at all");
        // Truncated: a well-formed, signed frame cut short.
        let good = wire::encode(&header, &[], Some(&frame_key));
        send(&good[..40]);
        // Replayed: node 1's current incarnation, an old sequence number, right key.
        let mut old = header;
        old.seq = 1 + k;
        send(&wire::encode(&old, &[], Some(&frame_key)));
        // Stale incarnation, right key.
        let mut stale = header;
        stale.incarnation = Incarnation(inc1 - 1);
        stale.seq = 1_000_000 + k;
        send(&wire::encode(&stale, &[], Some(&frame_key)));
        // Wrong cluster.
        let mut other = header;
        other.cluster = ClusterId(4712);
        send(&wire::encode(&other, &[], Some(&frame_key)));
        // Wrong key under the right key ID.
        let mut forged = header;
        forged.seq = u64::MAX - k;
        let wrong = wire::FrameKey {
            id: frame_key.id,
            key: wire::derive_key(b"not the key"),
        };
        send(&wire::encode(&forged, &[], Some(&wrong)));
        // A key the node does not hold.
        let unknown = wire::FrameKey::from_material(b"not the key either");
        send(&wire::encode(&forged, &[], Some(&unknown)));
    }
    let expect = [
        ("bad_magic", N),
        ("truncated", N),
        ("replay", N),
        ("stale_incarnation", N),
        ("wrong_cluster", N),
        ("auth", N),
        ("unknown_key", N),
    ];
    wait_for(Duration::from_secs(5), "every bad frame counted", || {
        let now = lltstat_json(sock, &[]).unwrap();
        expect
            .iter()
            .all(|(r, n)| drops(&now, 0, r) - drops(&before, 0, r) == *n)
    });
    // Let a few hundred ms pass: the node keeps running and keeps its peers.
    std::thread::sleep(Duration::from_millis(4 * HEARTBEAT_MS));
    let after = lltstat_json(sock, &[]).unwrap();
    for (r, n) in expect {
        assert_eq!(drops(&after, 0, r) - drops(&before, 0, r), n, "{r}");
    }
    assert!(
        c.daemons[0].running(),
        "daemon died: {}",
        c.daemons[0].log_text()
    );
    assert!(all_peers_up(&c.nvv(0).unwrap()));
    assert!(c.daemons[0]
        .events()
        .iter()
        .all(|e| e["event"] != "peer.down" && e["event"] != "link.down"));
    // The text view shows them too.
    let text = vigil(&["lltstat", "--socket", sock.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("dropped: replay"), "{text}");
    assert!(text.contains("dropped: auth"), "{text}");
}

#[test]
fn a_second_daemon_for_the_same_node_is_refused_with_a_clear_error() {
    let c = Cluster::start("dup", 2, None);
    c.wait_all_up();
    let mut twin = Daemon::start(
        &c.config,
        "n1",
        &c.dir.path().join("twin.sock"),
        &c.dir.path().join("twin.log"),
        None,
    );
    let code = twin.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1), "{}", twin.log_text());
    let log = twin.log_text();
    assert!(
        log.contains(&format!("127.0.0.1:{}", c.ports[2])) && log.contains("in use"),
        "{log}"
    );
    assert!(all_peers_up(&c.nvv(0).unwrap()));
}

#[test]
fn lltstat_answers_to_its_own_name_and_prints_the_veritas_layout() {
    let c = Cluster::start("name", 2, None);
    c.wait_all_up();
    let link = c.dir.path().join("lltstat");
    std::os::unix::fs::symlink(vigil_bin(), &link).unwrap();
    let out = std::process::Command::new(&link)
        .args(["-nvv", "--socket"])
        .arg(&c.daemons[0].socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("LLT node information:"), "{text}");
    let local = text.lines().find(|l| l.contains(" n0")).unwrap();
    assert!(
        local.trim_start().starts_with("* 0 n0"),
        "local node not starred: {local}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("UP") && l.contains(&format!("127.0.0.1:{}", c.ports[2]))),
        "{text}"
    );
    let n = std::process::Command::new(&link)
        .args(["-n", "--socket"])
        .arg(&c.daemons[1].socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&n.stdout);
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("* 1 n1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("0 n0") && l.contains("OPEN")),
        "{text}"
    );
    let cfg = lltstat_json(&c.daemons[0].socket, &["-c"]).unwrap();
    assert_eq!(cfg["timers"]["peer_inactive_ms"], PEER_INACTIVE_MS);
    assert_eq!(cfg["cluster"]["id"], 4711);
}

#[test]
fn the_control_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start("ctl", 2, None);
    c.wait_all_up();
    let sock = &c.daemons[0].socket;
    let mode = std::fs::metadata(sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");
    if !root_or_skip("the SO_PEERCRED caller check") {
        return;
    }
    // Even with the file mode opened up, another user is refused by the daemon's
    // SO_PEERCRED check. Run a copy of the binary that user can execute.
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let bin = c.dir.path().join("vigil-copy");
    std::fs::copy(vigil_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["lltstat", "-n", "--socket"])
        .arg(sock)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    // Root still gets an answer.
    assert!(lltstat_json(sock, &["-n"]).is_some());
}
