//! `vigil daemon`: the thin tokio driver around the sans-IO `Node`.
//!
//! One task owns the `Node`. Link readers feed one bounded channel; control
//! connections send requests through another. The loop sleeps until the node's next
//! absolute deadline, so heartbeats keep time against the clock.

use crate::control::{self, DaemonStatus, LinkInfo, NodeInfo, Request, Response, TimersInfo};
use crate::exit;
use crate::logging::{self, wall_us, LogFormat};
use clap::Args;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use vigil::config::{ClusterConfig, LinkKind, NodeConfig, NodeLinkAddr};
use vigil::node::{LltEvent, Node, Output};
use vigil_llt::driver::{EtherLink, Link, RxFrame, UdpLink};
use vigil_llt::types::{Incarnation, Instant, LinkAddr, LinkId, NodeId};

/// Bound on frames queued between the link readers and the node.
const RX_QUEUE: usize = 4096;
/// Bound on control requests queued for the node.
const CTL_QUEUE: usize = 64;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The cluster configuration (TOML).
    #[arg(long, value_name = "FILE", default_value = "/etc/vigil/cluster.toml")]
    pub config: PathBuf,
    /// This node's name in the configuration.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Control socket path (default: from the configuration).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

pub fn run(args: DaemonArgs) -> u8 {
    logging::init(args.log_format);
    let cfg = match ClusterConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            error!(event = "daemon.config_error", ts_us = wall_us(), "{e}");
            eprintln!("vigil daemon: {e}");
            return exit::FAILURE;
        }
    };
    let Some(me) = cfg.node_by_name(&args.node).cloned() else {
        let names: Vec<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "vigil daemon: {}: no node named {:?} (nodes: {})",
            args.config.display(),
            args.node,
            names.join(", ")
        );
        return exit::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigil daemon: cannot start the runtime: {e}");
            return exit::FAILURE;
        }
    };
    let socket = args.socket.clone().unwrap_or_else(|| cfg.socket_path(&me));
    match runtime.block_on(serve(cfg, me, args.config, socket)) {
        Ok(code) => code,
        Err(e) => {
            error!(event = "daemon.failed", ts_us = wall_us(), "{e}");
            eprintln!("vigil daemon: {e}");
            exit::FAILURE
        }
    }
}

/// An incarnation that grows across restarts: start time in microseconds, with
/// random low bits so two processes started in the same microsecond differ.
fn fresh_incarnation() -> Incarnation {
    let r: u8 = rand::random();
    Incarnation((wall_us() << 8) | u64::from(r) | 1)
}

struct Ctl {
    req: Request,
    reply: oneshot::Sender<Response>,
}

struct Running {
    cfg: ClusterConfig,
    me: NodeConfig,
    config_file: PathBuf,
    links: Vec<Link>,
    origin: std::time::Instant,
    node: Node,
    last_now: Instant,
}

impl Running {
    fn now(&mut self) -> Instant {
        let now = Instant::from_nanos(self.origin.elapsed().as_nanos() as u64);
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn peer_name(&self, id: NodeId) -> &str {
        self.cfg.node(id).map_or("?", |n| n.name.as_str())
    }

    fn link_name(&self, link: LinkId) -> &str {
        self.cfg
            .links
            .get(link.index())
            .map_or("?", |l| l.name.as_str())
    }

    /// Carry out everything the node produced.
    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Transmit(tx) => {
                    let Some(link) = self.links.get(tx.link.index()) else {
                        continue;
                    };
                    let to = match tx.to {
                        // One frame to every node: broadcast links only.
                        None => None,
                        Some(to) => {
                            match self.cfg.node(to).and_then(|n| n.links.get(tx.link.index())) {
                                Some(NodeLinkAddr::Udp { addr, .. }) => Some(LinkAddr::Udp(*addr)),
                                Some(NodeLinkAddr::Ether { .. }) => tx.addr,
                                None => continue,
                            }
                        }
                    };
                    if let Err(e) = link.send(to, &tx.bytes) {
                        tracing::debug!(link = %tx.link, error = %e, "send failed");
                    }
                }
                Output::Deliver(_) => {}
                Output::Llt(e) => self.log_event(e),
            }
        }
    }

    /// A link state change: one line with the stable event name, peer and link.
    fn log_link(
        &self,
        warning: bool,
        event: &'static str,
        peer: NodeId,
        link: LinkId,
        state: &str,
    ) {
        let (ts, peer_name, link) = (wall_us(), self.peer_name(peer), self.link_name(link));
        if warning {
            warn!(
                event,
                ts_us = ts,
                peer = peer.0,
                peer_name,
                link,
                "link {state}"
            );
        } else {
            info!(
                event,
                ts_us = ts,
                peer = peer.0,
                peer_name,
                link,
                "link {state}"
            );
        }
    }

    fn log_event(&self, e: LltEvent) {
        let ts = wall_us();
        match e {
            LltEvent::Started => {
                info!(event = "llt.started", ts_us = ts, node = %self.me.id, incarnation = %self.node.incarnation(), "listening window passed; sending heartbeats")
            }
            LltEvent::LinkUp { peer, link } => self.log_link(false, "link.up", peer, link, "UP"),
            LltEvent::LinkTrouble { peer, link } => {
                self.log_link(true, "link.trouble", peer, link, "TROUBLE")
            }
            LltEvent::LinkDown { peer, link } => {
                self.log_link(true, "link.down", peer, link, "DOWN")
            }
            LltEvent::PeerUp { peer, incarnation } => {
                info!(event = "peer.up", ts_us = ts, peer = peer.0, peer_name = self.peer_name(peer), incarnation = %incarnation, "peer UP")
            }
            LltEvent::PeerDown { peer } => warn!(
                event = "peer.down",
                ts_us = ts,
                peer = peer.0,
                peer_name = self.peer_name(peer),
                "peer DOWN: every link silent"
            ),
            LltEvent::PeerRestarted { peer, old, new } => {
                info!(event = "peer.restarted", ts_us = ts, peer = peer.0, peer_name = self.peer_name(peer), old = %old, new = %new, "peer restarted with a new incarnation")
            }
            LltEvent::JeopardyEntered { peer, link } => warn!(
                event = "jeopardy.entered",
                ts_us = ts,
                peer = peer.0,
                peer_name = self.peer_name(peer),
                link = self.link_name(link),
                "peer in jeopardy: one link left"
            ),
            LltEvent::JeopardyCleared { peer } => info!(
                event = "jeopardy.cleared",
                ts_us = ts,
                peer = peer.0,
                peer_name = self.peer_name(peer),
                "peer out of jeopardy"
            ),
            LltEvent::DuplicateNodeId { link, incarnation } => {
                error!(event = "node.duplicate_id", ts_us = ts, node = self.me.id.0, link = self.link_name(link), other_incarnation = %incarnation, "another live process uses node ID {}", self.me.id)
            }
        }
    }

    fn status(&mut self) -> DaemonStatus {
        let now = self.now();
        let t = &self.cfg.timers;
        DaemonStatus {
            cluster_name: self.cfg.cluster.name.clone(),
            cluster_id: self.cfg.cluster.id.0,
            local: self.me.id,
            node_name: self.me.name.clone(),
            pid: std::process::id(),
            config_file: self.config_file.clone(),
            authenticated: self.cfg.cluster.key.is_some(),
            uptime_ms: self.origin.elapsed().as_millis() as u64,
            now_ns: now.as_nanos(),
            timers: TimersInfo {
                heartbeat_ms: t.heartbeat.as_millis() as u64,
                heartbeat_lowpri_ms: t.heartbeat_lowpri.as_millis() as u64,
                peer_trouble_ms: t.peer_trouble.as_millis() as u64,
                peer_inactive_ms: t.peer_inactive.as_millis() as u64,
                link_up_count: t.link_up_count,
            },
            links: self
                .cfg
                .links
                .iter()
                .zip(&self.links)
                .map(|(lc, drv)| LinkInfo {
                    id: lc.id.0,
                    name: lc.name.clone(),
                    kind: lc.kind.to_string(),
                    priority: format!("{:?}", lc.priority).to_lowercase(),
                    local_address: match (drv.local_addr(), &self.me.links[lc.id.index()]) {
                        (LinkAddr::Ether(_), NodeLinkAddr::Ether { interface }) => {
                            format!("{interface} {}", drv.local_addr())
                        }
                        (a, _) => a.to_string(),
                    },
                    driver: drv.stats(),
                })
                .collect(),
            nodes: self
                .cfg
                .nodes
                .iter()
                .map(|n| NodeInfo {
                    id: n.id,
                    name: n.name.clone(),
                    addresses: n
                        .links
                        .iter()
                        .map(|a| match a {
                            NodeLinkAddr::Udp { addr, .. } => addr.to_string(),
                            NodeLinkAddr::Ether { interface } => interface.clone(),
                        })
                        .collect(),
                })
                .collect(),
            node: self.node.status(),
        }
    }
}

fn open_links(
    cfg: &ClusterConfig,
    me: &NodeConfig,
    rx: &mpsc::Sender<RxFrame>,
) -> Result<Vec<Link>, String> {
    let mut links = Vec::new();
    for lc in &cfg.links {
        let link = match (&me.links[lc.id.index()], lc.kind) {
            (NodeLinkAddr::Udp { addr, interface }, LinkKind::Udp | LinkKind::Udp6) => {
                UdpLink::open(lc.id, *addr, interface.as_deref(), lc.dscp, rx.clone())
                    .map(Link::Udp)
            }
            (NodeLinkAddr::Ether { interface }, LinkKind::Ether) => {
                EtherLink::open(lc.id, interface, lc.ethertype, rx.clone()).map(Link::Ether)
            }
            _ => return Err(format!("link {}: address does not match its kind", lc.name)),
        };
        let link = link.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "; is another vigil daemon already running as node {}?",
                    me.name
                )
            } else {
                String::new()
            };
            format!("link {} ({}): {e}{hint}", lc.name, lc.kind)
        })?;
        links.push(link);
    }
    Ok(links)
}

/// Bind the control socket: refuse if a live daemon answers on it, replace a stale one.
fn bind_control(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "control socket {} is in use by a running daemon",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set mode 0600 on {}: {e}", path.display()))?;
    Ok(listener)
}

/// One control connection: check the caller, read one request, answer it.
async fn control_conn(stream: UnixStream, ctl: mpsc::Sender<Ctl>) {
    let allowed = match stream.peer_cred() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Ok(cred) => cred.uid() == 0 || cred.uid() == unsafe { libc::geteuid() },
        Err(_) => false,
    };
    let (rd, mut wr) = stream.into_split();
    // Read the request first in every case, so a refused caller gets its answer
    // instead of a broken pipe.
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(rd, control::MAX_LINE as u64));
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        return;
    }
    let response = if !allowed {
        Response::Error {
            message: "permission denied: only root or the daemon's user may use the control socket"
                .into(),
        }
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if ctl.send(Ctl { req, reply: tx }).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        }
    };
    if let Ok(mut text) = serde_json::to_string(&response) {
        text.push('\n');
        let _ = wr.write_all(text.as_bytes()).await;
    }
}

async fn serve(
    cfg: ClusterConfig,
    me: NodeConfig,
    config_file: PathBuf,
    socket: PathBuf,
) -> Result<u8, String> {
    let origin = std::time::Instant::now();
    let incarnation = fresh_incarnation();
    let (rx_tx, mut rx) = mpsc::channel::<RxFrame>(RX_QUEUE);
    let listener = bind_control(&socket)?;
    let links = open_links(&cfg, &me, &rx_tx)?;
    drop(rx_tx);
    let node = Node::new(
        cfg.llt_config(),
        me.id,
        incarnation,
        Instant::ZERO,
        rand::random(),
    )
    .map_err(|e| e.to_string())?;
    info!(
        event = "daemon.started",
        ts_us = wall_us(),
        node = me.id.0,
        name = %me.name,
        cluster = %cfg.cluster.name,
        incarnation = %incarnation,
        socket = %socket.display(),
        "listening for {} ms before sending",
        cfg.llt_config().listen_window.as_millis()
    );
    let mut run = Running {
        cfg,
        me,
        config_file,
        links,
        origin,
        node,
        last_now: Instant::ZERO,
    };
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Ctl>(CTL_QUEUE);
    let accept = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(control_conn(stream, ctl_tx.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let code = loop {
        run.drain();
        if run.node.refused() {
            error!(
                event = "daemon.refused",
                ts_us = wall_us(),
                node = run.me.id.0,
                "node ID {} is already in use by a live node; refusing to start",
                run.me.id
            );
            eprintln!(
                "vigil daemon: node ID {} ({}) is already in use by a live node in cluster {}; refusing to start",
                run.me.id, run.me.name, run.cfg.cluster.name
            );
            break exit::DUPLICATE_NODE;
        }
        let deadline = run
            .node
            .poll_timeout()
            .map(|t| run.origin + Duration::from_nanos(t.as_nanos()));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = sigterm.recv() => break exit::OK,
            _ = sigint.recv() => break exit::OK,
            _ = sleep => {
                let now = run.now();
                run.node.handle_timeout(now);
            }
            Some(frame) = rx.recv() => {
                let now = run.now();
                run.node.handle_frame(now, frame.link, Some(frame.from), &frame.bytes);
                // Take whatever else is already queued before going round again.
                let mut more = 0;
                while more < 256 {
                    let Ok(f) = rx.try_recv() else { break };
                    let now = run.now();
                    run.node.handle_frame(now, f.link, Some(f.from), &f.bytes);
                    more += 1;
                }
            }
            Some(ctl) = ctl_rx.recv() => {
                let response = match ctl.req {
                    Request::Status => Response::Status(Box::new(run.status())),
                };
                let _ = ctl.reply.send(response);
            }
        }
    };
    accept.abort();
    let _ = std::fs::remove_file(&socket);
    info!(
        event = "daemon.stopped",
        ts_us = wall_us(),
        node = run.me.id.0,
        code,
        "daemon stopped"
    );
    Ok(code)
}
