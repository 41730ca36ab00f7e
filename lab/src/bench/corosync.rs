//! `vigil bench corosync`: Corosync 3 (knet over UDP, votequorum) as N hosts in
//! network namespaces on this machine, timed from a fault to the new membership.
//!
//! The lab is [`crate::netlab`]: node `i` (nodeid `i + 1`) lives in its own namespace
//! with address 10.50.0.`i + 1` on one bridge. Corosync 3 has a fixed PID file
//! (`/run/corosync.pid`), so each node runs as
//! `ip netns exec NS unshare --mount sh -c 'mount --bind DIR/run /run; exec corosync -f -c CONF'`
//! with its own `/run`, `state_dir` and log file; `corosync-quorumtool` runs the same
//! way to reach a node's (abstract, per-namespace) IPC sockets.
//!
//! What is measured, per repetition and drill:
//!
//! * `kill`: SIGKILL of one node's corosync. The fault time is read right after
//!   kill(2) returns.
//! * `isolate`: an nftables table in the victim's namespace drops all IPv4 traffic
//!   from and to every other node ([`Lab::isolate_timed`]: `nft` is started first
//!   and handed the ruleset at the fault). The fault time is read right after `nft`
//!   exits, so the rule is certainly in force; it took effect at most
//!   [`Sample::fault_cmd`] earlier (typically a few ms), so the figure errs by at most
//!   that much in Corosync's favour.
//!
//! The result is the time from the fault to the moment the last survivor logged the
//! new membership: the first votequorum `Members[n]: ...` line after the fault whose
//! member list is exactly the survivors. Corosync runs with
//! `logging { timestamp: hires }` (millisecond wall-clock stamps) and `TZ=UTC`; the
//! fault time is `SystemTime::now()` of this process. Both are CLOCK_REALTIME on the
//! same machine, so they compare directly (a clock step during a run would spoil it).
//! Log stamps are cut to the millisecond, so a figure can be up to 1 ms short.
//!
//! Then the fault is repaired (the killed node restarted, the rule removed), and the
//! next drill starts only once every node's latest logged membership is the full one
//! and no node has logged another for one effective token (at least 1 s). Memberships
//! the survivors log between the fault and the expected one, and any logged while the
//! full cluster should have been steady, are counted as unexpected and reported.
//! `corosync-quorumtool -s` (quorate, all nodes) is checked once, when the cluster
//! has first formed; it is not run between drills, so its IPC connections do not
//! disturb the timed cluster.

use crate::netlab::{self, Lab, ProcId};
use crate::Exit;
use clap::{Args, ValueEnum};
use std::collections::BTreeSet;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fewest and most nodes the benchmark runs.
pub const MIN_NODES: usize = 3;
pub const MAX_NODES: usize = 64;

/// Corosync's timer setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Corosync's defaults: token 3000 ms, token_coefficient 650 ms, consensus 1.2 ×
    /// the effective token, knet ping timings derived from the token.
    Default,
    /// `token: MS`, `token_coefficient: 0`, and the knet ping timers of `knet`.
    Token { token: u32, knet: KnetPing },
}

/// The knet heartbeat timers of a [`Setting::Token`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnetPing {
    /// Not written: Corosync derives them from the token (interval token/4,
    /// timeout token/2 with the default knet_pong_count 2).
    Auto,
    /// `knet_ping_interval` and `knet_ping_timeout`, in ms.
    Ms { interval: u32, timeout: u32 },
}

impl Setting {
    /// The fast setting for token `ms`: token_coefficient 0, knet_ping_interval
    /// ms/2, knet_ping_timeout 2·ms (token 200 → ping 100/400, the setting the
    /// baseline notes found the smallest workable).
    pub fn fast(ms: u32) -> Setting {
        Setting::Token {
            token: ms,
            knet: KnetPing::Ms {
                interval: (ms / 2).max(1),
                timeout: ms.saturating_mul(2),
            },
        }
    }

    /// `default`; `MS` ([`Setting::fast`]); `MS:auto` (knet timers derived by
    /// Corosync); `MS:INTERVAL:TIMEOUT` (knet ping timers given).
    pub fn parse(s: &str) -> Result<Setting, String> {
        if s == "default" {
            return Ok(Setting::Default);
        }
        let bad = || {
            format!(
                "`{s}`: expected `default`, a token in ms (`200`), `MS:auto`, \
                 or `MS:KNET_PING_INTERVAL:KNET_PING_TIMEOUT`"
            )
        };
        let ms = |p: &str| p.parse::<u32>().ok().filter(|&v| v >= 1);
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [t] => ms(t).map(Setting::fast).ok_or_else(bad),
            [t, "auto"] => ms(t)
                .map(|token| Setting::Token {
                    token,
                    knet: KnetPing::Auto,
                })
                .ok_or_else(bad),
            [t, i, o] => match (ms(t), ms(i), ms(o)) {
                (Some(token), Some(interval), Some(timeout)) => Ok(Setting::Token {
                    token,
                    knet: KnetPing::Ms { interval, timeout },
                }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// Short name: `default`, `token 200 (ping 100/400)`, `token 500 (ping auto)`.
    pub fn label(&self) -> String {
        match self {
            Setting::Default => "default".to_string(),
            Setting::Token {
                token,
                knet: KnetPing::Auto,
            } => format!("token {token} (ping auto)"),
            Setting::Token {
                token,
                knet: KnetPing::Ms { interval, timeout },
            } => format!("token {token} (ping {interval}/{timeout})"),
        }
    }

    /// A name fit for a directory: `default`, `token200-ping100-400`.
    pub fn slug(&self) -> String {
        match self {
            Setting::Default => "default".to_string(),
            Setting::Token {
                token,
                knet: KnetPing::Auto,
            } => format!("token{token}-pingauto"),
            Setting::Token {
                token,
                knet: KnetPing::Ms { interval, timeout },
            } => format!("token{token}-ping{interval}-{timeout}"),
        }
    }

    /// The totem timer options, in words.
    pub fn describe(&self) -> String {
        match self {
            Setting::Default => "token 3000, token_coefficient 650 (corosync defaults)".into(),
            Setting::Token {
                token,
                knet: KnetPing::Auto,
            } => {
                format!("token {token}, token_coefficient 0, knet ping timers derived by corosync")
            }
            Setting::Token {
                token,
                knet: KnetPing::Ms { interval, timeout },
            } => format!(
                "token {token}, token_coefficient 0, knet_ping_interval {interval}, \
                 knet_ping_timeout {timeout}"
            ),
        }
    }

    fn totem_lines(&self) -> String {
        match self {
            Setting::Default => String::new(),
            Setting::Token { token, knet } => {
                let mut t = format!("  token: {token}\n  token_coefficient: 0\n");
                if let KnetPing::Ms { interval, timeout } = knet {
                    t.push_str(&format!(
                        "  knet_ping_interval: {interval}\n  knet_ping_timeout: {timeout}\n"
                    ));
                }
                t
            }
        }
    }

    /// The effective token timeout at `nodes` nodes: token + (nodes − 2) ×
    /// token_coefficient (the coefficient applies from 3 nodes).
    pub fn effective_token(&self, nodes: usize) -> Duration {
        let (token, coefficient) = match self {
            Setting::Default => (3000u64, 650u64),
            Setting::Token { token, .. } => (u64::from(*token), 0),
        };
        let extra = if nodes >= 3 {
            (nodes as u64 - 2) * coefficient
        } else {
            0
        };
        Duration::from_millis(token + extra)
    }

    /// Where Corosync should decide: effective token + consensus (1.2 × token).
    pub fn expected_decision(&self, nodes: usize) -> Duration {
        let t = self.effective_token(nodes);
        t + t.mul_f64(1.2)
    }

    /// How long to wait for a new membership before giving up.
    fn patience(&self, nodes: usize) -> Duration {
        self.expected_decision(nodes) * 4 + Duration::from_secs(20)
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Drill {
    /// SIGKILL one node's corosync; restart it to repair.
    Kill,
    /// Drop all traffic to and from one node (nftables in its namespace).
    Isolate,
}

impl Drill {
    pub fn label(&self) -> &'static str {
        match self {
            Drill::Kill => "kill one node (SIGKILL)",
            Drill::Isolate => "isolate one node (nft)",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Drill::Kill => "kill",
            Drill::Isolate => "isolate",
        }
    }
}

/// One measured fault.
#[derive(Clone, Debug)]
pub struct Sample {
    pub setting: Setting,
    pub drill: Drill,
    /// Repetition, from 0.
    pub rep: usize,
    /// The victim's corosync nodeid.
    pub victim: u32,
    /// Fault → the last survivor logs the membership without the victim.
    pub last: Duration,
    /// Fault → the first survivor logs it.
    pub first: Duration,
    /// How long the fault action itself took: kill(2), or nft from receiving the
    /// ruleset to exiting. The fault took effect somewhere in this window, and the
    /// fault time is its end.
    pub fault_cmd: Duration,
    /// Other memberships the survivors logged between the fault and the expected
    /// one (0 in a clean run).
    pub other_views: usize,
    /// Memberships logged while the full cluster was settling before this fault
    /// (0 in a clean run).
    pub churn_before: usize,
    /// Repair → every node logs the full membership again.
    pub rejoin: Duration,
}

/// `vigil bench corosync`.
#[derive(Args, Debug)]
pub struct CorosyncArgs {
    /// Cluster size (each node in its own network namespace); 3 to 64.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Repetitions of each drill per setting.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Timer setting, repeatable: `default` (token 3000, token_coefficient 650); `MS`
    /// (token MS, token_coefficient 0, knet_ping_interval MS/2, knet_ping_timeout
    /// 2×MS); `MS:auto` (knet ping timers left to corosync); `MS:INTERVAL:TIMEOUT`
    /// (knet ping timers given). Without any: `default` and `200`.
    #[arg(long = "token", value_name = "default|MS[:auto|:I:T]", value_parser = Setting::parse)]
    tokens: Vec<Setting>,
    /// Drill, repeatable. Without any: kill and isolate.
    #[arg(long = "drill", value_enum)]
    drills: Vec<Drill>,
    /// Keep every node's corosync.conf and log under `DIR/<setting>/n<id>/` instead of a
    /// temporary directory that is removed at the end.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// Print every sample and the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CorosyncArgs) -> Exit {
    match run_inner(&args) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("vigil bench corosync: {e}");
            Exit::Failure
        }
    }
}

fn run_inner(args: &CorosyncArgs) -> Result<(), String> {
    if !(MIN_NODES..=MAX_NODES).contains(&args.nodes) {
        return Err(format!(
            "--nodes {}: the benchmark runs {MIN_NODES} to {MAX_NODES} nodes",
            args.nodes
        ));
    }
    if args.reps == 0 {
        return Err("--reps 0: nothing to measure".into());
    }
    let tools = Tools::find()?;
    netlab::catch_interrupts()?;
    match netlab::cleanup_stale() {
        Ok(gone) if !gone.is_empty() => {
            eprintln!(
                "removed namespaces left by earlier runs: {}",
                gone.join(" ")
            )
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: removing namespaces left by earlier runs: {e}"),
    }
    let settings = if args.tokens.is_empty() {
        vec![Setting::Default, Setting::fast(200)]
    } else {
        args.tokens.clone()
    };
    let drills = if args.drills.is_empty() {
        vec![Drill::Kill, Drill::Isolate]
    } else {
        args.drills.clone()
    };
    eprintln!(
        "{}, knet over UDP, votequorum; {} nodes in network namespaces; {} repetition(s) per drill",
        tools.version, args.nodes, args.reps
    );
    let mut all = Vec::new();
    for setting in &settings {
        eprintln!(
            "setting {}: {}; effective token {} ms, expected decision (token + consensus) ~{} ms",
            setting.label(),
            setting.describe(),
            setting.effective_token(args.nodes).as_millis(),
            setting.expected_decision(args.nodes).as_millis()
        );
        let logs = args.logs.as_ref().map(|d| d.join(setting.slug()));
        let samples = measure_all(
            *setting,
            &drills,
            args.nodes,
            args.reps,
            logs.as_deref(),
            &mut |s: &Sample| {
                eprintln!(
                    "  {:<24} {:<8} rep {:>2}/{} victim n{}: last survivor {} ms, first {} ms \
                     (fault command {:.1} ms){}; rejoined in {} ms",
                    s.setting.label(),
                    s.drill.name(),
                    s.rep + 1,
                    args.reps,
                    s.victim,
                    s.last.as_millis(),
                    s.first.as_millis(),
                    s.fault_cmd.as_secs_f64() * 1000.0,
                    if s.other_views + s.churn_before > 0 {
                        format!(
                            " (unexpected memberships: {} after the fault, {} before)",
                            s.other_views, s.churn_before
                        )
                    } else {
                        String::new()
                    },
                    s.rejoin.as_millis()
                );
            },
        )?;
        all.extend(samples);
    }
    let rows = summarize(&all, &settings, &drills);
    if args.json {
        print_json(&tools.version, args.nodes, &all, &rows);
    } else {
        print_table(args.nodes, &rows);
    }
    Ok(())
}

/// One row of the summary.
#[derive(Clone, Debug)]
pub struct Row {
    pub setting: Setting,
    pub drill: Drill,
    pub reps: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub min: Duration,
    /// Samples where the survivors logged another membership between the fault and
    /// the expected one (the cluster was churning by itself).
    pub disturbed: usize,
    /// p50 of the other samples, if any.
    pub clean_p50: Option<Duration>,
    /// Memberships logged while the full cluster should have been steady (between a
    /// repair and the next fault), summed over the samples.
    pub churn: usize,
}

/// p50 and p99 per (setting, drill), in the order given.
pub fn summarize(samples: &[Sample], settings: &[Setting], drills: &[Drill]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &setting in settings {
        for &drill in drills {
            let mine: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.setting == setting && s.drill == drill)
                .collect();
            let times: Vec<Duration> = mine.iter().map(|s| s.last).collect();
            let clean: Vec<Duration> = mine
                .iter()
                .filter(|s| s.other_views == 0)
                .map(|s| s.last)
                .collect();
            if let (Some(p50), Some(p99), Some(&min)) = (
                percentile(&times, 50),
                percentile(&times, 99),
                times.iter().min(),
            ) {
                rows.push(Row {
                    setting,
                    drill,
                    reps: times.len(),
                    p50,
                    p99,
                    min,
                    disturbed: mine.iter().filter(|s| s.other_views > 0).count(),
                    clean_p50: percentile(&clean, 50),
                    churn: mine.iter().map(|s| s.churn_before).sum(),
                });
            }
        }
    }
    rows
}

fn print_table(nodes: usize, rows: &[Row]) {
    println!(
        "Corosync, {nodes} nodes: fault -> last survivor logs the new membership (ms, nearest-rank percentiles)"
    );
    println!(
        "{:<26} {:<24} {:>5} {:>7} {:>7} {:>7} {:>10} {:>9} {:>6}",
        "setting", "drill", "reps", "p50", "p99", "min", "disturbed", "clean p50", "churn"
    );
    for r in rows {
        println!(
            "{:<26} {:<24} {:>5} {:>7} {:>7} {:>7} {:>10} {:>9} {:>6}",
            r.setting.label(),
            r.drill.label(),
            r.reps,
            r.p50.as_millis(),
            r.p99.as_millis(),
            r.min.as_millis(),
            r.disturbed,
            r.clean_p50
                .map_or_else(|| "-".to_string(), |d| d.as_millis().to_string()),
            r.churn
        );
    }
    println!(
        "disturbed: samples in which the survivors logged another membership between the \
         fault and the expected one; clean p50: p50 of the others; churn: memberships \
         logged while the full cluster should have been steady (after a repair, before \
         the next fault)"
    );
}

fn print_json(version: &str, nodes: usize, samples: &[Sample], rows: &[Row]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let samples: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({
                "setting": s.setting.label(),
                "drill": s.drill.name(),
                "rep": s.rep,
                "victim": s.victim,
                "last_ms": ms(s.last),
                "first_ms": ms(s.first),
                "fault_cmd_ms": ms(s.fault_cmd),
                "other_views": s.other_views,
                "churn_before": s.churn_before,
                "rejoin_ms": ms(s.rejoin),
            })
        })
        .collect();
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "setting": r.setting.label(),
                "options": r.setting.describe(),
                "drill": r.drill.name(),
                "reps": r.reps,
                "p50_ms": ms(r.p50),
                "p99_ms": ms(r.p99),
                "min_ms": ms(r.min),
                "disturbed": r.disturbed,
                "clean_p50_ms": r.clean_p50.map(ms),
                "churn": r.churn,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "corosync": version,
        "nodes": nodes,
        "measure": "fault -> last survivor logs the new membership",
        "summary": rows,
        "samples": samples,
    });
    println!("{doc:#}");
}

/// The nearest-rank `p`th percentile (`p` in 1..=100): the value at rank ⌈p·n/100⌉.
pub fn percentile(values: &[Duration], p: u32) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort();
    let n = v.len();
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    Some(v[rank - 1])
}

// ---------------------------------------------------------------------------------
// The library entry points.

/// Run `drill` `reps` times against a fresh `nodes`-node Corosync cluster with timer
/// `setting`; fault → last survivor's new membership, one per repetition.
// For the combined benchmark, which runs vigil's drills in the same process.
#[allow(dead_code)]
pub fn measure(
    setting: Setting,
    drill: Drill,
    nodes: usize,
    reps: usize,
) -> Result<Vec<Duration>, String> {
    let tools = Tools::find()?;
    let samples = measure_with(&tools, setting, &[drill], nodes, reps, None, &mut |_| {})?;
    Ok(samples.into_iter().map(|s| s.last).collect())
}

/// Run every drill of `drills` `reps` times (repetition by repetition, the victim
/// rotating over the nodes) on one `nodes`-node cluster; `progress` sees each sample
/// as it is taken. With `logs`, configs and logs are kept there.
pub fn measure_all(
    setting: Setting,
    drills: &[Drill],
    nodes: usize,
    reps: usize,
    logs: Option<&Path>,
    progress: &mut dyn FnMut(&Sample),
) -> Result<Vec<Sample>, String> {
    let tools = Tools::find()?;
    measure_with(&tools, setting, drills, nodes, reps, logs, progress)
}

fn measure_with(
    tools: &Tools,
    setting: Setting,
    drills: &[Drill],
    nodes: usize,
    reps: usize,
    logs: Option<&Path>,
    progress: &mut dyn FnMut(&Sample),
) -> Result<Vec<Sample>, String> {
    let mut cluster = Cluster::start(tools.clone(), setting, nodes, logs)?;
    let mut samples = Vec::new();
    for rep in 0..reps {
        for &drill in drills {
            let victim = rep % nodes;
            let s = cluster.drill(drill, victim, rep).map_err(|e| {
                format!("{} {} rep {}: {e}", setting.label(), drill.name(), rep + 1)
            })?;
            progress(&s);
            samples.push(s);
        }
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------------
// The programs.

/// The Corosync programs, found once.
#[derive(Clone, Debug)]
pub struct Tools {
    corosync: PathBuf,
    quorumtool: PathBuf,
    /// `corosync -v`, first line.
    version: String,
}

impl Tools {
    /// Find corosync, corosync-quorumtool, ip, nft and unshare; check for root.
    pub fn find() -> Result<Tools, String> {
        let Some(corosync) = netlab::which("corosync") else {
            return Err("corosync is not installed; install it with \
                        `apt-get install corosync` (Debian/Ubuntu) and run again"
                .into());
        };
        let Some(quorumtool) = netlab::which("corosync-quorumtool") else {
            return Err("corosync-quorumtool is missing; install it with \
                        `apt-get install corosync`"
                .into());
        };
        for (prog, package) in [
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("unshare", "util-linux"),
        ] {
            if netlab::which(prog).is_none() {
                return Err(format!(
                    "`{prog}` is missing; install it with `apt-get install {package}`"
                ));
            }
        }
        if !netlab::is_root() {
            return Err("needs root (network namespaces, nftables, bind mounts)".into());
        }
        let corosync_s = corosync.to_string_lossy().into_owned();
        let version = netlab::run(&[&corosync_s, "-v"])
            .ok()
            .and_then(|o| o.lines().next().map(str::to_string))
            .unwrap_or_else(|| "Corosync (version unknown)".into());
        let version = match version.split('\'').nth(1) {
            Some(v) => format!("Corosync {v}"),
            None => version,
        };
        Ok(Tools {
            corosync,
            quorumtool,
            version,
        })
    }
}

// ---------------------------------------------------------------------------------
// A running cluster.

/// A scratch directory, removed when dropped unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A membership, as one node logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    at: SystemTime,
    members: BTreeSet<u32>,
}

/// The votequorum `Members[n]` lines of one node's log, read as the file grows.
struct MembersLog {
    path: PathBuf,
    offset: u64,
    partial: String,
    views: Vec<View>,
}

impl MembersLog {
    fn new(path: PathBuf) -> MembersLog {
        MembersLog {
            path,
            offset: 0,
            partial: String::new(),
            views: Vec::new(),
        }
    }

    /// Read what was appended since the last call.
    fn poll(&mut self) -> Result<(), String> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("open {}: {e}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| format!("seek {}: {e}", self.path.display()))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| format!("read {}: {e}", self.path.display()))?;
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let now = SystemTime::now();
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            if let Some(v) = parse_members_line(&line, now) {
                self.views.push(v);
            }
        }
        Ok(())
    }

    fn latest(&self) -> Option<&View> {
        self.views.last()
    }

    /// Views logged at or after `since` (compared at millisecond resolution).
    fn since(&self, since: SystemTime) -> impl Iterator<Item = &View> {
        let floor = floor_ms(since);
        self.views.iter().filter(move |v| v.at >= floor)
    }
}

/// A Corosync cluster in a lab; every process and namespace goes when dropped.
pub struct Cluster {
    // Dropped first: kills corosync and removes the namespaces before the directory.
    lab: Lab,
    dir: WorkDir,
    tools: Tools,
    setting: Setting,
    nodes: usize,
    procs: Vec<Option<ProcId>>,
    logs: Vec<MembersLog>,
    /// When the full membership was last seen formed (for churn counting).
    stable_since: SystemTime,
}

impl Cluster {
    /// Start `nodes` corosync instances and wait until every one logs the full,
    /// quorate membership. Configs and logs go under `logs` (kept) or a temporary
    /// directory (removed).
    pub fn start(
        tools: Tools,
        setting: Setting,
        nodes: usize,
        logs: Option<&Path>,
    ) -> Result<Cluster, String> {
        if !(MIN_NODES..=MAX_NODES).contains(&nodes) {
            return Err(format!(
                "{nodes} nodes: the benchmark runs {MIN_NODES} to {MAX_NODES}"
            ));
        }
        let dir = match logs {
            Some(d) => WorkDir {
                path: d.to_path_buf(),
                keep: true,
            },
            None => {
                static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                WorkDir {
                    path: std::env::temp_dir()
                        .join(format!("vigil-corosync-{}-{n}", std::process::id())),
                    keep: false,
                }
            }
        };
        let lab = Lab::new(nodes, 1)?;
        let mut c = Cluster {
            lab,
            dir,
            tools,
            setting,
            nodes,
            procs: vec![None; nodes],
            logs: Vec::new(),
            stable_since: SystemTime::now(),
        };
        let conf = c.config();
        for i in 0..nodes {
            let nd = c.node_dir(i);
            // A kept directory may hold an earlier run's logs: start afresh.
            let _ = std::fs::remove_dir_all(&nd);
            for sub in ["run", "state"] {
                std::fs::create_dir_all(nd.join(sub))
                    .map_err(|e| format!("create {}: {e}", nd.join(sub).display()))?;
            }
            let text = conf
                .replace("@STATE@", &nd.join("state").to_string_lossy())
                .replace("@LOG@", &nd.join("corosync.log").to_string_lossy());
            std::fs::write(nd.join("corosync.conf"), text)
                .map_err(|e| format!("write {}: {e}", nd.join("corosync.conf").display()))?;
            c.logs.push(MembersLog::new(nd.join("corosync.log")));
        }
        let started = SystemTime::now();
        for i in 0..nodes {
            c.start_node(i)?;
        }
        let patience = setting.patience(nodes);
        c.wait_full(started, patience)
            .map_err(|e| format!("the cluster did not form: {e}"))?;
        c.check_quorate()?;
        c.stable_since = SystemTime::now();
        Ok(c)
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path.join(format!("n{}", i + 1))
    }

    /// corosync.conf, with @STATE@ and @LOG@ to fill in per node.
    fn config(&self) -> String {
        let mut nodelist = String::new();
        for i in 0..self.nodes {
            nodelist.push_str(&format!(
                "  node {{\n    name: n{id}\n    nodeid: {id}\n    ring0_addr: {addr}\n  }}\n",
                id = i + 1,
                addr = self.lab.addr(i, 0)
            ));
        }
        format!(
            "# written by vigil bench corosync\n\
             totem {{\n  version: 2\n  cluster_name: vigilbench\n  transport: knet\n  \
             crypto_cipher: none\n  crypto_hash: none\n{totem}}}\n\
             system {{\n  state_dir: @STATE@\n}}\n\
             logging {{\n  to_stderr: no\n  to_logfile: yes\n  logfile: @LOG@\n  \
             to_syslog: no\n  timestamp: hires\n  fileline: off\n  debug: off\n}}\n\
             quorum {{\n  provider: corosync_votequorum\n}}\n\
             nodelist {{\n{nodelist}}}\n",
            totem = self.setting.totem_lines()
        )
    }

    /// `unshare --mount sh -c 'mount --bind RUN /run && exec PROG ARGS'` for node `i`.
    fn with_own_run(&self, i: usize, prog: &Path, args: &str) -> Vec<String> {
        let run = self.node_dir(i).join("run");
        vec![
            "unshare".into(),
            "--mount".into(),
            "sh".into(),
            "-c".into(),
            format!("mount --bind \"$1\" /run && exec env TZ=UTC \"$2\" {args}"),
            "sh".into(),
            run.to_string_lossy().into_owned(),
            prog.to_string_lossy().into_owned(),
        ]
    }

    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let nd = self.node_dir(i);
        let conf = nd.join("corosync.conf");
        let args = format!("-f -c '{}'", conf.to_string_lossy().replace('\'', "'\\''"));
        let argv = self.with_own_run(i, &self.tools.corosync.clone(), &args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let id = self.lab.spawn(i, &argv, Some(&nd.join("stderr.log")))?;
        self.procs[i] = Some(id);
        Ok(())
    }

    /// An error if a corosync that should run has exited.
    fn check_running(&mut self) -> Result<(), String> {
        for i in 0..self.nodes {
            if let Some(id) = self.procs[i] {
                if !self.lab.running(id)? {
                    self.procs[i] = None;
                    return Err(format!(
                        "corosync on n{} exited; its stderr: {}; its log ends: {}",
                        i + 1,
                        tail(&self.node_dir(i).join("stderr.log"), 5),
                        tail(&self.node_dir(i).join("corosync.log"), 5)
                    ));
                }
            }
        }
        Ok(())
    }

    fn all_ids(&self) -> BTreeSet<u32> {
        (1..=self.nodes as u32).collect()
    }

    fn poll_logs(&mut self) -> Result<(), String> {
        for l in &mut self.logs {
            l.poll()?;
        }
        Ok(())
    }

    /// Wait until every node has logged, at or after `since`, a view that is the
    /// full membership and still its latest. Returns when that happened (the latest
    /// of those log times).
    fn wait_full(&mut self, since: SystemTime, patience: Duration) -> Result<SystemTime, String> {
        let full = self.all_ids();
        let deadline = std::time::Instant::now() + patience;
        loop {
            netlab::check_interrupted()?;
            self.check_running()?;
            self.poll_logs()?;
            let mut done = Some(since);
            for l in &self.logs {
                let fresh = l.since(since).last();
                match fresh {
                    Some(v) if v.members == full => {
                        done = done.map(|d| d.max(v.at));
                    }
                    _ => done = None,
                }
            }
            if let Some(at) = done {
                return Ok(at);
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "no full membership on every node after {} s; latest views: {}",
                    patience.as_secs(),
                    self.describe_latest()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn describe_latest(&self) -> String {
        self.logs
            .iter()
            .enumerate()
            .map(|(i, l)| match l.latest() {
                Some(v) => format!("n{}: {:?}", i + 1, v.members),
                None => format!("n{}: none", i + 1),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `corosync-quorumtool -s` on every node: quorate, with every node (retried
    /// for a few seconds).
    fn check_quorate(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for i in 0..self.nodes {
            loop {
                netlab::check_interrupted()?;
                let argv = self.with_own_run(i, &self.tools.quorumtool.clone(), "-s");
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let out = self.lab.output(i, &argv)?;
                let text = String::from_utf8_lossy(&out.stdout);
                let nodes = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Nodes:"))
                    .and_then(|n| n.trim().parse::<usize>().ok());
                if out.status.code() == Some(0) && nodes == Some(self.nodes) {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(format!(
                        "corosync-quorumtool -s on n{}: exit {:?}, Nodes {nodes:?} (want quorate with {}): {}{}",
                        i + 1,
                        out.status.code(),
                        self.nodes,
                        text.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                netlab::sleep(Duration::from_millis(100))?;
            }
        }
        Ok(())
    }

    /// Wait until every node's latest view is the full membership and no node has
    /// logged another view for a quiet period of one effective token (at least 1 s).
    fn wait_stable(&mut self) -> Result<(), String> {
        let quiet = self
            .setting
            .effective_token(self.nodes)
            .max(Duration::from_secs(1));
        let patience = self.setting.patience(self.nodes) * 3;
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.wait_full(UNIX_EPOCH, left)
                .map_err(|e| format!("the cluster did not settle: {e}"))?;
            let from = SystemTime::now();
            netlab::sleep(quiet)?;
            self.check_running()?;
            self.poll_logs()?;
            if self.logs.iter().all(|l| l.since(from).next().is_none()) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the cluster did not stay in one membership for {} ms within {} s; latest views: {}",
                    quiet.as_millis(),
                    patience.as_secs(),
                    self.describe_latest()
                ));
            }
        }
    }

    /// Wait for a settled full membership, inflict `drill` on node `victim`
    /// (0-based), time it, repair, and wait for the full membership again.
    pub fn drill(&mut self, drill: Drill, victim: usize, rep: usize) -> Result<Sample, String> {
        if victim >= self.nodes {
            return Err(format!("no node {victim}"));
        }
        self.wait_stable()?;
        let churn_before = self
            .logs
            .iter()
            .map(|l| l.since(self.stable_since).count())
            .sum();

        // The fault.
        let mut before = SystemTime::now();
        let fault_at = match drill {
            Drill::Kill => {
                let id = self.procs[victim]
                    .take()
                    .ok_or_else(|| format!("corosync on n{} is not running", victim + 1))?;
                self.lab.signal(id, libc::SIGKILL)?;
                let at = SystemTime::now();
                self.lab.kill(id)?;
                at
            }
            Drill::Isolate => {
                let (written, done) = self.lab.isolate_timed(victim)?;
                before = written;
                done
            }
        };
        let fault_cmd = fault_at.duration_since(before).unwrap_or_default();

        // Every survivor's first view after the fault that is exactly the survivors.
        let survivors: Vec<usize> = (0..self.nodes).filter(|&i| i != victim).collect();
        let want: BTreeSet<u32> = survivors.iter().map(|&i| i as u32 + 1).collect();
        let patience = self.setting.patience(self.nodes);
        let deadline = std::time::Instant::now() + patience;
        let (first, last, other_views) = loop {
            netlab::check_interrupted()?;
            self.check_running()?;
            self.poll_logs()?;
            let mut times = Vec::new();
            let mut others = 0;
            for &i in &survivors {
                let mut found = None;
                for v in self.logs[i].since(fault_at) {
                    if v.members == want {
                        found = Some(v.at);
                        break;
                    }
                    others += 1;
                }
                if let Some(at) = found {
                    times.push(at);
                }
            }
            if times.len() == survivors.len() {
                let after = |t: &SystemTime| t.duration_since(fault_at).unwrap_or_default();
                let first = times.iter().min().map(after).unwrap_or_default();
                let last = times.iter().max().map(after).unwrap_or_default();
                break (first, last, others);
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "after {} s not every survivor logged the membership {want:?}; latest views: {}",
                    patience.as_secs(),
                    self.describe_latest()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };

        // Repair and wait for the whole cluster.
        match drill {
            Drill::Kill => self.start_node(victim)?,
            Drill::Isolate => self.lab.unblock(victim)?,
        }
        let repaired = SystemTime::now();
        let back = self
            .wait_full(repaired, patience)
            .map_err(|e| format!("after the repair: {e}"))?;
        let rejoin = back.duration_since(repaired).unwrap_or_default();
        // Views after this one are churn (counted before the next fault).
        self.stable_since = back + Duration::from_millis(1);
        Ok(Sample {
            setting: self.setting,
            drill,
            rep,
            victim: victim as u32 + 1,
            last,
            first,
            fault_cmd,
            other_views,
            churn_before,
            rejoin,
        })
    }
}

/// The last `n` lines of a file, joined with " | " (or why it could not be read).
fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let lines: Vec<&str> = t.lines().collect();
            let start = lines.len().saturating_sub(n);
            let s = lines[start..].join(" | ");
            if s.is_empty() {
                "(empty)".into()
            } else {
                s
            }
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------------------------
// Log parsing.

/// `t` with its sub-millisecond part cut off.
fn floor_ms(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A votequorum membership line of a hires corosync log:
/// `Nov 23 16:14:52.995 [17356] host corosync notice  [QUORUM] Members[3]: 1 2 3`.
/// The log has no year: the one that puts the stamp closest before `now` (+1 day).
fn parse_members_line(line: &str, now: SystemTime) -> Option<View> {
    let (_, rest) = line.split_once("[QUORUM] Members[")?;
    let (_, ids) = rest.split_once("]:")?;
    let members: BTreeSet<u32> = ids
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let mut words = line.split_whitespace();
    let (mon, day, time) = (words.next()?, words.next()?, words.next()?);
    let at = parse_stamp(mon, day, time, now)?;
    Some(View { at, members })
}

/// `Nov` `23` `16:14:52.995` (UTC) as a time, in the year that places it at most one
/// day after `now`.
fn parse_stamp(mon: &str, day: &str, time: &str, now: SystemTime) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Fraction of a second, as milliseconds (any number of digits).
    let mut ms = 0u64;
    for (k, c) in frac.chars().take(3).enumerate() {
        ms += u64::from(c.to_digit(10)?) * [100, 10, 1][k];
    }
    let now_s = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let year = year_of_days(i64::try_from(now_s / 86_400).ok()?);
    let at = |y: i64| -> Option<u64> {
        let days = u64::try_from(days_from_civil(y, month, day)).ok()?;
        Some((days * 86_400 + h * 3600 + m * 60 + s) * 1000 + ms)
    };
    let mut t = at(year)?;
    if t > (now_s + 86_400) * 1000 {
        t = at(year - 1)?;
    }
    Some(UNIX_EPOCH + Duration::from_millis(t))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day count since 1970-01-01.
fn year_of_days(z: i64) -> i64 {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let y = yoe + era * 400;
    if mp >= 10 {
        y + 1
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn members_lines_parse_with_their_hires_stamp() {
        let now = at_ms(1_795_450_500_000);
        let v = parse_members_line(
            "Nov 23 16:14:52.995 [17356] vm corosync notice  [QUORUM] Members[3]: 1 2 3\n",
            now,
        )
        .expect("a membership line");
        assert_eq!(v.at, at_ms(1_795_450_492_995));
        assert_eq!(v.members, [1, 2, 3].into_iter().collect());
        assert!(parse_members_line(
            "Nov 23 16:14:52.991 [17356] vm corosync notice  [QUORUM] Sync members[3]: 1 2 3",
            now
        )
        .is_none());
        assert!(parse_members_line(
            "Nov 23 16:14:52.991 [17356] vm corosync notice  [TOTEM ] A new membership (1.9) was formed. Members joined: 2 3",
            now
        )
        .is_none());
    }

    #[test]
    fn stamps_get_the_right_year() {
        // A December stamp read on the 1st of January belongs to the year before.
        let jan1 = at_ms(1_798_761_600_000 + 5_000); // 2027-01-01T00:00:05Z
        assert_eq!(
            parse_stamp("Dec", "31", "23:59:59.500", jan1),
            Some(at_ms(1_798_761_599_500))
        );
        let leap = at_ms(1_709_168_523_004 + 60_000);
        assert_eq!(
            parse_stamp("Feb", "29", "01:02:03.004", leap),
            Some(at_ms(1_709_168_523_004))
        );
        assert_eq!(parse_stamp("Foo", "29", "01:02:03.004", leap), None);
        assert_eq!(parse_stamp("Feb", "29", "25:02:03.004", leap), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = [5, 1, 4, 2, 3].map(Duration::from_millis).to_vec();
        assert_eq!(percentile(&v, 50), Some(Duration::from_millis(3)));
        assert_eq!(percentile(&v, 99), Some(Duration::from_millis(5)));
        let ten: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ten, 50), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&ten, 99), Some(Duration::from_millis(10)));
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn settings_parse_and_time_out_as_documented() {
        assert_eq!(Setting::parse("default"), Ok(Setting::Default));
        assert_eq!(Setting::parse("200"), Ok(Setting::fast(200)));
        assert_eq!(
            Setting::fast(200),
            Setting::Token {
                token: 200,
                knet: KnetPing::Ms {
                    interval: 100,
                    timeout: 400
                }
            }
        );
        assert_eq!(
            Setting::parse("500:auto"),
            Ok(Setting::Token {
                token: 500,
                knet: KnetPing::Auto
            })
        );
        assert_eq!(
            Setting::parse("300:150:900"),
            Ok(Setting::Token {
                token: 300,
                knet: KnetPing::Ms {
                    interval: 150,
                    timeout: 900
                }
            })
        );
        for bad in ["0", "fast", "200:", "200:1", "200:0:400", "200:1:2:3", ""] {
            assert!(Setting::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Setting::fast(200).label(), "token 200 (ping 100/400)");
        assert_eq!(Setting::fast(200).slug(), "token200-ping100-400");
        assert_eq!(
            Setting::Default.effective_token(5),
            Duration::from_millis(4950)
        );
        assert_eq!(
            Setting::fast(200).effective_token(5),
            Duration::from_millis(200)
        );
        assert_eq!(
            Setting::Default.expected_decision(5),
            Duration::from_millis(4950 + 5940)
        );
        let t = Setting::fast(200).totem_lines();
        assert!(t.contains("token: 200\n") && t.contains("token_coefficient: 0\n"));
        assert!(t.contains("knet_ping_interval: 100\n") && t.contains("knet_ping_timeout: 400\n"));
        let auto = Setting::parse("500:auto").map(|s| s.totem_lines());
        assert_eq!(
            auto.as_deref(),
            Ok("  token: 500\n  token_coefficient: 0\n")
        );
        assert!(Setting::Default.totem_lines().is_empty());
    }
}
