//! `vigil model`: the exhaustive check of the view-change protocol (`vigil-model`)
//! on the command line. Prints the bounds, the states explored, the depth reached,
//! the time, and PASS or the violated property with the trace that leads to it.

use crate::exit;
use clap::{Args, ValueEnum};
use vigil_fence::Sabotage;
use vigil_model::{check, Config, Seeding};

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 no violation within the bounds, 1 a property was \
                        violated (with --sabotage or --seeding count this is the expected \
                        result), 2 bad command line."
)]
pub struct ModelArgs {
    /// Nodes in the model (1 to 4).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=4))]
    nodes: u8,
    /// Explore every interleaving of up to this many steps (0: until no new state).
    #[arg(long, default_value_t = 9)]
    depth: usize,
    /// Unseeded nodes needed to seed (default: a majority of --nodes).
    #[arg(long)]
    seed: Option<usize>,
    /// Members of generation 1 at the start, as node IDs (default: every node; the
    /// others start unseeded). `--start-view none`: a cold start.
    #[arg(long, value_name = "IDS")]
    start_view: Option<String>,
    /// The highest generation a race or seed may propose.
    #[arg(long, default_value_t = 3)]
    max_generation: u8,
    /// Crash-and-restarts in a run, over all nodes.
    #[arg(long, default_value_t = 1)]
    crashes: u8,
    /// Messages in flight at most (a send beyond it is lost).
    #[arg(long, default_value_t = 4)]
    messages: usize,
    /// The lease, in ticks.
    #[arg(long, default_value_t = 1)]
    lease: u8,
    /// Stop (inconclusive) after this many distinct states; each takes about 500
    /// bytes while its level is explored.
    #[arg(long, default_value_t = 20_000_000)]
    max_states: usize,
    /// No message loss (links still go down and up).
    #[arg(long)]
    no_loss: bool,
    /// Messages may also be duplicated.
    #[arg(long)]
    duplication: bool,
    /// Break the protocol on purpose; the checker should find a violation.
    #[arg(long, value_enum)]
    sabotage: Option<SabotageArg>,
    /// The old seeding rule: a seed is decided by `seed` accepts, acceptors check
    /// nothing, no settle window (the same as `--seeding count`).
    #[arg(long, conflicts_with = "seeding")]
    no_seeding_fix: bool,
    /// The seeding rule: `count` (old), `all` (the fix as specified: every member
    /// accepts, quorum of the acceptor's known views, settle when it leaves members
    /// out), `all-settle` (`all`, and the settle whenever an acceptor knew a view).
    #[arg(long, value_enum, default_value = "all-settle")]
    seeding: SeedingArg,
    /// The fence engine as it is: an acceptor that a value drops does not report its
    /// own lease in `Accepted`.
    #[arg(long)]
    dropped_acceptor_silent: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SabotageArg {
    AnyHalfWins,
    FewerAccepts,
    ZeroSettle,
    LowestPrimary,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SeedingArg {
    Count,
    All,
    AllSettle,
}

fn start_view(arg: Option<&str>, nodes: u8) -> Result<u8, String> {
    let all = ((1u16 << nodes) - 1) as u8;
    let Some(s) = arg else { return Ok(all) };
    if s == "none" {
        return Ok(0);
    }
    let mut bits = 0u8;
    for id in s.split(',') {
        let id: u8 = id
            .trim()
            .parse()
            .map_err(|_| format!("--start-view: bad node ID {id:?}"))?;
        if id >= nodes {
            return Err(format!(
                "--start-view: node {id} is not below --nodes {nodes}"
            ));
        }
        bits |= 1 << id;
    }
    Ok(bits)
}

pub fn run(a: ModelArgs) -> u8 {
    let view = match start_view(a.start_view.as_deref(), a.nodes) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vigil model: {e}");
            return exit::USAGE;
        }
    };
    let nodes = usize::from(a.nodes);
    let cfg = Config {
        nodes,
        seed: a.seed.unwrap_or(nodes / 2 + 1),
        lease: a.lease.max(1),
        max_generation: a.max_generation,
        max_crashes: a.crashes,
        max_round: 1,
        max_messages: a.messages,
        max_depth: a.depth,
        max_states: a.max_states,
        start_view: view,
        partitions: true,
        loss: !a.no_loss,
        duplication: a.duplication,
        seeding: match (a.no_seeding_fix, a.seeding) {
            (true, _) | (_, SeedingArg::Count) => Seeding::Count,
            (_, SeedingArg::All) => Seeding::All,
            (_, SeedingArg::AllSettle) => Seeding::AllSettle,
        },
        sabotage: a.sabotage.map(|s| match s {
            SabotageArg::AnyHalfWins => Sabotage::AnyHalfWins,
            SabotageArg::FewerAccepts => Sabotage::FewerAccepts,
            SabotageArg::ZeroSettle => Sabotage::ZeroSettle,
            SabotageArg::LowestPrimary => Sabotage::LowestPrimary,
        }),
        dropped_acceptor_reports_itself: !a.dropped_acceptor_silent,
    };
    println!(
        "model: {} nodes, seed {}, start view {:?}, lease {} tick(s), generations <= {}, \
         crashes <= {}, messages <= {}, loss {}, duplication {}, seeding {:?}, sabotage {:?}",
        cfg.nodes,
        cfg.seed,
        vigil_membership::NodeSet::from_bits(u64::from(cfg.start_view)),
        cfg.lease,
        cfg.max_generation,
        cfg.max_crashes,
        cfg.max_messages,
        cfg.loss,
        cfg.duplication,
        cfg.seeding,
        cfg.sabotage,
    );
    let r = check(&cfg);
    let bound = if r.complete {
        "every reachable state".to_string()
    } else if r.violation.is_some() {
        "stopped at the violation".to_string()
    } else if r.states >= cfg.max_states {
        format!("stopped at --max-states {}", cfg.max_states)
    } else {
        format!("every state within {} steps", cfg.max_depth)
    };
    println!(
        "states: {}  depth: {}  time: {:.1} s  ({bound})",
        r.states,
        r.depth,
        r.elapsed.as_secs_f64()
    );
    match r.violation {
        None if !r.complete && r.states >= cfg.max_states => {
            println!("INCOMPLETE: no violation in the states explored; raise --max-states");
            exit::OK
        }
        None => {
            println!("PASS: S1-S5 hold");
            exit::OK
        }
        Some(v) => {
            print!("{v}");
            exit::FAILURE
        }
    }
}
