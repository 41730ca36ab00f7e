//! `[witness]` in the cluster config, and the witness's own file.

use super::witness::WitnessFile;
use super::*;
use crate::testing::TempDir;

/// Two nodes on links a and b, a witness on link w, keyed with `cluster.key` and
/// `witness.key` in `dir` (written here, mode 0600).
fn keyed(dir: &Path, witness: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    for (name, bytes) in [
        ("cluster.key", b"cluster-key-0123456789abcdef0123"),
        ("witness.key", b"witness-key-0123456789abcdef0123"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    format!(
        r#"
[cluster]
name = "two"
id = 9
key_file = "cluster.key"

[[links]]
name = "a"
kind = "udp"
port = 5001

[[links]]
name = "w"
kind = "udp"
port = 5009

{witness}

[[nodes]]
id = 0
name = "n0"
links = {{ a = "10.0.0.1", w = "192.0.2.1" }}

[[nodes]]
id = 1
name = "n1"
links = {{ a = "10.0.0.2", w = "192.0.2.2" }}
"#
    )
}

const WITNESS: &str =
    "[witness]\nlink = \"w\"\naddress = \"192.0.2.9\"\nkey_file = \"witness.key\"\n";

fn parse_in(dir: &Path, text: &str) -> Result<ClusterConfig, ConfigError> {
    ClusterConfig::parse(text, &dir.join("cluster.toml"))
}

#[track_caller]
fn refused_in(dir: &Path, text: &str, field: &str, reason: &str) {
    let e = parse_in(dir, text).expect_err("config should be refused");
    assert_eq!(e.field, field, "wrong field in {e}");
    assert!(
        e.reason.contains(reason),
        "reason {:?} lacks {reason:?}",
        e.reason
    );
}

#[test]
fn a_witness_section_reaches_llt_and_the_fence_core() {
    let dir = TempDir::made("witness-cfg");
    let c = parse_in(&dir.0, &keyed(&dir.0, WITNESS)).unwrap();
    let w = c.witness.as_ref().expect("a witness");
    assert_eq!(w.link, LinkId(1));
    assert_eq!(w.address, "192.0.2.9:5009".parse().unwrap());
    // Defaults: the cluster's heartbeat, twice its detection timers, one vote.
    assert_eq!(w.heartbeat, c.timers.heartbeat);
    assert_eq!(w.peer_trouble, c.timers.peer_trouble * 2);
    assert_eq!(w.peer_inactive, c.timers.peer_inactive * 2);
    assert_eq!(w.weight, 1);
    let wk = w.key.clone().expect("the witness key is read");
    assert_ne!(Some(wk.id), c.cluster.key.as_ref().map(|k| k.id));

    let llt = c.llt_config();
    assert_eq!(llt.nodes, vec![NodeId(0), NodeId(1), WITNESS_ID]);
    let wl = llt.witness.expect("llt knows the witness link");
    assert_eq!((wl.id, wl.link), (WITNESS_ID, LinkId(1)));
    assert_eq!(wl.keys, vec![wk]);
    assert_eq!(
        llt.keys,
        c.frame_keys(),
        "the cluster key stays on the other links"
    );

    let f = c.fence_config();
    assert!(f.witness);
    assert!(
        !f.nodes.contains(WITNESS_ID),
        "the witness is no node of the fence core"
    );
    assert_eq!(c.weights().of(WITNESS_ID), 1);
    // With a witness, a two-node cluster is not warned about a crash of node 0.
    assert!(
        !c.warnings().iter().any(|w| w.contains("two-node")),
        "{:?}",
        c.warnings()
    );
    let node = c.witness_node().unwrap();
    assert_eq!(node.id, WITNESS_ID);
    assert!(matches!(node.links[0], NodeLinkAddr::Absent));
    assert!(matches!(node.links[1], NodeLinkAddr::Udp { addr, .. } if addr == w.address));
}

#[test]
fn witness_rules() {
    let dir = TempDir::made("witness-rules");
    let d = &dir.0;
    let with = |extra: &str| keyed(d, &format!("{WITNESS}{extra}"));
    refused_in(
        d,
        &keyed(d, "[witness]\nlink = \"w\"\naddress = \"192.0.2.9\"\n"),
        "witness.key_file",
        "is required on a keyed cluster",
    );
    refused_in(
        d,
        &keyed(
            d,
            "[witness]\nlink = \"w\"\naddress = \"192.0.2.9\"\nkey_file = \"cluster.key\"\n",
        ),
        "witness.key_file",
        "the same key as cluster.key_file",
    );
    refused_in(
        d,
        &keyed(d, &WITNESS.replace("link = \"w\"", "link = \"x\"")),
        "witness.link",
        "no link named x (the links are: a, w)",
    );
    refused_in(
        d,
        &keyed(d, WITNESS).replace("port = 5009\n", "port = 5009\npriority = \"low\"\n"),
        "witness.link",
        "low priority",
    );
    refused_in(
        d,
        &keyed(d, &WITNESS.replace("192.0.2.9", "192.0.2.1:5009")),
        "witness.address",
        "also an address of node n0",
    );
    refused_in(
        d,
        &keyed(d, &WITNESS.replace("192.0.2.9", "not-an-address")),
        "witness.address",
        "is not an address",
    );
    // The default lease is 500 ms: a heartbeat above a third of it is refused.
    refused_in(
        d,
        &with("heartbeat = 200\n"),
        "witness.heartbeat",
        "a third of timers.lease",
    );
    refused_in(
        d,
        &with("heartbeat = 100\npeer_trouble = 100\n"),
        "witness.peer_trouble",
        "more than witness.heartbeat",
    );
    refused_in(
        d,
        &with("peer_trouble = 900\npeer_inactive = 900\n"),
        "witness.peer_inactive",
        "more than witness.peer_trouble",
    );
    refused_in(
        d,
        &with("weight = 0\n"),
        "witness.weight",
        "must be 1..=255",
    );
    refused_in(
        d,
        &keyed(d, WITNESS).replace("id = 1\nname = \"n1\"", "id = 63\nname = \"n1\""),
        "witness.link",
        "the witness's ID",
    );
    refused_in(
        d,
        &keyed(d, WITNESS)
            .replace("[[links]]\nname = \"a\"\nkind = \"udp\"\nport = 5001\n", "")
            .replace("a = \"10.0.0.1\", ", "")
            .replace("a = \"10.0.0.2\", ", ""),
        "witness.link",
        "the only link",
    );
    refused_in(
        d,
        &with("bogus = 1\n"),
        "witness.bogus",
        "unknown field `bogus`",
    );
    let c = parse_in(
        d,
        &with("heartbeat = 150\npeer_trouble = 2000\npeer_inactive = 4000\nweight = 2\n"),
    )
    .unwrap();
    let w = c.witness.unwrap();
    assert_eq!(
        (w.heartbeat, w.peer_trouble, w.peer_inactive, w.weight),
        (
            Duration::from_millis(150),
            Duration::from_millis(2000),
            Duration::from_millis(4000),
            2
        )
    );
}

#[test]
fn the_witness_reads_a_cluster_file_without_the_cluster_key() {
    let dir = TempDir::made("witness-load");
    let d = &dir.0;
    let path = d.join("cluster.toml");
    std::fs::write(&path, keyed(d, WITNESS)).unwrap();
    std::fs::remove_file(d.join("cluster.key")).unwrap();
    // A node cannot run without its cluster key...
    let e = ClusterConfig::load(&path).unwrap_err();
    assert_eq!(e.field, "cluster.key_file");
    // ...the witness never reads it.
    let c = ClusterConfig::load_for_witness(&path, None).unwrap();
    assert!(c.cluster.key.is_none());
    assert!(c.witness.as_ref().and_then(|w| w.key.as_ref()).is_some());
    let llt = c.llt_config();
    assert!(llt.keys.is_empty());
    assert_eq!(llt.witness.map(|w| w.keys.len()), Some(1));
    // Its own copy of the witness key, elsewhere.
    std::fs::rename(d.join("witness.key"), d.join("mine.key")).unwrap();
    assert_eq!(
        ClusterConfig::load_for_witness(&path, None)
            .unwrap_err()
            .field,
        "witness.key_file"
    );
    let c = ClusterConfig::load_for_witness(&path, Some(d.join("mine.key"))).unwrap();
    assert_eq!(c.witness.unwrap().key_file, Some(d.join("mine.key")));
    // A cluster file without [witness] is no cluster a witness serves.
    std::fs::write(&path, keyed(d, "")).unwrap();
    let e = ClusterConfig::load_for_witness(&path, None).unwrap_err();
    assert_eq!(e.field, "witness");
}

#[test]
fn the_witness_file_serves_clusters_by_id() {
    let dir = TempDir::made("witness-file");
    let d = &dir.0;
    std::fs::write(d.join("one.toml"), keyed(d, WITNESS)).unwrap();
    std::fs::write(
        d.join("two.toml"),
        keyed(d, WITNESS).replace("id = 9", "id = 10"),
    )
    .unwrap();
    let wpath = d.join("witness.toml");
    let text = "[witness]\nstate_dir = \"state\"\nrun_dir = \"run\"\n\n[[clusters]]\nconfig = \"one.toml\"\n\n[[clusters]]\nconfig = \"two.toml\"\n";
    let f = WitnessFile::parse(text, &wpath).unwrap();
    assert_eq!(f.clusters.len(), 2);
    assert_eq!(f.state_dir, d.join("state"));
    assert_eq!(
        f.socket_path(ClusterId(10)),
        d.join("run").join("witness-10.sock")
    );
    assert_eq!(WitnessFile::state_name(ClusterId(9)), "witness-9");
    // The same cluster ID twice is refused, naming both files.
    let dup = text.replace("two.toml", "one.toml");
    let e = WitnessFile::parse(&dup, &wpath).unwrap_err();
    assert_eq!(e.field, "clusters[1].config");
    assert!(e.reason.contains("cluster ID 9"), "{e}");
    // No cluster at all, an unknown key, a cluster file that is not there.
    assert_eq!(
        WitnessFile::parse("[witness]\n", &wpath).unwrap_err().field,
        "clusters"
    );
    assert!(WitnessFile::parse("[witness]\nbogus = 1\n", &wpath).is_err());
    let e = WitnessFile::parse("[[clusters]]\nconfig = \"missing.toml\"\n", &wpath).unwrap_err();
    assert_eq!(e.file, d.join("missing.toml"));
}
