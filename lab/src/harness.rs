//! Harness for the workspace integration tests (`tests/`, package `vigil-tests`):
//! real `vigil` daemon processes, their control sockets, their JSON logs, and
//! network namespaces for multi-host tests. Test style: a helper that cannot do its
//! job panics, naming what failed.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use crate::is_root;

/// The `vigil` binary of this build (`target/<profile>/vigil`).
pub fn vigil_bin() -> PathBuf {
    crate::vigil_bin().unwrap_or_else(|e| panic!("{e}"))
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vigil-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("VIGIL_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Start node `n{i}` of `configs[i]` for each `i`, with its socket and log in `dir`.
pub fn start_daemons(dir: &Path, configs: &[PathBuf]) -> Vec<Daemon> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Daemon::start(
                c,
                &format!("n{i}"),
                &dir.join(format!("n{i}.sock")),
                &dir.join(format!("n{i}.log")),
                None,
            )
        })
        .collect()
}

/// Free UDP ports on 127.0.0.1 (all held until chosen, so none repeats).
pub fn free_udp_ports(count: usize) -> Vec<u16> {
    crate::free_udp_ports(count).unwrap_or_else(|e| panic!("{e}"))
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub name: String,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// Start `vigil daemon` for `node`, optionally inside network namespace `netns`.
    pub fn start(
        config: &Path,
        node: &str,
        socket: &Path,
        log: &Path,
        netns: Option<&str>,
    ) -> Daemon {
        Daemon::start_wrapped(config, node, socket, log, netns, &[])
    }

    /// [`Daemon::start`] through `wrapper` (a program and its arguments that end by
    /// exec'ing the rest of the command line, such as `unshare --mount ...`), so
    /// that the daemon's PID is still the child's.
    pub fn start_wrapped(
        config: &Path,
        node: &str,
        socket: &Path,
        log: &Path,
        netns: Option<&str>,
        wrapper: &[&str],
    ) -> Daemon {
        let logf = std::fs::File::create(log).expect("log file");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(wrapper).arg(vigil_bin());
                c
            }
            None => match wrapper.split_first() {
                Some((program, args)) => {
                    let mut c = Command::new(program);
                    c.args(args).arg(vigil_bin());
                    c
                }
                None => Command::new(vigil_bin()),
            },
        };
        cmd.args(["daemon", "--log-format", "json", "--node", node, "--config"])
            .arg(config)
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf);
        let child = cmd.spawn().expect("spawn vigil daemon");
        Daemon {
            name: node.to_string(),
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
            child: Some(child),
        }
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Wait for the daemon to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return st.code();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The JSON log lines written so far.
    pub fn events(&self) -> Vec<Value> {
        crate::log_events(&self.log)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `vigil` with `args`; its output.
pub fn vigil(args: &[&str]) -> Output {
    Command::new(vigil_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vigil")
}

/// `vigil keygen PATH`: a new cluster key (32 random bytes, mode 0600), as an
/// operator makes one; its key ID as `vigil keygen` prints it.
pub fn keygen(path: &Path) -> String {
    crate::keygen(&vigil_bin(), path).unwrap_or_else(|e| panic!("{e}"))
}

/// The `[cluster]` lines that key a test cluster like production: unless `cluster`
/// already says `key_file` or `insecure`, a new key `{dir}/cluster.key` is made and
/// named.
pub fn default_key_lines(dir: &Path, cluster: &str) -> String {
    if cluster.contains("key_file") || cluster.contains("insecure") {
        return String::new();
    }
    // An absolute path: a test that copies the config elsewhere keeps one key.
    let path = dir.join("cluster.key");
    keygen(&path);
    format!("key_file = \"{}\"\n", path.display())
}

/// `vigil lltstat <flags> --json --socket S`, parsed; `None` if the daemon does not answer.
pub fn lltstat_json(socket: &Path, flags: &[&str]) -> Option<Value> {
    let mut args: Vec<&str> = vec!["lltstat"];
    args.extend_from_slice(flags);
    args.push("--json");
    args.push("--socket");
    let s = socket.to_str().expect("utf-8 path");
    args.push(s);
    let out = vigil(&args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Poll `f` every 20 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In `lltstat -nvv --json` output, the entry for node `id`.
pub fn node_entry(nvv: &Value, id: u64) -> Option<&Value> {
    nvv["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_u64() == Some(id))
}

/// Every other node is OPEN with every link UP.
pub fn all_peers_up(nvv: &Value) -> bool {
    let local = nvv["local"].as_u64();
    let Some(nodes) = nvv["nodes"].as_array() else {
        return false;
    };
    nodes.iter().filter(|n| n["id"].as_u64() != local).all(|n| {
        n["state"] == "OPEN"
            && n["links"]
                .as_array()
                .is_some_and(|ls| !ls.is_empty() && ls.iter().all(|l| l["state"] == "UP"))
    })
}

/// Wall-clock microseconds now, on the clock of the daemons' `ts_us`.
pub use vigil_runtime::logging::wall_us;

/// For tests that need root: true to go on. Without root they skip with a printed
/// reason, except under `CI=true`, where CI runs as root and skipping would hide a
/// failure.
pub fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} needs root, and CI=true runs as root: refusing to skip"
    );
    eprintln!("skipping {what}: needs root (network namespaces, veth, raw sockets)");
    false
}

/// Run a command; panic with its stderr if it fails.
pub fn sh(args: &[&str]) {
    if let Err(e) = crate::netlab::run(args) {
        panic!("{e}");
    }
}

/// A network namespace, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }
    pub fn name(&self) -> &str {
        &self.0
    }
    /// `ip -n NS <args>`.
    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", self.0.as_str()];
        v.extend_from_slice(args);
        sh(&v);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

// ---------------------------------------------------------------------------------
// Fencing tests: signals, the fencing commands' JSON, bridges and nftables partitions.

impl Daemon {
    /// The daemon's process ID (`ip netns exec` execs the daemon, so it is the
    /// daemon's own).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send SIGTERM (a clean stop); reap with [`Daemon::wait_exit`].
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Send `sig` to the daemon (SIGSTOP, SIGCONT, ...); false if it is not running.
    pub fn signal(&self, sig: i32) -> bool {
        match self.pid().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill has no memory preconditions; the PID is our unreaped child.
            Some(pid) => unsafe { libc::kill(pid, sig) == 0 },
            None => false,
        }
    }

    /// The JSON log events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }
}

/// `vigil <args> --json --socket S`, parsed, whatever the exit code (`gabconfig -a`
/// exits 1 on a node that is not a member but still prints its document); `None`
/// when the daemon does not answer.
pub fn command_json(socket: &Path, args: &[&str]) -> Option<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    all.push("--socket");
    all.push(socket.to_str().expect("utf-8 path"));
    let out = vigil(&all);
    serde_json::from_slice(&out.stdout).ok()
}

/// `gabconfig -a --json` of the daemon at `socket`.
pub fn gabconfig_json(socket: &Path) -> Option<Value> {
    command_json(socket, &["gabconfig", "-a"])
}

/// `fenceadm -d --json` of the daemon at `socket`.
pub fn fenceadm_json(socket: &Path) -> Option<Value> {
    command_json(socket, &["fenceadm", "-d"])
}

/// Port `a`'s generation and members in a `gabconfig -a --json` document.
pub fn port_a(gab: &Value) -> Option<(u64, Vec<u64>)> {
    let a = gab["ports"].as_array()?.iter().find(|p| p["port"] == "a")?;
    let members = a["members"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    Some((a["generation"].as_u64()?, members))
}

/// A hub namespace holding the given bridges, up.
pub fn bridge_hub(name: String, bridges: &[&str]) -> Netns {
    let hub = Netns::new(name);
    for br in bridges {
        hub.ip(&["link", "add", br, "type", "bridge"]);
        hub.ip(&["link", "set", br, "up"]);
    }
    hub
}

/// A veth pair from `hub` (end `hubside`, enslaved to `bridge`) into `ns` (end
/// `dev`, with `addr` if given), both up.
pub fn veth_to_bridge(
    hub: &Netns,
    ns: &Netns,
    hubside: &str,
    dev: &str,
    bridge: &str,
    addr: Option<&str>,
) {
    hub.ip(&[
        "link",
        "add",
        hubside,
        "type",
        "veth",
        "peer",
        "name",
        dev,
        "netns",
        ns.name(),
    ]);
    hub.ip(&["link", "set", hubside, "master", bridge]);
    hub.ip(&["link", "set", hubside, "up"]);
    ns.ip(&["link", "set", dev, "up"]);
    if let Some(a) = addr {
        ns.ip(&["addr", "add", a, "dev", dev]);
    }
}

/// An nftables ruleset (table `inet vigil_partition`) dropping every IPv4 packet
/// from or to `blocked`.
pub fn partition_ruleset(blocked: &[String]) -> String {
    format!(
        "table inet vigil_partition {{\n\
         \tset blocked {{ type ipv4_addr; elements = {{ {} }} }}\n\
         \tchain input {{ type filter hook input priority 0; policy accept; ip saddr @blocked drop; }}\n\
         \tchain output {{ type filter hook output priority 0; policy accept; ip daddr @blocked drop; }}\n\
         }}\n",
        blocked.join(", ")
    )
}

/// `ip netns exec NS nft -f -` with `ruleset` on standard input; panics with nft's
/// error if it fails.
pub fn nft_apply(ns: &Netns, ruleset: &str) {
    let argv = ["ip", "netns", "exec", ns.name(), "nft", "-f", "-"];
    if let Err(e) = crate::netlab::run_stdin(&argv, ruleset) {
        panic!("nft -f - in {}: {e}", ns.name());
    }
}

// ---------------------------------------------------------------------------------
// The fencing lab: five (or n) namespaces on two bridges, UDP links a and b.

pub struct Lab {
    pub hub: Netns,
    pub nodes: Vec<Netns>,
    pub dir: TempDir,
    pub config: PathBuf,
    tag: String,
}

/// The fencing lab's timers: fast enough for quick tests, slow enough for a busy
/// machine.
pub const LAB_TIMERS: &str = "heartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 200\n\
                              peer_inactive = 400\nrace_timeout = 300\n";

/// A fencing lab: `n` namespaces, each on two bridges of a hub namespace. `extra`
/// is appended to the config (`{dir}` stands for the lab's directory).
///
/// Node `i` has `eth1` (10.202.1.i+1) on the hub's `br-a` and `eth2` (10.202.2.i+1)
/// on `br-b`; link `a` is UDP over the first (port 5701), link `b` UDP over the
/// second (port 5702).
pub fn lab(tag: &str, n: usize, extra: &str) -> Lab {
    lab_with(tag, n, "", LAB_TIMERS, extra)
}

/// [`lab`] with `cluster` added to the `[cluster]` table and `timers` as the
/// `[timers]` table's body (empty: the default profile). `{dir}` stands for the
/// lab's directory in all three.
pub fn lab_with(tag: &str, n: usize, cluster: &str, timers: &str, extra: &str) -> Lab {
    let id = std::process::id() % 100_000;
    let hub = bridge_hub(format!("vf{id}{tag}h"), &["br-a", "br-b"]);
    let mut nodes = Vec::new();
    for i in 0..n {
        let ns = Netns::new(format!("vf{id}{tag}n{i}"));
        for (dev, br, side, net) in [("eth1", "br-a", "a", 1), ("eth2", "br-b", "b", 2)] {
            veth_to_bridge(
                &hub,
                &ns,
                &format!("f{tag}{i}{side}"),
                dev,
                br,
                Some(&format!("10.202.{net}.{}/24", i + 1)),
            );
        }
        nodes.push(ns);
    }
    let dir = TempDir::new(&format!("fence-{tag}"));
    let d = dir.path().display().to_string();
    let key = default_key_lines(dir.path(), cluster);
    let mut t = format!(
        "[cluster]\nname = \"fence\"\nid = 78\nrun_dir = \"{d}\"\nstate_dir = \"{d}/state\"\n\
         fencing = \"majority\"\nself_fence = \"exit\"\n{cluster}{key}\n\
         [timers]\n{timers}\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\nport = {LAB_PORT_A}\n\n\
         [[links]]\nname = \"b\"\nkind = \"udp\"\nport = {LAB_PORT_B}\n",
        cluster = cluster.replace("{dir}", &d),
        timers = timers.replace("{dir}", &d),
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"10.202.1.{n}\"\nb = \"10.202.2.{n}\"\n",
            n = i + 1
        ));
    }
    t.push_str(&extra.replace("{dir}", &dir.path().display().to_string()));
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, t).expect("write the config");
    Lab {
        hub,
        nodes,
        dir,
        config,
        tag: tag.to_string(),
    }
}

/// The fencing lab's UDP port of link `a`.
pub const LAB_PORT_A: u16 = 5701;
/// The fencing lab's UDP port of link `b`.
pub const LAB_PORT_B: u16 = 5702;

impl Lab {
    pub fn start(&self, i: usize) -> Daemon {
        self.start_wrapped(i, &[])
    }

    /// Start node `i` again (a new incarnation, same state file), logging to
    /// `n{i}-{label}.log` so that the earlier run's log stays.
    pub fn restart(&self, i: usize, label: &str) -> Daemon {
        Daemon::start(
            &self.config,
            &format!("n{i}"),
            &self.dir.path().join(format!("n{i}.sock")),
            &self.dir.path().join(format!("n{i}-{label}.log")),
            Some(self.nodes[i].name()),
        )
    }

    /// Node `i`'s address on link `link` (0: `a`, 1: `b`).
    pub fn addr(&self, i: usize, link: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 202, link as u8 + 1, i as u8 + 1)
    }

    /// The UDP port of link `link`.
    pub fn port(&self, link: usize) -> u16 {
        [LAB_PORT_A, LAB_PORT_B][link]
    }

    /// The bridge of link `link`, in the hub namespace.
    pub fn bridge(&self, link: usize) -> &'static str {
        ["br-a", "br-b"][link]
    }

    /// The hub-side end of node `i`'s veth on link `link` (a port of that bridge).
    pub fn hub_port(&self, i: usize, link: usize) -> String {
        format!("f{}{i}{}", self.tag, ["a", "b"][link])
    }

    /// The node-side interface of link `link` (`eth1`, `eth2`).
    pub fn node_dev(&self, link: usize) -> &'static str {
        ["eth1", "eth2"][link]
    }

    /// Start node `i` through `wrapper` (see [`Daemon::start_wrapped`]).
    pub fn start_wrapped(&self, i: usize, wrapper: &[&str]) -> Daemon {
        Daemon::start_wrapped(
            &self.config,
            &format!("n{i}"),
            &self.dir.path().join(format!("n{i}.sock")),
            &self.dir.path().join(format!("n{i}.log")),
            Some(self.nodes[i].name()),
            wrapper,
        )
    }

    /// Partition: every namespace drops all traffic to and from the other side's
    /// addresses on both links.
    pub fn split(&self, sides: &[&[usize]]) {
        for side in sides {
            let blocked: Vec<String> = (0..self.nodes.len())
                .filter(|j| !side.contains(j))
                .flat_map(|j| [format!("10.202.1.{}", j + 1), format!("10.202.2.{}", j + 1)])
                .collect();
            let rules = partition_ruleset(&blocked);
            for &i in *side {
                nft_apply(&self.nodes[i], &rules);
            }
        }
    }
}

/// Every daemon shows the same view of `members` (port a) in `gabconfig -a --json`;
/// its generation.
pub fn same_view(daemons: &[&Daemon], members: &[u64]) -> Option<u64> {
    let mut gens = Vec::new();
    for d in daemons {
        let (g, m) = port_a(&gabconfig_json(&d.socket)?)?;
        if m != members {
            return None;
        }
        gens.push(g);
    }
    gens.windows(2).all(|w| w[0] == w[1]).then(|| gens[0])
}

pub fn wait_same_view(daemons: &[&Daemon], members: &[u64], timeout: Duration) -> (u64, Duration) {
    let mut gen = 0;
    let took = wait_for(
        timeout,
        &format!("one view of {members:?} everywhere"),
        || same_view(daemons, members).map(|g| gen = g).is_some(),
    );
    (gen, took)
}

/// A survivor is done when it holds authority on a view of `members` above `above`
/// that its clients see (the settle window has passed).
pub fn holds_authority(d: &Daemon, members: &[u64], above: u64) -> Option<u64> {
    let f = fenceadm_json(&d.socket)?;
    let m: Vec<u64> = f["members"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let g = f["generation"].as_u64()?;
    let clients_see_it = f["client_generation"].as_u64() == Some(g);
    (f["authority"] == true && clients_see_it && m == members && g > above).then_some(g)
}

/// Every daemon holds authority on a view of `members` above `above` that its
/// clients see.
pub fn all_hold_authority(daemons: &[Daemon], members: &[u64], above: u64) -> bool {
    daemons
        .iter()
        .all(|d| holds_authority(d, members, above).is_some())
}

/// Wait until every daemon shows one view of `members` and holds authority on it;
/// its generation.
pub fn wait_view_with_authority(daemons: &[Daemon], members: &[u64]) -> u64 {
    let refs: Vec<&Daemon> = daemons.iter().collect();
    let (g, took) = wait_same_view(&refs, members, Duration::from_secs(20));
    eprintln!("view {g} of {members:?} after {took:?}");
    wait_for(Duration::from_secs(5), "authority everywhere", || {
        all_hold_authority(daemons, members, g.saturating_sub(1))
    });
    g
}

pub fn dump(daemons: &[Daemon]) -> String {
    let mut s = String::new();
    for d in daemons {
        s.push_str(&format!("--- {} ---\n", d.name));
        for e in d.events() {
            let ev = e["event"].as_str().unwrap_or("");
            if !ev.is_empty() && !ev.starts_with("link.") {
                s.push_str(&format!("{e}\n"));
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------
// Loopback clusters.

/// Write `{dir}/cluster.toml` for `n` nodes on 127.0.0.1 with UDP links `a` and `b`
/// on free ports, keyed with a new `{dir}/cluster.key` unless `cluster` names a
/// `key_file` or says `insecure`. `cluster` is added to the `[cluster]` table, `timers` is the
/// `[timers]` table's body, `tail` is appended (`{dir}` stands for `dir`).
pub fn loopback_config(
    dir: &Path,
    n: usize,
    cluster: &str,
    timers: &str,
    tail: &str,
) -> (PathBuf, Vec<u16>) {
    let ports = free_udp_ports(2 * n);
    let key = default_key_lines(dir, cluster);
    let mut t = format!(
        "[cluster]\nname = \"t\"\nid = 4711\nrun_dir = \"{d}\"\nstate_dir = \"{d}\"\n{key}{cluster}\n\
         [timers]\n{timers}\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\n\n[[links]]\nname = \"b\"\nkind = \"udp\"\n",
        d = dir.display()
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"127.0.0.1:{}\"\nb = \"127.0.0.1:{}\"\n",
            ports[2 * i],
            ports[2 * i + 1]
        ));
    }
    t.push_str(&tail.replace("{dir}", &dir.display().to_string()));
    let config = dir.join("cluster.toml");
    std::fs::write(&config, t).expect("write the config");
    (config, ports)
}
