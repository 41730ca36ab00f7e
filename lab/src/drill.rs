//! `vigil drill [NAME]`: the main job on one machine. It starts a live cluster of
//! real daemon processes (5 by default, two UDP links each), injects one of the
//! failures from the field, prints a timeline of what every node did and when, and
//! ends with PASS or FAIL against the drill's expected outcome.
//!
//! On loopback (any user) the faults come from the daemons' fault-injection command
//! (`vigil fault`, enabled in the drill's own config only), signals and a probe
//! directory that stops being writable. With `--netns` (root) every node lives in
//! its own network namespace with two veth links on two bridges, and the faults are
//! nftables rules, links set down, signals and a read-only bind mount in the node's
//! own mount namespace. Every process, namespace and rule the drill made is removed
//! when it ends, also after Ctrl-C.

use crate::hosts::{Hosts, Start};
use crate::netlab::{self, Lab};
use crate::Exit;
use crate::{fault, free_udp_ports};
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_runtime::control::{self, DaemonStatus, Direction, FaultCmd};

/// The drills: the failures from the field (SPEC section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DrillName {
    /// 5 nodes split 3|2: the three survive, the two fence themselves.
    #[value(name = "split-3-2")]
    Split32,
    /// 4 nodes split 2|2: the half with the lowest node ID survives.
    EvenSplit,
    /// 2 nodes lose their interconnect: the lowest ID survives, the other fences.
    TwoNode,
    /// A node stopped (SIGSTOP) for 10 × peer_inactive wakes up and fences itself.
    Freeze,
    /// A node's health probe fails: it leaves, the others take over.
    HalfDead,
    /// A node is killed (SIGKILL): the others remove it.
    Kill,
    /// One of a node's two links is lost: jeopardy, no membership change.
    LinkLoss,
    /// One of a node's links flaps down and up: no membership change.
    Flap,
    /// The lowest node is killed and restarted at once: it rejoins as a new
    /// incarnation and fences nobody.
    Reboot,
    /// A node stops hearing the others while they still hear it: only one side
    /// survives.
    OneWay,
    /// Split 3|2; the two fenced nodes restart while the split persists: they
    /// wait, unseeded, and disturb nobody.
    FenceLoop,
    /// 3 nodes, A–B and B–C talk but A–C do not: one two-node view survives.
    NonTransitive,
    /// Split 3|2, then split the three 2|1 right after their race: the two
    /// holding the lowest ID of the three survive.
    Cascading,
    /// The highest node is cut off from every other (both ways): it fences itself,
    /// the others go on.
    Isolate,
    /// The two highest nodes (neither leads the race) cannot talk to each other;
    /// every other pair can: only the higher of the two is removed.
    PairCut,
    /// Five nodes, three pairs cut (0–1, 1–2, 3–4): the largest group that can
    /// still decide, [0, 2, 3], survives; 1 and 4 are removed.
    ThreeCuts,
    /// `vigil guarded-service` on 3 nodes writes to a store while primary; the
    /// primary is cut off, frozen, killed, made to leave, then every node restarted.
    Guarded,
    /// Two nodes and a real `vigil witness`: either node crashes, partitions with
    /// the witness on both sides and on one, the witness down then a partition, the
    /// witness restarting during a partition.
    TwoNodeWitness,
}

impl DrillName {
    pub fn name(self) -> &'static str {
        match self {
            DrillName::Split32 => "split-3-2",
            DrillName::EvenSplit => "even-split",
            DrillName::TwoNode => "two-node",
            DrillName::Freeze => "freeze",
            DrillName::HalfDead => "half-dead",
            DrillName::Kill => "kill",
            DrillName::LinkLoss => "link-loss",
            DrillName::Flap => "flap",
            DrillName::Reboot => "reboot",
            DrillName::OneWay => "one-way",
            DrillName::FenceLoop => "fence-loop",
            DrillName::NonTransitive => "non-transitive",
            DrillName::Cascading => "cascading",
            DrillName::Isolate => "isolate",
            DrillName::PairCut => "pair-cut",
            DrillName::ThreeCuts => "three-cuts",
            DrillName::Guarded => "guarded",
            DrillName::TwoNodeWitness => "two-node-witness",
        }
    }

    /// How many nodes the drill needs by default.
    fn default_nodes(self) -> u8 {
        match self {
            DrillName::EvenSplit => 4,
            DrillName::TwoNode => 2,
            DrillName::NonTransitive => 3,
            _ => 5,
        }
    }
}

/// Timer profile of the drill's cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    Default,
    Fast,
}

#[derive(Args, Debug, Clone)]
pub struct DrillArgs {
    /// The drill to run.
    #[arg(value_enum, default_value = "split-3-2")]
    pub name: DrillName,
    /// How many nodes to start, 2 to 64 (default: 5; 4 for even-split, 2 for
    /// two-node).
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=64))]
    pub nodes: Option<u8>,
    /// split-3-2 and even-split: how many of the lowest IDs are cut from the rest
    /// (default: half, rounded down). The larger side survives; on a tie, the side
    /// holding the lowest ID. `--nodes 64 --split 31` splits 31|33 with the lowest
    /// ID on the losing side.
    #[arg(long, value_name = "K")]
    pub split: Option<u8>,
    /// Timer profile: default (heartbeat 100 ms, detection in 600 ms) or fast
    /// (heartbeat 10 ms, detection in 50 ms).
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Run every node in its own network namespace (needs root): nftables, veth
    /// links and signals instead of the fault-injection command.
    #[arg(long)]
    pub netns: bool,
    /// Keep the working directory (configs and daemon logs) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Print only the timeline and the verdict (no lltstat/gabconfig output).
    #[arg(long)]
    pub brief: bool,
    /// Print the outcome as one JSON document instead (times in ms after the fault).
    #[arg(long)]
    pub json: bool,
}

/// Where a split drill cuts `n` nodes: the lowest `split` IDs (default half,
/// rounded down) against the rest; both sides must keep a node.
fn split_point(n: u8, split: Option<u8>) -> Result<u8, String> {
    match split {
        None => Ok(n / 2),
        Some(k) if k >= 1 && k < n => Ok(k),
        Some(k) => Err(format!(
            "--split {k}: must leave a node on each side (1 to {})",
            n - 1
        )),
    }
}

/// What a drill must end with.
#[derive(Clone, Debug, Default)]
struct Expect {
    /// These hold authority on one view whose members are exactly them.
    survivors: Vec<u8>,
    /// These fence themselves (exit code 4).
    fenced: Vec<u8>,
    /// ... for this reason.
    fence_reason: Option<&'static str>,
    /// These leave gracefully (exit code 0).
    left: Vec<u8>,
    /// No view is installed after the fault.
    no_view_change: bool,
    /// These (fenced first) are restarted and must then wait: running, unseeded,
    /// without authority.
    waiting: Vec<u8>,
    /// Survivors install at most this many views after the fault.
    max_views: Option<usize>,
}

/// What one node did after the fault, in ms after it (from its JSON log).
#[derive(Clone, Debug, Default)]
pub struct NodeTimes {
    pub detect: Option<f64>,
    pub race: Option<f64>,
    pub verdict: Option<(String, f64)>,
    pub view: Option<(u64, f64)>,
    pub authority: Option<f64>,
    pub fenced: Option<(String, f64)>,
    pub left: Option<f64>,
    pub exit: Option<(i32, f64)>,
}

/// The outcome of one drill.
#[derive(Clone, Debug)]
pub struct DrillResult {
    pub name: &'static str,
    pub pass: bool,
    /// Why it failed, when it did.
    pub failures: Vec<String>,
    /// Per node.
    pub times: Vec<NodeTimes>,
    /// Fault to decision: every survivor holds authority on the new view and every
    /// loser has fenced itself (ms), when the drill has a decision.
    pub decision_ms: Option<f64>,
    /// The decision taken apart by role (ms after the fault), when the drill has a
    /// decision.
    pub roles: Option<RoleTimes>,
}

/// When each side of a drill's decision was done, in ms after the fault; `None`
/// where some node of that role never got there (or the role has no node).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoleTimes {
    /// Survivors may act: the last survivor holds authority on the new view
    /// (`view.client`), so its clients may act.
    pub may_act: Option<f64>,
    /// Last loser out: the last node outside the new view has fenced itself
    /// (`node.self_fence`) or left (`node.left`). `None` when the drill has no
    /// such node (a killed node neither fences nor leaves).
    pub loser_out: Option<f64>,
    /// New membership installed: the last survivor installed the new view
    /// (`view.installed`), what Corosync's `Members[n]` line stands for.
    pub membership: Option<f64>,
}

/// [`RoleTimes`] of a drill whose `survivors` must hold the new view and whose
/// `losers` must fence themselves or leave, from the nodes' timelines. A role is
/// the latest time among its nodes, and `None` if any of them lacks it.
pub fn role_times(times: &[NodeTimes], survivors: &[u8], losers: &[u8]) -> RoleTimes {
    fn last(
        times: &[NodeTimes],
        nodes: &[u8],
        at: impl Fn(&NodeTimes) -> Option<f64>,
    ) -> Option<f64> {
        let mut latest: Option<f64> = None;
        for &i in nodes {
            let t = at(times.get(usize::from(i))?)?;
            latest = Some(latest.map_or(t, |l| l.max(t)));
        }
        latest
    }
    let out = |t: &NodeTimes| match (t.fenced.as_ref().map(|f| f.1), t.left) {
        (Some(f), Some(l)) => Some(f.min(l)),
        (f, l) => f.or(l),
    };
    RoleTimes {
        may_act: last(times, survivors, |t| t.authority),
        loser_out: last(times, losers, out),
        membership: last(times, survivors, |t| t.view.map(|v| v.1)),
    }
}

impl DrillResult {
    /// The outcome as JSON: `{"drill", "pass", "failures", "decision_ms", "roles":
    /// {"may_act_ms", "loser_out_ms", "membership_ms"}, "nodes": [{"node", "detect_ms", "race_ms", "verdict", "view", "authority_ms",
    /// "self_fence", "left_ms", "exit"}]}`.
    pub fn to_json(&self) -> Value {
        let nodes: Vec<Value> = self
            .times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({
                    "node": i,
                    "detect_ms": t.detect,
                    "race_ms": t.race,
                    "verdict": t.verdict.as_ref().map(|(v, m)| serde_json::json!({"verdict": v, "ms": m})),
                    "view": t.view.map(|(g, m)| serde_json::json!({"generation": g, "ms": m})),
                    "authority_ms": t.authority,
                    "self_fence": t.fenced.as_ref().map(|(r, m)| serde_json::json!({"reason": r, "ms": m})),
                    "left_ms": t.left,
                    "exit": t.exit.map(|(c, m)| serde_json::json!({"code": c, "ms": m})),
                })
            })
            .collect();
        let roles = self.roles.map(|r| {
            serde_json::json!({"may_act_ms": r.may_act, "loser_out_ms": r.loser_out,
                               "membership_ms": r.membership})
        });
        serde_json::json!({"drill": self.name, "pass": self.pass, "failures": self.failures,
                           "decision_ms": self.decision_ms, "roles": roles, "nodes": nodes})
    }
}

/// A running drill cluster; dropping it stops everything it started.
pub struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    n: u8,
    hosts: Hosts,
    keep: bool,
    exits: Vec<Option<(i32, f64)>>,
    /// Wall clock of the fault, µs.
    t0_us: u64,
    exe: PathBuf,
    peer_inactive: Duration,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.hosts.stop() {
            eprintln!("vigil drill: cleanup: {e}");
        }
        if self.keep {
            println!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The drill cluster's config: `n` nodes, links `a` and `b`, keyed with
/// `{dir}/cluster.key`, fault injection on, a writable probe per node on its own
/// directory. The probes are checked every second with a timeout a loaded machine
/// does not trip (5 s, three failures in a row), except on `tight`, the node whose
/// disk the half-dead drill breaks (every 100 ms, 500 ms, two failures).
fn drill_config(
    dir: &Path,
    n: u8,
    profile: Profile,
    netns: bool,
    tight: Option<u8>,
) -> Result<String, String> {
    // The fast profile tolerates stalls of tens of milliseconds: like a production
    // node running it, the drill's daemons ask for real-time scheduling (they warn
    // and run without when the system refuses it).
    let (profile, daemon) = match profile {
        Profile::Default => ("default", ""),
        Profile::Fast => ("fast", "[daemon]\nrealtime = \"fifo\"\n\n"),
    };
    let mut t = format!(
        "# written by `vigil drill`: a test cluster (fault injection is on)\n\
         [cluster]\nname = \"drill\"\nid = 4242\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}\"\n\
         key_file = \"{d}/cluster.key\"\nfault_injection = true\n\n\
         {daemon}[timers]\nprofile = \"{profile}\"\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5801\n\n\
         [[links]]\nname = \"b\"\nkind = \"udp\"\nport = 5802\n",
        d = dir.display()
    );
    let ports = if netns {
        Vec::new()
    } else {
        free_udp_ports(2 * n as usize)?
    };
    for i in 0..n {
        let (a, b) = if netns {
            (
                netlab::node_addr(i as usize, 0).to_string(),
                netlab::node_addr(i as usize, 1).to_string(),
            )
        } else {
            let (pa, pb) = (ports[2 * i as usize], ports[2 * i as usize + 1]);
            (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"))
        };
        t.push_str(&format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"{a}\"\nb = \"{b}\"\n"
        ));
    }
    for i in 0..n {
        let (interval, timeout, threshold) = if tight == Some(i) {
            (100, 500, 2)
        } else {
            (1000, 5000, 3)
        };
        t.push_str(&format!(
            "\n[[probes]]\nname = \"disk-n{i}\"\nkind = \"writable\"\npath = \"{d}/disk-n{i}\"\n\
             interval = {interval}\ntimeout = {timeout}\nthreshold = {threshold}\nnodes = [\"n{i}\"]\n",
            d = dir.display()
        ));
    }
    Ok(t)
}

impl Cluster {
    fn socket(&self, i: u8) -> PathBuf {
        self.dir.join(format!("n{i}.sock"))
    }

    fn log(&self, i: u8) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    fn probe_dir(&self, i: u8) -> PathBuf {
        self.dir.join(format!("disk-n{i}"))
    }

    /// Start (or restart) node `i`.
    fn start(&mut self, i: u8) -> Result<(), String> {
        let name = format!("n{i}");
        let exe = self.exe.to_string_lossy().to_string();
        let config = self.config.to_string_lossy().to_string();
        let argv = [
            exe.as_str(),
            "daemon",
            "--log-format",
            "json",
            "--node",
            &name,
            "--config",
            &config,
        ];
        let log = self.log(i);
        let probe = self.probe_dir(i).to_string_lossy().to_string();
        // In a namespace each daemon gets its own mount namespace where its probe
        // directory is a bind mount of itself, so that it alone can be made read-only.
        let wrapper = netlab::own_mount_ns(&probe, "vigil-node");
        let wrapped: Vec<&str> = wrapper
            .iter()
            .map(String::as_str)
            .chain(argv.iter().copied())
            .collect();
        let argv = if self.hosts.lab().is_some() {
            &wrapped[..]
        } else {
            &argv[..]
        };
        let what = format!("daemon {name}");
        self.hosts.spawn(
            i as usize,
            &Start {
                what: &what,
                argv,
                log: &log,
                stdout_to_log: false,
            },
        )
    }

    fn pid(&self, i: u8) -> Option<u32> {
        self.hosts.pid(i as usize)
    }

    fn signal(&self, i: u8, sig: i32) -> Result<(), String> {
        self.hosts.signal(i as usize, sig)
    }

    fn kill(&mut self, i: u8) -> Result<(), String> {
        self.hosts.kill(i as usize)
    }

    /// Note exit codes of daemons that have ended (ms after the fault).
    fn reap(&mut self) {
        let at = ms_since(self.t0_us);
        for i in 0..self.n as usize {
            if let Some(code) = self.hosts.try_exit(i) {
                self.exits[i] = Some((code, at));
            }
        }
    }

    fn status(&self, i: u8) -> Option<DaemonStatus> {
        control::status(&self.socket(i)).ok()
    }

    /// Drop traffic between `a` and every node of `b` (on every link), both ways.
    fn cut(&mut self, sides: &[Vec<u8>]) -> Result<String, String> {
        match self.hosts.lab_mut() {
            Some(lab) => {
                let sides: Vec<Vec<usize>> = sides
                    .iter()
                    .map(|s| s.iter().map(|i| *i as usize).collect())
                    .collect();
                lab.partition(&sides)?;
                Ok("nftables rules in every namespace".into())
            }
            None => {
                for (k, side) in sides.iter().enumerate() {
                    let others: Vec<u8> = sides
                        .iter()
                        .enumerate()
                        .filter(|(o, _)| *o != k)
                        .flat_map(|(_, s)| s.iter().copied())
                        .collect();
                    for &i in side {
                        self.inject(
                            i,
                            FaultCmd::Block {
                                peers: others.clone(),
                                links: Vec::new(),
                                direction: Direction::Both,
                            },
                        )?;
                    }
                }
                Ok("vigil fault block on every node".into())
            }
        }
    }

    /// Nodes `a` and `b` cannot talk (every link, both ways); all other pairs can.
    fn cut_pair(&mut self, a: u8, b: u8) -> Result<String, String> {
        match self.hosts.lab_mut() {
            Some(lab) => {
                let (aa, ba) = (lab.addrs(a as usize), lab.addrs(b as usize));
                lab.block(a as usize, &ba)?;
                lab.block(b as usize, &aa)?;
                Ok("nftables rules in both namespaces".into())
            }
            None => {
                for (x, y) in [(a, b), (b, a)] {
                    self.inject(
                        x,
                        FaultCmd::Block {
                            peers: vec![y],
                            links: Vec::new(),
                            direction: Direction::Both,
                        },
                    )?;
                }
                Ok("vigil fault block on both".into())
            }
        }
    }

    fn inject(&self, i: u8, cmd: FaultCmd) -> Result<String, String> {
        fault::send(&self.socket(i), cmd).map_err(|e| format!("n{i}: {e}"))
    }

    /// Node `i` loses link `b` (index 1) to every peer.
    fn link_b(&mut self, i: u8, down: bool) -> Result<String, String> {
        match self.hosts.lab_mut() {
            Some(lab) => {
                if down {
                    lab.link_down(i as usize, 1)?;
                } else {
                    lab.link_up(i as usize, 1)?;
                }
                Ok(format!(
                    "ip link set eth1 {}",
                    if down { "down" } else { "up" }
                ))
            }
            None => {
                let cmd = if down {
                    FaultCmd::Block {
                        peers: Vec::new(),
                        links: vec!["b".into()],
                        direction: Direction::Both,
                    }
                } else {
                    FaultCmd::Unblock {
                        peers: Vec::new(),
                        links: vec!["b".into()],
                    }
                };
                self.inject(i, cmd)?;
                Ok(format!(
                    "vigil fault {} --link b",
                    if down { "block" } else { "unblock" }
                ))
            }
        }
    }

    /// Node `i` hears nobody, while the others still hear it.
    fn deafen(&mut self, i: u8) -> Result<String, String> {
        match self.hosts.lab_mut() {
            Some(lab) => {
                let peers: Vec<String> = (0..self.n as usize)
                    .filter(|j| *j != i as usize)
                    .flat_map(|j| lab.addrs(j))
                    .map(|a| a.to_string())
                    .collect();
                let rules = format!(
                    "table inet vigil_oneway {{\n\
                     \tchain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {} }} drop; }}\n\
                     }}\n",
                    peers.join(", ")
                );
                netlab::run_stdin(
                    &["ip", "netns", "exec", &lab.ns(i as usize), "nft", "-f", "-"],
                    &rules,
                )?;
                Ok("nftables input rule in its namespace".into())
            }
            None => {
                self.inject(
                    i,
                    FaultCmd::Block {
                        peers: Vec::new(),
                        links: Vec::new(),
                        direction: Direction::In,
                    },
                )?;
                Ok("vigil fault block --dir in".into())
            }
        }
    }

    /// Node `i`'s probe directory stops being writable.
    fn break_disk(&mut self, i: u8) -> Result<String, String> {
        let dir = self.probe_dir(i);
        match self.hosts.lab() {
            Some(_) => {
                let pid = self.pid(i).ok_or_else(|| format!("n{i} is not running"))?;
                let d = dir.to_string_lossy().to_string();
                netlab::remount_ro(pid, &d)?;
                Ok(format!("{d} remounted read-only in n{i}'s mount namespace"))
            }
            None => {
                // A file where the directory was: every write under it fails, for
                // root too (unlike a permission change).
                std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                std::fs::write(&dir, b"not a directory\n")
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                Ok(format!("{} replaced by a file", dir.display()))
            }
        }
    }
}

fn ms_since(t0_us: u64) -> f64 {
    (vigil_runtime::logging::wall_us().saturating_sub(t0_us)) as f64 / 1e3
}

/// Every node sees every other node with every link UP, and all hold authority on
/// one view of all.
fn all_up(c: &Cluster) -> Option<u64> {
    let mut gen = None;
    for i in 0..c.n {
        let s = c.status(i)?;
        let links_up = s.node.llt.peers.len() == c.n as usize - 1
            && s.node
                .llt
                .peers
                .iter()
                .all(|p| p.up && p.links.iter().all(|l| l.state == vigil_llt::LinkState::Up));
        let view = s.node.fence.client_view.as_ref()?;
        if !links_up || !s.node.fence.authority || view.members.len() != c.n as usize {
            return None;
        }
        if gen.is_some_and(|g| g != view.generation.0) {
            return None;
        }
        gen = Some(view.generation.0);
    }
    gen
}

/// The JSON events of node `i` at or after `t0_us`.
fn events(c: &Cluster, i: u8) -> Vec<Value> {
    crate::log_events(&c.log(i))
        .into_iter()
        .filter(|e| e["ts_us"].as_u64().is_some_and(|t| t >= c.t0_us))
        .collect()
}

fn at(c: &Cluster, e: &Value) -> f64 {
    e["ts_us"]
        .as_u64()
        .unwrap_or(c.t0_us)
        .saturating_sub(c.t0_us) as f64
        / 1e3
}

/// Node `i`'s timeline from its log.
fn node_times(c: &Cluster, i: u8, g0: u64) -> NodeTimes {
    let mut t = NodeTimes {
        exit: c.exits[i as usize],
        ..NodeTimes::default()
    };
    for e in events(c, i) {
        let ms = at(c, &e);
        match e["event"].as_str().unwrap_or("") {
            "peer.down" | "node.unhealthy" | "node.stall" if t.detect.is_none() => {
                t.detect = Some(ms)
            }
            "race.started" if t.race.is_none() => t.race = Some(ms),
            "race.won" if t.verdict.is_none() => t.verdict = Some(("won".into(), ms)),
            "race.lost" if t.verdict.is_none() => t.verdict = Some(("lost".into(), ms)),
            "view.installed" => {
                if let Some(g) = e["generation"].as_u64().filter(|g| *g > g0) {
                    t.view = Some((g, ms));
                }
            }
            "view.client" if e["generation"].as_u64().is_some_and(|g| g > g0) => {
                t.authority = Some(ms);
            }
            "node.self_fence" if t.fenced.is_none() => {
                let reason = e["reason"].as_str().unwrap_or("?").to_string();
                t.fenced = Some((reason, ms));
            }
            "node.left" if t.left.is_none() => t.left = Some(ms),
            _ => {}
        }
    }
    t
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.0}"))
}

/// The timeline table.
fn timeline(times: &[NodeTimes]) -> String {
    let mut out = format!(
        "  {:<5} {:>8} {:>8} {:>12} {:>12} {:>10} {:>18} {:>8} {:>12}\n",
        "node", "detect", "race", "verdict", "view", "authority", "self-fence", "left", "exit"
    );
    for (i, t) in times.iter().enumerate() {
        let verdict = t
            .verdict
            .as_ref()
            .map_or("-".into(), |(v, m)| format!("{v} {m:.0}"));
        let view = t
            .view
            .map_or("-".into(), |(g, m)| format!("gen {g} {m:.0}"));
        let fenced = t
            .fenced
            .as_ref()
            .map_or("-".into(), |(r, m)| format!("{r} {m:.0}"));
        let exit = t
            .exit
            .map_or("running".into(), |(c, m)| format!("code {c} {m:.0}"));
        let _ = writeln!(
            out,
            "  n{i:<4} {:>8} {:>8} {:>12} {:>12} {:>10} {:>18} {:>8} {:>12}",
            fmt_ms(t.detect),
            fmt_ms(t.race),
            verdict,
            view,
            fmt_ms(t.authority),
            fenced,
            fmt_ms(t.left),
            exit
        );
    }
    out
}

/// How the drill shows a daemon's status the way the inspection commands print it:
/// the `vigil` binary passes its own `lltstat -nvv` and `gabconfig -a` renderers,
/// so the drill's output is exactly what an operator would see.
#[derive(Clone, Copy)]
pub struct Show {
    /// `lltstat -n` (`true`: with links, `-nvv`).
    pub nodes_text: fn(&DaemonStatus, bool) -> String,
    /// `gabconfig -a`.
    pub ports_text: fn(&DaemonStatus) -> String,
}

/// `vigil drill`: run the drill, print its timeline and verdict (or, with `--json`,
/// its outcome document) and say how it ended.
pub fn run(args: DrillArgs, show: &Show) -> Exit {
    if args.name == DrillName::Guarded {
        return crate::drill_guarded::run(&args);
    }
    if args.name == DrillName::TwoNodeWitness {
        return crate::drill_witness::run(&args);
    }
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil drill: {e}");
    }
    match run_drill(&args, (!args.json).then_some(show)) {
        Ok(r) if args.json => {
            println!("{}", r.to_json());
            if r.pass {
                Exit::Ok
            } else {
                Exit::Failure
            }
        }
        Ok(r) if r.pass => Exit::Ok,
        Ok(_) => Exit::Failure,
        Err(e) => {
            eprintln!("vigil drill: {e}");
            Exit::Failure
        }
    }
}

/// Start a cluster, run the drill, print (when `show` is given) and return the
/// outcome.
pub fn run_drill(args: &DrillArgs, show: Option<&Show>) -> Result<DrillResult, String> {
    let print = show.is_some();
    let say = |s: String| {
        if print {
            println!("{s}");
        }
    };
    let name = args.name;
    let n = args.nodes.unwrap_or(name.default_nodes());
    if name == DrillName::TwoNode && n != 2 {
        return Err("two-node runs with 2 nodes".into());
    }
    if n < 3 && !matches!(name, DrillName::TwoNode) {
        return Err(format!("{} needs at least 3 nodes", name.name()));
    }
    if args.split.is_some() && !matches!(name, DrillName::Split32 | DrillName::EvenSplit) {
        return Err(format!(
            "--split is for split-3-2 and even-split, not {}",
            name.name()
        ));
    }
    split_point(n, args.split)?;
    if args.netns && !netlab::is_root() {
        return Err("--netns needs root (network namespaces, nftables, mount namespaces); run the loopback drill without it".into());
    }
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vigil-drill-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("state")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("cluster.toml");
    // Keyed like production: `vigil keygen` makes the key the config names.
    let exe = crate::vigil_bin()?;
    let key_id = crate::keygen(&exe, &dir.join("cluster.key"))?;
    std::fs::write(
        &config,
        drill_config(
            &dir,
            n,
            args.profile,
            args.netns,
            (name == DrillName::HalfDead).then_some(n - 1),
        )?,
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let cfg = vigil::ClusterConfig::load(&config).map_err(|e| e.to_string())?;
    let hosts = if args.netns {
        Hosts::netns(Lab::new(n as usize, 2)?)
    } else {
        Hosts::loopback(n as usize)
    };
    let mut c = Cluster {
        dir: dir.clone(),
        config: config.clone(),
        n,
        hosts,
        keep: args.keep,
        exits: vec![None; n as usize],
        t0_us: 0,
        exe,
        peer_inactive: cfg.timers.peer_inactive,
    };
    let timers = &cfg.timers;
    say(format!(
        "vigil drill {}: {n} daemons {}, two UDP links each, frames keyed (key ID {key_id}), timers {:?} (heartbeat {} ms, peer_inactive {} ms, race_timeout {} ms)\n  config {}",
        name.name(),
        if args.netns { "in network namespaces" } else { "on 127.0.0.1" },
        timers.profile,
        timers.heartbeat.as_millis(),
        timers.peer_inactive.as_millis(),
        timers.race_timeout.as_millis(),
        config.display()
    ));
    for i in 0..n {
        std::fs::create_dir_all(c.probe_dir(i)).map_err(|e| e.to_string())?;
        c.start(i)?;
    }
    let started = Instant::now();
    // Sixty-four daemons on two cores take a while to start and find each other.
    let form_within = Duration::from_secs(20 + u64::from(n) / 2);
    let g0 = loop {
        netlab::check_interrupted()?;
        if let Some(g) = all_up(&c) {
            break g;
        }
        c.reap();
        if let Some((i, (code, _))) = c
            .exits
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.map(|e| (i, e)))
        {
            return Err(format!(
                "daemon n{i} exited with code {code} while starting; its log: {}",
                c.log(i as u8).display()
            ));
        }
        if started.elapsed() > form_within {
            return Err(format!(
                "the cluster did not form within {} s; logs in {}",
                form_within.as_secs(),
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    say(format!(
        "all {n} nodes up on both links and holding authority on view {g0} after {} ms\n",
        started.elapsed().as_millis()
    ));
    if let (false, Some(show)) = (args.brief, show) {
        if let Some(s) = c.status(0) {
            println!("$ vigil lltstat -nvv   # on n0");
            println!("{}", (show.nodes_text)(&s, true));
            println!("$ vigil gabconfig -a   # on n0");
            println!("{}", (show.ports_text)(&s));
        }
    }

    let all: Vec<u8> = (0..n).collect();
    let last = n - 1;
    let inactive = c.peer_inactive;
    // The fault, and what must follow.
    c.t0_us = vigil_runtime::logging::wall_us();
    let t0 = Instant::now();
    let (what, expect) = match name {
        DrillName::Split32 | DrillName::EvenSplit | DrillName::TwoNode => {
            // The low IDs against the high ones: by default the low side is the
            // minority for an odd count, and holds the lowest ID of an even split
            // (and wins).
            let cut = split_point(n, args.split)?;
            let (low, high): (Vec<u8>, Vec<u8>) = ((0..cut).collect(), (cut..n).collect());
            let how = c.cut(&[low.clone(), high.clone()])?;
            let (survivors, fenced) = if low.len() < high.len() {
                (high.clone(), low.clone())
            } else {
                (low.clone(), high.clone())
            };
            (
                format!("partition {low:?} | {high:?} ({how})"),
                Expect {
                    survivors,
                    fenced,
                    ..Expect::default()
                },
            )
        }
        DrillName::Freeze => {
            c.signal(last, libc::SIGSTOP)?;
            (
                format!(
                    "SIGSTOP n{last} for {} ms (10 × peer_inactive), then SIGCONT",
                    (inactive * 10).as_millis()
                ),
                Expect {
                    survivors: (0..last).collect(),
                    fenced: vec![last],
                    fence_reason: Some("stalled"),
                    ..Expect::default()
                },
            )
        }
        DrillName::HalfDead => {
            let how = c.break_disk(last)?;
            (
                format!("n{last}'s health probe directory stops being writable: {how}"),
                Expect {
                    survivors: (0..last).collect(),
                    left: vec![last],
                    ..Expect::default()
                },
            )
        }
        DrillName::Kill => {
            c.kill(last)?;
            (
                format!("SIGKILL n{last}"),
                Expect {
                    survivors: (0..last).collect(),
                    ..Expect::default()
                },
            )
        }
        DrillName::LinkLoss => {
            let how = c.link_b(last, true)?;
            (
                format!("n{last} loses link b ({how})"),
                Expect {
                    survivors: all.clone(),
                    no_view_change: true,
                    ..Expect::default()
                },
            )
        }
        DrillName::Flap => {
            let how = c.link_b(last, true)?;
            (
                format!(
                    "n{last}'s link b flaps: down and up every {} ms, 4 times ({how})",
                    (inactive * 3 / 2).as_millis()
                ),
                Expect {
                    survivors: all.clone(),
                    no_view_change: true,
                    ..Expect::default()
                },
            )
        }
        DrillName::Reboot => {
            c.kill(0)?;
            c.start(0)?;
            (
                "n0 (the lowest ID) killed and restarted at once".to_string(),
                Expect {
                    survivors: all.clone(),
                    ..Expect::default()
                },
            )
        }
        DrillName::FenceLoop => {
            let how = c.cut(&[vec![0, 1], (2..n).collect()])?;
            (
                format!("partition [0, 1] | {:?} ({how}); the fenced nodes are restarted while it lasts", (2..n).collect::<Vec<u8>>()),
                Expect {
                    survivors: (2..n).collect(),
                    fenced: vec![0, 1],
                    waiting: vec![0, 1],
                    max_views: Some(1),
                    ..Expect::default()
                },
            )
        }
        DrillName::NonTransitive => {
            // Only the pair (0, last) cannot talk.
            let how = c.cut_pair(0, last)?;
            (
                format!("n0 and n{last} cannot talk; every other pair can ({how})"),
                Expect {
                    survivors: (0..last).collect(),
                    fenced: vec![last],
                    ..Expect::default()
                },
            )
        }
        DrillName::Cascading => {
            let how = c.cut(&[vec![0, 1], (2..n).collect()])?;
            (
                format!(
                    "partition [0, 1] | {:?} ({how}); then, once the three decided, [2, 3] | [4]",
                    (2..n).collect::<Vec<u8>>()
                ),
                Expect {
                    survivors: (2..last).collect(),
                    fenced: vec![0, 1, last],
                    ..Expect::default()
                },
            )
        }
        DrillName::Isolate => {
            let how = c.cut(&[(0..last).collect(), vec![last]])?;
            (
                format!("n{last} cut off from every other node ({how})"),
                Expect {
                    survivors: (0..last).collect(),
                    fenced: vec![last],
                    ..Expect::default()
                },
            )
        }
        DrillName::Guarded => return Err("run guarded with `vigil drill guarded`".into()),
        DrillName::TwoNodeWitness => {
            return Err("run two-node-witness with `vigil drill two-node-witness`".into())
        }
        DrillName::ThreeCuts => {
            if n != 5 {
                return Err("three-cuts runs with 5 nodes".into());
            }
            let mut how = String::new();
            for (a, b) in [(0, 1), (1, 2), (3, 4)] {
                how = c.cut_pair(a, b)?;
            }
            (
                format!("pairs 0–1, 1–2 and 3–4 cannot talk; every other pair can ({how})"),
                Expect {
                    survivors: vec![0, 2, 3],
                    fenced: vec![1, 4],
                    ..Expect::default()
                },
            )
        }
        DrillName::PairCut => {
            let a = last - 1;
            let how = c.cut_pair(a, last)?;
            (
                format!("n{a} and n{last} cannot talk; every other pair can ({how})"),
                Expect {
                    survivors: (0..last).collect(),
                    fenced: vec![last],
                    ..Expect::default()
                },
            )
        }
        DrillName::OneWay => {
            let how = c.deafen(last)?;
            (
                format!("n{last} stops hearing the others; they still hear it ({how})"),
                Expect {
                    survivors: (0..last).collect(),
                    fenced: vec![last],
                    ..Expect::default()
                },
            )
        }
    };
    say(format!("t0: {what}"));

    // Drive the rest of the fault and wait for the outcome.
    let bound = inactive * 10 + cfg.timers.race_timeout * 4 + Duration::from_secs(5);
    let mut flaps = 0;
    let mut next_flap = t0 + inactive * 3 / 2;
    let mut link_down = matches!(name, DrillName::Flap);
    let mut continued = false;
    let observe = match name {
        DrillName::LinkLoss => inactive * 4,
        DrillName::Flap => inactive * 3 / 2 * 8 + inactive * 2,
        _ => Duration::ZERO,
    };
    let mut decided: Option<Duration> = None;
    // fence-loop: when the fenced nodes were restarted, and their first exits.
    let mut restarted: Option<Duration> = None;
    let mut first_exits = c.exits.clone();
    // cascading: whether the second split happened.
    let mut second_split = false;
    loop {
        netlab::check_interrupted()?;
        c.reap();
        let now = t0.elapsed();
        if name == DrillName::FenceLoop
            && restarted.is_none()
            && expect
                .waiting
                .iter()
                .all(|i| c.exits[*i as usize].is_some())
        {
            first_exits = c.exits.clone();
            for &i in &expect.waiting {
                c.exits[i as usize] = None;
                c.start(i)?;
            }
            restarted = Some(now);
            say(format!(
                "{:.0} ms: restarted {:?} while the partition persists",
                ms_since(c.t0_us),
                expect.waiting
            ));
        }
        if name == DrillName::Cascading
            && !second_split
            && c.status(2).is_some_and(|s| {
                s.node
                    .fence
                    .installed
                    .as_ref()
                    .is_some_and(|v| v.generation.0 > g0)
            })
        {
            c.cut(&[(0..2).collect(), (2..last).collect(), vec![last]])?;
            second_split = true;
            say(format!(
                "{:.0} ms: second split {:?} | [{last}]",
                ms_since(c.t0_us),
                (2..last).collect::<Vec<u8>>()
            ));
        }
        if name == DrillName::Freeze && !continued && now >= inactive * 10 {
            c.signal(last, libc::SIGCONT)?;
            continued = true;
            say(format!("{:.0} ms: SIGCONT n{last}", ms_since(c.t0_us)));
        }
        if name == DrillName::Flap && flaps < 8 && Instant::now() >= next_flap {
            link_down = !link_down;
            c.link_b(last, link_down)?;
            flaps += 1;
            next_flap += inactive * 3 / 2;
        }
        let done = if expect.no_view_change {
            now >= observe
        } else if name == DrillName::FenceLoop {
            // The restarted nodes had time to do harm: detection, a race, retries.
            restarted.is_some_and(|r| now >= r + (inactive + cfg.timers.race_timeout) * 3)
                && outcome_reached(&c, &expect, g0, &first_exits)
        } else {
            outcome_reached(&c, &expect, g0, &c.exits)
                && (name != DrillName::Freeze || continued)
                && (name != DrillName::Cascading || second_split)
        };
        if done {
            decided = Some(now);
            break;
        }
        if now > bound {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Let late disturbances show (a woken node, a flap's echo), then judge.
    std::thread::sleep(inactive * 2);
    c.reap();
    if restarted.is_none() {
        first_exits = c.exits.clone();
    }
    let mut times: Vec<NodeTimes> = (0..n).map(|i| node_times(&c, i, g0)).collect();
    if restarted.is_some() {
        // The timeline shows the first incarnation's exit.
        for (i, t) in times.iter_mut().enumerate() {
            if first_exits[i].is_some() {
                t.exit = first_exits[i];
            }
        }
    }
    let failures = judge(&c, &expect, g0, &times, name, &first_exits);
    let pass = failures.is_empty() && decided.is_some();
    let decision_ms = if expect.no_view_change {
        None
    } else {
        let a = expect
            .survivors
            .iter()
            .filter_map(|i| times[*i as usize].authority);
        let f = expect
            .fenced
            .iter()
            .filter_map(|i| times[*i as usize].fenced.as_ref().map(|x| x.1));
        a.chain(f)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let roles = (!expect.no_view_change).then(|| {
        let losers: Vec<u8> = expect.fenced.iter().chain(&expect.left).copied().collect();
        role_times(&times, &expect.survivors, &losers)
    });
    if let Some(show) = show {
        println!("\ntimeline (ms after t0; from each daemon's JSON log):");
        print!("{}", timeline(&times));
        if !args.brief {
            if let Some(s) = expect.survivors.first().and_then(|i| c.status(*i)) {
                println!("\n$ vigil gabconfig -a   # on n{}", expect.survivors[0]);
                println!("{}", (show.ports_text)(&s));
            }
        }
        println!();
        let mut expected = format!(
            "survivors {:?} hold authority on one view of them",
            expect.survivors
        );
        if !expect.fenced.is_empty() {
            expected += &format!(", {:?} fence themselves", expect.fenced);
            if let Some(r) = expect.fence_reason {
                expected += &format!(" ({r})");
            }
        }
        if !expect.left.is_empty() {
            expected += &format!(", {:?} leave", expect.left);
        }
        if !expect.waiting.is_empty() {
            expected += &format!(
                ", {:?} restarted during the split wait unseeded",
                expect.waiting
            );
        }
        if let Some(m) = expect.max_views {
            expected += &format!(", survivors install at most {m} view");
        }
        if expect.no_view_change {
            expected += ", no view change";
        }
        if let Some(d) = decision_ms {
            expected += &format!("; fault to decision {d:.0} ms");
        }
        if let Some(r) = roles {
            expected += &format!(
                " (new membership {} ms, survivors may act {} ms, last loser out {} ms)",
                fmt_ms(r.membership),
                fmt_ms(r.may_act),
                fmt_ms(r.loser_out)
            );
        }
        for f in &failures {
            println!("  FAIL: {f}");
        }
        if decided.is_none() && failures.is_empty() {
            println!(
                "  FAIL: the outcome was not reached within {} ms",
                bound.as_millis()
            );
        }
        println!(
            "{} {}: {expected}",
            if pass { "PASS" } else { "FAIL" },
            name.name()
        );
    }
    Ok(DrillResult {
        name: name.name(),
        pass,
        failures,
        times,
        decision_ms,
        roles,
    })
}

/// Survivors hold authority on a view of exactly them, above `g0`; losers exited
/// (per `exits`).
fn outcome_reached(c: &Cluster, e: &Expect, g0: u64, exits: &[Option<(i32, f64)>]) -> bool {
    let members: Vec<u8> = e.survivors.clone();
    let view_ok = e.survivors.iter().all(|i| {
        c.status(*i).is_some_and(|s| {
            s.node.fence.authority
                && s.node.fence.client_view.as_ref().is_some_and(|v| {
                    v.generation.0 > g0
                        && v.members.iter().map(|m| m.id.0).collect::<Vec<_>>() == members
                })
        })
    });
    let gone = e
        .fenced
        .iter()
        .chain(&e.left)
        .all(|i| exits[*i as usize].is_some());
    view_ok && gone
}

/// Everything that is not as the drill expects, in words.
fn judge(
    c: &Cluster,
    e: &Expect,
    g0: u64,
    times: &[NodeTimes],
    name: DrillName,
    first_exits: &[Option<(i32, f64)>],
) -> Vec<String> {
    let mut fails = Vec::new();
    let mut gens = BTreeMap::new();
    for &i in &e.survivors {
        match c.status(i) {
            None => fails.push(format!("n{i} does not answer")),
            Some(s) => {
                let f = &s.node.fence;
                let view = f.client_view.as_ref();
                let members: Vec<u8> =
                    view.map_or(Vec::new(), |v| v.members.iter().map(|m| m.id.0).collect());
                if !f.authority {
                    fails.push(format!("n{i} holds no authority"));
                }
                if members != e.survivors {
                    fails.push(format!(
                        "n{i} is in view {members:?}, expected {:?}",
                        e.survivors
                    ));
                }
                let g = view.map_or(0, |v| v.generation.0);
                if e.no_view_change && g != g0 {
                    fails.push(format!("n{i} changed view: generation {g0} -> {g}"));
                }
                gens.insert(i, g);
            }
        }
        if times[i as usize].fenced.is_some() {
            fails.push(format!("n{i} fenced itself"));
        }
    }
    let distinct: std::collections::BTreeSet<u64> = gens.values().copied().collect();
    if distinct.len() > 1 {
        fails.push(format!("survivors disagree on the generation: {gens:?}"));
    }
    for &i in &e.fenced {
        match (&times[i as usize].fenced, first_exits[i as usize]) {
            (Some((reason, _)), Some((4, _))) => {
                if let Some(want) = e.fence_reason {
                    if reason != want {
                        fails.push(format!("n{i} fenced for {reason}, expected {want}"));
                    }
                }
            }
            (f, x) => fails.push(format!(
                "n{i} should have fenced itself (exit 4): fence {f:?}, exit {x:?}"
            )),
        }
    }
    for &i in &e.left {
        if times[i as usize].left.is_none() || c.exits[i as usize].map(|x| x.0) != Some(0) {
            fails.push(format!(
                "n{i} should have left gracefully (exit 0): exit {:?}",
                c.exits[i as usize]
            ));
        }
    }
    for &i in &e.waiting {
        match (c.exits[i as usize], c.status(i)) {
            (None, Some(s)) => {
                let f = &s.node.fence;
                if f.authority
                    || f.installed.is_some()
                    || f.state != vigil_fence::NodeState::Unseeded
                {
                    fails.push(format!(
                        "the restarted n{i} should wait unseeded without authority, but is {:?} (authority {})",
                        f.state, f.authority
                    ));
                }
            }
            (exit, _) => fails.push(format!(
                "the restarted n{i} should be running and waiting: exit {exit:?}"
            )),
        }
    }
    if let Some(max) = e.max_views {
        for &i in &e.survivors {
            let views = events(c, i)
                .iter()
                .filter(|ev| ev["event"] == "view.installed")
                .count();
            if views > max {
                fails.push(format!(
                    "n{i} installed {views} views after the fault, at most {max} expected"
                ));
            }
        }
    }
    if name == DrillName::Freeze {
        // The woken node must not disturb the survivors: one view change only.
        for &i in &e.survivors {
            let views = events(c, i)
                .iter()
                .filter(|ev| ev["event"] == "view.installed")
                .count();
            if views != 1 {
                fails.push(format!(
                    "n{i} installed {views} views after the fault, expected 1 (the frozen node's removal)"
                ));
            }
        }
    }
    if name == DrillName::Reboot {
        // The rebooted node must not seed a cluster of its own.
        if events(c, 0)
            .iter()
            .any(|ev| ev["event"] == "race.started" && ev["slot"] == 0)
        {
            fails.push("the rebooted n0 tried to seed a new cluster".into());
        }
    }
    fails
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(view: Option<f64>, authority: Option<f64>, fenced: Option<f64>) -> NodeTimes {
        NodeTimes {
            view: view.map(|m| (7, m)),
            authority,
            fenced: fenced.map(|m| ("lost_race".to_string(), m)),
            ..NodeTimes::default()
        }
    }

    #[test]
    fn roles_are_the_last_node_of_each_side() {
        // n0 isolated and fenced; n1..n3 survive.
        let times = [
            node(None, None, Some(810.0)),
            node(Some(601.0), Some(790.0), None),
            node(Some(605.5), Some(799.0), None),
            node(Some(603.0), Some(795.0), None),
        ];
        assert_eq!(
            role_times(&times, &[1, 2, 3], &[0]),
            RoleTimes {
                may_act: Some(799.0),
                loser_out: Some(810.0),
                membership: Some(605.5),
            }
        );
        // A kill: no loser to wait for.
        assert_eq!(
            role_times(&times, &[1, 2, 3], &[]),
            RoleTimes {
                may_act: Some(799.0),
                loser_out: None,
                membership: Some(605.5),
            }
        );
    }

    #[test]
    fn a_role_some_node_never_reached_has_no_time() {
        let times = [
            node(None, None, None),
            node(Some(600.0), None, None),
            node(Some(610.0), Some(700.0), None),
        ];
        assert_eq!(
            role_times(&times, &[1, 2], &[0]),
            RoleTimes {
                may_act: None,
                loser_out: None,
                membership: Some(610.0),
            }
        );
        // A node the timeline does not have.
        assert_eq!(role_times(&times, &[9], &[]), RoleTimes::default());
    }

    #[test]
    fn a_loser_that_left_counts_from_its_leave() {
        let mut left = node(None, None, None);
        left.left = Some(450.0);
        let times = [left, node(Some(500.0), Some(520.0), None)];
        assert_eq!(role_times(&times, &[1], &[0]).loser_out, Some(450.0));
    }
}
