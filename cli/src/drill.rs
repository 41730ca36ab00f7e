//! `vigil drill [NAME]`, the main job: the drills themselves live in
//! [`vigil_lab::drill`]; this gives them the inspection commands' renderers, so the
//! drill prints `lltstat -nvv` and `gabconfig -a` exactly as an operator sees them.

use crate::{exit, gabconfig, lltstat};
pub use vigil_lab::drill::DrillArgs;

pub fn run(args: DrillArgs) -> u8 {
    let show = vigil_lab::drill::Show {
        nodes_text: lltstat::nodes_text,
        ports_text: gabconfig::ports_text,
    };
    exit::code(vigil_lab::drill::run(args, &show))
}
