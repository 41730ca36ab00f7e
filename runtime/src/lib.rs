//! # vigil-runtime: run a vigil node on real links
//!
//! `vigil` (the root crate) is the sans-IO state machine of a node: llt, views, the
//! majority race, leases. This crate runs it: it opens the UDP and Ethernet links
//! the configuration names, drives the node's timers, carries out its outputs in
//! order (a generation is durable before anything that depends on it, while
//! heartbeats keep their schedule), runs the health probes, tends the watchdog,
//! serves the control socket that `lltstat`, `gabconfig`, `fenceadm` and
//! `vigil watch` talk to, and carries out the self-fence action. The `vigil daemon`
//! command is a thin wrapper over [`start`]; an HA daemon embeds a node the same
//! way.
//!
//! What an embedder gets is a [`NodeHandle`]: the current [`Authority`] as a
//! watchable value (the view, the fencing token, the primary, and until when it is
//! valid on the monotonic clock), a stream of [`Event`]s under their stable names,
//! the status, and a graceful leave.
//!
//! A one-node cluster on loopback, started, watched and stopped (a real cluster
//! has every node run the same configuration with its own node name):
//!
//! ```
//! use std::os::unix::fs::OpenOptionsExt;
//! use std::time::Duration;
//! use vigil_runtime::{ClusterConfig, ControlSocket, Options};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("vigil-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! // The cluster key: 32 random bytes that only the daemon's user may read
//! // (`vigil keygen` makes one); fixed bytes will do for this example.
//! let key = dir.join("cluster.key");
//! let mut f = std::fs::OpenOptions::new().write(true).create(true).mode(0o600).open(&key)?;
//! std::io::Write::write_all(&mut f, &[7u8; 32])?;
//! let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
//! let text = format!(
//!     "[cluster]\nname = \"doc\"\nid = 1\nkey_file = \"{key}\"\nstate_dir = \"{dir}\"\n\
//!      [[links]]\nname = \"a\"\nkind = \"udp\"\n\
//!      [[nodes]]\nid = 0\nname = \"n0\"\n[nodes.links]\na = \"127.0.0.1:{port}\"\n",
//!     key = key.display(),
//!     dir = dir.display()
//! );
//! let cfg = ClusterConfig::parse(&text, &dir.join("cluster.toml"))?;
//!
//! let options = Options { control_socket: ControlSocket::Off, realtime: false, ..Options::default() };
//! let node = vigil_runtime::start(cfg, "n0", options)?;
//! let mut authority = node.authority();
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let held = rt.block_on(async {
//!     tokio::time::timeout(Duration::from_secs(30), authority.wait_for(|a| a.is_some()))
//!         .await
//!         .ok()
//!         .and_then(|a| a.ok().map(|a| a.clone()))
//! });
//! let a = held.flatten().expect("a lone node seeds and holds authority");
//! // Act only while this holds, and stamp every write with a.token.
//! assert!(a.is_primary && a.token.0 >= 1);
//! node.shutdown();
//! assert_eq!(node.join(), vigil_runtime::Ending::Stopped);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! The node runs on a thread of its own with a single-threaded tokio runtime, so
//! that real-time scheduling applies to it alone and nothing the embedder runs can
//! delay its heartbeats; the handle's methods work from any runtime or thread.

#![warn(missing_docs)]

mod authority;
pub mod client;
pub mod control;
mod driver;
pub mod events;
mod fence_action;
mod hooks;
pub mod logging;
pub mod metrics;
mod notify;
pub mod probes;
pub mod rt;
pub mod store;
pub mod watchdog;

pub use driver::{fresh_incarnation, state_word};

/// The stable name of a self-fence reason (`race_lost`, `no_decision`, `excluded`,
/// `unhealthy`, `stalled`, as in the `node.self_fence` log line) and the
/// generation it is about (0 when none).
pub fn reason_name(reason: &FenceReason) -> (&'static str, u64) {
    driver::reason_parts(reason)
}
pub use store::{GenerationStore, StateFile};

/// The crates below, whole, so that every type this crate's API names (down to
/// the status documents inside [`control::DaemonStatus`]) is reachable from here:
/// the sans-IO node and config ([`core`]), the transport ([`llt`]), views
/// ([`membership`]) and fencing ([`fence`]).
pub use vigil as core;
pub use vigil_fence as fence;
pub use vigil_llt as llt;
pub use vigil_membership as membership;

pub use vigil::config::ClusterConfig;
pub use vigil::node::{HealthEvent, LltEvent};
pub use vigil_fence::{FenceEvent, FenceReason, NodeState};
pub use vigil_llt::types::{Generation, Incarnation, NodeId};
pub use vigil_membership::{Member, NodeSet, View};

use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// What the node's clients may act on now, as the runtime publishes it.
///
/// A service acts only while [`Authority::is_valid`] holds (re-check it right
/// before acting: the lease runs on the monotonic clock), and stamps everything it
/// writes with [`Authority::token`]; storage refuses a write whose token is lower
/// than one it has already seen. Only the node for which
/// [`Authority::is_primary`] holds acts as the primary: at no instant do two
/// nodes hold a valid primary role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    /// This node.
    pub node: NodeId,
    /// The fencing token: the generation of the view clients may act on. It grows
    /// with every view change, and strictly with every change of primary.
    pub token: Generation,
    /// The view clients may act on (its generation is `token`).
    pub view: View,
    /// The generation of the view installed here; above `token` during a settle
    /// window, while the previous view's excluded members' leases run out.
    pub installed: Generation,
    /// The primary of `view`.
    pub primary: NodeId,
    /// Whether this node is the primary.
    pub is_primary: bool,
    /// The authority holds until this instant (monotonic clock) unless renewed;
    /// the runtime moves it forward as the lease is confirmed.
    pub valid_until: Instant,
}

impl Authority {
    /// Whether the authority still holds now.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Whether this node is the primary and its authority holds now.
    pub fn is_valid_primary(&self) -> bool {
        self.is_primary && self.is_valid()
    }
}

/// Something that happened in the node, as [`NodeHandle::events`] streams it.
/// [`Event::name`] is the stable name the logs use (see [`events`]).
#[derive(Clone, Debug)]
pub enum Event {
    /// The transport: links and peers.
    Llt(LltEvent),
    /// Views, races, authority, self-fencing.
    Fence(FenceEvent),
    /// Probes and stalls.
    Health(HealthEvent),
    /// The published authority changed: gained, lost, a new token or primary.
    Authority(Option<Authority>),
}

impl Event {
    /// The event's stable name (`view.installed`, `authority.changed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Llt(e) => events::llt_name(e),
            Event::Fence(e) => events::fence_name(e),
            Event::Health(e) => events::health_name(e),
            Event::Authority(_) => events::AUTHORITY_CHANGED,
        }
    }
}

/// How a node's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Stopped on request ([`NodeHandle::shutdown`], a signal to the daemon), or a
    /// graceful leave that was not confirmed in time.
    Stopped,
    /// Left the cluster gracefully ([`NodeHandle::leave`], `vigil stop`).
    Left,
    /// Refused to start: a live node already uses this node ID.
    Refused(String),
    /// Stopped on an error: a generation that could not be made durable, a
    /// watchdog that could not be armed.
    Failed(String),
    /// The node fenced itself; the self-fence action ran.
    Fenced(FenceReason),
}

/// Why a node could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The configuration is unusable, or does not name the node.
    Config(String),
    /// A link, the control socket or the state could not be opened.
    Io(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(m) | StartError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StartError {}

/// Where the node serves its control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ControlSocket {
    /// The path the configuration gives (`run_dir/<node>.sock`).
    #[default]
    FromConfig,
    /// This path.
    At(PathBuf),
    /// None: the node is inspected through its handle only.
    Off,
}

/// What to do when the node fences itself, after it has stopped sending.
#[derive(Default)]
pub enum SelfFenceAction {
    /// What `cluster.self_fence` says: `exit` ends the run with
    /// [`Ending::Fenced`], `hook` runs the program first, `reboot` and `halt` ask
    /// the kernel.
    #[default]
    AsConfigured,
    /// Call this (on the node's thread, once) and end the run with
    /// [`Ending::Fenced`]. The published authority is already gone.
    Callback(Box<dyn FnOnce(&FenceReason) + Send>),
}

impl std::fmt::Debug for SelfFenceAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelfFenceAction::AsConfigured => f.write_str("AsConfigured"),
            SelfFenceAction::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// How to run a node, beyond its configuration.
pub struct Options {
    /// The configuration file, re-read by `vigil key reload`; `None`: the
    /// configuration's own `source`.
    pub config_file: Option<PathBuf>,
    /// Where to serve the control socket.
    pub control_socket: ControlSocket,
    /// Where the highest generation is kept; `None`: the state file in
    /// `cluster.state_dir`.
    pub store: Option<Box<dyn GenerationStore>>,
    /// What a self-fence does.
    pub self_fence: SelfFenceAction,
    /// Apply `daemon.realtime`, `rt_priority` and `mlockall` to the node's thread.
    pub realtime: bool,
    /// Tell the service manager how the node is doing (`sd_notify(3)`) when
    /// `$NOTIFY_SOCKET` is set: `READY=1` once the node first holds authority,
    /// `STATUS=` lines on changes of state, view, token or authority,
    /// `WATCHDOG=1` from the node's own loop every half `$WATCHDOG_USEC` (unless
    /// `$WATCHDOG_PID` names another process), `STOPPING=1` on a leave or stop.
    /// Default `false`: a process that embeds a node usually speaks for itself;
    /// `vigil daemon` sets it.
    pub notify: bool,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("config_file", &self.config_file)
            .field("control_socket", &self.control_socket)
            .field("store", &self.store.as_ref().map(|s| s.describe()))
            .field("self_fence", &self.self_fence)
            .field("realtime", &self.realtime)
            .field("notify", &self.notify)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config_file: None,
            control_socket: ControlSocket::FromConfig,
            store: None,
            self_fence: SelfFenceAction::AsConfigured,
            realtime: true,
            notify: false,
        }
    }
}

/// A running node: its authority, events, status, and how to stop it.
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    name: String,
    socket: Option<PathBuf>,
    authority: watch::Receiver<Option<Authority>>,
    events: broadcast::Sender<Event>,
    requests: mpsc::Sender<control::Ctl>,
    shutdown: watch::Sender<bool>,
    ended: watch::Receiver<Option<Ending>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Start node `node` (a name in `cfg`) on its own thread; returns once its links
/// and control socket are open and it is listening.
pub fn start(cfg: ClusterConfig, node: &str, options: Options) -> Result<NodeHandle, StartError> {
    driver::start(cfg, node, options)
}

impl NodeHandle {
    /// This node's ID.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control socket the node serves, if any.
    pub fn control_socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    /// The published authority, as a watch: `changed()` wakes on every change of
    /// holding, token, view or primary (not on every lease renewal; `borrow()`
    /// always has the latest `valid_until`).
    pub fn authority(&self) -> watch::Receiver<Option<Authority>> {
        self.authority.clone()
    }

    /// The authority now, if the node holds it.
    pub fn current_authority(&self) -> Option<Authority> {
        self.authority.borrow().clone().filter(Authority::is_valid)
    }

    /// The node's events from now on. A receiver that falls more than 1024
    /// events behind loses the oldest (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Ask the node, as a control client would.
    pub async fn request(&self, req: control::Request) -> Result<control::Response, String> {
        let (reply, answer) = oneshot::channel();
        let ctl = control::Ctl {
            req,
            reloaded: None,
            reply,
        };
        self.requests
            .send(ctl)
            .await
            .map_err(|_| "the node has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the node stopped before answering".to_string())
    }

    /// Everything `lltstat`, `gabconfig` and `fenceadm` show.
    pub async fn status(&self) -> Result<control::DaemonStatus, String> {
        match self.request(control::Request::Status).await? {
            control::Response::Status(s) => Ok(*s),
            other => Err(format!("unexpected answer to a status request: {other:?}")),
        }
    }

    /// Leave the cluster gracefully: the others install a view without this node
    /// at once (no detection, no race against silence), and their clients move to
    /// it once this node's lease has run out (the settle window, about one lease:
    /// until then this node may still act on the old view); then the run ends with
    /// [`Ending::Left`]. Returns what the node said.
    pub async fn leave(&self) -> Result<String, String> {
        match self.request(control::Request::Stop).await? {
            control::Response::Done { message } => Ok(message),
            control::Response::Error { message } | control::Response::Busy { message } => {
                Err(message)
            }
            other => Err(format!("unexpected answer to a leave: {other:?}")),
        }
    }

    /// Take the keys (`cluster.key_file`, `accept_key_files`) of `cfg`, the
    /// configuration read again, as `vigil key reload` does; the rest of `cfg` is
    /// not applied. Returns what the node said.
    pub async fn reload_keys(&self, cfg: ClusterConfig) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        let ctl = control::Ctl {
            req: control::Request::KeyReload,
            reloaded: Some(Ok(Box::new(cfg))),
            reply,
        };
        self.requests
            .send(ctl)
            .await
            .map_err(|_| "the node has stopped".to_string())?;
        match answer.await {
            Ok(control::Response::Done { message }) => Ok(message),
            Ok(control::Response::Error { message } | control::Response::Busy { message }) => {
                Err(message)
            }
            Ok(other) => Err(format!("unexpected answer to a key reload: {other:?}")),
            Err(_) => Err("the node stopped before answering".to_string()),
        }
    }

    /// Stop at once, without leaving: the others detect the silence.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Wait until the run has ended, and how.
    pub async fn wait(&self) -> Ending {
        let mut ended = self.ended.clone();
        loop {
            if let Some(e) = ended.borrow_and_update().clone() {
                return e;
            }
            if ended.changed().await.is_err() {
                return ended.borrow().clone().unwrap_or_else(|| {
                    Ending::Failed("the node's thread ended without a word".into())
                });
            }
        }
    }

    /// Block the calling thread until the run has ended (and the self-fence action
    /// has run), and say how.
    pub fn join(mut self) -> Ending {
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                return Ending::Failed("the node's thread panicked".into());
            }
        }
        let ended = self.ended.borrow().clone();
        ended.unwrap_or_else(|| Ending::Failed("the node's thread ended without a word".into()))
    }
}
