//! The witness live: `vigil drill two-node-witness` (loopback, and network namespaces
//! as root under CI), and one `vigil witness` process serving two clusters at once.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// The drill passed, with a decision time on each of its six cases.
fn assert_pass(args: &[&str]) {
    let out = Command::new(VIGIL)
        .args(args)
        .output()
        .expect("run vigil drill");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = format!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(
        text.lines().any(|l| l.starts_with("PASS two-node-witness")),
        "{report}"
    );
    let cases: Vec<&str> = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.len() > 2 && t.as_bytes()[0].is_ascii_digit() && t.as_bytes()[1] == b' '
        })
        .collect();
    assert_eq!(cases.len(), 6, "{report}");
    for c in cases {
        assert!(
            c.trim_end().ends_with(" ms"),
            "no decision time in {c:?}\n{report}"
        );
    }
    assert!(!text.contains("split brain"), "{report}");
}

#[test]
fn two_node_witness_drill_passes_on_loopback() {
    assert_pass(&["drill", "two-node-witness", "--brief"]);
}

#[test]
fn two_node_witness_drill_passes_in_network_namespaces() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || std::env::var("CI").as_deref() != Ok("true") {
        println!("skipped: needs root and CI=true (network namespaces, nftables)");
        return;
    }
    assert_pass(&["drill", "two-node-witness", "--netns", "--brief"]);
}

/// Kills the processes it holds when dropped, so a failed test leaves none behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ok(args: &[&str]) -> String {
    let out = Command::new(VIGIL).args(args).output().unwrap();
    assert!(out.status.success(), "vigil {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Option<Value> {
    let out = Command::new(VIGIL).args(args).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// A two-node cluster `name` with ID `id` in `dir`, its witness on 127.0.0.1.
fn cluster_file(dir: &Path, name: &str, id: u32, ports: &[u16]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    ok(&["keygen", d.join("cluster.key").to_str().unwrap()]);
    ok(&["keygen", d.join("witness.key").to_str().unwrap()]);
    let text = format!(
        "[cluster]\nname = \"{name}\"\nid = {id}\nkey_file = \"cluster.key\"\nstate_dir = \"state\"\nrun_dir = \"{run}\"\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\n\n[[links]]\nname = \"w\"\nkind = \"udp\"\n\n\
         [witness]\nlink = \"w\"\naddress = \"127.0.0.1:{w}\"\nkey_file = \"witness.key\"\n\n\
         [[nodes]]\nid = 0\nname = \"n0\"\nlinks = {{ a = \"127.0.0.1:{a0}\", w = \"127.0.0.1:{w0}\" }}\n\n\
         [[nodes]]\nid = 1\nname = \"n1\"\nlinks = {{ a = \"127.0.0.1:{a1}\", w = \"127.0.0.1:{w1}\" }}\n",
        run = d.display(),
        w = ports[0],
        a0 = ports[1],
        w0 = ports[2],
        a1 = ports[3],
        w1 = ports[4],
    );
    let path = d.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    ok(&["config", "check", path.to_str().unwrap()]);
    path
}

fn spawn(procs: &mut Procs, dir: &Path, log: &str, args: &[&str]) {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    procs.0.push(
        Command::new(VIGIL)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
}

/// The members of the view node `node` of `cluster` holds authority on, if any.
fn held(dir: &Path, cluster: &str, node: &str) -> Option<Vec<u64>> {
    let sock = dir.join(cluster).join(format!("{node}.sock"));
    let d = json(&["fenceadm", "-d", "--json", "--socket", sock.to_str()?])?;
    if d["authority"] != true {
        return None;
    }
    d["members"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_u64).collect())
}

fn wait(what: &str, dir: &Path, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; logs in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_witness_serves_two_clusters_at_once() {
    let dir = std::env::temp_dir().join(format!("vigil-witness-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = free_ports(10);
    let red = cluster_file(&dir, "red", 11, &ports[..5]);
    let blue = cluster_file(&dir, "blue", 12, &ports[5..]);
    let wcfg = dir.join("witness.toml");
    std::fs::write(
        &wcfg,
        format!(
            "[witness]\nstate_dir = \"wstate\"\nrun_dir = \"{}\"\n\n[[clusters]]\nconfig = \"{}\"\n\n[[clusters]]\nconfig = \"{}\"\n",
            dir.display(),
            red.display(),
            blue.display()
        ),
    )
    .unwrap();
    let wcfg_s = wcfg.to_str().unwrap();
    let mut procs = Procs(Vec::new());
    spawn(
        &mut procs,
        &dir,
        "witness.log",
        &["witness", "--config", wcfg_s],
    );
    for (cfg, c) in [(&red, "red"), (&blue, "blue")] {
        for n in ["n0", "n1"] {
            spawn(
                &mut procs,
                &dir,
                &format!("{c}-{n}.log"),
                &["daemon", "--config", cfg.to_str().unwrap(), "--node", n],
            );
        }
    }
    // Both clusters form with the witness in their views.
    wait("both clusters to form with the witness", &dir, || {
        ["red", "blue"].iter().all(|c| {
            ["n0", "n1"]
                .iter()
                .all(|n| held(&dir, c, n) == Some(vec![0, 1, 63]))
        })
    });
    let status = json(&["witness", "status", "--json", "--config", wcfg_s]).unwrap();
    let clusters = status["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2, "{status}");
    for (c, id) in clusters.iter().zip([11, 12]) {
        assert_eq!(c["cluster_id"], id, "{status}");
        assert_eq!(c["reachable"], serde_json::json!([0, 1]), "{status}");
        assert_eq!(
            c["view"]["members"],
            serde_json::json!([0, 1, 63]),
            "{status}"
        );
    }
    let text = ok(&["witness", "status", "--config", wcfg_s]);
    assert!(text.contains("cluster red (ID 11)"), "{text}");
    assert!(text.contains("cluster blue (ID 12)"), "{text}");
    // fenceadm on a node shows the witness.
    let sock = dir.join("red/n0.sock");
    let d = json(&[
        "fenceadm",
        "-d",
        "--json",
        "--socket",
        sock.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(d["witness"]["reachable"], true, "{d}");
    assert_eq!(d["witness"]["in_view"], true, "{d}");
    // lltstat -nvv shows the witness on its link only, UP.
    let nvv = ok(&["lltstat", "-nvv", "--socket", sock.to_str().unwrap()]);
    let rows: Vec<&str> = nvv
        .lines()
        .skip_while(|l| !l.contains("63 witness"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(rows.len(), 1, "{nvv}");
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(&cols[..2], ["w", "UP"], "{nvv}");

    // Kill n0 of red and n1 of blue (procs: witness, red n0, red n1, blue n0, blue
    // n1): each survivor keeps authority only with the witness's vote.
    let _ = procs.0[1].kill();
    let _ = procs.0[4].kill();
    wait(
        "red n1 and blue n0 to hold views with the witness",
        &dir,
        || {
            held(&dir, "red", "n1") == Some(vec![1, 63])
                && held(&dir, "blue", "n0") == Some(vec![0, 63])
        },
    );
    let status = json(&["witness", "status", "--json", "--config", wcfg_s]).unwrap();
    let votes: Vec<Value> = status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["last_vote"]["members"].clone())
        .collect();
    assert_eq!(
        votes,
        vec![serde_json::json!([1, 63]), serde_json::json!([0, 63])],
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
