//! `vigil daemon`: one node of the cluster, as a process. A thin wrapper over
//! [`vigil_runtime`]: read the configuration, set up logging, start the node, stop
//! it on SIGTERM or SIGINT, and turn how it ended into an exit code.

use crate::exit;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use tracing::error;
use vigil::config::ClusterConfig;
use vigil_runtime::logging::{self, say, wall_us};
use vigil_runtime::{ControlSocket, Ending, Options, StartError};

/// How long the log writer gets to write the last lines before the process exits.
const LOG_FLUSH: Duration = Duration::from_millis(500);

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
        ..Options::default()
    };
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
    // Signals are the process's business, not the node's: SIGTERM and SIGINT stop
    // it (the others detect the silence; `vigil stop` leaves gracefully).
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
    let ending = signals.block_on(async {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                say(&format!("vigil daemon: cannot handle SIGTERM/SIGINT: {e}"));
                node.shutdown();
                return node.wait().await;
            }
        };
        tokio::select! {
            e = node.wait() => e,
            _ = term.recv() => { node.shutdown(); node.wait().await }
            _ = int.recv() => { node.shutdown(); node.wait().await }
        }
    });
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
