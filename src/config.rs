//! The cluster configuration: one TOML file, parsed and validated once.
//!
//! [`ClusterConfig::load`] reads the file (default [`DEFAULT_CONFIG_PATH`]), checks every
//! rule and hands back plain data the daemon, the commands and the simulator share.
//! Every refusal is a [`ConfigError`] naming the file, the field (as a path such as
//! `nodes[1].links.a`) and the reason.
//!
//! ```toml
//! [cluster]
//! name = "demo"
//! id = 7
//! key_file = "cluster.key"   # made by `vigil keygen /etc/vigil/cluster.key`
//!
//! [[links]]
//! name = "a"
//! kind = "udp"
//! port = 5101
//!
//! [[nodes]]
//! id = 0
//! name = "n0"
//! links = { a = "127.0.0.1" }
//!
//! [[nodes]]
//! id = 1
//! name = "n1"
//! links = { a = "127.0.0.1:5102" }
//! ```
//!
//! Every table denies unknown keys, all timers are in milliseconds, and relative paths
//! (`key_file`, `self_fence_hook`, `state_dir`, `run_dir`, a node's `socket`) are taken
//! relative to the directory of the config file. `examples/cluster.toml` is a complete,
//! commented example.
//!
//! Rules checked beyond the types: `0 < heartbeat <= heartbeat_lowpri < peer_trouble <
//! peer_inactive`; `race_timeout > heartbeat`; `3 * heartbeat <= lease <= peer_inactive`;
//! `max_drift_ppm <= 100000`; unique node IDs, node names, link names and UDP addresses; every node
//! gives an address for every link and for no other; the address family matches the
//! link kind; Ethernet links have an interface; a seed count above half the nodes; a key
//! file of 16 to 4096 bytes, owned by the reading user or root, that neither group nor
//! others may access, required unless `insecure = true`; the same checks for every
//! `accept_key_files` entry (keys accepted during a rotation), which need a
//! `key_file`. The config file itself must be a regular file of at most 1 MiB.

use crate::health::{OnFailure, ProbeSpec};
pub use check::Located;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_fence::{FenceConfig, StallAction, Weights, WITNESS_ID};
use vigil_llt::config::{LinkPriority, LinkSpec, LltConfig, WitnessLink};
use vigil_llt::types::{ClusterId, LinkId, NodeId, MAX_LINKS, MAX_NODE_ID};
use vigil_llt::wire::FrameKey;
use vigil_membership::NodeSet;

/// Where the commands look for the config when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vigil/cluster.toml";
/// Default of `cluster.state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vigil";
/// Default of `cluster.run_dir`.
pub const DEFAULT_RUN_DIR: &str = "/run/vigil";
/// Default EtherType of Ethernet links (an IEEE "local experimental" value).
pub const DEFAULT_ETHERTYPE: u16 = 0xCAFE;
/// Smallest EtherType; lower values are 802.3 length fields, not types.
pub const MIN_ETHERTYPE: u16 = 0x0600;
/// Fewest bytes a key file must hold.
pub const MIN_KEY_LEN: usize = 16;
/// Most bytes a key file may hold.
pub const MAX_KEY_LEN: u64 = 4096;
/// Largest config file accepted, in bytes (1 MiB).
pub const MAX_CONFIG_LEN: u64 = 1 << 20;
/// The blake3 `derive_key` context that turns the key file into the llt frame-MAC key.
pub const KEY_CONTEXT: &str = "vigil llt frame mac v1";
/// The key file name `vigil config check` and the errors suggest, next to the config.
pub const DEFAULT_KEY_FILE_NAME: &str = "cluster.key";
/// The witness's node name, in logs and in `witness_node`.
pub const WITNESS_NODE_NAME: &str = "witness";

/// Most entries `cluster.accept_key_files` may list (a rotation needs one).
pub const MAX_ACCEPT_KEYS: usize = 8;
/// Largest accepted value of any timer, in milliseconds (one hour): anything longer is
/// surely a unit mistake.
pub const MAX_TIMER_MS: u64 = 3_600_000;
/// Longest link name (and longest interface name: Linux' `IFNAMSIZ` less the NUL).
pub const MAX_LINK_NAME_LEN: usize = 15;
/// Longest node name.
pub const MAX_NODE_NAME_LEN: usize = 32;
/// Longest `daemon.control_group` (the usual limit of group names).
pub const MAX_GROUP_NAME_LEN: usize = 32;
/// Default of `cluster.max_drift_ppm`.
pub const DEFAULT_MAX_DRIFT_PPM: u32 = 1000;
/// Largest accepted `cluster.max_drift_ppm` (10 %: any real clock is far better).
pub const MAX_DRIFT_PPM: u32 = 100_000;

/// Why a config was refused: which file, which field, what is wrong.
///
/// `field` is a path into the file such as `timers.peer_inactive`, `nodes[2].id` or
/// `nodes[1].links.b`; for TOML syntax errors it is `line L, column C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (as given to [`ClusterConfig::load`] or [`ClusterConfig::parse`]).
    pub file: PathBuf,
    /// The offending field's path, or the position of a syntax error.
    pub field: String,
    /// What is wrong, in one line.
    pub reason: String,
}

impl ConfigError {
    fn new(file: &Path, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// A validated cluster configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// The file it was read from; relative paths in it were resolved against its
    /// directory.
    pub source: PathBuf,
    /// The `[cluster]` table.
    pub cluster: ClusterSection,
    /// The `[timers]` table, defaults filled in.
    pub timers: Timers,
    /// The `[[links]]`, in file order: a link's index is its [`LinkId`].
    pub links: Vec<LinkConfig>,
    /// The `[[nodes]]`, in file order.
    pub nodes: Vec<NodeConfig>,
    /// The `[daemon]` table: how each node's daemon runs on its host.
    pub daemon: DaemonSection,
    /// The `[watchdog]` table; `None` when absent (no watchdog).
    pub watchdog: Option<WatchdogConfig>,
    /// The `[metrics]` table; `None` when absent (no Prometheus endpoint).
    pub metrics: Option<MetricsConfig>,
    /// The `[[probes]]`: health checks, each for every node or the nodes it names.
    pub probes: Vec<ProbeConfig>,
    /// The `[[hooks]]`: commands run when the authority or the primary changes.
    pub hooks: Vec<HookConfig>,
    /// The `[witness]` table; `None` when absent (no witness).
    pub witness: Option<WitnessConfig>,
}

/// The `[witness]` table: a witness (`vigil witness`, on a third machine) adds a
/// vote to the cluster, so that a two-node cluster survives the crash of either node.
/// It is node ID [`WITNESS_ID`] (63) in views and races, reached over one link of its
/// own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WitnessConfig {
    /// `link`: the name of the `[[links]]` entry that joins the nodes to the witness
    /// (`udp` or `udp6`, high priority). Every node gives its address on it as on any
    /// link; it carries only the frames between the nodes and the witness, and the
    /// witness's frames go over no other link. Required.
    pub link: LinkId,
    /// `address`: the witness's address on that link, `"IP:PORT"` (or `"IP"` with the
    /// link's `port`). Required.
    pub address: SocketAddr,
    /// `key_file`: the key of the frames between the nodes and the witness, a key of
    /// its own so that the witness's machine never holds the cluster's key; checked
    /// like `cluster.key_file`. Required on a keyed cluster, refused on an insecure one.
    pub key_file: Option<PathBuf>,
    /// The frame-MAC key read from `key_file`. Never serialized.
    #[serde(skip)]
    pub key: Option<FrameKey>,
    /// `heartbeat`: the heartbeat interval on the witness link. Default
    /// `timers.heartbeat`; at most a third of `timers.lease` (when the other node is
    /// gone, the witness's confirmations alone carry the survivor's lease).
    pub heartbeat: Duration,
    /// `peer_trouble`: silence on the witness link before it is TROUBLE. Default
    /// twice `timers.peer_trouble`: the witness is usually further away than the
    /// interconnect.
    pub peer_trouble: Duration,
    /// `peer_inactive`: silence before the witness is down. Default twice
    /// `timers.peer_inactive`; `heartbeat < peer_trouble < peer_inactive`.
    pub peer_inactive: Duration,
    /// `weight`: the witness's votes in the quorum rule, `1..=255`, default 1.
    pub weight: u8,
}

/// The `[daemon]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonSection {
    /// `realtime`: the scheduling of the daemon's node thread (heartbeats, timers):
    /// `"off"` (default), `"fifo"` or `"rr"`. When the system refuses it (not root,
    /// no `CAP_SYS_NICE` or `RLIMIT_RTPRIO`) the daemon warns and runs without.
    pub realtime: Realtime,
    /// `rt_priority`: the real-time priority, `1..=99`. Default 50.
    pub rt_priority: u8,
    /// `mlockall`: lock the daemon's memory so it is never paged out. Default `false`.
    pub mlockall: bool,
    /// `stall_action`: what a member does after its own process was not running for
    /// longer than `timers.lease` (its authority has lapsed, its view may be stale):
    /// `"fence"` (default) or `"rejoin"` (start again as a new incarnation).
    pub stall_action: StallAction,
    /// `control_group`: a group whose members may use the read-only requests of
    /// the control socket (`status`, `subscribe`: `lltstat`, `gabconfig -a`,
    /// `vigil watch`). The socket is then mode 0660 with that group; changing
    /// requests stay with root and the daemon's user. Default none: mode 0600.
    pub control_group: Option<String>,
}

impl Default for DaemonSection {
    fn default() -> DaemonSection {
        DaemonSection {
            realtime: Realtime::Off,
            rt_priority: 50,
            mlockall: false,
            stall_action: StallAction::Fence,
            control_group: None,
        }
    }
}

/// `daemon.realtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Realtime {
    #[default]
    Off,
    /// `SCHED_FIFO`.
    Fifo,
    /// `SCHED_RR`.
    Rr,
}

/// The `[watchdog]` table: a Linux watchdog device armed once the node first holds
/// authority and fed only while it does, so that a node whose user space hangs is
/// reset by the kernel. Survivors add `timeout` to the settle window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchdogConfig {
    /// `device`: default `/dev/watchdog`.
    pub device: PathBuf,
    /// `timeout`: milliseconds, whole seconds (the device API counts seconds), more
    /// than `peer_inactive + race_timeout + 2 × heartbeat`. Default 10000.
    #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
    pub timeout: Duration,
    /// `softdog`: when the device is missing, load the `softdog` module and try
    /// again. Default `true`.
    pub softdog: bool,
}

/// The `[metrics]` table: a Prometheus endpoint (`GET /metrics`, text format
/// 0.0.4) served by the daemon on a thread of its own, never the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    /// `listen`: the TCP address to serve on, `"IP:port"` (such as
    /// `"127.0.0.1:9464"`); required, port not 0. Every node that reads the file
    /// binds it on its own host.
    pub listen: std::net::SocketAddr,
}

/// Default of `watchdog.device`.
pub const DEFAULT_WATCHDOG_DEVICE: &str = "/dev/watchdog";
/// Default of `watchdog.timeout`, in milliseconds.
pub const DEFAULT_WATCHDOG_TIMEOUT_MS: u64 = 10_000;

/// One `[[probes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeConfig {
    /// `name`, `interval`, `timeout`, `threshold`, `on_failure`.
    pub spec: ProbeSpec,
    /// `kind` with its fields.
    pub check: ProbeCheck,
    /// `nodes`: the nodes (by name in the file) that run it; default every node.
    pub nodes: NodeSet,
}

/// What a probe checks (`probes[].kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeCheck {
    /// `kind = "command"`: run `command` (a program and its arguments, no shell);
    /// it passes when it exits with `expect_exit` (default 0) within the timeout.
    Command { argv: Vec<String>, expect_exit: i32 },
    /// `kind = "writable"`: write, fsync and remove a small file in the directory
    /// `path`.
    Writable { path: PathBuf },
    /// `kind = "mount"`: the file system mounted at `path` is not read-only.
    Mount { path: PathBuf },
}

/// One `[[hooks]]` entry: a command the daemon runs (no shell) when what clients
/// may act on changes, with `VIGIL_TOKEN`, `VIGIL_PRIMARY`, `VIGIL_IS_PRIMARY`,
/// `VIGIL_MEMBERS`, `VIGIL_NODE`, `VIGIL_NODE_ID` and `VIGIL_EVENT` in its
/// environment. Never two runs of one hook at once: changes during a run are
/// coalesced into one more run with the latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookConfig {
    /// `name`: 1 to 32 of `A-Z a-z 0-9 _ . -`, unique among the hooks; in the logs.
    pub name: String,
    /// `command`: the program and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// `on`: what runs it: `"authority"` (every change of holding, token, view or
    /// primary) and/or `"primary"` (only when the primary, or whether this node is
    /// it, changes). Default `["authority"]`.
    pub on: Vec<HookOn>,
    /// `timeout`: milliseconds a run may take before it is killed, 1..=600000.
    /// Default 10000.
    #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
    pub timeout: Duration,
}

/// What runs a hook (`hooks[].on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookOn {
    /// Every change of the published authority: gained, lost, a new token, view
    /// or primary.
    Authority,
    /// A change of the primary, or of whether this node is the valid primary.
    Primary,
}

/// Default of `hooks[].timeout`, in milliseconds.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 10_000;
/// Most of `hooks[].timeout`, in milliseconds.
pub const MAX_HOOK_TIMEOUT_MS: u64 = 600_000;
/// Most `[[hooks]]` entries.
pub const MAX_HOOKS: usize = 16;

/// Default of `probes[].interval`, in milliseconds.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 1000;
/// Default of `probes[].threshold`.
pub const DEFAULT_PROBE_THRESHOLD: u32 = 3;

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSection {
    /// `name`: the cluster's name, for logs and the commands. Required, non-empty.
    pub name: String,
    /// `id`: the cluster ID carried in every frame; frames from another cluster are
    /// dropped. Required, any `u32`.
    pub id: ClusterId,
    /// `seed`: how many nodes must see each other before the first membership forms.
    /// Default: the number of nodes. Must be `1..=nodes` and more than half the nodes,
    /// so that two halves of a fresh cluster can never both seed. After a view has
    /// existed, a group of `seed` nodes also needs a quorum of every view its members
    /// keep (`docs/membership.md`), so nodes restarted beside a running view wait.
    pub seed: usize,
    /// `fencing`: `"majority"` (default) races for the majority on a split;
    /// `"disabled"` never fences (test clusters only).
    pub fencing: FencingMode,
    /// `self_fence`: what a node does when it loses a race or its authority:
    /// `"exit"` (default), `"hook"`, `"reboot"` or `"halt"`. For `"hook"` the program
    /// comes from `self_fence_hook`, required then and refused otherwise.
    pub self_fence: SelfFence,
    /// `key_file`: the shared secret that authenticates llt frames; every frame is
    /// sent with it. Required unless `insecure = true`. The file must be a regular
    /// file of at least 16 bytes that neither group nor others may access (`chmod
    /// 600`); `vigil keygen PATH` makes one.
    pub key_file: Option<PathBuf>,
    /// `insecure`: run without `key_file`, frames carrying no MAC (anyone who can
    /// reach a cluster network can forge heartbeats and views). Default `false`;
    /// refused together with `key_file`. Test clusters only.
    pub insecure: bool,
    /// `accept_key_files`: more keys a frame is also accepted under (never sent
    /// with), for a key rotation without downtime; each file is checked like
    /// `key_file`. Default none, at most [`MAX_ACCEPT_KEYS`], and only with a
    /// `key_file`. A key listed twice (or also as `key_file`) counts once.
    pub accept_key_files: Vec<PathBuf>,
    /// The keys of `accept_key_files`, in file order. Never serialized.
    #[serde(skip)]
    pub accept_keys: Vec<FrameKey>,
    /// The frame-MAC key, `blake3::derive_key("vigil llt frame mac v1", file bytes)`,
    /// and its ID on the wire. Never serialized.
    #[serde(skip)]
    pub key: Option<FrameKey>,
    /// `state_dir`: where a node keeps state across restarts. Default `/var/lib/vigil`.
    pub state_dir: PathBuf,
    /// `run_dir`: where control sockets live: `{run_dir}/{node name}.sock` unless the
    /// node sets `socket`. Default `/run/vigil`.
    pub run_dir: PathBuf,
    /// `fault_injection`: reserved for a later testing tool. Default `false`.
    pub fault_injection: bool,
    /// `max_drift_ppm`: the bound on clock-rate drift between any two nodes, in parts
    /// per million. Survivors wait `lease × (1 + drift)` after the last frame of an
    /// excluded node before their clients see the new view. Default 1000, `0..=100000`.
    pub max_drift_ppm: u32,
}

/// `cluster.fencing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FencingMode {
    /// On a split, the side with a strict majority (or that wins the race for it) goes
    /// on; the others self-fence.
    #[default]
    Majority,
    /// Never fence. Safe only where nothing shared can be corrupted.
    Disabled,
}

/// `cluster.self_fence`: what a node does to take itself out of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelfFence {
    /// Stop the daemon (default); whatever supervises it decides what follows.
    Exit,
    /// Run this program (`cluster.self_fence_hook`), then stop.
    Hook(PathBuf),
    /// Reboot the machine.
    Reboot,
    /// Halt the machine.
    Halt,
}

/// The `[timers]` table. Every value is given in milliseconds, at most one hour, and
/// they must satisfy `0 < heartbeat <= heartbeat_lowpri < peer_trouble < peer_inactive`,
/// `race_timeout > heartbeat` and `3 × heartbeat <= lease <= peer_inactive`.
/// Serialized as `*_ms` integers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timers {
    /// `profile`: the named set of defaults the other timers start from:
    /// `"default"` (heartbeat 100 ms, failure detection in 600 ms, tolerates stalls
    /// up to 500 ms) or `"fast"` (heartbeat 10 ms, detection in 50 ms, tolerates
    /// stalls up to 40 ms). Any timer given overrides the profile's value.
    pub profile: TimerProfile,
    /// `heartbeat`: heartbeat interval on high-priority links. Default 100 ms.
    #[serde(rename = "heartbeat_ms", serialize_with = "ser_ms")]
    pub heartbeat: Duration,
    /// `heartbeat_lowpri`: heartbeat interval on low-priority links. Default 250 ms.
    #[serde(rename = "heartbeat_lowpri_ms", serialize_with = "ser_ms")]
    pub heartbeat_lowpri: Duration,
    /// `peer_trouble`: silence after which a peer's link is in TROUBLE. Default 400 ms.
    #[serde(rename = "peer_trouble_ms", serialize_with = "ser_ms")]
    pub peer_trouble: Duration,
    /// `peer_inactive`: silence after which a peer's link is DOWN, and a peer with every
    /// link down is gone. Default 800 ms.
    #[serde(rename = "peer_inactive_ms", serialize_with = "ser_ms")]
    pub peer_inactive: Duration,
    /// `link_up_count`: consecutive heartbeats a DOWN link needs before it is UP again.
    /// Default 3, `1..=100`.
    pub link_up_count: u32,
    /// `race_timeout`: a racer that gathers no quorum of the previous view within this
    /// has lost, and its side fences itself; spectators that hear no decision within it
    /// fence themselves too. Default 300 ms; must be greater than `heartbeat`.
    #[serde(rename = "race_timeout_ms", serialize_with = "ser_ms")]
    pub race_timeout: Duration,
    /// `lease`: how long a quorum's confirmation keeps a member's authority, on its own
    /// monotonic clock. Default: `peer_inactive - heartbeat` (500 ms with the defaults);
    /// must be at least `3 × heartbeat` (a confirmation comes up to a heartbeat after
    /// the frame it confirms and renewals a heartbeat apart: two heartbeats lapse
    /// before each renewal once transit and drift count) and at most `peer_inactive` (it must lapse before survivors can declare the node gone).
    #[serde(rename = "lease_ms", serialize_with = "ser_ms")]
    pub lease: Duration,
    /// `stall_report`: the daemon logs every stall of its own loop longer than this
    /// (how late its timers fired); the time is not held against any peer. Default
    /// half a heartbeat; more than 0 and less than `lease`.
    #[serde(rename = "stall_report_ms", serialize_with = "ser_ms")]
    pub stall_report: Duration,
}

/// `timers.profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerProfile {
    #[default]
    Default,
    Fast,
}

impl Timers {
    /// The timers of a profile.
    pub fn profile(p: TimerProfile) -> Timers {
        let ms = Duration::from_millis;
        match p {
            TimerProfile::Default => Timers {
                profile: p,
                heartbeat: ms(100),
                heartbeat_lowpri: ms(250),
                peer_trouble: ms(300),
                peer_inactive: ms(600),
                link_up_count: 3,
                race_timeout: ms(200),
                lease: ms(500),
                stall_report: ms(50),
            },
            TimerProfile::Fast => Timers {
                profile: p,
                heartbeat: ms(10),
                heartbeat_lowpri: ms(25),
                peer_trouble: ms(30),
                peer_inactive: ms(50),
                link_up_count: 3,
                race_timeout: ms(40),
                lease: ms(40),
                stall_report: ms(5),
            },
        }
    }
}

impl Default for Timers {
    fn default() -> Timers {
        Timers::profile(TimerProfile::Default)
    }
}

fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One `[[links]]` entry: a network every node is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkConfig {
    /// The link's index in the file, `0..8`; frames carry it.
    pub id: LinkId,
    /// `name`: how nodes refer to the link and how logs name it. Required, unique,
    /// 1 to 15 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// `kind`: `"udp"` (IPv4), `"udp6"` (IPv6) or `"ether"` (raw Ethernet frames).
    /// Required.
    pub kind: LinkKind,
    /// `priority`: `"high"` (default) carries fast heartbeats and data; `"low"` slow
    /// heartbeats, and data only when no high-priority link is up.
    pub priority: LinkPriority,
    /// `port`: UDP only, the port of node addresses that give none. Optional, `1..`;
    /// refused on Ethernet links.
    pub port: Option<u16>,
    /// `ethertype`: Ethernet only, the frames' EtherType. Default `0xCAFE`, at least
    /// `0x0600`; refused on UDP links, where this field is 0.
    pub ethertype: u16,
    /// `interface`: the default interface of the nodes on this link: bind-to-device for
    /// UDP, the interface for Ethernet. Optional; a node may override it.
    pub interface: Option<String>,
    /// `dscp`: UDP only, the DSCP value set on outgoing packets, `0..=63`. Optional.
    pub dscp: Option<u8>,
}

/// `links[].kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// UDP over IPv4.
    Udp,
    /// UDP over IPv6.
    Udp6,
    /// Raw Ethernet frames with the link's EtherType.
    Ether,
}

impl LinkKind {
    fn is_udp(self) -> bool {
        matches!(self, LinkKind::Udp | LinkKind::Udp6)
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Udp => "udp",
            LinkKind::Udp6 => "udp6",
            LinkKind::Ether => "ether",
        })
    }
}

/// One `[[nodes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// `id`: the node ID, `0..=63`, unique. Required.
    pub id: NodeId,
    /// `name`: unique, 1 to 32 characters of `[A-Za-z0-9_.-]`; `vigil daemon --node`
    /// picks the local node by it. Required.
    pub name: String,
    /// `socket`: the control socket's path. Optional; default
    /// `{cluster.run_dir}/{name}.sock` (see [`ClusterConfig::socket_path`]).
    pub socket: Option<PathBuf>,
    /// `weight`: the node's votes in the quorum rule, `1..=255`, default 1. A side
    /// survives a partition with more than half of the view's votes (or exactly half
    /// and the lowest node ID), so a heavier node is preferred: with two nodes
    /// weighted 1 and 2, the heavier one survives a split. Every node's config must
    /// give the same weights.
    pub weight: u8,
    /// `links`: the node's address on every link, indexed by [`LinkId`] (same order as
    /// [`ClusterConfig::links`]). In the file a table keyed by link name that must name
    /// every link and nothing else.
    pub links: Vec<NodeLinkAddr>,
}

/// A node's attachment to one link.
///
/// In the file, for a UDP link: `"IP"` or `"IP:PORT"` (`"[::1]:5001"` or `"::1"` on
/// udp6; without a port the link's `port` is used), or `{ address = "...", interface =
/// "eth1" }` to bind to a device. For an Ethernet link: the interface name as a string,
/// or `{ interface = "veth0" }` (`{}` takes the link's `interface`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeLinkAddr {
    /// A UDP link: the address the node binds and peers send to.
    Udp {
        addr: SocketAddr,
        /// Bind-to-device: the node's own `interface`, else the link's.
        interface: Option<String>,
    },
    /// An Ethernet link: the interface the node sends and receives on.
    Ether { interface: String },
    /// Not on this link: the witness on the links between the nodes (never read
    /// from a file).
    Absent,
}

impl ClusterConfig {
    /// Reads and validates the config file at `path`.
    /// The file must be a regular file (a FIFO or a device is refused without
    /// blocking) of at most [`MAX_CONFIG_LEN`] bytes.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let refuse = |why: String| ConfigError::new(path, "(file)", why);
        let (bytes, _) = crate::files::read_bounded(path, true, MAX_CONFIG_LEN).map_err(refuse)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| refuse(format!("cannot read it: not UTF-8 text ({e})")))?;
        ClusterConfig::parse(&text, path)
    }

    /// Parses and validates `text`. `source` names the file in errors, and relative
    /// paths in the config are resolved against its directory. A `key_file` is read.
    pub fn parse(text: &str, source: &Path) -> Result<ClusterConfig, ConfigError> {
        let cfg = load_unvalidated(text, source)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every rule that does not need the file system: counts and ranges, the
    /// timer ordering, unique IDs, names and addresses, address families, interfaces
    /// and the seed count. [`parse`](Self::parse) calls it; embedders that build a
    /// config by hand can too. The first broken rule is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.validate_all().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every broken rule [`validate`](Self::validate) knows, in file order as far as
    /// it can tell: one per section that stops at its first (keys, timers, hooks,
    /// links, probes) and one per node. The first is the one `validate` returns.
    pub fn validate_all(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut keep = |r: Result<(), ConfigError>| {
            if let Err(e) = r {
                errs.push(e);
            }
        };
        keep(self.validate_cluster());
        keep(self.validate_keys());
        keep(self.validate_timers());
        keep(self.validate_hooks());
        keep(self.validate_drift());
        keep(check_links(&self.source, &self.links));
        keep(self.validate_node_count());
        for (i, node) in self.nodes.iter().enumerate() {
            keep(self.validate_node(i, node));
        }
        keep(self.validate_health());
        keep(self.validate_seed());
        keep(self.validate_witness());
        errs
    }

    /// `[witness]`: its link, address, key, timers, and no node with its ID.
    fn validate_witness(&self) -> Result<(), ConfigError> {
        let Some(w) = &self.witness else {
            return Ok(());
        };
        let err = |field: &str, reason: String| {
            Err(ConfigError::new(
                &self.source,
                format!("witness.{field}"),
                reason,
            ))
        };
        let Some(link) = self.links.get(w.link.index()) else {
            return err("link", format!("link {} is not configured", w.link));
        };
        if !link.kind.is_udp() {
            return err(
                "link",
                format!(
                    "link {} is {}: the witness is reached over udp or udp6",
                    link.name, link.kind
                ),
            );
        }
        if link.priority != LinkPriority::High {
            return err(
                "link",
                format!(
                    "link {} is low priority; the witness link's pace comes from [witness] heartbeat: leave its priority unset",
                    link.name
                ),
            );
        }
        if self.links.len() < 2 {
            return err(
                "link",
                format!(
                    "link {} is the only link, but it carries only the frames to and from the witness: the nodes need another link between them",
                    link.name
                ),
            );
        }
        if let Err(why) = check_udp_addr(link, w.address) {
            return err("address", why);
        }
        if let Some(n) = self.nodes.iter().find(|n| {
            n.links
                .iter()
                .any(|a| matches!(a, NodeLinkAddr::Udp { addr, .. } if *addr == w.address))
        }) {
            return err(
                "address",
                format!("{} is also an address of node {}", w.address, n.name),
            );
        }
        if let Some(n) = self.nodes.iter().find(|n| n.id == WITNESS_ID) {
            return err(
                "link",
                format!(
                    "node {} has ID {WITNESS_ID}, the witness's ID: a cluster with a witness numbers its nodes 0..={}",
                    n.name,
                    WITNESS_ID.0 - 1
                ),
            );
        }
        let keyed = self.cluster.key.is_some() || self.cluster.key_file.is_some();
        match (&w.key_file, keyed && !self.cluster.insecure) {
            (None, true) => {
                return err(
                    "key_file",
                    "is required on a keyed cluster: the frames between the nodes and the witness are authenticated with a key of their own (make one with `vigil keygen`; copy it to every node and to the witness)".into(),
                )
            }
            (Some(_), false) => {
                return err(
                    "key_file",
                    "is set but the cluster is insecure (no cluster.key_file): key the cluster first".into(),
                )
            }
            _ => {}
        }
        if let (Some(wk), Some(ck)) = (&w.key, &self.cluster.key) {
            if wk.id == ck.id {
                return err(
                    "key_file",
                    "holds the same key as cluster.key_file: the witness needs a key of its own, so that its machine never holds the cluster's key".into(),
                );
            }
        }
        let t = &self.timers;
        if w.heartbeat.is_zero() || w.heartbeat.saturating_mul(3) > t.lease {
            return err(
                "heartbeat",
                format!(
                    "must be more than 0 and at most a third of timers.lease ({} ms): when the other node is gone the witness's confirmations alone carry the survivor's lease; got {} ms",
                    t.lease.as_millis(),
                    w.heartbeat.as_millis()
                ),
            );
        }
        if w.peer_trouble <= w.heartbeat {
            return err(
                "peer_trouble",
                format!(
                    "must be more than witness.heartbeat ({} ms), got {} ms",
                    w.heartbeat.as_millis(),
                    w.peer_trouble.as_millis()
                ),
            );
        }
        if w.peer_inactive <= w.peer_trouble {
            return err(
                "peer_inactive",
                format!(
                    "must be more than witness.peer_trouble ({} ms), got {} ms",
                    w.peer_trouble.as_millis(),
                    w.peer_inactive.as_millis()
                ),
            );
        }
        Ok(())
    }

    /// `cluster.name` and `cluster.self_fence_hook`.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let c = &self.cluster;
        if c.name.is_empty() {
            return err("cluster.name".into(), "must not be empty".into());
        }
        if let SelfFence::Hook(p) = &c.self_fence {
            if p.as_os_str().is_empty() {
                return err("cluster.self_fence_hook".into(), "must not be empty".into());
            }
        }
        Ok(())
    }

    /// `cluster.max_drift_ppm`.
    fn validate_drift(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let c = &self.cluster;
        if c.max_drift_ppm > MAX_DRIFT_PPM {
            return err(
                "cluster.max_drift_ppm".into(),
                format!(
                    "must be 0..={MAX_DRIFT_PPM} (parts per million), got {}",
                    c.max_drift_ppm
                ),
            );
        }

        Ok(())
    }

    /// The number of `[[nodes]]`.
    fn validate_node_count(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let n = self.nodes.len();
        if n == 0 || n > usize::from(MAX_NODE_ID) + 1 {
            return err(
                "nodes".into(),
                format!(
                    "need 1 to {} [[nodes]], got {n}",
                    usize::from(MAX_NODE_ID) + 1
                ),
            );
        }
        Ok(())
    }

    /// `nodes[i]`: its ID, name, socket and link addresses, against the nodes before it.
    fn validate_node(&self, i: usize, node: &NodeConfig) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let f = |name: &str| format!("nodes[{i}].{name}");
        if node.id.get() > MAX_NODE_ID {
            return err(
                f("id"),
                format!("must be 0..={MAX_NODE_ID}, got {}", node.id),
            );
        }
        if let Some(j) = self.nodes[..i].iter().position(|o| o.id == node.id) {
            return err(
                f("id"),
                format!(
                    "duplicate node ID {}, also used by nodes[{j}] ({})",
                    node.id, self.nodes[j].name
                ),
            );
        }
        if let Err(why) = check_name(&node.name, MAX_NODE_NAME_LEN, |ch| {
            ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.'
        }) {
            return err(
                f("name"),
                format!("{why}; use 1 to {MAX_NODE_NAME_LEN} of A-Z a-z 0-9 _ . -"),
            );
        }
        if let Some(j) = self.nodes[..i].iter().position(|o| o.name == node.name) {
            return err(
                f("name"),
                format!(
                    "duplicate node name {}, also used by nodes[{j}] (ID {})",
                    node.name, self.nodes[j].id
                ),
            );
        }
        if node
            .socket
            .as_ref()
            .is_some_and(|s| s.as_os_str().is_empty())
        {
            return err(f("socket"), "must not be empty".into());
        }
        if node.links.len() != self.links.len() {
            return err(
                f("links"),
                format!(
                    "has {} link addresses but {} links are configured",
                    node.links.len(),
                    self.links.len()
                ),
            );
        }
        for (l, addr) in self.links.iter().zip(&node.links) {
            let field = format!("nodes[{i}].links.{}", l.name);
            match (l.kind, addr) {
                (LinkKind::Udp | LinkKind::Udp6, NodeLinkAddr::Udp { addr, interface }) => {
                    if let Err(why) = check_udp_addr(l, *addr) {
                        return err(field, why);
                    }
                    if let Some(Err(why)) = interface.as_deref().map(check_ifname) {
                        return err(field, why);
                    }
                    // One socket address is one socket: it can serve only one
                    // node on one link.
                    for (j, other) in self.nodes[..=i].iter().enumerate() {
                        for (ol, oa) in self.links.iter().zip(&other.links) {
                            if j == i && ol.id >= l.id {
                                break;
                            }
                            if matches!(oa, NodeLinkAddr::Udp { addr: o, .. } if o == addr) {
                                return err(
                                    field,
                                    format!(
                                        "duplicate address {addr}, also used by nodes[{j}] ({}) on link {}",
                                        other.name, ol.name
                                    ),
                                );
                            }
                        }
                    }
                }
                (LinkKind::Ether, NodeLinkAddr::Ether { interface }) => {
                    if let Err(why) = check_ifname(interface) {
                        return err(field, format!("ether link {}: {why}", l.name));
                    }
                }
                (kind, _) => {
                    return err(
                        field,
                        format!("link {} is {kind} but the address is not", l.name),
                    );
                }
            }
        }
        Ok(())
    }

    /// `cluster.seed`.
    fn validate_seed(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let c = &self.cluster;
        let n = self.nodes.len();
        if c.seed == 0 || c.seed > n {
            return err(
                "cluster.seed".into(),
                format!(
                    "must be between 1 and the number of nodes ({n}), got {}",
                    c.seed
                ),
            );
        }
        if 2 * c.seed <= n {
            return err(
                "cluster.seed".into(),
                format!(
                    "a seed count of half the configured nodes or fewer lets two halves seed apart: with {n} nodes it must be at least {}, got {}",
                    n / 2 + 1,
                    c.seed
                ),
            );
        }
        Ok(())
    }

    /// `key_file`, `insecure` and `accept_key_files`: a cluster is keyed unless it
    /// says otherwise, and its keys can be told apart by ID.
    fn validate_keys(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let c = &self.cluster;
        // A witness reads the file without the cluster's keys, which its machine
        // does not hold: a `key_file` that is set is keyed.
        let keyed = c.key.is_some() || c.key_file.is_some();
        match (keyed, c.insecure) {
            (false, false) => {
                let path = self.suggested_key_file();
                let shown = path.display();
                return err(
                    "cluster.key_file".into(),
                    format!(
                        "is required: without a key, llt frames carry no MAC and anyone who can reach a cluster network can forge heartbeats and views. Make a key with `vigil keygen {shown}`, copy it to every node (mode 0600) and set key_file = \"{shown}\" in [cluster]; or set insecure = true in [cluster] to run unauthenticated (test clusters only)"
                    ),
                );
            }
            (true, true) => {
                return err(
                    "cluster.insecure".into(),
                    "is true but cluster.key_file is set: remove one of them".into(),
                );
            }
            _ => {}
        }
        if c.key.is_none() && !c.accept_keys.is_empty() {
            return err(
                "cluster.accept_key_files".into(),
                "needs cluster.key_file, the key frames are sent with".into(),
            );
        }
        if c.accept_keys.len() > MAX_ACCEPT_KEYS {
            return err(
                "cluster.accept_key_files".into(),
                format!(
                    "lists {} keys; at most {MAX_ACCEPT_KEYS} (a rotation needs one)",
                    c.accept_keys.len()
                ),
            );
        }
        // The same key twice is harmless (it counts once); two keys under one ID are
        // not: a receiver checks a frame with the first key of that ID.
        for (i, k) in c.accept_keys.iter().enumerate() {
            let clash = c
                .key
                .iter()
                .chain(&c.accept_keys[..i])
                .any(|o| o.id == k.id && o.key != k.key);
            if clash {
                return err(
                    format!("cluster.accept_key_files[{i}]"),
                    format!(
                        "key ID {} is also the ID of another key in the ring; make a new key with `vigil keygen`",
                        k.id
                    ),
                );
            }
        }
        Ok(())
    }

    /// `[daemon]`, `[watchdog]` and `[[probes]]`: ranges, and timeouts that agree.
    fn validate_health(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        let ms = |d: Duration| d.as_millis();
        if !(1..=99).contains(&self.daemon.rt_priority) {
            return err(
                "daemon.rt_priority".into(),
                format!("must be 1..=99, got {}", self.daemon.rt_priority),
            );
        }
        if let Some(w) = &self.watchdog {
            let t = &self.timers;
            if w.device.as_os_str().is_empty() {
                return err("watchdog.device".into(), "must not be empty".into());
            }
            if w.timeout.is_zero() || w.timeout.as_millis() % 1000 != 0 {
                return err(
                    "watchdog.timeout".into(),
                    format!(
                        "must be a whole number of seconds in milliseconds (the device counts seconds), got {} ms",
                        ms(w.timeout)
                    ),
                );
            }
            if w.timeout > Duration::from_secs(3600) {
                return err(
                    "watchdog.timeout".into(),
                    format!("must be at most 3600000 ms, got {} ms", ms(w.timeout)),
                );
            }
            // A member that lost authority regains it or fences itself within
            // detection + race + the spectators' margin; the watchdog must not
            // reset it before that.
            let bound = t.peer_inactive + t.race_timeout + t.heartbeat.saturating_mul(2);
            if w.timeout <= bound {
                return err(
                    "watchdog.timeout".into(),
                    format!(
                        "must be more than timers.peer_inactive + timers.race_timeout + 2 × timers.heartbeat ({} ms): a node waiting for a race must not be reset; got {} ms",
                        ms(bound),
                        ms(w.timeout)
                    ),
                );
            }
        }
        for (i, p) in self.probes.iter().enumerate() {
            let f = |name: &str| format!("probes[{i}].{name}");
            if let Err(why) = check_name(&p.spec.name, MAX_NODE_NAME_LEN, |ch| {
                ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.'
            }) {
                return err(
                    f("name"),
                    format!("{why}; use 1 to {MAX_NODE_NAME_LEN} of A-Z a-z 0-9 _ . -"),
                );
            }
            if let Some(j) = self.probes[..i]
                .iter()
                .position(|o| o.spec.name == p.spec.name)
            {
                return err(
                    f("name"),
                    format!(
                        "duplicate probe name {}, also used by probes[{j}]",
                        p.spec.name
                    ),
                );
            }
            for (name, d) in [("interval", p.spec.interval), ("timeout", p.spec.timeout)] {
                if d.is_zero() || ms(d) > u128::from(MAX_TIMER_MS) {
                    return err(
                        f(name),
                        format!("must be 1..={MAX_TIMER_MS} ms, got {} ms", ms(d)),
                    );
                }
            }
            if !(1..=1000).contains(&p.spec.threshold) {
                return err(
                    f("threshold"),
                    format!(
                        "must be 1..=1000 failures in a row, got {}",
                        p.spec.threshold
                    ),
                );
            }
            if p.nodes.is_empty() {
                return err(
                    f("nodes"),
                    "names no node; leave it out to probe every node".into(),
                );
            }
        }
        Ok(())
    }

    /// `daemon.control_group` and `[[hooks]]`.
    fn validate_hooks(&self) -> Result<(), ConfigError> {
        let err =
            |field: String, reason: String| Err(ConfigError::new(&self.source, field, reason));
        if let Some(g) = &self.daemon.control_group {
            if let Err(why) = check_name(g, MAX_GROUP_NAME_LEN, |ch| {
                ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.'
            }) {
                return err(
                    "daemon.control_group".into(),
                    format!(
                        "{why}; a group name is 1 to {MAX_GROUP_NAME_LEN} of A-Z a-z 0-9 _ . -"
                    ),
                );
            }
        }
        if self.hooks.len() > MAX_HOOKS {
            return err(
                "hooks".into(),
                format!("at most {MAX_HOOKS} hooks, got {}", self.hooks.len()),
            );
        }
        for (i, h) in self.hooks.iter().enumerate() {
            let f = |name: &str| format!("hooks[{i}].{name}");
            if let Err(why) = check_name(&h.name, MAX_NODE_NAME_LEN, |ch| {
                ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.'
            }) {
                return err(
                    f("name"),
                    format!("{why}; use 1 to {MAX_NODE_NAME_LEN} of A-Z a-z 0-9 _ . -"),
                );
            }
            if let Some(j) = self.hooks[..i].iter().position(|o| o.name == h.name) {
                return err(
                    f("name"),
                    format!("duplicate hook name {}, also used by hooks[{j}]", h.name),
                );
            }
            if h.argv.first().is_none_or(|c| c.is_empty()) {
                return err(
                    f("command"),
                    "a hook needs command = [\"program\", \"arg\", ...] (run without a shell)"
                        .into(),
                );
            }
            if h.on.is_empty() {
                return err(
                    f("on"),
                    "names nothing to run on; use [\"authority\"], [\"primary\"] or both".into(),
                );
            }
            if let Some(k) = (1..h.on.len()).find(|&k| h.on[..k].contains(&h.on[k])) {
                return err(
                    f("on"),
                    format!("{:?} is listed twice", h.on[k]).to_lowercase(),
                );
            }
            let ms = h.timeout.as_millis();
            if ms == 0 || ms > u128::from(MAX_HOOK_TIMEOUT_MS) {
                return err(
                    f("timeout"),
                    format!("must be 1..={MAX_HOOK_TIMEOUT_MS} ms, got {ms} ms"),
                );
            }
        }
        Ok(())
    }

    /// The probes node `id` runs, in file order.
    pub fn probes_for(&self, id: NodeId) -> impl Iterator<Item = &ProbeConfig> + '_ {
        self.probes.iter().filter(move |p| p.nodes.contains(id))
    }

    fn validate_timers(&self) -> Result<(), ConfigError> {
        let t = &self.timers;
        let ms = |d: Duration| d.as_millis();
        let err = |field: &str, reason: String| {
            Err(ConfigError::new(
                &self.source,
                format!("timers.{field}"),
                reason,
            ))
        };
        for (name, d) in [
            ("heartbeat", t.heartbeat),
            ("heartbeat_lowpri", t.heartbeat_lowpri),
            ("peer_trouble", t.peer_trouble),
            ("peer_inactive", t.peer_inactive),
            ("race_timeout", t.race_timeout),
            ("lease", t.lease),
            ("stall_report", t.stall_report),
        ] {
            if ms(d) > u128::from(MAX_TIMER_MS) {
                return err(
                    name,
                    format!(
                        "must be at most {MAX_TIMER_MS} ms (timers are in milliseconds), got {} ms",
                        ms(d)
                    ),
                );
            }
        }
        if t.heartbeat.is_zero() {
            return err("heartbeat", "must be greater than 0 ms".into());
        }
        if t.heartbeat_lowpri < t.heartbeat {
            return err(
                "heartbeat_lowpri",
                format!(
                    "must be at least timers.heartbeat ({} ms), got {} ms",
                    ms(t.heartbeat),
                    ms(t.heartbeat_lowpri)
                ),
            );
        }
        for (name, d, prev_name, prev) in [
            (
                "peer_trouble",
                t.peer_trouble,
                "heartbeat_lowpri",
                t.heartbeat_lowpri,
            ),
            (
                "peer_inactive",
                t.peer_inactive,
                "peer_trouble",
                t.peer_trouble,
            ),
        ] {
            if d <= prev {
                return err(
                    name,
                    format!(
                        "must be greater than timers.{prev_name} ({} ms), got {} ms",
                        ms(prev),
                        ms(d)
                    ),
                );
            }
        }
        if !(1..=100).contains(&t.link_up_count) {
            return err(
                "link_up_count",
                format!("must be 1..=100, got {}", t.link_up_count),
            );
        }
        // A race's messages go out at once and are resent every `heartbeat`
        // whatever the links' priority: `race_timeout` is judged by that.
        if t.race_timeout <= t.heartbeat {
            return err(
                "race_timeout",
                format!(
                    "must be greater than timers.heartbeat ({} ms), got {} ms",
                    ms(t.heartbeat),
                    ms(t.race_timeout)
                ),
            );
        }
        // Leases are renewed by heartbeats, every `heartbeat` (a low-priority link
        // keeps that pace for a peer no high-priority link reaches). A
        // confirmation arrives up to a heartbeat after the frame it confirms and the
        // next comes a heartbeat later, so a lease of two heartbeats lapses before
        // each renewal once transit and clock drift are counted (random seed 2771);
        // three leave a heartbeat to spare.
        let three_heartbeats = t.heartbeat.saturating_mul(3);
        if t.lease < three_heartbeats {
            return err(
                "lease",
                format!(
                    "must be at least 3 × timers.heartbeat ({} ms), got {} ms (it defaults to timers.peer_inactive - timers.heartbeat)",
                    ms(three_heartbeats),
                    ms(t.lease)
                ),
            );
        }
        if t.lease > t.peer_inactive {
            return err(
                "lease",
                format!(
                    "must be at most timers.peer_inactive ({} ms), got {} ms",
                    ms(t.peer_inactive),
                    ms(t.lease)
                ),
            );
        }
        if t.stall_report.is_zero() || t.stall_report >= t.lease {
            return err(
                "stall_report",
                format!(
                    "must be more than 0 and less than timers.lease ({} ms), got {} ms",
                    ms(t.lease),
                    ms(t.stall_report)
                ),
            );
        }
        Ok(())
    }

    /// The node named `name`.
    pub fn node_by_name(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node with ID `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The control socket of `node`: its `socket`, else `{run_dir}/{name}.sock`.
    pub fn socket_path(&self, node: &NodeConfig) -> PathBuf {
        node.socket
            .clone()
            .unwrap_or_else(|| self.cluster.run_dir.join(format!("{}.sock", node.name)))
    }

    /// What the llt core needs. Ethernet links are broadcast links. The listening window
    /// is three heartbeats, `3 * heartbeat` (low-priority links beat at that pace to
    /// peers no high-priority link reaches, so also when every link is low priority).
    pub fn llt_config(&self) -> LltConfig {
        let interval = self.timers.heartbeat;
        LltConfig {
            cluster_id: self.cluster.id,
            nodes: self
                .nodes
                .iter()
                .map(|n| n.id)
                .chain(self.witness.as_ref().map(|_| WITNESS_ID))
                .collect(),
            links: self
                .links
                .iter()
                .map(|l| LinkSpec {
                    name: l.name.clone(),
                    priority: l.priority,
                    broadcast: l.kind == LinkKind::Ether,
                })
                .collect(),
            heartbeat: self.timers.heartbeat,
            heartbeat_lowpri: self.timers.heartbeat_lowpri,
            peer_trouble: self.timers.peer_trouble,
            peer_inactive: self.timers.peer_inactive,
            link_up_count: self.timers.link_up_count,
            keys: self.frame_keys(),
            sabotage_stale_frames: false,
            listen_window: interval.saturating_mul(3),
            witness: self.witness.as_ref().map(|w| WitnessLink {
                id: WITNESS_ID,
                link: w.link,
                keys: w.key.iter().cloned().collect(),
                heartbeat: w.heartbeat,
                peer_trouble: w.peer_trouble,
                peer_inactive: w.peer_inactive,
            }),
        }
    }

    /// The witness as a node of this cluster: ID [`WITNESS_ID`], named `witness`,
    /// attached to the witness link only. `None` without a `[witness]`.
    pub fn witness_node(&self) -> Option<NodeConfig> {
        let w = self.witness.as_ref()?;
        Some(NodeConfig {
            id: WITNESS_ID,
            name: WITNESS_NODE_NAME.into(),
            socket: None,
            weight: w.weight,
            links: self
                .links
                .iter()
                .map(|l| {
                    if l.id == w.link {
                        NodeLinkAddr::Udp {
                            addr: w.address,
                            interface: None,
                        }
                    } else {
                        NodeLinkAddr::Absent
                    }
                })
                .collect(),
        })
    }

    /// Reads and validates a copy of a cluster's config file as the witness does:
    /// without the cluster's keys (the witness's machine does not hold them), with the
    /// witness's key from `key_file` when given, else from `[witness] key_file`. The
    /// file must have a `[witness]`.
    pub fn load_for_witness(
        path: &Path,
        key_file: Option<PathBuf>,
    ) -> Result<ClusterConfig, ConfigError> {
        let refuse = |why: String| ConfigError::new(path, "(file)", why);
        let (bytes, _) = crate::files::read_bounded(path, true, MAX_CONFIG_LEN).map_err(refuse)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| refuse(format!("cannot read it: not UTF-8 text ({e})")))?;
        let cfg = load_unvalidated_with(&text, path, &KeyLoad::WitnessOnly { key_file })?;
        cfg.validate()?;
        if cfg.witness.is_none() {
            return Err(ConfigError::new(
                path,
                "witness",
                "is missing: a cluster served by a witness says so in a [witness] table (link, address, key_file)".to_string(),
            ));
        }
        Ok(cfg)
    }

    /// The llt key ring: `key_file`'s key first (frames are sent with it), then the
    /// keys of `accept_key_files`, each key once. Empty on an insecure cluster.
    pub fn frame_keys(&self) -> Vec<FrameKey> {
        let mut ring: Vec<FrameKey> = Vec::new();
        for k in self.cluster.key.iter().chain(&self.cluster.accept_keys) {
            if !ring.iter().any(|r| r.id == k.id) {
                ring.push(k.clone());
            }
        }
        ring
    }

    /// The votes each node holds in the quorum rule.
    pub fn weights(&self) -> Weights {
        Weights::with(
            self.nodes
                .iter()
                .map(|n| (n.id, n.weight))
                .chain(self.witness.as_ref().map(|w| (WITNESS_ID, w.weight))),
        )
    }

    /// What is allowed but worth a warning, one line each naming the field:
    /// `vigil config check` prints them.
    pub fn warnings(&self) -> Vec<String> {
        let c = &self.cluster;
        let mut w = Vec::new();
        if c.insecure {
            w.push(format!(
                "{}: cluster.insecure: llt frames are not authenticated: anyone who can reach a cluster network can forge heartbeats and membership (test clusters only); make a key with `vigil keygen {}`",
                self.source.display(),
                self.suggested_key_file().display()
            ));
        }
        for (i, k) in c.accept_keys.iter().enumerate() {
            let same_as = if c.key.as_ref() == Some(k) {
                Some("cluster.key_file".to_string())
            } else {
                c.accept_keys[..i]
                    .iter()
                    .position(|o| o == k)
                    .map(|j| format!("cluster.accept_key_files[{j}]"))
            };
            if let Some(other) = same_as {
                w.push(format!(
                    "{}: cluster.accept_key_files[{i}]: the same key as {other} (key ID {}); it counts once",
                    self.source.display(),
                    k.id
                ));
            }
        }
        if self.nodes.len() == 2 && self.witness.is_none() {
            let weights = self.weights();
            let (a, b) = (&self.nodes[0], &self.nodes[1]);
            let (survivor, other) = if weights.of(a.id) > weights.of(b.id)
                || (weights.of(a.id) == weights.of(b.id) && a.id < b.id)
            {
                (a, b)
            } else {
                (b, a)
            };
            w.push(format!(
                "{}: nodes: a two-node cluster without a witness: when {} (ID {}) crashes, {} (ID {}) cannot tell the crash from a partition and fences itself too, so the whole cluster goes down with it; a partition keeps only {}. Surviving either node's crash needs a third vote: run `vigil witness` on another machine and add a [witness] table here (docs/fencing.md, \"Weights and the witness\")",
                self.source.display(),
                survivor.name,
                survivor.id,
                other.name,
                other.id,
                survivor.name
            ));
        }
        w
    }

    /// Where the errors and warnings suggest making a key: `cluster.key` next to the
    /// config file.
    pub fn suggested_key_file(&self) -> PathBuf {
        self.source
            .parent()
            .unwrap_or(Path::new(""))
            .join(DEFAULT_KEY_FILE_NAME)
    }

    /// What the fence core needs: every node, the seed count, the race and lease
    /// timers, the drift bound, the heartbeat (its retransmission period) and whether
    /// a lost node fences itself (`fencing = "majority"`).
    pub fn fence_config(&self) -> FenceConfig {
        FenceConfig {
            nodes: self.nodes.iter().map(|n| n.id).collect::<NodeSet>(),
            seed: self.cluster.seed,
            race_timeout: self.timers.race_timeout,
            lease: self.timers.lease,
            max_drift_ppm: self.cluster.max_drift_ppm,
            heartbeat: self.timers.heartbeat,
            peer_inactive: self.timers.peer_inactive,
            self_fence: self.cluster.fencing == FencingMode::Majority,
            stall_report: self.timers.stall_report,
            stall_action: self.daemon.stall_action,
            watchdog: self.watchdog.as_ref().map(|w| w.timeout),
            weights: self.weights(),
            witness: self.witness.is_some(),
            // Off for now: turning it on (two heartbeats) changes the engine's
            // traces, and the 100,000-seed sweeps of every profile ran without it.
            gather_window: Duration::ZERO,
            sabotage: None,
        }
    }
}

// ---------------------------------------------------------------------------------
// The file as written, before validation.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: RawCluster,
    #[serde(default)]
    timers: RawTimers,
    #[serde(default)]
    links: Vec<RawLink>,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    daemon: RawDaemon,
    watchdog: Option<RawWatchdog>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    probes: Vec<RawProbe>,
    #[serde(default)]
    hooks: Vec<RawHook>,
    witness: Option<RawWitness>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    link: String,
    address: String,
    key_file: Option<PathBuf>,
    heartbeat: Option<u64>,
    peer_trouble: Option<u64>,
    peer_inactive: Option<u64>,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    name: String,
    command: Vec<String>,
    on: Option<Vec<HookOn>>,
    timeout: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    realtime: Option<Realtime>,
    rt_priority: Option<u8>,
    mlockall: Option<bool>,
    stall_action: Option<StallAction>,
    control_group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatchdog {
    device: Option<PathBuf>,
    timeout: Option<u64>,
    softdog: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum RawProbeKind {
    Command,
    Writable,
    Mount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    kind: RawProbeKind,
    command: Option<Vec<String>>,
    expect_exit: Option<i32>,
    path: Option<PathBuf>,
    interval: Option<u64>,
    timeout: Option<u64>,
    threshold: Option<u32>,
    on_failure: Option<OnFailure>,
    nodes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    id: u32,
    seed: Option<usize>,
    #[serde(default)]
    fencing: FencingMode,
    #[serde(default)]
    self_fence: RawSelfFence,
    self_fence_hook: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    accept_key_files: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    #[serde(default)]
    fault_injection: bool,
    max_drift_ppm: Option<u32>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum RawSelfFence {
    #[default]
    Exit,
    Hook,
    Reboot,
    Halt,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimers {
    profile: Option<TimerProfile>,
    heartbeat: Option<u64>,
    heartbeat_lowpri: Option<u64>,
    peer_trouble: Option<u64>,
    peer_inactive: Option<u64>,
    link_up_count: Option<u32>,
    race_timeout: Option<u64>,
    lease: Option<u64>,
    stall_report: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: String,
    kind: LinkKind,
    priority: Option<LinkPriority>,
    port: Option<u16>,
    ethertype: Option<u16>,
    interface: Option<String>,
    dscp: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u8,
    name: String,
    socket: Option<PathBuf>,
    weight: Option<i64>,
    #[serde(default)]
    links: BTreeMap<String, RawNodeLink>,
}

/// A node's entry for one link: a string (address, or interface on Ethernet) or a table.
enum RawNodeLink {
    Short(String),
    Table(RawNodeLinkTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeLinkTable {
    address: Option<String>,
    interface: Option<String>,
}

impl<'de> Deserialize<'de> for RawNodeLink {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawNodeLink, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawNodeLink;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (the address; the interface on ether links) or a table { address, interface }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawNodeLink, E> {
                Ok(RawNodeLink::Short(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawNodeLink, A::Error> {
                RawNodeLinkTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawNodeLink::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserialize and build, without [`ClusterConfig::validate`].
fn load_unvalidated(text: &str, source: &Path) -> Result<ClusterConfig, ConfigError> {
    load_unvalidated_with(text, source, &KeyLoad::All)
}

/// Which key files [`build`] reads.
enum KeyLoad {
    /// The cluster's keys and the witness's key: a node.
    All,
    /// Only the witness's key, from `key_file` when given (the witness's own copy)
    /// or else from `[witness] key_file`: `vigil witness`, whose machine never holds
    /// the cluster's key.
    WitnessOnly { key_file: Option<PathBuf> },
}

fn load_unvalidated_with(
    text: &str,
    source: &Path,
    keys: &KeyLoad,
) -> Result<ClusterConfig, ConfigError> {
    let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(text, source, e))?;
    build(raw, source, keys)
}

fn toml_error(
    text: &str,
    source: &Path,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.inner();
    let message = inner
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .trim();
    let position = inner.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    });
    match (path.as_str(), position) {
        // Syntax errors, and errors about the document as a whole.
        (".", Some((line, column))) => {
            ConfigError::new(source, format!("line {line}, column {column}"), message)
        }
        (".", None) => ConfigError::new(source, "(document)", message),
        (_, Some((line, _))) => ConfigError::new(source, path, format!("{message} (line {line})")),
        (_, None) => ConfigError::new(source, path, message),
    }
}

/// Turns the raw file into a [`ClusterConfig`]: defaults, relative paths, the key, and
/// the checks that need the raw form (kind-specific keys, link names in node tables,
/// address syntax). [`ClusterConfig::validate`] does the rest.
fn build(raw: RawFile, source: &Path, keys: &KeyLoad) -> Result<ClusterConfig, ConfigError> {
    let read_cluster_keys = matches!(keys, KeyLoad::All);
    let err = |field: String, reason: String| ConfigError::new(source, field, reason);
    let base = source.parent().unwrap_or(Path::new(""));
    let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let rc = raw.cluster;

    let self_fence = match (rc.self_fence, rc.self_fence_hook) {
        (RawSelfFence::Hook, Some(hook)) => SelfFence::Hook(if hook.as_os_str().is_empty() {
            hook
        } else {
            resolve(hook)
        }),
        (RawSelfFence::Hook, None) => {
            return Err(err(
                "cluster.self_fence".into(),
                "self_fence = \"hook\" needs cluster.self_fence_hook, the program to run".into(),
            ))
        }
        (other, Some(_)) => {
            return Err(err(
                "cluster.self_fence_hook".into(),
                format!(
                    "is only used with self_fence = \"hook\", but self_fence is \"{}\"",
                    format!("{other:?}").to_lowercase()
                ),
            ))
        }
        (RawSelfFence::Exit, None) => SelfFence::Exit,
        (RawSelfFence::Reboot, None) => SelfFence::Reboot,
        (RawSelfFence::Halt, None) => SelfFence::Halt,
    };

    let (key_file, key) = match rc.key_file {
        Some(p) if read_cluster_keys => {
            let p = resolve(p);
            let key = read_key(&p).map_err(|why| err("cluster.key_file".into(), why))?;
            (Some(p), Some(key))
        }
        Some(p) => (Some(resolve(p)), None),
        None => (None, None),
    };
    let mut accept_key_files = Vec::new();
    let mut accept_keys = Vec::new();
    if rc.accept_key_files.len() > MAX_ACCEPT_KEYS {
        return Err(err(
            "cluster.accept_key_files".into(),
            format!(
                "lists {} files; at most {MAX_ACCEPT_KEYS} (a rotation needs one)",
                rc.accept_key_files.len()
            ),
        ));
    }
    for (i, p) in rc.accept_key_files.into_iter().enumerate() {
        let p = resolve(p);
        if read_cluster_keys {
            let key =
                read_key(&p).map_err(|why| err(format!("cluster.accept_key_files[{i}]"), why))?;
            accept_keys.push(key);
        }
        accept_key_files.push(p);
    }

    let t = raw.timers;
    let defaults = Timers::profile(t.profile.unwrap_or_default());
    let peer_trouble = t
        .peer_trouble
        .map_or(defaults.peer_trouble, Duration::from_millis);
    let timers = Timers {
        heartbeat: t
            .heartbeat
            .map_or(defaults.heartbeat, Duration::from_millis),
        heartbeat_lowpri: t
            .heartbeat_lowpri
            .map_or(defaults.heartbeat_lowpri, Duration::from_millis),
        peer_trouble,
        peer_inactive: t
            .peer_inactive
            .map_or(defaults.peer_inactive, Duration::from_millis),
        link_up_count: t.link_up_count.unwrap_or(defaults.link_up_count),
        race_timeout: t
            .race_timeout
            .map_or(defaults.race_timeout, Duration::from_millis),
        lease: Duration::ZERO,
        stall_report: Duration::ZERO,
        profile: defaults.profile,
    };
    let timers = Timers {
        // The lease follows peer_inactive - heartbeat unless given: as long as a
        // lease can be without delaying a decision, so that stalls the cluster
        // tolerates (shorter than peer_inactive - heartbeat) never lapse it.
        lease: t.lease.map_or(
            timers.peer_inactive.saturating_sub(timers.heartbeat),
            Duration::from_millis,
        ),
        // Half a heartbeat unless given, at least 1 ms.
        stall_report: t.stall_report.map_or(
            (timers.heartbeat / 2).max(Duration::from_millis(1)),
            Duration::from_millis,
        ),
        ..timers
    };

    let mut links = Vec::with_capacity(raw.links.len());
    for (i, l) in raw.links.into_iter().enumerate() {
        let f = |name: &str| format!("links[{i}].{name}");
        let udp = l.kind.is_udp();
        if !udp && l.port.is_some() {
            return Err(err(f("port"), "is only used on udp and udp6 links".into()));
        }
        if !udp && l.dscp.is_some() {
            return Err(err(f("dscp"), "is only used on udp and udp6 links".into()));
        }
        if udp && l.ethertype.is_some() {
            return Err(err(f("ethertype"), "is only used on ether links".into()));
        }
        links.push(LinkConfig {
            // More than MAX_LINKS links are refused by check_links below.
            id: LinkId(u8::try_from(i).unwrap_or(u8::MAX)),
            name: l.name,
            kind: l.kind,
            priority: l.priority.unwrap_or(LinkPriority::High),
            port: l.port,
            ethertype: if udp {
                0
            } else {
                l.ethertype.unwrap_or(DEFAULT_ETHERTYPE)
            },
            interface: l.interface,
            dscp: l.dscp,
        });
    }

    check_links(source, &links)?;

    let mut nodes = Vec::with_capacity(raw.nodes.len());
    for (i, n) in raw.nodes.into_iter().enumerate() {
        if let Some(unknown) = n
            .links
            .keys()
            .find(|k| !links.iter().any(|l| &l.name == *k))
        {
            let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            return Err(err(
                format!("nodes[{i}].links.{unknown}"),
                format!(
                    "no link named {unknown} (the links are: {})",
                    names.join(", ")
                ),
            ));
        }
        let mut addrs = Vec::with_capacity(links.len());
        for l in &links {
            let field = format!("nodes[{i}].links.{}", l.name);
            let Some(entry) = n.links.get(&l.name) else {
                return Err(err(field, format!("missing address for link {}", l.name)));
            };
            let addr = node_link(l, entry).map_err(|why| err(field, why))?;
            addrs.push(addr);
        }
        // No weight 0: the nodes of a view must always be able to seed again
        // without the witness (which takes no part in seeding), and a group of
        // every node of a view holds a quorum of it only when each node has a vote.
        let weight = match n.weight {
            None => 1,
            Some(w) => u8::try_from(w).ok().filter(|w| *w > 0).ok_or_else(|| {
                err(
                    format!("nodes[{i}].weight"),
                    format!("must be 1..=255 (votes in the quorum rule), got {w}"),
                )
            })?,
        };
        nodes.push(NodeConfig {
            id: NodeId(n.id),
            name: n.name,
            socket: n.socket.map(resolve),
            weight,
            links: addrs,
        });
    }

    let witness = raw
        .witness
        .map(|w| witness_config(w, &links, &timers, keys, &resolve, source))
        .transpose()?;

    let d = raw.daemon;
    let daemon = DaemonSection {
        realtime: d.realtime.unwrap_or_default(),
        rt_priority: d.rt_priority.unwrap_or(50),
        mlockall: d.mlockall.unwrap_or(false),
        stall_action: d.stall_action.unwrap_or_default(),
        control_group: d.control_group,
    };
    let watchdog = raw.watchdog.map(|w| WatchdogConfig {
        device: w
            .device
            .map_or_else(|| DEFAULT_WATCHDOG_DEVICE.into(), resolve),
        timeout: Duration::from_millis(w.timeout.unwrap_or(DEFAULT_WATCHDOG_TIMEOUT_MS)),
        softdog: w.softdog.unwrap_or(true),
    });
    let metrics = raw
        .metrics
        .map(|m| metrics_config(&m, source))
        .transpose()?;
    let mut probes = Vec::with_capacity(raw.probes.len());
    for (i, p) in raw.probes.into_iter().enumerate() {
        let f = |name: &str| format!("probes[{i}].{name}");
        let kind_name = format!("{:?}", p.kind).to_lowercase();
        let refuse = |field: &str| {
            Err(err(
                f(field),
                format!("is not used by kind = \"{kind_name}\" probes"),
            ))
        };
        let check = match p.kind {
            RawProbeKind::Command => {
                if p.path.is_some() {
                    return refuse("path");
                }
                let argv = p.command.unwrap_or_default();
                if argv.first().is_none_or(|c| c.is_empty()) {
                    return Err(err(
                        f("command"),
                        "a command probe needs command = [\"program\", \"arg\", ...]".into(),
                    ));
                }
                let expect_exit = p.expect_exit.unwrap_or(0);
                if !(0..=255).contains(&expect_exit) {
                    return Err(err(
                        f("expect_exit"),
                        format!("must be an exit code 0..=255, got {expect_exit}"),
                    ));
                }
                ProbeCheck::Command { argv, expect_exit }
            }
            RawProbeKind::Writable | RawProbeKind::Mount => {
                if p.command.is_some() {
                    return refuse("command");
                }
                if p.expect_exit.is_some() {
                    return refuse("expect_exit");
                }
                let path = match p.path {
                    Some(path) if !path.as_os_str().is_empty() => resolve(path),
                    _ => {
                        return Err(err(
                            f("path"),
                            format!("a {kind_name} probe needs path = \"/some/dir\""),
                        ))
                    }
                };
                if p.kind == RawProbeKind::Writable {
                    ProbeCheck::Writable { path }
                } else {
                    ProbeCheck::Mount { path }
                }
            }
        };
        let node_set = match p.nodes {
            None => nodes.iter().map(|n| n.id).collect(),
            Some(names) => {
                let mut set = NodeSet::EMPTY;
                for name in &names {
                    match nodes.iter().find(|n| &n.name == name) {
                        Some(n) => set.insert(n.id),
                        None => return Err(err(f("nodes"), format!("no node named {name:?}"))),
                    }
                }
                set
            }
        };
        let interval = p.interval.unwrap_or(DEFAULT_PROBE_INTERVAL_MS);
        probes.push(ProbeConfig {
            spec: ProbeSpec {
                name: p.name,
                interval: Duration::from_millis(interval),
                timeout: Duration::from_millis(p.timeout.unwrap_or(interval)),
                threshold: p.threshold.unwrap_or(DEFAULT_PROBE_THRESHOLD),
                on_failure: p.on_failure.unwrap_or_default(),
            },
            check,
            nodes: node_set,
        });
    }

    Ok(ClusterConfig {
        source: source.to_path_buf(),
        cluster: ClusterSection {
            name: rc.name,
            id: ClusterId(rc.id),
            seed: rc.seed.unwrap_or(nodes.len()),
            fencing: rc.fencing,
            self_fence,
            key_file,
            key,
            insecure: rc.insecure,
            accept_key_files,
            accept_keys,
            state_dir: resolve(rc.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into())),
            run_dir: resolve(rc.run_dir.unwrap_or_else(|| DEFAULT_RUN_DIR.into())),
            fault_injection: rc.fault_injection,
            max_drift_ppm: rc.max_drift_ppm.unwrap_or(DEFAULT_MAX_DRIFT_PPM),
        },
        timers,
        links,
        nodes,
        daemon,
        watchdog,
        metrics,
        probes,
        hooks: raw
            .hooks
            .into_iter()
            .map(|h| HookConfig {
                name: h.name,
                argv: h.command,
                on: h.on.unwrap_or_else(|| vec![HookOn::Authority]),
                timeout: Duration::from_millis(h.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT_MS)),
            })
            .collect(),
        witness,
    })
}

/// `[witness]`: the link by name, the address on it, the key, the timers (defaults
/// from `[timers]`) and the weight. The rules between fields are checked by
/// [`ClusterConfig::validate`].
fn witness_config(
    w: RawWitness,
    links: &[LinkConfig],
    timers: &Timers,
    keys: &KeyLoad,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    source: &Path,
) -> Result<WitnessConfig, ConfigError> {
    let err =
        |field: &str, reason: String| ConfigError::new(source, format!("witness.{field}"), reason);
    let Some(link) = links.iter().find(|l| l.name == w.link) else {
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        return Err(err(
            "link",
            format!(
                "no link named {} (the links are: {}); the witness needs a [[links]] entry of its own",
                w.link,
                names.join(", ")
            ),
        ));
    };
    if !link.kind.is_udp() {
        return Err(err(
            "link",
            format!(
                "link {} is {}: the witness is reached over udp or udp6",
                link.name, link.kind
            ),
        ));
    }
    let address = parse_udp_addr(&w.address, link).map_err(|why| err("address", why))?;
    let key_file = match keys {
        KeyLoad::WitnessOnly { key_file: Some(k) } => Some(k.clone()),
        _ => w.key_file.map(resolve),
    };
    let key = key_file
        .as_deref()
        .map(read_key)
        .transpose()
        .map_err(|why| err("key_file", why))?;
    let ms = Duration::from_millis;
    let weight = match w.weight {
        None => 1,
        Some(v) => u8::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| {
            err(
                "weight",
                format!("must be 1..=255 (votes in the quorum rule), got {v}"),
            )
        })?,
    };
    Ok(WitnessConfig {
        link: link.id,
        address,
        key_file,
        key,
        heartbeat: w.heartbeat.map_or(timers.heartbeat, ms),
        peer_trouble: w
            .peer_trouble
            .map_or(timers.peer_trouble.saturating_mul(2), ms),
        peer_inactive: w
            .peer_inactive
            .map_or(timers.peer_inactive.saturating_mul(2), ms),
        weight,
    })
}

/// The rules about the links alone; checked before the nodes' link tables are read,
/// so that a bad link is reported as such rather than as a bad node entry.
/// `[metrics]`: `listen` is an `IP:port` with a port (0 would be a port nobody
/// knows to scrape).
fn metrics_config(m: &RawMetrics, source: &Path) -> Result<MetricsConfig, ConfigError> {
    let bad = |reason: String| ConfigError::new(source, "metrics.listen", reason);
    let listen: SocketAddr = m.listen.trim().parse().map_err(|_| {
        bad(format!(
            "must be an IP address and a port such as \"127.0.0.1:9464\" or \"[::1]:9464\", got {:?}",
            m.listen
        ))
    })?;
    if listen.port() == 0 {
        return Err(bad(format!("the port must not be 0, got {:?}", m.listen)));
    }
    Ok(MetricsConfig { listen })
}

fn check_links(source: &Path, links: &[LinkConfig]) -> Result<(), ConfigError> {
    let err = |field: String, reason: String| Err(ConfigError::new(source, field, reason));
    if links.is_empty() || links.len() > MAX_LINKS {
        return err(
            "links".into(),
            format!("need 1 to {MAX_LINKS} [[links]], got {}", links.len()),
        );
    }
    for (i, l) in links.iter().enumerate() {
        let f = |name: &str| format!("links[{i}].{name}");
        if l.id.index() != i {
            return err(f("id"), format!("link at index {i} has ID {}", l.id));
        }
        if let Err(why) = check_name(&l.name, MAX_LINK_NAME_LEN, |ch| {
            ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'
        }) {
            return err(
                f("name"),
                format!("{why}; use 1 to {MAX_LINK_NAME_LEN} of A-Z a-z 0-9 _ -"),
            );
        }
        if let Some(j) = links[..i].iter().position(|o| o.name == l.name) {
            return err(
                f("name"),
                format!("duplicate link name {}, also used by links[{j}]", l.name),
            );
        }
        if let Some(ifname) = &l.interface {
            if let Err(why) = check_ifname(ifname) {
                return err(f("interface"), why);
            }
        }
        if let Some(d) = l.dscp {
            if d > 63 {
                return err(f("dscp"), format!("must be 0..=63, got {d}"));
            }
        }
        if l.port == Some(0) {
            return err(f("port"), "port 0 is not a usable port".into());
        }
        if l.kind == LinkKind::Ether && l.ethertype < MIN_ETHERTYPE {
            return err(
                f("ethertype"),
                format!(
                    "must be at least 0x{MIN_ETHERTYPE:04X} (lower values are 802.3 lengths), got 0x{:04X}",
                    l.ethertype
                ),
            );
        }
    }
    Ok(())
}

/// One node's entry for link `l`, as data.
fn node_link(l: &LinkConfig, entry: &RawNodeLink) -> Result<NodeLinkAddr, String> {
    match l.kind {
        LinkKind::Udp | LinkKind::Udp6 => {
            let (address, interface) = match entry {
                RawNodeLink::Short(a) => (a.as_str(), None),
                RawNodeLink::Table(t) => match &t.address {
                    Some(a) => (a.as_str(), t.interface.clone()),
                    None => return Err(format!("missing address for link {}", l.name)),
                },
            };
            let addr = parse_udp_addr(address, l)?;
            Ok(NodeLinkAddr::Udp {
                addr,
                interface: interface.or_else(|| l.interface.clone()),
            })
        }
        LinkKind::Ether => {
            let interface = match entry {
                RawNodeLink::Short(i) => Some(i.clone()),
                RawNodeLink::Table(t) => {
                    if t.address.is_some() {
                        return Err(format!(
                            "ether link {} takes no address, only the node's interface",
                            l.name
                        ));
                    }
                    t.interface.clone().or_else(|| l.interface.clone())
                }
            };
            match interface {
                Some(interface) => Ok(NodeLinkAddr::Ether { interface }),
                None => Err(format!(
                    "ether link {} needs an interface: give it here or as links[{}].interface",
                    l.name, l.id
                )),
            }
        }
    }
}

/// `"IP:PORT"`, `"[IPv6]:PORT"`, `"IP"`, `"IPv6"` or `"[IPv6]"`; the port defaults to
/// the link's.
fn parse_udp_addr(s: &str, l: &LinkConfig) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let ip: IpAddr = bare
        .parse()
        .map_err(|_| format!("{s:?} is not an address; write IP, IP:PORT or [IPv6]:PORT"))?;
    match l.port {
        Some(port) => Ok(SocketAddr::new(ip, port)),
        None => Err(format!(
            "{s} has no port; write IP:PORT or set links[{}].port",
            l.id
        )),
    }
}

fn check_udp_addr(l: &LinkConfig, addr: SocketAddr) -> Result<(), String> {
    match (l.kind, addr) {
        (LinkKind::Udp, SocketAddr::V6(_)) => {
            return Err(format!(
                "link {} is udp (IPv4) but {addr} is an IPv6 address; use kind = \"udp6\"",
                l.name
            ))
        }
        (LinkKind::Udp6, SocketAddr::V4(_)) => {
            return Err(format!(
                "link {} is udp6 (IPv6) but {addr} is an IPv4 address; use kind = \"udp\"",
                l.name
            ))
        }
        _ => {}
    }
    if addr.port() == 0 {
        return Err(format!("{addr}: port 0 is not a usable port"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!(
            "{addr} cannot be a node's address (peers send to it)"
        ));
    }
    Ok(())
}

fn check_name(name: &str, max: usize, ok: impl Fn(char) -> bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > max {
        return Err(format!("{name:?} is longer than {max} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !ok(*c)) {
        return Err(format!("{name:?} contains {bad:?}"));
    }
    Ok(())
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name must not be empty".into());
    }
    if name.len() > MAX_LINK_NAME_LEN {
        return Err(format!(
            "interface name {name:?} is longer than {MAX_LINK_NAME_LEN} bytes"
        ));
    }
    if name == "." || name == ".." || name.chars().any(|c| c == '/' || c.is_whitespace()) {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(())
}

/// Reads the key file and derives the frame-MAC key from it. The file must be a
/// regular file of [`MIN_KEY_LEN`]..=[`MAX_KEY_LEN`] bytes, owned by the user reading
/// it (or root), that neither group nor others may access.
fn read_key(path: &Path) -> Result<FrameKey, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let (bytes, meta) = crate::files::read_bounded(path, true, MAX_KEY_LEN)
        .map_err(|why| format!("key file {shown}: {why}"))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "key file {shown} has mode {mode:04o}; it must not be accessible by group or others (chmod 600)"
        ));
    }
    crate::files::check_owner(&meta, path, true)
        .map_err(|why| format!("key file {shown}: {why}"))?;
    if bytes.len() < MIN_KEY_LEN {
        return Err(format!(
            "key file {shown} holds {} bytes; it needs at least {MIN_KEY_LEN} (e.g. head -c 32 /dev/urandom > {shown})",
            bytes.len()
        ));
    }
    Ok(FrameKey::from_material(&bytes))
}

mod check;
pub mod witness;
#[cfg(test)]
mod witness_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{root_or_skip, TempDir};
    use vigil_llt::wire::KeyId;

    const GOOD: &str = r#"
[cluster]
name = "demo"
id = 7
insecure = true
seed = 2
fencing = "majority"
self_fence = "hook"
self_fence_hook = "hooks/fence.sh"
state_dir = "/var/lib/demo"
run_dir = "run"
fault_injection = true

[timers]
heartbeat = 50
heartbeat_lowpri = 200
peer_trouble = 300
peer_inactive = 900
link_up_count = 5

[[links]]
name = "a"
kind = "udp"
port = 5001
interface = "lo"
dscp = 46

[[links]]
name = "b6"
kind = "udp6"
priority = "low"

[[links]]
name = "e"
kind = "ether"
ethertype = 0x88B5
interface = "eth9"

[[nodes]]
id = 0
name = "n0"
socket = "/tmp/n0.sock"
[nodes.links]
a = "127.0.0.1"
b6 = "[::1]:6001"
e = "veth0"

[[nodes]]
id = 5
name = "n5.example"
links = { a = { address = "127.0.0.2:5002", interface = "eth1" }, b6 = "[::1]:6002", e = {} }

[[nodes]]
id = 63
name = "n-63"
links = { a = "127.0.0.3:5003", b6 = "[::1]:6003", e = { interface = "veth63" } }
"#;

    const MINIMAL: &str = r#"
[cluster]
name = "demo"
id = 1
insecure = true

[[links]]
name = "a"
kind = "udp"
port = 5001

[[nodes]]
id = 0
name = "n0"
links = { a = "127.0.0.1" }

[[nodes]]
id = 1
name = "n1"
links = { a = "127.0.0.1:5002" }
"#;

    fn src() -> PathBuf {
        PathBuf::from("/etc/vigil/cluster.toml")
    }

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(text, &src())
    }

    /// Asserts `text` is refused at `field` with a reason containing `reason`.
    #[track_caller]
    fn refused(text: &str, field: &str, reason: &str) {
        let e = parse(text).expect_err("config should be refused");
        assert_eq!(e.file, src());
        assert_eq!(e.field, field, "wrong field in {e}");
        assert!(
            e.reason.contains(reason),
            "reason {:?} lacks {reason:?}",
            e.reason
        );
    }

    /// MINIMAL with `from` replaced by `to` (which must occur).
    fn edit(from: &str, to: &str) -> String {
        assert!(MINIMAL.contains(from), "{from:?} not in MINIMAL");
        MINIMAL.replacen(from, to, 1)
    }

    fn nodes_text(n: usize, seed: Option<usize>) -> String {
        let mut s = String::from("[cluster]\nname = \"x\"\nid = 1\ninsecure = true\n");
        if let Some(seed) = seed {
            s += &format!("seed = {seed}\n");
        }
        s += "[[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5000\n";
        for i in 0..n {
            s += &format!(
                "[[nodes]]\nid = {i}\nname = \"n{i}\"\nlinks = {{ a = \"10.0.0.{}\" }}\n",
                i + 1
            );
        }
        s
    }

    #[test]
    fn full_example_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.source, src());
        assert_eq!(c.cluster.name, "demo");
        assert_eq!(c.cluster.id, ClusterId(7));
        assert_eq!(c.cluster.seed, 2);
        assert_eq!(c.cluster.fencing, FencingMode::Majority);
        assert_eq!(
            c.cluster.self_fence,
            SelfFence::Hook("/etc/vigil/hooks/fence.sh".into())
        );
        assert_eq!(c.cluster.state_dir, PathBuf::from("/var/lib/demo"));
        assert_eq!(c.cluster.run_dir, PathBuf::from("/etc/vigil/run"));
        assert!(c.cluster.fault_injection);
        assert_eq!(c.cluster.key, None);
        assert_eq!(
            c.timers,
            Timers {
                heartbeat: Duration::from_millis(50),
                heartbeat_lowpri: Duration::from_millis(200),
                peer_trouble: Duration::from_millis(300),
                peer_inactive: Duration::from_millis(900),
                link_up_count: 5,
                race_timeout: Duration::from_millis(200),
                // Not given: follows peer_inactive - heartbeat.
                lease: Duration::from_millis(850),
                // Not given: half a heartbeat.
                stall_report: Duration::from_millis(25),
                profile: TimerProfile::Default,
            }
        );
        assert_eq!(c.cluster.max_drift_ppm, DEFAULT_MAX_DRIFT_PPM);
        assert_eq!(c.links.len(), 3);
        assert_eq!(c.links[0].id, LinkId(0));
        assert_eq!(c.links[0].kind, LinkKind::Udp);
        assert_eq!(c.links[0].priority, LinkPriority::High);
        assert_eq!(c.links[0].dscp, Some(46));
        assert_eq!(c.links[0].ethertype, 0);
        assert_eq!(c.links[1].kind, LinkKind::Udp6);
        assert_eq!(c.links[1].priority, LinkPriority::Low);
        assert_eq!(c.links[2].id, LinkId(2));
        assert_eq!(c.links[2].ethertype, 0x88B5);
        assert_eq!(c.links[2].kind.to_string(), "ether");

        let n0 = c.node_by_name("n0").unwrap();
        assert_eq!(n0.id, NodeId(0));
        assert_eq!(
            n0.links,
            vec![
                NodeLinkAddr::Udp {
                    addr: "127.0.0.1:5001".parse().unwrap(),
                    interface: Some("lo".into())
                },
                NodeLinkAddr::Udp {
                    addr: "[::1]:6001".parse().unwrap(),
                    interface: None
                },
                NodeLinkAddr::Ether {
                    interface: "veth0".into()
                },
            ]
        );
        assert_eq!(c.socket_path(n0), PathBuf::from("/tmp/n0.sock"));
        let n5 = c.node(NodeId(5)).unwrap();
        assert_eq!(n5.name, "n5.example");
        assert_eq!(
            n5.links[0],
            NodeLinkAddr::Udp {
                addr: "127.0.0.2:5002".parse().unwrap(),
                interface: Some("eth1".into())
            }
        );
        assert_eq!(
            n5.links[2],
            NodeLinkAddr::Ether {
                interface: "eth9".into()
            }
        );
        assert_eq!(
            c.socket_path(n5),
            PathBuf::from("/etc/vigil/run/n5.example.sock")
        );
        assert_eq!(
            c.node(NodeId(63)).unwrap().links[2],
            NodeLinkAddr::Ether {
                interface: "veth63".into()
            }
        );
        assert!(c.node(NodeId(1)).is_none());
        assert!(c.node_by_name("n1").is_none());

        let llt = c.llt_config();
        assert_eq!(llt.cluster_id, ClusterId(7));
        assert_eq!(llt.nodes, vec![NodeId(0), NodeId(5), NodeId(63)]);
        assert_eq!(llt.links.len(), 3);
        assert!(!llt.links[0].broadcast);
        assert!(llt.links[2].broadcast);
        assert_eq!(llt.links[1].priority, LinkPriority::Low);
        assert_eq!(llt.heartbeat, Duration::from_millis(50));
        assert_eq!(llt.link_up_count, 5);
        assert_eq!(llt.listen_window, Duration::from_millis(150));
        assert!(llt.keys.is_empty());

        // Serializable for `lltstat -c --json`.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["timers"]["peer_inactive_ms"], 900);
        assert_eq!(json["links"][1]["kind"], "udp6");
        assert_eq!(
            json["cluster"]["self_fence"]["hook"],
            "/etc/vigil/hooks/fence.sh"
        );
        assert!(json["cluster"].get("key").is_none());
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.cluster.seed, 2);
        assert_eq!(c.cluster.fencing, FencingMode::Majority);
        assert_eq!(c.cluster.self_fence, SelfFence::Exit);
        assert_eq!(c.cluster.key_file, None);
        assert_eq!(c.cluster.key, None);
        assert_eq!(c.cluster.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.cluster.run_dir, PathBuf::from(DEFAULT_RUN_DIR));
        assert!(!c.cluster.fault_injection);
        assert_eq!(c.timers, Timers::default());
        assert_eq!(c.timers.heartbeat, Duration::from_millis(100));
        assert_eq!(c.timers.heartbeat_lowpri, Duration::from_millis(250));
        assert_eq!(c.timers.peer_trouble, Duration::from_millis(300));
        assert_eq!(c.timers.peer_inactive, Duration::from_millis(600));
        assert_eq!(c.timers.link_up_count, 3);
        assert_eq!(c.timers.race_timeout, Duration::from_millis(200));
        assert_eq!(c.timers.lease, Duration::from_millis(500));
        assert_eq!(c.timers.stall_report, Duration::from_millis(50));
        assert_eq!(c.daemon, DaemonSection::default());
        assert_eq!(c.watchdog, None);
        assert!(c.probes.is_empty());
        assert_eq!(c.cluster.max_drift_ppm, 1000);
        assert_eq!(c.links[0].priority, LinkPriority::High);
        assert_eq!(c.links[0].interface, None);
        assert_eq!(
            c.nodes[0].links[0],
            NodeLinkAddr::Udp {
                addr: "127.0.0.1:5001".parse().unwrap(),
                interface: None
            }
        );
        assert_eq!(
            c.socket_path(&c.nodes[1]),
            PathBuf::from("/run/vigil/n1.sock")
        );
        assert_eq!(c.llt_config().listen_window, Duration::from_millis(300));

        let ether = "[[links]]\nname = \"e\"\nkind = \"ether\"\n";
        let text = edit("[[nodes]]", &format!("{ether}\n[[nodes]]"))
            .replace(
                "links = { a = \"127.0.0.1\" }",
                "links = { a = \"127.0.0.1\", e = \"eth0\" }",
            )
            .replace(
                "links = { a = \"127.0.0.1:5002\" }",
                "links = { a = \"127.0.0.1:5002\", e = \"eth0\" }",
            );
        let c = parse(&text).unwrap();
        assert_eq!(c.links[1].ethertype, DEFAULT_ETHERTYPE);
    }

    #[test]
    fn the_lease_needs_three_heartbeats_whatever_the_links_priority() {
        // Random seed 2771's ratio: a lease of two heartbeats lapsed before each
        // renewal with 10 % drift.
        let t = "heartbeat = 8\nheartbeat_lowpri = 30\npeer_trouble = 32\npeer_inactive = 63\nrace_timeout = 23\nstall_report = 12\n";
        let low = |lease: u32| {
            edit(
                "port = 5001",
                &format!("port = 5001\npriority = \"low\"\n\n[timers]\n{t}lease = {lease}"),
            )
        };
        let high = |lease: u32| {
            edit(
                "[[links]]",
                &format!("[timers]\n{t}lease = {lease}\n\n[[links]]"),
            )
        };
        for text in [low(23), high(23)] {
            refused(
                &text,
                "timers.lease",
                "must be at least 3 × timers.heartbeat (24 ms), got 23 ms",
            );
        }
        // Low-priority links beat every `heartbeat` to a peer no high-priority link
        // reaches, so every link low priority needs nothing more.
        for text in [low(24), high(24)] {
            assert_eq!(
                parse(&text).unwrap().timers.lease,
                Duration::from_millis(24)
            );
        }
    }

    #[test]
    fn all_low_links_listen_three_heartbeats() {
        let c = parse(&edit("port = 5001", "port = 5001\npriority = \"low\"")).unwrap();
        assert_eq!(c.llt_config().listen_window, Duration::from_millis(300));
    }

    #[test]
    fn display_names_file_field_reason() {
        let e = parse(&edit("id = 1\n", "id = 1\nseed = 9\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/vigil/cluster.toml: cluster.seed: must be between 1 and the number of nodes (2), got 9"
        );
    }

    #[test]
    fn unknown_field_is_named() {
        refused(
            &edit("[[links]]", "[timers]\nbogus = 1\n\n[[links]]"),
            "timers.bogus",
            "bogus",
        );
        refused(
            &edit("kind = \"udp\"", "kind = \"udp\"\ncolour = \"red\""),
            "links[0].colour",
            "colour",
        );
        refused(
            &edit(
                "a = \"127.0.0.1:5002\"",
                "a = { address = \"127.0.0.1:5002\", ifname = \"x\" }",
            ),
            "nodes[1].links.a.ifname",
            "ifname",
        );
    }

    #[test]
    fn wrong_type_names_the_path() {
        refused(
            &edit("id = 1\nname = \"n1\"", "id = \"one\"\nname = \"n1\""),
            "nodes[1].id",
            "invalid type",
        );
        refused(
            &edit("id = 1\nname = \"n1\"", "id = 300\nname = \"n1\""),
            "nodes[1].id",
            "300",
        );
        refused(
            &edit("kind = \"udp\"", "kind = \"tcp\""),
            "links[0].kind",
            "tcp",
        );
        refused(
            &edit("port = 5001", "port = 70000"),
            "links[0].port",
            "70000",
        );
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = 5"),
            "nodes[1].links.a",
            "a string",
        );
    }

    #[test]
    fn missing_required_field() {
        refused(&edit("name = \"demo\"\n", ""), "cluster", "name");
    }

    #[test]
    fn bad_toml_syntax_gives_a_line() {
        let e = parse("[cluster]\nname = \"demo\"\nid = = 7\n").unwrap_err();
        assert!(e.field.starts_with("line 3, column"), "{e}");
        assert!(!e.reason.is_empty() && !e.reason.contains('\n'), "{e}");
    }

    #[test]
    fn duplicate_node_id() {
        let text = nodes_text(3, None).replace("id = 2\nname = \"n2\"", "id = 1\nname = \"n2\"");
        refused(
            &text,
            "nodes[2].id",
            "duplicate node ID 1, also used by nodes[1] (n1)",
        );
    }

    #[test]
    fn node_id_out_of_range() {
        refused(
            &edit("id = 1\nname = \"n1\"", "id = 64\nname = \"n1\""),
            "nodes[1].id",
            "0..=63",
        );
    }

    #[test]
    fn duplicate_node_name() {
        refused(
            &edit("name = \"n1\"", "name = \"n0\""),
            "nodes[1].name",
            "duplicate node name n0",
        );
    }

    #[test]
    fn bad_names() {
        refused(
            &edit("name = \"n1\"", "name = \"n 1\""),
            "nodes[1].name",
            "contains",
        );
        refused(
            &edit("name = \"n1\"", "name = \"\""),
            "nodes[1].name",
            "empty",
        );
        refused(
            &edit("name = \"demo\"", "name = \"\""),
            "cluster.name",
            "empty",
        );
        refused(
            &edit("name = \"a\"", "name = \"a.b\""),
            "links[0].name",
            "contains",
        );
        refused(
            &edit("name = \"a\"", "name = \"abcdefghijklmnop\""),
            "links[0].name",
            "longer than 15",
        );
    }

    #[test]
    fn duplicate_link_name() {
        let text = edit(
            "[[nodes]]",
            "[[links]]\nname = \"a\"\nkind = \"udp\"\n\n[[nodes]]",
        );
        refused(&text, "links[1].name", "duplicate link name a");
    }

    #[test]
    fn link_and_node_counts() {
        let mut text = MINIMAL.to_string();
        for i in 0..8 {
            text = text.replacen(
                "[[nodes]]",
                &format!("[[links]]\nname = \"l{i}\"\nkind = \"udp\"\n\n[[nodes]]"),
                1,
            );
        }
        refused(&text, "links", "1 to 8");
        let no_links =
            "[cluster]\nname = \"x\"\nid = 1\ninsecure = true\n[[nodes]]\nid = 0\nname = \"n0\"\n";
        refused(no_links, "links", "1 to 8");
        refused(
            "[cluster]\nname = \"x\"\nid = 1\ninsecure = true\n[[links]]\nname = \"a\"\nkind = \"udp\"\n",
            "nodes",
            "1 to 64",
        );
    }

    #[test]
    fn timers_must_be_ordered() {
        refused(
            &edit("[[links]]", "[timers]\npeer_inactive = 300\n\n[[links]]"),
            "timers.peer_inactive",
            "must be greater than timers.peer_trouble (300 ms), got 300 ms",
        );
        refused(
            &edit(
                "[[links]]",
                "[timers]\nheartbeat = 400\nheartbeat_lowpri = 400\n\n[[links]]",
            ),
            "timers.peer_trouble",
            "must be greater than timers.heartbeat_lowpri (400 ms), got 300 ms",
        );
        refused(
            &edit("[[links]]", "[timers]\nheartbeat = 500\n\n[[links]]"),
            "timers.heartbeat_lowpri",
            "must be at least timers.heartbeat (500 ms), got 250 ms",
        );
        refused(
            &edit("[[links]]", "[timers]\nheartbeat = 0\n\n[[links]]"),
            "timers.heartbeat",
            "greater than 0",
        );
        refused(
            &edit("[[links]]", "[timers]\nlink_up_count = 0\n\n[[links]]"),
            "timers.link_up_count",
            "1..=100",
        );
        refused(
            &edit(
                "[[links]]",
                "[timers]\npeer_inactive = 3600001\n\n[[links]]",
            ),
            "timers.peer_inactive",
            "at most",
        );
    }

    #[test]
    fn fence_timers_and_drift() {
        // The lease follows peer_inactive - heartbeat unless given.
        let c = parse(&edit(
            "[[links]]",
            "[timers]\nheartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 200\npeer_inactive = 400\n\n[[links]]",
        ))
        .unwrap();
        assert_eq!(c.timers.lease, Duration::from_millis(350));
        assert_eq!(c.timers.race_timeout, Duration::from_millis(200));
        let c = parse(
            &edit(
                "[[links]]",
                "[timers]\nrace_timeout = 500\nlease = 600\n\n[[links]]",
            )
            .replacen("id = 1\n", "id = 1\nmax_drift_ppm = 0\n", 1),
        )
        .unwrap();
        assert_eq!(c.timers.race_timeout, Duration::from_millis(500));
        assert_eq!(c.timers.lease, Duration::from_millis(600));
        assert_eq!(c.cluster.max_drift_ppm, 0);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["timers"]["race_timeout_ms"], 500);
        assert_eq!(json["timers"]["lease_ms"], 600);
        assert_eq!(json["cluster"]["max_drift_ppm"], 0);

        refused(
            &edit("[[links]]", "[timers]\nrace_timeout = 100\n\n[[links]]"),
            "timers.race_timeout",
            "must be greater than timers.heartbeat (100 ms), got 100 ms",
        );
        refused(
            &edit("[[links]]", "[timers]\nrace_timeout = 3600001\n\n[[links]]"),
            "timers.race_timeout",
            "at most",
        );
        refused(
            &edit("[[links]]", "[timers]\nlease = 299\n\n[[links]]"),
            "timers.lease",
            "must be at least 3 × timers.heartbeat (300 ms), got 299 ms",
        );
        refused(
            &edit("[[links]]", "[timers]\nlease = 601\n\n[[links]]"),
            "timers.lease",
            "must be at most timers.peer_inactive (600 ms), got 601 ms",
        );
        // A default lease that no longer fits says where it came from.
        refused(
            &edit(
                "[[links]]",
                "[timers]\nheartbeat = 250\nheartbeat_lowpri = 250\npeer_trouble = 300\npeer_inactive = 400\nrace_timeout = 300\n\n[[links]]",
            ),
            "timers.lease",
            "defaults to timers.peer_inactive - timers.heartbeat",
        );
        refused(
            &edit("id = 1\n", "id = 1\nmax_drift_ppm = 100001\n"),
            "cluster.max_drift_ppm",
            "must be 0..=100000",
        );
        refused(
            &edit("id = 1\n", "id = 1\nmax_drift_ppm = -1\n"),
            "cluster.max_drift_ppm",
            "invalid value",
        );
        parse(&edit("id = 1\n", "id = 1\nmax_drift_ppm = 100000\n")).unwrap();
    }

    #[test]
    fn the_fence_config() {
        let c = parse(&nodes_text(5, Some(3))).unwrap();
        let f = c.fence_config();
        assert_eq!(
            f.nodes.iter().collect::<Vec<_>>(),
            (0..5).map(NodeId).collect::<Vec<_>>()
        );
        assert_eq!(f.seed, 3);
        assert_eq!(f.race_timeout, Duration::from_millis(200));
        assert_eq!(f.lease, Duration::from_millis(500));
        assert_eq!(f.stall_report, Duration::from_millis(50));
        assert_eq!(f.stall_action, StallAction::Fence);
        assert_eq!(f.watchdog, None);
        assert_eq!(f.max_drift_ppm, 1000);
        assert_eq!(f.heartbeat, Duration::from_millis(100));
        assert!(f.self_fence);
        let c = parse(&edit("id = 1\n", "id = 1\nfencing = \"disabled\"\n")).unwrap();
        let f = c.fence_config();
        assert!(!f.self_fence);
        assert_eq!(f.nodes.len(), 2);
    }

    #[test]
    fn timer_profiles() {
        let c = parse(&edit(
            "[[links]]",
            "[timers]\nprofile = \"fast\"\n\n[[links]]",
        ))
        .unwrap();
        assert_eq!(c.timers, Timers::profile(TimerProfile::Fast));
        assert_eq!(c.timers.heartbeat, Duration::from_millis(10));
        assert_eq!(c.timers.peer_inactive, Duration::from_millis(50));
        assert_eq!(c.timers.lease, Duration::from_millis(40));
        // A timer given overrides the profile's value; derived ones follow it.
        let c = parse(&edit(
            "[[links]]",
            "[timers]\nprofile = \"fast\"\npeer_inactive = 100\n\n[[links]]",
        ))
        .unwrap();
        assert_eq!(c.timers.peer_inactive, Duration::from_millis(100));
        assert_eq!(c.timers.lease, Duration::from_millis(90));
        refused(
            &edit("[[links]]", "[timers]\nprofile = \"slow\"\n\n[[links]]"),
            "timers.profile",
            "unknown variant",
        );
        refused(
            &edit("[[links]]", "[timers]\nstall_report = 0\n\n[[links]]"),
            "timers.stall_report",
            "less than timers.lease (500 ms)",
        );
        refused(
            &edit("[[links]]", "[timers]\nstall_report = 500\n\n[[links]]"),
            "timers.stall_report",
            "got 500 ms",
        );
    }

    #[test]
    fn daemon_section() {
        let c = parse(&format!(
            "{MINIMAL}\n[daemon]\nrealtime = \"fifo\"\nrt_priority = 60\nmlockall = true\nstall_action = \"rejoin\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.daemon,
            DaemonSection {
                realtime: Realtime::Fifo,
                rt_priority: 60,
                mlockall: true,
                stall_action: StallAction::Rejoin,
                control_group: None,
            }
        );
        assert_eq!(c.fence_config().stall_action, StallAction::Rejoin);
        refused(
            &format!("{MINIMAL}\n[daemon]\nrt_priority = 0\n"),
            "daemon.rt_priority",
            "must be 1..=99, got 0",
        );
        refused(
            &format!("{MINIMAL}\n[daemon]\nrealtime = \"deadline\"\n"),
            "daemon.realtime",
            "unknown variant",
        );
        refused(
            &format!("{MINIMAL}\n[daemon]\nnice = 1\n"),
            "daemon.nice",
            "unknown field",
        );
    }

    #[test]
    fn watchdog_timeouts_must_agree() {
        let c = parse(&format!("{MINIMAL}\n[watchdog]\n")).unwrap();
        let w = c.watchdog.as_ref().unwrap();
        assert_eq!(w.device, PathBuf::from(DEFAULT_WATCHDOG_DEVICE));
        assert_eq!(w.timeout, Duration::from_secs(10));
        assert!(w.softdog);
        // Survivors wait for it in the settle window.
        assert_eq!(c.fence_config().watchdog, Some(Duration::from_secs(10)));
        let c = parse(&format!(
            "{MINIMAL}\n[watchdog]\ndevice = \"wd\"\ntimeout = 2000\nsoftdog = false\n"
        ))
        .unwrap();
        let w = c.watchdog.unwrap();
        assert_eq!(w.device, PathBuf::from("/etc/vigil/wd"));
        assert!(!w.softdog);
        refused(
            &format!("{MINIMAL}\n[watchdog]\ntimeout = 2500\n"),
            "watchdog.timeout",
            "whole number of seconds",
        );
        // 600 + 200 + 2 x 100 = 1000 ms: a node waiting for a race must not be reset.
        refused(
            &format!("{MINIMAL}\n[watchdog]\ntimeout = 1000\n"),
            "watchdog.timeout",
            "more than timers.peer_inactive + timers.race_timeout + 2 × timers.heartbeat (1000 ms)",
        );
        refused(
            &format!("{MINIMAL}\n[watchdog]\ntimeout = 0\n"),
            "watchdog.timeout",
            "whole number of seconds",
        );
    }

    #[test]
    fn metrics_listen_is_an_address() {
        assert_eq!(parse(MINIMAL).unwrap().metrics, None);
        let c = parse(&format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.metrics,
            Some(MetricsConfig {
                listen: "127.0.0.1:9464".parse().unwrap()
            })
        );
        let c = parse(&format!("{MINIMAL}\n[metrics]\nlisten = \"[::1]:9000\"\n")).unwrap();
        assert_eq!(c.metrics.unwrap().listen.port(), 9000);
        for bad in ["localhost:9464", "127.0.0.1", "", "127.0.0.1:99999"] {
            refused(
                &format!("{MINIMAL}\n[metrics]\nlisten = {bad:?}\n"),
                "metrics.listen",
                "must be an IP address and a port",
            );
        }
        refused(
            &format!("{MINIMAL}\n[metrics]\nlisten = \"0.0.0.0:0\"\n"),
            "metrics.listen",
            "must not be 0",
        );
        refused(&format!("{MINIMAL}\n[metrics]\n"), "metrics", "listen");
        refused(
            &format!("{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:1\"\nport = 2\n"),
            "metrics.port",
            "unknown field",
        );
    }

    #[test]
    fn probes_per_node() {
        let c = parse(&format!(
            "{MINIMAL}\n\
             [[probes]]\nname = \"root\"\nkind = \"mount\"\npath = \"/\"\n\n\
             [[probes]]\nname = \"data\"\nkind = \"writable\"\npath = \"data\"\ninterval = 500\nthreshold = 2\non_failure = \"fence\"\nnodes = [\"n1\"]\n\n\
             [[probes]]\nname = \"app\"\nkind = \"command\"\ncommand = [\"/usr/bin/check\", \"-q\"]\nexpect_exit = 3\ntimeout = 200\n"
        ))
        .unwrap();
        assert_eq!(c.probes.len(), 3);
        let root = &c.probes[0];
        assert_eq!(root.check, ProbeCheck::Mount { path: "/".into() });
        assert_eq!(root.spec.interval, Duration::from_millis(1000));
        assert_eq!(root.spec.timeout, Duration::from_millis(1000));
        assert_eq!(root.spec.threshold, 3);
        assert_eq!(root.spec.on_failure, OnFailure::Leave);
        assert_eq!(root.nodes.len(), 2);
        let data = &c.probes[1];
        assert_eq!(
            data.check,
            ProbeCheck::Writable {
                path: "/etc/vigil/data".into()
            }
        );
        assert_eq!(data.spec.timeout, Duration::from_millis(500));
        assert_eq!(data.spec.on_failure, OnFailure::Fence);
        let names = |id: u8| -> Vec<String> {
            c.probes_for(NodeId(id))
                .map(|p| p.spec.name.clone())
                .collect()
        };
        assert_eq!(names(0), ["root", "app"]);
        assert_eq!(names(1), ["root", "data", "app"]);
        assert_eq!(
            c.probes[2].check,
            ProbeCheck::Command {
                argv: vec!["/usr/bin/check".into(), "-q".into()],
                expect_exit: 3
            }
        );

        let probe = |body: &str| format!("{MINIMAL}\n[[probes]]\n{body}\n");
        refused(
            &probe("name = \"x\"\nkind = \"mount\""),
            "probes[0].path",
            "needs path",
        );
        refused(
            &probe("name = \"x\"\nkind = \"command\""),
            "probes[0].command",
            "needs command",
        );
        refused(
            &probe("name = \"x\"\nkind = \"command\"\ncommand = [\"true\"]\npath = \"/\""),
            "probes[0].path",
            "not used by kind = \"command\"",
        );
        refused(
            &probe("name = \"x\"\nkind = \"mount\"\npath = \"/\"\nexpect_exit = 1"),
            "probes[0].expect_exit",
            "not used by kind = \"mount\"",
        );
        refused(
            &probe("name = \"x\"\nkind = \"mount\"\npath = \"/\"\nnodes = [\"n9\"]"),
            "probes[0].nodes",
            "no node named \"n9\"",
        );
        refused(
            &probe("name = \"x\"\nkind = \"mount\"\npath = \"/\"\nthreshold = 0"),
            "probes[0].threshold",
            "must be 1..=1000",
        );
        refused(
            &probe("name = \"x\"\nkind = \"mount\"\npath = \"/\"\ninterval = 0"),
            "probes[0].interval",
            "must be 1..=",
        );
        refused(
            &probe("name = \"x\"\nkind = \"disk\"\npath = \"/\""),
            "probes[0].kind",
            "unknown variant",
        );
        refused(
            &format!(
                "{MINIMAL}\n[[probes]]\nname = \"x\"\nkind = \"mount\"\npath = \"/\"\n[[probes]]\nname = \"x\"\nkind = \"mount\"\npath = \"/\"\n"
            ),
            "probes[1].name",
            "duplicate probe name x",
        );
        refused(
            &probe("name = \"x\"\nkind = \"mount\"\npath = \"/\"\nnodes = []"),
            "probes[0].nodes",
            "names no node",
        );
    }

    #[test]
    fn node_weights_are_read_checked_and_reach_the_fence_core() {
        let c = parse(&nodes_text(3, None)).unwrap();
        assert!(c.nodes.iter().all(|n| n.weight == 1));
        assert!(c.fence_config().weights.is_uniform());
        let weighted = nodes_text(3, None).replacen("id = 1\nname", "id = 1\nweight = 3\nname", 1);
        assert!(weighted.contains("weight = 3"), "{weighted}");
        let c = parse(&weighted).unwrap();
        assert_eq!(c.nodes[1].weight, 3);
        let w = c.fence_config().weights;
        assert_eq!(
            (w.of(NodeId(0)), w.of(NodeId(1)), w.of(NodeId(2))),
            (1, 3, 1)
        );
        refused(
            &nodes_text(3, None).replacen("id = 1\nname", "id = 1\nweight = 256\nname", 1),
            "nodes[1].weight",
            "must be 1..=255",
        );
        refused(
            &nodes_text(3, None).replacen("id = 2\nname", "id = 2\nweight = -1\nname", 1),
            "nodes[2].weight",
            "got -1",
        );
        refused(
            &nodes_text(3, None).replacen("id = 0\nname", "id = 0\nweight = 0\nname", 1),
            "nodes[0].weight",
            "must be 1..=255",
        );
    }

    #[test]
    fn a_two_node_cluster_without_a_witness_is_warned_about_what_a_crash_does() {
        let two_node = |c: &ClusterConfig| -> Vec<String> {
            c.warnings()
                .into_iter()
                .filter(|w| w.contains("two-node cluster without a witness"))
                .collect()
        };
        let w = two_node(&parse(&nodes_text(2, None)).unwrap());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("when n0 (ID 0) crashes, n1 (ID 1) cannot tell"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("vigil witness"), "{}", w[0]);
        // The heavier node is the one whose crash takes the cluster down.
        let heavy = nodes_text(2, None).replacen("id = 1\nname", "id = 1\nweight = 2\nname", 1);
        let w = two_node(&parse(&heavy).unwrap());
        assert!(
            w[0].contains("when n1 (ID 1) crashes, n0 (ID 0)"),
            "{}",
            w[0]
        );
        // Three nodes: no such warning.
        assert!(two_node(&parse(&nodes_text(3, None)).unwrap()).is_empty());
    }

    #[test]
    fn seed_must_exceed_half() {
        refused(
            &nodes_text(4, Some(2)),
            "cluster.seed",
            "lets two halves seed apart",
        );
        refused(&nodes_text(4, Some(0)), "cluster.seed", "between 1 and");
        refused(&nodes_text(4, Some(5)), "cluster.seed", "between 1 and");
        assert_eq!(parse(&nodes_text(4, Some(3))).unwrap().cluster.seed, 3);
        assert_eq!(parse(&nodes_text(4, None)).unwrap().cluster.seed, 4);
        assert_eq!(parse(&nodes_text(1, None)).unwrap().cluster.seed, 1);
        assert_eq!(parse(&nodes_text(3, Some(2))).unwrap().cluster.seed, 2);
    }

    #[test]
    fn missing_link_address() {
        let text = edit(
            "[[nodes]]",
            "[[links]]\nname = \"b\"\nkind = \"udp\"\nport = 6000\n\n[[nodes]]",
        )
        .replace(
            "{ a = \"127.0.0.1\" }",
            "{ a = \"127.0.0.1\", b = \"127.0.0.1\" }",
        );
        refused(&text, "nodes[1].links.b", "missing address for link b");
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = { interface = \"lo\" }"),
            "nodes[1].links.a",
            "missing address for link a",
        );
    }

    #[test]
    fn unknown_link_name() {
        refused(
            &edit(
                "a = \"127.0.0.1:5002\"",
                "a = \"127.0.0.1:5002\", zz = \"127.0.0.1:5003\"",
            ),
            "nodes[1].links.zz",
            "no link named zz",
        );
    }

    #[test]
    fn address_family_must_match() {
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = \"[::1]:5002\""),
            "nodes[1].links.a",
            "is an IPv6 address",
        );
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = \"::1\""),
            "nodes[1].links.a",
            "udp (IPv4)",
        );
        let six = MINIMAL
            .replace("kind = \"udp\"", "kind = \"udp6\"")
            .replace("\"127.0.0.1\"", "\"::1\"");
        refused(&six, "nodes[1].links.a", "is an IPv4 address");
        let six = six.replace("\"127.0.0.1:5002\"", "\"[::1]:5002\"");
        let c = parse(&six).unwrap();
        assert_eq!(
            c.nodes[0].links[0],
            NodeLinkAddr::Udp {
                addr: "[::1]:5001".parse().unwrap(),
                interface: None
            }
        );
    }

    #[test]
    fn bad_udp_addresses() {
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = \"localhost:5002\""),
            "nodes[1].links.a",
            "not an address",
        );
        refused(
            &edit("port = 5001\n", ""),
            "nodes[0].links.a",
            "has no port",
        );
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = \"0.0.0.0:5002\""),
            "nodes[1].links.a",
            "cannot be a node's address",
        );
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = \"127.0.0.1:0\""),
            "nodes[1].links.a",
            "port 0",
        );
    }

    #[test]
    fn duplicate_udp_address() {
        refused(
            &edit("a = \"127.0.0.1:5002\"", "a = \"127.0.0.1:5001\""),
            "nodes[1].links.a",
            "duplicate address 127.0.0.1:5001, also used by nodes[0] (n0) on link a",
        );
        // The same address on two links is one socket too.
        let text = edit(
            "[[nodes]]",
            "[[links]]\nname = \"b\"\nkind = \"udp\"\nport = 5001\n\n[[nodes]]",
        )
        .replace(
            "{ a = \"127.0.0.1\" }",
            "{ a = \"127.0.0.1\", b = \"127.0.0.1:5009\" }",
        )
        .replace(
            "{ a = \"127.0.0.1:5002\" }",
            "{ a = \"127.0.0.1:5002\", b = \"127.0.0.1:5001\" }",
        );
        refused(
            &text,
            "nodes[1].links.b",
            "also used by nodes[0] (n0) on link a",
        );
    }

    fn ether_text(link_extra: &str, n0: &str, n1: &str) -> String {
        format!(
            "[cluster]\nname = \"x\"\nid = 1\ninsecure = true\n[[links]]\nname = \"e\"\nkind = \"ether\"\n{link_extra}\n\
             [[nodes]]\nid = 0\nname = \"n0\"\nlinks = {{ e = {n0} }}\n\
             [[nodes]]\nid = 1\nname = \"n1\"\nlinks = {{ e = {n1} }}\n"
        )
    }

    #[test]
    fn ether_links() {
        let c = parse(&ether_text("", "\"eth0\"", "{ interface = \"eth1\" }")).unwrap();
        assert_eq!(
            c.nodes[1].links[0],
            NodeLinkAddr::Ether {
                interface: "eth1".into()
            }
        );
        refused(
            &ether_text("", "\"eth0\"", "{}"),
            "nodes[1].links.e",
            "needs an interface",
        );
        refused(
            &ether_text("", "\"eth0\"", "\"\""),
            "nodes[1].links.e",
            "must not be empty",
        );
        refused(
            &ether_text("", "\"eth0\"", "\"a/b\""),
            "nodes[1].links.e",
            "not a valid interface",
        );
        refused(
            &ether_text("", "\"eth0\"", "{ address = \"1.2.3.4\" }"),
            "nodes[1].links.e",
            "takes no address",
        );
        refused(
            &ether_text("ethertype = 0x05FF", "\"eth0\"", "\"eth1\""),
            "links[0].ethertype",
            "at least 0x0600",
        );
        refused(
            &ether_text("port = 5000", "\"eth0\"", "\"eth1\""),
            "links[0].port",
            "only used on udp",
        );
        refused(
            &ether_text("dscp = 5", "\"eth0\"", "\"eth1\""),
            "links[0].dscp",
            "only used on udp",
        );
        refused(
            &edit("port = 5001", "port = 5001\nethertype = 0xCAFE"),
            "links[0].ethertype",
            "only used on ether",
        );
        refused(
            &edit("port = 5001", "port = 5001\ndscp = 64"),
            "links[0].dscp",
            "0..=63",
        );
    }

    #[test]
    fn self_fence_hook_rules() {
        refused(
            &edit("id = 1\n", "id = 1\nself_fence = \"hook\"\n"),
            "cluster.self_fence",
            "needs cluster.self_fence_hook",
        );
        refused(
            &edit("id = 1\n", "id = 1\nself_fence_hook = \"/bin/true\"\n"),
            "cluster.self_fence_hook",
            "only used with self_fence = \"hook\"",
        );
        let c = parse(&edit(
            "id = 1\n",
            "id = 1\nself_fence = \"reboot\"\nfencing = \"disabled\"\n",
        ))
        .unwrap();
        assert_eq!(c.cluster.self_fence, SelfFence::Reboot);
        assert_eq!(c.cluster.fencing, FencingMode::Disabled);
        refused(
            &edit("id = 1\n", "id = 1\nself_fence = \"explode\"\n"),
            "cluster.self_fence",
            "explode",
        );
    }

    #[cfg(unix)]
    fn write_key(dir: &Path, bytes: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("key");
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[cfg(unix)]
    #[test]
    fn key_file_rules() {
        let dir = TempDir::made("key");
        let cfg_path = dir.0.join("cluster.toml");
        let text = edit("insecure = true\n", "key_file = \"key\"\n");
        let bytes = b"0123456789abcdef0123456789abcdef";

        let key_path = write_key(&dir.0, bytes, 0o644);
        let e = ClusterConfig::parse(&text, &cfg_path).unwrap_err();
        assert_eq!(e.field, "cluster.key_file");
        assert!(
            e.reason.contains(&format!(
                "key file {} has mode 0644; it must not be accessible by group or others (chmod 600)",
                key_path.display()
            )),
            "{e}"
        );

        write_key(&dir.0, bytes, 0o600);
        std::fs::write(&cfg_path, &text).unwrap();
        let c = ClusterConfig::load(&cfg_path).unwrap();
        assert_eq!(c.cluster.key_file.as_deref(), Some(key_path.as_path()));
        assert_eq!(
            c.cluster.key.as_ref().map(|k| k.key),
            Some(blake3::derive_key("vigil llt frame mac v1", bytes))
        );
        assert_eq!(
            c.llt_config().keys,
            c.cluster.key.iter().cloned().collect::<Vec<_>>()
        );

        write_key(&dir.0, b"too short", 0o600);
        let e = ClusterConfig::parse(&text, &cfg_path).unwrap_err();
        assert_eq!(e.field, "cluster.key_file");
        assert!(e.reason.contains("holds 9 bytes"), "{e}");

        let text = edit("insecure = true\n", "key_file = \"nope\"\n");
        let e = ClusterConfig::parse(&text, &cfg_path).unwrap_err();
        assert!(e.reason.contains("key file"), "{e}");
        assert!(e.reason.contains("cannot read it"), "{e}");

        let text = edit(
            "insecure = true\n",
            &format!("key_file = {:?}\n", dir.0.display().to_string()),
        );
        let e = ClusterConfig::parse(&text, &cfg_path).unwrap_err();
        assert!(e.reason.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_key_file_of_another_user_or_too_long_is_refused() {
        let dir = TempDir::made("key-owner");
        let cfg_path = dir.0.join("cluster.toml");
        let text = edit("insecure = true\n", "key_file = \"key\"\n");
        let key_path = write_key(&dir.0, &[7u8; 4097], 0o600);
        let e = ClusterConfig::parse(&text, &cfg_path).unwrap_err();
        assert_eq!(e.field, "cluster.key_file");
        assert!(e.reason.contains("4097 bytes, more than the 4096"), "{e}");
        write_key(&dir.0, &[7u8; 4096], 0o600);
        ClusterConfig::parse(&text, &cfg_path).unwrap();
        if !root_or_skip("a key file owned by another user") {
            return;
        }
        std::os::unix::fs::chown(&key_path, Some(65534), Some(65534)).unwrap();
        let e = ClusterConfig::parse(&text, &cfg_path).unwrap_err();
        assert_eq!(e.field, "cluster.key_file");
        assert!(
            e.reason.contains(&format!(
                "key file {}: it is owned by uid 65534, not by the daemon's user (uid 0) or root; fix with: chown 0 {}",
                key_path.display(),
                key_path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_config_that_is_not_a_regular_file_or_too_large_is_refused() {
        let e = ClusterConfig::load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.file, Path::new("/dev/zero"));
        assert!(
            e.reason.contains("a character device, not a regular file"),
            "{e}"
        );
        assert!(e.to_string().starts_with("/dev/zero: "), "{e}");

        let dir = TempDir::made("config-file");
        let fifo = dir.0.join("fifo.toml");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            let e = ClusterConfig::load(&fifo).unwrap_err();
            assert!(e.reason.contains("a FIFO, not a regular file"), "{e}");
        }

        // A good file padded with a comment to just over 1 MiB.
        let big = dir.0.join("big.toml");
        let mut text = GOOD.to_string();
        text.push('#');
        let pad = MAX_CONFIG_LEN as usize - text.len();
        text.push_str(&"x".repeat(pad));
        std::fs::write(&big, &text).unwrap();
        ClusterConfig::load(&big).unwrap_or_else(|e| panic!("at the bound: {e}"));
        text.push('x');
        std::fs::write(&big, &text).unwrap();
        let e = ClusterConfig::load(&big).unwrap_err();
        assert_eq!(e.file, big);
        assert!(
            e.reason
                .contains("holds 1048577 bytes, more than the 1048576 allowed"),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = ClusterConfig::load(Path::new("/nonexistent/vigil/cluster.toml")).unwrap_err();
        assert!(e.reason.contains("cannot read"), "{e}");
    }

    #[test]
    fn an_unkeyed_cluster_is_refused_unless_it_says_insecure() {
        let text = edit("insecure = true\n", "");
        let e = parse(&text).expect_err("no key_file and not insecure");
        assert_eq!(e.field, "cluster.key_file");
        assert!(
            e.reason.contains("`vigil keygen /etc/vigil/cluster.key`"),
            "the error gives the command that makes a key: {e}"
        );
        assert!(e.reason.contains("insecure = true"), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/vigil/cluster.toml: cluster.key_file: "),
            "{e}"
        );
        // Said explicitly, it runs, unauthenticated, with a warning.
        let c = parse(MINIMAL).unwrap();
        assert!(c.cluster.insecure);
        assert!(c.frame_keys().is_empty());
        assert!(c.llt_config().keys.is_empty());
        let w: Vec<String> = c
            .warnings()
            .into_iter()
            .filter(|w| !w.contains("two-node cluster"))
            .collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("cluster.insecure"), "{w:?}");
        assert!(
            w[0].contains("vigil keygen /etc/vigil/cluster.key"),
            "{w:?}"
        );
        // `insecure = false` is the default, said aloud.
        refused(
            &edit("insecure = true\n", "insecure = false\n"),
            "cluster.key_file",
            "is required",
        );
    }

    #[cfg(unix)]
    fn write_named_key(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[cfg(unix)]
    #[test]
    fn insecure_with_a_key_and_accept_keys_without_one_are_refused() {
        let dir = TempDir::made("insecure");
        let cfg = dir.0.join("cluster.toml");
        write_named_key(&dir.0, "a.key", &[1u8; 32]);
        let both = edit(
            "insecure = true\n",
            "insecure = true\nkey_file = \"a.key\"\n",
        );
        let e = ClusterConfig::parse(&both, &cfg).unwrap_err();
        assert_eq!(e.field, "cluster.insecure", "{e}");
        let no_send_key = edit(
            "insecure = true\n",
            "insecure = true\naccept_key_files = [\"a.key\"]\n",
        );
        let e = ClusterConfig::parse(&no_send_key, &cfg).unwrap_err();
        assert_eq!(e.field, "cluster.accept_key_files", "{e}");
        assert!(e.reason.contains("needs cluster.key_file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn accept_key_files_are_read_checked_and_ringed_after_the_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::made("accept");
        let cfg = dir.0.join("cluster.toml");
        let (a, b) = ([0xA1u8; 32], [0xB2u8; 32]);
        write_named_key(&dir.0, "a.key", &a);
        let b_path = write_named_key(&dir.0, "b.key", &b);
        let keyed = |accept: &str| {
            edit(
                "insecure = true\n",
                &format!("key_file = \"a.key\"\naccept_key_files = [{accept}]\n"),
            )
        };
        let c = ClusterConfig::parse(&keyed("\"b.key\""), &cfg).unwrap();
        let (ka, kb) = (FrameKey::from_material(&a), FrameKey::from_material(&b));
        assert_eq!(c.cluster.accept_key_files, vec![b_path.clone()]);
        assert_eq!(c.frame_keys(), vec![ka.clone(), kb.clone()]);
        assert_eq!(c.llt_config().keys, vec![ka.clone(), kb.clone()]);
        // Only the two-node warning: nothing about the keys.
        assert!(
            c.warnings().iter().all(|w| w.contains("two-node cluster")),
            "{:?}",
            c.warnings()
        );
        // Never serialized: the key file names are, the keys are not.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json["cluster"]["accept_key_files"][0],
            b_path.display().to_string()
        );
        assert!(json["cluster"].get("accept_keys").is_none());

        // Each accepted key file gets key_file's checks, named by its index.
        std::fs::set_permissions(&b_path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = ClusterConfig::parse(&keyed("\"b.key\""), &cfg).unwrap_err();
        assert_eq!(e.field, "cluster.accept_key_files[0]");
        assert!(e.reason.contains("has mode 0640"), "{e}");
        std::fs::set_permissions(&b_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = ClusterConfig::parse(&keyed("\"b.key\", \"missing.key\""), &cfg).unwrap_err();
        assert_eq!(e.field, "cluster.accept_key_files[1]");
        assert!(e.reason.contains("cannot read it"), "{e}");
        write_named_key(&dir.0, "short.key", b"short");
        let e = ClusterConfig::parse(&keyed("\"short.key\""), &cfg).unwrap_err();
        assert_eq!(e.field, "cluster.accept_key_files[0]");
        assert!(e.reason.contains("holds 5 bytes"), "{e}");

        // A bound on the list.
        let nine = ["\"b.key\""; MAX_ACCEPT_KEYS + 1].join(", ");
        let e = ClusterConfig::parse(&keyed(&nine), &cfg).unwrap_err();
        assert_eq!(e.field, "cluster.accept_key_files");
        assert!(e.reason.contains("at most 8"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_listed_twice_counts_once_and_is_warned_about() {
        let dir = TempDir::made("dupkey");
        let cfg = dir.0.join("cluster.toml");
        let a = [0x5Au8; 32];
        write_named_key(&dir.0, "a.key", &a);
        // The same material under another name: the same key.
        write_named_key(&dir.0, "a-copy.key", &a);
        write_named_key(&dir.0, "b.key", &[0x6Bu8; 32]);
        let text = edit(
            "insecure = true\n",
            "key_file = \"a.key\"\naccept_key_files = [\"b.key\", \"a-copy.key\", \"b.key\"]\n",
        );
        let c = ClusterConfig::parse(&text, &cfg).unwrap();
        let ring: Vec<KeyId> = c.frame_keys().iter().map(|k| k.id).collect();
        let ka = FrameKey::from_material(&a);
        let kb = FrameKey::from_material(&[0x6Bu8; 32]);
        assert_eq!(ring, vec![ka.id, kb.id], "each key once, key_file's first");
        let w: Vec<String> = c
            .warnings()
            .into_iter()
            .filter(|w| !w.contains("two-node cluster"))
            .collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("cluster.accept_key_files[1]: the same key as cluster.key_file"),
            "{w:?}"
        );
        assert!(
            w[1].contains(
                "cluster.accept_key_files[2]: the same key as cluster.accept_key_files[0]"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn two_keys_under_one_id_are_refused() {
        let mut c = parse(MINIMAL).unwrap();
        let a = FrameKey::from_material(&[1u8; 32]);
        let forged = FrameKey {
            id: a.id,
            key: [2u8; 32],
        };
        c.cluster.insecure = false;
        c.cluster.key = Some(a.clone());
        c.cluster.accept_keys = vec![forged];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "cluster.accept_key_files[0]");
        assert!(e.reason.contains(&format!("key ID {}", a.id)), "{e}");
        // The same key again is fine.
        c.cluster.accept_keys = vec![a];
        c.validate().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn example_file_parses() {
        // The example names /etc/vigil/cluster.key; point it at a key made here.
        let dir = TempDir::made("example");
        let key = write_named_key(&dir.0, "cluster.key", &[7u8; 32]);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let line = "key_file = \"/etc/vigil/cluster.key\"";
        assert!(text.contains(line), "the example sets key_file");
        let text = text.replacen(
            line,
            &format!("key_file = {:?}", key.display().to_string()),
            1,
        );
        let c = ClusterConfig::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.cluster.insecure);
        assert_eq!(c.frame_keys().len(), 1);
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.links.len(), 2);
        assert_eq!(c.cluster.seed, 2);
        let ports: Vec<u16> = c
            .nodes
            .iter()
            .flat_map(|n| n.links.iter())
            .map(|a| match a {
                NodeLinkAddr::Udp { addr, .. } => addr.port(),
                NodeLinkAddr::Ether { .. } | NodeLinkAddr::Absent => 0,
            })
            .collect();
        assert!(ports.iter().all(|p| (5101..=5106).contains(p)), "{ports:?}");
    }

    #[test]
    fn hooks_and_the_control_group_are_read_with_their_defaults() {
        let c = parse(&format!(
            "{MINIMAL}\n[daemon]\ncontrol_group = \"vigil-watch\"\n\n[[hooks]]\nname = \"vip\"\ncommand = [\"/usr/local/bin/vip\", \"move\"]\n\n[[hooks]]\nname = \"db\"\ncommand = [\"/bin/db-role\"]\non = [\"primary\", \"authority\"]\ntimeout = 2500\n"
        ))
        .unwrap();
        assert_eq!(c.daemon.control_group.as_deref(), Some("vigil-watch"));
        assert_eq!(
            c.hooks,
            vec![
                HookConfig {
                    name: "vip".into(),
                    argv: vec!["/usr/local/bin/vip".into(), "move".into()],
                    on: vec![HookOn::Authority],
                    timeout: Duration::from_millis(DEFAULT_HOOK_TIMEOUT_MS),
                },
                HookConfig {
                    name: "db".into(),
                    argv: vec!["/bin/db-role".into()],
                    on: vec![HookOn::Primary, HookOn::Authority],
                    timeout: Duration::from_millis(2500),
                },
            ]
        );
        assert!(parse(MINIMAL).unwrap().hooks.is_empty());
        assert_eq!(parse(MINIMAL).unwrap().daemon.control_group, None);
    }

    #[test]
    fn bad_hooks_and_control_groups_are_refused_by_field() {
        let hook = |body: &str| format!("{MINIMAL}\n[[hooks]]\n{body}\n");
        refused(
            &hook("name = \"h\"\ncommand = []"),
            "hooks[0].command",
            "needs command",
        );
        refused(
            &hook("name = \"h\"\ncommand = [\"\"]"),
            "hooks[0].command",
            "needs command",
        );
        refused(
            &hook("name = \"a b\"\ncommand = [\"/bin/true\"]"),
            "hooks[0].name",
            "contains ' '",
        );
        refused(
            &hook("name = \"h\"\ncommand = [\"/bin/true\"]\non = []"),
            "hooks[0].on",
            "names nothing",
        );
        refused(
            &hook("name = \"h\"\ncommand = [\"/bin/true\"]\non = [\"primary\", \"primary\"]"),
            "hooks[0].on",
            "listed twice",
        );
        refused(
            &hook("name = \"h\"\ncommand = [\"/bin/true\"]\ntimeout = 0"),
            "hooks[0].timeout",
            "must be 1..=600000 ms, got 0 ms",
        );
        refused(
            &hook("name = \"h\"\ncommand = [\"/bin/true\"]\ntimeout = 600001"),
            "hooks[0].timeout",
            "got 600001 ms",
        );
        refused(
            &format!(
                "{}\n[[hooks]]\nname = \"h\"\ncommand = [\"/bin/false\"]\n",
                hook("name = \"h\"\ncommand = [\"/bin/true\"]")
            ),
            "hooks[1].name",
            "duplicate hook name h, also used by hooks[0]",
        );
        let e = parse(&hook(
            "name = \"h\"\ncommand = [\"/bin/true\"]\non = [\"view\"]",
        ))
        .expect_err("unknown trigger");
        assert!(e.field.starts_with("hooks[0].on"), "{e}");
        let e = parse(&hook(
            "name = \"h\"\ncommand = [\"/bin/true\"]\nshell = true",
        ))
        .expect_err("unknown field");
        assert!(e.to_string().contains("shell"), "{e}");
        refused(
            &format!("{MINIMAL}\n[daemon]\ncontrol_group = \"\"\n"),
            "daemon.control_group",
            "must not be empty",
        );
        refused(
            &format!("{MINIMAL}\n[daemon]\ncontrol_group = \"a:b\"\n"),
            "daemon.control_group",
            "contains ':'",
        );
    }
}
