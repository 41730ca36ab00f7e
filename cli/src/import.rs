//! `vigil config import`: translate a Veritas LLT/GAB configuration (`/etc/llttab`,
//! `/etc/llthosts`, `/etc/gabtab`) into one vigil cluster config.
//!
//! A Veritas llttab belongs to one node (`set-node` names it); vigil has one file
//! for every node. The import takes the node list from llthosts, the local node's
//! UDP addresses from the `link` lines and the other nodes' from `set-addr`. For
//! ether links every node is given the local node's interface name, which the
//! output says. Whatever has no vigil equivalent is listed, on stderr and as
//! comments in the TOML; nothing is dropped silently.

use crate::exit;
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `vigil config import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The node's /etc/llttab.
    #[arg(long, value_name = "FILE")]
    pub llttab: PathBuf,
    /// /etc/llthosts: `<node ID> <name>` lines.
    #[arg(long, value_name = "FILE")]
    pub llthosts: PathBuf,
    /// /etc/gabtab: `gabconfig -c -nN` gives the seed count N.
    #[arg(long, value_name = "FILE")]
    pub gabtab: Option<PathBuf>,
    /// The local node (the one the llttab belongs to); default: its `set-node`.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Where to write the config; default: standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// The cluster key file the config names.
    #[arg(long, value_name = "PATH", default_value = "/etc/vigil/cluster.key")]
    pub key: PathBuf,
    /// Also make the key file (as `vigil keygen` does).
    #[arg(long)]
    pub keygen: bool,
}

/// What an import produced: the TOML text and the lines that were not translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The vigil cluster config.
    pub toml: String,
    /// One line per directive (or part of one) with no vigil equivalent.
    pub untranslated: Vec<String>,
    /// Things the operator should know that are translated but not one to one.
    pub notes: Vec<String>,
}

/// The files an import reads, as text.
pub struct Sources<'a> {
    pub llttab: &'a str,
    pub llthosts: &'a str,
    pub gabtab: Option<&'a str>,
    /// The local node's name or ID; default: `set-node`.
    pub node: Option<&'a str>,
    pub key_file: &'a Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ether,
    Udp,
    Udp6,
}

#[derive(Debug)]
struct Link {
    tag: String,
    kind: Kind,
    low: bool,
    /// Ether: the local interface.
    device: String,
    port: Option<u16>,
    /// UDP: the local node's address.
    local_ip: Option<String>,
}

/// Veritas timer names with a vigil equivalent: (llttab name, vigil field).
const TIMERS: [(&str, &str); 4] = [
    ("heartbeat", "heartbeat"),
    ("heartbeatlo", "heartbeat_lowpri"),
    ("peertrouble", "peer_trouble"),
    ("peerinact", "peer_inactive"),
];

/// Translate; an error is a file that cannot be read as Veritas format at all.
pub fn translate(src: &Sources<'_>) -> Result<Imported, String> {
    let mut untranslated = Vec::new();
    let mut notes = Vec::new();

    // llthosts
    let mut hosts: BTreeMap<u8, String> = BTreeMap::new();
    for (i, line) in src.llthosts.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut w = line.split_whitespace();
        let (Some(id), Some(name), None) = (w.next(), w.next(), w.next()) else {
            return Err(format!(
                "llthosts line {}: expected `<node ID> <name>`, got `{line}`",
                i + 1
            ));
        };
        let id: u8 = id.parse().ok().filter(|&id| id <= 63).ok_or_else(|| {
            format!(
                "llthosts line {}: node ID must be 0..=63, got `{id}`",
                i + 1
            )
        })?;
        hosts.insert(id, name.to_string());
    }
    if hosts.is_empty() {
        return Err("llthosts names no node".into());
    }

    // llttab
    let mut set_node: Option<String> = None;
    let mut cluster_id: Option<u32> = None;
    let mut links: Vec<Link> = Vec::new();
    let mut set_addr: BTreeMap<(u8, String), String> = BTreeMap::new();
    let mut timers: BTreeMap<&str, (u64, String)> = BTreeMap::new();
    for (i, raw) in src.llttab.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: &str| format!("llttab line {}: `{line}`: {what}", i + 1);
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "set-node" if w.len() == 2 => set_node = Some(w[1].to_string()),
            "set-cluster" if w.len() == 2 => {
                cluster_id = Some(
                    w[1].parse()
                        .map_err(|_| at("the cluster ID must be a number"))?,
                );
            }
            "link" | "link-lowpri" if w.len() >= 6 => {
                let low = w[0] == "link-lowpri";
                let (tag, device, range, kind, sap, mtu) = (w[1], w[2], w[3], w[4], w[5], w.get(6));
                if range != "-" {
                    untranslated.push(at(&format!(
                        "node range {range}: vigil links carry every node; the link is given to all"
                    )));
                }
                let kind = match kind {
                    "ether" => Kind::Ether,
                    "udp" => Kind::Udp,
                    "udp6" => Kind::Udp6,
                    other => {
                        untranslated.push(at(&format!("link type {other} is not supported")));
                        continue;
                    }
                };
                let mut link = Link {
                    tag: tag.to_string(),
                    kind,
                    low,
                    device: device.to_string(),
                    port: None,
                    local_ip: None,
                };
                match kind {
                    Kind::Ether => {
                        if device.starts_with("eth-") && device.matches(':').count() == 5 {
                            untranslated.push(at(&format!(
                                "ether link {tag} names its device by MAC address ({}); vigil binds ether links by interface name: set nodes.links.{tag} to each node's interface",
                                &device[4..]
                            )));
                            link.device = "CHANGEME".into();
                        } else if device.contains('/') || device.contains(':') {
                            untranslated.push(at(&format!(
                                "device {device} is not a Linux interface name; set nodes.links.{tag} to each node's interface"
                            )));
                            link.device = "CHANGEME".into();
                        }
                        if sap != "-" {
                            match parse_sap(sap) {
                                Some(t) => link.port = Some(t),
                                None => {
                                    untranslated.push(at(&format!("SAP {sap} is not a number")))
                                }
                            }
                        }
                        if mtu.is_some_and(|m| *m != "-") {
                            untranslated.push(at("MTU: vigil does not set an MTU"));
                        }
                    }
                    Kind::Udp | Kind::Udp6 => {
                        link.port = Some(
                            sap.parse()
                                .map_err(|_| at("the UDP port (fifth field) must be a number"))?,
                        );
                        if mtu.is_some_and(|m| *m != "-") {
                            untranslated.push(at("MTU: vigil does not set an MTU"));
                        }
                        match w.get(7) {
                            Some(ip) if *ip != "-" => link.local_ip = Some((*ip).to_string()),
                            _ => untranslated.push(at(
                                "no local IP address: give the local node's address for this link by hand",
                            )),
                        }
                        if w.get(8).is_some_and(|b| *b != "-") {
                            notes.push(format!(
                                "link {tag}: broadcast address {} not used: vigil sends to each node's address (set-addr)",
                                w[8]
                            ));
                        }
                        if device != "udp" && device != "udp6" && device != "-" {
                            notes.push(format!("link {tag}: device {device} not used for UDP"));
                        }
                    }
                }
                links.push(link);
            }
            "set-addr" if w.len() == 4 => {
                let node: u8 = w[1]
                    .parse()
                    .map_err(|_| at("set-addr: the node ID must be a number"))?;
                set_addr.insert((node, w[2].to_string()), w[3].to_string());
            }
            "set-timer" if w.len() == 2 => {
                let Some((name, value)) = w[1].split_once(':') else {
                    untranslated.push(at("expected set-timer <name>:<value>"));
                    continue;
                };
                let Ok(value) = value.parse::<u64>() else {
                    untranslated.push(at("timer value is not a number"));
                    continue;
                };
                match TIMERS.iter().find(|(v, _)| *v == name) {
                    Some((_, field)) => {
                        timers.insert(field, (value, line.to_string()));
                    }
                    None => untranslated.push(at(&format!("timer {name} has no vigil equivalent"))),
                }
            }
            _ => untranslated.push(at("no vigil equivalent")),
        }
    }
    if links.is_empty() {
        return Err("llttab has no link or link-lowpri line vigil can use".into());
    }
    // The ethertype SAP of ether links is one value for the whole cluster in vigil.
    for l in &links {
        if l.kind != Kind::Ether {
            continue;
        }
        if let Some(t) = l.port.filter(|t| *t < 0x0600) {
            untranslated.push(format!(
                "link {}: SAP 0x{t:04X} is not an ethertype vigil accepts (at least 0x0600); default 0xCAFE used",
                l.tag
            ));
        }
    }

    // The local node.
    let wanted = src.node.map(str::to_string).or(set_node).ok_or(
        "llttab has no set-node and no --node was given: cannot tell which node it belongs to",
    )?;
    let local = hosts
        .iter()
        .find(|(id, name)| **name == wanted || id.to_string() == wanted)
        .map(|(id, _)| *id)
        .ok_or_else(|| format!("node {wanted} (set-node or --node) is not in llthosts"))?;
    let cluster_id = cluster_id.unwrap_or_else(|| {
        notes.push("llttab has no set-cluster: cluster ID 0 (the Veritas default)".into());
        0
    });

    // gabtab
    let mut seed = None;
    if let Some(gab) = src.gabtab {
        for (i, raw) in gab.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let w: Vec<&str> = line.split_whitespace().collect();
            let is_gabconfig = w.first().is_some_and(|c| c.ends_with("gabconfig"));
            let mut handled = false;
            if is_gabconfig {
                let mut args = w[1..].iter();
                while let Some(a) = args.next() {
                    let n = if let Some(n) = a.strip_prefix("-n").filter(|n| !n.is_empty()) {
                        Some(n)
                    } else if *a == "-n" {
                        args.next().copied()
                    } else {
                        None
                    };
                    if let Some(n) = n {
                        seed = n.parse::<usize>().ok();
                        handled = seed.is_some();
                    } else if *a != "-c" {
                        untranslated.push(format!(
                            "gabtab line {}: `{line}`: option {a} has no vigil equivalent",
                            i + 1
                        ));
                    }
                }
            }
            if !handled {
                untranslated.push(format!(
                    "gabtab line {}: `{line}`: no seed count (-nN) found",
                    i + 1
                ));
            }
        }
    }

    // The TOML.
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# vigil cluster configuration, imported from a Veritas llttab of node {} ({local}),\n# llthosts{}. Check it with `vigil config check FILE`.",
        hosts[&local],
        if src.gabtab.is_some() { " and gabtab" } else { "" }
    );
    let _ = writeln!(t, "\n[cluster]");
    let _ = writeln!(
        t,
        "name = \"llt{cluster_id}\"             # Veritas names the cluster in main.cf, not in llttab"
    );
    let _ = writeln!(t, "id = {cluster_id}                      # set-cluster");
    if let Some(n) = seed {
        let _ = writeln!(t, "seed = {n}                    # gabconfig -c -n{n}");
    }
    let _ = writeln!(
        t,
        "key_file = \"{}\"   # make it with `vigil keygen {}` and copy it to every node",
        toml_str(&src.key_file.display().to_string()),
        src.key_file.display()
    );

    if !timers.is_empty() {
        let _ = writeln!(
            t,
            "\n[timers]                      # Veritas units of 1/100 s, here ms"
        );
        for (field, (value, line)) in &timers {
            let _ = writeln!(t, "{field} = {}   # {line}", value * 10);
        }
        // vigil needs race_timeout > heartbeat; its default (200 ms) is shorter
        // than Veritas heartbeats.
        if let Some((hb, _)) = timers.get("heartbeat") {
            if hb * 10 >= 200 {
                let _ = writeln!(
                    t,
                    "race_timeout = {}   # no Veritas equivalent; vigil needs it above heartbeat",
                    hb * 20
                );
            }
        }
    }

    for l in &links {
        let _ = writeln!(t, "\n[[links]]");
        let _ = writeln!(
            t,
            "name = \"{}\"   # {} {}",
            toml_str(&l.tag),
            if l.low { "link-lowpri" } else { "link" },
            l.tag
        );
        let kind = match l.kind {
            Kind::Ether => "ether",
            Kind::Udp => "udp",
            Kind::Udp6 => "udp6",
        };
        let _ = writeln!(t, "kind = \"{kind}\"");
        if l.low {
            let _ = writeln!(t, "priority = \"low\"");
        }
        match (l.kind, l.port) {
            (Kind::Ether, Some(sap)) if sap >= 0x0600 => {
                let _ = writeln!(t, "ethertype = 0x{sap:04X}   # SAP");
            }
            (Kind::Ether, _) => {}
            (_, Some(port)) => {
                let _ = writeln!(t, "port = {port}");
            }
            (_, None) => {}
        }
    }

    for (id, name) in &hosts {
        let _ = writeln!(t, "\n[[nodes]]");
        let _ = writeln!(t, "id = {id}");
        let _ = writeln!(t, "name = \"{}\"", toml_str(name));
        let _ = writeln!(t, "[nodes.links]");
        for l in &links {
            let value = match l.kind {
                Kind::Ether => {
                    if *id != local {
                        notes.push(format!(
                            "node {name}: ether link {} uses interface {}, the local node's: check it",
                            l.tag, l.device
                        ));
                    }
                    Some((l.device.clone(), "interface"))
                }
                Kind::Udp | Kind::Udp6 => {
                    let addr = if *id == local {
                        l.local_ip.clone()
                    } else {
                        set_addr.get(&(*id, l.tag.clone())).cloned()
                    };
                    if addr.is_none() {
                        untranslated.push(format!(
                            "node {name} ({id}): no address for udp link {} (no set-addr {id} {} <ip>)",
                            l.tag, l.tag
                        ));
                    }
                    addr.map(|a| (a, "address"))
                }
            };
            match value {
                Some((v, what)) => {
                    let _ = writeln!(t, "{} = \"{}\"   # {what}", toml_str(&l.tag), toml_str(&v));
                }
                None => {
                    let _ = writeln!(t, "# {} = \"CHANGEME\"   # not in the llttab", l.tag);
                }
            }
        }
    }
    for (id, tag) in set_addr.keys() {
        if !hosts.contains_key(id) {
            untranslated.push(format!("set-addr {id} {tag}: node {id} is not in llthosts"));
        } else if !links.iter().any(|l| l.tag == *tag) {
            untranslated.push(format!("set-addr {id} {tag}: no udp link {tag}"));
        }
    }

    if !notes.is_empty() || !untranslated.is_empty() {
        t.push('\n');
    }
    for n in &notes {
        let _ = writeln!(t, "# note: {n}");
    }
    for u in &untranslated {
        let _ = writeln!(t, "# NOT TRANSLATED: {u}");
    }
    Ok(Imported {
        toml: t,
        untranslated,
        notes,
    })
}

/// An ether SAP as Veritas writes it: `0xcafe` or decimal.
fn parse_sap(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Escape for a TOML basic string.
fn toml_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn run(args: &ImportArgs) -> u8 {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let texts = (|| -> Result<_, String> {
        Ok((
            read(&args.llttab)?,
            read(&args.llthosts)?,
            args.gabtab.as_deref().map(read).transpose()?,
        ))
    })();
    let (llttab, llthosts, gabtab) = match texts {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil config import: {e}");
            return exit::FAILURE;
        }
    };
    let imported = match translate(&Sources {
        llttab: &llttab,
        llthosts: &llthosts,
        gabtab: gabtab.as_deref(),
        node: args.node.as_deref(),
        key_file: &args.key,
    }) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("vigil config import: {e}");
            return exit::FAILURE;
        }
    };
    match &args.output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &imported.toml) {
                eprintln!("vigil config import: {}: {e}", out.display());
                return exit::FAILURE;
            }
            eprintln!("vigil config import: wrote {}", out.display());
        }
        None => print!("{}", imported.toml),
    }
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    for u in &imported.untranslated {
        eprintln!("not translated: {u}");
    }
    if args.keygen {
        match crate::keys::write_new_key(&args.key, false) {
            Ok(id) => eprintln!(
                "{}: new cluster key, key ID {id}; copy it to every node (mode 0600)",
                args.key.display()
            ),
            Err(e) => {
                eprintln!("vigil config import: {e}");
                return exit::FAILURE;
            }
        }
    } else {
        eprintln!(
            "next: make the key with `vigil keygen {}` (or rerun with --keygen), copy it and the config to every node, then `vigil config check`",
            args.key.display()
        );
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil::config::{ClusterConfig, LinkKind, NodeLinkAddr};
    use vigil_llt::config::LinkPriority;

    /// A fresh directory with a key file in it; the key's path.
    fn key_in_temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-import-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        crate::keys::write_new_key(&key, false).unwrap();
        key
    }

    fn import(
        name: &str,
        llttab: &str,
        llthosts: &str,
        gabtab: Option<&str>,
    ) -> (Imported, ClusterConfig) {
        let key = key_in_temp(name);
        let out = translate(&Sources {
            llttab,
            llthosts,
            gabtab,
            node: None,
            key_file: &key,
        })
        .unwrap();
        let cfg = ClusterConfig::parse(&out.toml, &key.with_file_name("cluster.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{}", out.toml));
        (out, cfg)
    }

    const HOSTS3: &str = "0 galaxy\n1 nebula\n2 saturn\n";

    #[test]
    fn ether_links_by_interface() {
        let llttab = "set-node galaxy\nset-cluster 2\nlink eth1 eth1 - ether - -\nlink eth2 eth2 - ether - -\n";
        let (out, cfg) = import("ether", llttab, HOSTS3, Some("/sbin/gabconfig -c -n3\n"));
        assert_eq!(cfg.cluster.id.0, 2);
        assert_eq!(cfg.cluster.seed, 3);
        let names: Vec<(u8, &str)> = cfg
            .nodes
            .iter()
            .map(|n| (n.id.get(), n.name.as_str()))
            .collect();
        assert_eq!(names, [(0, "galaxy"), (1, "nebula"), (2, "saturn")]);
        assert_eq!(cfg.links.len(), 2);
        assert!(cfg.links.iter().all(|l| l.kind == LinkKind::Ether));
        assert_eq!(
            cfg.nodes[1].links[1],
            NodeLinkAddr::Ether {
                interface: "eth2".into()
            }
        );
        assert!(out.untranslated.is_empty(), "{:?}", out.untranslated);
        assert!(out.notes.iter().any(|n| n.contains("the local node's")));
    }

    #[test]
    fn udp_links_with_set_addr() {
        let llttab = "\
set-node nebula
set-cluster 1042
link link1 udp - udp 50000 - 192.168.9.2 192.168.9.255
link link2 udp - udp 50001 - 192.168.10.2 192.168.10.255
set-addr 0 link1 192.168.9.1
set-addr 0 link2 192.168.10.1
set-addr 2 link1 192.168.9.3
set-addr 2 link2 192.168.10.3
set-bcasthb 0
set-arp 0
";
        let (out, cfg) = import("udp", llttab, HOSTS3, Some("/sbin/gabconfig -c -n2\n"));
        assert_eq!(cfg.cluster.id.0, 1042);
        assert_eq!(cfg.cluster.seed, 2);
        assert_eq!(cfg.links.len(), 2);
        assert_eq!(cfg.links[0].kind, LinkKind::Udp);
        assert_eq!(cfg.links[1].port, Some(50001));
        let addr = |node: usize, link: usize| match &cfg.nodes[node].links[link] {
            NodeLinkAddr::Udp { addr, .. } => addr.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(addr(0, 0), "192.168.9.1:50000");
        assert_eq!(addr(1, 0), "192.168.9.2:50000");
        assert_eq!(addr(2, 1), "192.168.10.3:50001");
        // set-bcasthb and set-arp are listed, in the TOML too.
        assert_eq!(out.untranslated.len(), 2, "{:?}", out.untranslated);
        assert!(out
            .toml
            .contains("# NOT TRANSLATED: llttab line 9: `set-bcasthb 0`"));
    }

    #[test]
    fn a_low_priority_link() {
        let llttab = "set-node 0\nset-cluster 9\nlink eth1 eth1 - ether - -\nlink-lowpri eth0 eth0 - ether - -\n";
        let (_, cfg) = import("lowpri", llttab, "0 alpha\n1 beta\n", None);
        assert_eq!(cfg.links[0].priority, LinkPriority::High);
        assert_eq!(cfg.links[1].priority, LinkPriority::Low);
        assert_eq!(cfg.cluster.seed, 2); // no gabtab: every node
        assert_eq!(cfg.nodes[1].name, "beta");
    }

    #[test]
    fn timers_in_set_timer() {
        let llttab = "\
set-node galaxy
set-cluster 3
link eth1 eth1 - ether - -
set-timer heartbeat:50
set-timer heartbeatlo:100
set-timer peertrouble:200
set-timer peerinact:1600
set-timer oos:10
";
        let (out, cfg) = import("timers", llttab, HOSTS3, Some("gabconfig -c -n 2"));
        let ms = |d: std::time::Duration| d.as_millis();
        assert_eq!(ms(cfg.timers.heartbeat), 500);
        assert_eq!(ms(cfg.timers.heartbeat_lowpri), 1000);
        assert_eq!(ms(cfg.timers.peer_trouble), 2000);
        assert_eq!(ms(cfg.timers.peer_inactive), 16000);
        assert_eq!(cfg.cluster.seed, 2);
        assert_eq!(out.untranslated.len(), 1, "{:?}", out.untranslated);
        assert!(out.untranslated[0].contains("oos"));
    }

    #[test]
    fn mac_addressed_ether_links_are_listed_not_guessed() {
        let key = key_in_temp("mac");
        let out = translate(&Sources {
            llttab: "set-node galaxy\nset-cluster 2\nlink eth1 eth-00:04:23:AC:12:C4 - ether - -\n",
            llthosts: HOSTS3,
            gabtab: None,
            node: None,
            key_file: &key,
        })
        .unwrap();
        assert_eq!(out.untranslated.len(), 1);
        assert!(out.untranslated[0].contains("00:04:23:AC:12:C4"));
        assert!(out.toml.contains("CHANGEME"));
    }
}
