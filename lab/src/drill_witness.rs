//! `vigil drill two-node-witness`: a two-node cluster and a real `vigil witness`
//! process, through the cases a two-node cluster meets: either node crashes, the
//! interconnect fails with the witness reachable from both sides, the interconnect
//! fails with the witness on one side only, the witness is down and then the
//! interconnect fails, and the witness restarts during a partition. After each case
//! the cluster is repaired (healed, restarted) before the next.
//!
//! Checked in every case: the node that must keep authority keeps it (and holds it
//! on a view without the other), the other fences itself (exit code 4) or was the
//! one that crashed, and at no time do the two nodes hold authority on views that
//! each exclude the other; over the whole run, no generation is installed with two
//! different member sets. The time from the fault to the survivor's new view is
//! printed per case.
//!
//! Loopback (any user): the cuts are `vigil fault block` on the daemons' control
//! sockets, the witness's included. `--netns` (root): every process in its own
//! namespace, cuts with nftables.

use crate::drill::{DrillArgs, Profile};
use crate::hosts::{Hosts, Start};
use crate::netlab::{self, Lab};
use crate::{fault, free_udp_ports, Exit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_runtime::control::{self, DaemonStatus, Direction, FaultCmd};

/// The two nodes, then the witness's host.
const NODES: u8 = 2;
const WITNESS_HOST: usize = 2;
/// The witness's node ID.
const W: u8 = 63;
/// The cluster ID of the drill's cluster.
const CLUSTER_ID: u32 = 4244;
/// The most any one step (a decision, a repair) may take.
const BOUND: Duration = Duration::from_secs(30);
/// How long the full view must hold unchanged before a case starts.
const SETTLED: Duration = Duration::from_secs(1);
/// The daemon's exit code after a self-fence.
const EXIT_FENCED: i32 = 4;

struct Cluster {
    dir: PathBuf,
    exe: PathBuf,
    hosts: Hosts,
    keep: bool,
    /// Exit codes of the processes that ended, per host, in order.
    exits: Vec<Vec<i32>>,
    /// Every view a node was seen holding authority on: generation → members.
    seen: BTreeMap<u64, Vec<u8>>,
    /// Split brains seen by the sampler: both nodes with authority on views that
    /// exclude each other.
    split_brains: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.hosts.stop() {
            eprintln!("vigil drill two-node-witness: cleanup: {e}");
        }
        if self.keep {
            println!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A node's authority as its status shows it: the client view's generation and
/// members.
fn authority(s: &DaemonStatus) -> Option<(u64, Vec<u8>)> {
    let f = &s.node.fence;
    if !f.authority {
        return None;
    }
    let v = f.client_view.as_ref()?;
    Some((v.generation.0, v.members.iter().map(|m| m.id.0).collect()))
}

impl Cluster {
    fn socket(&self, host: usize) -> PathBuf {
        if host == WITNESS_HOST {
            self.dir.join(format!("witness-{CLUSTER_ID}.sock"))
        } else {
            self.dir.join(format!("n{host}.sock"))
        }
    }

    fn log(&self, host: usize) -> PathBuf {
        if host == WITNESS_HOST {
            self.dir.join("witness.log")
        } else {
            self.dir.join(format!("n{host}.log"))
        }
    }

    fn name(host: usize) -> String {
        if host == WITNESS_HOST {
            "the witness".into()
        } else {
            format!("n{host}")
        }
    }

    /// Start (or restart) node `host`, or the witness.
    fn start(&mut self, host: usize) -> Result<(), String> {
        let exe = self.exe.to_string_lossy().to_string();
        let cluster = self.dir.join("cluster.toml").to_string_lossy().to_string();
        let witness = self.dir.join("witness.toml").to_string_lossy().to_string();
        let name = format!("n{host}");
        let argv: Vec<&str> = if host == WITNESS_HOST {
            vec![
                &exe,
                "witness",
                "--log-format",
                "json",
                "--config",
                &witness,
            ]
        } else {
            vec![
                &exe,
                "daemon",
                "--log-format",
                "json",
                "--node",
                &name,
                "--config",
                &cluster,
            ]
        };
        let (log, what) = (self.log(host), Cluster::name(host));
        self.hosts.spawn(
            host,
            &Start {
                what: &what,
                argv: &argv,
                log: &log,
                stdout_to_log: false,
            },
        )
    }

    fn reap(&mut self) {
        for i in 0..=WITNESS_HOST {
            if let Some(code) = self.hosts.try_exit(i) {
                self.exits[i].push(code);
            }
        }
    }

    fn running(&mut self, host: usize) -> bool {
        self.reap();
        self.hosts.pid(host).is_some()
    }

    fn kill(&mut self, host: usize) -> Result<(), String> {
        self.hosts.signal(host, libc::SIGKILL)?;
        let what = format!("{} to die", Cluster::name(host));
        self.wait(&what, |c| !c.running(host))?;
        Ok(())
    }

    fn status(&self, host: usize) -> Option<DaemonStatus> {
        control::status(&self.socket(host)).ok()
    }

    /// Sample both nodes: note the views held, and any split brain.
    fn sample(&mut self) {
        let held: Vec<Option<(u64, Vec<u8>)>> = (0..NODES as usize)
            .map(|i| self.status(i).as_ref().and_then(authority))
            .collect();
        for (g, m) in held.iter().flatten() {
            if let Some(prev) = self.seen.insert(*g, m.clone()) {
                if &prev != m {
                    self.split_brains.push(format!(
                        "generation {g} held with members {prev:?} and {m:?}"
                    ));
                }
            }
        }
        if let (Some((g0, m0)), Some((g1, m1))) = (&held[0], &held[1]) {
            if !m0.contains(&1) && !m1.contains(&0) {
                self.split_brains.push(format!(
                    "n0 held authority on generation {g0} {m0:?} while n1 held it on generation {g1} {m1:?}"
                ));
            }
        }
    }

    /// Poll (sampling for split brains) until `cond` holds; how long it took.
    fn wait(
        &mut self,
        what: &str,
        mut cond: impl FnMut(&mut Cluster) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            netlab::check_interrupted()?;
            self.sample();
            if cond(self) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > BOUND {
                return Err(format!(
                    "timed out after {} s waiting for {what}; logs in {}",
                    BOUND.as_secs(),
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `i` holds authority on a view whose members are exactly `members`.
    fn holds(&self, i: usize, members: &[u8]) -> bool {
        self.status(i)
            .as_ref()
            .and_then(authority)
            .is_some_and(|(_, m)| m == members)
    }

    /// Both nodes and the witness in one view, both nodes holding authority on it,
    /// every peer up.
    fn all_up(&self) -> bool {
        let full = [0, 1, W];
        (0..NODES as usize).all(|i| {
            self.holds(i, &full)
                && self
                    .status(i)
                    .is_some_and(|s| s.node.llt.peers.iter().all(|p| p.up))
        })
    }

    /// The nodes that cannot talk: on loopback `vigil fault block` on each of them
    /// (both ways); in namespaces nftables rules.
    fn cut(&mut self, pairs: &[(usize, usize)]) -> Result<String, String> {
        let ids = |h: usize| if h == WITNESS_HOST { W } else { h as u8 };
        match self.hosts.lab_mut() {
            Some(lab) => {
                for &(a, b) in pairs {
                    let (aa, ba) = (lab.addrs(a), lab.addrs(b));
                    lab.block(a, &ba)?;
                    lab.block(b, &aa)?;
                }
                Ok("nftables rules".into())
            }
            None => {
                for &(a, b) in pairs {
                    for (x, y) in [(a, b), (b, a)] {
                        fault::send(
                            &self.socket(x),
                            FaultCmd::Block {
                                peers: vec![ids(y)],
                                links: Vec::new(),
                                direction: Direction::Both,
                            },
                        )
                        .map_err(|e| format!("{}: {e}", Cluster::name(x)))?;
                    }
                }
                Ok("vigil fault block".into())
            }
        }
    }

    /// Undo every cut, on the processes that run.
    fn heal(&mut self) -> Result<(), String> {
        match self.hosts.lab_mut() {
            Some(lab) => lab.heal(),
            None => {
                for h in 0..=WITNESS_HOST {
                    if self.hosts.pid(h).is_some() {
                        let _ = fault::send(&self.socket(h), FaultCmd::Clear);
                    }
                }
                Ok(())
            }
        }
    }

    /// Heal, start whatever is down, and wait for the full view.
    fn repair(&mut self) -> Result<(), String> {
        self.heal()?;
        for h in 0..=WITNESS_HOST {
            if !self.running(h) {
                self.start(h)?;
            }
        }
        self.settle("the cluster to re-form with the witness")?;
        Ok(())
    }

    /// The generation both nodes hold authority on, when [`Cluster::all_up`].
    fn full_generation(&self) -> Option<u64> {
        if !self.all_up() {
            return None;
        }
        self.status(0).as_ref().and_then(authority).map(|(g, _)| g)
    }

    /// Wait until the full view holds and stays the same for a second: a node that
    /// just rejoined may still change it (its racer drops a witness its own links
    /// have not brought up yet, and the witness then joins again).
    fn settle(&mut self, what: &str) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            self.wait(what, |c| c.all_up())?;
            let g = self.full_generation();
            let until = Instant::now() + SETTLED;
            self.wait(what, |_| Instant::now() >= until)?;
            if g.is_some() && self.full_generation() == g {
                return Ok(start.elapsed());
            }
            if start.elapsed() > BOUND {
                return Err(format!(
                    "timed out after {} s waiting for {what} to settle; logs in {}",
                    BOUND.as_secs(),
                    self.dir.display()
                ));
            }
        }
    }

    /// The last exit code of `host` after `before` exits had been noted.
    fn exit_after(&mut self, host: usize, before: usize) -> Option<i32> {
        self.reap();
        self.exits[host].get(before).copied()
    }
}

pub fn run(args: &DrillArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil drill two-node-witness: {e}");
    }
    match run_once(args, true) {
        Ok((true, _)) => Exit::Ok,
        Ok((false, _)) => Exit::Failure,
        Err(e) => {
            println!("FAIL two-node-witness: {e}");
            Exit::Failure
        }
    }
}

fn config_text(dir: &Path, netns: bool, profile: Profile) -> Result<String, String> {
    // As in the other drills: the fast profile's daemons ask for real-time
    // scheduling (they warn and run without it when refused).
    let (profile, daemon) = match profile {
        Profile::Default => ("default", ""),
        Profile::Fast => ("fast", "[daemon]\nrealtime = \"fifo\"\n\n"),
    };
    let ports = if netns {
        Vec::new()
    } else {
        free_udp_ports(3 * NODES as usize + 1)?
    };
    let addr = |host: usize, link: usize| -> String {
        if netns {
            netlab::node_addr(host, link).to_string()
        } else {
            format!("127.0.0.1:{}", ports[3 * host + link])
        }
    };
    let mut t = format!(
        "# written by `vigil drill two-node-witness`: a test cluster (fault injection is on)\n\
         [cluster]\nname = \"witness-drill\"\nid = {CLUSTER_ID}\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}\"\n\
         key_file = \"{d}/cluster.key\"\nfault_injection = true\n\n\
         {daemon}[timers]\nprofile = \"{profile}\"\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5801\n\n\
         [[links]]\nname = \"b\"\nkind = \"udp\"\nport = 5802\n\n\
         [[links]]\nname = \"w\"\nkind = \"udp\"\nport = 5803\n\n\
         [witness]\nlink = \"w\"\naddress = \"{w}\"\nkey_file = \"{d}/witness.key\"\n",
        d = dir.display(),
        w = if netns {
            netlab::node_addr(WITNESS_HOST, 2).to_string()
        } else {
            format!("127.0.0.1:{}", ports[3 * NODES as usize])
        }
    );
    for i in 0..NODES as usize {
        t += &format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"{}\"\nb = \"{}\"\nw = \"{}\"\n",
            addr(i, 0),
            addr(i, 1),
            addr(i, 2)
        );
    }
    Ok(t)
}

/// One case's outcome.
#[derive(Clone, Debug)]
pub struct Case {
    /// A short stable name: `crash-n0`, `crash-n1`, `partition`,
    /// `partition-witness-one-side`, `witness-down-partition`,
    /// `witness-restart-partition`.
    pub key: &'static str,
    /// What was done.
    pub what: String,
    /// Fault to the survivor's new view, ms.
    pub decision_ms: Option<f64>,
    pub notes: Vec<String>,
    pub pass: bool,
}

/// Run every case once; print the progress and the verdict when `print`. Whether
/// every case passed (and no split brain was seen), and the cases.
pub fn run_once(args: &DrillArgs, print: bool) -> Result<(bool, Vec<Case>), String> {
    let say = |s: String| {
        if print {
            println!("{s}");
        }
    };
    if args.netns && !netlab::is_root() {
        return Err("--netns needs root; run the loopback drill without it".into());
    }
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vigil-witness-drill-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("state")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = crate::vigil_bin()?;
    let cluster_key = crate::keygen(&exe, &dir.join("cluster.key"))?;
    let witness_key = crate::keygen(&exe, &dir.join("witness.key"))?;
    std::fs::write(
        dir.join("cluster.toml"),
        config_text(&dir, args.netns, args.profile)?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("witness.toml"),
        format!(
            "# written by `vigil drill two-node-witness`\n[witness]\nstate_dir = \"{d}/witness-state\"\nrun_dir = \"{d}\"\n\n[[clusters]]\nconfig = \"{d}/cluster.toml\"\n",
            d = dir.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let hosts = if args.netns {
        Hosts::netns(Lab::new(WITNESS_HOST + 1, 3)?)
    } else {
        Hosts::loopback(WITNESS_HOST + 1)
    };
    let mut c = Cluster {
        dir: dir.clone(),
        exe,
        hosts,
        keep: args.keep,
        exits: vec![Vec::new(); WITNESS_HOST + 1],
        seen: BTreeMap::new(),
        split_brains: Vec::new(),
    };
    say(format!(
        "vigil drill two-node-witness: n0 and n1 (links a, b) and a `vigil witness` process (link w) {}, cluster key {cluster_key}, witness key {witness_key}, profile {:?}\n  config {}",
        if args.netns { "in network namespaces" } else { "on 127.0.0.1" },
        args.profile,
        dir.join("cluster.toml").display()
    ));
    for h in 0..=WITNESS_HOST {
        c.start(h)?;
    }
    let formed = c.settle("the cluster to form with the witness")?;
    say(format!(
        "formed: n0 and n1 hold authority on a view of [0, 1, 63] (settled {} ms after the start)\n",
        formed.as_millis()
    ));
    if print && !args.brief {
        if let Ok(out) = std::process::Command::new(&c.exe)
            .args(["fenceadm", "-d", "--socket"])
            .arg(c.socket(0))
            .output()
        {
            say("$ vigil fenceadm -d   # on n0".to_string());
            say(format!("{}", String::from_utf8_lossy(&out.stdout)));
        }
        if let Ok(out) = std::process::Command::new(&c.exe)
            .args(["witness", "status", "--config"])
            .arg(dir.join("witness.toml"))
            .output()
        {
            say("$ vigil witness status".to_string());
            say(format!("{}", String::from_utf8_lossy(&out.stdout)));
        }
    }

    let mut cases: Vec<Case> = Vec::new();
    // Either node crashes: the other keeps authority with the witness's vote.
    for victim in [0usize, 1] {
        let survivor = 1 - victim;
        let t0 = Instant::now();
        c.kill(victim)?;
        let want = [survivor as u8, W];
        let took = c.wait(&format!("n{survivor} to hold [{survivor}, 63]"), |c| {
            c.holds(survivor, &want)
        });
        let mut case = Case {
            key: if victim == 0 { "crash-n0" } else { "crash-n1" },
            what: format!("n{victim} crashes (SIGKILL)"),
            decision_ms: None,
            notes: Vec::new(),
            pass: true,
        };
        match took {
            Ok(_) => case.decision_ms = Some(t0.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                case.pass = false;
                case.notes.push(e);
            }
        }
        if !c.running(survivor) {
            case.pass = false;
            case.notes.push(format!("n{survivor} stopped"));
        }
        cases.push(case);
        c.repair()?;
    }

    // Partitions: who must survive, the cut, what the case is called.
    /// A partition case: its key, what it is, the pairs cut, who must survive.
    type Partition = (
        &'static str,
        &'static str,
        Vec<(usize, usize)>,
        Option<usize>,
    );
    let partitions: [Partition; 2] = [
        (
            "partition",
            "n0 | n1, the witness reachable from both",
            vec![(0, 1)],
            None,
        ),
        (
            "partition-witness-one-side",
            "n0 | n1 + witness (the witness on n1's side)",
            vec![(0, 1), (0, WITNESS_HOST)],
            Some(1),
        ),
    ];
    for (key, what, pairs, must) in partitions {
        let before: Vec<usize> = (0..NODES as usize).map(|i| c.exits[i].len()).collect();
        let t0 = Instant::now();
        let how = c.cut(&pairs)?;
        let mut case = Case {
            key,
            what: format!("partition {what} ({how})"),
            decision_ms: None,
            notes: Vec::new(),
            pass: true,
        };
        let decided = c.wait("one node to hold a view without the other", |c| {
            (0..NODES as usize).any(|i| c.holds(i, &[i as u8, W]))
        });
        if let Err(e) = decided {
            case.pass = false;
            case.notes.push(e);
        } else {
            case.decision_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
        }
        let winner = (0..NODES as usize).find(|i| c.holds(*i, &[*i as u8, W]));
        if let Some(w) = winner {
            let loser = 1 - w;
            if must.is_some_and(|m| m != w) {
                case.pass = false;
                case.notes
                    .push(format!("n{w} survived; n{} should have", 1 - w));
            }
            let fenced = c.wait(&format!("n{loser} to fence itself"), |c| !c.running(loser));
            let code = c.exit_after(loser, before[loser]);
            case.notes
                .push(format!("n{w} survived, n{loser} exited with {code:?}"));
            if fenced.is_err() || code != Some(EXIT_FENCED) {
                case.pass = false;
                case.notes
                    .push(format!("n{loser} should have fenced itself (exit 4)"));
            }
        }
        cases.push(case);
        c.repair()?;
    }

    // The witness down, then a partition: the view drops the witness, and the
    // lowest-ID rule decides the split.
    {
        let mut case = Case {
            key: "witness-down-partition",
            what: "witness down (SIGKILL), then partition n0 | n1".into(),
            decision_ms: None,
            notes: Vec::new(),
            pass: true,
        };
        let t_down = Instant::now();
        c.kill(WITNESS_HOST)?;
        let dropped = c.wait("both nodes to hold [0, 1] without the witness", |c| {
            c.holds(0, &[0, 1]) && c.holds(1, &[0, 1])
        })?;
        case.notes.push(format!(
            "the view dropped the witness {} ms after it died, both nodes kept authority",
            t_down.elapsed().as_millis().max(dropped.as_millis())
        ));
        let before = c.exits[1].len();
        let t0 = Instant::now();
        let how = c.cut(&[(0, 1)])?;
        case.what = format!("{} ({how})", case.what);
        match c.wait("n0 to hold [0]", |c| c.holds(0, &[0])) {
            Ok(_) => case.decision_ms = Some(t0.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                case.pass = false;
                case.notes.push(e);
            }
        }
        let fenced = c.wait("n1 to fence itself", |c| !c.running(1));
        let code = c.exit_after(1, before);
        case.notes
            .push(format!("n0 survived (lowest ID), n1 exited with {code:?}"));
        if fenced.is_err() || code != Some(EXIT_FENCED) {
            case.pass = false;
            case.notes
                .push("n1 should have fenced itself (exit 4)".into());
        }
        cases.push(case);
        c.repair()?;
    }

    // The witness restarts during a partition: never two sides. The restarted
    // witness is a new incarnation, no voter of the view `{0, 1, 63}` the race is
    // for, so each side holds one vote of three; both fence unless one side's racer
    // was accepted by the old incarnation before it died (docs/fencing.md).
    {
        let before: Vec<usize> = (0..NODES as usize).map(|i| c.exits[i].len()).collect();
        let t0 = Instant::now();
        let how = c.cut(&[(0, 1)])?;
        c.kill(WITNESS_HOST)?;
        c.start(WITNESS_HOST)?;
        let mut case = Case {
            key: "witness-restart-partition",
            what: format!("partition n0 | n1 ({how}) while the witness is killed and restarted"),
            decision_ms: None,
            notes: Vec::new(),
            pass: true,
        };
        // Decided: a node holds a view without the other, or both have fenced.
        let decided = c.wait(
            "a node to hold a view without the other, or both to fence",
            |c| {
                (0..NODES as usize).any(|i| c.holds(i, &[i as u8, W]) || c.holds(i, &[i as u8]))
                    || (0..NODES as usize).all(|i| !c.running(i))
            },
        );
        match decided {
            Ok(_) => case.decision_ms = Some(t0.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                case.pass = false;
                case.notes.push(e);
            }
        }
        // Whoever lost fences; give a second winner every chance to show itself.
        let _ = c.wait("a node to have stopped", |c| {
            (0..NODES as usize).any(|i| !c.running(i))
        });
        let until = Instant::now() + Duration::from_secs(2);
        let _ = c.wait("a while", |_| Instant::now() >= until);
        let running: Vec<usize> = (0..NODES as usize).filter(|i| c.running(*i)).collect();
        let codes: Vec<Option<i32>> = (0..NODES as usize)
            .map(|i| c.exit_after(i, before[i]))
            .collect();
        case.notes.push(match running.as_slice() {
            [w] => format!("n{w} survived, n{} exited with {:?}", 1 - w, codes[1 - w]),
            [] => format!(
                "both fenced (exit codes {:?}, {:?}): the restarted witness holds no vote in the view being replaced",
                codes[0], codes[1]
            ),
            _ => "both still running".to_string(),
        });
        if running.len() > 1 {
            case.pass = false;
            case.notes
                .push("both nodes kept running through the partition".into());
        }
        for (i, code) in codes.iter().enumerate() {
            if !running.contains(&i) && *code != Some(EXIT_FENCED) {
                case.pass = false;
                case.notes
                    .push(format!("n{i} stopped without fencing itself"));
            }
        }
        cases.push(case);
        c.repair()?;
    }

    for h in 0..=WITNESS_HOST {
        let _ = c.hosts.signal(h, libc::SIGTERM);
    }
    let _ = c.wait("every process to stop", |c| {
        (0..=WITNESS_HOST).all(|h| !c.running(h))
    });

    say(
        "cases (time from the fault to the decision: the survivor's new view, or both fenced):"
            .to_string(),
    );
    let mut pass = true;
    for (k, case) in cases.iter().enumerate() {
        pass &= case.pass;
        say(format!(
            "  {} {}: {}{}",
            k + 1,
            case.what,
            case.decision_ms
                .map_or("no decision".to_string(), |d| format!("{d:.0} ms")),
            if case.pass { "" } else { "  FAIL" }
        ));
        for n in &case.notes {
            say(format!("      {n}"));
        }
    }
    if !c.split_brains.is_empty() {
        pass = false;
        say("split brain:".to_string());
        for s in &c.split_brains {
            say(format!("  {s}"));
        }
    }
    say(format!(
        "views held over the run: {}",
        c.seen
            .iter()
            .map(|(g, m)| format!("{g} {m:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    say(format!(
        "{} two-node-witness{}",
        if pass { "PASS" } else { "FAIL" },
        if args.netns { " (netns)" } else { "" }
    ));
    Ok((pass, cases))
}
