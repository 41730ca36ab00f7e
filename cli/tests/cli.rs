//! The command line: bad configs are refused naming the field, bad command lines get
//! usage, and the binary answers to the name `lltstat`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil")
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-cli-{}", std::process::id()));
    // GOOD names `cluster.key` beside it: made once, by `vigil keygen`, in a
    // directory made afresh (an earlier process with the same ID may have left
    // one, key included, and keygen refuses to overwrite a key).
    static KEY: std::sync::Once = std::sync::Once::new();
    KEY.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = vigil(&["keygen", dir.join("cluster.key").to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
    });
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
[cluster]
name = "c"
key_file = "cluster.key"
id = 1

[timers]
heartbeat = 100
peer_trouble = 400
peer_inactive = 800

[[links]]
name = "a"
kind = "udp"

[[nodes]]
id = 0
name = "n0"
[nodes.links]
a = "127.0.0.1:5001"

[[nodes]]
id = 1
name = "n1"
[nodes.links]
a = "127.0.0.1:5002"

[[nodes]]
id = 2
name = "n2"
[nodes.links]
a = "127.0.0.1:5003"
"#;

fn check(name: &str, text: &str) -> (bool, String) {
    let p = temp(name, text);
    let out = vigil(&["config", "check", p.to_str().unwrap()]);
    let msg =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.contains(p.to_str().unwrap()),
        "message names the file: {msg}"
    );
    (out.status.success(), msg)
}

#[test]
fn a_good_config_passes() {
    let (ok, msg) = check("good.toml", GOOD);
    assert!(ok, "{msg}");
    assert!(msg.contains("ok"), "{msg}");
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let (ok, msg) = check(
        "unknown.toml",
        &GOOD.replace(
            "peer_inactive = 800",
            "peer_inactive = 800\npeer_inactve = 900",
        ),
    );
    assert!(!ok);
    assert!(msg.contains("peer_inactve"), "{msg}");
    assert!(msg.contains("timers"), "{msg}");
}

#[test]
fn a_duplicate_node_id_is_refused_by_name() {
    let (ok, msg) = check("dup.toml", &GOOD.replace("id = 2\n", "id = 1\n"));
    assert!(!ok);
    assert!(msg.contains("nodes[2].id"), "{msg}");
    assert!(msg.to_lowercase().contains("duplicate"), "{msg}");
}

#[test]
fn peer_inactive_not_above_peer_trouble_is_refused_by_name() {
    let (ok, msg) = check(
        "timers.toml",
        &GOOD.replace("peer_inactive = 800", "peer_inactive = 400"),
    );
    assert!(!ok);
    assert!(msg.contains("timers.peer_inactive"), "{msg}");
}

#[test]
fn a_seed_of_half_the_nodes_is_refused_by_name() {
    let four = format!(
        "{}\n[[nodes]]\nid = 3\nname = \"n3\"\n[nodes.links]\na = \"127.0.0.1:5004\"\n",
        GOOD.replace("id = 1\n\n[timers]", "id = 1\nseed = 2\n\n[timers]")
    );
    let (ok, msg) = check("seed.toml", &four);
    assert!(!ok);
    assert!(msg.contains("cluster.seed"), "{msg}");
}

#[test]
fn an_unkeyed_config_is_refused_and_an_insecure_one_warned_about() {
    let unkeyed = GOOD.replace("key_file = \"cluster.key\"\n", "");
    let (ok, msg) = check("unkeyed.toml", &unkeyed);
    assert!(!ok, "{msg}");
    let dir = std::env::temp_dir().join(format!("vigil-cli-{}", std::process::id()));
    assert!(
        msg.contains("unkeyed.toml: cluster.key_file: is required"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "`vigil keygen {}`",
            dir.join("cluster.key").display()
        )),
        "the message gives the command: {msg}"
    );
    let insecure = GOOD.replace("key_file = \"cluster.key\"\n", "insecure = true\n");
    let (ok, msg) = check("insecure.toml", &insecure);
    assert!(ok, "{msg}");
    assert!(msg.contains("frames NOT authenticated"), "{msg}");
    assert!(msg.contains("warning: "), "{msg}");
    assert!(
        msg.contains("cluster.insecure: llt frames are not authenticated"),
        "{msg}"
    );
    let (ok, msg) = check("keyed.toml", GOOD);
    assert!(ok && msg.contains("frames sent with key "), "{msg}");
    assert!(!msg.contains("warning"), "{msg}");
}

#[test]
fn keygen_makes_a_private_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vigil-cli-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k");
    let out = vigil(&["keygen", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("key ID "));
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = vigil(&["keygen", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = vigil(&["keygen", "--force", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_file_is_refused() {
    let out = vigil(&["config", "check", "/nonexistent/vigil.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vigil.toml"));
}

#[test]
fn a_bad_command_line_prints_usage() {
    for args in [
        &["--frobnicate"][..],
        &["lltstat", "-q"],
        &["daemon"],
        &["config"],
        &[],
    ] {
        let out = vigil(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
}

#[test]
fn the_binary_answers_to_the_name_lltstat() {
    let dir = std::env::temp_dir().join(format!("vigil-cli-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("lltstat");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vigil"), &link).unwrap();
    let out = Command::new(&link)
        .args(["-nvv", "--socket", "/nonexistent.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("lltstat: cannot reach the vigil daemon at /nonexistent.sock"),
        "{err}"
    );
    let out = Command::new(&link).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: vigil lltstat"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_command_lines_of_the_fencing_commands_print_usage() {
    for args in [
        &["gabconfig"][..],
        &["gabconfig", "-q"],
        &["gabconfig", "-a", "-x"],
        &["gabconfig", "-x", "--json"],
        &["fenceadm"],
        &["fenceadm", "-z"],
        &["fenceadm", "--json"],
        &["stop", "--bogus"],
    ] {
        let out = vigil(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
    let out = vigil(&["stop", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
}

#[test]
fn the_help_documents_the_fenced_exit_code() {
    let out = vigil(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("4 the daemon fenced itself"), "{help}");
    for cmd in ["gabconfig", "fenceadm", "stop"] {
        assert!(help.contains(cmd), "{cmd}: {help}");
    }
}

#[test]
fn the_commands_report_an_unreachable_daemon() {
    for (args, prefix) in [
        (
            &["gabconfig", "-a", "--socket", "/nonexistent.sock"][..],
            "gabconfig: ",
        ),
        (
            &["gabconfig", "-x", "--socket", "/nonexistent.sock"],
            "gabconfig: ",
        ),
        (
            &["fenceadm", "-d", "--json", "--socket", "/nonexistent.sock"],
            "fenceadm: ",
        ),
        (&["stop", "--socket", "/nonexistent.sock"], "vigil stop: "),
    ] {
        let out = vigil(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{prefix}cannot reach the vigil daemon at /nonexistent.sock"
            )),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_binary_answers_to_the_names_gabconfig_and_fenceadm() {
    let dir = std::env::temp_dir().join(format!("vigil-cli-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, flag) in [("gabconfig", "-a"), ("fenceadm", "-d")] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vigil"), &link).unwrap();
        let out = Command::new(&link)
            .args([flag, "--socket", "/nonexistent.sock"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "{name}: cannot reach the vigil daemon at /nonexistent.sock"
            )),
            "{name}: {err}"
        );
        let out = Command::new(&link).arg("--bogus").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("Usage: vigil {name}")),
            "{name}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Daemons on loopback for the command tests; killed (by PID) when dropped.
struct Loopback {
    dir: PathBuf,
    config: PathBuf,
    children: Vec<Option<std::process::Child>>,
}

impl Loopback {
    /// `n` nodes with one UDP link on 127.0.0.1, fast timers; none started yet.
    fn new(tag: &str, n: usize, extra_cluster: &str) -> Loopback {
        let dir = std::env::temp_dir().join(format!("vigil-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socks: Vec<std::net::UdpSocket> = (0..n)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let key = dir.join("cluster.key");
        let out = vigil(&["keygen", key.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let mut t = format!(
            "[cluster]\nname = \"cli\"\nid = 31\nrun_dir = \"{d}\"\nstate_dir = \"{d}/state\"\n\
             key_file = \"cluster.key\"\n{extra_cluster}\n\
             [timers]\nheartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 200\npeer_inactive = 400\n\n\
             [[links]]\nname = \"a\"\nkind = \"udp\"\n",
            d = dir.display()
        );
        for (i, s) in socks.iter().enumerate() {
            t.push_str(&format!(
                "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\nlinks = {{ a = \"127.0.0.1:{}\" }}\n",
                s.local_addr().unwrap().port()
            ));
        }
        drop(socks);
        let config = dir.join("cluster.toml");
        std::fs::write(&config, t).unwrap();
        Loopback {
            dir,
            config,
            children: (0..n).map(|_| None).collect(),
        }
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.join(format!("n{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["daemon", "--log-format", "json", "--node", &format!("n{i}")])
            .arg("--config")
            .arg(&self.config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// `vigil <args> --config C --node n<i>`.
    fn cmd(&self, i: usize, args: &[&str]) -> Output {
        let node = format!("n{i}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap(), "--node", &node]);
        vigil(&all)
    }

    fn json(&self, i: usize, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cmd(i, &all);
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_exit(&mut self, i: usize, timeout: std::time::Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.children[i].as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.children[i] = None;
                    return st.code();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default()
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("VIGIL_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn members(v: &serde_json::Value) -> Vec<u64> {
    v["ports"][0]["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn gabconfig_fenceadm_and_stop_on_a_live_cluster() {
    let mut c = Loopback::new("live", 3, "");
    for i in 0..3 {
        c.start(i);
    }
    // Installed everywhere and handed to clients (the token is shown once the
    // node holds authority on the view: a lease confirmed, a settle window over).
    wait_until("one view of [0,1,2] everywhere, with authority", || {
        let vs: Vec<_> = (0..3)
            .filter_map(|i| c.json(i, &["gabconfig", "-a"]))
            .collect();
        vs.len() == 3
            && vs
                .iter()
                .all(|v| members(v) == [0, 1, 2] && v["seeded"] == true)
            && vs.iter().all(|v| {
                v["ports"][0]["generation"] == vs[0]["ports"][0]["generation"]
                    && v["token"] == vs[0]["ports"][0]["generation"]
            })
    });
    let g = c.json(0, &["gabconfig", "-a"]).unwrap();
    assert_eq!(g["local"], 0);
    assert_eq!(g["ports"][0]["port"], "a");
    assert_eq!(g["ports"][1]["port"], "b");
    assert_eq!(g["ports"][0]["jeopardy"], serde_json::json!([]));
    assert_eq!(g["ports"][0]["visible"], serde_json::json!([]));
    let gen = g["ports"][0]["generation"].as_u64().unwrap();
    assert!(gen >= 1);

    let out = c.cmd(1, &["gabconfig", "-a"]);
    assert_eq!(out.status.code(), Some(0), "a member exits 0");
    let text = String::from_utf8_lossy(&out.stdout);
    // The primary is the first view's lowest member; the token is that view's
    // generation, the same number as port a's here (no view change under way).
    assert_eq!(g["primary"], 0);
    assert_eq!(g["token"].as_u64(), Some(gen));
    let expect = format!(
        "GAB Port Memberships\n===============================================================\n\
         Primary: primary 0, fencing token {gen:08x}\n\
         Port a gen   {gen:08x} membership 012\nPort b gen   {gen:08x} membership 012\n"
    );
    assert_eq!(text, expect);

    // The state file carries the generation and the view installed.
    let state = std::fs::read_to_string(c.dir.join("state/n1.generation")).unwrap();
    assert_eq!(state, format!("generation {gen}\ninstalled {gen} 0,1,2\n"));

    // fenceadm: the mode, authority, the members with `*` on the local one.
    wait_until("authority on n2", || {
        c.json(2, &["fenceadm", "-d"])
            .is_some_and(|v| v["authority"] == true)
    });
    let f = c.json(2, &["fenceadm", "-d"]).unwrap();
    assert_eq!(f["local"], 2);
    assert_eq!(f["mode"], "majority");
    assert_eq!(f["state"], "member");
    assert_eq!(f["generation"], gen);
    assert_eq!(f["members"], serde_json::json!([0, 1, 2]));
    assert!(f["last_race"].is_object(), "{f}");
    assert_eq!(f["last_race"]["verdict"], "won");
    assert!(f["last_race"]["started_ms"].is_u64(), "{f}");
    let out = c.cmd(2, &["fenceadm", "-d"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Fencing Mode: Majority",
        "Node State: member",
        "Authority: yes",
        &format!("Generation: {gen}"),
        "        * 2 (n2)\n",
        "          0 (n0)\n",
        "node   1 (n1): member",
        "verdict won",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }

    // -x on a seeded node is refused.
    let out = c.cmd(0, &["gabconfig", "-x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already seeded"));

    // vigil stop: n2 leaves, its daemon exits 0, the others install a view without it.
    let out = c.cmd(2, &["stop"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("n2 (node 2): leaving"), "{said}");
    assert!(said.contains("left the cluster"), "{said}");
    assert_eq!(c.wait_exit(2, std::time::Duration::from_secs(5)), Some(0));
    assert!(c.log(2).contains("\"node.left\""), "{}", c.log(2));
    wait_until("a view of [0,1]", || {
        (0..2).all(|i| {
            c.json(i, &["gabconfig", "-a"])
                .is_some_and(|v| members(&v) == [0, 1])
        })
    });
    let g2 = c.json(0, &["gabconfig", "-a"]).unwrap()["ports"][0]["generation"]
        .as_u64()
        .unwrap();
    assert!(g2 > gen);
    // Visible until llt declares it gone, then not seen.
    wait_until("n2 not seen from n0", || {
        c.json(0, &["fenceadm", "-d"])
            .is_some_and(|f| f["nodes"][2]["state"] == "not seen")
    });
    // No one fenced anybody.
    for i in 0..3 {
        assert!(!c.log(i).contains("node.self_fence"), "{}", c.log(i));
    }
}

#[test]
fn an_unseeded_node_is_not_a_member_until_seeded_by_hand() {
    // Seed count 3 of 3: two nodes wait.
    let mut c = Loopback::new("seed", 3, "");
    c.start(0);
    c.start(1);
    wait_until("n0 answers and sees n1", || {
        c.json(0, &["fenceadm", "-d"])
            .is_some_and(|v| v["nodes"][1]["state"] == "visible")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = c.cmd(0, &["gabconfig", "-a"]);
    assert_eq!(out.status.code(), Some(1), "not a member: exit 1");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GAB Port Memberships\n===============================================================\n"
    );
    let v = c.json(0, &["gabconfig", "-a"]).unwrap();
    assert_eq!(v["seeded"], false);
    assert_eq!(v["ports"], serde_json::json!([]));
    let f = c.json(0, &["fenceadm", "-d"]).unwrap();
    assert_eq!(f["state"], "unseeded");
    assert_eq!(f["authority"], false);
    assert_eq!(f["generation"], 0);

    // gabconfig -x: a loud warning, then the reachable nodes form the first view.
    let out = c.cmd(0, &["gabconfig", "-x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("WARNING") && err.contains("split brain"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[0,1]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until("a view of [0,1] on both", || {
        (0..2).all(|i| {
            c.json(i, &["gabconfig", "-a"])
                .is_some_and(|v| members(&v) == [0, 1])
        })
    });
    assert!(c.log(0).contains("\"seed.manual\""), "{}", c.log(0));
    // Not a member: stop exits at once.
    c.start(2);
    wait_until("n2 joins", || {
        c.json(2, &["gabconfig", "-a"])
            .is_some_and(|v| members(&v) == [0, 1, 2])
    });
}

#[test]
fn a_lone_loser_runs_the_fence_hook_and_exits_4() {
    // Two nodes: when node 0 dies, node 1 holds half the view without its leader.
    let mut c = Loopback::new("hook", 2, "");
    let hook = c.dir.join("hook.sh");
    let said = c.dir.join("hook.out");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$VIGIL_FENCE_REASON $VIGIL_NODE $VIGIL_NODE_ID $VIGIL_CLUSTER\" > {}\n",
            said.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(&c.config).unwrap().replacen(
        "[timers]",
        &format!(
            "self_fence = \"hook\"\nself_fence_hook = \"{}\"\n\n[timers]",
            hook.display()
        ),
        1,
    );
    std::fs::write(&c.config, text).unwrap();
    c.start(0);
    c.start(1);
    wait_until("a view of [0,1]", || {
        (0..2).all(|i| {
            c.json(i, &["gabconfig", "-a"])
                .is_some_and(|v| members(&v) == [0, 1])
        })
    });
    if let Some(mut n0) = c.children[0].take() {
        n0.kill().unwrap();
        n0.wait().unwrap();
    }
    let code = c.wait_exit(1, std::time::Duration::from_secs(10));
    let log = c.log(1);
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("\"node.self_fence\""), "{log}");
    assert!(log.contains("\"daemon.fence_hook_done\""), "{log}");
    let out = std::fs::read_to_string(&said).unwrap_or_default();
    let reason = out.split_whitespace().next().unwrap_or("");
    assert!(
        ["race_lost", "no_decision", "excluded"].contains(&reason),
        "{out:?}"
    );
    assert!(out.ends_with(" n1 1 cli\n"), "{out:?}");
    // The fenced daemon removed its control socket.
    assert!(!c.dir.join("n1.sock").exists());
}

#[test]
fn stop_on_a_node_that_is_not_a_member_exits_at_once() {
    let mut c = Loopback::new("stopnm", 3, "");
    c.start(0);
    wait_until("n0 answers", || c.json(0, &["fenceadm", "-d"]).is_some());
    let out = c.cmd(0, &["stop"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("not a member (unseeded); stopping"), "{said}");
    assert_eq!(c.wait_exit(0, std::time::Duration::from_secs(5)), Some(0));
}

#[test]
fn a_corrupt_state_file_stops_the_daemon_naming_it() {
    let mut c = Loopback::new("corrupt", 1, "");
    let state = c.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join("n0.generation");
    std::fs::write(&file, "generation twelve\n").unwrap();
    c.start(0);
    assert_eq!(c.wait_exit(0, std::time::Duration::from_secs(5)), Some(1));
    let log = c.log(0);
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert!(log.contains("corrupt"), "{log}");
}

#[test]
fn a_generation_that_cannot_be_persisted_is_never_acted_on() {
    // n0 and n1 seed (seed = 2 of 3); then n0's state file cannot be replaced any
    // more (a non-empty directory takes its place) and n2 joins: n0 must stop
    // without installing the new view.
    let mut c = Loopback::new("persist", 3, "seed = 2");
    c.start(0);
    c.start(1);
    wait_until("a view of [0,1]", || {
        (0..2).all(|i| {
            c.json(i, &["gabconfig", "-a"])
                .is_some_and(|v| members(&v) == [0, 1])
        })
    });
    let g = c.json(0, &["gabconfig", "-a"]).unwrap()["ports"][0]["generation"]
        .as_u64()
        .unwrap();
    let file = c.dir.join("state/n0.generation");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir_all(file.join("x")).unwrap();
    c.start(2);
    let code = c.wait_exit(0, std::time::Duration::from_secs(10));
    let log = c.log(0);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("\"state.persist_failed\""), "{log}");
    assert!(log.contains(&file.display().to_string()), "{log}");
    let installed: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "view.installed")
        .filter_map(|e| e["generation"].as_u64())
        .collect();
    assert_eq!(
        installed,
        vec![g],
        "acted on an unpersisted generation: {log}"
    );
}

#[test]
fn a_config_that_is_a_device_or_too_large_is_refused_naming_it() {
    let out = vigil(&["config", "check", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/dev/zero: (file): it is a character device, not a regular file"),
        "{err}"
    );
    let mut text = GOOD.to_string();
    text.push('#');
    text.push_str(&"x".repeat(1 << 20));
    let (ok, msg) = check("huge.toml", &text);
    assert!(!ok, "{msg}");
    assert!(msg.contains("more than the 1048576 allowed"), "{msg}");
}

#[test]
fn a_shared_state_directory_stops_the_daemon_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Loopback::new("shared-state", 1, "");
    let state = c.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    c.start(0);
    assert_eq!(c.wait_exit(0, std::time::Duration::from_secs(5)), Some(1));
    let log = c.log(0);
    assert!(
        log.contains(&format!(
            "vigil daemon: refusing state directory {}: it has mode 0777: group or others may write to it; fix with: chmod go-w {}",
            state.display(),
            state.display()
        )),
        "{log}"
    );
}

#[test]
fn an_inspection_command_whose_reader_goes_away_ends_quietly() {
    use std::process::{Command, Stdio};
    // The reader closes the pipe before the sweep prints its summary.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["sim", "sweep", "--seeds", "20", "--nodes", "3..3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("vigil ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("Broken pipe") && !err.contains("panicked"),
        "stderr: {err}"
    );
}

#[test]
fn bench_host_measures_for_a_second_and_prints_its_report_as_json() {
    let out = vigil(&["bench", "host", "--seconds", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["seconds"], 1);
    assert!(v["measured_s"].as_f64().is_some_and(|s| s > 0.0), "{v}");
    // Hypervisor steal: a figure, or null where the kernel does not count it.
    assert!(v["steal_ms"].is_u64() || v["steal_ms"].is_null(), "{v}");
    let threads = v["threads"].as_array().expect("threads");
    let names: Vec<&str> = threads
        .iter()
        .filter_map(|t| t["thread"].as_str())
        .collect();
    assert_eq!(names, ["realtime", "normal"]);
    for t in threads {
        // Figures only: no bound on how late, which a busy machine could break.
        assert!(t["wakeups"].as_u64().is_some_and(|n| n > 0), "{t}");
        for k in ["p50_us", "p99_us", "p999_us", "worst_us"] {
            assert!(t[k].is_u64(), "{k}: {t}");
        }
        assert!(t["worst_at_s"].is_f64() && t["policy"].is_string() && t["realtime"].is_boolean());
        // Where real-time priority was refused, the report says why.
        if t["thread"] == "realtime" && t["realtime"] == false {
            assert!(t["warning"].is_string(), "{t}");
        }
    }
    let verdicts = v["recommendation"]["verdicts"]
        .as_array()
        .expect("verdicts");
    let profiles: Vec<&str> = verdicts
        .iter()
        .filter_map(|p| p["profile"].as_str())
        .collect();
    assert_eq!(profiles, ["fast", "default"]);
    for p in verdicts {
        assert!(p["ok"].is_boolean() && p["margin_us"].is_i64() && p["tolerates_us"].is_u64());
    }
    assert!(v["recommendation"].get("use_profile").is_some(), "{v}");
}

#[test]
fn bench_host_refuses_seconds_out_of_range_as_a_bad_command_line() {
    for bad in ["0", "3601", "x"] {
        let out = vigil(&["bench", "host", "--seconds", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--seconds") && err.contains("--help"),
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty(), "{bad}: nothing measured");
    }
}

/// A saved `vigil bench host --json` report whose threads' worst stall was `worst_us`.
fn host_report(name: &str, worst_us: u64) -> PathBuf {
    let thread = |t: &str, rt: bool| {
        serde_json::json!({"thread": t, "policy": if rt { "fifo 50" } else { "other" },
            "realtime": rt, "wakeups": 60000, "p50_us": 50, "p99_us": 200, "p999_us": 900,
            "worst_us": worst_us, "worst_at_s": 12.5,
            "buckets": [{"le_us": 63, "count": 59999}, {"le_us": worst_us, "count": 1}]})
    };
    let report = serde_json::json!({"seconds": 60, "measured_s": 60.0, "interval_us": 1000,
        "cores": 2, "started_unix_s": 0,
        "threads": [thread("realtime", true), thread("normal", false)],
        "recommendation": {"verdicts": [], "use_profile": null}});
    temp(name, &report.to_string())
}

#[test]
fn config_check_warns_when_the_timers_do_not_tolerate_a_host_reports_stall() {
    let cfg = temp("good-for-report.toml", GOOD);
    // GOOD: heartbeat 100, peer_inactive 800, lease 700: tolerates min(700, 500) ms.
    for (worst_us, fits) in [(80_000, true), (600_000, false)] {
        let report = host_report(&format!("report-{worst_us}.json"), worst_us);
        let out = vigil(&[
            "config",
            "check",
            cfg.to_str().unwrap(),
            "--host-report",
            report.to_str().unwrap(),
        ]);
        // A warning, never a refusal.
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if fits {
            assert!(
                stdout.contains("tolerate stalls up to 500.0 ms"),
                "{stdout}"
            );
            assert!(!stderr.contains("warning"), "{stderr}");
        } else {
            assert!(
                stderr.contains("warning") && stderr.contains("a stall of 600.0 ms"),
                "{stderr}"
            );
        }
    }
    // A report that is not one is an error naming the file.
    let junk = temp("junk-report.json", "{\"seconds\": 1}");
    let out = vigil(&[
        "config",
        "check",
        cfg.to_str().unwrap(),
        "--host-report",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk-report.json"));
}
