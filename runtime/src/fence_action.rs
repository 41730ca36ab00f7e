//! Self-fence actions: what `cluster.self_fence` says to do once the node has
//! fenced itself and stopped sending.

use crate::driver::{reason_parts, reason_text};
use crate::logging::{say, wall_us};
use std::path::Path;
use std::time::Duration;
use tracing::error;
use vigil::config::{ClusterConfig, NodeConfig, SelfFence};
use vigil_fence::FenceReason;

/// The code `vigil daemon` exits with after a self-fence (named in the log lines).
const FENCED_EXIT: u8 = 4;
/// How long a `self_fence = "hook"` program may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Carry out `cluster.self_fence` after the node fenced itself.
pub(crate) fn carry_out(cfg: &ClusterConfig, me: &NodeConfig, reason: &FenceReason) {
    let (name, generation) = reason_parts(reason);
    match &cfg.cluster.self_fence {
        SelfFence::Exit => {
            error!(
                event = "daemon.fenced",
                ts_us = wall_us(),
                node = me.id.0,
                reason = name,
                code = FENCED_EXIT,
                "fenced: exiting with code {}",
                FENCED_EXIT
            );
        }
        SelfFence::Hook(program) => {
            run_hook(program, cfg, me, name, generation);
        }
        SelfFence::Reboot | SelfFence::Halt => {
            let halt = cfg.cluster.self_fence == SelfFence::Halt;
            let what = if halt { "halt" } else { "reboot" };
            error!(
                event = "daemon.fenced",
                ts_us = wall_us(),
                node = me.id.0,
                reason = name,
                "fenced: {what} now"
            );
            let cmd = if halt {
                libc::RB_HALT_SYSTEM
            } else {
                libc::RB_AUTOBOOT
            };
            // SAFETY: sync and reboot take no pointers; reboot returns only on failure.
            let rc = unsafe {
                libc::sync();
                libc::reboot(cmd)
            };
            let e = std::io::Error::last_os_error();
            error!(
                event = "daemon.fence_action_failed",
                ts_us = wall_us(),
                node = me.id.0,
                rc,
                error = %e,
                "the kernel refused to {what}: {e}; exiting with code {} instead",
                FENCED_EXIT
            );
        }
    }
    say(&format!(
        "vigil daemon: node {} ({}) fenced itself: {}",
        me.id,
        me.name,
        reason_text(reason)
    ));
}

/// Run the fence hook with the reason in its environment; kill it after
/// [`HOOK_TIMEOUT`].
fn run_hook(program: &Path, cfg: &ClusterConfig, me: &NodeConfig, reason: &str, generation: u64) {
    let started = std::time::Instant::now();
    let child = std::process::Command::new(program)
        .env("VIGIL_FENCE_REASON", reason)
        .env("VIGIL_FENCE_GENERATION", generation.to_string())
        .env("VIGIL_NODE", &me.name)
        .env("VIGIL_NODE_ID", me.id.0.to_string())
        .env("VIGIL_CLUSTER", &cfg.cluster.name)
        .stdin(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            error!(
                event = "daemon.fence_hook_failed",
                ts_us = wall_us(),
                hook = %program.display(),
                error = %e,
                "cannot run the fence hook {}: {e}; exiting with code {}",
                program.display(),
                FENCED_EXIT
            );
            return;
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                error!(
                    event = "daemon.fence_hook_done",
                    ts_us = wall_us(),
                    hook = %program.display(),
                    status = %status,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "fence hook finished ({status}); exiting with code {}",
                    FENCED_EXIT
                );
                return;
            }
            Ok(None) if started.elapsed() < HOOK_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                error!(
                    event = "daemon.fence_hook_failed",
                    ts_us = wall_us(),
                    hook = %program.display(),
                    "fence hook still running after {} s: killed; exiting with code {}",
                    HOOK_TIMEOUT.as_secs(),
                    FENCED_EXIT
                );
                return;
            }
            Err(e) => {
                error!(
                    event = "daemon.fence_hook_failed",
                    ts_us = wall_us(),
                    hook = %program.display(),
                    error = %e,
                    "cannot wait for the fence hook: {e}; exiting with code {}",
                    FENCED_EXIT
                );
                return;
            }
        }
    }
}
