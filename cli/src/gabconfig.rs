//! `vigil gabconfig`: `-a` shows the port memberships, `-x` seeds by hand.
//!
//! The `-a` layout follows Veritas `gabconfig -a`:
//!
//! ```text
//! GAB Port Memberships
//! ===============================================================
//! Port a gen   0000000c membership 0 234
//! Port a gen   0000000c jeopardy      3
//! Port a gen   0000000c visible    1
//! Port b gen   0000000c membership 0 234
//! ```
//!
//! Membership lists are positional: position `i` shows the digit `i % 10` when node
//! `i` is in the list and a space when not, with a `;` between each group of ten
//! (`0123456789;0123` is nodes 0 to 13). The view shown is the one clients see (after
//! the settle window), or the installed one while the first settle window runs.
//!
//! Exit codes of `-a`: 0 when this node is a member of the view, 1 when it is not
//! (unseeded, left, fenced) or the daemon cannot be reached.

use crate::control::{self, DaemonStatus, Request};
use crate::{exit, Target};
use clap::{ArgGroup, Args};
use serde_json::{json, Value};
use std::fmt::Write as _;
use vigil::node::Authority;
use vigil_fence::NodeState;
use vigil_llt::types::{NodeId, Port};
use vigil_membership::{NodeSet, View};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("action").required(true).args(["show", "seed"])))]
pub struct GabconfigArgs {
    /// Show the port memberships (exit 0 if this node is a member, 1 if not).
    #[arg(short = 'a')]
    pub show: bool,
    /// Seed by hand with whoever is reachable now, without waiting for the seed
    /// count. Dangerous: if other nodes run apart from these, the cluster splits.
    #[arg(short = 'x')]
    pub seed: bool,
    /// With -a: print one JSON document instead of the table.
    #[arg(long, conflicts_with = "seed")]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

pub fn run(args: GabconfigArgs) -> u8 {
    let socket = match control::resolve(&args.target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gabconfig: {e}");
            return exit::FAILURE;
        }
    };
    if args.seed {
        return seed(&socket);
    }
    let status = match control::status(&socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gabconfig: {e}");
            return exit::FAILURE;
        }
    };
    let out = if args.json {
        ports_json(&status).to_string()
    } else {
        ports_text(&status)
    };
    println!("{}", out.trim_end());
    if is_member(&status) {
        exit::OK
    } else {
        exit::FAILURE
    }
}

const SEED_WARNING: &str = "\
WARNING: gabconfig -x seeds the cluster by hand with the nodes this node can reach now,
WARNING: without waiting for the configured seed count. If any other node is running
WARNING: apart from them (a partition), this can make two clusters: split brain.
WARNING: Use it only when you know every missing node is down.";

fn seed(socket: &std::path::Path) -> u8 {
    eprintln!("{SEED_WARNING}");
    match control::command(socket, &Request::ManualSeed) {
        Ok(message) => {
            println!("gabconfig: {message}");
            exit::OK
        }
        Err(e) => {
            eprintln!("gabconfig: {e}");
            exit::FAILURE
        }
    }
}

/// The view `gabconfig -a` shows: the clients' view, else the installed one.
pub fn shown_view(s: &DaemonStatus) -> Option<&View> {
    let f = &s.node.fence;
    f.client_view.as_ref().or(f.installed.as_ref())
}

/// The authority the daemon reported, if it is still valid at the status's time:
/// the fencing token and the primary clients may act on.
pub fn authority(s: &DaemonStatus) -> Option<&Authority> {
    s.node
        .authority
        .as_ref()
        .filter(|a| a.valid_until.as_nanos() > s.now_ns)
}

/// The primary of the clients' view (else of the installed one), with the token
/// when this node holds authority: one line for the text layouts.
pub fn primary_line(s: &DaemonStatus, token: impl Fn(u64) -> String) -> Option<String> {
    let (primary, token) = match authority(s) {
        Some(a) => (a.primary, token(a.token.0)),
        None => (shown_view(s)?.primary, "none (no authority)".into()),
    };
    let me = if primary == s.local {
        " (this node)"
    } else {
        ""
    };
    Some(format!("primary {primary}{me}, fencing token {token}"))
}

/// Whether this node is a member of the view shown.
pub fn is_member(s: &DaemonStatus) -> bool {
    matches!(s.node.fence.state, NodeState::Member | NodeState::Racing)
        && shown_view(s).is_some_and(|v| v.node_set().contains(s.local))
}

/// Peers llt reports in jeopardy (up over exactly one link).
fn jeopardy(s: &DaemonStatus) -> NodeSet {
    s.node
        .llt
        .peers
        .iter()
        .filter(|p| p.up && p.jeopardy)
        .map(|p| p.id)
        .collect()
}

/// Peers llt reports up.
fn up(s: &DaemonStatus) -> NodeSet {
    s.node
        .llt
        .peers
        .iter()
        .filter(|p| p.up)
        .map(|p| p.id)
        .collect()
}

/// Veritas' positional layout: position `i` is `i % 10` if node `i` is in `set`, a
/// space if not, `;` between groups of ten; trailing spaces trimmed.
pub fn positional(set: NodeSet) -> String {
    let mut s = String::new();
    let Some(last) = set.iter().last() else {
        return s;
    };
    for i in 0..=last.0 {
        if i > 0 && i % 10 == 0 {
            s.push(';');
        }
        s.push(if set.contains(NodeId(i)) {
            char::from(b'0' + i % 10)
        } else {
            ' '
        });
    }
    s.trim_end().to_string()
}

/// One port of the shown view: its letter, generation, members, jeopardy, visible.
struct PortRow {
    port: Port,
    generation: u64,
    members: NodeSet,
    jeopardy: NodeSet,
    visible: NodeSet,
}

fn rows(s: &DaemonStatus) -> Vec<PortRow> {
    let Some(view) = shown_view(s) else {
        return Vec::new();
    };
    let (jeop, up) = (jeopardy(s), up(s));
    view.port_generations
        .iter()
        .map(|&(port, gen)| {
            let members = view.port_members(port);
            PortRow {
                port,
                generation: gen.0,
                members,
                jeopardy: jeop.intersection(members),
                // Port a: nodes llt sees that are not members. Other ports are shown
                // for members only.
                visible: if port == Port::MEMBERSHIP {
                    up.difference(members)
                } else {
                    NodeSet::EMPTY
                },
            }
        })
        .collect()
}

fn port_letter(p: Port) -> String {
    char::from(p.0).to_string()
}

pub fn ports_text(s: &DaemonStatus) -> String {
    let mut out = String::from(
        "GAB Port Memberships\n===============================================================\n",
    );
    if let Some(line) = primary_line(s, |t| format!("{t:08x}")) {
        let _ = writeln!(out, "Primary: {line}");
    }
    for r in rows(s) {
        let (p, g) = (port_letter(r.port), r.generation);
        let _ = writeln!(
            out,
            "Port {p} gen   {g:08x} membership {}",
            positional(r.members)
        );
        if r.port == Port::MEMBERSHIP {
            if !r.jeopardy.is_empty() {
                let _ = writeln!(
                    out,
                    "Port {p} gen   {g:08x} jeopardy   {}",
                    positional(r.jeopardy)
                );
            }
            if !r.visible.is_empty() {
                let _ = writeln!(
                    out,
                    "Port {p} gen   {g:08x} visible    {}",
                    positional(r.visible)
                );
            }
        }
    }
    out
}

fn list(set: NodeSet) -> Vec<u8> {
    set.iter().map(|n| n.0).collect()
}

/// The documented `gabconfig -a --json` document.
pub fn ports_json(s: &DaemonStatus) -> Value {
    let f = &s.node.fence;
    let ports: Vec<Value> = rows(s)
        .iter()
        .map(|r| {
            json!({"port": port_letter(r.port), "generation": r.generation,
                   "members": list(r.members), "jeopardy": list(r.jeopardy),
                   "visible": list(r.visible)})
        })
        .collect();
    json!({"local": s.local, "seeded": f.installed.is_some() || f.client_view.is_some(),
           "member": is_member(s), "state": vigil_runtime::state_word(f.state),
           "generation": shown_view(s).map(|v| v.generation.0),
           "installed_generation": f.installed.as_ref().map(|v| v.generation.0),
           "client_generation": f.client_view.as_ref().map(|v| v.generation.0),
           "token": authority(s).map(|a| a.token.0),
           "primary": authority(s).map(|a| a.primary).or(shown_view(s).map(|v| v.primary)),
           "is_primary": authority(s).is_some_and(|a| a.is_primary),
           "ports": ports})
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::{NodeInfo, TimersInfo};
    use vigil_fence::FenceStatus;
    use vigil_llt::types::{Generation, Incarnation, Instant};
    use vigil_llt::PeerStatus;
    use vigil_membership::Member;

    pub(crate) fn set(ids: &[u8]) -> NodeSet {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    /// A status of node `local` in a cluster of nodes 0..n: `view` (members, and
    /// port `c` registered on `c_members`) at `gen`, llt peers `(id, up, jeopardy)`.
    pub(crate) fn status(
        local: u8,
        n: u8,
        state: NodeState,
        view: Option<(u64, &[u8], &[u8])>,
        peers: &[(u8, bool, bool)],
    ) -> DaemonStatus {
        let view = view.map(|(gen, members, c_members)| {
            let c = vigil_membership::port_bit(Port(b'c')).unwrap_or(0);
            View::new(
                Generation(gen),
                members
                    .iter()
                    .map(|&id| Member {
                        id: NodeId(id),
                        incarnation: Incarnation(1),
                        ports: if c_members.contains(&id) { c } else { 0 },
                    })
                    .collect(),
                None,
            )
        });
        DaemonStatus {
            cluster_name: "t".into(),
            cluster_id: 1,
            local: NodeId(local),
            node_name: format!("n{local}"),
            pid: 1,
            config_file: "/etc/vigil/cluster.toml".into(),
            authenticated: false,
            uptime_ms: 10_000,
            now_ns: 10_000_000_000,
            timers: TimersInfo {
                heartbeat_ms: 100,
                heartbeat_lowpri_ms: 250,
                peer_trouble_ms: 400,
                peer_inactive_ms: 800,
                link_up_count: 3,
                race_timeout_ms: 300,
                lease_ms: 700,
                stall_report_ms: 50,
                profile: "default".into(),
            },
            fencing: "majority".into(),
            self_fence: "exit".into(),
            max_drift_ppm: 1000,
            stall_action: "fence".into(),
            realtime: "off".into(),
            watchdog: "none".into(),
            faults: Vec::new(),
            links: Vec::new(),
            nodes: (0..n)
                .map(|i| NodeInfo {
                    id: NodeId(i),
                    name: format!("n{i}"),
                    addresses: Vec::new(),
                })
                .collect(),
            node: vigil::node::Status {
                llt: vigil_llt::Status {
                    me: NodeId(local),
                    incarnation: Incarnation(1),
                    phase: "running".into(),
                    generation: Generation(view.as_ref().map_or(0, |v| v.generation.0)),
                    links: Vec::new(),
                    peers: peers
                        .iter()
                        .map(|&(id, up, jeopardy)| PeerStatus {
                            id: NodeId(id),
                            incarnation: Some(Incarnation(1)),
                            up,
                            jeopardy,
                            generation: Generation(0),
                            links: Vec::new(),
                        })
                        .collect(),
                    heartbeat: Default::default(),
                    keys: Default::default(),
                    output_overflows: 0,
                },
                health: Default::default(),
                authority: view
                    .as_ref()
                    .filter(|_| state == NodeState::Member)
                    .map(|v| Authority {
                        token: v.generation,
                        view: v.clone(),
                        installed: v.generation,
                        primary: v.primary,
                        is_primary: v.primary == NodeId(local),
                        valid_until: Instant::from_nanos(10_250_000_000),
                    }),
                fence: FenceStatus {
                    state,
                    authority: state == NodeState::Member,
                    self_fence: true,
                    installed: view.clone(),
                    client_view: view,
                    highest_generation: Generation(12),
                    durable: Generation(12).into(),
                    lease_until: Some(Instant::from_nanos(10_250_000_000)),
                    settle_until: None,
                    last_race: None,
                    fenced: None,
                    bad_messages: 0,
                    output_overflows: 0,
                },
                output_overflows: 0,
            },
            control: Default::default(),
            log_lines_lost: 0,
            store: String::new(),
        }
    }

    #[test]
    fn gabconfig_a_with_jeopardy_visible_and_a_client_port() {
        let s = status(
            2,
            12,
            NodeState::Member,
            Some((0x1c, &[0, 2, 3, 11], &[2, 11])),
            &[
                (0, true, false),
                (1, true, false),
                (3, true, true),
                (11, true, false),
                (5, false, false),
            ],
        );
        assert_eq!(
            ports_text(&s),
            "GAB Port Memberships\n\
             ===============================================================\n\
             Primary: primary 0, fencing token 0000001c\n\
             Port a gen   0000001c membership 0 23      ; 1\n\
             Port a gen   0000001c jeopardy      3\n\
             Port a gen   0000001c visible     1\n\
             Port b gen   0000001c membership 0 23      ; 1\n\
             Port c gen   0000001c membership   2       ; 1\n"
        );
        assert!(is_member(&s));
        let j = ports_json(&s);
        assert_eq!(j["local"], 2);
        assert_eq!(j["seeded"], true);
        assert_eq!(j["ports"][0]["port"], "a");
        assert_eq!(j["ports"][0]["generation"], 0x1c);
        assert_eq!(j["ports"][0]["members"], json!([0, 2, 3, 11]));
        assert_eq!(j["ports"][0]["jeopardy"], json!([3]));
        assert_eq!(j["ports"][0]["visible"], json!([1]));
        assert_eq!(j["ports"][2]["port"], "c");
        assert_eq!(j["ports"][2]["members"], json!([2, 11]));
        assert_eq!(j["ports"][2]["visible"], json!([]));
        assert_eq!(j["token"], 0x1c);
        assert_eq!(j["primary"], 0);
        assert_eq!(j["is_primary"], false);
        assert_eq!(j["client_generation"], 0x1c);
        assert_eq!(j["installed_generation"], 0x1c);
    }

    #[test]
    fn gabconfig_a_shows_the_primary_and_the_token_only_while_authority_holds() {
        let mut s = status(0, 3, NodeState::Member, Some((7, &[0, 1, 2], &[])), &[]);
        assert!(ports_text(&s).contains("Primary: primary 0 (this node), fencing token 00000007\n"));
        assert_eq!(ports_json(&s)["is_primary"], true);
        // The lease lapsed by the status's time: no token, the view's primary still shown.
        s.now_ns = 10_300_000_000;
        assert!(ports_text(&s)
            .contains("Primary: primary 0 (this node), fencing token none (no authority)\n"));
        let j = ports_json(&s);
        assert_eq!(j["token"], Value::Null);
        assert_eq!(j["primary"], 0);
        assert_eq!(j["is_primary"], false);
    }

    #[test]
    fn gabconfig_a_unseeded_is_the_header_and_not_a_member() {
        let s = status(1, 3, NodeState::Unseeded, None, &[(0, true, false)]);
        assert_eq!(
            ports_text(&s),
            "GAB Port Memberships\n===============================================================\n"
        );
        assert!(!is_member(&s));
        let j = ports_json(&s);
        assert_eq!(j["seeded"], false);
        assert_eq!(j["ports"], json!([]));
        // A node that left still shows the last view but is not a member.
        let s = status(1, 3, NodeState::Left, Some((4, &[0, 1], &[])), &[]);
        assert!(!is_member(&s));
    }

    #[test]
    fn the_positional_layout() {
        assert_eq!(positional(NodeSet::EMPTY), "");
        assert_eq!(positional(set(&[0, 1])), "01");
        assert_eq!(positional(set(&[2, 3, 4])), "  234");
        assert_eq!(positional(set(&[1])), " 1");
        assert_eq!(
            positional(set(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])),
            "0123456789;01"
        );
        assert_eq!(positional(set(&[10])), "          ;0");
        assert_eq!(positional(set(&[0, 21])), "0         ;          ; 1");
        assert_eq!(
            positional(set(&[63])).len(),
            64 + 6,
            "64 positions and 6 separators"
        );
        assert!(positional(set(&[63])).ends_with(";   3"));
    }
}
