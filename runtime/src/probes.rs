//! The daemon's health probes, run off the heartbeat path.
//!
//! Every run is a fresh OS thread (at normal priority: the node thread's real-time
//! policy is not inherited) that reports back over a channel. A run that hangs (an
//! fsync on a dead disk, a command that never exits) simply never reports: the node's
//! health core counts it as failed at its timeout and starts no second run beside it.
//! A command probe is killed once it passes its timeout, so it cannot pile up.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vigil::config::ProbeCheck;
use vigil::health::ProbeId;

/// One finished probe run.
#[derive(Debug)]
pub struct ProbeDone {
    /// Which probe.
    pub probe: ProbeId,
    /// Passed, or why it failed.
    pub result: Result<(), String>,
}

/// Start one run of `check` for `probe` on its own thread; the answer comes on `tx`.
pub fn spawn(
    probe: ProbeId,
    check: ProbeCheck,
    timeout: Duration,
    node: String,
    tx: mpsc::UnboundedSender<ProbeDone>,
) {
    let started = std::thread::Builder::new()
        .name(format!("probe-{probe}"))
        .spawn(move || {
            let result = run(&check, timeout, &node);
            let _ = tx.send(ProbeDone { probe, result });
        });
    if let Err(e) = started {
        // No thread: answer at once so the failure is counted, not lost.
        tracing::warn!(probe = probe.0, error = %e, "cannot start a probe thread");
    }
}

/// Run `check` to completion (a command is killed at `timeout`).
pub fn run(check: &ProbeCheck, timeout: Duration, node: &str) -> Result<(), String> {
    match check {
        ProbeCheck::Command { argv, expect_exit } => command(argv, *expect_exit, timeout),
        ProbeCheck::Writable { path } => writable(path, node),
        ProbeCheck::Mount { path } => mount_writable(path),
    }
}

fn command(argv: &[String], expect: i32, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match status.code() {
                    Some(c) if c == expect => Ok(()),
                    Some(c) => Err(format!("{program} exited with {c}, expected {expect}")),
                    None => Err(format!("{program} was killed by a signal ({status})")),
                };
            }
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} still running after {} ms: killed",
                    timeout.as_millis()
                ));
            }
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    }
}

/// Create `file` afresh (`O_CREAT | O_EXCL | O_NOFOLLOW`): never through a link
/// planted at its name. A regular file left there by an earlier run is removed
/// first; anything else makes the probe fail.
fn create_fresh(file: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(file)
    };
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(file)?;
            if !meta.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "it already exists and is {}; refusing to write through it",
                        vigil::files::kind(&meta)
                    ),
                ));
            }
            std::fs::remove_file(file)?;
            create()
        }
        r => r,
    }
}

/// Write, fsync and remove a small file in `dir`.
fn writable(dir: &Path, node: &str) -> Result<(), String> {
    let file: PathBuf = dir.join(format!(".vigil-probe-{node}"));
    let result = (|| {
        let mut f = create_fresh(&file)?;
        f.write_all(b"vigil health probe\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::remove_file(&file)?;
        // The directory entry too.
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// The file system mounted at (or holding) `path` is not read-only.
fn mount_writable(path: &Path) -> Result<(), String> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: path holds a NUL byte", path.display()))?;
    // SAFETY: statvfs writes only into the struct we hand it; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot stat the file system of {}: {e}",
            path.display()
        ));
    }
    if st.f_flag & libc::ST_RDONLY != 0 {
        return Err(format!("{} is on a read-only file system", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_probe_checks_the_exit_code_and_the_timeout() {
        let t = Duration::from_secs(5);
        let ok = |argv: &[&str], expect| {
            command(
                &argv.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                expect,
                t,
            )
        };
        assert!(ok(&["true"], 0).is_ok());
        let e = ok(&["false"], 0).unwrap_err();
        assert!(e.contains("exited with 1, expected 0"), "{e}");
        assert!(ok(&["sh", "-c", "exit 3"], 3).is_ok());
        let e = ok(&["/nonexistent/probe"], 0).unwrap_err();
        assert!(e.contains("cannot run /nonexistent/probe"), "{e}");
        let started = Instant::now();
        let e = command(
            &["sleep".into(), "10".into()],
            0,
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(e.contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn writable_probe_writes_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("vigil-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(writable(&dir, "n0").is_ok());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let e = writable(&dir.join("missing"), "n0").unwrap_err();
        assert!(e.contains("cannot write"), "{e}");
        // A link planted at the probe's file is not written through; a stale file is
        // replaced.
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let probe = dir.join(".vigil-probe-n0");
        std::os::unix::fs::symlink(&victim, &probe).unwrap();
        let e = writable(&dir, "n0").unwrap_err();
        assert!(
            e.contains("is a symbolic link; refusing to write through it"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_file(&probe).unwrap();
        std::fs::write(&probe, "stale").unwrap();
        assert!(writable(&dir, "n0").is_ok());
        assert!(!probe.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mount_probe_reads_the_read_only_flag() {
        assert!(mount_writable(&std::env::temp_dir()).is_ok());
        // /proc/sys is mounted read-only in most containers, and /sys often is;
        // at least the error path for a missing path is exercised.
        let e = mount_writable(Path::new("/nonexistent/path")).unwrap_err();
        assert!(e.contains("cannot stat"), "{e}");
    }
}
