//! `vigil bench soak`: does a healthy cluster stay together when it runs on one link
//! with every core busy? Every view change it counts is a false positive.
//!
//! `--nodes` daemons start on loopback (two UDP links, `[timers] profile = --profile`,
//! `cluster.fault_injection = true`, JSON logs to a file each). Once every daemon sees
//! every peer UP on both links and holds authority, each is told to drop link `b` to
//! and from every peer (`vigil fault block --link b`), and the bench waits until every
//! daemon sees link `b` DOWN to every peer. Then the soak starts: CPU burners (2 per
//! core, `vigil bench burn`) keep the machine busy for `--minutes`, and the daemons'
//! logs are read for what happened after the start: `view.installed`,
//! `node.self_fence`, `peer.down`, `node.stall` (with the worst `stall_us`),
//! `link.down` and `link.trouble` on link `a`; the heartbeat gaps come from the
//! daemons' status (`lltstat --json` field `heartbeat`). Progress every 30 s, a final
//! table, and the line `view changes: N` (distinct generations installed after the
//! start; the target is 0).
//!
//! With `--realtime` the daemons run with `[daemon] realtime = "fifo"` and
//! `mlockall = true`. It prints figures only: it exits 0 when it ran, whatever it
//! counted. Every daemon and burner is stopped on every way out (see
//! [`super::common`]).

use super::common::{self, catch_signals, log_path, pause, socket, stopped, ConfigSpec, Lab};
use super::cost::Profile;
use crate::Exit;
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_llt::LinkState;
use vigil_runtime::control::{DaemonStatus, Direction, FaultCmd};
use vigil_runtime::logging::wall_us;

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long the soak runs, in minutes, with every core busy.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub minutes: u64,
    /// Run for this many seconds instead of --minutes (for trying the bench out).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub seconds: Option<u64>,
    /// How many daemons to start.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(2..=64))]
    pub nodes: u8,
    /// The daemons' timer profile: default (heartbeat 100 ms) or fast (10 ms).
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Run the daemons with `realtime = "fifo"` and `mlockall = true` (needs root or
    /// CAP_SYS_NICE and CAP_IPC_LOCK; refused, the daemons warn and run without).
    #[arg(long)]
    pub realtime: bool,
    /// How many CPU burners to start; default two per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub burners: Option<u16>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub progress: u64,
    /// Keep the working directory (config and daemon logs) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// How long N daemons get to see each other and agree on a view, and then to see
/// link `b` down.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Notable log lines (other than stalls) kept for the report.
const MAX_NOTABLE: usize = 10_000;
/// Notable log lines printed: the first and the last half of this many.
const SHOW_NOTABLE: usize = 80;
/// The longest stalls printed with them.
const SHOW_STALLS: usize = 20;

pub fn run(args: SoakArgs) -> Exit {
    catch_signals();
    let exe = match crate::vigil_bin() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vigil bench soak: {e}");
            return Exit::Failure;
        }
    };
    match soak(&args, &exe) {
        Ok(()) if stopped() => {
            eprintln!("vigil bench soak: interrupted; every daemon and burner was stopped");
            Exit::Failure
        }
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("vigil bench soak: {e}");
            Exit::Failure
        }
    }
}

/// What one daemon's log said after the start of the soak.
#[derive(Debug, Clone, Default)]
struct Counts {
    views: Vec<u64>,
    self_fence: u64,
    peer_down: u64,
    link_down_a: u64,
    link_trouble_a: u64,
    link_down_other: u64,
    stalls: u64,
    worst_stall_us: u64,
    authority_lost: u64,
    races: u64,
}

/// One daemon's JSON log, read as it grows.
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    /// The complete lines written since the last call.
    fn new_lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let Some(last) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        done.lines().map(str::to_string).collect()
    }
}

/// Everything read from the logs so far.
struct Logs {
    tails: Vec<LogTail>,
    counts: Vec<Counts>,
    /// Warnings, errors, view and link events other than stalls: time and line.
    notable: Vec<(u64, String)>,
    notable_dropped: usize,
    /// The longest stalls: length, time and line.
    worst_stalls: Vec<(u64, u64, String)>,
    since_us: u64,
}

impl Logs {
    fn new(dir: &Path, n: u8, since_us: u64) -> Logs {
        Logs {
            tails: (0..n)
                .map(|i| LogTail {
                    path: log_path(dir, i),
                    offset: 0,
                    partial: String::new(),
                })
                .collect(),
            counts: vec![Counts::default(); usize::from(n)],
            notable: Vec::new(),
            notable_dropped: 0,
            worst_stalls: Vec::new(),
            since_us,
        }
    }

    /// Reads what the daemons logged since the last call, counting the events that
    /// happened in `since_us..=until_us`.
    fn read(&mut self, until_us: u64) {
        for (i, tail) in self.tails.iter_mut().enumerate() {
            for line in tail.new_lines() {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let ts = v.get("ts_us").and_then(Value::as_u64).unwrap_or(0);
                if ts < self.since_us || ts > until_us {
                    continue;
                }
                let event = v.get("event").and_then(Value::as_str).unwrap_or("");
                let link = v.get("link").and_then(Value::as_str).unwrap_or("");
                let c = &mut self.counts[i];
                let notable = match event {
                    "view.installed" => {
                        c.views
                            .push(v.get("generation").and_then(Value::as_u64).unwrap_or(0));
                        true
                    }
                    "node.self_fence" => {
                        c.self_fence += 1;
                        true
                    }
                    "peer.down" => {
                        c.peer_down += 1;
                        true
                    }
                    "link.down" if link == "a" => {
                        c.link_down_a += 1;
                        true
                    }
                    "link.down" => {
                        c.link_down_other += 1;
                        true
                    }
                    "link.trouble" if link == "a" => {
                        c.link_trouble_a += 1;
                        true
                    }
                    "node.stall" => {
                        c.stalls += 1;
                        let us = v.get("stall_us").and_then(Value::as_u64).unwrap_or(0);
                        c.worst_stall_us = c.worst_stall_us.max(us);
                        let line = format!("n{i} {}", common::one_line(&line, 400));
                        self.worst_stalls.push((us, ts, line));
                        self.worst_stalls.sort_by_key(|s| std::cmp::Reverse(s.0));
                        self.worst_stalls.truncate(SHOW_STALLS);
                        false
                    }
                    "authority.lost" => {
                        c.authority_lost += 1;
                        true
                    }
                    "race.started" => {
                        c.races += 1;
                        true
                    }
                    _ => matches!(
                        v.get("level").and_then(Value::as_str),
                        Some("WARN" | "ERROR")
                    ),
                };
                if notable {
                    if self.notable.len() < MAX_NOTABLE {
                        self.notable
                            .push((ts, format!("n{i} {}", common::one_line(&line, 400))));
                    } else {
                        self.notable_dropped += 1;
                    }
                }
            }
        }
    }

    /// Distinct generations installed after the start, over all daemons.
    fn view_changes(&self) -> usize {
        let mut g: Vec<u64> = self.counts.iter().flat_map(|c| c.views.clone()).collect();
        g.sort_unstable();
        g.dedup();
        g.len()
    }

    fn total(&self, f: fn(&Counts) -> u64) -> u64 {
        self.counts.iter().map(f).sum()
    }
}

/// The heartbeat gaps of one daemon, from its status.
#[derive(Debug, Clone, Copy, Default)]
struct Gaps {
    p99_us: u64,
    max_us: u64,
    window: u64,
}

fn gaps(s: &DaemonStatus) -> Gaps {
    let h = &s.node.llt.heartbeat;
    Gaps {
        p99_us: h.p99_us,
        max_us: h.max_us,
        window: h.window,
    }
}

/// What is known of one daemon at the end.
#[derive(Debug, Clone, Default)]
struct NodeEnd {
    /// The last heartbeat gaps read, and the worst p99 of any reading.
    gaps: Option<Gaps>,
    worst_p99_us: u64,
    /// The daemon exited: its status and last log line.
    exited: Option<String>,
    realtime: String,
}

fn soak(args: &SoakArgs, exe: &Path) -> Result<(), String> {
    let n = args.nodes;
    let seconds = args.seconds.unwrap_or(args.minutes * 60);
    let cores = common::cores();
    let burners = args.burners.map_or(2 * cores, usize::from);
    println!(
        "vigil bench soak: {n} daemons on 127.0.0.1, timer profile {} (heartbeat {} ms){}, \
         link b blocked everywhere, {burners} CPU burners on {cores} cores, {} s",
        args.profile.name(),
        args.profile.heartbeat().as_millis(),
        if args.realtime {
            ", realtime fifo + mlockall"
        } else {
            ""
        },
        seconds
    );
    let dir = std::env::temp_dir().join(format!("vigil-bench-soak-{}", std::process::id()));
    let mut lab = Lab::create(dir.clone(), args.keep)?;
    let config = dir.join("cluster.toml");
    let spec = ConfigSpec {
        comment: format!(
            "# written by `vigil bench soak` ({n} nodes, profile {}{})\n",
            args.profile.name(),
            if args.realtime { ", realtime" } else { "" }
        ),
        name: "soak",
        id: 4245,
        cluster_extra: "# `vigil fault block --link b` takes link b away (testing only).\n\
                        fault_injection = true\n"
            .into(),
        timers: format!("profile = \"{}\"\n", args.profile.name()),
        daemon: args
            .realtime
            .then(|| "realtime = \"fifo\"\nmlockall = true\n".into()),
    };
    std::fs::write(&config, common::config_text(&dir, n, &spec)?)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    println!("config {}", config.display());
    lab.start_daemons(exe, &config, n)?;
    let settled = lab.wait_until(SETTLE_TIMEOUT, "settled", || {
        each_status(&dir, n, common::not_settled)
    })?;
    println!(
        "every daemon sees every peer UP on both links and holds authority after {} ms",
        settled.as_millis()
    );

    for i in 0..n {
        let cmd = FaultCmd::Block {
            peers: Vec::new(),
            links: vec!["b".into()],
            direction: Direction::Both,
        };
        let answer = crate::fault::send(&socket(&dir, i), cmd)
            .map_err(|e| format!("vigil fault block --link b on n{i}: {e}"))?;
        if i == 0 {
            println!(
                "n0: vigil fault block --link b: {}",
                answer.replace('\n', "; ")
            );
        }
    }
    let down = lab.wait_until(SETTLE_TIMEOUT, "down to link a", || {
        each_status(&dir, n, only_link_a)
    })?;
    println!(
        "every daemon sees link b DOWN and link a UP to every peer, with authority, {} ms \
         after the block",
        down.as_millis()
    );

    let since_us = wall_us();
    let t0 = Instant::now();
    lab.start_burners(exe, burners)?;
    println!(
        "soak started with {burners} burners; progress every {} s",
        args.progress
    );
    let mut logs = Logs::new(&dir, n, since_us);
    let mut ends = vec![NodeEnd::default(); usize::from(n)];
    let until = t0 + Duration::from_secs(seconds);
    let mut next_progress = t0 + Duration::from_secs(args.progress);
    while Instant::now() < until && !stopped() {
        note_exits(&mut lab, &mut ends);
        let now = Instant::now();
        if now >= next_progress {
            next_progress += Duration::from_secs(args.progress);
            read_gaps(&dir, &mut ends);
            logs.read(wall_us());
            println!("{}", progress(t0.elapsed(), &logs, &ends));
        }
        let wake = next_progress.min(until);
        if pause(Duration::from_millis(100).min(wake.saturating_duration_since(now))).is_err() {
            break;
        }
    }
    // Read while still loaded (the percentiles are over the last 4096 rounds).
    let until_us = wall_us();
    let ran = t0.elapsed();
    note_exits(&mut lab, &mut ends);
    read_gaps(&dir, &mut ends);
    lab.stop_burners();
    // The daemons write their last lines of the soak without the load.
    std::thread::sleep(Duration::from_millis(200));
    logs.read(until_us);
    println!();
    print!("{}", report(&logs, &ends, ran, args));
    println!("view changes: {}", logs.view_changes());
    drop(lab);
    Ok(())
}

/// Asks every daemon for its status and collects `why` of each, or why it did not
/// answer.
fn each_status(dir: &Path, n: u8, why: fn(&DaemonStatus) -> Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        match common::status(&socket(dir, i)) {
            Ok(s) => out.extend(why(&s)),
            Err(e) => out.push(format!("n{i}: {e}")),
        }
    }
    out
}

/// Why the daemon is not yet running on link `a` alone: every peer UP, link `a` UP
/// and link `b` DOWN to it, authority held.
fn only_link_a(s: &DaemonStatus) -> Vec<String> {
    common::not_settled_with(s, |link| {
        if link == "b" {
            LinkState::Down
        } else {
            LinkState::Up
        }
    })
}

fn note_exits(lab: &mut Lab, ends: &mut [NodeEnd]) {
    for (i, c) in lab.daemons.iter_mut().enumerate() {
        if ends[i].exited.is_some() {
            continue;
        }
        if let Ok(Some(status)) = c.try_wait() {
            let i8 = u8::try_from(i).unwrap_or(u8::MAX);
            let last = common::last_log_line(&log_path(&lab.dir, i8));
            println!("daemon n{i} exited ({status}): {last}");
            ends[i].exited = Some(format!("{status}"));
        }
    }
}

fn read_gaps(dir: &Path, ends: &mut [NodeEnd]) {
    for (i, end) in ends.iter_mut().enumerate() {
        if end.exited.is_some() {
            continue;
        }
        let i8 = u8::try_from(i).unwrap_or(u8::MAX);
        if let Ok(s) = common::status(&socket(dir, i8)) {
            let g = gaps(&s);
            end.worst_p99_us = end.worst_p99_us.max(g.p99_us);
            end.gaps = Some(g);
            end.realtime = s.realtime.clone();
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn progress(elapsed: Duration, logs: &Logs, ends: &[NodeEnd]) -> String {
    let alive = ends.iter().filter(|e| e.exited.is_none()).count();
    let worst_stall = logs
        .counts
        .iter()
        .map(|c| c.worst_stall_us)
        .max()
        .unwrap_or(0);
    let worst_p99 = ends.iter().map(|e| e.worst_p99_us).max().unwrap_or(0);
    let worst_max = ends
        .iter()
        .filter_map(|e| e.gaps.map(|g| g.max_us))
        .max()
        .unwrap_or(0);
    format!(
        "[{:>5} s] view changes {}, peer.down {}, link.down a {}, link.trouble a {}, \
         self-fence {}, stalls {} (worst {} ms), heartbeat gap p99 {} ms max {} ms, \
         daemons running {alive}/{}",
        elapsed.as_secs(),
        logs.view_changes(),
        logs.total(|c| c.peer_down),
        logs.total(|c| c.link_down_a),
        logs.total(|c| c.link_trouble_a),
        logs.total(|c| c.self_fence),
        logs.total(|c| c.stalls),
        ms(worst_stall),
        ms(worst_p99),
        ms(worst_max),
        ends.len()
    )
}

fn report(logs: &Logs, ends: &[NodeEnd], ran: Duration, args: &SoakArgs) -> String {
    let profile = args.profile;
    let mut out = format!(
        "soak ran {:.1} s (profile {}, heartbeat {} ms)\n",
        ran.as_secs_f64(),
        profile.name(),
        profile.heartbeat().as_millis()
    );
    let _ = writeln!(
        out,
        "{:<5} {:>7} {:>9} {:>11} {:>14} {:>10} {:>6} {:>15} {:>11} {:>17} {:>10}  state",
        "node",
        "views",
        "peer.down",
        "link.down a",
        "link.trouble a",
        "self-fence",
        "stalls",
        "worst stall ms",
        "hb p99 ms",
        "hb p99 worst ms",
        "hb max ms",
    );
    for (i, (c, e)) in logs.counts.iter().zip(ends).enumerate() {
        let (p99, max) = e.gaps.map_or(("n/a".into(), "n/a".into()), |g| {
            (ms(g.p99_us), ms(g.max_us))
        });
        let state = match &e.exited {
            Some(s) => format!("exited ({s})"),
            None if e.realtime.is_empty() => "running".into(),
            None => format!("running, realtime {}", e.realtime),
        };
        let _ = writeln!(
            out,
            "n{:<4} {:>7} {:>9} {:>11} {:>14} {:>10} {:>6} {:>15} {:>11} {:>17} {:>10}  {}",
            i,
            c.views.len(),
            c.peer_down,
            c.link_down_a,
            c.link_trouble_a,
            c.self_fence,
            c.stalls,
            ms(c.worst_stall_us),
            p99,
            ms(e.worst_p99_us),
            max,
            state
        );
    }
    let window = ends.iter().filter_map(|e| e.gaps.map(|g| g.window)).max();
    let _ = writeln!(
        out,
        "(views: view.installed lines after the start; hb: gaps between heartbeat rounds, \
         p99 over the last {} rounds at the end, worst p99 of the readings every {} s, max \
         since the daemon started; stalls: node.stall lines)",
        window.unwrap_or(4096),
        args.progress
    );
    let others = logs.total(|c| c.link_down_other);
    let races = logs.total(|c| c.races);
    let lost = logs.total(|c| c.authority_lost);
    let _ = writeln!(
        out,
        "also: race.started {races}, authority.lost {lost}, link.down on other links {others}"
    );
    let bad = logs.view_changes() > 0
        || logs.total(|c| c.peer_down) > 0
        || logs.total(|c| c.self_fence) > 0
        || logs.total(|c| c.link_down_a) > 0
        || ends.iter().any(|e| e.exited.is_some());
    if bad {
        let mut lines = logs.notable.clone();
        lines.sort_by_key(|(ts, _)| *ts);
        let total = lines.len() + logs.notable_dropped;
        // The cause is usually among the first lines, the outcome among the last.
        let mut shown: Vec<(u64, String)> = if lines.len() > SHOW_NOTABLE {
            let (half, len) = (SHOW_NOTABLE / 2, lines.len());
            let gap = (
                lines[half - 1].0,
                format!("  … {} more lines …", len - 2 * half),
            );
            let mut v = lines[..half].to_vec();
            v.push(gap);
            v.extend_from_slice(&lines[len - half..]);
            v
        } else {
            lines
        };
        let stalls = logs.worst_stalls.len();
        shown.extend(logs.worst_stalls.iter().map(|(_, ts, l)| (*ts, l.clone())));
        shown.sort_by_key(|(ts, _)| *ts);
        let _ = writeln!(
            out,
            "\nlog lines after the start: {} of {total} warnings, errors, view and link \
             events (the first and the last when there are more), with the {stalls} longest \
             stalls:",
            total.min(SHOW_NOTABLE),
        );
        for (_, l) in &shown {
            let _ = writeln!(out, "  {l}");
        }
    }
    let _ = writeln!(
        out,
        "distinct generations installed after the start: {:?}",
        {
            let mut g: Vec<u64> = logs.counts.iter().flat_map(|c| c.views.clone()).collect();
            g.sort_unstable();
            g.dedup();
            g
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_counted_after_the_start_only() {
        let dir = std::env::temp_dir().join(format!("vigil-soak-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lines = [
            r#"{"level":"INFO","event":"view.installed","ts_us":5,"generation":1}"#,
            r#"{"level":"INFO","event":"view.installed","ts_us":20,"generation":2}"#,
            r#"{"level":"WARN","event":"link.down","ts_us":21,"link":"a"}"#,
            r#"{"level":"WARN","event":"link.down","ts_us":22,"link":"b"}"#,
            r#"{"level":"WARN","event":"node.stall","ts_us":23,"stall_us":7000}"#,
            r#"{"level":"WARN","event":"node.stall","ts_us":24,"stall_us":9000}"#,
            "not json",
        ];
        std::fs::write(log_path(&dir, 0), lines.join("\n") + "\n").expect("write");
        std::fs::write(log_path(&dir, 1), r#"{"event":"peer.down","ts_us":30}"#).expect("write");
        let mut logs = Logs::new(&dir, 2, 10);
        logs.read(100);
        let c = &logs.counts[0];
        assert_eq!(c.views, vec![2]);
        assert_eq!((c.link_down_a, c.link_down_other), (1, 1));
        assert_eq!((c.stalls, c.worst_stall_us), (2, 9000));
        // n1's line has no newline yet: not read until it is complete.
        assert_eq!(logs.counts[1].peer_down, 0);
        std::fs::write(
            log_path(&dir, 1),
            "{\"event\":\"peer.down\",\"ts_us\":30}\n",
        )
        .expect("write");
        logs.tails[1].offset = 0;
        logs.tails[1].partial.clear();
        logs.read(100);
        assert_eq!(logs.counts[1].peer_down, 1);
        assert_eq!(logs.view_changes(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_long_report_shows_the_first_and_last_events_and_the_longest_stalls() {
        let dir = std::env::temp_dir().join(format!("vigil-soak-test2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut text = String::new();
        for k in 0..200u64 {
            text.push_str(&format!(
                "{{\"level\":\"WARN\",\"event\":\"link.trouble\",\"ts_us\":{},\"link\":\"a\",\"k\":\"t{k}\"}}\n",
                100 + 2 * k
            ));
            text.push_str(&format!(
                "{{\"level\":\"WARN\",\"event\":\"node.stall\",\"ts_us\":{},\"stall_us\":{}}}\n",
                101 + 2 * k,
                1000 + k
            ));
        }
        text.push_str("{\"level\":\"ERROR\",\"event\":\"node.self_fence\",\"ts_us\":999}\n");
        std::fs::write(log_path(&dir, 0), text).expect("write");
        let mut logs = Logs::new(&dir, 1, 0);
        logs.read(10_000);
        let args = SoakArgs {
            minutes: 1,
            seconds: None,
            nodes: 1,
            profile: Profile::Default,
            realtime: false,
            burners: None,
            progress: 30,
            keep: false,
        };
        let ends = vec![NodeEnd::default()];
        let r = report(&logs, &ends, Duration::from_secs(1), &args);
        assert!(
            r.contains("\"k\":\"t0\"") && r.contains("\"k\":\"t39\""),
            "{r}"
        );
        assert!(!r.contains("\"k\":\"t40\""), "{r}");
        assert!(r.contains("… 121 more lines …"), "{r}");
        assert!(
            r.contains("node.self_fence") && r.contains("\"k\":\"t199\""),
            "{r}"
        );
        assert!(
            r.contains("\"stall_us\":1199") && r.contains("\"stall_us\":1180"),
            "{r}"
        );
        assert!(!r.contains("\"stall_us\":1179"), "{r}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
