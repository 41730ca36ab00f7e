//! `vigil bench failover` and `vigil bench compare`: fault to decision of real
//! daemons in network namespaces, repeated, as p50 and p99 per role; and the same
//! drills side by side with Corosync 3 in the same run, at several cluster sizes.
//!
//! Each vigil repetition is taken apart by role ([`RoleTimes`], from the daemons'
//! own logs): the last survivor installs the new membership (`view.installed`), the
//! last survivor holds authority on it so its clients may act (`view.client`), and
//! the last node outside it has fenced itself (`node.self_fence`). Corosync's figure
//! is its new membership (the last survivor's votequorum `Members[n]` line), the
//! counterpart of vigil's first role. The summaries are in [`super::roles`].

use super::corosync;
use super::roles::{self, RoleRow};
use crate::drill::{self, DrillArgs, DrillName, Profile, RoleTimes};
use crate::{netlab, Exit};
use clap::Args;

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// Repetitions per profile and size.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Cluster sizes, 3 to 64 (each split n/2 | n − n/2: 1|2, 2|3, 4|5; an even size
    /// splits in halves and the half with the lowest ID survives).
    #[arg(long, value_delimiter = ',', default_value = "3,5,9")]
    pub sizes: Vec<u8>,
    /// Timer profiles to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "default,fast"
    )]
    pub profiles: Vec<Profile>,
    /// On loopback with the fault-injection command instead of namespaces.
    #[arg(long)]
    pub loopback: bool,
}

/// `vigil bench compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Repetitions of each vigil drill, per profile and size (default 20; 3 with
    /// --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Repetitions of each Corosync drill at its default token, per size (default 5;
    /// 1 with --quick). One takes about 2 × (token + consensus) with the repair:
    /// ~25 s at 5 nodes, ~55 s at 16.
    #[arg(long)]
    pub corosync_reps: Option<usize>,
    /// Repetitions of each Corosync drill at the small token, per size (default 10;
    /// 2 with --quick).
    #[arg(long)]
    pub corosync_fast_reps: Option<usize>,
    /// Few repetitions, for a first look in a few minutes per size: 3, 1 and 2
    /// unless the flags above say otherwise.
    #[arg(long)]
    pub quick: bool,
    /// The smallest Corosync token that stays stable on this machine, in the form
    /// `vigil bench corosync --token` takes: `MS` (knet ping MS/2, 2·MS), `MS:auto`
    /// (knet timers left to Corosync) or `MS:INTERVAL:TIMEOUT`. Token 200 re-forms an
    /// idle cluster every ~9 s here; 500 with Corosync's own knet timers is quiet.
    #[arg(long, default_value = "500:auto")]
    pub token: String,
    /// Cluster sizes, run one after another in this invocation (3 to 32); one table
    /// each, printed at the end.
    #[arg(long, value_delimiter = ',', default_value = "5,9,16")]
    pub nodes: Vec<u8>,
    /// Drills: kill one node (SIGKILL), isolate one node (nftables).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,isolate"
    )]
    pub drills: Vec<corosync::Drill>,
}

/// Run `drill` `reps` times; the role times of the runs that passed, and the runs
/// that failed (with their reasons).
fn repeat(
    name: DrillName,
    nodes: u8,
    profile: Profile,
    netns: bool,
    reps: usize,
) -> Result<(Vec<RoleTimes>, Vec<String>), String> {
    let args = DrillArgs {
        name,
        nodes: Some(nodes),
        profile,
        split: None,
        netns,
        keep: false,
        brief: true,
        json: false,
    };
    let mut times = Vec::new();
    let mut failed = Vec::new();
    for rep in 0..reps {
        netlab::check_interrupted()?;
        match drill::run_drill(&args, None) {
            Ok(r) if r.pass => times.extend(r.roles),
            Ok(r) => failed.push(format!(
                "rep {rep}: {}{}",
                fence_reasons(&r.times),
                r.failures.join("; ")
            )),
            Err(e) if e == "interrupted" => return Err(e),
            Err(e) => failed.push(format!("rep {rep}: {e}")),
        }
        eprint!(".");
    }
    eprintln!();
    Ok((times, failed))
}

/// How many nodes fenced themselves for which reason, e.g. `self-fences: n0-n7
/// stalled, n8 race_lost; ` (empty when none did).
fn fence_reasons(times: &[drill::NodeTimes]) -> String {
    let mut by: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, t) in times.iter().enumerate() {
        if let Some((reason, _)) = &t.fenced {
            by.entry(reason.as_str()).or_default().push(i);
        }
    }
    if by.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(reason, nodes)| {
            let list: Vec<String> = nodes.iter().map(|i| format!("n{i}")).collect();
            format!("{} {reason}", list.join(","))
        })
        .collect();
    format!("self-fences: {}; ", parts.join(", "))
}

fn profile_label(profile: Profile) -> String {
    format!("{profile:?} profile").to_lowercase()
}

const ROLES: &str = "new membership = the last survivor installed the new view (vigil \
    `view.installed`; Corosync: its votequorum `Members[n]` line); survivors may act = the \
    last survivor holds authority on it (`view.client`); last loser fenced = the last node \
    outside it fenced itself (`node.self_fence`). ms after the fault, nearest-rank \
    percentiles; \"-\": the role does not exist there (Corosync has no lease and no fence; \
    a killed node does not fence) or had no sample.";

/// `vigil bench failover`.
pub fn failover(args: FailoverArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil bench failover: {e}");
    }
    let netns = !args.loopback;
    if netns && !netlab::is_root() {
        eprintln!("vigil bench failover: namespaces need root; use --loopback to run without");
        return Exit::Failure;
    }
    if let Some(&n) = args.sizes.iter().find(|&&n| !(3..=64).contains(&n)) {
        eprintln!("vigil bench failover: size {n}: sizes are 3 to 64");
        return Exit::Usage;
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &profile in &args.profiles {
        for &n in &args.sizes {
            eprint!("vigil split {n} nodes, {} ", profile_label(profile));
            let (times, failed) = match repeat(DrillName::Split32, n, profile, netns, args.reps) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("vigil bench failover: {e}");
                    return Exit::Failure;
                }
            };
            rows.push(roles::vigil_row(
                &profile_label(profile),
                "split",
                usize::from(n),
                &times,
                failed.len(),
            ));
            failures.extend(
                failed
                    .into_iter()
                    .map(|f| format!("{} {n} nodes {f}", profile_label(profile))),
            );
        }
    }
    println!(
        "fault to each role ({}): the low IDs cut from the high ones, n/2 | n - n/2 (odd n: the \
         majority survives; even n: the half holding the lowest ID), {} repetitions each",
        if netns {
            "network namespaces, nftables"
        } else {
            "loopback, vigil fault"
        },
        args.reps
    );
    print!("{}", roles::render_rows(&rows, false, true));
    println!("{ROLES}");
    for f in &failures {
        println!("    FAILED {f}");
    }
    if failures.is_empty() {
        Exit::Ok
    } else {
        Exit::Failure
    }
}

/// The Corosync rows of one setting at one size: every drill on one cluster, or,
/// when Corosync could not run, one row per drill saying why.
fn corosync_rows(
    setting: corosync::Setting,
    drills: &[corosync::Drill],
    nodes: usize,
    reps: usize,
) -> Result<Vec<RoleRow>, String> {
    let token = u64::try_from(setting.effective_token(nodes).as_millis()).unwrap_or(u64::MAX);
    eprintln!(
        "Corosync {} at {nodes} nodes: effective token {token} ms, {reps} repetition(s) per drill",
        setting.label()
    );
    let result = corosync::measure_all(setting, drills, nodes, reps, None, &mut |s| {
        eprintln!(
            "  {} rep {}: last survivor {} ms{}",
            s.drill.name(),
            s.rep + 1,
            s.last.as_millis(),
            if s.other_views > 0 {
                format!(" ({} unexpected memberships on the way)", s.other_views)
            } else {
                String::new()
            }
        )
    });
    let rows = match result {
        Ok(samples) => drills
            .iter()
            .map(|&d| {
                let ms: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.drill == d)
                    .map(|s| s.last.as_secs_f64() * 1e3)
                    .collect();
                roles::corosync_row(&setting.label(), d.name(), nodes, token, &ms, None)
            })
            .collect(),
        Err(e) if e == "interrupted" => return Err(e),
        Err(e) => {
            eprintln!(
                "  Corosync {} at {nodes} nodes failed: {e}",
                setting.label()
            );
            let why = format!("Corosync could not be measured at {nodes} nodes: {e}");
            drills
                .iter()
                .map(|d| {
                    roles::corosync_row(&setting.label(), d.name(), nodes, token, &[], Some(&why))
                })
                .collect()
        }
    };
    Ok(rows)
}

/// `vigil bench compare`.
pub fn compare(args: CompareArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil bench compare: {e}");
    }
    if !netlab::is_root() {
        eprintln!("vigil bench compare: namespaces need root");
        return Exit::Failure;
    }
    let small = match corosync::Setting::parse(&args.token) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil bench compare: --token: {e}");
            return Exit::Usage;
        }
    };
    if let Some(&n) = args.nodes.iter().find(|&&n| !(3..=32).contains(&n)) {
        eprintln!("vigil bench compare: --nodes {n}: sizes are 3 to 32");
        return Exit::Usage;
    }
    let (reps, cs_reps, cs_fast_reps) = if args.quick { (3, 1, 2) } else { (20, 5, 10) };
    let reps = args.reps.unwrap_or(reps);
    let cs_reps = args.corosync_reps.unwrap_or(cs_reps);
    let cs_fast_reps = args.corosync_fast_reps.unwrap_or(cs_fast_reps);
    if reps == 0 || cs_reps == 0 || cs_fast_reps == 0 {
        eprintln!("vigil bench compare: repetitions start at 1");
        return Exit::Usage;
    }
    let mut rows: Vec<RoleRow> = Vec::new();
    let mut failures = Vec::new();
    for &n in &args.nodes {
        let mut here = Vec::new();
        for &d in &args.drills {
            let name = match d {
                corosync::Drill::Kill => DrillName::Kill,
                corosync::Drill::Isolate => DrillName::Isolate,
            };
            for profile in [Profile::Default, Profile::Fast] {
                eprint!("vigil {} {n} nodes, {} ", d.name(), profile_label(profile));
                match repeat(name, n, profile, true, reps) {
                    Ok((t, f)) => {
                        here.push(roles::vigil_row(
                            &profile_label(profile),
                            d.name(),
                            usize::from(n),
                            &t,
                            f.len(),
                        ));
                        for e in f {
                            eprintln!("  FAILED {e}");
                            failures.push(format!(
                                "vigil {} {n} nodes {}: {e}",
                                d.name(),
                                profile_label(profile)
                            ));
                        }
                    }
                    Err(e) => {
                        eprintln!("vigil bench compare: {e}");
                        return Exit::Failure;
                    }
                }
            }
        }
        for (setting, r) in [(corosync::Setting::Default, cs_reps), (small, cs_fast_reps)] {
            match corosync_rows(setting, &args.drills, usize::from(n), r) {
                Ok(mut c) => here.append(&mut c),
                Err(e) => {
                    eprintln!("vigil bench compare: {e}");
                    return Exit::Failure;
                }
            }
        }
        // Rows by drill, vigil first.
        for &d in &args.drills {
            rows.extend(here.iter().filter(|r| r.drill == d.name()).cloned());
        }
    }
    println!(
        "vigil and Corosync 3 side by side, network namespaces, one run; vigil {reps} repetitions \
         per drill and profile, Corosync {cs_reps} at its default token and {cs_fast_reps} at \
         {}; token = Corosync's effective token at that size (token + (nodes - 2) x \
         token_coefficient)",
        small.label()
    );
    for &n in &args.nodes {
        let mine: Vec<RoleRow> = rows
            .iter()
            .filter(|r| r.nodes == usize::from(n))
            .cloned()
            .collect();
        println!("\n{n} nodes");
        print!("{}", roles::render_rows(&mine, true, false));
        println!("\n{n} nodes: Corosync's new membership p50 ÷ vigil's p50");
        print!("{}", roles::render_ratios(&roles::ratios(&mine)));
    }
    println!("\n{ROLES}");
    for f in &failures {
        println!("    FAILED {f}");
    }
    Exit::Ok
}
