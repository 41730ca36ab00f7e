//! `vigil bench`: the command tree over [`vigil_lab::bench`], where the benchmarks
//! (and their options) live.

use crate::exit;
use clap::{Args, Subcommand};
use vigil_lab::bench::{common, corosync, cost, failover, host, jitter, soak, witness};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Heartbeat send jitter with both cores busy, with and without real-time priority.
    Jitter(jitter::JitterArgs),
    /// Corosync 3 (knet, votequorum) in network namespaces: fault to new membership.
    Corosync(corosync::CorosyncArgs),
    /// Heartbeat cost: CPU, bytes and frames per node for cluster sizes, and the
    /// in-process cost of handling one frame.
    Cost(cost::CostArgs),
    /// False-positive soak: healthy daemons on one link with every core busy;
    /// counts view changes, peer losses and stalls.
    Soak(soak::SoakArgs),
    /// Fault to each role's decision (new membership, survivors may act, last loser
    /// fenced) of a minority|majority split, repeated, per timer profile and cluster
    /// size, in network namespaces.
    Failover(failover::FailoverArgs),
    /// Kill and isolate one node, vigil and Corosync 3 in the same run, per role, at
    /// 5, 9 and 16 nodes (--nodes).
    Compare(failover::CompareArgs),
    /// How long this host stops running threads (real-time and normal), and which
    /// timer profile (default, fast) it can carry.
    Host(host::HostArgs),
    /// Two nodes and a real `vigil witness`: fault to the survivor's new view per
    /// case of `vigil drill two-node-witness`, repeated.
    Witness(witness::WitnessArgs),
    /// Spin on one core forever (the CPU burner `bench jitter` and `bench soak` start;
    /// not for users).
    #[command(hide = true)]
    Burn,
}

pub fn run(args: BenchArgs) -> u8 {
    exit::code(match args.command {
        BenchCommand::Jitter(a) => jitter::run(a),
        BenchCommand::Corosync(a) => corosync::run(a),
        BenchCommand::Cost(a) => cost::run(a),
        BenchCommand::Soak(a) => soak::run(a),
        BenchCommand::Failover(a) => failover::failover(a),
        BenchCommand::Compare(a) => failover::compare(a),
        BenchCommand::Host(a) => host::run(a),
        BenchCommand::Witness(a) => witness::run(a),
        BenchCommand::Burn => common::burn(),
    })
}
