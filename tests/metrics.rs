//! The Prometheus endpoint (`[metrics] listen`) of a live 3-node loopback cluster:
//! scraped over TCP and parsed with a text-format parser; after `kill -9` of a
//! peer, the generation grew and that peer's links are down.

use prometheus_parse::{Sample, Scrape, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use vigil_lab::harness::{
    dump, loopback_config, wait_for, wait_view_with_authority, Daemon, TempDir,
};

const TIMERS: &str =
    "heartbeat = 50\nheartbeat_lowpri = 100\npeer_trouble = 250\npeer_inactive = 500";

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("its address").port()
}

/// One HTTP/1.1 request; the status line and the body.
fn get(addr: SocketAddr, path: &str) -> Option<(String, String, String)> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: vigil\r\nAccept: text/plain\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    c.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.to_string();
    Some((status, head.to_string(), body.to_string()))
}

fn scrape(addr: SocketAddr) -> Option<Scrape> {
    let (status, head, body) = get(addr, "/metrics")?;
    if status != "HTTP/1.1 200 OK" {
        eprintln!("scrape: {status}: {body}");
        return None;
    }
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "not the text format: {head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    Some(Scrape::parse(lines).expect("the text format parses"))
}

fn value(s: &Sample) -> f64 {
    match s.value {
        Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => v,
        _ => panic!("{} is not a plain value", s.metric),
    }
}

/// The one sample of `name` whose labels include `labels`.
fn get_one(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?}: {} samples",
        found.len()
    );
    found.first().map(|s| value(s))
}

fn link_state(scrape: &Scrape, peer: &str, link: &str, state: &str) -> Option<f64> {
    get_one(
        scrape,
        "vigil_peer_link_state",
        &[("peer", peer), ("link", link), ("state", state)],
    )
}

#[test]
fn a_scrape_shows_generation_authority_and_links_and_follows_a_kill() {
    let dir = TempDir::new("metrics");
    let (config, _) = loopback_config(dir.path(), 3, "", TIMERS, "");
    // Node 0 alone serves metrics (the nodes share a host here, so one port).
    let port = free_tcp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let with_metrics = dir.path().join("cluster-n0.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &with_metrics,
        format!("{text}\n[metrics]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    let mut daemons: Vec<Daemon> = (0..3)
        .map(|i| {
            Daemon::start(
                if i == 0 { &with_metrics } else { &config },
                &format!("n{i}"),
                &dir.path().join(format!("n{i}.sock")),
                &dir.path().join(format!("n{i}.log")),
                None,
            )
        })
        .collect();
    let g1 = wait_view_with_authority(&daemons, &[0, 1, 2]);

    // Only /metrics is served.
    let (status, _, _) = get(addr, "/").expect("an answer to /");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let mut s = None;
    wait_for(
        Duration::from_secs(10),
        "a scrape with every link up",
        || {
            s = scrape(addr);
            s.as_ref().is_some_and(|s| {
                ["n1", "n2"].iter().all(|p| {
                    ["a", "b"]
                        .iter()
                        .all(|l| link_state(s, p, l, "up") == Some(1.0))
                })
            })
        },
    );
    let s = s.unwrap();
    let node = |name: &str| get_one(&s, name, &[("node", "n0")]);
    assert_eq!(
        node("vigil_generation"),
        Some(g1 as f64),
        "{}",
        dump(&daemons)
    );
    assert_eq!(node("vigil_authority"), Some(1.0));
    assert!(node("vigil_fencing_token").unwrap() >= 1.0);
    assert!(node("vigil_lease_remaining_seconds").unwrap() > 0.0);
    assert_eq!(get_one(&s, "vigil_peer_up", &[("peer", "n2")]), Some(1.0));
    assert_eq!(link_state(&s, "n2", "a", "down"), Some(0.0));
    assert!(get_one(
        &s,
        "vigil_peer_link_rtt_seconds",
        &[("peer", "n1"), ("link", "a")]
    )
    .is_some());
    assert!(
        get_one(
            &s,
            "vigil_peer_link_frames_in_total",
            &[("peer", "n1"), ("link", "a")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        get_one(
            &s,
            "vigil_link_drops_total",
            &[("link", "a"), ("reason", "auth")]
        ),
        Some(0.0)
    );
    assert!(node("vigil_heartbeat_gap_p99_seconds").is_some());
    assert_eq!(node("vigil_log_lines_lost_total"), Some(0.0));
    assert_eq!(
        get_one(&s, "vigil_member_state", &[("state", "member")]),
        Some(1.0)
    );

    // kill -9 n2: the survivors race and install a view without it.
    daemons[2].kill();
    let mut after = None;
    wait_for(
        Duration::from_secs(20),
        "a scrape with a new generation and n2's links down",
        || {
            after = scrape(addr);
            after.as_ref().is_some_and(|s| {
                get_one(s, "vigil_generation", &[]).is_some_and(|g| g > g1 as f64)
                    && get_one(s, "vigil_authority", &[]) == Some(1.0)
                    && ["a", "b"]
                        .iter()
                        .all(|l| link_state(s, "n2", l, "down") == Some(1.0))
            })
        },
    );
    let s = after.unwrap();
    assert_eq!(get_one(&s, "vigil_peer_up", &[("peer", "n2")]), Some(0.0));
    assert_eq!(get_one(&s, "vigil_peer_up", &[("peer", "n1")]), Some(1.0));
    assert_eq!(get_one(&s, "vigil_view_members", &[]), Some(2.0));
    // Which survivor raced is not fixed; that both counters are there is.
    assert!(get_one(&s, "vigil_races_won_total", &[]).is_some());
    assert_eq!(get_one(&s, "vigil_races_lost_total", &[]), Some(0.0));
}
