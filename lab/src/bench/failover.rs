//! `vigil bench failover` and `vigil bench compare`: fault to decision of real
//! daemons in network namespaces, repeated, as p50 and p99; and the same drills
//! side by side with Corosync 3 in the same run.
//!
//! Decision means every survivor's clients see the new view with authority and every
//! loser has fenced itself (the drill's `decision_ms`, from the daemons' own logs).

use super::corosync;
use crate::drill::{self, DrillArgs, DrillName, Profile};
use crate::{netlab, Exit};
use clap::Args;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// Repetitions per profile and size.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Cluster sizes (each split into a minority and a majority: 1|2, 2|3, 4|5).
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

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Repetitions of each vigil drill.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Repetitions of each Corosync drill at its default token (each takes ~15 s).
    #[arg(long, default_value_t = 5)]
    pub corosync_reps: usize,
    /// Repetitions of each Corosync drill at the small token.
    #[arg(long, default_value_t = 10)]
    pub corosync_fast_reps: usize,
    /// The smallest Corosync token that stays stable on this machine, in the form
    /// `vigil bench corosync --token` takes: `MS` (knet ping MS/2, 2·MS), `MS:auto`
    /// (knet timers left to Corosync) or `MS:INTERVAL:TIMEOUT`. Token 200 re-forms an
    /// idle cluster every ~9 s here; 500 with Corosync's own knet timers is quiet.
    #[arg(long, default_value = "500:auto")]
    pub token: String,
    /// Nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: u8,
}

/// p-th percentile, nearest rank.
fn pct(v: &[f64], p: u32) -> Option<f64> {
    let d: Vec<Duration> = v.iter().map(|m| Duration::from_secs_f64(m / 1e3)).collect();
    corosync::percentile(&d, p).map(|d| d.as_secs_f64() * 1e3)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.1}"))
}

/// Run `drill` `reps` times; decision times (ms) of the runs that passed, and how
/// many failed (with their first reasons).
fn repeat(
    name: DrillName,
    nodes: u8,
    profile: Profile,
    netns: bool,
    reps: usize,
) -> Result<(Vec<f64>, Vec<String>), String> {
    let args = DrillArgs {
        name,
        nodes: Some(nodes),
        profile,
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
            Ok(r) if r.pass => times.extend(r.decision_ms),
            Ok(r) => failed.push(format!("rep {rep}: {}", r.failures.join("; "))),
            Err(e) if e == "interrupted" => return Err(e),
            Err(e) => failed.push(format!("rep {rep}: {e}")),
        }
        eprint!(".");
    }
    eprintln!();
    Ok((times, failed))
}

pub fn failover(args: FailoverArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil bench failover: {e}");
    }
    let netns = !args.loopback;
    if netns && !netlab::is_root() {
        eprintln!("vigil bench failover: namespaces need root; use --loopback to run without");
        return Exit::Failure;
    }
    println!(
        "fault to decision ({}): a minority|majority split, {} repetitions each; ms",
        if netns {
            "network namespaces, nftables"
        } else {
            "loopback, vigil fault"
        },
        args.reps
    );
    println!(
        "{:<8} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "profile", "nodes", "reps", "failed", "p50", "p99", "min", "max"
    );
    let mut code = Exit::Ok;
    for &profile in &args.profiles {
        for &n in &args.sizes {
            if n < 3 {
                eprintln!("vigil bench failover: sizes start at 3");
                return Exit::Usage;
            }
            let (times, failed) = match repeat(DrillName::Split32, n, profile, netns, args.reps) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("vigil bench failover: {e}");
                    return Exit::Failure;
                }
            };
            let min = times
                .iter()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
            let max = times
                .iter()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            println!(
                "{:<8} {:>5} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
                format!("{profile:?}").to_lowercase(),
                n,
                args.reps,
                failed.len(),
                fmt(pct(&times, 50)),
                fmt(pct(&times, 99)),
                fmt(min),
                fmt(max)
            );
            for f in &failed {
                println!("    FAILED {f}");
                code = Exit::Failure;
            }
        }
    }
    code
}

pub fn compare(args: CompareArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil bench compare: {e}");
    }
    if !netlab::is_root() {
        eprintln!("vigil bench compare: namespaces need root");
        return Exit::Failure;
    }
    let n = args.nodes;
    let small = match corosync::Setting::parse(&args.token) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil bench compare: --token: {e}");
            return Exit::Usage;
        }
    };
    // (system, setting, drill, decision times in ms, failures)
    let mut rows: Vec<(String, String, &'static str, Vec<f64>, usize)> = Vec::new();
    for (drill, label) in [(DrillName::Kill, "kill"), (DrillName::Isolate, "isolate")] {
        for profile in [Profile::Default, Profile::Fast] {
            eprint!("vigil {label} {profile:?} ");
            match repeat(drill, n, profile, true, args.reps) {
                Ok((t, f)) => {
                    for e in &f {
                        eprintln!("  FAILED {e}");
                    }
                    rows.push((
                        "vigil".into(),
                        format!("{profile:?} profile").to_lowercase(),
                        label,
                        t,
                        f.len(),
                    ))
                }
                Err(e) => {
                    eprintln!("vigil bench compare: {e}");
                    return Exit::Failure;
                }
            }
        }
        let cd = match drill {
            DrillName::Kill => corosync::Drill::Kill,
            _ => corosync::Drill::Isolate,
        };
        for (setting, reps) in [
            (corosync::Setting::Default, args.corosync_reps),
            (small, args.corosync_fast_reps),
        ] {
            eprintln!("corosync {label} {} ({reps} repetitions)", setting.label());
            match corosync::measure(setting, cd, n as usize, reps) {
                Ok(t) => rows.push((
                    "corosync".into(),
                    setting.label(),
                    label,
                    t.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
                    0,
                )),
                Err(e) => {
                    eprintln!("vigil bench compare: corosync: {e}");
                    return Exit::Failure;
                }
            }
        }
    }
    println!(
        "fault to decision at {n} nodes, network namespaces, one run (vigil: every survivor's clients see the new view and every loser has fenced; Corosync: the last survivor's new membership); ms"
    );
    println!(
        "{:<9} {:<22} {:<8} {:>5} {:>6} {:>9} {:>9} {:>22}",
        "system", "setting", "drill", "reps", "failed", "p50", "p99", "Corosync default p50 ÷"
    );
    for (system, setting, drill, t, failed) in &rows {
        let base = rows
            .iter()
            .find(|r| {
                r.0 == "corosync" && r.2 == *drill && r.1 == corosync::Setting::Default.label()
            })
            .and_then(|r| pct(&r.3, 50));
        let p50 = pct(t, 50);
        let ratio = match (base, p50) {
            (Some(b), Some(p)) if p > 0.0 => format!("{:.1}×", b / p),
            _ => "-".into(),
        };
        println!(
            "{:<9} {:<22} {:<8} {:>5} {:>6} {:>9} {:>9} {:>22}",
            system,
            setting,
            drill,
            t.len() + failed,
            failed,
            fmt(p50),
            fmt(pct(t, 99)),
            ratio
        );
    }
    Exit::Ok
}
