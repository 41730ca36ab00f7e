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
//! this process itself be killed (see [`super::common`]).

use super::common::{
    self, catch_signals, one_line, pause, query, socket, stopped, ConfigSpec, Lab, START_TIMEOUT,
};
use crate::Exit;
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
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

pub fn run(args: JitterArgs) -> Exit {
    catch_signals();
    let exe = match crate::vigil_bin() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vigil bench jitter: {e}");
            return Exit::Failure;
        }
    };
    let cores = common::cores();
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
        return Exit::Failure;
    }
    if ok {
        Exit::Ok
    } else {
        Exit::Failure
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

fn measure(args: &JitterArgs, run: Run, exe: &Path, burners: usize) -> Result<Vec<Row>, String> {
    let n = args.nodes;
    let dir = std::env::temp_dir().join(format!(
        "vigil-bench-jitter-{}-{}",
        std::process::id(),
        run.tag()
    ));
    let mut lab = Lab::create(dir.clone(), args.keep)?;
    let config = dir.join("cluster.toml");
    std::fs::write(&config, config_text(&dir, n, args.heartbeat_ms, run)?)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    println!("\n== run: {} (config {})", run.label(), config.display());

    // Load first: the daemons start, and every heartbeat they send, on busy cores.
    lab.start_burners(exe, burners)?;
    lab.start_daemons(exe, &config, n)?;

    // Up: every control socket answers.
    let t0 = Instant::now();
    let mut pending: Vec<u8> = (0..n).collect();
    while !pending.is_empty() {
        lab.check_alive("before answering")?;
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
        lab.check_alive("during the run")?;
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

/// The cluster config of one run: `n` nodes on 127.0.0.1 with high-priority UDP links
/// `a` and `b`, every timer scaled from the heartbeat `h` ms so that
/// `heartbeat <= heartbeat_lowpri < peer_trouble < peer_inactive`,
/// `race_timeout > heartbeat` and `3 × heartbeat <= lease <= peer_inactive`.
fn config_text(dir: &Path, n: u8, h: u64, run: Run) -> Result<String, String> {
    let spec = ConfigSpec {
        comment: format!("# written by `vigil bench jitter` ({})\n", run.label()),
        name: "jitter",
        id: 4243,
        cluster_extra:
            "# A node starved by the burners must not fence itself in the middle of the\n\
                        # measurement: this bench is about sending, not about verdicts.\n\
                        fencing = \"disabled\"\n"
                .into(),
        timers: format!(
            "heartbeat = {h}\nheartbeat_lowpri = {lowpri}\npeer_trouble = {trouble}\n\
             peer_inactive = {inactive}\nrace_timeout = {race}\nlease = {lease}\n",
            lowpri = 2 * h,
            trouble = 8 * h,
            inactive = 16 * h,
            race = 10 * h,
            lease = 8 * h,
        ),
        daemon: (run == Run::Realtime)
            .then(|| "realtime = \"fifo\"\nrt_priority = 50\nmlockall = true\n".into()),
    };
    common::config_text(dir, n, &spec)
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
