//! `vigil drill`: the main job on one machine, with no set-up. It starts a local
//! cluster of real daemon processes on loopback, each with two UDP links, shows
//! `lltstat -nvv` and `gabconfig -a`, then kills one node and times how long the
//! others take to declare it down and to hold authority on a view without it.

use crate::control;
use crate::exit;
use crate::gabconfig;
use crate::lltstat;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// How many nodes to start (2..=16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=16))]
    pub nodes: u8,
    /// Keep the working directory (configs and daemon logs) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// The daemons and their directory; dropping it kills every daemon and removes the
/// directory unless asked to keep it.
struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    children: Vec<Option<Child>>,
    keep: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            println!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_udp_ports(count: usize) -> Result<Vec<u16>, String> {
    // Hold every socket until all ports are chosen, so no port is handed out twice.
    let socks: Vec<std::net::UdpSocket> = (0..count)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find free UDP ports on 127.0.0.1: {e}"))?;
    socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// A cluster config for `n` nodes on 127.0.0.1 with links `a` and `b`.
pub fn loopback_config(dir: &Path, n: u8) -> Result<String, String> {
    let ports = free_udp_ports(2 * n as usize)?;
    let mut t = format!(
        "# written by `vigil drill`\n[cluster]\nname = \"drill\"\nid = 4242\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n\n\
         [timers]\nheartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 200\npeer_inactive = 400\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\n\n[[links]]\nname = \"b\"\nkind = \"udp\"\n",
        d = dir.display()
    );
    for i in 0..n {
        let (pa, pb) = (ports[2 * i as usize], ports[2 * i as usize + 1]);
        t.push_str(&format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"127.0.0.1:{pa}\"\nb = \"127.0.0.1:{pb}\"\n"
        ));
    }
    Ok(t)
}

fn socket(dir: &Path, i: u8) -> PathBuf {
    dir.join(format!("n{i}.sock"))
}

/// Every node sees every other node OPEN with every link UP.
fn all_up(dir: &Path, n: u8) -> bool {
    (0..n).all(|i| {
        control::status(&socket(dir, i)).is_ok_and(|s| {
            s.node.llt.peers.len() == n as usize - 1
                && s.node
                    .llt
                    .peers
                    .iter()
                    .all(|p| p.up && p.links.iter().all(|l| l.state == vigil_llt::LinkState::Up))
        })
    })
}

pub fn run(args: DrillArgs) -> u8 {
    match drill(&args) {
        Ok(true) => exit::OK,
        Ok(false) => exit::FAILURE,
        Err(e) => {
            eprintln!("vigil drill: {e}");
            exit::FAILURE
        }
    }
}

fn drill(args: &DrillArgs) -> Result<bool, String> {
    let n = args.nodes;
    let dir = std::env::temp_dir().join(format!("vigil-drill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("cluster.toml");
    let mut cluster = Cluster {
        dir: dir.clone(),
        config: config.clone(),
        children: Vec::new(),
        keep: args.keep,
    };
    std::fs::write(&config, loopback_config(&dir, n)?)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    println!(
        "vigil drill: starting {n} daemons on 127.0.0.1, two UDP links each (config {})",
        config.display()
    );
    for i in 0..n {
        let log =
            std::fs::File::create(dir.join(format!("n{i}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .args([
                "daemon",
                "--log-format",
                "json",
                "--node",
                &format!("n{i}"),
                "--config",
            ])
            .arg(&cluster.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start daemon n{i}: {e}"))?;
        cluster.children.push(Some(child));
    }
    let t0 = Instant::now();
    while !all_up(&dir, n) {
        if t0.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "the cluster did not come up within 15 s; logs in {}",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "all {n} nodes see each other on both links after {} ms\n",
        t0.elapsed().as_millis()
    );
    for i in 0..n {
        let s = control::status(&socket(&dir, i))?;
        println!("$ vigil lltstat -nvv   # on n{i}");
        println!("{}", lltstat::nodes_text(&s, true));
    }
    let before = control::status(&socket(&dir, 0))?;
    println!("$ vigil gabconfig -a   # on n0");
    println!("{}", gabconfig::ports_text(&before));
    let gen_before = before
        .node
        .fence
        .installed
        .as_ref()
        .map_or(0, |v| v.generation.0);
    // Kill the last node and time the others' verdict.
    let victim = n - 1;
    let inactive = control::status(&socket(&dir, 0))?.timers.peer_inactive_ms;
    if let Some(mut c) = cluster.children[victim as usize].take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let killed = Instant::now();
    println!("killed n{victim} (SIGKILL); waiting for the others to declare it DOWN (peer_inactive {inactive} ms)");
    let mut pending: Vec<u8> = (0..victim).collect();
    let mut ok = true;
    while !pending.is_empty() {
        pending.retain(|i| {
            let down = control::status(&socket(&dir, *i))
                .is_ok_and(|s| s.node.llt.peers.iter().any(|p| p.id.0 == victim && !p.up));
            if down {
                println!(
                    "  n{i}: n{victim} DOWN after {} ms",
                    killed.elapsed().as_millis()
                );
            }
            !down
        });
        if killed.elapsed() > Duration::from_secs(10) {
            println!("  still not DOWN after 10 s on: {pending:?}");
            ok = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Then the survivors' new view, with authority.
    let mut pending: Vec<u8> = (0..victim).collect();
    while !pending.is_empty() && ok {
        pending.retain(|i| {
            let done = control::status(&socket(&dir, *i)).is_ok_and(|s| {
                s.node.fence.authority
                    && s.node.fence.client_view.as_ref().is_some_and(|v| {
                        v.generation.0 > gen_before
                            && v.member(vigil_llt::types::NodeId(victim)).is_none()
                    })
            });
            if done {
                println!(
                    "  n{i}: holds authority on a view without n{victim} after {} ms",
                    killed.elapsed().as_millis()
                );
            }
            !done
        });
        if killed.elapsed() > Duration::from_secs(10) {
            println!("  no new view with authority after 10 s on: {pending:?}");
            ok = false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    println!();
    let s = control::status(&socket(&dir, 0))?;
    println!("$ vigil lltstat -n   # on n0");
    println!("{}", lltstat::nodes_text(&s, false));
    println!("$ vigil gabconfig -a   # on n0");
    println!("{}", gabconfig::ports_text(&s));
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
