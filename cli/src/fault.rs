//! `vigil fault`: a testing tool. It tells one daemon to drop its traffic to or from
//! chosen peers on chosen links, so that partitions, one-way links and link failures
//! can be drilled on loopback without root. A daemon refuses it unless its config
//! sets `cluster.fault_injection = true`; never enable that in production.

use crate::control::{self, Direction, FaultCmd};
use crate::{exit, Target};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct FaultArgs {
    #[command(subcommand)]
    command: FaultCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand, Debug)]
enum FaultCommand {
    /// Drop frames to and/or from some peers.
    Block(Selection),
    /// Stop dropping frames to and from some peers.
    Unblock(Selection),
    /// Stop dropping anything.
    Clear,
    /// Show what is dropped.
    Show,
    /// Make every write of the daemon's generation store take longer, as a slow
    /// disk would (0: back to normal).
    SlowStore {
        /// Milliseconds added to every write.
        #[arg(value_name = "MS")]
        ms: u64,
    },
}

/// Which frames a block drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DirectionArg {
    /// Frames from the peers are dropped on arrival.
    In,
    /// Frames to the peers are not sent.
    Out,
    /// Both.
    Both,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::In => Direction::In,
            DirectionArg::Out => Direction::Out,
            DirectionArg::Both => Direction::Both,
        }
    }
}

#[derive(Args, Debug)]
struct Selection {
    /// Peer node IDs, comma-separated; default: every peer.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    peers: Vec<u8>,
    /// Link name; repeat for several; default: every link.
    #[arg(long = "link", value_name = "NAME")]
    links: Vec<String>,
    /// Which frames: those coming in, going out, or both (block only).
    #[arg(long = "dir", value_enum, default_value = "both")]
    direction: DirectionArg,
}

pub fn run(args: FaultArgs) -> u8 {
    let cmd = match args.command {
        FaultCommand::Block(s) => FaultCmd::Block {
            peers: s.peers,
            links: s.links,
            direction: s.direction.into(),
        },
        FaultCommand::Unblock(s) => FaultCmd::Unblock {
            peers: s.peers,
            links: s.links,
        },
        FaultCommand::Clear => FaultCmd::Clear,
        FaultCommand::Show => FaultCmd::Show,
        FaultCommand::SlowStore { ms } => FaultCmd::SlowStore { ms },
    };
    match control::resolve(&args.target).and_then(|s| vigil_lab::fault::send(&s, cmd)) {
        Ok(message) => {
            println!("{message}");
            exit::OK
        }
        Err(e) => {
            eprintln!("vigil fault: {e}");
            exit::FAILURE
        }
    }
}
