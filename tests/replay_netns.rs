//! Replayed frames must not count. A keyed three-node cluster (`seed = 2`, the
//! default timers, two UDP links on two bridges) runs in network namespaces while
//! every datagram on its bridges is recorded, from before the daemons start. Then:
//!
//! - **phantom seed**: n0 is killed, cut off from n1 and n2 (nftables in their
//!   namespaces), and started again, a new incarnation that knows nothing of its
//!   peers' sequence numbers. The recorded frames of its peers are injected into its
//!   veths with their recorded timing: (a) n1's frames to n0, from another address
//!   and port; (b) every frame of n1 and n2, re-addressed to n0 where it was sent
//!   elsewhere, from their own addresses and MACs. n0 must install no view, gain no
//!   authority and count what it received as stale; n1 and n2 must not notice.
//! - **zombie**: n2's frames are recorded while the cluster runs; n2 is killed and
//!   its frames are replayed, in a loop, to n0 and n1. The survivors must remove it
//!   within the usual detection time; then n1 is restarted (new incarnation) while
//!   the replay goes on, and n2 must never show up there.
//!
//! Frames count for a receiver only when they echo its current incarnation; a frame
//! that does not is dropped under a freshness reason (see [`FRESHNESS`]). Needs root;
//! under `CI=true` it must run.

use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::{Duration, Instant};
use vigil_lab::capture::{self, Datagram, Recorder, Replayer, Shot};
use vigil_lab::harness::*;

/// Drop reasons that say a frame is not fresh for its receiver: it echoes another
/// incarnation of the receiver (`stale_echo`), its sequence number was seen before
/// (`replay`), or its sender's incarnation is older than one already heard
/// (`stale_incarnation`).
const FRESHNESS: [&str; 3] = ["stale_echo", "replay", "stale_incarnation"];

/// The default timer profile: a peer is down after `peer_inactive` of silence, a
/// race lasts at most `race_timeout`, and survivors wait out the lease (plus drift)
/// before their clients see the new view.
const PEER_INACTIVE: Duration = Duration::from_millis(600);
const RACE_TIMEOUT: Duration = Duration::from_millis(200);
const LEASE: Duration = Duration::from_millis(500);
/// Slack on every deadline, for a busy two-core machine.
const MARGIN: Duration = Duration::from_secs(4);

/// How long the cluster's start is recorded after every node holds authority.
const AFTER_VIEW: Duration = Duration::from_secs(3);
/// How long n2's frames are recorded in the zombie scenario: longer than detection
/// by a wide margin, so one pass of the replay outlasts it.
const ZOMBIE_RECORDING: Duration = Duration::from_secs(12);

/// A keyed lab of three nodes, `seed = 2`, the default timer profile, and a fresh
/// 32-byte key in `{dir}/key` (mode 0600).
fn keyed_lab(tag: &str) -> Lab {
    let lab = lab_with(tag, 3, "seed = 2\nkey_file = \"{dir}/key\"\n", "", "");
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("read /dev/urandom");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(lab.dir.path().join("key"))
        .and_then(|mut f| f.write_all(&key))
        .expect("write the key file");
    lab
}

/// Record both bridges of the lab (link `a` is index 0, link `b` index 1).
fn record(lab: &Lab) -> Recorder {
    Recorder::start(lab.hub.name(), &[lab.bridge(0), lab.bridge(1)])
}

/// The lab node owning `addr`.
fn node_at(lab: &Lab, addr: &SocketAddrV4) -> Option<usize> {
    (0..lab.nodes.len()).find(|&i| (0..2).any(|l| lab.addr(i, l) == *addr.ip()))
}

/// Where injected frames claim to come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The recorded sender's own address, port and MAC.
    Original,
    /// 10.202.{link}.99, port 40001, a made-up MAC: another host on the segment.
    Elsewhere,
}

/// The recorded datagrams sent by `senders` to `target` (with `redirect`, to any
/// node, re-addressed to `target`) as frames for `target`'s veths: at their
/// recorded offset after `origin`, on injector port `port_base + link`.
#[allow(clippy::too_many_arguments)]
fn shots(
    lab: &Lab,
    recorded: &[Datagram],
    senders: &[usize],
    target: usize,
    redirect: bool,
    source: Source,
    origin: Duration,
    port_base: usize,
) -> Vec<Shot> {
    let target_macs = [0, 1].map(|l| capture::mac_of(lab.nodes[target].name(), lab.node_dev(l)));
    recorded
        .iter()
        .filter(|d| d.at >= origin)
        .filter(|d| node_at(lab, &d.src).is_some_and(|s| senders.contains(&s)))
        .filter(|d| match node_at(lab, &d.dst) {
            Some(t) => t == target || redirect,
            None => false,
        })
        .map(|d| {
            let l = d.link;
            let (src_mac, src) = match source {
                Source::Original => (d.src_mac, d.src),
                Source::Elsewhere => (
                    [0x02, 0, 0, 0, l as u8 + 1, 99],
                    SocketAddrV4::new(Ipv4Addr::new(10, 202, l as u8 + 1, 99), 40_001),
                ),
            };
            let dst = SocketAddrV4::new(lab.addr(target, l), lab.port(l));
            Shot {
                at: d.at - origin,
                port: port_base + l,
                frame: capture::udp_frame(src_mac, target_macs[l], src, dst, &d.payload),
            }
        })
        .collect()
}

/// Distinct llt frames (by sender, link, incarnation, sequence number) sent by
/// `senders` whose llt destination is `target` or every node, and how many of them
/// echo no incarnation at all (the sender had not heard the receiver yet).
fn addressed_to(
    lab: &Lab,
    recorded: &[Datagram],
    senders: &[usize],
    target: usize,
) -> (usize, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut no_echo = 0;
    for d in recorded {
        let Some(h) = d.header() else { continue };
        let from = usize::from(h.src.0);
        let to_target = h.dst.is_none_or(|t| usize::from(t.0) == target);
        if senders.contains(&from)
            && to_target
            && node_at(lab, &d.src) == Some(from)
            && seen.insert((from, h.link.0, h.incarnation.0, h.seq))
            && h.echo_incarnation.0 == 0
        {
            no_echo += 1;
        }
    }
    (seen.len(), no_echo)
}

/// `lltstat --json` of a daemon (counters per link and per peer).
fn llt_stats(d: &Daemon) -> Value {
    lltstat_json(&d.socket, &[]).unwrap_or(Value::Null)
}

/// Whether `peer` is up, or has a link up, in `lltstat -nvv --json`.
fn shows_up(nvv: &Value, peer: u64) -> bool {
    node_entry(nvv, peer).is_some_and(|e| {
        e["state"] == "OPEN"
            || e["links"]
                .as_array()
                .is_some_and(|ls| ls.iter().any(|l| l["state"] == "UP"))
    })
}

/// Per link: frames in, `not_for_us` drops, and freshness drops (by reason).
fn freshness(stats: &Value) -> (u64, u64, u64, String) {
    let (mut frames_in, mut not_for_us, mut fresh) = (0, 0, 0);
    let mut text = String::new();
    for l in stats["links"].as_array().into_iter().flatten() {
        frames_in += l["frames_in"].as_u64().unwrap_or(0);
        not_for_us += l["drops"]["not_for_us"].as_u64().unwrap_or(0);
        for r in FRESHNESS {
            fresh += l["drops"][r].as_u64().unwrap_or(0);
        }
        text.push_str(&format!(
            "  link {}: frames_in {} accepted {} drops {}\n",
            l["name"], l["frames_in"], l["frames_accepted"], l["drops"]
        ));
    }
    (frames_in, not_for_us, fresh, text)
}

/// Frames from `peer` the daemon accepted (every link), and whether it has it up.
fn accepted_from(stats: &Value, peer: u64) -> (u64, bool) {
    let Some(p) = stats["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"].as_u64() == Some(peer)))
    else {
        return (0, false);
    };
    let n = p["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["stats"]["frames_in"].as_u64().unwrap_or(0))
        .sum();
    (n, p["up"] == true)
}

/// The events of a log that tell what the membership and fencing did.
fn key_events(d: &Daemon) -> String {
    let names = [
        "daemon.started",
        "peer.up",
        "peer.down",
        "race.started",
        "race.won",
        "race.lost",
        "view.installed",
        "view.client",
        "authority.gained",
        "authority.lost",
        "node.self_fence",
    ];
    let mut s = String::new();
    for e in d.events() {
        if names.iter().any(|n| e["event"] == *n) {
            s.push_str(&format!("    {e}\n"));
        }
    }
    s
}

/// Counts of the events that would show a disturbed member.
fn disturbances(d: &Daemon) -> [usize; 3] {
    ["authority.lost", "node.self_fence", "view.installed"].map(|n| d.events_named(n).len())
}

/// What a restarted n0 did while it was sent replayed frames.
struct Attack {
    label: &'static str,
    sent: u64,
    addressed: usize,
    no_echo: usize,
    /// Highest generation and whether authority was ever seen in `fenceadm -d`.
    polled_generation: u64,
    polled_authority: bool,
    installed: Vec<Value>,
    gained: Vec<Value>,
    /// n0's exit code if it stopped by itself (4: it fenced itself).
    exit: Option<i32>,
    stats: Value,
    log: String,
}

/// Start n0 again and inject the recorded frames of `senders` into its veths,
/// watching it until the replay is over and the race it may have started is long
/// decided. n0 is killed at the end.
fn attack(
    lab: &Lab,
    label: &'static str,
    recorded: &[Datagram],
    origin: Duration,
    senders: &[usize],
    redirect: bool,
    source: Source,
) -> Attack {
    let shots = shots(lab, recorded, senders, 0, redirect, source, origin, 0);
    let (addressed, no_echo) = addressed_to(lab, recorded, senders, 0);
    let span = shots.last().map_or(Duration::ZERO, |s| s.at);
    eprintln!(
        "[{label}] restarting n0; replaying {} datagrams over {span:?} ({addressed} distinct \
         frames addressed to n0, {no_echo} of them echo no incarnation)",
        shots.len()
    );
    let ports = [lab.hub_port(0, 0), lab.hub_port(0, 1)];
    let mut n0 = lab.restart(0, label);
    let replay = Replayer::start(lab.hub.name(), &ports, shots, false);
    let (mut polled_generation, mut polled_authority) = (0, false);
    let mut stats = Value::Null;
    let watch_until = replay.started() + span + RACE_TIMEOUT * 5 + MARGIN;
    while Instant::now() < watch_until && n0.running() {
        if let Some(f) = fenceadm_json(&n0.socket) {
            polled_generation = polled_generation.max(f["generation"].as_u64().unwrap_or(0));
            polled_authority |= f["authority"] == true;
        }
        if let Some(g) = gabconfig_json(&n0.socket) {
            let generation = port_a(&g).map_or(0, |(g, _)| g);
            polled_generation = polled_generation.max(generation);
        }
        // The last answer counts: n0 may stop (fence itself) before the end.
        if let Some(v) = lltstat_json(&n0.socket, &[]) {
            stats = v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = replay.stop();
    if let Some(v) = lltstat_json(&n0.socket, &[]) {
        stats = v;
    }
    let exit = n0.wait_exit(Duration::ZERO);
    let out = Attack {
        label,
        sent,
        addressed,
        no_echo,
        polled_generation,
        polled_authority,
        installed: n0.events_named("view.installed"),
        gained: n0.events_named("authority.gained"),
        stats,
        exit,
        log: key_events(&n0),
    };
    n0.kill();
    out
}

impl Attack {
    /// Print what happened; the failed expectations.
    fn verdict(&self) -> Vec<String> {
        let (frames_in, not_for_us, fresh, links) = freshness(&self.stats);
        let reached = frames_in.saturating_sub(not_for_us);
        let (from_n1, n1_up) = accepted_from(&self.stats, 1);
        let (from_n2, n2_up) = accepted_from(&self.stats, 2);
        eprintln!(
            "[{}] sent {}; n0 received {frames_in} ({not_for_us} not for it), freshness drops \
             {fresh}; accepted from n1 {from_n1} (up {n1_up}), from n2 {from_n2} (up {n2_up}); \
             fenceadm/gabconfig showed generation {} authority {}; exit {:?}\n{links}  \
             n0's log:\n{}",
            self.label,
            self.sent,
            self.polled_generation,
            self.polled_authority,
            self.exit,
            self.log
        );
        let mut failed = Vec::new();
        let l = self.label;
        if !self.installed.is_empty() || self.polled_generation > 0 {
            failed.push(format!(
                "[{l}] n0 installed a view from replayed frames (fenceadm generation {}): {:?}",
                self.polled_generation, self.installed
            ));
        }
        if !self.gained.is_empty() || self.polled_authority {
            failed.push(format!(
                "[{l}] n0 gained authority from replayed frames: {:?}",
                self.gained
            ));
        }
        // Every replayed frame that reached n0 for it is stale for its new
        // incarnation. A tenth is allowed through uncounted (at most the frames sent
        // before their sender had heard n0, which echo no incarnation, plus slack).
        let allowed = reached / 10;
        if fresh + allowed < reached {
            failed.push(format!(
                "[{l}] n0 counted {fresh} of the {reached} replayed frames addressed to it as \
                 stale ({FRESHNESS:?} drops); at least {} expected ({} distinct frames were \
                 addressed to it, {} echoing no incarnation)",
                reached - allowed,
                self.addressed,
                self.no_echo
            ));
        }
        // None is accepted, but for those that echo no incarnation (they cannot name
        // a stale one) and a little slack.
        if from_n1 + from_n2 > self.no_echo as u64 + 3 {
            failed.push(format!(
                "[{l}] n0 accepted {from_n1} replayed frames of n1 and {from_n2} of n2 as live \
                 (at most {} expected: the frames echoing no incarnation, and 3)",
                self.no_echo + 3
            ));
        }
        failed
    }
}

#[test]
fn replayed_frames_neither_seed_nor_empower_a_restarted_node() {
    if !root_or_skip("the replayed-frames test") {
        return;
    }
    let t0 = Instant::now();
    let lab = keyed_lab("ra");
    let recorder = record(&lab);
    // The recording's time of the daemons' start: replays keep their offsets to it.
    let origin = recorder.started().elapsed();
    let mut daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    let g0 = wait_view_with_authority(&daemons, &[0, 1, 2]);
    std::thread::sleep(AFTER_VIEW);
    let recorded = recorder.stop();
    eprintln!(
        "recorded {} datagrams from the start; the seeding as n0 saw it:",
        recorded.len()
    );
    for d in recorded.iter().filter(|d| d.fence_msg().is_some()).take(40) {
        eprintln!("  {}", d.describe());
    }

    // n0 dies and is cut off; n1 and n2 go on as a view of their own.
    daemons[0].kill();
    let n0_addrs: Vec<String> = (0..2).map(|l| lab.addr(0, l).to_string()).collect();
    let cut = partition_ruleset(&n0_addrs);
    nft_apply(&lab.nodes[1], &cut);
    nft_apply(&lab.nodes[2], &cut);
    let survivors = &daemons[1..];
    let mut g1 = 0;
    wait_for(
        PEER_INACTIVE + RACE_TIMEOUT + LEASE + MARGIN * 2,
        "n1 and n2 holding authority on a view of [1, 2]",
        || {
            survivors
                .iter()
                .map(|d| holds_authority(d, &[1, 2], g0))
                .collect::<Option<Vec<u64>>>()
                .is_some_and(|gs| {
                    g1 = gs[0];
                    gs.iter().all(|&g| g == g1)
                })
        },
    );
    eprintln!("n1 and n2 hold authority on view {g1} of [1, 2] (was {g0} of [0, 1, 2])");
    let before = survivors.iter().map(disturbances).collect::<Vec<_>>();

    let attacks = [
        attack(&lab, "a", &recorded, origin, &[1], false, Source::Elsewhere),
        attack(
            &lab,
            "b",
            &recorded,
            origin,
            &[1, 2],
            true,
            Source::Original,
        ),
    ];
    let mut failed: Vec<String> = attacks.iter().flat_map(Attack::verdict).collect();

    // The real cluster did not notice.
    let view = same_view(&survivors.iter().collect::<Vec<_>>(), &[1, 2]);
    if view != Some(g1) {
        failed.push(format!(
            "n1 and n2 no longer agree on view {g1} of [1, 2]: {view:?}"
        ));
    }
    for (d, was) in survivors.iter().zip(&before) {
        if holds_authority(d, &[1, 2], g1 - 1) != Some(g1) {
            failed.push(format!("{} lost authority on view {g1}", d.name));
        }
        if disturbances(d) != *was {
            failed.push(format!(
                "{} logged authority.lost, node.self_fence or view.installed during the \
                 replay:\n{}",
                d.name,
                key_events(d)
            ));
        }
    }
    eprintln!("test took {:?}", t0.elapsed());
    assert!(
        failed.is_empty(),
        "replayed frames counted:\n- {}\n{}",
        failed.join("\n- "),
        dump(survivors)
    );
}

#[test]
fn a_killed_nodes_replayed_frames_do_not_keep_it_up() {
    if !root_or_skip("the replayed-frames test") {
        return;
    }
    let t0 = Instant::now();
    let lab = keyed_lab("rb");
    let mut daemons: Vec<Daemon> = (0..3).map(|i| lab.start(i)).collect();
    let g0 = wait_view_with_authority(&daemons, &[0, 1, 2]);
    let recorder = record(&lab);
    std::thread::sleep(ZOMBIE_RECORDING);
    let recorded = recorder.stop();
    let n2_frames = recorded
        .iter()
        .filter(|d| node_at(&lab, &d.src) == Some(2))
        .count();
    eprintln!(
        "recorded {} datagrams, {n2_frames} from n2, over {ZOMBIE_RECORDING:?}",
        recorded.len()
    );
    // n2's frames to n0 on injector ports 0-1, to n1 on ports 2-3.
    let ports = [
        lab.hub_port(0, 0),
        lab.hub_port(0, 1),
        lab.hub_port(1, 0),
        lab.hub_port(1, 1),
    ];
    let zombie = || {
        let mut s = shots(
            &lab,
            &recorded,
            &[2],
            0,
            false,
            Source::Original,
            Duration::ZERO,
            0,
        );
        s.extend(shots(
            &lab,
            &recorded,
            &[2],
            1,
            false,
            Source::Original,
            Duration::ZERO,
            2,
        ));
        s
    };
    let mut failed = Vec::new();

    // n2 dies; its frames go on. The survivors must drop it all the same.
    daemons[2].kill();
    let killed = Instant::now();
    let replay = Replayer::start(lab.hub.name(), &ports, zombie(), true);
    let bound = PEER_INACTIVE + RACE_TIMEOUT + LEASE + MARGIN;
    let mut g1 = None;
    while killed.elapsed() < bound * 2 && g1.is_none() {
        let gs: Option<Vec<u64>> = daemons[..2]
            .iter()
            .map(|d| holds_authority(d, &[0, 1], g0))
            .collect();
        g1 = gs.filter(|gs| gs[0] == gs[1]).map(|gs| gs[0]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    match g1 {
        Some(g) if took <= bound => {
            eprintln!("n0 and n1 hold authority on view {g} of [0, 1] {took:?} after n2 died")
        }
        Some(g) => failed.push(format!(
            "n0 and n1 took {took:?} to hold authority on view {g} of [0, 1] (bound {bound:?})"
        )),
        None => failed.push(format!(
            "n0 and n1 never removed the replayed n2 ({took:?}):\n{}",
            dump(&daemons[..2])
        )),
    }
    let g1 = g1.unwrap_or(g0);
    // The replay goes on a while: n2 stays down at both.
    let until = Instant::now() + MARGIN;
    let mut seen_up = [0u32; 2];
    while Instant::now() < until {
        for (i, d) in daemons[..2].iter().enumerate() {
            if lltstat_json(&d.socket, &["-nvv"]).is_some_and(|v| shows_up(&v, 2)) {
                seen_up[i] += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = replay.stop();
    for (d, up) in daemons[..2].iter().zip(seen_up) {
        let (frames_in, not_for_us, fresh, _) = freshness(&llt_stats(d));
        eprintln!(
            "{}: n2 seen up in {up} samples after its removal; {sent} replayed frames sent to \
             n0 and n1; frames_in {frames_in} ({not_for_us} not for it), freshness drops {fresh}",
            d.name
        );
        if up > 0 {
            failed.push(format!(
                "{} showed n2 up again after removing it, while its frames were replayed",
                d.name
            ));
        }
    }

    // n1 restarts: a new incarnation that knows nothing of n2's sequence numbers.
    // The replay starts over; n2 must not come up at the new n1.
    daemons[1].kill();
    let n1 = lab.restart(1, "restarted");
    let replay = Replayer::start(lab.hub.name(), &ports, zombie(), true);
    let watch = ZOMBIE_RECORDING + MARGIN;
    let (mut zombie_up, mut first_up) = (0u32, None);
    let mut samples = 0u32;
    while replay.started().elapsed() < watch {
        if let Some(v) = lltstat_json(&n1.socket, &["-nvv"]) {
            samples += 1;
            if shows_up(&v, 2) {
                zombie_up += 1;
                first_up.get_or_insert(replay.started().elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = replay.stop();
    let stats = llt_stats(&n1);
    let (frames_in, not_for_us, fresh, links) = freshness(&stats);
    let (from_n2, _) = accepted_from(&stats, 2);
    let peer_up = n1
        .events_named("peer.up")
        .into_iter()
        .filter(|e| e["peer"] == 2)
        .collect::<Vec<_>>();
    eprintln!(
        "restarted n1: n2 seen up in {zombie_up} of {samples} lltstat samples (first after \
         {first_up:?}); accepted {from_n2} frames from n2; {sent} replayed frames sent to n0 \
         and n1; frames_in {frames_in} ({not_for_us} not for it), freshness drops {fresh}\n\
         {links}  restarted n1's log:\n{}",
        key_events(&n1)
    );
    if zombie_up > 0 || !peer_up.is_empty() {
        failed.push(format!(
            "the dead n2 showed up at the restarted n1 in {zombie_up} of {samples} lltstat \
             samples (first {first_up:?} after the replay began), peer.up events {peer_up:?}"
        ));
    }
    if from_n2 > 3 {
        failed.push(format!(
            "the restarted n1 accepted {from_n2} replayed frames of the dead n2 as live \
             (expected them dropped as {FRESHNESS:?})"
        ));
    }
    // The survivors end in one view of [0, 1] (the new n1 joined), with authority.
    let both = [&daemons[0], &n1];
    let view = wait_for_view(&both, &[0, 1], g1);
    match view {
        Some(g) => eprintln!("n0 and the restarted n1 hold authority on view {g} of [0, 1]"),
        None => failed.push(format!(
            "n0 and the restarted n1 do not hold authority on one view of [0, 1] above \
             {g1}:\n{}{}",
            key_events(&daemons[0]),
            key_events(&n1)
        )),
    }
    eprintln!("test took {:?}", t0.elapsed());
    assert!(
        failed.is_empty(),
        "a dead node's replayed frames counted:\n- {}",
        failed.join("\n- ")
    );
}

/// Wait (a bounded while) until `daemons` hold authority on one view of `members`
/// above `above`; its generation.
fn wait_for_view(daemons: &[&Daemon], members: &[u64], above: u64) -> Option<u64> {
    let deadline = Instant::now() + PEER_INACTIVE + RACE_TIMEOUT + LEASE + MARGIN * 2;
    while Instant::now() < deadline {
        let gs: Option<Vec<u64>> = daemons
            .iter()
            .map(|d| holds_authority(d, members, above))
            .collect();
        if let Some(gs) = gs.filter(|gs| gs.windows(2).all(|w| w[0] == w[1])) {
            return Some(gs[0]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
