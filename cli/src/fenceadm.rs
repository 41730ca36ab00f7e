//! `vigil fenceadm -d`: the fencing mode, this node's state and authority, the
//! members (`*` marks the local node), each configured node's state, and the last
//! race. The layout follows Veritas `vxfenadm -d`. Exit code 0 when the daemon
//! answered, 1 when it cannot be reached.

use crate::control::{self, DaemonStatus};
use crate::daemon::state_word;
use crate::{exit, Target};
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write as _;
use vigil_fence::{NodeState, RaceRecord, RaceVerdict};
use vigil_llt::types::{Instant, NodeId};
use vigil_membership::{NodeSet, View};

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
           "members": members(s).iter().map(|n| n.0).collect::<Vec<_>>(),
           "lease_remaining_ms": lease_remaining_ms(s),
           "fenced": f.fenced,
           "nodes": nodes,
           "last_race": f.last_race.as_ref().map(|r| race_json(s, r))})
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
        let text = fence_text(&s);
        assert_eq!(
            text,
            "Fencing Cluster Information:\n============================\n\n \
             Fencing Mode: Majority\n \
             Self-fence Action: exit\n \
             Node State: member\n \
             Authority: yes (lease valid for 250 ms)\n \
             Generation: 7\n \
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
        assert_eq!(j["last_race"]["racer"], 2);
        assert_eq!(j["last_race"]["verdict"], "won");
        assert_eq!(j["last_race"]["started_ms"], 8500);
        assert_eq!(j["last_race"]["duration_ms"], 312);
        assert_eq!(j["nodes"][0]["state"], "not seen");
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
