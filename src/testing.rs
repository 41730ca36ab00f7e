//! Helpers for vigil's own tests (unit tests in this crate and in `vigil-cli`): a
//! scratch directory and the rule for tests that need root. Not part of the API.

use std::path::{Path, PathBuf};

/// A scratch path under the system temp dir, unique per process and call, removed
/// (with everything below it) when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// The path only: the directory does not exist yet (for code that must create
    /// it itself).
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vigil-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }

    /// A directory that exists.
    pub fn made(tag: &str) -> TempDir {
        let d = TempDir::new(tag);
        if let Err(e) = std::fs::create_dir_all(&d.0) {
            panic!("cannot create {}: {e}", d.0.display());
        }
        d
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// For tests that need root (to give a file to another user): true to go on.
/// Without root they skip with a printed reason, except under `CI=true`, where CI
/// runs as root and a skip would hide a failure.
pub fn root_or_skip(what: &str) -> bool {
    if crate::files::euid() == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} needs root, and CI=true runs as root: refusing to skip"
    );
    eprintln!("skipping {what}: needs root (chown to another user)");
    false
}
