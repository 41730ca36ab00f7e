//! A small client of the control socket, for programs that talk to a running node
//! (the inspection commands use it too). The protocol is in `docs/control.md`.

pub use crate::control::{command, request, status};
