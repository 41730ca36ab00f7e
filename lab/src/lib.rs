//! vigil's lab (`publish = false`): everything that runs real `vigil` daemons for
//! drills, benchmarks and tests, kept out of the product binary's code.
//!
//! - [`netlab`]: network namespaces on bridges, link faults and nftables cuts;
//! - [`drill`]: `vigil drill NAME`, a live cluster, one fault, a timeline and a verdict;
//! - [`hosts`]: the drills' processes, one per host, on loopback or in a lab's namespaces;
//! - [`bench`](mod@bench): `vigil bench …`, live benchmarks that print figures;
//! - [`fault`]: the client side of the daemons' fault injection (control socket);
//! - [`harness`]: the integration tests' helpers (daemon processes, loopback and
//!   namespace clusters, views and authority, `lltstat`/`gabconfig`/`fenceadm` JSON);
//! - [`capture`]: recording and replaying frames on a lab's wire (AF_PACKET).
//!
//! The `vigil` binary calls [`drill`] and [`bench`](mod@bench) through thin wrappers; the
//! daemon itself (`vigil daemon`, `vigil-runtime`) never runs code of this crate.
//! The helpers below are the one copy every part of the lab uses.

pub mod bench;
pub mod capture;
pub mod drill;
pub mod drill_guarded;
pub mod drill_witness;
pub mod fault;
/// The embedding example, the very file `cargo run --example guarded_service`
/// builds: `vigil drill guarded` runs its store, and `vigil guarded-service` its
/// service.
#[path = "../../runtime/examples/guarded_service.rs"]
#[allow(dead_code)]
pub mod guarded_service;
pub mod harness;
pub mod hosts;
pub mod netlab;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How a lab command ended; the `vigil` binary maps it to its exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done (a drill passed, a benchmark printed its figures).
    Ok,
    /// A failure: a drill failed, a benchmark could not run.
    Failure,
    /// Options that do not fit together.
    Usage,
}

/// The `vigil` binary the lab starts: this process itself when it is `vigil`
/// (`vigil drill`, `vigil bench`), else the `vigil` of the same build next to a
/// test executable (`target/<profile>/deps/..` or `target/<profile>/`).
pub fn vigil_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    if exe.file_name().is_some_and(|n| n == "vigil") {
        return Ok(exe);
    }
    let dir = exe.parent().and_then(Path::parent).map(|d| d.join("vigil"));
    let here = exe.parent().map(|d| d.join("vigil"));
    [dir, here]
        .into_iter()
        .flatten()
        .find(|b| b.exists())
        .ok_or_else(|| {
            format!(
                "no vigil binary next to {}: build the workspace first (cargo build --workspace)",
                exe.display()
            )
        })
}

/// `vigil keygen PATH` run with `exe`: a new cluster key (32 random bytes, mode
/// 0600) made as an operator makes one; its key ID as `vigil keygen` prints it.
pub fn keygen(exe: &Path, path: &Path) -> Result<String, String> {
    let out = Command::new(exe)
        .arg("keygen")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} keygen: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "vigil keygen {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("key ID ")
        .nth(1)
        .and_then(|t| t.get(..8))
        .map(str::to_string)
        .ok_or_else(|| format!("vigil keygen printed no key ID: {text:?}"))
}

/// `count` distinct free UDP ports on 127.0.0.1.
pub fn free_udp_ports(count: usize) -> Result<Vec<u16>, String> {
    // Hold every socket until all ports are chosen, so no port is handed out twice.
    let socks: Vec<std::net::UdpSocket> = (0..count)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find free UDP ports on 127.0.0.1: {e}"))?;
    socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// The JSON lines of a daemon's log (`--log-format json`) written so far; lines
/// that are not JSON (a panic message, say) are skipped.
pub fn log_events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether we run as root (namespaces, nftables, raw sockets need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
