//! `vigil watch`: follow this node's authority: the current state at once, then
//! one line per change of authority, view or primary, until killed or the daemon
//! goes away (exit 1). Text for people; `--json`: the daemon's subscription lines
//! as they come (`docs/control.md`), for scripts and sidecars.

use crate::{control, exit, Target};
use clap::Args;
use std::io::Write;
use vigil_runtime::client::{self, AuthorityLine};

/// `vigil watch [--json]`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// One JSON object per line (the protocol's authority lines) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// Run `vigil watch`.
pub fn run(args: WatchArgs) -> u8 {
    let socket = match control::resolve(&args.target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil watch: {e}");
            return exit::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for item in client::subscribe(&socket) {
        let line = match item {
            Ok(l) => l,
            Err(e) => {
                eprintln!("vigil watch: {e}");
                return exit::FAILURE;
            }
        };
        let text = if args.json {
            serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        } else {
            text(&line)
        };
        // Flushed per line: scripts read it through a pipe.
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            // The reader went away (`vigil watch | head -1`): done.
            return exit::OK;
        }
    }
    eprintln!("vigil watch: the subscription ended");
    exit::FAILURE
}

/// One line for people: `12:00:01.250 node1: token 7, primary node 1 (this node), members [0,1,2], valid 1990 ms [authority.changed]`.
fn text(l: &AuthorityLine) -> String {
    let secs = l.ts_us / 1_000_000;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        (l.ts_us / 1000) % 1000
    );
    let what = match (l.token, l.primary) {
        (Some(token), Some(primary)) if l.holds => {
            let members: Vec<String> = l.members.iter().map(|m| m.0.to_string()).collect();
            format!(
                "token {token}, primary node {primary}{}, members [{}], valid {} ms",
                if l.is_primary { " (this node)" } else { "" },
                members.join(","),
                l.valid_for_ms
            )
        }
        _ => format!(
            "no authority: clients may not act{}",
            l.installed_generation
                .map(|g| format!(" (installed view {g})"))
                .unwrap_or_default()
        ),
    };
    format!("{clock} {}: {what} [{}]", l.node_name, l.event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_llt::types::NodeId;

    #[test]
    fn a_line_reads_for_people() {
        let mut l = AuthorityLine {
            protocol: 1,
            event: "authority.changed".into(),
            node: NodeId(1),
            node_name: "n1".into(),
            holds: true,
            token: Some(7),
            client_generation: Some(7),
            installed_generation: Some(7),
            primary: Some(NodeId(1)),
            is_primary: true,
            members: vec![NodeId(0), NodeId(1)],
            valid_for_ms: 1990,
            ts_us: 3_723_250_000,
        };
        assert_eq!(
            text(&l),
            "01:02:03.250 n1: token 7, primary node 1 (this node), members [0,1], valid 1990 ms [authority.changed]"
        );
        l.holds = false;
        l.token = None;
        l.primary = None;
        assert_eq!(
            text(&l),
            "01:02:03.250 n1: no authority: clients may not act (installed view 7) [authority.changed]"
        );
    }
}
