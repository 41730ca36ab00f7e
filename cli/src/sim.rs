//! `vigil sim`: the deterministic simulator (SPEC section 9) on the command line.
//! Scenario files (`run`), random sweeps over many seeds (`sweep`), one seed in detail
//! (`replay`), and simulator throughput (`bench`).
//!
//! A sweep runs its seeds on worker threads but reports them in seed order, so its
//! output (apart from rates and the progress on stderr) and its combined trace hash
//! are the same for the same seeds and commit, whatever `--jobs`.

use crate::exit;
use clap::{Args, Subcommand, ValueEnum};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vigil_fence::Sabotage;
use vigil_sim::{
    percentiles, random_drill, run_random, FaultKind, Options, Outcome, Profile, Scenario,
};

const EXIT_CODES: &str = "Exit codes: 0 every drill passed, 1 a property was violated (or a \
                          scenario file could not be read or parsed), 2 bad command line.";

#[derive(Args, Debug)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Run scenario files (TOML) and check their expectations and S1-S7 after every event.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Run many random scenarios, one per seed, and report violations and decision times.
    #[command(
        after_help = "Exit codes: 0 no violation in any seed, 1 a seed violated a \
                            property (the first is printed with the command reproducing it; \
                            with --sabotage this is the expected result), 2 bad command line."
    )]
    Sweep(SweepArgs),
    /// Run one random scenario (a seed of a sweep): print its steps and its outcome.
    #[command(
        after_help = "Exit codes: 0 the seed passed, 1 it violated a property, 2 bad \
                            command line."
    )]
    Replay(ReplayArgs),
    /// Measure simulator throughput, by default for 5, 16 and 64 nodes (prints figures only).
    #[command(
        after_help = "Exit codes: 0 done (the figures are not judged), 1 the simulator \
                            panicked, 2 bad command line."
    )]
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario files (for example sim/scenarios/*.toml).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Break the protocol on purpose, to show that the checker catches it.
    #[arg(long, value_name = "NAME")]
    sabotage: Option<SabotageArg>,
}

/// How random scenarios are drawn (shared by `sweep` and `replay`, so that the
/// command a sweep prints reproduces its seed exactly).
#[derive(Args, Debug, Clone)]
struct RandomArgs {
    /// Cluster sizes to draw from, inclusive: A..B with 2 <= A <= B <= 64.
    #[arg(long, value_name = "A..B", default_value = "3..9", value_parser = parse_nodes)]
    nodes: NodeRange,
    #[arg(
        long,
        value_name = "KIND,...",
        value_delimiter = ',',
        value_parser = parse_kind,
        help = format!("Fault kinds to draw from, comma separated (default: all): {}", kind_names())
    )]
    faults: Vec<FaultKind>,
    /// Break the protocol on purpose, to show that the checker catches it.
    #[arg(long, value_name = "NAME")]
    sabotage: Option<SabotageArg>,
    /// The nodes' config: `legacy` (the simulator's own timers, 10/80/60/70 ms),
    /// `default` or `fast` (the shipped timer profiles as the config produces
    /// them, two links, a key), or `random` (a valid config drawn from each seed:
    /// timers, 1 to 4 links, seed count, key, probe and stall settings). Drill
    /// durations scale with the timers. Legacy draws the network and process
    /// faults by default; the others also operator actions and store failures.
    #[arg(long, value_name = "PROFILE", default_value = "legacy", value_parser = parse_profile)]
    profile: Profile,
    /// Run every drill with a witness (`vigil witness`, node ID 63) that crashes,
    /// restarts and is cut from some nodes, and with each node's weight drawn
    /// (1 to 3). The sabotage, if any, applies to the witness too.
    #[arg(long)]
    witness: bool,
}

impl RandomArgs {
    fn kinds(&self) -> Vec<FaultKind> {
        if self.faults.is_empty() {
            FaultKind::defaults(self.profile).to_vec()
        } else {
            self.faults.clone()
        }
    }

    fn options(&self) -> Options {
        Options {
            profile: self.profile,
            witness: self.witness,
            ..options(self.sabotage)
        }
    }

    /// The `vigil sim replay` command line for one seed.
    fn replay_command(&self, seed: u64) -> String {
        let mut c = format!("vigil sim replay --seed {seed} --nodes {}", self.nodes);
        if self.profile != Profile::Legacy {
            c.push_str(&format!(" --profile {}", self.profile));
        }
        if !self.faults.is_empty() {
            let names: Vec<&str> = self.faults.iter().map(|k| k.name()).collect();
            c.push_str(&format!(" --faults {}", names.join(",")));
        }
        if let Some(s) = self.sabotage {
            c.push_str(&format!(" --sabotage {}", s.name()));
        }
        if self.witness {
            c.push_str(" --witness");
        }
        c
    }
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// How many seeds to run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The first seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    start: u64,
    #[command(flatten)]
    random: RandomArgs,
    /// Worker threads (default: the available parallelism). Results are reported in
    /// seed order whatever the count.
    #[arg(long, value_name = "J", value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// With --sabotage, run every seed instead of stopping at the first violation
    /// (a sweep without sabotage always runs every seed).
    #[arg(long)]
    keep_going: bool,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The seed to run.
    #[arg(long, value_name = "S")]
    seed: u64,
    /// Print the last trace lines even when the seed passes (40, or as many as
    /// the environment variable VIGIL_SIM_TRACE says).
    #[arg(long)]
    trace: bool,
    #[command(flatten)]
    random: RandomArgs,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Wall-clock seconds to spend on each cluster size (at least one drill each).
    #[arg(long, value_name = "T", default_value_t = 3.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Cluster sizes to measure, comma separated.
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "5,16,64",
        value_parser = clap::value_parser!(u8).range(2..=64)
    )]
    sizes: Vec<u8>,
}

/// `--sabotage` names (the kebab-case serde names of [`Sabotage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SabotageArg {
    /// Any side holding exactly half of the previous view survives.
    AnyHalfWins,
    /// The racer decides with one accept fewer than a quorum.
    FewerAccepts,
    /// Survivors hand a new view to clients at once, without the settle window.
    ZeroSettle,
    /// The lowest member of a new view is its primary (no stickiness): a lower ID
    /// that joins takes the role from a primary that still holds authority.
    LowestPrimary,
    /// Seeding as before views were kept: `seed` accepts decide, nobody checks the
    /// views they knew, no settle window. Nodes restarted beside a running view
    /// can seed a second cluster.
    SeedWithoutViews,
    /// Every node's llt accepts frames that do not echo its current incarnation (the
    /// freshness check off): recorded frames replayed at a restarted node count.
    StaleFrames,
    /// The witness votes for every proposal of a generation (with `--witness`).
    WitnessVotesTwice,
}

impl SabotageArg {
    fn name(self) -> &'static str {
        match self {
            SabotageArg::AnyHalfWins => "any-half-wins",
            SabotageArg::FewerAccepts => "fewer-accepts",
            SabotageArg::ZeroSettle => "zero-settle",
            SabotageArg::LowestPrimary => "lowest-primary",
            SabotageArg::SeedWithoutViews => "seed-without-views",
            SabotageArg::StaleFrames => "stale-frames",
            SabotageArg::WitnessVotesTwice => "witness-votes-twice",
        }
    }

    /// The fence core's sabotage, if it is one (`stale-frames` breaks llt).
    fn fence(self) -> Option<Sabotage> {
        match self {
            SabotageArg::AnyHalfWins => Some(Sabotage::AnyHalfWins),
            SabotageArg::FewerAccepts => Some(Sabotage::FewerAccepts),
            SabotageArg::ZeroSettle => Some(Sabotage::ZeroSettle),
            SabotageArg::LowestPrimary => Some(Sabotage::LowestPrimary),
            SabotageArg::SeedWithoutViews => Some(Sabotage::SeedWithoutViews),
            SabotageArg::StaleFrames => None,
            SabotageArg::WitnessVotesTwice => Some(Sabotage::WitnessVotesTwice),
        }
    }
}

/// The run options for a `--sabotage` argument.
fn options(sabotage: Option<SabotageArg>) -> Options {
    Options {
        sabotage: sabotage.and_then(SabotageArg::fence),
        stale_frames: sabotage == Some(SabotageArg::StaleFrames),
        ..Options::default()
    }
}

/// An inclusive range of cluster sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodeRange {
    lo: u8,
    hi: u8,
}

impl fmt::Display for NodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.lo, self.hi)
    }
}

fn parse_nodes(s: &str) -> Result<NodeRange, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected A..B (for example 3..9), got `{s}`"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<u8>()
            .map_err(|_| format!("`{x}` is not a node count (expected A..B, for example 3..9)"))
    };
    let (lo, hi) = (num(a)?, num(b)?);
    if lo < 2 {
        return Err(format!("at least 2 nodes, got {lo}"));
    }
    if hi > 64 {
        return Err(format!("at most 64 nodes, got {hi}"));
    }
    if lo > hi {
        return Err(format!("the range {lo}..{hi} is empty (A must be <= B)"));
    }
    Ok(NodeRange { lo, hi })
}

fn kind_names() -> String {
    let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
    names.join(", ")
}

fn parse_kind(s: &str) -> Result<FaultKind, String> {
    FaultKind::parse(s.trim())
        .ok_or_else(|| format!("unknown fault kind `{s}`; valid kinds: {}", kind_names()))
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s.trim()).ok_or_else(|| {
        format!("unknown profile `{s}`; valid profiles: legacy, default, fast, random")
    })
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number of seconds >= 0, got `{s}`")),
    }
}

pub fn run(args: SimArgs) -> u8 {
    match args.command {
        SimCommand::Run(a) => run_files(&a),
        SimCommand::Sweep(a) => sweep(&a),
        SimCommand::Replay(a) => replay(&a),
        SimCommand::Bench(a) => bench(&a),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn decision(o: &Outcome) -> String {
    o.fault_to_decision.map_or_else(|| "-".to_string(), ms)
}

fn flush() {
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------------
// run

fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Scenario::from_toml(&text).map_err(|e| format!("{}: {}", path.display(), e.trim_end()))
}

fn run_files(args: &RunArgs) -> u8 {
    let mut failed = false;
    let mut scenarios = Vec::new();
    for path in &args.files {
        match load(path) {
            Ok(sc) => scenarios.push(sc),
            Err(e) => {
                eprintln!("vigil sim run: {e}");
                failed = true;
            }
        }
    }
    let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let opts = options(args.sabotage);
    for sc in &scenarios {
        let out = guarded(|| vigil_sim::run(sc, opts));
        match out {
            Ok(o) => match &o.violation {
                None => println!("PASS {:<width$}  fault→decision {}", o.name, decision(&o)),
                Some(v) => {
                    failed = true;
                    print!("FAIL {}\n{v}", o.name);
                }
            },
            Err(panic) => {
                failed = true;
                println!("FAIL {}\nthe simulator panicked: {panic}", sc.name);
            }
        }
        flush();
    }
    if failed {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Run `f`, turning a panic (of the simulator or of a node) into its message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into())
    })
}

// ---------------------------------------------------------------------------------
// sweep

/// One seed's result; a panic counts as a violation.
struct Drill {
    seed: u64,
    outcome: Result<Outcome, String>,
}

impl Drill {
    fn failed(&self) -> bool {
        self.outcome
            .as_ref()
            .map_or(true, |o| o.violation.is_some())
    }

    /// The broken property, or `panic`.
    fn property(&self) -> &'static str {
        match &self.outcome {
            Ok(o) => o.violation.as_ref().map_or("", |v| v.property),
            Err(_) => "panic",
        }
    }

    fn report(&self) -> String {
        match &self.outcome {
            Ok(o) => match &o.violation {
                Some(v) => format!("FAIL {} (seed {})\n{v}", o.name, self.seed),
                None => format!("PASS {} (seed {})\n", o.name, self.seed),
            },
            Err(p) => format!(
                "FAIL random-{s} (seed {s})\nthe simulator panicked: {p}\n",
                s = self.seed
            ),
        }
    }
}

/// FNV-1a over the per-seed trace hashes in seed order (a panicked seed counts as 0).
fn combined_hash(drills: &[Drill]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for d in drills {
        let x = d.outcome.as_ref().map_or(0, |o| o.trace_hash);
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Progress on stderr: a bar redrawn in place on a terminal, else a line every 10%.
struct Progress {
    total: u64,
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    next_tenth: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
            next_tenth: 1,
        }
    }

    fn update(&mut self, done: u64, violations: u64) {
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let text = format!(
            "{done}/{} seeds, {violations} violations, {rate:.0} seeds/s",
            self.total
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let fresh = self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100));
            if fresh && done < self.total {
                return;
            }
            self.last_draw = Some(Instant::now());
            const WIDTH: u64 = 30;
            let filled = (done * WIDTH / self.total.max(1)) as usize;
            let bar = format!(
                "{}{}",
                "#".repeat(filled),
                " ".repeat(WIDTH as usize - filled)
            );
            let _ = write!(err, "\r\x1b[Ksweep: [{bar}] {text}");
            let _ = err.flush();
        } else {
            let mut due = false;
            while self.next_tenth <= 10 && done * 10 >= self.next_tenth * self.total {
                self.next_tenth += 1;
                due = true;
            }
            if due {
                let _ = writeln!(err, "sweep: {text}");
            }
        }
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn sweep(args: &SweepArgs) -> u8 {
    let (start, seeds) = (args.start, args.seeds);
    if start.checked_add(seeds).is_none() {
        eprintln!(
            "vigil sim sweep: --start {} plus --seeds {} is past the last seed",
            args.start, args.seeds
        );
        return exit::USAGE;
    }
    let kinds = args.random.kinds();
    let opts = args.random.options();
    let range = (args.random.nodes.lo, args.random.nodes.hi);
    // With sabotage, stop at the first violation (the point is how soon it is caught).
    let stop_at_first = args.random.sabotage.is_some() && !args.keep_going;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
        .clamp(1, args.seeds);

    let next = AtomicU64::new(0);
    // The lowest failing seed so far: workers take no seed above it when stopping at
    // the first violation, and every seed below it is run, so the report is the same
    // whatever the scheduling.
    let first_failure = AtomicU64::new(u64::MAX);
    let mut progress = Progress::new(args.seeds);
    let started = Instant::now();
    let mut drills: Vec<Drill> = Vec::with_capacity(args.seeds.min(1 << 20) as usize);

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Drill>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, first_failure, kinds) = (&next, &first_failure, &kinds);
            scope.spawn(move || loop {
                // An index, not the seed: it cannot wrap past u64::MAX.
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= seeds {
                    break;
                }
                let seed = start + i;
                if stop_at_first && seed > first_failure.load(Ordering::SeqCst) {
                    break;
                }
                let outcome = guarded(|| run_random(seed, range, kinds, opts));
                let drill = Drill { seed, outcome };
                if drill.failed() {
                    first_failure.fetch_min(seed, Ordering::SeqCst);
                }
                if tx.send(drill).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut violations = 0;
        for d in rx {
            violations += u64::from(d.failed());
            drills.push(d);
            progress.update(drills.len() as u64, violations);
        }
    });
    progress.finish();
    let wall = started.elapsed().as_secs_f64().max(1e-9);

    drills.sort_by_key(|d| d.seed);
    let first = first_failure.load(Ordering::SeqCst);
    if stop_at_first {
        // Seeds past the first failure finished by other workers are not reported.
        drills.retain(|d| d.seed <= first);
    }
    let failures: Vec<&Drill> = drills.iter().filter(|d| d.failed()).collect();
    let decisions: Vec<Duration> = drills
        .iter()
        .filter_map(|d| d.outcome.as_ref().ok()?.fault_to_decision)
        .collect();
    let node_seconds: f64 = drills
        .iter()
        .filter_map(|d| d.outcome.as_ref().ok())
        .map(|o| o.node_seconds)
        .sum();
    let (p50, p99) =
        percentiles(decisions).map_or(("-".into(), "-".into()), |(a, b)| (ms(a), ms(b)));

    println!(
        "{:<12}{:<12}{:<20}{:<20}{:<9}node-s/s",
        "drills", "violations", "p50 fault→decision", "p99 fault→decision", "seeds/s"
    );
    println!(
        "{:<12}{:<12}{:<20}{:<20}{:<9}{:.0}",
        drills.len(),
        failures.len(),
        p50,
        p99,
        format!("{:.0}", drills.len() as f64 / wall),
        node_seconds / wall
    );
    println!(
        "trace hash: {:#018x} (seeds {}..{}, nodes {}, profile {})",
        combined_hash(&drills),
        args.start,
        drills.last().map_or(args.start, |d| d.seed + 1),
        args.random.nodes,
        args.random.profile
    );
    print!("{}", availability_report(&drills));

    let Some(first) = failures.first() else {
        return exit::OK;
    };
    if failures.len() > 1 {
        let seeds: Vec<String> = failures
            .iter()
            .take(20)
            .map(|d| d.seed.to_string())
            .collect();
        let more = if failures.len() > 20 { ", ..." } else { "" };
        println!("failing seeds: {}{more}", seeds.join(", "));
    }
    if let Some(s) = args.random.sabotage {
        let taken = first.seed - args.start + 1;
        println!(
            "sabotage {}: caught ({}) at seed {}, after {taken} seed{}",
            s.name(),
            first.property(),
            first.seed,
            if taken == 1 { "" } else { "s" }
        );
    }
    println!();
    print!("{}", first.report());
    print!("{}", config_report(&args.random, first.seed));
    println!("reproduce: {}", args.random.replay_command(first.seed));
    exit::FAILURE
}

/// The availability figure over the drills (a report: it fails nothing).
fn availability_report(drills: &[Drill]) -> String {
    let outcomes: Vec<(u64, &Outcome)> = drills
        .iter()
        .filter_map(|d| Some((d.seed, d.outcome.as_ref().ok()?)))
        .collect();
    let ratios: Vec<(u64, f64)> = outcomes
        .iter()
        .filter_map(|(s, o)| Some((*s, o.availability?.ratio()?)))
        .collect();
    let nothing = outcomes
        .iter()
        .filter(|(_, o)| o.availability.is_some_and(|a| a.best == 0))
        .count();
    let mut text = String::new();
    if let Some((worst_seed, worst)) = ratios
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
    {
        let mean = ratios.iter().map(|(_, r)| r).sum::<f64>() / ratios.len() as f64;
        let below = ratios.iter().filter(|(_, r)| *r < 1.0).count();
        text.push_str(&format!(
            "availability at the end of the fault phase (authority holders / largest quorum clique): \
             mean {mean:.3}, worst {worst:.3} (seed {worst_seed}), below 1 in {below} of {} drills; \
             no quorum clique in {nothing}\n",
            ratios.len()
        ));
    }
    let needless: usize = outcomes.iter().map(|(_, o)| o.needless_fences).sum();
    let in_drills = outcomes
        .iter()
        .filter(|(_, o)| o.needless_fences > 0)
        .count();
    let strict_drills: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| o.needless_strict > 0)
        .map(|(s, _)| s.to_string())
        .collect();
    let strict: usize = outcomes.iter().map(|(_, o)| o.needless_strict).sum();
    let shown: Vec<&str> = strict_drills.iter().take(10).map(String::as_str).collect();
    text.push_str(&format!(
        "needless fences (a quorum clique containing the node existed): {needless} in {in_drills} drills; \
         beyond choice (every largest quorum clique contained the node): {strict}{}\n",
        if shown.is_empty() {
            String::new()
        } else {
            format!(
                " (seeds {}{})",
                shown.join(", "),
                if strict_drills.len() > 10 { ", ..." } else { "" }
            )
        }
    ));
    let both: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| o.cut_fenced_both)
        .map(|(s, _)| s.to_string())
        .collect();
    if !both.is_empty() {
        let shown: Vec<&str> = both.iter().take(10).map(String::as_str).collect();
        text.push_str(&format!(
            "a single cut fenced both of its nodes in {} drills (seeds {}{})\n",
            both.len(),
            shown.join(", "),
            if both.len() > 10 { ", ..." } else { "" }
        ));
    }
    text
}

/// The config a seed's nodes ran (beyond the legacy set, which is always the same).
fn config_report(args: &RandomArgs, seed: u64) -> String {
    if args.profile == Profile::Legacy {
        return String::new();
    }
    let range = (args.nodes.lo, args.nodes.hi);
    match random_drill(seed, range, &args.kinds(), args.profile) {
        Ok((_, cfg)) => {
            let body: String = cfg.text.lines().map(|l| format!("#   {l}\n")).collect();
            format!("# config ({} profile):\n{body}", args.profile)
        }
        Err(e) => format!("# config: {e}\n"),
    }
}

// ---------------------------------------------------------------------------------
// replay

/// The scenario as TOML, one step per line (Debug if it does not serialize).
fn scenario_text(sc: &Scenario) -> String {
    toml_text(sc).unwrap_or_else(|| format!("{sc:#?}\n"))
}

fn toml_text(sc: &Scenario) -> Option<String> {
    let mut head = sc.clone();
    head.steps.clear();
    let text = toml::to_string(&head).ok()?;
    let mut steps = String::from("steps = [\n");
    for step in &sc.steps {
        steps.push_str(&format!("    {},\n", toml::Value::try_from(step).ok()?));
    }
    steps.push_str("]\n");
    // Fields in their declared order, with the steps where `steps = []` was.
    let (before, after) = text.split_once("steps = []\n")?;
    Some(format!("{before}{steps}{after}"))
}

fn replay(args: &ReplayArgs) -> u8 {
    let kinds = args.random.kinds();
    let range = (args.random.nodes.lo, args.random.nodes.hi);
    let sc = match random_drill(args.seed, range, &kinds, args.random.profile) {
        Ok((sc, _)) => sc,
        Err(e) => {
            println!("# {}", args.random.replay_command(args.seed));
            println!("FAIL random-{}: no valid config: {e}", args.seed);
            return exit::FAILURE;
        }
    };
    println!("# {}", args.random.replay_command(args.seed));
    print!("{}", config_report(&args.random, args.seed));
    print!("{}", scenario_text(&sc));
    println!(
        "# then: every node that fenced or crashed is restarted, and all must hold \
         authority on one view of all (L1)"
    );
    println!();
    flush();
    let drill = Drill {
        seed: args.seed,
        outcome: guarded(|| {
            let opts = Options {
                keep_trace: args.trace,
                ..args.random.options()
            };
            run_random(args.seed, range, &kinds, opts)
        }),
    };
    if let Ok(o) = &drill.outcome {
        if o.violation.is_none() {
            for line in &o.trace {
                println!("    {line}");
            }
        }
    }
    print!("{}", drill.report());
    if let Ok(o) = &drill.outcome {
        println!(
            "fault→decision {}, {:.1} simulated node-seconds, trace hash {:#018x}",
            decision(o),
            o.node_seconds,
            o.trace_hash
        );
        if let Some(a) = o.availability {
            println!(
                "availability at the end of the fault phase: {} holding authority, largest quorum clique {}; needless fences {} ({} beyond choice)",
                a.holders, a.best, o.needless_fences, o.needless_strict
            );
        }
        for (t, node, every) in &o.needless {
            println!(
                "needless fence: n{node} at {:.3} ms{}",
                t.as_nanos() as f64 / 1e6,
                if *every { " (beyond choice)" } else { "" }
            );
        }
    }
    if drill.failed() {
        exit::FAILURE
    } else {
        exit::OK
    }
}

// ---------------------------------------------------------------------------------
// bench

fn bench(args: &BenchArgs) -> u8 {
    let budget = Duration::from_secs_f64(args.seconds);
    println!(
        "{:<7}{:<8}{:<10}{:<10}{:<14}{:<10}node-s/s (simulated node-seconds per wall second)",
        "nodes", "drills", "drills/s", "per core", "frames/drill", "ns/frame"
    );
    flush();
    for &k in &args.sizes {
        let started = Instant::now();
        let mut drills = 0u64;
        let mut node_seconds = 0.0;
        let mut frames = 0u64;
        let cpu0 = thread_cpu();
        loop {
            let seed = drills;
            let o = match guarded(|| {
                run_random(seed, (k, k), &FaultKind::LEGACY, Options::default())
            }) {
                Ok(o) => o,
                Err(p) => {
                    eprintln!(
                        "vigil sim bench: the simulator panicked ({p}); reproduce: vigil sim replay --seed {seed} --nodes {k}..{k}"
                    );
                    return exit::FAILURE;
                }
            };
            drills += 1;
            node_seconds += o.node_seconds;
            frames += o.frames;
            if started.elapsed() >= budget {
                break;
            }
        }
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        // Per core: the drills run on this thread, so its CPU time is what they
        // cost (on a busy machine wall time overstates it).
        let cpu = match (cpu0, thread_cpu()) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => wall,
        };
        println!(
            "{:<7}{:<8}{:<10}{:<10}{:<14}{:<10}{:.0}",
            k,
            drills,
            format!("{:.1}", drills as f64 / wall),
            format!("{:.1}", drills as f64 / cpu),
            frames / drills.max(1),
            format!("{:.0}", cpu * 1e9 / frames.max(1) as f64),
            node_seconds / wall
        );
        flush();
    }
    exit::OK
}

/// CPU time this thread has run; `None` where the kernel does not keep it.
fn thread_cpu() -> Option<Duration> {
    vigil_lab::bench::common::schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat"))
        .map(Duration::from_nanos)
}
