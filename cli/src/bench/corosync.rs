//! `vigil bench corosync` (being written).

use clap::Args;

#[derive(Args, Debug)]
pub struct CorosyncArgs {}

pub fn run(_args: CorosyncArgs) -> u8 {
    eprintln!("vigil bench corosync: not built yet");
    crate::exit::FAILURE
}
