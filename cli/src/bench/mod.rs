//! `vigil bench`: live benchmarks that print figures (they assert no times).

pub mod corosync;
pub mod jitter;

use clap::{Args, Subcommand};

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
    /// Spin on one core forever (the CPU burner `bench jitter` starts; not for users).
    #[command(hide = true)]
    Burn,
}

pub fn run(args: BenchArgs) -> u8 {
    match args.command {
        BenchCommand::Jitter(a) => jitter::run(a),
        BenchCommand::Corosync(a) => corosync::run(a),
        BenchCommand::Burn => jitter::burn(),
    }
}
