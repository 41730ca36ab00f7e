//! The control socket: a Unix stream socket (mode 0600, caller checked with
//! SO_PEERCRED) carrying one JSON request line and one JSON response line.
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

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::warn;
use vigil_llt::driver::DriverStats;
use vigil_llt::types::NodeId;

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
/// How long a client retries a request the daemon was too busy to take.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);
/// The nice value of the control thread: under CPU pressure the node's thread runs
/// first.
const CONTROL_NICE: i32 = 10;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// Make every write of the generation store take `ms` longer (0: as fast as
    /// the store goes), as a slow disk would.
    SlowStore { ms: u64 },
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
    /// Too many connections or queued requests: nothing was done; try again.
    Busy {
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
    /// Requests that were not JSON requests, or from a caller not allowed.
    pub bad: u64,
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
        Response::Done { .. } => Err(format!(
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
        Response::Status(_) => Err(format!(
            "{}: unexpected status answer to a command",
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
    pub req: Request,
    /// For [`Request::KeyReload`]: the config file as read again, on the control
    /// thread (a slow file system must not hold up heartbeats).
    pub reloaded: Option<Result<Box<vigil::config::ClusterConfig>, String>>,
    pub reply: oneshot::Sender<Response>,
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
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads the control socket's counters (cheap: a few atomic loads).
#[derive(Debug, Clone)]
pub struct Monitor {
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
}

impl Monitor {
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
    /// Serve `listener` (bound, mode 0600) on a thread of its own; requests go to
    /// `queue`, whose bound decides when the node is too busy.
    pub fn start(
        listener: std::os::unix::net::UnixListener,
        queue: mpsc::Sender<Ctl>,
        config_file: PathBuf,
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
        };
        let (stop, stopped) = oneshot::channel::<Duration>();
        let m = monitor.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-control".into())
            .spawn(move || {
                lower_priority();
                runtime.block_on(serve(listener, queue, Arc::new(config_file), m, stopped));
                // Dropping the runtime closes the connections still open.
            })
            .map_err(|e| format!("cannot start the control socket's thread: {e}"))?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
            monitor,
        })
    }

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

/// Run the calling thread (the control thread) at a lower priority than the node's.
fn lower_priority() {
    // SAFETY: setpriority takes no pointers; on Linux `who = 0` is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CONTROL_NICE) };
    if rc != 0 {
        warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the control thread's priority"
        );
    }
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    queue: mpsc::Sender<Ctl>,
    config_file: Arc<PathBuf>,
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
                    let (q, c) = (queue.clone(), monitor.counters.clone());
                    let f = config_file.clone();
                    tokio::spawn(async move {
                        connection(stream, q, f, &c).await;
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

/// One control connection: check the caller, read one request, have the node
/// answer it, write the answer.
async fn connection(
    stream: tokio::net::UnixStream,
    queue: mpsc::Sender<Ctl>,
    config_file: Arc<PathBuf>,
    c: &Counters,
) {
    let allowed = match stream.peer_cred() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Ok(cred) => cred.uid() == 0 || cred.uid() == unsafe { libc::geteuid() },
        Err(_) => false,
    };
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
        Read::Line(_) if !allowed => {
            bump(&c.bad);
            Response::Error {
                message:
                    "permission denied: only root or the daemon's user may use the control socket"
                        .into(),
            }
        }
        Read::Line(bytes) => match serde_json::from_slice::<Request>(&bytes) {
            Ok(req) => {
                let reloaded = match req {
                    Request::KeyReload => Some(reload_config(config_file).await),
                    _ => None,
                };
                ask(&queue, req, reloaded, c).await
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
