//! `vigil daemon`: one node of the cluster, as a process. A thin wrapper over
//! [`vigil_runtime`]: read the configuration, set up logging, start the node (it
//! notifies systemd when `$NOTIFY_SOCKET` is set), handle signals, and turn how it
//! ended into an exit code.
//!
//! - SIGTERM or SIGINT: leave the cluster gracefully (the others install a view
//!   without this node at once, without a race) and exit 0; a node that is not a
//!   member stops at once. Bounded: 3 × `race_timeout` in the node, then
//!   [`LEAVE_MARGIN`] here, then the node is stopped without leaving. A second
//!   SIGTERM or SIGINT stops at once.
//! - SIGHUP: re-read the configuration; the keys (`key_file`,
//!   `accept_key_files`) take effect as with `vigil key reload`; everything else,
//!   the log level (`RUST_LOG`) included, needs a restart, and the `daemon.reload`
//!   line says which sections changed.

use crate::exit;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{error, info, warn};
use vigil::config::ClusterConfig;
use vigil_runtime::logging::{self, say, wall_us};
use vigil_runtime::{ControlSocket, Ending, NodeHandle, Options, StartError};

/// How long the log writer gets to write the last lines before the process exits.
const LOG_FLUSH: Duration = Duration::from_millis(500);
/// Beyond the node's own bound on a graceful leave (3 × `race_timeout`), how long
/// the daemon waits after SIGTERM before it stops the node without leaving.
const LEAVE_MARGIN: Duration = Duration::from_secs(2);

/// Log format on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One line per event for people.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The cluster configuration (TOML).
    #[arg(long, value_name = "FILE", default_value = "/etc/vigil/cluster.toml")]
    pub config: PathBuf,
    /// This node's name in the configuration.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
    /// Control socket path (default: from the configuration).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

pub fn run(args: DaemonArgs) -> u8 {
    logging::init(match args.log_format {
        LogFormatArg::Text => logging::LogFormat::Text,
        LogFormatArg::Json => logging::LogFormat::Json,
    });
    let code = run_logged(args);
    logging::flush(LOG_FLUSH);
    code
}

fn run_logged(args: DaemonArgs) -> u8 {
    let cfg = match ClusterConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            error!(event = "daemon.config_error", ts_us = wall_us(), "{e}");
            say(&format!("vigil daemon: {e}"));
            return exit::FAILURE;
        }
    };
    let options = Options {
        config_file: Some(args.config.clone()),
        control_socket: match args.socket {
            Some(p) => ControlSocket::At(p),
            None => ControlSocket::FromConfig,
        },
        notify: true,
        ..Options::default()
    };
    let running = cfg.clone();
    let node = match vigil_runtime::start(cfg, &args.node, options) {
        Ok(n) => n,
        Err(e) => {
            if let StartError::Io(_) = e {
                error!(event = "daemon.failed", ts_us = wall_us(), "{e}");
            }
            say(&format!("vigil daemon: {e}"));
            return exit::FAILURE;
        }
    };
    // Signals are the process's business, not the node's: SIGTERM and SIGINT leave
    // gracefully (bounded), SIGHUP re-reads the configuration.
    let signals = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say(&format!(
                "vigil daemon: cannot start the signal runtime: {e}"
            ));
            node.shutdown();
            return exit::FAILURE;
        }
    };
    let leave_bound = running.timers.race_timeout.saturating_mul(3) + LEAVE_MARGIN;
    let ending = signals.block_on(handle_signals(&node, &args.config, &running, leave_bound));
    // The node's thread has run the self-fence action by the time it ends.
    let _ = node.join();
    match ending {
        Ending::Stopped | Ending::Left => exit::OK,
        Ending::Refused(message) => {
            say(&format!("vigil daemon: {message}"));
            exit::DUPLICATE_NODE
        }
        Ending::Failed(message) => {
            error!(event = "daemon.failed", ts_us = wall_us(), "{message}");
            say(&format!("vigil daemon: {message}"));
            exit::FAILURE
        }
        Ending::Fenced(_) => exit::FENCED,
    }
}

/// Wait for the node to end, acting on signals meanwhile (see the module's doc).
async fn handle_signals(
    node: &NodeHandle,
    config: &Path,
    running: &ClusterConfig,
    leave_bound: Duration,
) -> Ending {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            say(&format!(
                "vigil daemon: cannot handle SIGTERM/SIGINT/SIGHUP: {e}"
            ));
            node.shutdown();
            return node.wait().await;
        }
    };
    // Set once a graceful leave has begun: when to stop without it.
    let mut leaving: Option<tokio::time::Instant> = None;
    loop {
        let give_up = async {
            match leaving {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let signal_name = tokio::select! {
            e = node.wait() => return e,
            _ = give_up => {
                warn!(
                    event = "daemon.leave_timeout",
                    ts_us = wall_us(),
                    bound_ms = leave_bound.as_millis() as u64,
                    "the graceful leave did not end within {} ms; stopping without it",
                    leave_bound.as_millis()
                );
                node.shutdown();
                leaving = None;
                continue;
            }
            _ = hup.recv() => {
                reload(node, config, running).await;
                continue;
            }
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if leaving.is_some() {
            info!(
                event = "daemon.signal",
                ts_us = wall_us(),
                signal = signal_name,
                "second {signal_name} during the graceful leave: stopping at once"
            );
            node.shutdown();
            continue;
        }
        leaving = Some(tokio::time::Instant::now() + leave_bound);
        let answer = tokio::time::timeout(leave_bound, node.leave()).await;
        match answer {
            Ok(Ok(message)) => info!(
                event = "daemon.signal",
                ts_us = wall_us(),
                signal = signal_name,
                "{signal_name}: {message} (a second {signal_name} stops at once)"
            ),
            Ok(Err(message)) => {
                warn!(
                    event = "daemon.signal",
                    ts_us = wall_us(),
                    signal = signal_name,
                    "{signal_name}: cannot leave gracefully ({message}); stopping at once"
                );
                node.shutdown();
            }
            Err(_) => {
                warn!(
                    event = "daemon.signal",
                    ts_us = wall_us(),
                    signal = signal_name,
                    "{signal_name}: the node did not answer the leave; stopping at once"
                );
                node.shutdown();
            }
        }
    }
}

/// SIGHUP: read the configuration again, apply the keys, and say what else
/// changed and needs a restart (`daemon.reload`).
async fn reload(node: &NodeHandle, config: &Path, running: &ClusterConfig) {
    let new = match ClusterConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            warn!(
                event = "daemon.reload",
                ts_us = wall_us(),
                ok = false,
                "SIGHUP: {e}; running on with the configuration as it was"
            );
            return;
        }
    };
    let changed = changed_sections(running, &new);
    let keys = match node.reload_keys(new).await {
        Ok(m) | Err(m) => m,
    };
    let restart = if changed.is_empty() {
        "nothing else changed".to_string()
    } else {
        format!("changed, waiting for a restart: {}", changed.join(", "))
    };
    info!(
        event = "daemon.reload",
        ts_us = wall_us(),
        ok = true,
        changed = %changed.join(","),
        "SIGHUP: re-read {}; keys: {keys}; {restart}. Only the keys apply without a restart; the log level (RUST_LOG) and the rest are read at start",
        config.display()
    );
}

/// The sections of the configuration that differ, the keys aside (those apply
/// without a restart).
fn changed_sections(old: &ClusterConfig, new: &ClusterConfig) -> Vec<&'static str> {
    let mut cluster = new.cluster.clone();
    cluster.key_file.clone_from(&old.cluster.key_file);
    cluster.key.clone_from(&old.cluster.key);
    cluster
        .accept_key_files
        .clone_from(&old.cluster.accept_key_files);
    cluster.accept_keys.clone_from(&old.cluster.accept_keys);
    [
        ("cluster", cluster != old.cluster),
        ("timers", new.timers != old.timers),
        ("links", new.links != old.links),
        ("nodes", new.nodes != old.nodes),
        ("daemon", new.daemon != old.daemon),
        ("watchdog", new.watchdog != old.watchdog),
        ("probes", new.probes != old.probes),
        ("hooks", new.hooks != old.hooks),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}
