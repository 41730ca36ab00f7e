//! `vigil bench jitter`: how evenly the daemons send heartbeats when every core is
//! busy, first as ordinary processes and then with real-time priority.
//!
//! Each run starts CPU burners (2 per core, `vigil bench burn`), then `--nodes` real
//! daemons on loopback (two UDP links, `[timers] heartbeat = --heartbeat-ms`, the
//! peer timers scaled from it), lets them run for `--seconds`, and asks each daemon
//! for its heartbeat-gap statistics with `vigil lltstat --json --socket PATH`. The
//! second run adds `[daemon] realtime = "fifo"`, `rt_priority = 50`,
//! `mlockall = true`. It prints figures only and asserts nothing about times.
//!
//! Every daemon and burner is killed on every way out: the [`Lab`] guard on return or
//! panic, a SIGINT/SIGTERM flag polled while waiting, and `PR_SET_PDEATHSIG` should
//! this process itself be killed.

use crate::exit;
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct JitterArgs {
    /// How long each run measures, in seconds, with every core busy.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// The daemons' heartbeat interval in milliseconds; the peer timers scale with it.
    #[arg(long = "heartbeat-ms", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub heartbeat_ms: u64,
    /// How many daemons to start (2..=16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=16))]
    pub nodes: u8,
    /// How many CPU burners to start; default two per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub burners: Option<u16>,
    /// Keep the working directories (configs and daemon logs) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// The two runs: the daemons as ordinary processes, then real-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Normal,
    Realtime,
}

impl Run {
    fn label(self) -> &'static str {
        match self {
            Run::Normal => "normal",
            Run::Realtime => "realtime fifo 50",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Run::Normal => "normal",
            Run::Realtime => "rt",
        }
    }
}

/// How long the daemons get to answer on their control sockets.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `vigil lltstat` may take under load.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: JitterArgs) -> u8 {
    catch_signals();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vigil bench jitter: cannot find my own binary: {e}");
            return exit::FAILURE;
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let burners = args.burners.map_or(2 * cores, usize::from);
    println!(
        "vigil bench jitter: {} daemons on 127.0.0.1 (two UDP links each), heartbeat {} ms, \
         {burners} CPU burners on {cores} cores, {} s per run",
        args.nodes, args.heartbeat_ms, args.seconds
    );
    let mut rows = Vec::new();
    let mut ok = true;
    for run in [Run::Normal, Run::Realtime] {
        if stopped() {
            break;
        }
        match measure(&args, run, &exe, burners) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("vigil bench jitter: {}: {e}", run.label());
                rows.push(Row::failed(run, &e));
                ok = false;
            }
        }
    }
    println!();
    print!("{}", table(&rows, args.heartbeat_ms * 1000));
    if stopped() {
        eprintln!("vigil bench jitter: interrupted; every daemon and burner was stopped");
        return exit::FAILURE;
    }
    if ok {
        exit::OK
    } else {
        exit::FAILURE
    }
}

/// `vigil bench burn`: spin on one core until the parent goes away.
pub fn burn() -> u8 {
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    let mut x: u64 = 0;
    loop {
        for _ in 0..(1u32 << 24) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            return exit::OK;
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    run: Run,
    node: String,
    interval_us: Option<u64>,
    count: Option<u64>,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    max_us: Option<u64>,
    /// What the daemon says it applied, or why there is no figure.
    realtime: String,
}

impl Row {
    fn failed(run: Run, why: &str) -> Row {
        Row {
            run,
            node: "-".into(),
            interval_us: None,
            count: None,
            p50_us: None,
            p99_us: None,
            max_us: None,
            realtime: format!("no figures: {}", one_line(why, 160)),
        }
    }

    /// From the JSON of `vigil lltstat --json`: fields that are not there are `None`.
    fn from_status(run: Run, node: &str, v: &Value) -> Row {
        let hb = |k: &str| {
            v.get("heartbeat")
                .and_then(|h| h.get(k))
                .and_then(Value::as_u64)
        };
        Row {
            run,
            node: node.to_string(),
            interval_us: hb("interval_us"),
            count: hb("count"),
            p50_us: hb("p50_us"),
            p99_us: hb("p99_us"),
            max_us: hb("max_us"),
            realtime: v
                .get("realtime")
                .and_then(Value::as_str)
                .unwrap_or("n/a")
                .to_string(),
        }
    }
}

fn table(rows: &[Row], configured_us: u64) -> String {
    let cell = |v: Option<u64>| v.map_or_else(|| "n/a".to_string(), |v| v.to_string());
    let mut out = format!(
        "{:<18} {:<5} {:>10} {:>9} {:>9} {:>9} {:>11}  {}\n",
        "run", "node", "heartbeats", "p50 µs", "p99 µs", "max µs", "expected µs", "realtime"
    );
    for r in rows {
        let expected = if r.node == "-" {
            "n/a".to_string()
        } else {
            r.interval_us.unwrap_or(configured_us).to_string()
        };
        let _ = writeln!(
            out,
            "{:<18} {:<5} {:>10} {:>9} {:>9} {:>9} {:>11}  {}",
            r.run.label(),
            r.node,
            cell(r.count),
            cell(r.p50_us),
            cell(r.p99_us),
            cell(r.max_us),
            expected,
            r.realtime
        );
    }
    out
}

/// The daemons, the burners and their directory. Dropping it kills every process
/// (burners first, so the daemons' last moments are not starved) and removes the
/// directory unless asked to keep it.
struct Lab {
    dir: PathBuf,
    burners: Vec<Child>,
    daemons: Vec<Child>,
    keep: bool,
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

fn measure(args: &JitterArgs, run: Run, exe: &Path, burners: usize) -> Result<Vec<Row>, String> {
    let n = args.nodes;
    let dir = std::env::temp_dir().join(format!(
        "vigil-bench-jitter-{}-{}",
        std::process::id(),
        run.tag()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut lab = Lab {
        dir: dir.clone(),
        burners: Vec::new(),
        daemons: Vec::new(),
        keep: args.keep,
    };
    let config = dir.join("cluster.toml");
    std::fs::write(&config, config_text(&dir, n, args.heartbeat_ms, run)?)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    println!("\n== run: {} (config {})", run.label(), config.display());

    // Load first: the daemons start, and every heartbeat they send, on busy cores.
    for i in 0..burners {
        let child = spawn_owned(
            Command::new(exe)
                .args(["bench", "burn"])
                .stdout(Stdio::null()),
        )
        .map_err(|e| format!("cannot start CPU burner {i}: {e}"))?;
        lab.burners.push(child);
    }
    for i in 0..n {
        let log = std::fs::File::create(log_path(&dir, i))
            .map_err(|e| format!("{}: {e}", log_path(&dir, i).display()))?;
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
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log),
        )
        .map_err(|e| format!("cannot start daemon n{i}: {e}"))?;
        lab.daemons.push(child);
    }

    // Up: every control socket answers.
    let t0 = Instant::now();
    let mut pending: Vec<u8> = (0..n).collect();
    while !pending.is_empty() {
        check_alive(&mut lab, &dir, "before answering")?;
        pending.retain(|&i| query(exe, &socket(&dir, i)).is_err());
        if pending.is_empty() {
            break;
        }
        if t0.elapsed() > START_TIMEOUT {
            let names: Vec<String> = pending.iter().map(|i| format!("n{i}")).collect();
            return Err(format!(
                "{} did not answer on the control socket within {} s; logs in {} (use --keep)",
                names.join(", "),
                START_TIMEOUT.as_secs(),
                dir.display()
            ));
        }
        pause(Duration::from_millis(50))?;
    }
    println!(
        "{n} daemons answering after {} ms under load; measuring for {} s",
        t0.elapsed().as_millis(),
        args.seconds
    );
    let until = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < until {
        check_alive(&mut lab, &dir, "during the run")?;
        pause(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())))?;
    }

    // Read while still loaded (the window is the last 4096 rounds), then unload.
    let mut rows = Vec::new();
    for i in 0..n {
        let node = format!("n{i}");
        rows.push(match query(exe, &socket(&dir, i)) {
            Ok(v) => Row::from_status(run, &node, &v),
            Err(e) => Row {
                node,
                ..Row::failed(run, &e)
            },
        });
    }
    drop(lab);
    Ok(rows)
}

/// A daemon that exited is an error naming it, its exit status and its last log line.
fn check_alive(lab: &mut Lab, dir: &Path, when: &str) -> Result<(), String> {
    for (i, c) in lab.daemons.iter_mut().enumerate() {
        if let Ok(Some(status)) = c.try_wait() {
            let i = u8::try_from(i).unwrap_or(u8::MAX);
            return Err(format!(
                "daemon n{i} exited {when} ({status}): {}",
                last_log_line(&log_path(dir, i))
            ));
        }
    }
    Ok(())
}

fn last_log_line(log: &Path) -> String {
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

fn one_line(s: &str, max: usize) -> String {
    let s = s.lines().next().unwrap_or("").trim();
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

fn socket(dir: &Path, i: u8) -> PathBuf {
    dir.join(format!("n{i}.sock"))
}

fn log_path(dir: &Path, i: u8) -> PathBuf {
    dir.join(format!("n{i}.log"))
}

/// `vigil lltstat --json --socket PATH`, parsed; killed after [`QUERY_TIMEOUT`].
fn query(exe: &Path, socket: &Path) -> Result<Value, String> {
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

/// The cluster config of one run: `n` nodes on 127.0.0.1 with high-priority UDP links
/// `a` and `b`, every timer scaled from the heartbeat `h` ms so that
/// `heartbeat <= heartbeat_lowpri < peer_trouble < peer_inactive`,
/// `race_timeout > heartbeat` and `2 × heartbeat <= lease <= peer_inactive`.
fn config_text(dir: &Path, n: u8, h: u64, run: Run) -> Result<String, String> {
    let ports = free_udp_ports(2 * usize::from(n))?;
    let mut t = format!(
        "# written by `vigil bench jitter` ({label})\n\
         [cluster]\nname = \"jitter\"\nid = 4243\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n\
         # A node starved by the burners must not fence itself in the middle of the\n\
         # measurement: this bench is about sending, not about verdicts.\n\
         fencing = \"disabled\"\n\n\
         [timers]\nheartbeat = {h}\nheartbeat_lowpri = {lowpri}\npeer_trouble = {trouble}\n\
         peer_inactive = {inactive}\nrace_timeout = {race}\nlease = {lease}\n",
        label = run.label(),
        d = dir.display(),
        lowpri = 2 * h,
        trouble = 8 * h,
        inactive = 16 * h,
        race = 10 * h,
        lease = 8 * h,
    );
    if run == Run::Realtime {
        t.push_str("\n[daemon]\nrealtime = \"fifo\"\nrt_priority = 50\nmlockall = true\n");
    }
    t.push_str(
        "\n[[links]]\nname = \"a\"\nkind = \"udp\"\n\n[[links]]\nname = \"b\"\nkind = \"udp\"\n",
    );
    for i in 0..usize::from(n) {
        let (pa, pb) = (ports[2 * i], ports[2 * i + 1]);
        let _ = write!(
            t,
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"127.0.0.1:{pa}\"\n\
             b = \"127.0.0.1:{pb}\"\n"
        );
    }
    Ok(t)
}

fn free_udp_ports(count: usize) -> Result<Vec<u16>, String> {
    // Hold every socket until all ports are chosen, so no port is handed out twice.
    let socks: Vec<std::net::UdpSocket> = (0..count)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find free UDP ports on 127.0.0.1: {e}"))?;
    socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// Spawns a child that the kernel kills (SIGKILL) if this process dies first, so no
/// burner outlives the bench even when the bench is killed with SIGKILL.
fn spawn_owned(cmd: &mut Command) -> std::io::Result<Child> {
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

/// Set by SIGINT, SIGTERM or SIGHUP; the waits poll it and unwind through [`Lab`].
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid value to fill in; the handler only
        // stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleeps for `d`, returning early with an error when a stop signal came.
fn pause(d: Duration) -> Result<(), String> {
    let until = Instant::now() + d;
    loop {
        if stopped() {
            return Err("interrupted".into());
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configs_validate_with_the_scaled_timers() {
        let dir = std::env::temp_dir().join(format!("vigil-jitter-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for h in [1, 10, 100, 10_000] {
            let text = config_text(&dir, 3, h, Run::Normal).expect("config");
            let file = dir.join(format!("c{h}.toml"));
            std::fs::write(&file, text).expect("write");
            let cfg = vigil::config::ClusterConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cfg.timers.heartbeat, Duration::from_millis(h));
            assert_eq!(cfg.nodes.len(), 3);
        }
        let rt = config_text(&dir, 2, 10, Run::Realtime).expect("config");
        assert!(rt.contains("[daemon]\nrealtime = \"fifo\"\nrt_priority = 50\nmlockall = true\n"));
        let file = dir.join("rt.toml");
        std::fs::write(&file, rt).expect("write");
        let cfg = vigil::config::ClusterConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.daemon.rt_priority, 50);
        assert!(cfg.daemon.mlockall);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_fields_read_as_none_and_print_as_na() {
        let v: Value = serde_json::json!({"local": 0, "node": "n0"});
        let r = Row::from_status(Run::Normal, "n0", &v);
        assert_eq!((r.count, r.p99_us), (None, None));
        assert_eq!(r.realtime, "n/a");
        let text = table(&[r], 10_000);
        assert!(text.contains("n/a") && text.contains("10000"), "{text}");

        let v: Value = serde_json::json!({"heartbeat": {"interval_us": 10000, "count": 500,
            "p50_us": 10001, "p99_us": 10400, "max_us": 12000}, "realtime": "fifo 50"});
        let r = Row::from_status(Run::Realtime, "n1", &v);
        assert_eq!(
            (r.count, r.p50_us, r.p99_us, r.max_us),
            (Some(500), Some(10001), Some(10400), Some(12000))
        );
        assert!(table(&[r], 1).contains("fifo 50"));
    }
}
