//! `vigil witness`: the witness daemon, a third vote for the clusters it serves, and
//! `vigil witness status`.
//!
//! For every cluster in its file the witness runs one node of [`vigil_runtime`] as
//! node ID 63 (`vigil_fence::WITNESS_ID`): llt over the cluster's witness link only,
//! with the witness key, and a fence core that only accepts proposals (one value
//! per generation, made durable before it answers), confirms leases and learns views.
//! Its state per cluster is `{state_dir}/witness-{cluster id}.generation` and its
//! control socket `{run_dir}/witness-{cluster id}.sock`. When a view drops the witness
//! (it was unreachable when the cluster changed), its core for that cluster starts
//! again as a new incarnation with its durable state, and asks to join; it never
//! reboots or halts its machine, whatever the cluster's `self_fence` says.
//!
//! SIGTERM or SIGINT stops every cluster's core and exits 0.

use crate::exit;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{error, info, warn};
use vigil::config::witness::{ServedCluster, WitnessFile, DEFAULT_WITNESS_CONFIG_PATH};
use vigil::config::{ClusterConfig, WITNESS_NODE_NAME};
use vigil_runtime::control::DaemonStatus;
use vigil_runtime::logging::{self, say, wall_us};
use vigil_runtime::{ControlSocket, Ending, Options, SelfFenceAction, StateFile};

/// How long the log writer gets to write the last lines before the process exits.
const LOG_FLUSH: Duration = Duration::from_millis(500);
/// How long a cluster's core waits before it starts again after an error.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: Option<WitnessCommand>,
    /// The witness's configuration (TOML).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_WITNESS_CONFIG_PATH)]
    config: PathBuf,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text")]
    log_format: crate::daemon::LogFormatArg,
}

#[derive(Subcommand, Debug)]
enum WitnessCommand {
    /// Show, per cluster served, the nodes it reaches, the last view it learned and
    /// its last vote.
    Status {
        /// The witness's configuration (TOML).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_WITNESS_CONFIG_PATH)]
        config: PathBuf,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: WitnessArgs) -> u8 {
    match args.command {
        Some(WitnessCommand::Status { config, json }) => status(&config, json),
        None => {
            logging::init(match args.log_format {
                crate::daemon::LogFormatArg::Text => logging::LogFormat::Text,
                crate::daemon::LogFormatArg::Json => logging::LogFormat::Json,
            });
            let code = serve(&args.config);
            logging::flush(LOG_FLUSH);
            code
        }
    }
}

/// The cluster's config as the witness runs it: the witness's directories, and
/// nothing of the nodes' own (probes, hooks, watchdog, metrics, real-time).
fn witness_view(file: &WitnessFile, served: &ServedCluster) -> ClusterConfig {
    let mut cfg = served.cluster.clone();
    cfg.cluster.state_dir.clone_from(&file.state_dir);
    cfg.cluster.run_dir.clone_from(&file.run_dir);
    cfg.probes.clear();
    cfg.hooks.clear();
    cfg.watchdog = None;
    cfg.metrics = None;
    cfg.daemon.realtime = vigil::config::Realtime::Off;
    cfg.daemon.mlockall = false;
    cfg
}

fn serve(config: &Path) -> u8 {
    let file = match WitnessFile::load(config) {
        Ok(f) => f,
        Err(e) => {
            error!(event = "witness.config_error", ts_us = wall_us(), "{e}");
            say(&format!("vigil witness: {e}"));
            return exit::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say(&format!("vigil witness: cannot start the runtime: {e}"));
            return exit::FAILURE;
        }
    };
    // The clusters' tasks hold node handles and stores that stay on this thread.
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(serve_all(file)))
}

async fn serve_all(file: WitnessFile) -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            say(&format!("vigil witness: cannot handle SIGTERM/SIGINT: {e}"));
            return exit::FAILURE;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(64);
    let mut tasks = tokio::task::JoinSet::new();
    for served in &file.clusters {
        let cfg = witness_view(&file, served);
        let socket = file.socket_path(cfg.cluster.id);
        let state_name = WitnessFile::state_name(cfg.cluster.id);
        let config_file = served.config_file.clone();
        tasks.spawn_local(serve_cluster(
            cfg,
            config_file,
            socket,
            state_name,
            stop_rx.clone(),
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    // Every cluster's first start must succeed: a witness that serves only some of
    // its clusters would look healthy while one of them has no third vote.
    for _ in 0..file.clusters.len() {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                say(&format!("vigil witness: {e}"));
                let _ = stop_tx.send(true);
                while tasks.join_next().await.is_some() {}
                return exit::FAILURE;
            }
            None => break,
        }
    }
    info!(
        event = "witness.started",
        ts_us = wall_us(),
        clusters = file.clusters.len(),
        config = %file.source.display(),
        "witness serving {} cluster(s): {}",
        file.clusters.len(),
        file.clusters
            .iter()
            .map(|c| format!("{} (ID {})", c.cluster.cluster.name, c.cluster.cluster.id.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(
        event = "witness.signal",
        ts_us = wall_us(),
        signal = signal_name,
        "{signal_name}: stopping"
    );
    let _ = stop_tx.send(true);
    let mut code = exit::OK;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(true)) {
            code = exit::FAILURE;
        }
    }
    code
}

/// Serve one cluster until told to stop: start the witness's node, and start it
/// again (a new incarnation, the state file kept) when a view drops it or it fails.
/// `true` when it stopped as asked.
async fn serve_cluster(
    cfg: ClusterConfig,
    config_file: PathBuf,
    socket: PathBuf,
    state_name: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) -> bool {
    let cluster = format!("{} (ID {})", cfg.cluster.name, cfg.cluster.id.0);
    let mut first = true;
    loop {
        let started = StateFile::open(&cfg.cluster.state_dir, &state_name)
            .map_err(|e| e.to_string())
            .and_then(|store| {
                let options = Options {
                    config_file: Some(config_file.clone()),
                    control_socket: ControlSocket::At(socket.clone()),
                    store: Some(Box::new(store)),
                    // Dropped from a view: start again, never act on the machine.
                    self_fence: SelfFenceAction::Callback(Box::new(|_| {})),
                    realtime: false,
                    notify: false,
                };
                vigil_runtime::start(cfg.clone(), WITNESS_NODE_NAME, options)
                    .map_err(|e| e.to_string())
            });
        let node = match started {
            Ok(n) => n,
            Err(e) => {
                let e = format!("cluster {cluster}: {e}");
                if first {
                    let _ = ready.send(Err(e)).await;
                    return false;
                }
                error!(event = "witness.failed", ts_us = wall_us(), "{e}");
                if wait_or_stop(&mut stop, RETRY).await {
                    return true;
                }
                continue;
            }
        };
        if first {
            first = false;
            let _ = ready.send(Ok(())).await;
        }
        let ending = tokio::select! {
            e = node.wait() => e,
            _ = stop.wait_for(|s| *s) => {
                node.shutdown();
                let _ = node.wait().await;
                return true;
            }
        };
        match ending {
            Ending::Fenced(reason) => {
                let (name, generation) = vigil_runtime::reason_name(&reason);
                warn!(
                    event = "witness.restart",
                    ts_us = wall_us(),
                    cluster_id = cfg.cluster.id.0,
                    reason = name,
                    generation,
                    "cluster {cluster}: the witness was dropped from the cluster's view ({name}, generation {generation}); starting again as a new incarnation"
                );
            }
            Ending::Refused(message) | Ending::Failed(message) => {
                // Refused: another live process answers as ID 63 in this cluster.
                error!(
                    event = "witness.failed",
                    ts_us = wall_us(),
                    cluster_id = cfg.cluster.id.0,
                    "cluster {cluster}: {message}; starting again in {} s",
                    RETRY.as_secs()
                );
                if wait_or_stop(&mut stop, RETRY).await {
                    return true;
                }
            }
            Ending::Stopped | Ending::Left => return true,
        }
    }
}

/// Sleep for `d` unless told to stop first; `true` when told to stop.
async fn wait_or_stop(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    let told = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    told || *stop.borrow()
}

/// `vigil witness status`.
fn status(config: &Path, json_out: bool) -> u8 {
    let file = match WitnessFile::load(config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vigil witness status: {e}");
            return exit::FAILURE;
        }
    };
    let mut docs = Vec::new();
    let mut text = String::new();
    let mut code = exit::OK;
    for served in &file.clusters {
        let c = &served.cluster.cluster;
        let socket = file.socket_path(c.id);
        match vigil_runtime::client::status(&socket) {
            Ok(s) => {
                docs.push(cluster_json(&s));
                text.push_str(&cluster_text(&s));
            }
            Err(e) => {
                code = exit::FAILURE;
                docs.push(json!({
                    "cluster_id": c.id.0,
                    "cluster_name": c.name,
                    "running": false,
                    "error": e,
                }));
                text.push_str(&format!(
                    "cluster {} (ID {}): not running ({e})\n",
                    c.name, c.id.0
                ));
            }
        }
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "clusters": docs })).unwrap_or_default()
        );
    } else {
        print!("{text}");
    }
    code
}

/// The nodes the witness hears (llt up), in ID order.
fn reachable(s: &DaemonStatus) -> Vec<u8> {
    s.node
        .llt
        .peers
        .iter()
        .filter(|p| p.up)
        .map(|p| p.id.0)
        .collect()
}

/// One cluster's part of `vigil witness status --json`.
pub fn cluster_json(s: &DaemonStatus) -> Value {
    let f = &s.node.fence;
    let view = |v: Option<vigil_fence::KnownView>| {
        v.map(|v| {
            json!({
                "generation": v.generation.0,
                "members": v.members.iter().map(|n| n.0).collect::<Vec<_>>(),
            })
        })
    };
    json!({
        "cluster_id": s.cluster_id,
        "cluster_name": s.cluster_name,
        "running": true,
        "incarnation": s.node.llt.incarnation.0,
        "uptime_ms": s.uptime_ms,
        "nodes": s.node.llt.peers.iter().map(|p| json!({
            "id": p.id.0,
            "reachable": p.up,
            "generation": p.generation.0,
        })).collect::<Vec<_>>(),
        "reachable": reachable(s),
        "highest_generation": f.durable.highest.0,
        "view": view(f.durable.installed),
        "last_vote": view(f.durable.accepted.or(f.durable.installed)),
        "state": vigil_runtime::state_word(f.state),
    })
}

/// One cluster's part of `vigil witness status`.
fn cluster_text(s: &DaemonStatus) -> String {
    let f = &s.node.fence;
    let ids = |set: vigil_membership::NodeSet| {
        set.iter()
            .map(|n| n.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let nodes: Vec<String> = s
        .node
        .llt
        .peers
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.id.0,
                if p.up { "reachable" } else { "UNREACHABLE" }
            )
        })
        .collect();
    let view = f.durable.installed.map_or("none yet".to_string(), |v| {
        format!("generation {} members {}", v.generation.0, ids(v.members))
    });
    let vote = match f.durable.accepted.or(f.durable.installed) {
        Some(v) => format!("generation {} for {}", v.generation.0, ids(v.members)),
        None => "none yet".to_string(),
    };
    format!(
        "cluster {} (ID {}): witness {}, up {} s\n  nodes:     {}\n  view:      {}\n  last vote: {} (highest generation seen {})\n",
        s.cluster_name,
        s.cluster_id,
        vigil_runtime::state_word(f.state),
        s.uptime_ms / 1000,
        nodes.join(", "),
        view,
        vote,
        f.durable.highest.0
    )
}
