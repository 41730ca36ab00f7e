//! `vigil bench cost`: what heartbeating costs a node, for several cluster sizes.
//!
//! Live part: for each `--sizes` N, N real daemons on loopback (two UDP links each,
//! `[timers] profile = --profile`). Once every daemon sees every peer UP on both links
//! and holds authority, the bench samples each daemon, waits `--seconds` and samples
//! again: CPU time (`utime + stime` from `/proc/PID/stat`, in clock ticks of
//! `sysconf(_SC_CLK_TCK)`; and, finer, the on-CPU nanoseconds of every thread from
//! `/proc/PID/task/*/schedstat`) and the link counters `vigil lltstat --json` prints
//! (`links[].bytes_out`, `frames_out`, `bytes_in`, `frames_in`). One row per size.
//!
//! In-process part: the cost of handling one frame in the node core, without sockets.
//! A whole cluster of `vigil::node::Node`s (with the llt and fence configs the daemon's
//! loader makes of the same profile) runs in virtual time until every node is a
//! settled member; node n0 is then cloned, the cluster runs on while every input n0
//! takes (frames from all its peers, and its timeouts) is recorded, and the recorded
//! stream is replayed into the clone, timing each run of consecutive frames with
//! `std::time::Instant`. The frames are fresh to the clone (none is a replay), and the
//! clone must end in exactly the state the original reached.
//!
//! It prints figures only and asserts nothing about times.

use super::common::{self, catch_signals, pause, socket, stopped, ConfigSpec, Lab};
use crate::Exit;
use clap::{Args, ValueEnum};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};
use vigil::node::{Node, Output};
use vigil_fence::FenceConfig;
use vigil_llt::types::{Generation, Incarnation, Instant as VInstant, LinkAddr, LinkId, NodeId};
use vigil_llt::{LinkState, LltConfig};

#[derive(Args, Debug)]
pub struct CostArgs {
    /// Cluster sizes to run live, comma-separated (each 2..=64).
    #[arg(long, value_delimiter = ',', default_value = "3,9,17",
          value_parser = clap::value_parser!(u8).range(2..=64))]
    pub sizes: Vec<u8>,
    /// How long each size is measured, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// The daemons' timer profile: default (heartbeat 100 ms) or fast (10 ms).
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    pub profile: Profile,
    /// Frames to time in the in-process part, per cluster size; 0 skips that part.
    #[arg(long, default_value_t = 200_000,
          value_parser = clap::value_parser!(u32).range(0..=5_000_000))]
    pub frames: u32,
    /// Cluster sizes of the in-process part, comma-separated (each 2..=64).
    #[arg(long = "frame-sizes", value_delimiter = ',', default_value = "2,17,64",
          value_parser = clap::value_parser!(u8).range(2..=64))]
    pub frame_sizes: Vec<u8>,
    /// Only the in-process part: start no daemons.
    #[arg(long = "in-process-only")]
    pub in_process_only: bool,
    /// Keep the working directories (configs and daemon logs) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// `timers.profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    Default,
    Fast,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Fast => "fast",
        }
    }

    pub fn heartbeat(self) -> Duration {
        match self {
            Profile::Default => Duration::from_millis(100),
            Profile::Fast => Duration::from_millis(10),
        }
    }
}

/// How long N daemons get to see each other and agree on a view.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: CostArgs) -> Exit {
    catch_signals();
    let exe = match crate::vigil_bin() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vigil bench cost: {e}");
            return Exit::Failure;
        }
    };
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let Ok(tick) = u64::try_from(tick) else {
        eprintln!("vigil bench cost: sysconf(_SC_CLK_TCK) failed");
        return Exit::Failure;
    };
    if tick == 0 {
        eprintln!("vigil bench cost: sysconf(_SC_CLK_TCK) returned 0");
        return Exit::Failure;
    }
    let mut ok = true;
    if !args.in_process_only {
        println!(
            "vigil bench cost: daemons on 127.0.0.1 (two UDP links each), timer profile {} \
             (heartbeat {} ms), {} s per size, {} cores",
            args.profile.name(),
            args.profile.heartbeat().as_millis(),
            args.seconds,
            common::cores()
        );
        println!(
            "CPU %: utime+stime from /proc/PID/stat in clock ticks of 1/{tick} s \
             (sysconf(_SC_CLK_TCK) = {tick}; one tick over {} s is {:.3} %), and on-CPU ns \
             summed over /proc/PID/task/*/schedstat",
            args.seconds,
            100.0 / (tick as f64 * args.seconds as f64)
        );
        let mut rows = Vec::new();
        for &n in &args.sizes {
            if stopped() {
                break;
            }
            match measure(&args, &exe, n, tick) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    eprintln!("vigil bench cost: {n} nodes: {e}");
                    ok = false;
                }
            }
        }
        println!();
        print!("{}", live_table(&rows));
    }
    if args.frames > 0 && !stopped() {
        println!();
        println!(
            "In-process frame cost: a cluster of vigil::node::Node in virtual time (the \
             daemons' configs: profile {}, two high-priority links, no MAC key); n0's inputs \
             recorded once the cluster settled, then {} frames replayed into a clone of n0, \
             timed per run of consecutive frames (between two of its timeouts) with \
             std::time::Instant",
            args.profile.name(),
            args.frames
        );
        println!(
            "std::time::Instant::now() costs about {:.0} ns here; each run is bracketed by two",
            clock_overhead_ns()
        );
        let mut rows = Vec::new();
        for &n in &args.frame_sizes {
            if stopped() {
                break;
            }
            let t0 = Instant::now();
            match frame_cost(n, args.frames as usize, args.profile) {
                Ok(r) => {
                    println!(
                        "  {n} nodes: recorded and replayed in {:.1} s",
                        t0.elapsed().as_secs_f64()
                    );
                    rows.push(r);
                }
                Err(e) => {
                    eprintln!("vigil bench cost: in-process, {n} nodes: {e}");
                    ok = false;
                }
            }
        }
        println!();
        print!("{}", frame_table(&rows));
    }
    if stopped() {
        eprintln!("vigil bench cost: interrupted; every daemon was stopped");
        return Exit::Failure;
    }
    if ok {
        Exit::Ok
    } else {
        Exit::Failure
    }
}

// ---------------------------------------------------------------------------------
// Live: real daemons.

/// One daemon at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    ticks: u64,
    sched_ns: Option<u64>,
    bytes_out: u64,
    frames_out: u64,
    data_out: u64,
    bytes_in: u64,
    frames_in: u64,
}

/// What one daemon did between two samples, per second.
#[derive(Debug, Clone, Copy)]
struct Rates {
    cpu_pct: f64,
    cpu_ns_pct: Option<f64>,
    bytes_out: f64,
    frames_out: f64,
    data_out: f64,
    bytes_in: f64,
    frames_in: f64,
}

impl Rates {
    fn between(a: &Sample, b: &Sample, tick: u64) -> Rates {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        Rates {
            cpu_pct: 100.0 * per_s(a.ticks, b.ticks) / tick as f64,
            cpu_ns_pct: match (a.sched_ns, b.sched_ns) {
                (Some(x), Some(y)) => Some(100.0 * per_s(x, y) / 1e9),
                _ => None,
            },
            bytes_out: per_s(a.bytes_out, b.bytes_out),
            frames_out: per_s(a.frames_out, b.frames_out),
            data_out: per_s(a.data_out, b.data_out),
            bytes_in: per_s(a.bytes_in, b.bytes_in),
            frames_in: per_s(a.frames_in, b.frames_in),
        }
    }
}

/// One line of the live table.
#[derive(Debug, Clone)]
struct SizeRow {
    nodes: u8,
    rates: Vec<Rates>,
    /// Heartbeat frames a node should send per second: peers × links / interval.
    expected_frames: f64,
    settle_ms: u128,
    /// Something that went wrong during the window (a view change, a lost peer).
    note: String,
}

/// `(utime + stime)` in clock ticks, from `/proc/PID/stat`.
fn proc_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name is in parentheses and may hold spaces: count from after it.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| format!("{path}: no ')' after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let field = |k: usize| -> Result<u64, String> {
        fields
            .get(k - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: field {k} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// On-CPU nanoseconds of every thread of `pid` (first field of each
/// `/proc/PID/task/TID/schedstat`); `None` when the kernel does not keep them.
fn proc_sched_ns(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0u64;
    for entry in dir.flatten() {
        sum += common::schedstat_ns(&entry.path().join("schedstat"))?;
    }
    Some(sum)
}

fn sample(pid: u32, sock: &Path) -> Result<Sample, String> {
    let s = common::status(sock)?;
    let links = &s.node.llt.links;
    let sum = |f: fn(&vigil_llt::stats::LinkStats) -> u64| -> u64 {
        links.iter().map(|l| f(&l.stats)).sum()
    };
    Ok(Sample {
        at: Instant::now(),
        ticks: proc_ticks(pid)?,
        sched_ns: proc_sched_ns(pid),
        bytes_out: sum(|s| s.bytes_out),
        frames_out: sum(|s| s.frames_out),
        data_out: sum(|s| s.data_out),
        bytes_in: sum(|s| s.bytes_in),
        frames_in: sum(|s| s.frames_in),
    })
}

fn measure(args: &CostArgs, exe: &Path, n: u8, tick: u64) -> Result<SizeRow, String> {
    let dir = std::env::temp_dir().join(format!("vigil-bench-cost-{}-{n}", std::process::id()));
    let mut lab = Lab::create(dir.clone(), args.keep)?;
    let config = dir.join("cluster.toml");
    let spec = ConfigSpec {
        comment: format!(
            "# written by `vigil bench cost` ({n} nodes, profile {})\n",
            args.profile.name()
        ),
        name: "cost",
        id: 4244,
        cluster_extra: String::new(),
        timers: format!("profile = \"{}\"\n", args.profile.name()),
        daemon: None,
    };
    std::fs::write(&config, common::config_text(&dir, n, &spec)?)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    println!("\n== {n} nodes (config {})", config.display());
    lab.start_daemons(exe, &config, n)?;

    let settled = lab.wait_until(SETTLE_TIMEOUT, "settled", || pending(&dir, n))?;
    println!(
        "every daemon sees every peer UP on both links and holds authority after {} ms; \
         measuring for {} s",
        settled.as_millis(),
        args.seconds
    );
    let first_generations = generations(&dir, n);
    let pids: Vec<u32> = lab.daemons.iter().map(std::process::Child::id).collect();
    let start: Vec<Sample> = (0..n)
        .map(|i| sample(pids[usize::from(i)], &socket(&dir, i)))
        .collect::<Result<_, _>>()?;
    let until = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < until {
        lab.check_alive("during the measurement")?;
        pause(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())))?;
    }
    let end: Vec<Sample> = (0..n)
        .map(|i| sample(pids[usize::from(i)], &socket(&dir, i)))
        .collect::<Result<_, _>>()?;
    let mut note = String::new();
    let still = pending(&dir, n);
    if !still.is_empty() {
        note = format!("not settled at the end: {}", still.join("; "));
    } else if generations(&dir, n) != first_generations {
        note = "the view changed during the measurement".into();
    }
    drop(lab);
    let hb = args.profile.heartbeat().as_secs_f64();
    Ok(SizeRow {
        nodes: n,
        rates: start
            .iter()
            .zip(&end)
            .map(|(a, b)| Rates::between(a, b, tick))
            .collect(),
        expected_frames: f64::from(n - 1) * 2.0 / hb,
        settle_ms: settled.as_millis(),
        note,
    })
}

/// Why the cluster in `dir` is not settled yet, one reason per missing fact.
fn pending(dir: &Path, n: u8) -> Vec<String> {
    let mut why = Vec::new();
    for i in 0..n {
        match common::status(&socket(dir, i)) {
            Ok(s) => why.extend(common::not_settled(&s)),
            Err(e) => why.push(format!("n{i}: {e}")),
        }
    }
    why
}

/// The generation each daemon has installed, to notice a view change.
fn generations(dir: &Path, n: u8) -> Vec<Option<u64>> {
    (0..n)
        .map(|i| {
            common::status(&socket(dir, i))
                .ok()
                .and_then(|s| s.node.fence.installed.map(|v| v.generation.0))
        })
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = v.fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

fn max(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, f64::max)
}

fn live_table(rows: &[SizeRow]) -> String {
    let mut out = format!(
        "{:>5} {:>9} {:>8} {:>12} {:>11} {:>11} {:>9} {:>11} {:>10} {:>9} {:>8} {:>10} {:>8}\n",
        "nodes",
        "cpu% mean",
        "cpu% max",
        "cpu%ns mean",
        "cpu%ns max",
        "sent B/s",
        "frames/s",
        "expected/s",
        "data fr/s",
        "recv B/s",
        "B/frame",
        "recv fr/s",
        "settle ms"
    );
    for r in rows {
        let rates = &r.rates;
        let ns: Vec<f64> = rates.iter().filter_map(|x| x.cpu_ns_pct).collect();
        let (ns_mean, ns_max) = if ns.len() == rates.len() {
            (
                format!("{:.3}", mean(ns.iter().copied())),
                format!("{:.3}", max(ns.iter().copied())),
            )
        } else {
            ("n/a".into(), "n/a".into())
        };
        let bytes_out = mean(rates.iter().map(|x| x.bytes_out));
        let frames_out = mean(rates.iter().map(|x| x.frames_out));
        let per_frame = if frames_out > 0.0 {
            format!("{:.1}", bytes_out / frames_out)
        } else {
            "n/a".into()
        };
        let _ = writeln!(
            out,
            "{:>5} {:>9.3} {:>8.3} {:>12} {:>11} {:>11.0} {:>9.1} {:>11.0} {:>10.1} {:>9.0} {:>8} {:>10.1} {:>8}",
            r.nodes,
            mean(rates.iter().map(|x| x.cpu_pct)),
            max(rates.iter().map(|x| x.cpu_pct)),
            ns_mean,
            ns_max,
            bytes_out,
            frames_out,
            r.expected_frames,
            mean(rates.iter().map(|x| x.data_out)),
            mean(rates.iter().map(|x| x.bytes_in)),
            per_frame,
            mean(rates.iter().map(|x| x.frames_in)),
            r.settle_ms,
        );
        if !r.note.is_empty() {
            let _ = writeln!(out, "      note: {}", common::one_line(&r.note, 300));
        }
    }
    out.push_str(
        "(per node; cpu% = CPU time / wall time, 100 = one core; frames/s = all frames sent; \
         expected/s = heartbeat frames: peers × 2 links / interval; data fr/s = the data \
         frames among them (membership and fencing messages), lltstat's data_out)\n",
    );
    out
}

// ---------------------------------------------------------------------------------
// In-process: the node core in virtual time.

/// Two links, like the live daemons.
const LINKS: u8 = 2;
/// One-way delay of a simulated frame.
const WIRE_DELAY: Duration = Duration::from_micros(100);
/// Virtual time a cluster gets to settle.
const VIRTUAL_SETTLE: Duration = Duration::from_secs(60);
/// Bound on simulated events, so a cluster that never settles cannot spin forever.
const MAX_EVENTS: u64 = 2_000_000_000;

/// One input of the receiver, as it happened.
enum Input {
    Timeout(VInstant),
    Frame {
        at: VInstant,
        link: LinkId,
        from: LinkAddr,
        bytes: Vec<u8>,
    },
}

struct Flight {
    to: usize,
    from: usize,
    link: LinkId,
    bytes: Vec<u8>,
}

/// A whole cluster of nodes on perfect links, stepped one event at a time.
struct Cluster {
    nodes: Vec<Node>,
    /// Every node's next deadline, earliest first, and the same per node.
    deadlines: BTreeSet<(VInstant, usize)>,
    next: Vec<Option<VInstant>>,
    flights: BTreeMap<(VInstant, u64), Flight>,
    seq: u64,
    now: VInstant,
    events: u64,
}

fn addr(node: usize, link: LinkId) -> LinkAddr {
    let port = 20_000 + 2 * node as u16 + u16::from(link.0);
    LinkAddr::Udp(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
}

/// The llt and fence configs the daemons of an `n`-node cluster on `profile` would
/// run with, made by the daemon's own config loader.
fn core_configs(n: u8, profile: Profile) -> Result<(LltConfig, FenceConfig), String> {
    let spec = ConfigSpec {
        comment: String::new(),
        name: "cost",
        id: 4244,
        cluster_extra: String::new(),
        timers: format!("profile = \"{}\"\n", profile.name()),
        daemon: None,
    };
    let ports: Vec<u16> = (0..2 * u16::from(n)).map(|p| 20_000 + p).collect();
    // Keyed, like the live cluster: the MAC is part of the cost. The key is read
    // into the config, so its directory can go at once.
    let dir = std::env::temp_dir().join(format!("vigil-bench-cost-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let parsed = common::ensure_key(&dir).and_then(|()| {
        let text = common::render_config(&dir, &ports, &spec);
        vigil::config::ClusterConfig::parse(&text, &dir.join("vigil-bench-cost.toml"))
            .map_err(|e| format!("the in-process cluster config: {e}"))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = parsed?;
    Ok((cfg.llt_config(), cfg.fence_config()))
}

impl Cluster {
    fn new(n: u8, profile: Profile) -> Result<Cluster, String> {
        let ids: Vec<NodeId> = (0..n).map(NodeId).collect();
        let (llt, fence) = core_configs(n, profile)?;
        let now = VInstant::from_nanos(1_000_000_000);
        let nodes = ids
            .iter()
            .map(|&id| {
                Node::new(
                    llt.clone(),
                    fence.clone(),
                    id,
                    Incarnation(1000 + u64::from(id.0)),
                    now,
                    u64::from(id.0),
                    Generation(0),
                )
                .map_err(|e| format!("node {id:?} refused its config: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut c = Cluster {
            next: vec![None; nodes.len()],
            nodes,
            deadlines: BTreeSet::new(),
            flights: BTreeMap::new(),
            seq: 0,
            now,
            events: 0,
        };
        for i in 0..c.nodes.len() {
            c.drain(i);
            c.reschedule(i);
        }
        Ok(c)
    }

    fn reschedule(&mut self, i: usize) {
        if let Some(old) = self.next[i].take() {
            self.deadlines.remove(&(old, i));
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            self.next[i] = Some(t);
            self.deadlines.insert((t, i));
        }
    }

    fn drain(&mut self, i: usize) {
        let n = self.nodes.len();
        while let Some(o) = self.nodes[i].poll_output() {
            let Output::Transmit(t) = o else { continue };
            let due = self.now + WIRE_DELAY;
            match t.to {
                Some(p) => {
                    self.seq += 1;
                    self.flights.insert(
                        (due, self.seq),
                        Flight {
                            to: p.index(),
                            from: i,
                            link: t.link,
                            bytes: t.bytes,
                        },
                    );
                }
                None => {
                    for j in (0..n).filter(|&j| j != i) {
                        self.seq += 1;
                        self.flights.insert(
                            (due, self.seq),
                            Flight {
                                to: j,
                                from: i,
                                link: t.link,
                                bytes: t.bytes.clone(),
                            },
                        );
                    }
                }
            }
        }
    }

    /// When the next event happens.
    fn next_at(&self) -> Option<VInstant> {
        let d = self.deadlines.first().map(|&(t, _)| t);
        let f = self.flights.first_key_value().map(|(&(t, _), _)| t);
        match (d, f) {
            (Some(d), Some(f)) => Some(d.min(f)),
            (d, f) => d.or(f),
        }
    }

    /// Carries out the next event; node 0's input goes to `trace` when given.
    fn step(&mut self, trace: Option<&mut Vec<Input>>) -> Result<(), String> {
        self.events += 1;
        if self.events > MAX_EVENTS {
            return Err(format!("no result after {MAX_EVENTS} simulated events"));
        }
        let d = self.deadlines.first().copied();
        let f = self.flights.first_key_value().map(|(&k, _)| k);
        let frame_first = match (d, f) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((td, _)), Some((tf, _))) => tf <= td,
        };
        if frame_first {
            let Some((key, fl)) = self.flights.pop_first() else {
                return Err("lost a frame in flight".into());
            };
            self.now = self.now.max(key.0);
            let from = addr(fl.from, fl.link);
            let i = fl.to;
            self.nodes[i].handle_frame(self.now, fl.link, Some(from), &fl.bytes);
            if let (0, Some(trace)) = (i, trace) {
                trace.push(Input::Frame {
                    at: self.now,
                    link: fl.link,
                    from,
                    bytes: fl.bytes,
                });
            }
            self.drain(i);
            self.reschedule(i);
        } else {
            let Some((t, i)) = self.deadlines.pop_first() else {
                return Err("the simulated cluster went idle".into());
            };
            self.next[i] = None;
            self.now = self.now.max(t);
            self.nodes[i].handle_timeout(self.now);
            if let (0, Some(trace)) = (i, trace) {
                trace.push(Input::Timeout(self.now));
            }
            self.drain(i);
            self.reschedule(i);
        }
        Ok(())
    }

    fn run_until(&mut self, until: VInstant) -> Result<(), String> {
        while self.next_at().is_some_and(|t| t <= until) {
            self.step(None)?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Every node holds authority in a view of all nodes and sees every peer UP on
    /// every link.
    fn settled(&self) -> bool {
        let n = self.nodes.len();
        self.nodes.iter().all(|node| {
            node.authority()
                && node.view().is_some_and(|v| v.node_set().len() == n)
                && node.status().llt.peers.iter().all(|p| {
                    p.up && p.links.len() == usize::from(LINKS)
                        && p.links.iter().all(|l| l.state == LinkState::Up)
                })
        })
    }
}

/// One line of the in-process table.
#[derive(Debug, Clone)]
struct FrameRow {
    nodes: u8,
    frames: usize,
    accepted: u64,
    dropped: u64,
    mean_bytes: f64,
    mean_ns: f64,
    batches: usize,
    batch_p50_ns: f64,
    batch_p99_ns: f64,
    timeouts: usize,
    timeout_mean_ns: f64,
    replay_matches: bool,
}

fn accepted_and_dropped(node: &Node) -> (u64, u64) {
    node.status().llt.links.iter().fold((0, 0), |(a, d), l| {
        (a + l.stats.frames_accepted, d + l.stats.drops.total())
    })
}

fn frame_cost(n: u8, frames: usize, profile: Profile) -> Result<FrameRow, String> {
    let mut c = Cluster::new(n, profile)?;
    let start = c.now;
    loop {
        let t = c.now + Duration::from_millis(100);
        c.run_until(t)?;
        if c.settled() {
            break;
        }
        if let Some(i) = c.nodes.iter().position(Node::fenced) {
            return Err(format!("simulated node n{i} fenced itself while starting"));
        }
        if c.now.saturating_since(start) > VIRTUAL_SETTLE {
            return Err(format!(
                "the simulated cluster did not settle within {} s of virtual time",
                VIRTUAL_SETTLE.as_secs()
            ));
        }
        if stopped() {
            return Err("interrupted".into());
        }
    }
    // A second more, so that every link has counted its heartbeats and nothing is
    // left over from the start.
    let t = c.now + Duration::from_secs(1);
    c.run_until(t)?;
    if !c.settled() {
        return Err("the simulated cluster did not stay settled".into());
    }

    let receiver = c.nodes[0].clone();
    let mut trace = Vec::new();
    let mut recorded = 0usize;
    while recorded < frames {
        let before = trace.len();
        c.step(Some(&mut trace))?;
        if trace.len() > before && matches!(trace.last(), Some(Input::Frame { .. })) {
            recorded += 1;
        }
        if c.events % 1_000_000 == 0 && stopped() {
            return Err("interrupted".into());
        }
    }
    // The recording ends on n0's last input: the clone must reach this state.
    let original = c.nodes[0].status();
    if !c.settled() {
        return Err("the simulated cluster did not stay settled while recording".into());
    }
    let mean_bytes = mean(trace.iter().filter_map(|i| match i {
        Input::Frame { bytes, .. } => Some(bytes.len() as f64),
        Input::Timeout(_) => None,
    }));

    // Warm up on a prefix, then time the whole stream on a fresh clone.
    let mut warm = receiver.clone();
    let _ = replay(&mut warm, &trace[..trace.len().min(20_000)]);
    let mut node = receiver.clone();
    let (before_acc, before_drop) = accepted_and_dropped(&node);
    let timing = replay(&mut node, &trace);
    let (after_acc, after_drop) = accepted_and_dropped(&node);
    let replay_matches = node.status() == original;

    let mut batch = timing.batch_means.clone();
    batch.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if batch.is_empty() {
            return 0.0;
        }
        let k = ((batch.len() as f64 - 1.0) * p).round() as usize;
        batch[k.min(batch.len() - 1)]
    };
    Ok(FrameRow {
        nodes: n,
        frames: timing.frames,
        accepted: after_acc - before_acc,
        dropped: after_drop - before_drop,
        mean_bytes,
        mean_ns: timing.frame_ns as f64 / timing.frames.max(1) as f64,
        batches: batch.len(),
        batch_p50_ns: pct(0.50),
        batch_p99_ns: pct(0.99),
        timeouts: timing.timeouts,
        timeout_mean_ns: timing.timeout_ns as f64 / timing.timeouts.max(1) as f64,
        replay_matches,
    })
}

struct Timing {
    frames: usize,
    frame_ns: u128,
    batch_means: Vec<f64>,
    timeouts: usize,
    timeout_ns: u128,
}

/// Feeds `trace` to `node`, draining its outputs after every input (as the daemon
/// does), timing each run of consecutive frames and each timeout.
///
/// The frames' bytes are first laid end to end in one buffer, in the order they are
/// fed: recorded from a whole cluster, each sat in its own allocation scattered
/// among 63 other nodes' frames at 64 nodes, and the misses of reading them from
/// there (a daemon reads each from the receive buffer the kernel just wrote) were
/// counted as the node's cost.
fn replay(node: &mut Node, trace: &[Input]) -> Timing {
    let mut arena: Vec<u8> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(trace.len());
    for input in trace {
        if let Input::Frame { bytes, .. } = input {
            spans.push((arena.len(), arena.len() + bytes.len()));
            arena.extend_from_slice(bytes);
        } else {
            spans.push((0, 0));
        }
    }
    let mut t = Timing {
        frames: 0,
        frame_ns: 0,
        batch_means: Vec::new(),
        timeouts: 0,
        timeout_ns: 0,
    };
    let mut i = 0;
    while i < trace.len() {
        if let Input::Timeout(at) = &trace[i] {
            let t0 = Instant::now();
            node.handle_timeout(*at);
            while let Some(o) = node.poll_output() {
                std::hint::black_box(o);
            }
            t.timeout_ns += t0.elapsed().as_nanos();
            t.timeouts += 1;
            i += 1;
            continue;
        }
        let end = trace[i..]
            .iter()
            .position(|x| matches!(x, Input::Timeout(_)))
            .map_or(trace.len(), |k| i + k);
        let t0 = Instant::now();
        for (input, &(a, b)) in trace[i..end].iter().zip(&spans[i..end]) {
            if let Input::Frame { at, link, from, .. } = input {
                node.handle_frame(*at, *link, Some(*from), &arena[a..b]);
                while let Some(o) = node.poll_output() {
                    std::hint::black_box(o);
                }
            }
        }
        let ns = t0.elapsed().as_nanos();
        t.frame_ns += ns;
        t.frames += end - i;
        t.batch_means.push(ns as f64 / (end - i) as f64);
        i = end;
    }
    t
}

/// What one `std::time::Instant::now()` costs, in ns.
fn clock_overhead_ns() -> f64 {
    const CALLS: u32 = 1_000_000;
    let t0 = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(Instant::now());
    }
    t0.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn frame_table(rows: &[FrameRow]) -> String {
    let mut out = format!(
        "{:>5} {:>8} {:>9} {:>7} {:>8} {:>10} {:>8} {:>10} {:>10} {:>9} {:>13}  {}\n",
        "nodes",
        "frames",
        "accepted",
        "dropped",
        "B/frame",
        "ns/frame",
        "runs",
        "run p50 ns",
        "run p99 ns",
        "timeouts",
        "ns/timeout",
        "replay"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>5} {:>8} {:>9} {:>7} {:>8.1} {:>10.0} {:>8} {:>10.0} {:>10.0} {:>9} {:>13.0}  {}",
            r.nodes,
            r.frames,
            r.accepted,
            r.dropped,
            r.mean_bytes,
            r.mean_ns,
            r.batches,
            r.batch_p50_ns,
            r.batch_p99_ns,
            r.timeouts,
            r.timeout_mean_ns,
            if r.replay_matches {
                "same end state as the original"
            } else {
                "DIVERGED from the original"
            }
        );
    }
    out.push_str(
        "(ns/frame: handle_frame + draining its outputs, mean over all frames; run p50/p99: \
         percentiles of the per-run means; ns/timeout: handle_timeout + draining, which sends \
         the heartbeats)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_simulated_cluster_settles_and_replays_to_the_same_state() {
        let r = frame_cost(3, 2_000, Profile::Default).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.frames >= 2_000);
        assert!(r.replay_matches);
        assert_eq!(r.dropped, 0);
        assert_eq!(r.accepted, r.frames as u64);
    }

    #[test]
    fn proc_stat_is_read_for_this_process() {
        let pid = std::process::id();
        assert!(proc_ticks(pid).is_ok());
    }
}
