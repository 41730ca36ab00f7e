//! Writes the generated part of the seed corpus: real frames from two llt cores
//! talking, the llt core target's programs replaying them, every port-`b` message
//! kind, and every control request. Run from `fuzz/`:
//! `cargo run --example seed_corpus`. The config seeds are plain files.

use std::path::Path;
use std::time::Duration;
use vigil_fuzz::{llt_setup, NODES, OP_RAW, OP_TIMEOUT};
use vigil_llt::types::{Generation, Incarnation, Instant, NodeId, Port};
use vigil_llt::wire::{self, Kind};
use vigil_llt::{Llt, Output};
use vigil_membership::{Ballot, Member, Msg, NodeSet, View};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn view() -> View {
    let members = (0..3u8)
        .map(|i| Member {
            id: NodeId(i),
            incarnation: Incarnation(1000 + u64::from(i)),
            ports: 0b11,
        })
        .collect();
    View::new(Generation(42), members, None)
}

fn messages() -> Vec<(&'static str, Msg)> {
    let b = Ballot {
        round: 3,
        node: NodeId(2),
        incarnation: Incarnation(1002),
    };
    vec![
        (
            "reach",
            Msg::Reach {
                up: NodeSet::from_bits(0b1011),
                ports: 3,
                highest: Generation(9),
                installed: Generation(8),
            },
        ),
        (
            "prepare",
            Msg::Prepare {
                slot: Generation(8),
                ballot: b,
            },
        ),
        (
            "promise",
            Msg::Promise {
                slot: Generation(8),
                ballot: b,
                accepted: Some((b, view())),
            },
        ),
        (
            "promise_empty",
            Msg::Promise {
                slot: Generation(8),
                ballot: b,
                accepted: None,
            },
        ),
        (
            "nack",
            Msg::Nack {
                slot: Generation(8),
                promised: b,
                highest: Generation(11),
            },
        ),
        (
            "accept",
            Msg::Accept {
                slot: Generation(8),
                ballot: b,
                value: view(),
            },
        ),
        (
            "accepted",
            Msg::Accepted {
                slot: Generation(8),
                ballot: b,
                heard_ago_us: vec![(NodeId(4), 812_000)],
            },
        ),
        (
            "decided",
            Msg::Decided {
                view: view(),
                settle_us: 5,
            },
        ),
        (
            "lost",
            Msg::Lost {
                slot: Generation(8),
            },
        ),
        (
            "join",
            Msg::Join {
                incarnation: Incarnation(77),
                ports: 3,
            },
        ),
        ("leave", Msg::Leave),
        (
            "excluded",
            Msg::Excluded {
                incarnation: Incarnation(77),
                generation: Generation(9),
            },
        ),
    ]
}

/// Two cores of the llt core target's cluster, the target's local node and a peer,
/// run for `secs` seconds in 10 ms steps; the peer sends a few port-`b` messages once
/// it is up. Returns the target's program (the peer's frames as they reach the local
/// node, between timeouts) and the frames themselves.
fn exchange(setup: u8, secs: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (cfg, me) = llt_setup(setup);
    let peer = NodeId((me.0 + 1) % NODES);
    let t0 = Instant::from_nanos(1_000_000_000);
    let mut local = Llt::new(cfg.clone(), me, Incarnation(1_000), t0, 0).expect("config");
    let mut remote = Llt::new(cfg, peer, Incarnation(2_000), t0, 0).expect("config");
    let mut program = vec![setup];
    let mut frames = Vec::new();
    let mut msgs = messages().into_iter().map(|(_, m)| m.encode());
    let step = Duration::from_millis(10);
    let mut now = t0;
    while now < t0 + Duration::from_secs(secs) {
        now += step;
        program.extend_from_slice(&[OP_TIMEOUT, 0, 100]);
        local.handle_timeout(now);
        remote.handle_timeout(now);
        if remote.peer_up(me) {
            if let Some(body) = msgs.next() {
                let _ = remote.send(now, me, Port(b'b'), &body);
            }
        }
        while let Some(out) = local.poll_output() {
            if let Output::Transmit(tx) = out {
                remote.handle_frame(now, tx.link, None, &tx.bytes);
            }
        }
        while let Some(out) = remote.poll_output() {
            if let Output::Transmit(tx) = out {
                if tx.to.is_some_and(|to| to != me) {
                    continue;
                }
                program.push(OP_RAW);
                program.push(tx.link.0);
                program.extend_from_slice(&(tx.bytes.len() as u16).to_be_bytes());
                program.extend_from_slice(&tx.bytes);
                frames.push(tx.bytes);
            }
        }
    }
    (program, frames)
}

fn main() {
    for (name, m) in messages() {
        write("membership_msg", name, &m.encode());
    }

    // setup bits: 0 keyed, 1-2 links, 3-4 local node, 5 no listening, 6 up after one.
    for (name, setup, secs) in [
        ("plain_1link", 0u8, 2),
        ("keyed_2links", 0b0000_0011, 2),
        ("keyed_3links_node2", 0b0001_0101, 2),
        ("fast_up", 0b0110_0000, 1),
    ] {
        let (program, frames) = exchange(setup, secs);
        write("llt_core", name, &program);
        // A heartbeat, and the first and last data frames, as decoder seeds.
        let kind = |f: &Vec<u8>| wire::decode(f).map(|fr| fr.header.kind).ok();
        let hb = frames.iter().find(|f| kind(f) == Some(Kind::Heartbeat));
        let data: Vec<_> = frames
            .iter()
            .filter(|f| kind(f) == Some(Kind::Data))
            .collect();
        for (kind, f) in [
            ("heartbeat", hb),
            ("data_first", data.first().copied()),
            ("data_last", data.last().copied()),
        ] {
            if let Some(f) = f {
                write("llt_decode", &format!("{name}_{kind}"), f);
            }
        }
    }

    for (name, line) in [
        ("status", r#"{"cmd":"status"}"#),
        ("manual_seed", r#"{"cmd":"manual_seed"}"#),
        ("stop", r#"{"cmd":"stop"}"#),
        (
            "fault_block",
            r#"{"cmd":"fault","op":"block","peers":[1,2],"links":["a"],"direction":"both"}"#,
        ),
        (
            "fault_unblock",
            r#"{"cmd":"fault","op":"unblock","peers":[2],"links":[]}"#,
        ),
        ("fault_clear", r#"{"cmd":"fault","op":"clear"}"#),
        ("fault_show", r#"{"cmd":"fault","op":"show"}"#),
        (
            "fault_slow_store",
            r#"{"cmd":"fault","op":"slow_store","ms":150}"#,
        ),
        ("key_reload", r#"{"cmd":"key_reload"}"#),
        ("subscribe", r#"{"cmd":"subscribe"}"#),
        ("version", r#"{"cmd":"version"}"#),
    ] {
        write("control_request", name, format!("{line}\n").as_bytes());
    }
}
