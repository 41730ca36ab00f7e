//! The Prometheus endpoint (`[metrics] listen`): `GET /metrics` in the text
//! exposition format 0.0.4, served on a thread of its own (`vigil-metrics`, nice
//! 10, its own current-thread runtime), never on the node's.
//!
//! A scrape asks the node for a status through the control queue, exactly as
//! `lltstat` does (bounded, answered a few per turn after timers and frames; a full
//! queue answers 503 at once), and renders that snapshot here; so the node does
//! no work while nobody scrapes, and what Prometheus sees is what `lltstat --json`
//! shows. The few counters that are not in the status (races won and lost) are
//! atomics the node bumps without waiting ([`Counters`]).
//!
//! The HTTP side is deliberately minimal: one request per connection (`Connection:
//! close`), `GET` or `HEAD` of `/metrics` and 404 for any other path, 405 for any
//! other method; at most [`MAX_CONNECTIONS`] at once (more are closed at once),
//! [`MAX_REQUEST`] bytes of request head, [`READ_TIMEOUT`] to send it and
//! [`WRITE_TIMEOUT`] to take the answer.
//!
//! The renderer ([`render`]) is written by hand rather than with a metrics crate:
//! the values already exist as one snapshot, so a registry of live metric objects
//! would only be filled from it and thrown away on every scrape; the format is a
//! few lines of text, and the tests parse it back.

use crate::control::{Ctl, DaemonStatus, Request, Response, ANSWER_TIMEOUT};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::warn;
use vigil_fence::{NodeState, RaceVerdict};
use vigil_llt::DropReason;
use vigil_llt::LinkState;

/// Most scrapes served at once; more connections are closed at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest request head read (request line and headers); a longer one is refused.
pub const MAX_REQUEST: usize = 8 << 10;
/// A connection whose request head has not arrived within this is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection that has not taken its answer within this is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters the node bumps (a relaxed atomic add, never a wait) for what its
/// status does not count.
#[derive(Debug, Default)]
pub struct Counters {
    /// Races this node ran as its side's racer and won.
    pub races_won: AtomicU64,
    /// Races this node ran, or waited for, and lost (it fences itself).
    pub races_lost: AtomicU64,
}

impl Counters {
    /// Count a fence event (races won and lost).
    pub fn fence_event(&self, e: &vigil_fence::FenceEvent) {
        match e {
            vigil_fence::FenceEvent::RaceWon { .. } => {
                self.races_won.fetch_add(1, Ordering::Relaxed);
            }
            vigil_fence::FenceEvent::RaceLost { .. } => {
                self.races_lost.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// What [`render`] renders besides the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra {
    /// [`Counters::races_won`].
    pub races_won: u64,
    /// [`Counters::races_lost`].
    pub races_lost: u64,
}

impl Extra {
    fn of(c: &Counters) -> Extra {
        Extra {
            races_won: c.races_won.load(Ordering::Relaxed),
            races_lost: c.races_lost.load(Ordering::Relaxed),
        }
    }
}

/// The text format, one family at a time: `# HELP`, `# TYPE`, then its samples,
/// each with the `node` label first.
struct Out<'a> {
    text: String,
    node: &'a str,
}

impl Out<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        self.text.push_str("{node=\"");
        escape_into(&mut self.text, self.node);
        self.text.push('"');
        for (k, v) in labels {
            let _ = write!(self.text, ",{k}=\"");
            escape_into(&mut self.text, v);
            self.text.push('"');
        }
        let _ = writeln!(self.text, "}} {value}");
    }

    /// A family with one sample and no labels but `node`.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn us(v: u64) -> f64 {
    v as f64 / 1e6
}

fn bool01(b: bool) -> u8 {
    u8::from(b)
}

const LINK_STATES: [(LinkState, &str); 3] = [
    (LinkState::Up, "up"),
    (LinkState::Trouble, "trouble"),
    (LinkState::Down, "down"),
];

const NODE_STATES: [(NodeState, &str); 5] = [
    (NodeState::Unseeded, "unseeded"),
    (NodeState::Member, "member"),
    (NodeState::Racing, "racing"),
    (NodeState::Left, "left"),
    (NodeState::Fenced, "fenced"),
];

const PROBE_STATES: [&str; 4] = ["ok", "failing", "failed", "pending"];

/// The status `s` (and `extra`) in the text exposition format 0.0.4. Every metric
/// is prefixed `vigil_` and labelled with `node` (this node's name); peers and
/// links are labelled by name (`peer`, `link`), drops by `reason`
/// ([`DropReason::name`]), probes by `probe`.
pub fn render(s: &DaemonStatus, extra: Extra) -> String {
    let mut o = Out {
        text: String::with_capacity(16 << 10),
        node: &s.node_name,
    };
    let peer_name = |id: vigil_llt::types::NodeId| -> String {
        s.nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| id.to_string(), |n| n.name.clone())
    };
    let llt = &s.node.llt;
    let fence = &s.node.fence;
    let now = s.now_ns;

    o.family(
        "vigil_info",
        "gauge",
        "Always 1: the cluster and this node's ID.",
    );
    let (id, cluster) = (s.local.0.to_string(), s.cluster_name.clone());
    o.sample(
        "vigil_info",
        &[("cluster", cluster.as_str()), ("node_id", id.as_str())],
        1,
    );
    o.one(
        "vigil_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        s.uptime_ms as f64 / 1e3,
    );

    // Peers and their links.
    o.family(
        "vigil_peer_up",
        "gauge",
        "1 while the peer is up (heard on at least one link).",
    );
    for p in &llt.peers {
        o.sample("vigil_peer_up", &[("peer", &peer_name(p.id))], bool01(p.up));
    }
    o.family(
        "vigil_peer_jeopardy",
        "gauge",
        "1 while the peer is up on a single link only.",
    );
    for p in &llt.peers {
        o.sample(
            "vigil_peer_jeopardy",
            &[("peer", &peer_name(p.id))],
            bool01(p.jeopardy),
        );
    }
    o.family(
        "vigil_peer_link_state",
        "gauge",
        "1 for the state (up, trouble, down) the peer is in on the link, 0 for the others.",
    );
    for p in &llt.peers {
        let peer = peer_name(p.id);
        for l in &p.links {
            for (st, word) in LINK_STATES {
                o.sample(
                    "vigil_peer_link_state",
                    &[("peer", &peer), ("link", &l.name), ("state", word)],
                    bool01(l.state == st),
                );
            }
        }
    }
    o.family(
        "vigil_peer_link_rtt_seconds",
        "gauge",
        "Smoothed round-trip time to the peer on the link (absent until measured).",
    );
    for p in &llt.peers {
        let peer = peer_name(p.id);
        for l in &p.links {
            if let Some(rtt) = l.srtt_us.or(l.rtt_us) {
                o.sample(
                    "vigil_peer_link_rtt_seconds",
                    &[("peer", &peer), ("link", &l.name)],
                    us(rtt),
                );
            }
        }
    }
    type PeerLinkCounter = fn(&vigil_llt::stats::PeerLinkStats) -> u64;
    let per_peer_link: [(&str, &str, PeerLinkCounter); 5] = [
        (
            "vigil_peer_link_frames_in_total",
            "Frames received from the peer on the link.",
            |c| c.frames_in,
        ),
        (
            "vigil_peer_link_frames_out_total",
            "Frames sent to the peer on the link.",
            |c| c.frames_out,
        ),
        (
            "vigil_peer_link_bytes_in_total",
            "Bytes received from the peer on the link.",
            |c| c.bytes_in,
        ),
        (
            "vigil_peer_link_bytes_out_total",
            "Bytes sent to the peer on the link.",
            |c| c.bytes_out,
        ),
        (
            "vigil_peer_link_state_changes_total",
            "Transitions between up, trouble and down of the peer on the link.",
            |c| c.state_changes,
        ),
    ];
    for (name, help, get) in per_peer_link {
        o.family(name, "counter", help);
        for p in &llt.peers {
            let peer = peer_name(p.id);
            for l in &p.links {
                o.sample(name, &[("peer", &peer), ("link", &l.name)], get(&l.stats));
            }
        }
    }

    // Links, all peers together.
    type LinkCounter = fn(&vigil_llt::stats::LinkStats) -> u64;
    let per_link: [(&str, &str, LinkCounter); 5] = [
        (
            "vigil_link_frames_in_total",
            "Frames received on the link.",
            |c| c.frames_in,
        ),
        (
            "vigil_link_frames_accepted_total",
            "Frames received on the link that passed every check.",
            |c| c.frames_accepted,
        ),
        (
            "vigil_link_frames_out_total",
            "Frames sent on the link.",
            |c| c.frames_out,
        ),
        (
            "vigil_link_bytes_in_total",
            "Bytes received on the link.",
            |c| c.bytes_in,
        ),
        (
            "vigil_link_bytes_out_total",
            "Bytes sent on the link.",
            |c| c.bytes_out,
        ),
    ];
    for (name, help, get) in per_link {
        o.family(name, "counter", help);
        for l in &llt.links {
            o.sample(name, &[("link", &l.name)], get(&l.stats));
        }
    }
    o.family(
        "vigil_link_drops_total",
        "counter",
        "Received frames dropped, by reason (every drop under exactly one).",
    );
    for l in &llt.links {
        for r in DropReason::ALL {
            o.sample(
                "vigil_link_drops_total",
                &[("link", &l.name), ("reason", r.name())],
                l.stats.drops.get(r),
            );
        }
    }
    o.family(
        "vigil_link_rx_queue_full_total",
        "counter",
        "Frames read from the link and dropped because the node's queue was full.",
    );
    for l in &s.links {
        o.sample(
            "vigil_link_rx_queue_full_total",
            &[("link", &l.name)],
            l.driver.rx_queue_full,
        );
    }
    o.family(
        "vigil_link_tx_errors_total",
        "counter",
        "Sends on the link that failed.",
    );
    for l in &s.links {
        o.sample(
            "vigil_link_tx_errors_total",
            &[("link", &l.name)],
            l.driver.tx_errors,
        );
    }

    // Heartbeat pacing and stalls.
    let hb = &llt.heartbeat;
    o.one(
        "vigil_heartbeat_interval_seconds",
        "gauge",
        "The configured heartbeat interval.",
        us(hb.interval_us),
    );
    o.one(
        "vigil_heartbeat_gap_p50_seconds",
        "gauge",
        "Median gap between heartbeat rounds (last 4096 gaps).",
        us(hb.p50_us),
    );
    o.one(
        "vigil_heartbeat_gap_p99_seconds",
        "gauge",
        "99th percentile gap between heartbeat rounds (last 4096 gaps).",
        us(hb.p99_us),
    );
    o.one(
        "vigil_heartbeat_gap_max_seconds",
        "gauge",
        "Largest gap between heartbeat rounds since start.",
        us(hb.max_us),
    );
    o.one(
        "vigil_heartbeat_gaps_total",
        "counter",
        "Gaps between heartbeat rounds measured since start.",
        hb.count,
    );
    let st = &s.node.health.stalls;
    o.one(
        "vigil_stalls_total",
        "counter",
        "Times the node was not running for longer than timers.stall_report.",
        st.count,
    );
    o.one(
        "vigil_stall_worst_seconds",
        "gauge",
        "The longest stall since start.",
        secs(st.worst),
    );
    o.one(
        "vigil_stall_seconds_total",
        "counter",
        "Time lost in stalls longer than timers.stall_report.",
        secs(st.total),
    );

    // Membership, authority, the primary.
    o.family(
        "vigil_member_state",
        "gauge",
        "1 for what the node is doing (unseeded, member, racing, left, fenced), 0 for the rest.",
    );
    for (state, word) in NODE_STATES {
        o.sample(
            "vigil_member_state",
            &[("state", word)],
            bool01(fence.state == state),
        );
    }
    let gen_of = |v: &Option<vigil_membership::View>| v.as_ref().map_or(0, |v| v.generation.0);
    o.one(
        "vigil_generation",
        "gauge",
        "Generation of the view installed here (0: none yet).",
        gen_of(&fence.installed),
    );
    o.one(
        "vigil_client_generation",
        "gauge",
        "Generation of the view clients see (0: none yet).",
        gen_of(&fence.client_view),
    );
    o.one(
        "vigil_highest_generation",
        "gauge",
        "Highest generation this node has seen or promised.",
        fence.highest_generation.0,
    );
    o.one(
        "vigil_view_members",
        "gauge",
        "Members of the view installed here.",
        fence.installed.as_ref().map_or(0, |v| v.members.len()),
    );
    let auth = s.node.authority.as_ref();
    o.one(
        "vigil_authority",
        "gauge",
        "1 while this node holds authority (a member of a quorate view with a live lease).",
        bool01(auth.is_some()),
    );
    o.one(
        "vigil_fencing_token",
        "gauge",
        "The fencing token clients present to storage (0 without authority).",
        auth.map_or(0, |a| a.token.0),
    );
    o.one(
        "vigil_lease_remaining_seconds",
        "gauge",
        "Seconds until the authority's lease lapses unless renewed (0 without authority).",
        fence
            .lease_until
            .filter(|_| auth.is_some())
            .map_or(0.0, |t| {
                Duration::from_nanos(t.as_nanos().saturating_sub(now)).as_secs_f64()
            }),
    );
    o.one(
        "vigil_is_primary",
        "gauge",
        "1 while this node holds authority and is the primary of the client view.",
        bool01(auth.is_some_and(|a| a.is_primary)),
    );
    o.family(
        "vigil_primary",
        "gauge",
        "1, labelled with the primary of the client view, while this node holds authority.",
    );
    if let Some(a) = auth {
        o.sample("vigil_primary", &[("primary", &peer_name(a.primary))], 1);
    }
    o.one(
        "vigil_races_won_total",
        "counter",
        "Races for a view that this node ran as its side's racer and won.",
        extra.races_won,
    );
    o.one(
        "vigil_races_lost_total",
        "counter",
        "Races for a view that this node lost (it fenced itself).",
        extra.races_lost,
    );
    o.family(
        "vigil_last_race_duration_seconds",
        "gauge",
        "How long the last race took (absent before the first, or while one runs).",
    );
    if let Some(r) = &fence.last_race {
        if let (Some(d), true) = (r.duration, r.verdict != RaceVerdict::Running) {
            o.sample("vigil_last_race_duration_seconds", &[], secs(d));
        }
    }

    // Health probes.
    o.family(
        "vigil_probe_state",
        "gauge",
        "1 for the probe's state (ok, failing, failed, pending), 0 for the others.",
    );
    for p in &s.node.health.probes {
        for word in PROBE_STATES {
            o.sample(
                "vigil_probe_state",
                &[("probe", &p.spec.name), ("state", word)],
                bool01(p.state == word),
            );
        }
    }
    o.family("vigil_probe_runs_total", "counter", "Runs of the probe.");
    for p in &s.node.health.probes {
        o.sample("vigil_probe_runs_total", &[("probe", &p.spec.name)], p.runs);
    }
    o.family(
        "vigil_probe_failures_total",
        "counter",
        "Failed runs of the probe.",
    );
    for p in &s.node.health.probes {
        o.sample(
            "vigil_probe_failures_total",
            &[("probe", &p.spec.name)],
            p.failures,
        );
    }

    // The daemon itself.
    o.one(
        "vigil_log_lines_lost_total",
        "counter",
        "Log lines dropped because the log writer was behind.",
        s.log_lines_lost,
    );
    let c = &s.control;
    o.one(
        "vigil_control_connections_open",
        "gauge",
        "Control socket connections open now.",
        c.open,
    );
    o.one(
        "vigil_control_subscribers",
        "gauge",
        "Control socket subscriptions open now.",
        c.subscribers,
    );
    let control: [(&str, &str, u64); 9] = [
        ("accepted", "Control connections taken.", c.accepted),
        ("served", "Control requests the node answered.", c.served),
        (
            "refused",
            "Control connections refused: the bound was reached.",
            c.refused,
        ),
        (
            "oversize",
            "Control requests longer than the bound.",
            c.oversize,
        ),
        (
            "timed_out",
            "Control connections closed for slowness.",
            c.timed_out,
        ),
        (
            "busy",
            "Control requests answered busy: the node's queue was full.",
            c.busy,
        ),
        ("bad", "Control requests that were not requests.", c.bad),
        (
            "denied",
            "Control requests refused to the caller.",
            c.denied,
        ),
        (
            "subscribers_dropped",
            "Subscribers dropped for not taking lines.",
            c.subscribers_dropped,
        ),
    ];
    for (what, help, v) in control {
        let name = format!("vigil_control_{what}_total");
        o.one(&name, "counter", help, v);
    }
    o.text
}

/// The Prometheus endpoint's server: a thread with its own runtime. Dropping it
/// stops it.
#[derive(Debug)]
pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    local: SocketAddr,
}

impl Server {
    /// Bind `listen` (so a taken address fails the start) and serve it on a thread
    /// of its own; statuses are asked through `queue`, as control requests are.
    pub fn start(
        listen: SocketAddr,
        queue: mpsc::Sender<Ctl>,
        counters: Arc<Counters>,
    ) -> Result<Server, String> {
        let what = |e: std::io::Error| format!("metrics.listen {listen}: {e}");
        let listener = std::net::TcpListener::bind(listen).map_err(what)?;
        listener.set_nonblocking(true).map_err(what)?;
        let local = listener.local_addr().map_err(what)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the metrics endpoint's runtime: {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vigil-metrics".into())
            .spawn(move || {
                crate::control::lower_priority();
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(
                                event = "metrics.failed",
                                ts_us = crate::logging::wall_us(),
                                "metrics endpoint: {e}"
                            );
                            return;
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept(listener, queue, counters) => {}
                    }
                });
            })
            .map_err(|e| format!("cannot start the metrics endpoint's thread: {e}"))?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
            local,
        })
    }

    /// The address served (the configured one, with the port the system chose if
    /// it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    queue: mpsc::Sender<Ctl>,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            // Out of file descriptors or the like: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Over the bound: closed at once (dropped).
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (queue, counters) = (queue.clone(), counters.clone());
        tokio::spawn(async move {
            let _slot = slot;
            serve_one(conn, &queue, &counters).await;
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// `GET /metrics` (`head`: `HEAD`, no body).
    Metrics {
        head: bool,
    },
    NotFound,
    BadMethod,
    Bad,
}

/// The request line of `head` (bytes up to the blank line).
fn parse_head(head: &[u8]) -> Asked {
    let Some(line) = head
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return Asked::Bad;
    };
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") || words.next().is_some() {
        return Asked::Bad;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Asked::BadMethod,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Asked::Metrics { head }
    } else {
        Asked::NotFound
    }
}

fn response(status: &str, content_type: &str, body: &str, head: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        r.push_str("Allow: GET, HEAD\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    if !head {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

async fn serve_one(mut conn: tokio::net::TcpStream, queue: &mpsc::Sender<Ctl>, c: &Counters) {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return true;
            }
            if buf.len() >= MAX_REQUEST {
                return false;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n.min(MAX_REQUEST - buf.len())]),
            }
        }
    })
    .await;
    let text = "text/plain; charset=utf-8";
    let answer = match read {
        Ok(true) => match parse_head(&buf) {
            Asked::Metrics { head } => match ask(queue).await {
                Ok(status) => {
                    let body = render(&status, Extra::of(c));
                    response("200 OK", CONTENT_TYPE, &body, head)
                }
                Err(why) => response("503 Service Unavailable", text, &why, head),
            },
            Asked::NotFound => response("404 Not Found", text, "only /metrics is here\n", false),
            Asked::BadMethod => response("405 Method Not Allowed", text, "GET only\n", false),
            Asked::Bad => response("400 Bad Request", text, "not an HTTP/1 request\n", false),
        },
        Ok(false) if buf.len() >= MAX_REQUEST => {
            response("431 Request Header Fields Too Large", text, "", false)
        }
        // Closed, or too slow: nothing to answer.
        _ => return,
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = conn.write_all(&answer).await;
        let _ = conn.shutdown().await;
    })
    .await;
}

/// A status from the node, through the control queue; why not, for a 503.
async fn ask(queue: &mpsc::Sender<Ctl>) -> Result<Box<DaemonStatus>, String> {
    let (reply, answer) = oneshot::channel();
    let ctl = Ctl {
        req: Request::Status,
        reloaded: None,
        reply,
    };
    if let Err(e) = queue.try_send(ctl) {
        return Err(match e {
            mpsc::error::TrySendError::Full(_) => "the node is busy; try again\n".into(),
            mpsc::error::TrySendError::Closed(_) => "the node has stopped\n".into(),
        });
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(Response::Status(s))) => Ok(s),
        Ok(Ok(other)) => Err(format!("unexpected answer from the node: {other:?}\n")),
        Ok(Err(_)) => Err("the node has stopped\n".into()),
        Err(_) => Err("the node did not answer in time\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;

    fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("an answer");
        answer
    }

    /// The text format's rules that matter to a scraper: every sample's family was
    /// announced by `# TYPE` just before its samples, a family's samples are
    /// together, no family twice, every value a number.
    fn check_format(body: &str) {
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut w = rest.split(' ');
                let name = w.next().unwrap().to_string();
                assert!(
                    matches!(w.next(), Some("gauge" | "counter")),
                    "type of {line}"
                );
                assert!(name.starts_with("vigil_"), "{name}");
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (name, rest) = line.split_once('{').expect("labels");
            assert_eq!(name, current, "{line} outside its family");
            let (labels, value) = rest.rsplit_once("} ").expect("a value");
            assert!(labels.starts_with("node=\"n0\""), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
        assert!(seen.len() > 40, "only {} families", seen.len());
    }

    /// A lone node with `[metrics]` and no control socket: the endpoint serves its
    /// status in the text format, and nothing but `/metrics`.
    #[test]
    fn a_lone_node_serves_its_metrics() {
        let dir = std::env::temp_dir().join(format!("vigil-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        f.write_all(&[7u8; 32]).unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let text = format!(
            "[cluster]\nname = \"m\"\nid = 1\nkey_file = \"{key}\"\nstate_dir = \"{dir}\"\n\
             [timers]\nheartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 250\npeer_inactive = 500\n\
             [[links]]\nname = \"a\"\nkind = \"udp\"\n\
             [[nodes]]\nid = 0\nname = \"n0\"\n[nodes.links]\na = \"127.0.0.1:{port}\"\n\
             [metrics]\nlisten = \"{http}\"\n",
            key = key.display(),
            dir = dir.display()
        );
        let cfg = crate::ClusterConfig::parse(&text, &dir.join("cluster.toml")).unwrap();
        let options = crate::Options {
            control_socket: crate::ControlSocket::Off,
            realtime: false,
            ..crate::Options::default()
        };
        let node = crate::start(cfg, "n0", options).expect("the node starts");
        let mut body = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !body.contains("\nvigil_authority{node=\"n0\"} 1\n") {
            assert!(
                std::time::Instant::now() < deadline,
                "no authority:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(50));
            let answer = http_get(http, "/metrics");
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.contains(CONTENT_TYPE), "{answer}");
            body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
        }
        check_format(&body);
        assert!(
            body.contains("\nvigil_generation{node=\"n0\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("\nvigil_is_primary{node=\"n0\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("\nvigil_link_drops_total{node=\"n0\",link=\"a\",reason=\"auth\"} 0\n"),
            "{body}"
        );
        assert!(http_get(http, "/").starts_with("HTTP/1.1 404 "));
        node.shutdown();
        assert_eq!(node.join(), crate::Ending::Stopped);
        // Stopped with the node: the port is free again.
        assert!(std::net::TcpListener::bind(http).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Asked::Metrics { head: false }
        );
        assert_eq!(
            parse_head(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Asked::Metrics { head: true }
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Asked::NotFound);
        assert_eq!(
            parse_head(b"GET /metricsx HTTP/1.1\r\n\r\n"),
            Asked::NotFound
        );
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Asked::BadMethod
        );
        assert_eq!(parse_head(b"GET /metrics\r\n\r\n"), Asked::Bad);
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Asked::Bad);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = String::from_utf8(response("200 OK", CONTENT_TYPE, "x 1\n", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 4\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nx 1\n"), "{r}");
        let r = String::from_utf8(response("200 OK", CONTENT_TYPE, "x 1\n", true)).unwrap();
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        let r = String::from_utf8(response("405 Method Not Allowed", "t", "", false)).unwrap();
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
    }
}
