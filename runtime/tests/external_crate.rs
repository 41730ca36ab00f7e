//! An HA daemon outside the vigil workspace embeds nodes through the public API
//! alone: this builds `tests/external-embedder` (its own workspace, depending on
//! vigil-runtime by path) and runs it. It starts a 3-node loopback cluster in one
//! process, waits for one view with one primary, has the primary leave, and checks
//! that the others take over with a higher token.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn an_external_crate_embeds_nodes_through_the_public_api() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = here.join("tests/external-embedder/Cargo.toml");
    // Share the workspace's build directory so the dependencies built for the
    // workspace are reused.
    let target = here
        .parent()
        .map(|w| w.join("target"))
        .unwrap_or_else(|| here.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--offline", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the external embedder failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let views: Vec<&str> = stdout.lines().filter(|l| l.starts_with("view ")).collect();
    assert_eq!(views.len(), 2, "two views expected:\n{stdout}");
    assert!(stdout.contains("the primary left: Left"), "{stdout}");
}
