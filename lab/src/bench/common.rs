//! What the live benchmarks share: a working directory with a cluster config of
//! free loopback ports, daemons and CPU burners that never outlive the bench, the
//! stop signals, and the questions asked of a running daemon.
//!
//! Every daemon and burner is killed on every way out: the [`Lab`] guard on return or
//! panic, a SIGINT/SIGTERM/SIGHUP flag polled while waiting ([`pause`]), and
//! `PR_SET_PDEATHSIG` should this process itself be killed ([`spawn_owned`]).

use crate::{netlab, Exit};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vigil_llt::LinkState;
use vigil_runtime::control::{self, DaemonStatus};

/// How long the daemons get to answer on their control sockets.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `vigil lltstat` may take under load.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `vigil bench burn`: spin on one core until the parent goes away.
pub fn burn() -> Exit {
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    let mut x: u64 = 0;
    loop {
        for _ in 0..(1u32 << 24) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            return Exit::Ok;
        }
    }
}

/// On-CPU nanoseconds from a `schedstat` file of /proc (its first field): a
/// thread's (`/proc/thread-self/schedstat`, `/proc/PID/task/TID/schedstat`).
/// `None` when the kernel does not keep them.
pub fn schedstat_ns(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The number of cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The daemons, the burners and their directory. Dropping it kills every process
/// (burners first, so the daemons' last moments are not starved) and removes the
/// directory unless asked to keep it.
pub struct Lab {
    pub dir: PathBuf,
    pub burners: Vec<Child>,
    pub daemons: Vec<Child>,
    pub keep: bool,
}

impl Lab {
    /// An empty lab in a fresh directory `dir` (removed first if it exists).
    pub fn create(dir: PathBuf, keep: bool) -> Result<Lab, String> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Lab {
            dir,
            burners: Vec::new(),
            daemons: Vec::new(),
            keep,
        })
    }

    /// Starts `count` CPU burners (`vigil bench burn`).
    pub fn start_burners(&mut self, exe: &Path, count: usize) -> Result<(), String> {
        for i in 0..count {
            let child = spawn_owned(
                Command::new(exe)
                    .args(["bench", "burn"])
                    .stdout(Stdio::null()),
            )
            .map_err(|e| format!("cannot start CPU burner {i}: {e}"))?;
            self.burners.push(child);
        }
        Ok(())
    }

    /// Kills and reaps the burners, leaving the daemons running.
    pub fn stop_burners(&mut self) {
        for c in &mut self.burners {
            let _ = c.kill();
        }
        for c in &mut self.burners {
            let _ = c.wait();
        }
        self.burners.clear();
    }

    /// Starts daemons `n0..n{n-1}` of `config`, each logging JSON to
    /// [`log_path`] in the lab's directory.
    pub fn start_daemons(&mut self, exe: &Path, config: &Path, n: u8) -> Result<(), String> {
        for i in 0..n {
            let log = std::fs::File::create(log_path(&self.dir, i))
                .map_err(|e| format!("{}: {e}", log_path(&self.dir, i).display()))?;
            let child = spawn_owned(
                Command::new(exe)
                    .args([
                        "daemon",
                        "--log-format",
                        "json",
                        "--node",
                        &format!("n{i}"),
                        "--config",
                    ])
                    .arg(config)
                    .stdout(Stdio::null())
                    .stderr(log),
            )
            .map_err(|e| format!("cannot start daemon n{i}: {e}"))?;
            self.daemons.push(child);
        }
        Ok(())
    }

    /// A daemon that exited is an error naming it, its exit status and its last log
    /// line.
    pub fn check_alive(&mut self, when: &str) -> Result<(), String> {
        for (i, c) in self.daemons.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                let i = u8::try_from(i).unwrap_or(u8::MAX);
                return Err(format!(
                    "daemon n{i} exited {when} ({status}): {}",
                    last_log_line(&log_path(&self.dir, i))
                ));
            }
        }
        Ok(())
    }

    /// Waits until `pending` returns nothing, polling every 50 ms; an error when a
    /// daemon exits, a stop signal comes, or `timeout` passes (naming what was still
    /// pending). Returns how long it took.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pending: impl FnMut() -> Vec<String>,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            self.check_alive(&format!("before {what}"))?;
            let left = pending();
            if left.is_empty() {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                let shown: Vec<&str> = left.iter().take(6).map(String::as_str).collect();
                let more = left.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                return Err(format!(
                    "not {what} within {} s: {}{more}; logs in {} (use --keep)",
                    timeout.as_secs(),
                    shown.join("; "),
                    self.dir.display()
                ));
            }
            pause(Duration::from_millis(50))?;
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.burners.iter_mut().chain(self.daemons.iter_mut()) {
            let _ = c.kill();
        }
        for c in self.burners.iter_mut().chain(self.daemons.iter_mut()) {
            let _ = c.wait();
        }
        if self.keep {
            println!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn last_log_line(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or_else(
                || format!("(empty log {})", log.display()),
                |l| one_line(l, 300),
            ),
        Err(e) => format!("(no log {}: {e})", log.display()),
    }
}

pub fn one_line(s: &str, max: usize) -> String {
    let s = s.lines().next().unwrap_or("").trim();
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

/// The control socket of node `n{i}` (the config puts `run_dir` in the lab's
/// directory).
pub fn socket(dir: &Path, i: u8) -> PathBuf {
    dir.join(format!("n{i}.sock"))
}

/// The JSON log of daemon `n{i}`.
pub fn log_path(dir: &Path, i: u8) -> PathBuf {
    dir.join(format!("n{i}.log"))
}

/// `vigil lltstat --json --socket PATH`, parsed; killed after [`QUERY_TIMEOUT`].
pub fn query(exe: &Path, socket: &Path) -> Result<Value, String> {
    let mut child = spawn_owned(
        Command::new(exe)
            .args(["lltstat", "--json", "--socket"])
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| format!("cannot run vigil lltstat: {e}"))?;
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t0.elapsed() > QUERY_TIMEOUT || stopped() => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "vigil lltstat --socket {} gave no answer within {} s",
                    socket.display(),
                    QUERY_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for vigil lltstat: {e}")),
        }
    }
    // The JSON is one short line, well within the pipe buffer, so the child could
    // finish without us reading as it went.
    let out = child
        .wait_with_output()
        .map_err(|e| format!("reading vigil lltstat: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "vigil lltstat --socket {}: {}: {}",
            socket.display(),
            out.status,
            one_line(&String::from_utf8_lossy(&out.stderr), 200)
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("vigil lltstat --json printed no JSON object: {e}"))
}

/// The daemon's status over its control socket, asked from this process (what
/// `vigil lltstat --json`, `lltstat -nvv --json` and `fenceadm -d --json` print is
/// made from it); the socket times out after 5 s.
pub fn status(socket: &Path) -> Result<DaemonStatus, String> {
    control::status(socket)
}

/// Why the daemon behind `s` is not yet a settled member, one reason per missing
/// fact; empty when it sees every configured peer UP on every link and holds
/// authority.
pub fn not_settled(s: &DaemonStatus) -> Vec<String> {
    not_settled_with(s, |_| LinkState::Up)
}

/// [`not_settled`] with links meant to be in other states: `want(link)` is the state
/// link `link` must be in to every peer that is UP (a DOWN peer is one reason, its
/// links are not listed).
pub fn not_settled_with(s: &DaemonStatus, want: impl Fn(&str) -> LinkState) -> Vec<String> {
    let me = &s.node_name;
    let mut why = Vec::new();
    for n in s.nodes.iter().filter(|n| n.id != s.local) {
        match s.node.llt.peers.iter().find(|p| p.id == n.id) {
            None => why.push(format!("{me} has not heard {}", n.name)),
            Some(p) if !p.up => why.push(format!("{me} sees {} DOWN", n.name)),
            Some(p) => {
                for l in p.links.iter().filter(|l| l.state != want(&l.name)) {
                    why.push(format!(
                        "{me} sees {} on link {} {:?}",
                        n.name, l.name, l.state
                    ));
                }
            }
        }
    }
    if !s.node.fence.authority {
        why.push(format!(
            "{me} holds no authority ({:?})",
            s.node.fence.state
        ));
    }
    why
}

/// What a benchmark's cluster config says besides nodes and links.
pub struct ConfigSpec {
    /// Comment lines at the top, each ending in a newline.
    pub comment: String,
    /// `cluster.name`.
    pub name: &'static str,
    /// `cluster.id`.
    pub id: u32,
    /// More lines of the `[cluster]` table, each ending in a newline.
    pub cluster_extra: String,
    /// The lines of the `[timers]` table.
    pub timers: String,
    /// The lines of a `[daemon]` table, if any.
    pub daemon: Option<String>,
}

/// The cluster config of `n` nodes on 127.0.0.1 with high-priority UDP links `a`
/// and `b` on free ports, state and sockets in `dir`.
pub fn config_text(dir: &Path, n: u8, spec: &ConfigSpec) -> Result<String, String> {
    ensure_key(dir)?;
    let ports = free_udp_ports(2 * usize::from(n))?;
    Ok(render_config(dir, &ports, spec))
}

/// The cluster key every benchmark config names, `{dir}/cluster.key`: benchmarks
/// run keyed, like production (every frame carries its MAC).
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("cluster.key")
}

/// Make `{dir}/cluster.key` unless it exists.
pub fn ensure_key(dir: &Path) -> Result<(), String> {
    let path = key_path(dir);
    if !path.exists() {
        crate::keygen(&crate::vigil_bin()?, &path)?;
    }
    Ok(())
}

/// The cluster config of `ports.len() / 2` nodes on 127.0.0.1, node `i` on ports
/// `ports[2i]` (link `a`) and `ports[2i + 1]` (link `b`), keyed with
/// [`key_path`] (which [`ensure_key`] makes).
pub fn render_config(dir: &Path, ports: &[u16], spec: &ConfigSpec) -> String {
    let mut t = format!(
        "{comment}[cluster]\nname = \"{name}\"\nid = {id}\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n\
         key_file = \"{key}\"\n{extra}\n[timers]\n{timers}",
        key = key_path(dir).display(),
        comment = spec.comment,
        name = spec.name,
        id = spec.id,
        d = dir.display(),
        extra = spec.cluster_extra,
        timers = spec.timers,
    );
    if let Some(daemon) = &spec.daemon {
        t.push_str("\n[daemon]\n");
        t.push_str(daemon);
    }
    t.push_str(
        "\n[[links]]\nname = \"a\"\nkind = \"udp\"\n\n[[links]]\nname = \"b\"\nkind = \"udp\"\n",
    );
    for (i, pair) in ports.chunks_exact(2).enumerate() {
        let (pa, pb) = (pair[0], pair[1]);
        let _ = write!(
            t,
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"127.0.0.1:{pa}\"\n\
             b = \"127.0.0.1:{pb}\"\n"
        );
    }
    t
}

pub use crate::free_udp_ports;

/// Spawns a child that the kernel kills (SIGKILL) if this process dies first, so no
/// burner outlives the bench even when the bench is killed with SIGKILL.
pub fn spawn_owned(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the prctl: do not start an orphan.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
    cmd.spawn()
}

/// Catch SIGINT, SIGTERM and SIGHUP: the waits poll the flag ([`stopped`], [`pause`])
/// and unwind through [`Lab`]. One flag for the whole lab: [`netlab::catch_interrupts`].
pub fn catch_signals() {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil bench: {e}");
    }
}

/// Whether a stop signal came ([`netlab::interrupted`]).
pub fn stopped() -> bool {
    netlab::interrupted()
}

/// Sleeps for `d`, returning early with an error when a stop signal came
/// ([`netlab::sleep`]).
pub fn pause(d: Duration) -> Result<(), String> {
    netlab::sleep(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_cuts_long_text_and_keeps_the_first_line() {
        assert_eq!(one_line("  abc \nsecond", 10), "abc");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn configs_carry_every_table_given() {
        let dir = std::env::temp_dir().join(format!("vigil-common-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let spec = ConfigSpec {
            comment: "# test\n".into(),
            name: "t",
            id: 9,
            cluster_extra: "fault_injection = true\n".into(),
            timers: "profile = \"fast\"\n".into(),
            daemon: Some("mlockall = true\n".into()),
        };
        // The key `vigil keygen` would make (the unit tests run without the binary).
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let _ = std::fs::remove_file(key_path(&dir));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(key_path(&dir))
                .and_then(|mut f| f.write_all(&[7u8; 32]))
                .expect("key");
        }
        let text = config_text(&dir, 4, &spec).expect("config");
        let file = dir.join("c.toml");
        std::fs::write(&file, text).expect("write");
        let cfg = vigil::config::ClusterConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.nodes.len(), 4);
        assert!(cfg.cluster.fault_injection && cfg.daemon.mlockall);
        assert_eq!(cfg.timers.heartbeat, Duration::from_millis(10));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
