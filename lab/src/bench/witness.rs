//! `vigil bench witness`: the time to decision of a two-node cluster with a real
//! `vigil witness`, per case of `vigil drill two-node-witness`, repeated: from the
//! fault (a SIGKILL, the cut) to the survivor holding authority on its new view (its
//! clients may act), as the other figures of `docs/benchmarks.md` are taken.

use crate::drill::{DrillArgs, DrillName, Profile};
use crate::drill_witness;
use crate::{netlab, Exit};
use clap::Args;
use std::collections::BTreeMap;

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// Repetitions of the whole drill (six cases each).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Timer profiles to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "default")]
    pub profiles: Vec<Profile>,
    /// In network namespaces (root), with nftables cuts; default loopback with the
    /// fault-injection command.
    #[arg(long)]
    pub netns: bool,
}

/// The nearest-rank quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn run(args: WitnessArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil bench witness: {e}");
    }
    if args.netns && !netlab::is_root() {
        eprintln!("vigil bench witness: --netns needs root");
        return Exit::Usage;
    }
    let mut failed_runs = 0;
    let mut tables = Vec::new();
    for profile in &args.profiles {
        // case key → (what, decision times of the passing repetitions)
        let mut by_case: BTreeMap<&'static str, (String, Vec<f64>)> = BTreeMap::new();
        let mut order: Vec<&'static str> = Vec::new();
        for rep in 0..args.reps {
            let drill = DrillArgs {
                name: DrillName::TwoNodeWitness,
                nodes: None,
                split: None,
                profile: *profile,
                netns: args.netns,
                keep: false,
                brief: true,
                json: false,
            };
            match drill_witness::run_once(&drill, false) {
                Ok((pass, cases)) => {
                    if !pass {
                        failed_runs += 1;
                    }
                    for c in cases {
                        if !order.contains(&c.key) {
                            order.push(c.key);
                        }
                        let e = by_case
                            .entry(c.key)
                            .or_insert_with(|| (c.what.clone(), Vec::new()));
                        if let (true, Some(d)) = (c.pass, c.decision_ms) {
                            e.1.push(d);
                        }
                    }
                    eprintln!(
                        "  {profile:?} repetition {}/{}: {}",
                        rep + 1,
                        args.reps,
                        if pass { "pass" } else { "FAIL" }
                    );
                }
                Err(e) => {
                    failed_runs += 1;
                    eprintln!("  {profile:?} repetition {}/{}: {e}", rep + 1, args.reps);
                }
            }
        }
        let mut t = format!(
            "two nodes + witness, profile {profile:?}, {} ({} repetitions): fault to the survivor's new view (its clients may act), ms\n  {:<28} {:>3} {:>7} {:>7} {:>7}\n",
            if args.netns { "network namespaces" } else { "loopback" },
            args.reps,
            "case",
            "n",
            "p50",
            "p90",
            "max"
        );
        for key in order {
            let Some((_, v)) = by_case.get_mut(key) else {
                continue;
            };
            v.sort_by(f64::total_cmp);
            t += &format!(
                "  {:<28} {:>3} {:>7.0} {:>7.0} {:>7.0}\n",
                key,
                v.len(),
                quantile(v, 0.5),
                quantile(v, 0.9),
                v.last().copied().unwrap_or(f64::NAN)
            );
        }
        tables.push(t);
    }
    for t in tables {
        println!("{t}");
    }
    if failed_runs > 0 {
        println!("{failed_runs} repetition(s) failed (their cases that passed are counted)");
        return Exit::Failure;
    }
    Exit::Ok
}
