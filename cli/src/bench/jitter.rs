//! `vigil bench jitter` (being written).

use clap::Args;

#[derive(Args, Debug)]
pub struct JitterArgs {}

pub fn run(_args: JitterArgs) -> u8 {
    eprintln!("vigil bench jitter: not built yet");
    crate::exit::FAILURE
}
