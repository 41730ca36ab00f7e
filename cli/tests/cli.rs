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
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
[cluster]
name = "c"
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
