//! `vigil lltstat`: llt statistics (default), `-n` nodes, `-nvv` nodes and links,
//! `-c` configuration; each also as one JSON document with `--json`.
//!
//! The layouts follow Veritas `lltstat`; `*` marks the local node.

use crate::control::{self, DaemonStatus};
use crate::{exit, Target};
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write as _;
use vigil_llt::{DropReason, LinkState, PeerStatus};

#[derive(Args, Debug)]
pub struct LltstatArgs {
    /// Node information: one line per node.
    #[arg(short = 'n')]
    pub nodes: bool,
    /// More detail with -n: -nvv lists every link of every node with state, address and RTT.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// With -n: a line for every node slot 0..63, as Veritas `lltstat -nvv` shows
    /// them; slots no node is configured in are CONNWAIT with every link DOWN.
    #[arg(long, requires = "nodes")]
    pub all_slots: bool,
    /// Configuration information.
    #[arg(short = 'c', conflicts_with = "nodes")]
    pub show_config: bool,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

pub fn run(args: LltstatArgs) -> u8 {
    let status = match control::resolve(&args.target).and_then(|s| control::status(&s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lltstat: {e}");
            return exit::FAILURE;
        }
    };
    let out = if args.show_config {
        if args.json {
            config_json(&status).to_string()
        } else {
            config_text(&status)
        }
    } else if args.nodes {
        if args.json {
            nodes_json(&status).to_string()
        } else {
            nodes_text_slots(&status, args.verbose >= 2, args.all_slots)
        }
    } else if args.json {
        stats_json(&status).to_string()
    } else {
        stats_text(&status)
    };
    println!("{}", out.trim_end());
    exit::OK
}

fn state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Up => "UP",
        LinkState::Trouble => "TROUBLE",
        LinkState::Down => "DOWN",
    }
}

/// A peer is OPEN (Veritas' word) when some link to it is up; CONNWAIT otherwise.
fn peer_state(p: &PeerStatus) -> &'static str {
    if p.up {
        "OPEN"
    } else {
        "CONNWAIT"
    }
}

fn peer(s: &DaemonStatus, id: vigil_llt::types::NodeId) -> Option<&PeerStatus> {
    s.node.llt.peers.iter().find(|p| p.id == id)
}

/// The documented `lltstat -nvv --json` document.
pub fn nodes_json(s: &DaemonStatus) -> Value {
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .map(|n| {
            if n.id == s.local {
                let links: Vec<Value> = s
                    .links
                    .iter()
                    .map(|l| json!({"name": l.name, "state": "UP", "address": l.local_address, "rtt_us": null}))
                    .collect();
                return json!({"id": n.id, "name": n.name, "state": "OPEN", "local": true,
                              "incarnation": s.node.llt.incarnation.0, "jeopardy": false, "links": links});
            }
            let Some(p) = peer(s, n.id) else {
                return json!({"id": n.id, "name": n.name, "state": "CONNWAIT", "links": []});
            };
            let links: Vec<Value> = p
                .links
                .iter()
                .map(|l| {
                    let address = l
                        .addr
                        .map(|a| a.to_string())
                        .or_else(|| n.addresses.get(l.link.index()).cloned());
                    json!({"name": l.name, "state": state_name(l.state), "address": address,
                           "rtt_us": l.rtt_us, "srtt_us": l.srtt_us})
                })
                .collect();
            json!({"id": n.id, "name": n.name, "state": peer_state(p), "local": false,
                   "incarnation": p.incarnation.map(|i| i.0), "jeopardy": p.jeopardy, "links": links})
        })
        .collect();
    json!({"local": s.local, "authenticated": s.authenticated, "nodes": nodes})
}

fn fmt_rtt(us: Option<u64>) -> String {
    match us {
        Some(us) => format!("{}.{:03} ms", us / 1000, us % 1000),
        None => "-".into(),
    }
}

/// The key ring in one line, or the WARNING of an unauthenticated cluster.
fn keys_line(s: &DaemonStatus) -> String {
    let k = &s.node.llt.keys;
    match k.send {
        Some(send) if s.authenticated => format!(
            "Keys: frames sent with key {send}, accepted under {}",
            k.accept
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => crate::keys::INSECURE_WARNING.to_string(),
    }
}

pub fn nodes_text(s: &DaemonStatus, links: bool) -> String {
    nodes_text_slots(s, links, false)
}

/// Node slots in a Veritas-style `lltstat -n` table.
const SLOTS: u8 = 64;

/// [`nodes_text`], with `all_slots` a line for every node slot 0..63 (unconfigured
/// slots CONNWAIT, their links DOWN), as Veritas lists them.
pub fn nodes_text_slots(s: &DaemonStatus, links: bool, all_slots: bool) -> String {
    let mut out = String::from("LLT node information:\n");
    if !s.authenticated {
        let _ = writeln!(out, "  {}", keys_line(s));
    }
    if links {
        out.push_str(&format!(
            "    {:<24} {:<9} {:<8} {:<8} {:<24} RTT\n",
            "Node", "State", "Link", "Status", "Address"
        ));
    } else {
        out.push_str(&format!("    {:<24} {:<9} Links\n", "Node", "State"));
    }
    let order: Vec<_> = if all_slots {
        (0..SLOTS)
            .map(|slot| (slot, s.nodes.iter().find(|n| n.id.get() == slot)))
            .collect()
    } else {
        s.nodes.iter().map(|n| (n.id.get(), Some(n))).collect()
    };
    for (slot, n) in order {
        let Some(n) = n else {
            let label = slot.to_string();
            if links {
                let _ = writeln!(out, "    {label:<24} CONNWAIT");
                for l in &s.links {
                    let _ = writeln!(out, "    {:<24} {:<9} {:<8} DOWN", "", "", l.name);
                }
            } else {
                let _ = writeln!(out, "    {label:<24} {:<9} 0", "CONNWAIT");
            }
            continue;
        };
        let local = n.id == s.local;
        let mark = if local { '*' } else { ' ' };
        let label = format!("{:>2} {}", n.id, n.name);
        let p = peer(s, n.id);
        let state = if local {
            "OPEN"
        } else {
            p.map_or("CONNWAIT", peer_state)
        };
        if !links {
            let up = if local {
                s.links.len()
            } else {
                p.map_or(0, |p| p.links.iter().filter(|l| l.state.is_alive()).count())
            };
            let jeop = if p.is_some_and(|p| p.jeopardy) {
                "  (jeopardy)"
            } else {
                ""
            };
            let _ = writeln!(out, "  {mark} {label:<24} {state:<9} {up}{jeop}");
            continue;
        }
        let jeop = if p.is_some_and(|p| p.jeopardy) {
            " jeopardy"
        } else {
            ""
        };
        let _ = writeln!(out, "  {mark} {label:<24} {state}{jeop}");
        if local {
            for l in &s.links {
                let _ = writeln!(
                    out,
                    "    {:<24} {:<9} {:<8} {:<8} {:<24} -",
                    "", "", l.name, "UP", l.local_address
                );
            }
        } else if let Some(p) = p {
            // Links that never carry this peer (the witness's link to another
            // node, the interconnect to the witness) are not shown.
            for l in p.links.iter().filter(|l| l.carried) {
                let address = l
                    .addr
                    .map(|a| a.to_string())
                    .or_else(|| n.addresses.get(l.link.index()).cloned())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {:<24} {:<9} {:<8} {:<8} {:<24} {}",
                    "",
                    "",
                    l.name,
                    state_name(l.state),
                    address,
                    fmt_rtt(l.srtt_us)
                );
            }
        }
    }
    out
}

fn drops_json(d: &vigil_llt::DropCounts) -> Value {
    let mut m = serde_json::Map::new();
    for r in DropReason::ALL {
        m.insert(r.name().into(), json!(d.get(r)));
    }
    Value::Object(m)
}

pub fn stats_json(s: &DaemonStatus) -> Value {
    let links: Vec<Value> = s
        .node
        .llt
        .links
        .iter()
        .zip(&s.links)
        .map(|(l, info)| {
            json!({"name": l.name, "kind": info.kind, "priority": info.priority,
                   "address": info.local_address,
                   "frames_in": l.stats.frames_in, "bytes_in": l.stats.bytes_in,
                   "frames_accepted": l.stats.frames_accepted,
                   "frames_out": l.stats.frames_out, "bytes_out": l.stats.bytes_out,
                   "heartbeats_out": l.stats.heartbeats_out, "data_out": l.stats.data_out,
                   "dropped": l.stats.drops.total(), "drops": drops_json(&l.stats.drops),
                   "driver": info.driver})
        })
        .collect();
    let peers: Vec<Value> = s
        .node
        .llt
        .peers
        .iter()
        .map(|p| {
            let links: Vec<Value> = p
                .links
                .iter()
                .map(|l| json!({"name": l.name, "state": state_name(l.state), "stats": l.stats}))
                .collect();
            json!({"id": p.id, "up": p.up, "jeopardy": p.jeopardy, "links": links})
        })
        .collect();
    json!({"local": s.local, "node": s.node_name, "incarnation": s.node.llt.incarnation.0,
           "authenticated": s.authenticated, "keys": crate::keys::keys_json(s),
           "uptime_ms": s.uptime_ms, "links": links, "peers": peers,
           "heartbeat": s.node.llt.heartbeat, "realtime": s.realtime,
           "stalls": crate::fenceadm::stalls_json(s), "control": s.control,
           "log_lines_lost": s.log_lines_lost, "store": s.store})
}

pub fn stats_text(s: &DaemonStatus) -> String {
    let mut out = String::from("LLT statistics:\n");
    let _ = writeln!(out, "  {}", keys_line(s));
    for (l, info) in s.node.llt.links.iter().zip(&s.links) {
        let st = &l.stats;
        let _ = writeln!(
            out,
            "  Link {} ({}, {} priority, {}):",
            l.name, info.kind, info.priority, info.local_address
        );
        for (v, what) in [
            (st.frames_out, "frames sent"),
            (
                st.heartbeats_out,
                "heartbeats sent (Veritas: Snd connect packets)",
            ),
            (st.data_out, "data frames sent (Veritas: Snd data packets)"),
            (st.bytes_out, "bytes sent"),
            (st.frames_in, "frames received"),
            (
                st.frames_accepted,
                "frames accepted (Veritas: Rcv data packets)",
            ),
            (st.bytes_in, "bytes received"),
            (st.drops.total(), "frames dropped"),
        ] {
            let _ = writeln!(out, "    {v:>12}  {what}");
        }
        for r in DropReason::ALL {
            let v = st.drops.get(r);
            if v > 0 {
                let _ = writeln!(out, "    {v:>12}    dropped: {}", r.name());
            }
        }
        let d = &info.driver;
        if d.rx_queue_full + d.tx_errors + d.tx_would_block > 0 {
            let _ = writeln!(
                out,
                "    {:>12}  driver: receive queue full, {} send errors, {} sends would block",
                d.rx_queue_full, d.tx_errors, d.tx_would_block
            );
        }
    }
    let g = &s.node.llt.heartbeat;
    let ms = |us: u64| us as f64 / 1e3;
    let _ = writeln!(
        out,
        "  Heartbeat pacing (every {:.1} ms): gap p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over the last {} rounds ({} since start, max ever {:.3} ms)",
        ms(g.interval_us),
        ms(g.p50_us),
        ms(g.p99_us),
        ms(g.window_max_us),
        g.window,
        g.count,
        ms(g.max_us)
    );
    let c = &s.control;
    let _ = writeln!(
        out,
        "  Control socket: {} open (at most {}), {} accepted, {} served; refused: {} over the connection bound, {} over {} bytes, {} timed out, {} busy, {} bad",
        c.open, c.max_connections, c.accepted, c.served, c.refused, c.oversize, c.max_request_bytes, c.timed_out, c.busy, c.bad
    );
    let _ = writeln!(
        out,
        "  Logging: {} lines lost (the log reader fell behind); generations kept in {}",
        s.log_lines_lost,
        if s.store.is_empty() {
            "?"
        } else {
            s.store.as_str()
        }
    );
    let st = &s.node.health.stalls;
    let _ = writeln!(
        out,
        "  Stalls of this node: {} over {} ms, worst {:.3} ms{}",
        st.count,
        s.timers.stall_report_ms,
        st.worst.as_secs_f64() * 1e3,
        st.last
            .map(|(d, at)| format!(
                ", last {:.3} ms, {} ms ago",
                d.as_secs_f64() * 1e3,
                s.now_ns.saturating_sub(at.as_nanos()) / 1_000_000
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "  Scheduling: {}", s.realtime);
    out.push_str("  Peers:\n");
    for p in &s.node.llt.peers {
        let name = s
            .nodes
            .iter()
            .find(|n| n.id == p.id)
            .map_or("?", |n| n.name.as_str());
        let _ = writeln!(
            out,
            "    {:>2} {:<16} {}{}",
            p.id,
            name,
            peer_state(p),
            if p.jeopardy { " jeopardy" } else { "" }
        );
        for l in &p.links {
            let _ = writeln!(
                out,
                "         {:<8} {:<8} in {:>9}  out {:>9}  changes {:>4}  replays {:>4}  rtt {}",
                l.name,
                state_name(l.state),
                l.stats.frames_in,
                l.stats.frames_out,
                l.stats.state_changes,
                l.stats.replays,
                fmt_rtt(l.srtt_us)
            );
        }
    }
    out
}

pub fn config_json(s: &DaemonStatus) -> Value {
    json!({"local": s.local, "fencing": s.fencing, "self_fence": s.self_fence, "max_drift_ppm": s.max_drift_ppm, "node": s.node_name, "cluster": {"name": s.cluster_name, "id": s.cluster_id},
           "config_file": s.config_file, "authenticated": s.authenticated,
           "keys": crate::keys::keys_json(s),
           "incarnation": s.node.llt.incarnation.0, "pid": s.pid,
           "timers": s.timers, "stall_action": s.stall_action, "realtime": s.realtime,
           "watchdog": s.watchdog, "health": crate::fenceadm::health_json(s),
           "links": s.links.iter().map(|l| json!({"id": l.id, "name": l.name, "kind": l.kind, "priority": l.priority, "address": l.local_address})).collect::<Vec<_>>(),
           "nodes": s.nodes})
}

pub fn config_text(s: &DaemonStatus) -> String {
    let t = &s.timers;
    let mut out = String::from("LLT configuration information:\n");
    let _ = writeln!(out, "    node: {} ({})", s.local, s.node_name);
    let _ = writeln!(out, "    cluster: {} (id {})", s.cluster_name, s.cluster_id);
    let _ = writeln!(out, "    config file: {}", s.config_file.display());
    let _ = writeln!(
        out,
        "    incarnation: {}  pid: {}",
        s.node.llt.incarnation, s.pid
    );
    let _ = writeln!(
        out,
        "    authentication: {}",
        if s.authenticated {
            format!("keyed MAC on every frame; {}", keys_line(s))
        } else {
            keys_line(s)
        }
    );
    let _ = writeln!(
        out,
        "    nodes: {} configured (IDs {})",
        s.nodes.len(),
        s.nodes
            .iter()
            .map(|n| n.id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let _ = writeln!(out, "    max nodes: 64, max links: 8");
    let _ = writeln!(out, "    timers (ms, profile {}): heartbeat {} heartbeat_lowpri {} peer_trouble {} peer_inactive {} link_up_count {}",
        t.profile, t.heartbeat_ms, t.heartbeat_lowpri_ms, t.peer_trouble_ms, t.peer_inactive_ms, t.link_up_count);
    let _ = writeln!(
        out,
        "    fencing: {} (self-fence: {}), race_timeout {} ms, lease {} ms, max drift {} ppm",
        s.fencing, s.self_fence, t.race_timeout_ms, t.lease_ms, s.max_drift_ppm
    );
    let _ = writeln!(
        out,
        "    stalls: logged over {} ms; after one longer than the lease: {}",
        t.stall_report_ms, s.stall_action
    );
    let _ = writeln!(out, "    scheduling: {}", s.realtime);
    let _ = writeln!(out, "    watchdog: {}", s.watchdog);
    out.push_str("    health probes:\n");
    crate::fenceadm::probes_text(s, &mut out);
    out.push_str("    links:\n");
    for l in &s.links {
        let _ = writeln!(
            out,
            "      {} {:<8} {:<6} {:<5} {}",
            l.id, l.name, l.kind, l.priority, l.local_address
        );
    }
    out
}
