//! Three daemons in three network namespaces joined by two bridges: link `a` is UDP
//! over one bridge, link `b` raw Ethernet over the other. Needs root; under `CI=true`
//! it must run.

use std::path::PathBuf;
use std::time::Duration;
use vigil_lab::harness::*;

struct Lab {
    _hub: Netns,
    nodes: Vec<Netns>,
    dir: TempDir,
    config: PathBuf,
}

/// Bridges `br-a` and `br-b` live in a hub namespace; node `i` has `eth1` (10.201.1.i+1)
/// on `br-a` and `eth2` (no address, raw frames) on `br-b`.
fn lab(tag: &str, n: usize) -> Lab {
    let id = std::process::id() % 100_000;
    let hub = bridge_hub(format!("vg{id}{tag}h"), &["br-a", "br-b"]);
    let mut nodes = Vec::new();
    for i in 0..n {
        let ns = Netns::new(format!("vg{id}{tag}n{i}"));
        attach(
            &hub,
            &ns,
            &format!("{tag}{i}"),
            Some(&format!("10.201.1.{}/24", i + 1)),
        );
        nodes.push(ns);
    }
    let dir = TempDir::new(&format!("netns-{tag}"));
    let key = default_key_lines(dir.path(), "");
    let mut t = format!(
        "[cluster]\nname = \"ns\"\nid = 77\nrun_dir = \"{d}\"\nstate_dir = \"{d}\"\n{key}\n\
         [timers]\nheartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 200\npeer_inactive = 400\n\n\
         [[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5601\n\n\
         [[links]]\nname = \"b\"\nkind = \"ether\"\nethertype = 0xCAFE\n",
        d = dir.path().display()
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\n[nodes.links]\na = \"10.201.1.{}\"\nb = \"eth2\"\n",
            i + 1
        ));
    }
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, t).unwrap();
    Lab {
        _hub: hub,
        nodes,
        dir,
        config,
    }
}

/// Give `ns` an `eth1` on the hub's `br-a` (with `addr`) and an `eth2` on `br-b`.
fn attach(hub: &Netns, ns: &Netns, tag: &str, addr: Option<&str>) {
    veth_to_bridge(hub, ns, &format!("h{tag}a"), "eth1", "br-a", addr);
    veth_to_bridge(hub, ns, &format!("h{tag}b"), "eth2", "br-b", None);
}

impl Lab {
    fn start(&self, i: usize) -> Daemon {
        Daemon::start(
            &self.config,
            &format!("n{i}"),
            &self.dir.path().join(format!("n{i}.sock")),
            &self.dir.path().join(format!("n{i}.log")),
            Some(self.nodes[i].name()),
        )
    }
}

fn link_state(v: &serde_json::Value, node: u64, link: usize) -> String {
    node_entry(v, node).unwrap()["links"][link]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[test]
fn one_link_down_is_jeopardy_and_both_down_is_peer_down() {
    if !root_or_skip("the network-namespace cluster test") {
        return;
    }
    let lab = lab("j", 3);
    let daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    let nvv = |i: usize| lltstat_json(&daemons[i].socket, &["-nvv"]);
    let waited = wait_for(
        Duration::from_secs(20),
        "all peers UP on the udp and ether links",
        || (0..3).all(|i| nvv(i).is_some_and(|v| all_peers_up(&v))),
    );
    eprintln!("cluster up on both links after {waited:?}");
    // The ether link shows the peer's MAC address.
    let v = nvv(0).unwrap();
    let mac = node_entry(&v, 1).unwrap()["links"][1]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mac.len(), 17, "ether address should be a MAC: {mac}");

    // Node 2 loses its UDP link (veth eth1 down): still UP over ether, in jeopardy.
    lab.nodes[2].ip(&["link", "set", "eth1", "down"]);
    for i in 0..2 {
        wait_for(
            Duration::from_secs(5),
            "n2's link a DOWN and jeopardy",
            || {
                nvv(i).is_some_and(|v| {
                    let e = node_entry(&v, 2).unwrap();
                    link_state(&v, 2, 0) == "DOWN"
                        && link_state(&v, 2, 1) == "UP"
                        && e["state"] == "OPEN"
                        && e["jeopardy"] == true
                })
            },
        );
    }
    let ev = daemons[0].events();
    assert!(ev
        .iter()
        .any(|e| e["event"] == "jeopardy.entered" && e["peer"] == 2));
    assert!(
        !ev.iter().any(|e| e["event"] == "peer.down"),
        "no peer went down"
    );

    // Then its Ethernet link too: the peer is DOWN.
    lab.nodes[2].ip(&["link", "set", "eth2", "down"]);
    for (i, daemon) in daemons.iter().enumerate().take(2) {
        wait_for(Duration::from_secs(5), "n2 DOWN", || {
            nvv(i).is_some_and(|v| node_entry(&v, 2).unwrap()["state"] == "CONNWAIT")
        });
        let v = nvv(i).unwrap();
        assert_eq!(node_entry(&v, 1 - i as u64).unwrap()["state"], "OPEN");
        assert!(daemon
            .events()
            .iter()
            .any(|e| e["event"] == "peer.down" && e["peer"] == 2));
    }
}

#[test]
fn a_node_id_in_use_is_refused_at_start() {
    if !root_or_skip("the duplicate node ID test") {
        return;
    }
    let lab = lab("d", 3);
    let daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    wait_for(Duration::from_secs(20), "all peers UP", || {
        (0..3)
            .all(|i| lltstat_json(&daemons[i].socket, &["-nvv"]).is_some_and(|v| all_peers_up(&v)))
    });
    // A fourth host on the same segments, misconfigured as n1 (same address on link a).
    let twin_ns = Netns::new(format!("vg{}dtwin", std::process::id() % 100_000));
    attach(&lab._hub, &twin_ns, "dt", Some("10.201.1.2/24"));
    let mut twin = Daemon::start(
        &lab.config,
        "n1",
        &lab.dir.path().join("twin.sock"),
        &lab.dir.path().join("twin.log"),
        Some(twin_ns.name()),
    );
    let code = twin.wait_exit(Duration::from_secs(10));
    let log = twin.log_text();
    assert_eq!(
        code,
        Some(3),
        "expected the duplicate-node exit code: {log}"
    );
    assert!(log.contains("already in use"), "{log}");
    assert!(twin
        .events()
        .iter()
        .any(|e| e["event"] == "node.duplicate_id"));
    // The live cluster was not disturbed.
    for d in &daemons {
        assert!(all_peers_up(&lltstat_json(&d.socket, &["-nvv"]).unwrap()));
        assert!(!d
            .events()
            .iter()
            .any(|e| e["event"] == "peer.down" || e["event"] == "link.down"));
    }
}
