//! `[[hooks]]`: commands run when what clients may act on changes.
//!
//! The node's thread only records the latest change for each hook (a short lock,
//! never a wait for a run); each hook has a thread of its own that runs the
//! command, without a shell, at normal priority, kills it after its timeout, and
//! logs how it ended. Never two runs of one hook at once: changes that arrive
//! during a run are coalesced into one more run with the latest state.

use crate::Authority;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use vigil::config::{HookConfig, HookOn};
use vigil_llt::types::NodeId;

use crate::events::PRIMARY_CHANGED;

/// How often a running hook is checked for having ended.
const POLL: Duration = Duration::from_millis(10);

/// The environment of one run: `VIGIL_*` names and values.
type Env = Vec<(&'static str, String)>;

/// One hook's mailbox: the latest change not yet run, and whether to stop.
#[derive(Default)]
struct Mailbox {
    pending: Option<Env>,
    stop: bool,
}

struct Slot {
    cfg: HookConfig,
    mailbox: Mutex<Mailbox>,
    wake: Condvar,
}

/// The hooks of one node, fed by its publish point.
pub(crate) struct Hooks {
    node: NodeId,
    node_name: String,
    slots: Vec<Arc<Slot>>,
    /// The primary and whether this node is it, as of the last change.
    last_primary: Option<(NodeId, bool)>,
}

impl Hooks {
    /// Start one thread per configured hook.
    pub(crate) fn start(hooks: &[HookConfig], node: NodeId, node_name: &str) -> Hooks {
        let mut slots = Vec::with_capacity(hooks.len());
        for cfg in hooks {
            let slot = Arc::new(Slot {
                cfg: cfg.clone(),
                mailbox: Mutex::new(Mailbox::default()),
                wake: Condvar::new(),
            });
            let s = slot.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vigil-hook-{}", cfg.name))
                .spawn(move || runner(&s));
            match spawned {
                Ok(_) => slots.push(slot),
                Err(e) => warn!(
                    event = "hook.failed",
                    hook = %cfg.name,
                    "cannot start the thread of hook {}: {e}; it will not run",
                    cfg.name
                ),
            }
        }
        Hooks {
            node,
            node_name: node_name.to_string(),
            slots,
            last_primary: None,
        }
    }

    /// The published authority changed (materially): hand it to every hook that
    /// runs on it. Never waits for a run.
    pub(crate) fn changed(&mut self, a: Option<&Authority>) {
        if self.slots.is_empty() {
            return;
        }
        let primary = a.map(|a| (a.primary, a.is_primary));
        let primary_changed = primary != self.last_primary;
        self.last_primary = primary;
        let event = if primary_changed {
            PRIMARY_CHANGED
        } else {
            crate::events::AUTHORITY_CHANGED
        };
        let env = environment(event, self.node, &self.node_name, a);
        for slot in &self.slots {
            let wanted = slot.cfg.on.iter().any(|on| match on {
                HookOn::Authority => true,
                HookOn::Primary => primary_changed,
            });
            if !wanted {
                continue;
            }
            if let Ok(mut m) = slot.mailbox.lock() {
                m.pending = Some(env.clone());
                slot.wake.notify_one();
            }
        }
    }
}

impl Drop for Hooks {
    /// The threads end after their current run (which keeps its timeout).
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Ok(mut m) = slot.mailbox.lock() {
                m.stop = true;
                slot.wake.notify_one();
            }
        }
    }
}

/// The `VIGIL_*` environment of a run.
fn environment(event: &str, node: NodeId, name: &str, a: Option<&Authority>) -> Env {
    let members = a.map_or_else(String::new, |a| {
        let ids: Vec<String> = a.view.node_set().iter().map(|n| n.0.to_string()).collect();
        ids.join(",")
    });
    vec![
        ("VIGIL_EVENT", event.to_string()),
        ("VIGIL_NODE", name.to_string()),
        ("VIGIL_NODE_ID", node.0.to_string()),
        ("VIGIL_HOLDS", u8::from(a.is_some()).to_string()),
        (
            "VIGIL_TOKEN",
            a.map_or_else(String::new, |a| a.token.0.to_string()),
        ),
        (
            "VIGIL_PRIMARY",
            a.map_or_else(String::new, |a| a.primary.0.to_string()),
        ),
        (
            "VIGIL_IS_PRIMARY",
            u8::from(a.is_some_and(|a| a.is_primary)).to_string(),
        ),
        ("VIGIL_MEMBERS", members),
    ]
}

/// A hook's thread: wait for a change, run it, again.
fn runner(slot: &Slot) {
    loop {
        let env = {
            let Ok(mut m) = slot.mailbox.lock() else {
                return;
            };
            loop {
                if m.stop {
                    return;
                }
                if let Some(env) = m.pending.take() {
                    break env;
                }
                m = match slot.wake.wait(m) {
                    Ok(m) => m,
                    Err(_) => return,
                };
            }
        };
        run(&slot.cfg, &env);
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exited with this code (`None`: killed by a signal).
    Exited(Option<i32>),
    /// Killed after the hook's timeout.
    TimedOut,
    /// Could not be started.
    NotStarted(String),
}

/// Run the hook once with `env`, bounded by its timeout; log and say how it ended.
pub(crate) fn run(cfg: &HookConfig, env: &Env) -> Outcome {
    let started = Instant::now();
    let outcome = run_bounded(cfg, env);
    let took_ms = started.elapsed().as_millis() as u64;
    let event = env
        .iter()
        .find(|(k, _)| *k == "VIGIL_EVENT")
        .map_or("", |(_, v)| v.as_str());
    match &outcome {
        Outcome::Exited(Some(0)) => info!(
            event = "hook.ran",
            hook = %cfg.name,
            on = event,
            took_ms,
            "hook {} ran for {event} ({took_ms} ms)",
            cfg.name
        ),
        Outcome::Exited(code) => warn!(
            event = "hook.failed",
            hook = %cfg.name,
            on = event,
            took_ms,
            "hook {} for {event} exited with {}",
            cfg.name,
            code.map_or_else(|| "a signal".to_string(), |c| format!("code {c}"))
        ),
        Outcome::TimedOut => warn!(
            event = "hook.timeout",
            hook = %cfg.name,
            on = event,
            took_ms,
            "hook {} for {event} took longer than {} ms: killed",
            cfg.name,
            cfg.timeout.as_millis()
        ),
        Outcome::NotStarted(why) => warn!(
            event = "hook.failed",
            hook = %cfg.name,
            on = event,
            "hook {} for {event} could not start: {why}",
            cfg.name
        ),
    }
    outcome
}

fn run_bounded(cfg: &HookConfig, env: &Env) -> Outcome {
    let Some((program, args)) = cfg.argv.split_first() else {
        return Outcome::NotStarted("no command".into());
    };
    let mut child = match Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(format!("{program}: {e}")),
    };
    let deadline = Instant::now() + cfg.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Outcome::Exited(status.code()),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::NotStarted(format!("{program}: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(argv: &[&str], on: &[HookOn], timeout_ms: u64) -> HookConfig {
        HookConfig {
            name: "t".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            on: on.to_vec(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn a_run_sees_its_environment_and_a_slow_one_is_killed() {
        let env = environment("authority.changed", NodeId(2), "n2", None);
        let ok = hook(
            &[
                "/bin/sh",
                "-c",
                "test \"$VIGIL_NODE_ID\" = 2 && test \"$VIGIL_IS_PRIMARY\" = 0 && test -z \"$VIGIL_TOKEN\"",
            ],
            &[HookOn::Authority],
            5000,
        );
        assert_eq!(run(&ok, &env), Outcome::Exited(Some(0)));
        let slow = hook(&["/bin/sleep", "5"], &[HookOn::Authority], 100);
        let t = Instant::now();
        assert_eq!(run(&slow, &env), Outcome::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(3));
        let missing = hook(&["/nonexistent/hook"], &[HookOn::Authority], 100);
        assert!(matches!(run(&missing, &env), Outcome::NotStarted(_)));
    }

    #[test]
    fn changes_during_a_run_are_coalesced_to_the_latest() {
        let dir = std::env::temp_dir().join(format!("vigil-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("runs");
        let script = format!(
            "echo \"$VIGIL_EVENT $VIGIL_HOLDS\" >> {}; sleep 0.3",
            out.display()
        );
        let cfg = hook(&["/bin/sh", "-c", &script], &[HookOn::Primary], 5000);
        let mut hooks = Hooks::start(&[cfg], NodeId(1), "n1");
        // First change: the primary goes away: runs.
        hooks.last_primary = Some((NodeId(9), false));
        hooks.changed(None);
        // During that run, three changes: coalesced into one more run.
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..3 {
            hooks.last_primary = Some((NodeId(9), false));
            hooks.changed(None);
        }
        std::thread::sleep(Duration::from_millis(1200));
        drop(hooks);
        let runs = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(runs, "primary.changed 0\nprimary.changed 0\n", "{runs:?}");
    }
}
