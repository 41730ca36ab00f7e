//! `vigil`: one binary for the daemon and the inspection commands. Invoked through a
//! link named `lltstat` it behaves as `vigil lltstat` (busybox style).

mod control;
mod daemon;
mod drill;
mod lltstat;
mod logging;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, documented in the README and `vigil --help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A runtime failure: daemon unreachable, a link could not open, a bad config.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap prints usage).
    pub const USAGE: u8 = 2;
    /// The daemon refused to start: a live node already uses its node ID.
    pub const DUPLICATE_NODE: u8 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "vigil: membership and majority fencing for HA clusters",
    after_help = "Exit codes: 0 success, 1 failure (daemon unreachable, bad config, link error), \
                  2 bad command line, 3 daemon refused to start (node ID in use)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node of the cluster.
    Daemon(daemon::DaemonArgs),
    /// Show llt statistics, nodes and links, or configuration.
    Lltstat(lltstat::LltstatArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a local cluster on loopback and show it working (the main job).
    Drill(drill::DrillArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration file; prints the first error with file, field and reason.
    Check {
        /// The cluster configuration (TOML).
        file: PathBuf,
    },
}

/// How an inspection command finds its daemon.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The cluster configuration, to find the socket of `--node`.
    #[arg(long, value_name = "FILE", default_value = "/etc/vigil/cluster.toml")]
    pub config: PathBuf,
    /// The node whose daemon to ask (with `--config`); default: the only node whose
    /// socket exists.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("vigil")
        .to_string();
    if invoked_as == "lltstat" {
        args[0] = "vigil".into();
        args.insert(1, "lltstat".into());
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Daemon(a) => daemon::run(a),
        Command::Lltstat(a) => lltstat::run(a),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Drill(a) => drill::run(a),
    };
    ExitCode::from(code)
}

fn config_check(file: &std::path::Path) -> u8 {
    match vigil::config::ClusterConfig::load(file) {
        Ok(cfg) => {
            println!(
                "{}: ok: cluster {} (id {}), {} nodes, {} links",
                file.display(),
                cfg.cluster.name,
                cfg.cluster.id.0,
                cfg.nodes.len(),
                cfg.links.len()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("{e}");
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
