//! The control socket: a Unix stream socket (mode 0600, caller checked with
//! SO_PEERCRED) carrying one JSON request line and one JSON response line.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_llt::driver::DriverStats;
use vigil_llt::types::NodeId;

/// Largest request or response line accepted, in bytes.
pub const MAX_LINE: usize = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Everything the inspection commands show.
    Status,
    /// `gabconfig -x`: seed by hand with whoever is reachable.
    ManualSeed,
    /// `vigil stop`: leave the cluster gracefully, then exit.
    Stop,
    /// `vigil fault`: a testing tool that drops this node's traffic to or from
    /// chosen peers; refused unless `cluster.fault_injection = true`.
    Fault(FaultCmd),
    /// `vigil key reload`: re-read `key_file` and `accept_key_files` from the
    /// daemon's config file and use them from now on.
    KeyReload,
}

/// Which way a fault drops frames, as seen from the daemon asked.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Frames from the peers are dropped on arrival.
    In,
    /// Frames to the peers are not sent.
    Out,
    Both,
}

/// A fault-injection command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FaultCmd {
    /// Drop frames to and/or from `peers` on `links` (link names; empty: all).
    Block {
        peers: Vec<u8>,
        links: Vec<String>,
        direction: Direction,
    },
    /// Undo [`FaultCmd::Block`] for `peers` on `links` (empty: all).
    Unblock { peers: Vec<u8>, links: Vec<String> },
    /// Drop nothing any more.
    Clear,
    /// Only report what is dropped.
    Show,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(Box<DaemonStatus>),
    /// A command was accepted; what the daemon does about it.
    Done {
        message: String,
    },
    Error {
        message: String,
    },
}

/// One configured link, as the daemon runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkInfo {
    pub id: u8,
    pub name: String,
    pub kind: String,
    pub priority: String,
    /// This node's address on the link (UDP address, or interface and MAC).
    pub local_address: String,
    pub driver: DriverStats,
}

/// One configured node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    /// Configured address per link, in link order.
    pub addresses: Vec<String>,
}

/// The daemon's timers, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimersInfo {
    pub heartbeat_ms: u64,
    pub heartbeat_lowpri_ms: u64,
    pub peer_trouble_ms: u64,
    pub peer_inactive_ms: u64,
    pub link_up_count: u32,
    pub race_timeout_ms: u64,
    pub lease_ms: u64,
    #[serde(default)]
    pub stall_report_ms: u64,
    /// `timers.profile`: `default` or `fast`.
    #[serde(default)]
    pub profile: String,
}

/// What `Request::Status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub cluster_name: String,
    pub cluster_id: u32,
    pub local: NodeId,
    pub node_name: String,
    pub pid: u32,
    pub config_file: PathBuf,
    pub authenticated: bool,
    pub uptime_ms: u64,
    /// The daemon's monotonic clock (the node's `Instant`) when the status was taken.
    pub now_ns: u64,
    pub timers: TimersInfo,
    /// `cluster.fencing`: `majority` or `disabled`.
    pub fencing: String,
    /// `cluster.self_fence`: `exit`, `hook`, `reboot` or `halt`.
    pub self_fence: String,
    /// `cluster.max_drift_ppm`.
    pub max_drift_ppm: u32,
    /// `daemon.stall_action`: `fence` or `rejoin`.
    #[serde(default)]
    pub stall_action: String,
    /// The scheduling the node thread runs with: `off`, `fifo 50`, or what was
    /// refused and why.
    #[serde(default)]
    pub realtime: String,
    /// The watchdog: `none`, `configured (not armed)`, `armed ...`.
    #[serde(default)]
    pub watchdog: String,
    /// Faults injected with `vigil fault` (testing only), one line each.
    #[serde(default)]
    pub faults: Vec<String>,
    pub links: Vec<LinkInfo>,
    pub nodes: Vec<NodeInfo>,
    pub node: vigil::node::Status,
}

/// Ask the daemon behind `socket`.
pub fn request(socket: &Path, req: &Request) -> Result<Response, String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the vigil daemon at {}: {e}", socket.display()))?;
    let timeout = Some(Duration::from_secs(5));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut reader = BufReader::new(stream).take(MAX_LINE as u64);
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    if answer.is_empty() {
        return Err(format!(
            "{}: the daemon closed the connection",
            socket.display()
        ));
    }
    serde_json::from_str(&answer).map_err(|e| format!("{}: bad response: {e}", socket.display()))
}

/// Fetch the daemon's status or say why not.
pub fn status(socket: &Path) -> Result<DaemonStatus, String> {
    match request(socket, &Request::Status)? {
        Response::Status(s) => Ok(*s),
        Response::Done { .. } => Err(format!(
            "{}: unexpected answer to a status request",
            socket.display()
        )),
        Response::Error { message } => Err(message),
    }
}

/// Send a command (`ManualSeed`, `Stop`); the daemon's answer or why not.
pub fn command(socket: &Path, req: &Request) -> Result<String, String> {
    match request(socket, req)? {
        Response::Done { message } => Ok(message),
        Response::Status(_) => Err(format!(
            "{}: unexpected status answer to a command",
            socket.display()
        )),
        Response::Error { message } => Err(message),
    }
}

/// Resolve an inspection command's target to a socket path.
pub fn resolve(target: &crate::Target) -> Result<PathBuf, String> {
    if let Some(s) = &target.socket {
        return Ok(s.clone());
    }
    let cfg = vigil::config::ClusterConfig::load(&target.config).map_err(|e| e.to_string())?;
    match &target.node {
        Some(name) => cfg
            .node_by_name(name)
            .map(|n| cfg.socket_path(n))
            .ok_or_else(|| format!("{}: no node named {name}", target.config.display())),
        None => {
            let live: Vec<PathBuf> = cfg
                .nodes
                .iter()
                .map(|n| cfg.socket_path(n))
                .filter(|p| p.exists())
                .collect();
            match live.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(format!(
                    "no control socket of any node in {} exists; is the daemon running? (use --socket or --node)",
                    target.config.display()
                )),
                _ => Err("several nodes of this config run here; choose one with --node".into()),
            }
        }
    }
}

use std::io::Read as _;
