//! The client side of the daemons' fault injection: drop traffic to or from chosen
//! peers on chosen links, slow the generation store. A daemon refuses it unless its
//! config sets `cluster.fault_injection = true` (drill and bench configs do).

use std::path::Path;
use vigil_runtime::control::{self, FaultCmd, Request};

/// Send one fault command to the daemon at `socket`; its answer.
pub fn send(socket: &Path, cmd: FaultCmd) -> Result<String, String> {
    control::command(socket, &Request::Fault(cmd))
}
