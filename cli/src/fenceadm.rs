//! `vigil fenceadm -d`: the fencing mode, this node's state and authority, the
//! members (`*` marks the local node), each configured node's state, and the last
//! race. The layout follows Veritas `vxfenadm -d`. Exit code 0 when the daemon
//! answered, 1 when it cannot be reached.

use crate::control::{self, DaemonStatus};
use crate::{exit, gabconfig, Target};
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write as _;
use vigil_fence::{NodeState, RaceRecord, RaceVerdict, WITNESS_ID};
use vigil_llt::types::{Instant, NodeId};
use vigil_membership::{NodeSet, View};
use vigil_runtime::state_word;

#[derive(Args, Debug)]
pub struct FenceadmArgs {
    /// Display the fencing state of the cluster.
    #[arg(short = 'd', required = true)]
    pub display: bool,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

pub fn run(args: FenceadmArgs) -> u8 {
    let status = match control::resolve(&args.target).and_then(|s| control::status(&s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fenceadm: {e}");
            return exit::FAILURE;
        }
    };
    let out = if args.json {
        fence_json(&status).to_string()
    } else {
        fence_text(&status)
    };
    println!("{}", out.trim_end());
    exit::OK
}

/// The view the fence layer decided and installed here (else the clients' view).
fn view(s: &DaemonStatus) -> Option<&View> {
    let f = &s.node.fence;
    f.installed.as_ref().or(f.client_view.as_ref())
}

fn members(s: &DaemonStatus) -> NodeSet {
    view(s).map_or(NodeSet::EMPTY, View::node_set)
}

fn verdict_word(v: RaceVerdict) -> &'static str {
    match v {
        RaceVerdict::Running => "running",
        RaceVerdict::Won => "won",
        RaceVerdict::Lost => "lost",
    }
}

fn ms(nanos: u64) -> u64 {
    nanos / 1_000_000
}

/// The state of configured node `id` as this node sees it: `member`, `visible` (llt
/// sees it, not a member), `not seen`; for the local node its own state, with
/// `fenced-self` when it fenced itself.
fn node_state(s: &DaemonStatus, id: NodeId) -> String {
    if id == s.local {
        return match s.node.fence.state {
            NodeState::Fenced => "fenced-self".into(),
            st => state_word(st).into(),
        };
    }
    let peer = s.node.llt.peers.iter().find(|p| p.id == id);
    let up = peer.is_some_and(|p| p.up);
    if members(s).contains(id) {
        if !up {
            "member (not seen)".into()
        } else if peer.is_some_and(|p| p.jeopardy) {
            "member (jeopardy)".into()
        } else {
            "member".into()
        }
    } else if up {
        "visible".into()
    } else {
        "not seen".into()
    }
}

fn mode_word(s: &DaemonStatus) -> &'static str {
    if s.fencing == "disabled" {
        "Disabled"
    } else {
        "Majority"
    }
}

fn lease_remaining_ms(s: &DaemonStatus) -> Option<u64> {
    s.node
        .fence
        .lease_until
        .map(|u| ms(u.saturating_since(Instant::from_nanos(s.now_ns)).as_nanos() as u64))
}

fn race_json(s: &DaemonStatus, r: &RaceRecord) -> Value {
    json!({"racer": r.racer, "verdict": verdict_word(r.verdict),
           "started_ms": ms(r.started.as_nanos()),
           "duration_ms": r.duration.map(|d| d.as_millis() as u64),
           "ago_ms": ms(s.now_ns.saturating_sub(r.started.as_nanos())),
           "slot": r.slot.0, "proposal": r.proposal.iter().map(|n| n.0).collect::<Vec<_>>()})
}

/// The witness as this node sees it, when the cluster has one: its address, whether
/// llt hears it, whether it is a member of the view, and the generation of the last
/// view it installed (its frames advertise it: a witness installs a view only after
/// voting for it or learning it).
pub fn witness_json(s: &DaemonStatus) -> Value {
    let Some(w) = s.nodes.iter().find(|n| n.id == WITNESS_ID) else {
        return Value::Null;
    };
    if s.local == WITNESS_ID {
        return Value::Null;
    }
    let peer = s.node.llt.peers.iter().find(|p| p.id == WITNESS_ID);
    let address = w.addresses.iter().find(|a| a.as_str() != "-").cloned();
    json!({"id": WITNESS_ID.0, "address": address,
           "reachable": peer.is_some_and(|p| p.up),
           "in_view": members(s).contains(WITNESS_ID),
           "generation": peer.map(|p| p.generation.0)})
}

/// The documented `fenceadm -d --json` document.
pub fn fence_json(s: &DaemonStatus) -> Value {
    let f = &s.node.fence;
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .map(|n| json!({"id": n.id, "name": n.name, "state": node_state(s, n.id)}))
        .collect();
    json!({"local": s.local, "mode": s.fencing, "self_fence": s.self_fence,
           "state": state_word(f.state), "authority": f.authority,
           "generation": view(s).map_or(0, |v| v.generation.0),
           "highest_generation": f.highest_generation.0,
           "client_generation": f.client_view.as_ref().map(|v| v.generation.0),
           "installed_generation": f.installed.as_ref().map(|v| v.generation.0),
           "token": gabconfig::authority(s).map(|a| a.token.0),
           "primary": gabconfig::authority(s).map(|a| a.primary)
               .or(gabconfig::shown_view(s).map(|v| v.primary)),
           "is_primary": gabconfig::authority(s).is_some_and(|a| a.is_primary),
           "members": members(s).iter().map(|n| n.0).collect::<Vec<_>>(),
           "lease_remaining_ms": lease_remaining_ms(s),
           "fenced": f.fenced,
           "nodes": nodes,
           "last_race": f.last_race.as_ref().map(|r| race_json(s, r)),
           "witness": witness_json(s),
           "health": health_json(s)})
}

/// Probes and stalls, for `fenceadm -d --json` and `lltstat -c --json`.
pub fn health_json(s: &DaemonStatus) -> Value {
    let h = &s.node.health;
    let probes: Vec<Value> = h
        .probes
        .iter()
        .map(|p| {
            json!({"name": p.spec.name, "state": p.state, "runs": p.runs,
                   "failures": p.failures, "consecutive_failures": p.consecutive,
                   "threshold": p.spec.threshold,
                   "interval_ms": p.spec.interval.as_millis() as u64,
                   "timeout_ms": p.spec.timeout.as_millis() as u64,
                   "on_failure": p.spec.on_failure, "running": p.running,
                   "last_error": p.last_error,
                   "last_duration_us": p.last_duration.map(|d| d.as_micros() as u64)})
        })
        .collect();
    json!({"unhealthy": h.unhealthy, "probes": probes, "stalls": stalls_json(s)})
}

/// The node's own stalls.
pub fn stalls_json(s: &DaemonStatus) -> Value {
    let st = &s.node.health.stalls;
    json!({"count": st.count, "worst_us": st.worst.as_micros() as u64,
           "total_us": st.total.as_micros() as u64,
           "last_us": st.last.map(|(d, _)| d.as_micros() as u64),
           "last_ago_ms": st.last.map(|(_, at)| ms(s.now_ns.saturating_sub(at.as_nanos()))),
           "report_ms": s.timers.stall_report_ms, "action": s.stall_action})
}

/// One line per probe: `name state (failures in a row/threshold), last error`.
pub fn probes_text(s: &DaemonStatus, out: &mut String) {
    let h = &s.node.health;
    if h.probes.is_empty() {
        out.push_str("        none configured\n");
    }
    for p in &h.probes {
        let err = p
            .last_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "        {:<16} {:<8} {}/{} failures in a row, {} runs, every {} ms, timeout {} ms, on failure {}{err}",
            p.spec.name,
            p.state,
            p.consecutive,
            p.spec.threshold,
            p.runs,
            p.spec.interval.as_millis(),
            p.spec.timeout.as_millis(),
            format!("{:?}", p.spec.on_failure).to_lowercase(),
        );
    }
}

pub fn fence_text(s: &DaemonStatus) -> String {
    let f = &s.node.fence;
    let name = |id: NodeId| {
        s.nodes
            .iter()
            .find(|n| n.id == id)
            .map_or("?", |n| n.name.as_str())
    };
    let mut out = String::from("Fencing Cluster Information:\n============================\n\n");
    let _ = writeln!(out, " Fencing Mode: {}", mode_word(s));
    let _ = writeln!(out, " Self-fence Action: {}", s.self_fence);
    let _ = writeln!(out, " Node State: {}", node_state(s, s.local));
    let authority = match (f.authority, lease_remaining_ms(s)) {
        (true, Some(left)) => format!("yes (lease valid for {left} ms)"),
        (true, None) => "yes".into(),
        (false, _) => "no".into(),
    };
    let _ = writeln!(out, " Authority: {authority}");
    match view(s) {
        Some(v) => {
            let _ = writeln!(out, " Generation: {}", v.generation.0);
        }
        None => {
            let _ = writeln!(
                out,
                " Generation: none (highest seen {})",
                f.highest_generation.0
            );
        }
    }
    if let Some(line) = gabconfig::primary_line(s, |t| t.to_string()) {
        let _ = writeln!(out, " Primary: {}", &line["primary ".len()..]);
    }
    if let (Some(i), Some(c)) = (&f.installed, &f.client_view) {
        if i.generation != c.generation {
            let _ = writeln!(
                out,
                " Client Generation: {} (until the settle window ends)",
                c.generation.0
            );
        }
    }
    out.push_str(" Cluster Members:\n\n");
    let m = members(s);
    if m.is_empty() {
        out.push_str("        (none)\n");
    }
    for id in m.iter() {
        let mark = if id == s.local { '*' } else { ' ' };
        let _ = writeln!(out, "        {mark} {id} ({})", name(id));
    }
    out.push_str("\n Node States:\n");
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "        node {:>3} ({}): {}",
            n.id.0,
            n.name,
            node_state(s, n.id)
        );
    }
    let w = witness_json(s);
    if !w.is_null() {
        let reach = if w["reachable"] == true {
            "reachable"
        } else {
            "UNREACHABLE"
        };
        let in_view = if w["in_view"] == true {
            "a member of the view"
        } else {
            "not in the view"
        };
        let _ = writeln!(
            out,
            "\n Witness: node {} at {}: {reach}, {in_view}, its last view generation {}",
            WITNESS_ID.0,
            w["address"].as_str().unwrap_or("?"),
            w["generation"].as_u64().unwrap_or(0)
        );
    }
    out.push_str("\n Health Probes:\n");
    probes_text(s, &mut out);
    if let Some(p) = &s.node.health.unhealthy {
        let _ = writeln!(
            out,
            "        UNHEALTHY: probe {p} failed; this node left or fenced itself"
        );
    }
    let st = &s.node.health.stalls;
    let _ = writeln!(
        out,
        " Stalls: {} over {} ms, worst {:.1} ms (after a stall longer than the lease: {})",
        st.count,
        s.timers.stall_report_ms,
        st.worst.as_secs_f64() * 1e3,
        s.stall_action
    );
    out.push_str("\n Last Race:\n");
    match &f.last_race {
        None => out.push_str("        none\n"),
        Some(r) => {
            let ago = ms(s.now_ns.saturating_sub(r.started.as_nanos()));
            let took = match r.duration {
                Some(d) => format!("took {} ms", d.as_millis()),
                None => "still running".into(),
            };
            let replaces = if r.slot.0 == 0 {
                "seeding".to_string()
            } else {
                format!("after view {}", r.slot.0)
            };
            let proposal: Vec<String> = r.proposal.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(
                out,
                "        {replaces}: racer {} ({}), verdict {}, started {ago} ms ago, {took}; proposal [{}]",
                r.racer,
                name(r.racer),
                verdict_word(r.verdict),
                proposal.join(",")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gabconfig::tests::{set, status};
    use std::time::Duration;
    use vigil_fence::FenceReason;
    use vigil_llt::types::Generation;

    #[test]
    fn fenceadm_d_text_and_json() {
        let mut s = status(
            2,
            5,
            NodeState::Member,
            Some((7, &[2, 3, 4], &[])),
            &[
                (0, false, false),
                (1, true, false),
                (3, true, true),
                (4, true, false),
            ],
        );
        s.node.fence.last_race = Some(RaceRecord {
            slot: Generation(6),
            racer: NodeId(2),
            proposal: set(&[2, 3, 4]),
            started: Instant::from_nanos(8_500_000_000),
            duration: Some(Duration::from_millis(312)),
            verdict: RaceVerdict::Won,
        });
        s.node.health.probes.push(vigil::health::ProbeStatus {
            id: vigil::health::ProbeId(0),
            spec: vigil::health::ProbeSpec {
                name: "rootfs".into(),
                interval: Duration::from_millis(1000),
                timeout: Duration::from_millis(500),
                threshold: 3,
                on_failure: vigil::health::OnFailure::Leave,
            },
            state: "failing".into(),
            runs: 12,
            failures: 1,
            consecutive: 1,
            last_error: Some(
                "cannot write /var/lib/vigil/.vigil-probe-n2: Read-only file system (os error 30)"
                    .into(),
            ),
            last_duration: Some(Duration::from_micros(1200)),
            running: false,
        });
        s.node.health.stalls.count = 2;
        s.node.health.stalls.worst = Duration::from_micros(61_500);
        let text = fence_text(&s);
        assert_eq!(
            text,
            "Fencing Cluster Information:\n============================\n\n \
             Fencing Mode: Majority\n \
             Self-fence Action: exit\n \
             Node State: member\n \
             Authority: yes (lease valid for 250 ms)\n \
             Generation: 7\n \
             Primary: 2 (this node), fencing token 7\n \
             Cluster Members:\n\n\
             \x20       * 2 (n2)\n\
             \x20         3 (n3)\n\
             \x20         4 (n4)\n\n \
             Node States:\n\
             \x20       node   0 (n0): not seen\n\
             \x20       node   1 (n1): visible\n\
             \x20       node   2 (n2): member\n\
             \x20       node   3 (n3): member (jeopardy)\n\
             \x20       node   4 (n4): member\n\n \
             Health Probes:\n\
             \x20       rootfs           failing  1/3 failures in a row, 12 runs, every 1000 ms, timeout 500 ms, on failure leave, last error: cannot write /var/lib/vigil/.vigil-probe-n2: Read-only file system (os error 30)\n \
             Stalls: 2 over 50 ms, worst 61.5 ms (after a stall longer than the lease: fence)\n\n \
             Last Race:\n\
             \x20       after view 6: racer 2 (n2), verdict won, started 1500 ms ago, took 312 ms; proposal [2,3,4]\n"
        );
        let j = fence_json(&s);
        assert_eq!(j["local"], 2);
        assert_eq!(j["mode"], "majority");
        assert_eq!(j["state"], "member");
        assert_eq!(j["authority"], true);
        assert_eq!(j["generation"], 7);
        assert_eq!(j["members"], json!([2, 3, 4]));
        assert_eq!(j["token"], 7);
        assert_eq!(j["primary"], 2);
        assert_eq!(j["is_primary"], true);
        assert_eq!(j["installed_generation"], 7);
        assert_eq!(j["client_generation"], 7);
        assert_eq!(j["last_race"]["racer"], 2);
        assert_eq!(j["last_race"]["verdict"], "won");
        assert_eq!(j["last_race"]["started_ms"], 8500);
        assert_eq!(j["last_race"]["duration_ms"], 312);
        assert_eq!(j["nodes"][0]["state"], "not seen");
        assert_eq!(j["health"]["probes"][0]["name"], "rootfs");
        assert_eq!(j["health"]["probes"][0]["state"], "failing");
        assert_eq!(j["health"]["probes"][0]["consecutive_failures"], 1);
        assert_eq!(j["health"]["stalls"]["worst_us"], 61_500);
        assert_eq!(j["health"]["unhealthy"], Value::Null);
    }

    #[test]
    fn fenceadm_d_during_a_settle_window_shows_both_generations_and_the_token() {
        let mut s = status(3, 5, NodeState::Member, Some((7, &[2, 3, 4], &[])), &[]);
        let mut next = s.node.fence.installed.clone().expect("a view");
        next.generation = Generation(8);
        s.node.fence.installed = Some(next);
        let j = fence_json(&s);
        assert_eq!(j["token"], 7, "the token is the clients' view");
        assert_eq!(j["client_generation"], 7);
        assert_eq!(j["installed_generation"], 8);
        assert_eq!(j["primary"], 2);
        assert_eq!(j["is_primary"], false);
        let text = fence_text(&s);
        assert!(text.contains(" Generation: 8\n"), "{text}");
        assert!(
            text.contains(" Client Generation: 7 (until the settle window ends)\n"),
            "{text}"
        );
        assert!(text.contains(" Primary: 2, fencing token 7\n"), "{text}");
    }

    #[test]
    fn fenceadm_d_unseeded_and_fenced() {
        let mut s = status(0, 3, NodeState::Unseeded, None, &[(1, true, false)]);
        s.node.fence.authority = false;
        s.node.fence.lease_until = None;
        let j = fence_json(&s);
        assert_eq!(j["generation"], 0);
        assert_eq!(j["members"], json!([]));
        assert_eq!(j["last_race"], Value::Null);
        assert_eq!(j["state"], "unseeded");
        let text = fence_text(&s);
        assert!(text.contains(" Authority: no\n"), "{text}");
        assert!(
            text.contains(" Generation: none (highest seen 12)\n"),
            "{text}"
        );
        assert!(text.contains("        (none)\n"), "{text}");
        assert!(text.contains("\n Last Race:\n        none\n"), "{text}");

        s.node.fence.state = NodeState::Fenced;
        s.node.fence.fenced = Some(FenceReason::Excluded {
            generation: Generation(9),
        });
        s.fencing = "disabled".into();
        let text = fence_text(&s);
        assert!(text.contains(" Fencing Mode: Disabled\n"), "{text}");
        assert!(text.contains("node   0 (n0): fenced-self"), "{text}");
        assert_eq!(fence_json(&s)["state"], "fenced");
    }
}
