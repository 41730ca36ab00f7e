//! The embedding example under faults (`vigil drill guarded`, loopback and network
//! namespaces) and the steps of runtime/README.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// The drill passed and every fault line reports a time without a primary.
fn assert_pass(args: &[&str]) {
    let out = Command::new(VIGIL)
        .args(args)
        .output()
        .expect("run vigil drill");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = format!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(
        text.lines().any(|l| l.starts_with("PASS guarded")),
        "{report}"
    );
    let faults: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("fault "))
        .collect();
    assert_eq!(faults.len(), 5, "{report}");
    for f in faults {
        let ms = f
            .split("no primary for ")
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|n| n.parse::<f64>().ok());
        assert!(ms.is_some(), "no time in {f:?}\n{report}");
    }
}

#[test]
fn guarded_drill_passes_on_loopback() {
    assert_pass(&["drill", "guarded"]);
}

#[test]
fn guarded_drill_passes_in_network_namespaces() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || std::env::var("CI").as_deref() != Ok("true") {
        println!("skipped: needs root and CI=true (network namespaces, nftables)");
        return;
    }
    assert_pass(&["drill", "guarded", "--netns"]);
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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

/// runtime/README.md: build the example through cargo, make the config and key,
/// start the store and three services, see one primary write, stop them.
#[test]
fn the_readme_steps_work() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "-p",
            "vigil-runtime",
            "--example",
            "guarded_service",
        ])
        .current_dir(repo())
        .status()
        .expect("run cargo");
    assert!(st.success());
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(repo().join("target"), PathBuf::from);
    let example = target.join("debug/examples/guarded_service");
    assert!(example.exists(), "{}", example.display());

    let dir = std::env::temp_dir().join(format!("vigil-guarded-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cluster.toml");
    std::fs::copy(
        repo().join("runtime/examples/guarded-cluster.toml"),
        &config,
    )
    .unwrap();
    let ok = |args: &[&str]| {
        let out = Command::new(VIGIL).args(args).output().unwrap();
        assert!(out.status.success(), "vigil {args:?}: {out:?}");
    };
    ok(&["keygen", dir.join("cluster.key").to_str().unwrap()]);
    ok(&["config", "check", config.to_str().unwrap()]);

    let store = dir.join("store.sock");
    let file = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new(&example)
            .args(["store", "--listen", store.to_str().unwrap()])
            .stdout(file("store.log"))
            .spawn()
            .unwrap(),
    );
    for n in ["n0", "n1", "n2"] {
        let log = file(&format!("{n}.log"));
        procs.0.push(
            Command::new(&example)
                .args(["run", "--config", config.to_str().unwrap(), "--node", n])
                .args(["--store", store.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let start = Instant::now();
    let accepted = loop {
        let log = std::fs::read_to_string(dir.join("store.log")).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| l.contains("\"accepted\":true"))
            .count();
        if n >= 5 || start.elapsed() > Duration::from_secs(30) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(accepted >= 5, "no primary wrote; logs in {}", dir.display());
    ok(&[
        "lltstat",
        "-nvv",
        "--socket",
        dir.join("n0.sock").to_str().unwrap(),
    ]);
    for (k, n) in ["n0", "n1", "n2"].iter().enumerate() {
        ok(&[
            "stop",
            "--socket",
            dir.join(format!("{n}.sock")).to_str().unwrap(),
        ]);
        let code = procs.0[k + 1].wait().unwrap();
        assert!(code.success(), "{n}'s service: {code}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
