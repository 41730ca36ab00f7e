//! `vigil drill guarded`: the embedding example under faults. A store runs as a
//! thread of the drill; every node of a 3-node cluster is `vigil guarded-service`
//! (the example `runtime/examples/guarded_service.rs`, compiled into this binary),
//! which writes to the store while it is the valid primary. The drill then isolates
//! the primary, freezes it past its lease, kills it, makes it leave, and restarts
//! every node in turn, recovering in between, and checks from the store's log that
//! no two primaries ever wrote in overlapping windows and that no valid primary was
//! refused. Per fault it prints the time without a primary.
//!
//! Loopback (any user): partitions with `vigil fault block` on the embedded nodes'
//! control sockets. `--netns` (root): every node in its own namespace, partitions
//! with nftables, as `vigil drill --netns`.

use crate::drill::DrillArgs;
use crate::guarded_service::{mono_ns, serve_store};
use crate::hosts::{Hosts, Start};
use crate::netlab::{self, Lab};
use crate::{fault, free_udp_ports, Exit};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_runtime::control::{self, FaultCmd};

/// Nodes in the drill's cluster.
const NODES: u8 = 3;
/// How often a primary writes.
const WRITE_EVERY_MS: u64 = 20;
/// The most any one step (a handover, a rejoin) may take.
const BOUND: Duration = Duration::from_secs(30);
/// How long the primary stays frozen: well past its lease (500 ms) and detection.
const FREEZE: Duration = Duration::from_secs(3);

/// One write as the store logged it.
#[derive(Clone, Debug)]
struct Rec {
    at: u64,
    node: u8,
    token: u64,
    valid_until: u64,
    accepted: bool,
}

/// The store's log, shared between its thread (writer) and the drill (reader).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn records(&self) -> Vec<Rec> {
        let text = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                Some(Rec {
                    at: v["at_ns"].as_u64()?,
                    node: u8::try_from(v["node"].as_u64()?).ok()?,
                    token: v["token"].as_u64()?,
                    valid_until: v["valid_until_ns"].as_u64()?,
                    accepted: v["accepted"].as_bool()?,
                })
            })
            .collect()
    }
}

struct Cluster {
    dir: PathBuf,
    exe: PathBuf,
    hosts: Hosts,
    /// Exit codes of the services that ended, per node, in order.
    exits: Vec<Vec<i32>>,
    keep: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.hosts.stop() {
            eprintln!("vigil drill guarded: cleanup: {e}");
        }
        if self.keep {
            println!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    fn socket(&self, i: u8) -> PathBuf {
        self.dir.join(format!("n{i}.sock"))
    }

    fn log(&self, i: u8) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    /// Start (or restart) the service of node `i`.
    fn start(&mut self, i: u8) -> Result<(), String> {
        let (exe, config, store) = (
            self.exe.to_string_lossy().to_string(),
            self.dir.join("cluster.toml").to_string_lossy().to_string(),
            self.dir.join("store.sock").to_string_lossy().to_string(),
        );
        let (name, every) = (format!("n{i}"), WRITE_EVERY_MS.to_string());
        let argv = [
            exe.as_str(),
            "guarded-service",
            "run",
            "--config",
            &config,
            "--node",
            &name,
            "--store",
            &store,
            "--every-ms",
            &every,
        ];
        let (log, what) = (self.log(i), format!("n{i}'s service"));
        self.hosts.spawn(
            i as usize,
            &Start {
                what: &what,
                argv: &argv,
                log: &log,
                stdout_to_log: true,
            },
        )
    }

    fn signal(&self, i: u8, sig: i32) -> Result<(), String> {
        self.hosts.signal(i as usize, sig)
    }

    /// Note the services that have ended.
    fn reap(&mut self) {
        for i in 0..NODES as usize {
            if let Some(code) = self.hosts.try_exit(i) {
                self.exits[i].push(code);
            }
        }
    }

    /// Whether node `i`'s service runs (after noting those that ended).
    fn running(&mut self, i: u8) -> bool {
        self.reap();
        self.hosts.pid(i as usize).is_some()
    }

    fn kill(&mut self, i: u8) -> Result<(), String> {
        self.signal(i, libc::SIGKILL)?;
        wait_for(BOUND, &format!("n{i} to die"), || !self.running(i))?;
        Ok(())
    }

    /// Cut node `p` off from the others, both ways, on every link.
    fn isolate(&mut self, p: u8) -> Result<&'static str, String> {
        let others: Vec<u8> = (0..NODES).filter(|j| *j != p).collect();
        match self.hosts.lab_mut() {
            Some(lab) => {
                let sides = [
                    vec![p as usize],
                    others.iter().map(|j| *j as usize).collect(),
                ];
                lab.partition(&sides)?;
                Ok("nftables rules in every namespace")
            }
            None => {
                let block = |peers: Vec<u8>| FaultCmd::Block {
                    peers,
                    links: Vec::new(),
                    direction: control::Direction::Both,
                };
                fault::send(&self.socket(p), block(others.clone()))?;
                for &j in &others {
                    fault::send(&self.socket(j), block(vec![p]))?;
                }
                Ok("vigil fault block on the embedded nodes")
            }
        }
    }

    /// Undo every partition.
    fn heal(&mut self) -> Result<(), String> {
        match self.hosts.lab_mut() {
            Some(lab) => lab.heal(),
            None => {
                for j in 0..NODES {
                    if self.hosts.pid(j as usize).is_some() {
                        fault::send(&self.socket(j), FaultCmd::Clear)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// `vigil stop --socket`: node `i` leaves gracefully, its service exits.
    fn leave(&mut self, i: u8) -> Result<(), String> {
        let out = Command::new(&self.exe)
            .arg("stop")
            .arg("--socket")
            .arg(self.socket(i))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "vigil stop n{i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        wait_for(BOUND, &format!("n{i}'s service to exit"), || {
            !self.running(i)
        })?;
        Ok(())
    }

    /// Every node runs, holds authority on one view of all, every peer up.
    fn all_up(&self) -> bool {
        let mut gen = None;
        for i in 0..NODES {
            let Ok(s) = control::status(&self.socket(i)) else {
                return false;
            };
            let f = &s.node.fence;
            let Some(v) = f.client_view.as_ref() else {
                return false;
            };
            let peers_up = s.node.llt.peers.iter().filter(|p| p.up).count();
            if !f.authority || v.members.len() != NODES as usize || peers_up + 1 < NODES as usize {
                return false;
            }
            if gen.is_some_and(|g| g != v.generation.0) {
                return false;
            }
            gen = Some(v.generation.0);
        }
        true
    }
}

/// Poll `cond` until it holds; how long it took, or an error after `bound`.
fn wait_for(
    bound: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        netlab::check_interrupted()?;
        if cond() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > bound {
            return Err(format!(
                "timed out after {} s waiting for {what}",
                bound.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An accepted write received after `since` by a node other than `not`.
fn accepted_after(log: &Log, since: u64, not: Option<u8>) -> Option<Rec> {
    log.records()
        .into_iter()
        .find(|r| r.accepted && r.at > since && Some(r.node) != not)
}

/// What one fault showed.
struct FaultReport {
    what: String,
    /// CLOCK_MONOTONIC ns: the fault, and when the cluster had recovered.
    from: u64,
    to: u64,
    notes: Vec<String>,
}

pub fn run(args: &DrillArgs) -> Exit {
    if let Err(e) = netlab::catch_interrupts() {
        eprintln!("vigil drill guarded: {e}");
    }
    match drill(args) {
        Ok(true) => Exit::Ok,
        Ok(false) => Exit::Failure,
        Err(e) => {
            println!("FAIL guarded: {e}");
            Exit::Failure
        }
    }
}

fn config_text(dir: &Path, netns: bool) -> Result<String, String> {
    let mut t = format!(
        "# written by `vigil drill guarded`: a test cluster (fault injection is on)\n\
         [cluster]\nname = \"guarded\"\nid = 4243\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}\"\n\
         key_file = \"{d}/cluster.key\"\nfault_injection = true\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5801\n\n\
         [[links]]\nname = \"b\"\nkind = \"udp\"\nport = 5802\n",
        d = dir.display()
    );
    let ports = if netns {
        Vec::new()
    } else {
        free_udp_ports(2 * NODES as usize)?
    };
    for i in 0..NODES as usize {
        let (a, b) = if netns {
            (
                netlab::node_addr(i, 0).to_string(),
                netlab::node_addr(i, 1).to_string(),
            )
        } else {
            (
                format!("127.0.0.1:{}", ports[2 * i]),
                format!("127.0.0.1:{}", ports[2 * i + 1]),
            )
        };
        t += &format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"{a}\"\nb = \"{b}\"\n"
        );
    }
    Ok(t)
}

fn drill(args: &DrillArgs) -> Result<bool, String> {
    if args.netns && !netlab::is_root() {
        return Err("--netns needs root; run the loopback drill without it".into());
    }
    let dir = std::env::temp_dir().join(format!("vigil-guarded-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("state")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = crate::vigil_bin()?;
    crate::keygen(&exe, &dir.join("cluster.key"))?;
    std::fs::write(dir.join("cluster.toml"), config_text(&dir, args.netns)?)
        .map_err(|e| e.to_string())?;
    let store_log = Log::default();
    let (path, log) = (dir.join("store.sock"), store_log.clone());
    std::thread::spawn(move || serve_store(path, log));
    wait_for(BOUND, "the store", || dir.join("store.sock").exists())?;
    let hosts = if args.netns {
        Hosts::netns(Lab::new(NODES as usize, 2)?)
    } else {
        Hosts::loopback(NODES as usize)
    };
    let mut c = Cluster {
        dir: dir.clone(),
        exe: exe.clone(),
        hosts,
        exits: vec![Vec::new(); NODES as usize],
        keep: args.keep,
    };
    let t_start = mono_ns();
    let ms = |ns: u64| ns.saturating_sub(t_start) as f64 / 1e6;
    println!(
        "vigil drill guarded: {NODES} nodes running `vigil guarded-service` {}, a store thread at {}",
        if args.netns { "in network namespaces" } else { "on 127.0.0.1" },
        dir.join("store.sock").display()
    );
    for i in 0..NODES {
        c.start(i)?;
    }
    wait_for(BOUND, "the cluster to form", || c.all_up())?;
    let first = wait_for(BOUND, "a primary's first write", || {
        accepted_after(&store_log, 0, None).is_some()
    });
    first?;
    let primary = |log: &Log| {
        log.records()
            .iter()
            .rev()
            .find(|r| r.accepted)
            .map(|r| r.node)
    };
    println!(
        "{:.0} ms: formed, n{} writes\n",
        ms(mono_ns()),
        primary(&store_log).unwrap_or(0)
    );

    let mut reports: Vec<FaultReport> = Vec::new();
    for fault in ["partition", "freeze", "kill", "leave", "rolling-restart"] {
        let p = primary(&store_log).ok_or("nobody writes")?;
        let from = mono_ns();
        let mut notes = Vec::new();
        let exits_before = c.exits[p as usize].len();
        let what = match fault {
            "partition" => {
                let how = c.isolate(p)?;
                wait_for(BOUND, "a new primary's write", || {
                    accepted_after(&store_log, from, Some(p)).is_some()
                })?;
                wait_for(BOUND, &format!("n{p} to fence itself"), || !c.running(p))?;
                c.heal()?;
                format!("partition: n{p} (the primary) cut off ({how}), healed once it fenced")
            }
            "freeze" => {
                c.signal(p, libc::SIGSTOP)?;
                netlab::sleep(FREEZE)?;
                wait_for(BOUND, "a new primary's write", || {
                    accepted_after(&store_log, from, Some(p)).is_some()
                })?;
                c.signal(p, libc::SIGCONT)?;
                wait_for(BOUND, &format!("the woken n{p} to fence itself"), || {
                    !c.running(p)
                })?;
                format!(
                    "freeze: SIGSTOP n{p} (the primary) for {} ms, then SIGCONT",
                    FREEZE.as_millis()
                )
            }
            "kill" => {
                c.kill(p)?;
                wait_for(BOUND, "a new primary's write", || {
                    accepted_after(&store_log, from, Some(p)).is_some()
                })?;
                format!("kill: SIGKILL n{p} (the primary)")
            }
            "leave" => {
                c.leave(p)?;
                wait_for(BOUND, "a new primary's write", || {
                    accepted_after(&store_log, from, Some(p)).is_some()
                })?;
                format!("leave: vigil stop --socket n{p}.sock (the primary)")
            }
            _ => {
                for i in 0..NODES {
                    c.leave(i)?;
                    c.start(i)?;
                    wait_for(BOUND, "the cluster to re-form", || c.all_up())?;
                    let t = mono_ns();
                    wait_for(BOUND, "a write", || {
                        accepted_after(&store_log, t, None).is_some()
                    })?;
                }
                "rolling restart: vigil stop then restart n0, n1, n2 in turn".to_string()
            }
        };
        if fault != "rolling-restart" {
            c.reap();
            let code = c.exits[p as usize].get(exits_before).copied();
            let want = match fault {
                "partition" | "freeze" => Some(crate::guarded_service::EXIT_FENCED as i32),
                "leave" => Some(0),
                _ => code,
            };
            notes.push(format!("n{p}'s service exit code {code:?}"));
            if code != want {
                notes.push(format!(
                    "FAIL: n{p}'s service should have exited with {want:?}"
                ));
            }
            c.start(p)?;
            wait_for(BOUND, "the cluster to re-form", || c.all_up())?;
            let t = mono_ns();
            wait_for(BOUND, "a write", || {
                accepted_after(&store_log, t, None).is_some()
            })?;
        }
        reports.push(FaultReport {
            what,
            from,
            to: mono_ns(),
            notes,
        });
    }
    for i in 0..NODES {
        c.signal(i, libc::SIGTERM)?;
    }
    wait_for(BOUND, "the services to stop", || {
        (0..NODES).all(|i| !c.running(i))
    })?;

    let recs = store_log.records();
    let _ = std::fs::write(
        dir.join("store.log"),
        store_log.0.lock().map(|v| v.clone()).unwrap_or_default(),
    );
    let gave_up: Vec<Vec<u64>> = (0..NODES).map(|i| gave_up(&c.log(i))).collect();
    let mut fails = check(&recs, &gave_up, t_start);
    println!("faults (time without a primary: the longest gap between accepted writes, from the last before the fault to the first after):");
    for (k, r) in reports.iter().enumerate() {
        // The accepted writes in the fault's window, with the last one before it.
        let before = recs.iter().rev().find(|w| w.accepted && w.at < r.from);
        let inside: Vec<&Rec> = before
            .into_iter()
            .chain(
                recs.iter()
                    .filter(|w| w.accepted && w.at >= r.from && w.at <= r.to),
            )
            .collect();
        let gap = inside
            .windows(2)
            .max_by_key(|w| w[1].at - w[0].at)
            .map(|w| (w[1].at - w[0].at, w[0], w[1]));
        match gap {
            Some((g, a, b)) => println!(
                "  fault {} {}: no primary for {:.0} ms (last write n{} token {} at {:.0} ms, next n{} token {} at {:.0} ms)",
                k + 1,
                r.what,
                g as f64 / 1e6,
                a.node,
                a.token,
                ms(a.at),
                b.node,
                b.token,
                ms(b.at)
            ),
            None => fails.push(format!("fault {}: no accepted writes around it", k + 1)),
        }
        for n in &r.notes {
            println!("      {n}");
            if n.starts_with("FAIL") {
                fails.push(format!("fault {}: {n}", k + 1));
            }
        }
    }
    let accepted = recs.iter().filter(|r| r.accepted).count();
    println!(
        "\nstore: {accepted} writes accepted, {} refused",
        recs.len() - accepted
    );
    for f in &fails {
        println!("  FAIL: {f}");
    }
    let pass = fails.is_empty();
    println!(
        "{} guarded: never two primaries writing at once, no valid primary refused, every fault recovered",
        if pass { "PASS" } else { "FAIL" }
    );
    Ok(pass)
}

/// When node's service saw it was no longer the primary (CLOCK_MONOTONIC ns, from
/// its log): an authority without the primary role or none, a fence, the end.
fn gave_up(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| match v["event"].as_str() {
            Some("service.authority") => v["is_primary"] != Value::Bool(true),
            Some("service.fenced" | "service.ended") => true,
            _ => false,
        })
        .filter_map(|v| v["mono_ns"].as_u64())
        .collect()
}

/// The store's log against the fencing contract, in receipt order. A writer's
/// window runs from its write to the lease end it sent, or to when its service saw
/// the role go (`gave_up`, per node), whichever is first: a primary that leaves
/// gives its lease up early.
fn check(recs: &[Rec], gave_up: &[Vec<u64>], t_start: u64) -> Vec<String> {
    let ms = |ns: u64| ns.saturating_sub(t_start) as f64 / 1e6;
    let mut fails = Vec::new();
    let mut owner: BTreeMap<u64, u8> = BTreeMap::new();
    let mut highest = 0;
    // Per (node, token): the end of the latest window a write of it claimed.
    let mut claimed: BTreeMap<(u8, u64), u64> = BTreeMap::new();
    for r in recs {
        if r.accepted {
            if let Some(o) = owner.insert(r.token, r.node).filter(|o| *o != r.node) {
                fails.push(format!("token {} written by n{o} and n{}", r.token, r.node));
            }
            if r.token < highest {
                fails.push(format!(
                    "token went back from {highest} to {} at {:.0} ms",
                    r.token,
                    ms(r.at)
                ));
            }
            highest = highest.max(r.token);
            for (&(node, token), &until) in &claimed {
                if node != r.node && token < r.token && until > r.at {
                    fails.push(format!(
                        "overlap: n{} wrote token {} at {:.0} ms while n{node} (token {token}) was primary until {:.0} ms",
                        r.node, r.token, ms(r.at), ms(until)
                    ));
                }
            }
        } else if r.at < r.valid_until {
            fails.push(format!(
                "n{} refused at {:.0} ms (token {}) while valid until {:.0} ms",
                r.node,
                ms(r.at),
                r.token,
                ms(r.valid_until)
            ));
        }
        let until = gave_up
            .get(r.node as usize)
            .and_then(|g| g.iter().find(|t| **t > r.at))
            .map_or(r.valid_until, |g| r.valid_until.min(*g));
        claimed.insert((r.node, r.token), until);
    }
    fails
}
