//! `vigil config init --node NAME=ADDR[,ADDR2]...`: a commented starting config for
//! those nodes, with one UDP link per address (two when a node gives two), and a
//! fresh cluster key.

use crate::exit;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `vigil config init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// A node: `NAME=ADDR` (one link) or `NAME=ADDR,ADDR2` (two links); ADDR is an
    /// IPv4 address, optionally with `:PORT`. Node IDs are given in order from 0.
    #[arg(long = "node", value_name = "NAME=ADDR[,ADDR2]", required = true)]
    pub nodes: Vec<String>,
    /// The key file to create (mode 0600) and name in the config.
    #[arg(long, value_name = "PATH", default_value = "/etc/vigil/cluster.key")]
    pub key: PathBuf,
    /// The cluster's name.
    #[arg(long, default_value = "vigil")]
    pub name: String,
    /// The cluster ID carried in every frame (different for clusters sharing a network).
    #[arg(long, default_value_t = 1)]
    pub id: u32,
    /// Where to write the config (an existing file is refused); default: standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// The first link's port; the second link uses the next one.
const FIRST_PORT: u16 = 5101;

/// `NAME=ADDR[,ADDR2]` as (name, addresses).
fn parse_node(spec: &str) -> Result<(String, Vec<String>), String> {
    let (name, addrs) = spec
        .split_once('=')
        .ok_or_else(|| format!("--node {spec}: expected NAME=ADDR or NAME=ADDR,ADDR2"))?;
    let addrs: Vec<String> = addrs.split(',').map(|a| a.trim().to_string()).collect();
    if name.is_empty() || addrs.iter().any(String::is_empty) || addrs.len() > 2 {
        return Err(format!(
            "--node {spec}: expected NAME=ADDR or NAME=ADDR,ADDR2"
        ));
    }
    Ok((name.to_string(), addrs))
}

/// The config text for `nodes` (as given to `--node`).
pub fn init_toml(name: &str, id: u32, nodes: &[String], key: &Path) -> Result<String, String> {
    let nodes: Vec<(String, Vec<String>)> = nodes
        .iter()
        .map(|s| parse_node(s))
        .collect::<Result<_, _>>()?;
    let links = nodes[0].1.len();
    if let Some((n, _)) = nodes.iter().find(|(_, a)| a.len() != links) {
        return Err(format!(
            "node {n} gives a different number of addresses than {}: every node needs one address per link",
            nodes[0].0
        ));
    }
    let n = nodes.len();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# vigil cluster configuration made by `vigil config init`. The same file goes
# on every node; `vigil daemon --config FILE --node NAME` picks the local node.
# Check it with `vigil config check FILE`. Timers are in milliseconds; every key is
# described in docs/config.md and examples/cluster.toml.

[cluster]
name = \"{}\"
id = {id}                        # carried in every frame; unique per network
seed = {}                      # nodes that must see each other before the first
                              # membership forms: more than half of the {n}
key_file = \"{}\"   # the shared secret (made now; copy it to
                              # every node, mode 0600)
# state_dir = \"/var/lib/vigil\"
# run_dir = \"/run/vigil\"

# [timers]                    # the defaults; uncomment to change
# heartbeat = 100
# peer_trouble = 300
# peer_inactive = 600",
        name.replace('"', ""),
        n / 2 + 1,
        key.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    let link_names = ["a", "b"];
    for (l, link) in link_names.iter().take(links).enumerate() {
        let _ = writeln!(
            t,
            "\n[[links]]
name = \"{link}\"
kind = \"udp\"
port = {}                   # for addresses given without a port{}",
            FIRST_PORT + l as u16,
            if l == 0 {
                "\n# priority = \"low\"           # a slow, data-only-when-needed link"
            } else {
                ""
            }
        );
    }
    for (i, (node, addrs)) in nodes.iter().enumerate() {
        let _ = writeln!(t, "\n[[nodes]]\nid = {i}\nname = \"{node}\"\n[nodes.links]");
        for (link, addr) in link_names.iter().zip(addrs) {
            let _ = writeln!(t, "{link} = \"{addr}\"");
        }
    }
    Ok(t)
}

pub fn run(args: &InitArgs) -> u8 {
    let text = match init_toml(&args.name, args.id, &args.nodes, &args.key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil config init: {e}");
            return exit::USAGE;
        }
    };
    // The key is made first: the check below reads it, as `vigil config check` does.
    if let Some(out) = &args.output {
        if out.exists() {
            eprintln!(
                "vigil config init: {} exists; refusing to overwrite it",
                out.display()
            );
            return exit::FAILURE;
        }
    }
    match crate::keys::write_new_key(&args.key, false) {
        Ok(id) => eprintln!(
            "{}: new cluster key, key ID {id}; copy it to every node (mode 0600)",
            args.key.display()
        ),
        Err(e) => {
            eprintln!("vigil config init: {e}");
            return exit::FAILURE;
        }
    }
    let source = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("cluster.toml"));
    if let Err(e) = vigil::config::ClusterConfig::parse(&text, &source) {
        eprintln!("vigil config init: the config would not pass `vigil config check`: {e}");
        return exit::FAILURE;
    }
    match &args.output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &text) {
                eprintln!("vigil config init: {}: {e}", out.display());
                return exit::FAILURE;
            }
            eprintln!(
                "vigil config init: wrote {}; check it with `vigil config check {}`",
                out.display(),
                out.display()
            );
        }
        None => print!("{text}"),
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil::config::{ClusterConfig, NodeLinkAddr};

    #[test]
    fn a_starting_config_passes_the_check() {
        let dir = std::env::temp_dir().join(format!("vigil-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        crate::keys::write_new_key(&key, false).unwrap();
        let nodes: Vec<String> = [
            "n0=10.0.0.1,10.1.0.1",
            "n1=10.0.0.2,10.1.0.2",
            "n2=10.0.0.3,10.1.0.3",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let text = init_toml("demo", 7, &nodes, &key).unwrap();
        let cfg = ClusterConfig::parse(&text, &dir.join("cluster.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.nodes.len(), 3);
        assert_eq!(cfg.links.len(), 2);
        assert_eq!(cfg.cluster.seed, 2);
        assert_eq!(cfg.nodes[2].name, "n2");
        assert!(
            matches!(&cfg.nodes[2].links[1], NodeLinkAddr::Udp { addr, .. } if addr.to_string() == "10.1.0.3:5102")
        );

        let one: Vec<String> = vec!["a=127.0.0.1:6001".into(), "b=127.0.0.1:6002".into()];
        let text = init_toml("two", 8, &one, &key).unwrap();
        let cfg = ClusterConfig::parse(&text, &dir.join("cluster.toml")).unwrap();
        assert_eq!(cfg.links.len(), 1);
        assert_eq!(cfg.cluster.seed, 2);
    }

    #[test]
    fn mismatched_address_counts_are_refused() {
        let nodes: Vec<String> = vec!["a=10.0.0.1,10.1.0.1".into(), "b=10.0.0.2".into()];
        assert!(init_toml("x", 1, &nodes, Path::new("/k")).is_err());
        assert!(parse_node("noequals").is_err());
    }
}
