//! `vigil`: one binary for the daemon and the inspection commands. Invoked through a
//! link named `lltstat`, `gabconfig` or `fenceadm` it behaves as that subcommand
//! (busybox style).

mod bench;
mod control;
mod daemon;
mod drill;
mod fault;
mod fenceadm;
mod gabconfig;
mod import;
mod init;
mod keys;
mod lltstat;
mod manpages;
mod model;
mod sim;
mod watch;
mod witness;

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
    /// The daemon fenced itself (lost a race, or excluded from the cluster) and
    /// stopped (`self_fence = "exit"`, after a hook, or when reboot/halt failed).
    pub const FENCED: u8 = 4;

    /// The exit code of a lab command (`vigil drill`, `vigil bench`).
    pub fn code(e: vigil_lab::Exit) -> u8 {
        match e {
            vigil_lab::Exit::Ok => OK,
            vigil_lab::Exit::Failure => FAILURE,
            vigil_lab::Exit::Usage => USAGE,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "vigil: membership and majority fencing for HA clusters",
    after_help = "Exit codes: 0 success, 1 failure (daemon unreachable, bad config, link error; \
                  gabconfig -a: this node is not a member), 2 bad command line, 3 daemon refused \
                  to start (node ID in use), 4 the daemon fenced itself (lost a race or was \
                  excluded from the cluster).\n\
                  Invoked as `lltstat`, `gabconfig` or `fenceadm` (a link to this binary), vigil \
                  runs that subcommand."
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
    /// Show port memberships (-a) or seed the cluster by hand (-x).
    Gabconfig(gabconfig::GabconfigArgs),
    /// Show the fencing state: mode, authority, members, the last race (-d).
    Fenceadm(fenceadm::FenceadmArgs),
    /// Leave the cluster gracefully and stop the daemon; waits until it has exited.
    Stop(StopArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Make a new cluster key: 32 random bytes in a new file of mode 0600; prints
    /// its key ID.
    Keygen(keys::KeygenArgs),
    /// The running daemon's keys: `reload` re-reads them from the config file (a key
    /// rotation without downtime), `status` shows them.
    Key(keys::KeyArgs),
    /// Start a local cluster on loopback and show it working (the main job).
    Drill(drill::DrillArgs),
    /// The deterministic simulator: scenario files, random sweeps, replays, benchmarks.
    Sim(sim::SimArgs),
    /// Exhaustive check of the view-change protocol model against S1-S5 within bounds.
    Model(model::ModelArgs),
    /// Testing tool: make a daemon drop traffic to or from chosen peers (needs
    /// cluster.fault_injection = true).
    Fault(fault::FaultArgs),
    /// Live benchmarks on this machine: heartbeat jitter, Corosync side by side.
    Bench(bench::BenchArgs),
    /// The embedding example (runtime/examples/guarded_service.rs), for `vigil drill
    /// guarded`: `store --listen PATH` or `run --config F --node N --store PATH`.
    #[command(hide = true)]
    GuardedService {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The witness daemon: a third vote, on another machine, for the clusters in
    /// its file (`status`: what it sees of each).
    Witness(witness::WitnessArgs),
    /// Follow this node's authority: the current state at once, then a line per
    /// change of token, view or primary (--json: one JSON object per line).
    Watch(watch::WatchArgs),
    /// Print shell completions (bash, zsh or fish) to stdout.
    Completions(manpages::CompletionsArgs),
    /// Packaging: write the manual pages (vigil.8, vigil-COMMAND.8,
    /// vigil-cluster.toml.5) to a directory.
    #[command(hide = true)]
    Man(manpages::ManArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration file; prints every problem found, each with file,
    /// line:column, field and reason ("did you mean" for a misspelt key).
    Check {
        /// The cluster configuration (TOML).
        file: PathBuf,
        /// A report of `vigil bench host --json`: warn (without refusing the config)
        /// when its timers do not tolerate the worst stall it measured.
        #[arg(long, value_name = "REPORT")]
        host_report: Option<PathBuf>,
    },
    /// Translate a Veritas LLT/GAB configuration (llttab, llthosts, gabtab) into a
    /// vigil config; lists whatever has no vigil equivalent.
    Import(import::ImportArgs),
    /// Write a commented starting config for the given nodes (one UDP link per
    /// address) and make a fresh cluster key.
    Init(init::InitArgs),
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

/// `vigil stop`.
#[derive(Args, Debug)]
struct StopArgs {
    /// How long to wait for the daemon to exit, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    target: Target,
}

/// Names under which the binary runs one subcommand.
const BUSYBOX: [&str; 3] = ["lltstat", "gabconfig", "fenceadm"];

/// An inspection command whose reader went away (`vigil lltstat | head`) ends
/// quietly, as the classic tools do, instead of panicking on a failed print. The
/// daemon keeps SIGPIPE ignored: a closed control connection is an error it handles.
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("vigil")
        .to_string();
    if BUSYBOX.contains(&invoked_as.as_str()) {
        args[0] = "vigil".into();
        args.insert(1, invoked_as.into());
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
    if !matches!(cli.command, Command::Daemon(_) | Command::Witness(_)) {
        quiet_on_closed_pipe();
    }
    let code = match cli.command {
        Command::Daemon(a) => daemon::run(a),
        Command::Lltstat(a) => lltstat::run(a),
        Command::Gabconfig(a) => gabconfig::run(a),
        Command::Fenceadm(a) => fenceadm::run(a),
        Command::Stop(a) => stop(&a),
        Command::Config {
            command: ConfigCommand::Check { file, host_report },
        } => config_check(&file, host_report.as_deref()),
        Command::Config {
            command: ConfigCommand::Import(a),
        } => import::run(&a),
        Command::Config {
            command: ConfigCommand::Init(a),
        } => init::run(&a),
        Command::Keygen(a) => keys::keygen(&a),
        Command::Key(a) => keys::run(a),
        Command::Drill(a) => drill::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Model(a) => model::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Fault(a) => fault::run(a),
        Command::GuardedService { args } => return vigil_lab::guarded_service::run(args),
        Command::Watch(a) => watch::run(a),
        Command::Witness(a) => witness::run(a),
        Command::Completions(a) => {
            manpages::completions(&a, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(a) => manpages::man(&a, <Cli as clap::CommandFactory>::command()),
    };
    ExitCode::from(code)
}

/// `vigil stop`: ask the daemon to leave, then wait for it to be gone.
fn stop(args: &StopArgs) -> u8 {
    let socket = match control::resolve(&args.target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vigil stop: {e}");
            return exit::FAILURE;
        }
    };
    let who = match control::status(&socket) {
        Ok(s) => format!("{} (node {})", s.node_name, s.local),
        Err(e) => {
            eprintln!("vigil stop: {e}");
            return exit::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    match control::command(&socket, &control::Request::Stop) {
        Ok(message) => println!("vigil stop: {who}: {message}"),
        // The daemon may exit before its answer is read; waiting tells.
        Err(e) if gone(&socket) => println!("vigil stop: {who}: {e}"),
        Err(e) => {
            eprintln!("vigil stop: {e}");
            return exit::FAILURE;
        }
    }
    let timeout = std::time::Duration::from_secs(args.timeout);
    while started.elapsed() < timeout {
        if gone(&socket) {
            println!(
                "vigil stop: {who} left the cluster; the daemon exited after {} ms",
                started.elapsed().as_millis()
            );
            return exit::OK;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!(
        "vigil stop: {who}: the daemon is still running after {} s (control socket {})",
        args.timeout,
        socket.display()
    );
    exit::FAILURE
}

/// The daemon behind `socket` is gone: the socket was removed or nobody answers.
fn gone(socket: &std::path::Path) -> bool {
    !socket.exists() || std::os::unix::net::UnixStream::connect(socket).is_err()
}

fn config_check(file: &std::path::Path, host_report: Option<&std::path::Path>) -> u8 {
    // `load` checks the file itself (a regular file, its size, UTF-8) and stops at
    // the first problem; on a readable file that does not load, `check` then lists
    // every problem, each with its line and column.
    let loaded = vigil::config::ClusterConfig::load(file);
    let problems = match &loaded {
        Err(e) if e.field != "(file)" => std::fs::read_to_string(file)
            .map(|text| vigil::config::ClusterConfig::check(&text, file))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!(
            "{}: {} problem{}",
            file.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return exit::FAILURE;
    }
    match loaded {
        Ok(cfg) => {
            let ring: Vec<String> = cfg.frame_keys().iter().map(|k| k.id.to_string()).collect();
            let auth = match ring.first() {
                Some(send) => format!(
                    "frames sent with key {send}, accepted under {}",
                    ring.join(", ")
                ),
                None => "frames NOT authenticated (insecure)".into(),
            };
            println!(
                "{}: ok: cluster {} (id {}), {} nodes, {} links, {auth}",
                file.display(),
                cfg.cluster.name,
                cfg.cluster.id.0,
                cfg.nodes.len(),
                cfg.links.len()
            );
            for w in cfg.warnings() {
                eprintln!("warning: {w}");
            }
            match host_report.map(|r| check_host_report(r, &cfg)) {
                None => exit::OK,
                Some(Ok(())) => exit::OK,
                Some(Err(e)) => {
                    eprintln!("{e}");
                    exit::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            exit::FAILURE
        }
    }
}

/// `vigil config check --host-report REPORT`: the config's timers against the worst
/// stall of a saved `vigil bench host --json` report. A report that cannot be read is
/// an error; timers that do not fit are a warning only.
fn check_host_report(
    report: &std::path::Path,
    cfg: &vigil::config::ClusterConfig,
) -> Result<(), String> {
    use std::io::Read as _;
    use vigil_lab::bench::{host::HostReport, stalls};
    // A report is a few kilobytes; refuse a device or a runaway file rather than read it.
    const MAX_REPORT: u64 = 16 << 20;
    let at = |e: std::io::Error| format!("{}: {e}", report.display());
    let file = std::fs::File::open(report).map_err(at)?;
    let meta = file.metadata().map_err(at)?;
    if !meta.is_file() || meta.len() > MAX_REPORT {
        return Err(format!(
            "{}: not a report of `vigil bench host --json` (not a regular file of at most 16 MiB)",
            report.display()
        ));
    }
    let mut text = String::new();
    file.take(MAX_REPORT)
        .read_to_string(&mut text)
        .map_err(at)?;
    let r: HostReport = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a report of `vigil bench host --json`: {e}",
            report.display()
        )
    })?;
    let realtime = cfg.daemon.realtime != vigil::config::Realtime::Off;
    match stalls::check_timers(&r.threads, &cfg.timers, realtime) {
        Ok(line) => println!("{}: {line}", report.display()),
        Err(w) => eprintln!("warning: {}: {w}", report.display()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
