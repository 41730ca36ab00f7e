//! The control socket: a Unix stream socket (mode 0600, or 0660 with
//! `daemon.control_group`; the caller checked with SO_PEERCRED) carrying one JSON
//! request line and one JSON response line, or, for [`Request::Subscribe`], a
//! stream of [`AuthorityLine`]s. The protocol, version [`PROTOCOL`], is described
//! for clients in `docs/control.md`.
//!
//! The daemon's end ([`Server`]) runs on a thread of its own, at a lower priority
//! than the node's, with its own runtime: reading, parsing and serializing never
//! happen on the node's thread. The node only answers a parsed [`Request`] taken
//! from a bounded queue (a status is a snapshot; serializing it is the server's
//! work), and answers at most a few per turn of its loop, after its timers and
//! frames. Every resource is bounded: [`MAX_CONNECTIONS`] connections at once (more
//! are refused at once), [`MAX_REQUEST`] bytes per request (never more is buffered),
//! [`READ_TIMEOUT`] to send it, [`WRITE_TIMEOUT`] to take the answer; a full queue
//! answers [`Response::Busy`] rather than wait. What was refused is counted
//! ([`ControlStats`], in `lltstat --json`).
//!
//! Subscriptions are served on the control thread alone: each follows the node's
//! published authority ([`crate::NodeHandle::authority`]) and its event broadcast,
//! which the node feeds without ever waiting; at most [`MAX_SUBSCRIBERS`] at once
//! (they also hold one of the [`MAX_CONNECTIONS`]), and a subscriber that does
//! not take a line within [`WRITE_TIMEOUT`] is dropped and counted.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tracing::{info, warn};
use vigil_fence::FenceEvent;
use vigil_llt::driver::DriverStats;
use vigil_llt::types::NodeId;

/// The version of the control protocol: in every [`AuthorityLine`] and in the
/// answer to [`Request::Version`]. It grows when a request, a response or a line
/// changes in a way an older client could misread; new fields and new requests do
/// not change it.
pub const PROTOCOL: u32 = 1;
/// Longest request line the daemon accepts, newline included (64 KiB).
pub const MAX_REQUEST: usize = 64 << 10;
/// Longest response line a client accepts (4 MiB: a status of 64 nodes fits).
pub const MAX_RESPONSE: usize = 4 << 20;
/// Most control connections served at once; more are refused at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection whose request has not arrived whole within this is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection that has not taken its answer within this is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection waits for the node's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Most subscriptions ([`Request::Subscribe`]) at once; each also holds one of
/// the [`MAX_CONNECTIONS`], so that one-shot requests always find room.
pub const MAX_SUBSCRIBERS: usize = 16;
/// How long a client retries a request the daemon was too busy to take.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);
/// The nice value of the control thread: under CPU pressure the node's thread runs
/// first.
const CONTROL_NICE: i32 = 10;

/// A request, one JSON object on one line: `{"cmd":"status"}`.
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
    /// The protocol version and who answers ([`Response::Version`]); answered by
    /// the control thread.
    Version,
    /// `vigil watch`: the current authority at once, then one line per change,
    /// as [`AuthorityLine`]s on the same connection until either side closes it.
    Subscribe,
}

impl Request {
    /// Whether the request only reads: allowed to `daemon.control_group` as well
    /// as to root and the daemon's user.
    pub fn is_read_only(&self) -> bool {
        match self {
            Request::Status | Request::Version | Request::Subscribe => true,
            Request::ManualSeed | Request::Stop | Request::Fault(_) | Request::KeyReload => false,
        }
    }

    /// The request's name on the wire (`cmd`).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::ManualSeed => "manual_seed",
            Request::Stop => "stop",
            Request::Fault(_) => "fault",
            Request::KeyReload => "key_reload",
            Request::Version => "version",
            Request::Subscribe => "subscribe",
        }
    }
}

/// Who may ask what: root and the daemon's own user anything; members of
/// `daemon.control_group` (who can connect at all only because the socket is
/// 0660 with that group) the read-only requests; anyone else nothing. `Err` says
/// why, in words for the refused caller.
pub fn permit(
    peer_uid: u32,
    daemon_uid: u32,
    control_group: Option<&str>,
    req: &Request,
) -> Result<(), String> {
    if peer_uid == 0 || peer_uid == daemon_uid {
        return Ok(());
    }
    match control_group {
        Some(_) if req.is_read_only() => Ok(()),
        Some(g) => Err(format!(
            "permission denied: {} changes the node; only root or the daemon's user may ask it (members of control group {g} may only read: status, subscribe, version)",
            req.name()
        )),
        None => Err(
            "permission denied: only root or the daemon's user may use the control socket".into(),
        ),
    }
}

/// One line of a subscription ([`Request::Subscribe`]): what clients may act on,
/// as of `event`. Without authority (`holds` false) the token and the primary are
/// absent and `members` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityLine {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// Why this line: `subscribe` (the state when the subscription started),
    /// `authority.changed`, `view.installed`, or `subscribe.resync` (the
    /// subscription fell behind the node's events; this is the state now). A
    /// string, not an enum, so that a client reads lines with names added later.
    pub event: String,
    /// This node.
    pub node: NodeId,
    /// This node's name.
    pub node_name: String,
    /// Whether this node holds authority: clients may act on `token`.
    pub holds: bool,
    /// The fencing token: the generation of the view clients may act on.
    pub token: Option<u64>,
    /// The same as `token` (the name the membership layer uses).
    pub client_generation: Option<u64>,
    /// The generation of the view installed here (above `token` while a settle
    /// window runs), when known.
    pub installed_generation: Option<u64>,
    /// The primary of the view clients may act on.
    pub primary: Option<NodeId>,
    /// Whether this node is that primary.
    pub is_primary: bool,
    /// The members of the view clients may act on, ascending.
    pub members: Vec<NodeId>,
    /// How much longer the authority holds unless renewed, in milliseconds, when
    /// the line was written (0 without authority). Renewals send no line.
    pub valid_for_ms: u64,
    /// Wall clock when the line was written, microseconds since the Unix epoch.
    pub ts_us: u64,
}

impl AuthorityLine {
    /// The line for `authority` (as published by the node), now.
    pub fn new(
        event: &str,
        node: NodeId,
        node_name: &str,
        authority: Option<&crate::Authority>,
        installed: Option<u64>,
    ) -> AuthorityLine {
        let ts_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let held = authority.filter(|a| a.is_valid());
        AuthorityLine {
            protocol: PROTOCOL,
            event: event.to_string(),
            node,
            node_name: node_name.to_string(),
            holds: held.is_some(),
            token: held.map(|a| a.token.0),
            client_generation: held.map(|a| a.token.0),
            installed_generation: match (held.map(|a| a.installed.0), installed) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            primary: held.map(|a| a.primary),
            is_primary: held.is_some_and(|a| a.is_primary),
            members: held.map_or_else(Vec::new, |a| a.view.node_set().iter().collect()),
            valid_for_ms: held.map_or(0, |a| {
                a.valid_until
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis() as u64
            }),
            ts_us,
        }
    }

    /// Whether this node is the primary and holds authority, as of this line.
    pub fn is_valid_primary(&self) -> bool {
        self.holds && self.is_primary
    }
}

/// Which way a fault drops frames, as seen from the daemon asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Frames from the peers are dropped on arrival.
    In,
    /// Frames to the peers are not sent.
    Out,
    /// Both ways.
    Both,
}

/// A fault-injection command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FaultCmd {
    /// Drop frames to and/or from `peers` on `links` (link names; empty: all).
    Block {
        /// Node IDs.
        peers: Vec<u8>,
        /// Link names; empty: every link.
        links: Vec<String>,
        /// Which way.
        direction: Direction,
    },
    /// Undo [`FaultCmd::Block`] for `peers` on `links` (empty: all).
    Unblock {
        /// Node IDs; empty: every peer.
        peers: Vec<u8>,
        /// Link names; empty: every link.
        links: Vec<String>,
    },
    /// Drop nothing any more.
    Clear,
    /// Only report what is dropped.
    Show,
    /// Make every write of the generation store take `ms` longer (0: as fast as
    /// the store goes), as a slow disk would.
    SlowStore {
        /// Milliseconds added to every write.
        ms: u64,
    },
}

/// A response, one JSON object on one line: `{"done":{"message":"leaving"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Status`].
    Status(Box<DaemonStatus>),
    /// A command was accepted; what the daemon does about it.
    Done {
        /// What the daemon does about it, in words.
        message: String,
    },
    /// The request was refused or failed; nothing was done.
    Error {
        /// Why, in words.
        message: String,
    },
    /// Too many connections or queued requests: nothing was done; try again.
    Busy {
        /// What was full, in words.
        message: String,
    },
    /// The answer to [`Request::Version`].
    Version {
        /// [`PROTOCOL`].
        protocol: u32,
        /// The daemon's release (`vigil-runtime`'s crate version).
        version: String,
        /// The node that answers.
        node: NodeId,
        /// Its name.
        node_name: String,
    },
}

/// One configured link, as the daemon runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The link's ID: its index in `[[links]]`.
    pub id: u8,
    /// `links[].name`.
    pub name: String,
    /// `udp` or `ether`.
    pub kind: String,
    /// `high` or `low` (heartbeats only, at `heartbeat_lowpri`).
    pub priority: String,
    /// This node's address on the link (UDP address, or interface and MAC).
    pub local_address: String,
    /// Frames and errors counted by the link's driver.
    pub driver: DriverStats,
}

/// One configured node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `nodes[].id`.
    pub id: NodeId,
    /// `nodes[].name`.
    pub name: String,
    /// Configured address per link, in link order.
    pub addresses: Vec<String>,
}

/// The daemon's timers, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimersInfo {
    /// `timers.heartbeat`.
    pub heartbeat_ms: u64,
    /// `timers.heartbeat_lowpri`.
    pub heartbeat_lowpri_ms: u64,
    /// `timers.peer_trouble`.
    pub peer_trouble_ms: u64,
    /// `timers.peer_inactive`.
    pub peer_inactive_ms: u64,
    /// `timers.link_up_count`: heartbeats heard before a link is up.
    pub link_up_count: u32,
    /// `timers.race_timeout`.
    pub race_timeout_ms: u64,
    /// `timers.lease`.
    pub lease_ms: u64,
    /// `timers.stall_report`.
    #[serde(default)]
    pub stall_report_ms: u64,
    /// `timers.profile`: `default` or `fast`.
    #[serde(default)]
    pub profile: String,
}

/// What `Request::Status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// `cluster.name`.
    pub cluster_name: String,
    /// `cluster.id`.
    pub cluster_id: u32,
    /// This node's ID.
    pub local: NodeId,
    /// This node's name.
    pub node_name: String,
    /// The daemon's process ID.
    pub pid: u32,
    /// The config file the daemon runs (and `vigil key reload` re-reads).
    pub config_file: PathBuf,
    /// Whether frames are authenticated (a cluster key is in use).
    pub authenticated: bool,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// The daemon's monotonic clock (the node's `Instant`) when the status was taken.
    pub now_ns: u64,
    /// The timers in use.
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
    /// The configured links, in link order.
    pub links: Vec<LinkInfo>,
    /// The configured nodes, in file order.
    pub nodes: Vec<NodeInfo>,
    /// The node's own status: transport, membership, fencing.
    pub node: vigil::node::Status,
    /// The control socket's bounds and counters.
    #[serde(default)]
    pub control: ControlStats,
    /// Log lines lost since start (a log reader that stopped reading).
    #[serde(default)]
    pub log_lines_lost: u64,
    /// Where the highest generation is kept.
    #[serde(default)]
    pub store: String,
}

/// The control socket's bounds and what it refused, since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlStats {
    /// [`MAX_CONNECTIONS`].
    pub max_connections: u64,
    /// [`MAX_REQUEST`].
    pub max_request_bytes: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections taken (within the bound).
    pub accepted: u64,
    /// Requests the node answered.
    pub served: u64,
    /// Connections refused at once: [`MAX_CONNECTIONS`] were open.
    pub refused: u64,
    /// Requests longer than [`MAX_REQUEST`]: answered with an error and closed.
    pub oversize: u64,
    /// Connections closed because the request or the taking of the answer was too
    /// slow, or the node did not answer in time.
    pub timed_out: u64,
    /// Requests answered "busy": the node's queue was full.
    pub busy: u64,
    /// Requests that were not JSON requests.
    pub bad: u64,
    /// Requests refused to a caller not allowed to make them.
    pub denied: u64,
    /// [`MAX_SUBSCRIBERS`].
    pub max_subscribers: u64,
    /// Subscriptions open now.
    pub subscribers: u64,
    /// Subscriptions taken since start.
    pub subscribed: u64,
    /// Subscribers dropped because they did not take a line within
    /// [`WRITE_TIMEOUT`].
    pub subscribers_dropped: u64,
}

/// Ask the daemon behind `socket`; a request the daemon is too busy to take is
/// tried again for up to [`BUSY_RETRY`].
pub fn request(socket: &Path, req: &Request) -> Result<Response, String> {
    let give_up = std::time::Instant::now() + BUSY_RETRY;
    let mut pause = Duration::from_millis(20);
    loop {
        match request_once(socket, req)? {
            Response::Busy { message } => {
                if std::time::Instant::now() + pause > give_up {
                    return Err(format!("{}: {message}", socket.display()));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            r => return Ok(r),
        }
    }
}

fn request_once(socket: &Path, req: &Request) -> Result<Response, String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the vigil daemon at {}: {e}", socket.display()))?;
    let timeout = Some(Duration::from_secs(5));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    // A daemon that refuses the connection answers before reading: read its answer
    // even when the request could not be written.
    let sent = stream.write_all(line.as_bytes());
    let mut reader = BufReader::new(stream).take(MAX_RESPONSE as u64);
    let mut answer = String::new();
    let read = reader.read_line(&mut answer);
    if answer.is_empty() {
        if let Err(e) = sent.and(read.map(|_| ())) {
            return Err(format!("{}: {e}", socket.display()));
        }
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
        Response::Done { .. } | Response::Version { .. } => Err(format!(
            "{}: unexpected answer to a status request",
            socket.display()
        )),
        Response::Error { message } | Response::Busy { message } => Err(message),
    }
}

/// Send a command (`ManualSeed`, `Stop`); the daemon's answer or why not.
pub fn command(socket: &Path, req: &Request) -> Result<String, String> {
    match request(socket, req)? {
        Response::Done { message } => Ok(message),
        Response::Status(_) | Response::Version { .. } => Err(format!(
            "{}: unexpected answer to a command",
            socket.display()
        )),
        Response::Error { message } | Response::Busy { message } => Err(message),
    }
}

// ---------------------------------------------------------------------------------
// The daemon's end.

/// A parsed request for the node, and where its answer goes.
#[derive(Debug)]
pub struct Ctl {
    /// The request.
    pub req: Request,
    /// For [`Request::KeyReload`]: the config file as read again, on the control
    /// thread (a slow file system must not hold up heartbeats).
    pub reloaded: Option<Result<Box<vigil::config::ClusterConfig>, String>>,
    /// Where the node's answer goes.
    pub reply: oneshot::Sender<Response>,
}

/// What the control thread follows for subscriptions and answers itself: the
/// node's published authority and events, who the node is, and who may ask.
#[derive(Debug, Clone)]
pub struct Feed {
    /// This node.
    pub node: NodeId,
    /// Its name.
    pub node_name: String,
    /// The published authority ([`crate::NodeHandle::authority`]).
    pub authority: watch::Receiver<Option<crate::Authority>>,
    /// The node's events ([`crate::NodeHandle::events`]).
    pub events: broadcast::Sender<crate::Event>,
    /// `daemon.control_group`, whose members may use the read-only requests.
    pub control_group: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
    oversize: AtomicU64,
    timed_out: AtomicU64,
    busy: AtomicU64,
    bad: AtomicU64,
    denied: AtomicU64,
    subscribed: AtomicU64,
    subscribers_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads the control socket's counters (cheap: a few atomic loads).
#[derive(Debug, Clone)]
pub struct Monitor {
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
    subscribers: Arc<Semaphore>,
}

impl Monitor {
    /// The bounds and counters now.
    pub fn stats(&self) -> ControlStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ControlStats {
            max_connections: MAX_CONNECTIONS as u64,
            max_request_bytes: MAX_REQUEST as u64,
            open: MAX_CONNECTIONS.saturating_sub(self.slots.available_permits()) as u64,
            accepted: get(&c.accepted),
            served: get(&c.served),
            refused: get(&c.refused),
            oversize: get(&c.oversize),
            timed_out: get(&c.timed_out),
            busy: get(&c.busy),
            bad: get(&c.bad),
            denied: get(&c.denied),
            max_subscribers: MAX_SUBSCRIBERS as u64,
            subscribers: MAX_SUBSCRIBERS.saturating_sub(self.subscribers.available_permits())
                as u64,
            subscribed: get(&c.subscribed),
            subscribers_dropped: get(&c.subscribers_dropped),
        }
    }
}

/// The control socket's server: a thread with its own runtime, serving
/// connections and passing parsed requests to the node through a bounded queue.
#[derive(Debug)]
pub struct Server {
    stop: Option<oneshot::Sender<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
    monitor: Monitor,
}

impl Server {
    /// Serve `listener` (bound, mode 0600 or 0660) on a thread of its own;
    /// requests go to `queue`, whose bound decides when the node is too busy;
    /// subscriptions follow `feed`.
    pub fn start(
        listener: std::os::unix::net::UnixListener,
        queue: mpsc::Sender<Ctl>,
        config_file: PathBuf,
        feed: Feed,
    ) -> Result<Server, String> {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the control socket's runtime: {e}"))?;
        let monitor = Monitor {
            counters: Arc::new(Counters::default()),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            subscribers: Arc::new(Semaphore::new(MAX_SUBSCRIBERS)),
        };
        let (stop, stopped) = oneshot::channel::<Duration>();
        let m = monitor.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-control".into())
            .spawn(move || {
                lower_priority();
                let shared = Shared {
                    queue,
                    config_file,
                    feed,
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    daemon_uid: unsafe { libc::geteuid() },
                };
                runtime.block_on(serve(listener, Arc::new(shared), m, stopped));
                // Dropping the runtime closes the connections still open.
            })
            .map_err(|e| format!("cannot start the control socket's thread: {e}"))?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
            monitor,
        })
    }

    /// What reads the counters.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Stop accepting, give the connections in flight up to `grace` to write their
    /// answers (`vigil stop` waits for one), then close the rest; returns when done.
    pub fn stop(mut self, grace: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(grace);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    /// Without [`Server::stop`]: stop at once and do not wait.
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(Duration::ZERO);
        }
    }
}

/// The ID of group `name` (`daemon.control_group`), or why not.
pub fn group_id(name: &str) -> Result<u32, String> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| format!("daemon.control_group {name:?} contains a NUL byte"))?;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: zeroed is a valid `group` (pointers null, IDs 0); getgrnam_r fills it.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is its size;
    // the result is read only when `found` points at `grp`.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot look up group {name} (daemon.control_group): {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    if found.is_null() {
        return Err(format!(
            "daemon.control_group: no group named {name} on this host (create it with groupadd)"
        ));
    }
    Ok(grp.gr_gid)
}

/// Run the calling thread (the control thread) at a lower priority than the node's.
pub(crate) fn lower_priority() {
    // SAFETY: setpriority takes no pointers; on Linux `who = 0` is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CONTROL_NICE) };
    if rc != 0 {
        warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the control thread's priority"
        );
    }
}

/// What every connection of one server shares.
struct Shared {
    queue: mpsc::Sender<Ctl>,
    config_file: PathBuf,
    feed: Feed,
    daemon_uid: u32,
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    shared: Arc<Shared>,
    monitor: Monitor,
    stopped: oneshot::Receiver<Duration>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "control socket unusable");
            return;
        }
    };
    // Subscriptions end when the server stops (they would otherwise hold their
    // connection slots through the grace period).
    let (closing_tx, closing) = watch::channel(false);
    let accept = async {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match monitor.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    bump(&monitor.counters.accepted);
                    let (sh, m, closing) = (shared.clone(), monitor.clone(), closing.clone());
                    tokio::spawn(async move {
                        connection(stream, &sh, &m, closing).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    bump(&monitor.counters.refused);
                    let _ = stream.try_write(&line(&Response::Busy {
                        message: format!(
                            "busy: {MAX_CONNECTIONS} control connections are open; try again"
                        ),
                    }));
                }
            }
        }
    };
    let grace = tokio::select! {
        g = stopped => g.unwrap_or(Duration::ZERO),
        () = accept => Duration::ZERO,
    };
    drop(listener);
    let _ = closing_tx.send(true);
    let until = tokio::time::Instant::now() + grace;
    while monitor.slots.available_permits() < MAX_CONNECTIONS && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A response as one line of JSON.
fn line(r: &Response) -> Vec<u8> {
    let mut text = serde_json::to_vec(r).unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    text
}

/// What reading a request gave.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// The request line, without its newline.
    Line(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
    /// Closed (or failed) before sending anything.
    Closed,
}

/// Read one request line, buffering at most [`MAX_REQUEST`] bytes. A line ended by
/// the end of the stream instead of a newline counts.
async fn read_request<R: AsyncRead + Unpin>(rd: &mut R) -> Read {
    let mut buf = Vec::new();
    const CHUNK: usize = 8192;
    let mut chunk = [0u8; CHUNK];
    loop {
        let room = MAX_REQUEST - buf.len();
        if room == 0 {
            return Read::TooLong;
        }
        // A failed read ends the request like a close.
        let n: usize = rd
            .read(&mut chunk[..room.min(CHUNK)])
            .await
            .unwrap_or_default();
        if n == 0 {
            return if buf.is_empty() {
                Read::Closed
            } else {
                Read::Line(buf)
            };
        }
        let got = &chunk[..n];
        if let Some(end) = got.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&got[..end]);
            return Read::Line(buf);
        }
        buf.extend_from_slice(got);
    }
}

/// One control connection: read one request, check the caller may make it, have
/// the node answer it (or follow the node, for a subscription), write the answer.
async fn connection(
    stream: tokio::net::UnixStream,
    sh: &Shared,
    m: &Monitor,
    closing: watch::Receiver<bool>,
) {
    let c = &*m.counters;
    let peer_uid = stream.peer_cred().map(|cred| cred.uid()).ok();
    let (mut rd, mut wr) = stream.into_split();
    // Read the request first in every case, so a refused caller gets its answer
    // instead of a broken pipe.
    let read = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut rd)).await {
        Ok(r) => r,
        Err(_) => {
            bump(&c.timed_out);
            return;
        }
    };
    let response = match read {
        Read::Closed => return,
        Read::TooLong => {
            bump(&c.oversize);
            Response::Error {
                message: format!(
                    "request longer than {MAX_REQUEST} bytes: refused, connection closed"
                ),
            }
        }
        Read::Line(bytes) => match serde_json::from_slice::<Request>(&bytes) {
            Ok(req) => {
                let permitted = match peer_uid {
                    Some(uid) => permit(uid, sh.daemon_uid, sh.feed.control_group.as_deref(), &req),
                    None => Err("permission denied: the caller's credentials are unknown".into()),
                };
                match permitted {
                    Err(message) => {
                        bump(&c.denied);
                        Response::Error { message }
                    }
                    Ok(()) => match req {
                        Request::Subscribe => match m.subscribers.clone().try_acquire_owned() {
                            Ok(permit) => {
                                bump(&c.subscribed);
                                subscription(rd, wr, &sh.feed, c, closing).await;
                                drop(permit);
                                return;
                            }
                            Err(_) => {
                                bump(&c.busy);
                                Response::Busy {
                                    message: format!(
                                        "busy: {MAX_SUBSCRIBERS} subscriptions are open; try again"
                                    ),
                                }
                            }
                        },
                        Request::Version => Response::Version {
                            protocol: PROTOCOL,
                            version: env!("CARGO_PKG_VERSION").to_string(),
                            node: sh.feed.node,
                            node_name: sh.feed.node_name.clone(),
                        },
                        req => {
                            let reloaded = match req {
                                Request::KeyReload => {
                                    Some(reload_config(Arc::new(sh.config_file.clone())).await)
                                }
                                _ => None,
                            };
                            ask(&sh.queue, req, reloaded, c).await
                        }
                    },
                }
            }
            Err(e) => {
                bump(&c.bad);
                Response::Error {
                    message: format!("bad request: {e}"),
                }
            }
        },
    };
    let text = line(&response);
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&text)).await {
        Ok(_) => {}
        Err(_) => bump(&c.timed_out),
    }
}

/// Why a subscription ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The client closed its end or a write failed.
    Gone,
    /// The client did not take a line within [`WRITE_TIMEOUT`].
    Slow,
    /// The server or the node stopped.
    Stopped,
}

/// Follow the node for one subscriber: the state now, then a line per change of
/// authority or view, until the client goes, stops reading, or the server stops.
async fn subscription<R, W>(
    mut rd: R,
    mut wr: W,
    feed: &Feed,
    c: &Counters,
    mut closing: watch::Receiver<bool>,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // Subscribe before reading the state, so that no change falls in between.
    let mut events = feed.events.subscribe();
    let authority = feed.authority.clone();
    let mut installed: Option<u64> = None;
    let mk = |event: &str, installed: Option<u64>| {
        let a = authority.borrow().clone();
        AuthorityLine::new(event, feed.node, &feed.node_name, a.as_ref(), installed)
    };
    let mut next = Some(mk("subscribe", None));
    let mut ignored = [0u8; 256];
    let ended = loop {
        if let Some(l) = next.take() {
            let mut text = serde_json::to_vec(&l).unwrap_or_else(|_| b"{}".to_vec());
            text.push(b'\n');
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&text)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break Ended::Gone,
                Err(_) => break Ended::Slow,
            }
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(crate::Event::Authority(a)) => {
                    next = Some(AuthorityLine::new(
                        crate::events::AUTHORITY_CHANGED,
                        feed.node,
                        &feed.node_name,
                        a.as_ref(),
                        installed,
                    ));
                }
                Ok(crate::Event::Fence(FenceEvent::ViewInstalled { view })) => {
                    installed = Some(view.generation.0);
                    next = Some(mk("view.installed", installed));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    next = Some(mk("subscribe.resync", installed));
                }
                Err(broadcast::error::RecvError::Closed) => break Ended::Stopped,
            },
            // Anything the client sends is ignored; its end of the stream means
            // it has gone.
            n = rd.read(&mut ignored) => if !matches!(n, Ok(k) if k > 0) {
                break Ended::Gone;
            },
            _ = closing.changed() => break Ended::Stopped,
        }
    };
    if ended == Ended::Slow {
        bump(&c.subscribers_dropped);
        info!(
            event = "control.subscriber_dropped",
            node = feed.node.0,
            "a subscriber did not take its line within {} s; dropped",
            WRITE_TIMEOUT.as_secs()
        );
    }
    ended
}

/// Read and check the config file again, on a blocking-pool thread.
async fn reload_config(path: Arc<PathBuf>) -> Result<Box<vigil::config::ClusterConfig>, String> {
    tokio::task::spawn_blocking(move || vigil::config::ClusterConfig::load(&path).map(Box::new))
        .await
        .map_err(|e| format!("reading the config file failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// Hand `req` to the node without waiting for room in its queue; its answer.
async fn ask(
    queue: &mpsc::Sender<Ctl>,
    req: Request,
    reloaded: Option<Result<Box<vigil::config::ClusterConfig>, String>>,
    c: &Counters,
) -> Response {
    let stopping = || Response::Error {
        message: "the daemon is stopping".into(),
    };
    let (tx, rx) = oneshot::channel();
    match queue.try_send(Ctl {
        req,
        reloaded,
        reply: tx,
    }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            bump(&c.busy);
            return Response::Busy {
                message: format!(
                    "busy: {} control requests are waiting for the node; try again",
                    queue.max_capacity()
                ),
            };
        }
        Err(mpsc::error::TrySendError::Closed(_)) => return stopping(),
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(r)) => {
            bump(&c.served);
            r
        }
        Ok(Err(_)) => stopping(),
        Err(_) => {
            bump(&c.timed_out);
            Response::Error {
                message: format!(
                    "the node did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Read {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut r = bytes;
        rt.block_on(read_request(&mut r))
    }

    #[test]
    fn a_request_is_read_up_to_the_bound_and_no_further() {
        assert_eq!(read(b""), Read::Closed);
        assert_eq!(read(b"{}\nmore"), Read::Line(b"{}".to_vec()));
        assert_eq!(read(b"{}"), Read::Line(b"{}".to_vec()));
        // At the bound, newline included: read whole.
        let mut at = vec![b' '; MAX_REQUEST - 1];
        at.push(b'\n');
        assert_eq!(read(&at), Read::Line(vec![b' '; MAX_REQUEST - 1]));
        // One byte over: refused.
        let mut over = vec![b' '; MAX_REQUEST];
        over.push(b'\n');
        assert_eq!(read(&over), Read::TooLong);
        assert_eq!(read(&vec![b'x'; 4 * MAX_REQUEST]), Read::TooLong);
    }

    #[test]
    fn a_full_node_queue_answers_busy_at_once_and_counts_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let c = Counters::default();
        let (tx, mut rx) = mpsc::channel::<Ctl>(1);
        let (reply, _keep) = oneshot::channel();
        tx.try_send(Ctl {
            req: Request::Status,
            reloaded: None,
            reply,
        })
        .expect("room for one");
        let r = rt.block_on(ask(&tx, Request::Status, None, &c));
        assert!(
            matches!(&r, Response::Busy { message } if message.contains("busy: 1 control requests are waiting")),
            "{r:?}"
        );
        assert_eq!(c.busy.load(Ordering::Relaxed), 1);
        // A node that has stopped answers "stopping", not busy.
        drop(rx.try_recv());
        drop(rx);
        let r = rt.block_on(ask(&tx, Request::Status, None, &c));
        assert!(
            matches!(&r, Response::Error { message } if message.contains("stopping")),
            "{r:?}"
        );
    }

    #[test]
    fn who_may_ask_what() {
        use Request::*;
        let all = [
            Status,
            Version,
            Subscribe,
            ManualSeed,
            Stop,
            KeyReload,
            Fault(FaultCmd::Show),
        ];
        let (daemon, other) = (1000, 1001);
        for req in &all {
            // Root and the daemon's user: anything, with or without a group.
            for group in [None, Some("watchers")] {
                assert_eq!(permit(0, daemon, group, req), Ok(()), "{req:?}");
                assert_eq!(permit(daemon, daemon, group, req), Ok(()), "{req:?}");
            }
            // Anyone else without a control group: nothing.
            let e = permit(other, daemon, None, req).expect_err("refused");
            assert!(e.contains("only root or the daemon's user"), "{e}");
            // A member of the control group: reading only.
            let r = permit(other, daemon, Some("watchers"), req);
            if req.is_read_only() {
                assert_eq!(r, Ok(()), "{req:?}");
            } else {
                let e = r.expect_err("a changing request is refused");
                assert!(
                    e.starts_with(&format!("permission denied: {}", req.name())),
                    "{e}"
                );
                assert!(e.contains("control group watchers may only read"), "{e}");
            }
        }
        assert!(Status.is_read_only() && Subscribe.is_read_only() && Version.is_read_only());
        assert!(!Stop.is_read_only() && !ManualSeed.is_read_only() && !KeyReload.is_read_only());
    }

    fn authority(token: u64, ids: &[u8], primary: u8) -> crate::Authority {
        use vigil_llt::types::{Generation, Incarnation};
        let members = ids
            .iter()
            .map(|&i| vigil_membership::Member {
                id: NodeId(i),
                incarnation: Incarnation(1),
                ports: vigil_membership::BUILTIN_PORTS,
            })
            .collect();
        crate::Authority {
            node: NodeId(1),
            token: Generation(token),
            view: vigil_membership::View::new(Generation(token), members, None),
            installed: Generation(token),
            primary: NodeId(primary),
            is_primary: primary == 1,
            valid_until: std::time::Instant::now() + Duration::from_secs(2),
        }
    }

    fn feed() -> (
        Feed,
        watch::Sender<Option<crate::Authority>>,
        broadcast::Sender<crate::Event>,
    ) {
        let (atx, arx) = watch::channel(None);
        let (etx, _) = broadcast::channel(8);
        let f = Feed {
            node: NodeId(1),
            node_name: "n1".into(),
            authority: arx,
            events: etx.clone(),
            control_group: None,
        };
        (f, atx, etx)
    }

    #[test]
    fn a_subscriber_gets_the_state_at_once_then_a_line_per_change() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (f, atx, etx) = feed();
            let c = Counters::default();
            let (client, server) = tokio::io::duplex(64 << 10);
            let (srd, swr) = tokio::io::split(server);
            let (_closing_tx, closing) = watch::channel(false);
            let (crd, mut cwr) = tokio::io::split(client);
            let mut lines = tokio::io::BufReader::new(crd).lines();
            use tokio::io::AsyncBufReadExt;
            async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
                lines: &mut tokio::io::Lines<R>,
            ) -> AuthorityLine {
                let l = lines.next_line().await.expect("read").expect("a line");
                serde_json::from_str::<AuthorityLine>(&l).expect("an authority line")
            }
            let reader = async {
                let first = next_line(&mut lines).await;
                assert_eq!(first.event, "subscribe");
                assert_eq!(first.protocol, PROTOCOL);
                assert!(!first.holds && first.token.is_none() && first.members.is_empty());
                let a = authority(7, &[0, 1, 2], 1);
                atx.send_replace(Some(a.clone()));
                etx.send(crate::Event::Authority(Some(a)))
                    .expect("a subscriber");
                let l = next_line(&mut lines).await;
                assert_eq!(l.event, "authority.changed");
                assert_eq!((l.token, l.client_generation), (Some(7), Some(7)));
                assert_eq!(l.members, vec![NodeId(0), NodeId(1), NodeId(2)]);
                assert!(l.holds && l.is_valid_primary() && l.valid_for_ms > 1000);
                assert_eq!(l.primary, Some(NodeId(1)));
                // Other events send nothing; a lag resends the state.
                for _ in 0..20 {
                    let _ = etx.send(crate::Event::Llt(vigil::node::LltEvent::Started));
                }
                let l = next_line(&mut lines).await;
                assert_eq!(l.event, "subscribe.resync");
                assert_eq!(l.token, Some(7));
                // The client closes its end: the subscription ends.
                cwr.shutdown().await.expect("shutdown");
            };
            let (ended, ()) = tokio::join!(subscription(srd, swr, &f, &c, closing), reader);
            assert_eq!(ended, Ended::Gone);
        });
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_dropped_and_counted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (f, atx, etx) = feed();
            let c = Counters::default();
            // Room for less than one line, and nobody reads.
            let (_client, server) = tokio::io::duplex(16);
            let (srd, swr) = tokio::io::split(server);
            let (_closing_tx, closing) = watch::channel(false);
            drop((atx, etx));
            let ended = subscription(srd, swr, &f, &c, closing).await;
            assert_eq!(ended, Ended::Slow);
            assert_eq!(c.subscribers_dropped.load(Ordering::Relaxed), 1);
        });
    }

    #[test]
    fn a_busy_answer_and_the_counters_round_trip() {
        let r: Response = serde_json::from_slice(&line(&Response::Busy {
            message: "busy".into(),
        }))
        .expect("parse");
        assert!(matches!(r, Response::Busy { .. }));
        let s: ControlStats = serde_json::from_str("{}").expect("all fields default");
        assert_eq!(s, ControlStats::default());
    }
}
