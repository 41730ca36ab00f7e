//! A whole llt core driven by arbitrary input: raw frames, frames forged with the
//! right cluster ID and key (so that input reaches past the MAC check), timeouts,
//! sends and the calls the layers above make. Nothing may panic, and after every
//! timeout the next deadline lies in the future (a driver would spin otherwise).
//!
//! Input: one setup byte (key, link count, local node, listening window), then
//! operations, each a tag byte and its arguments, until the input runs out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use vigil_fuzz::{frame_key, llt_setup, CLUSTER, NODES, OP_RAW, OP_TIMEOUT};
use vigil_llt::types::{
    ClusterId, Generation, Incarnation, Instant, LinkAddr, LinkId, NodeId, Port,
};
use vigil_llt::wire::{self, Header, Kind};
use vigil_llt::{FrameKey, KeyId, Llt, Output};

const OTHER_KEY: [u8; 32] = [0x24; 32];
const MY_INCARNATION: Incarnation = Incarnation(1_000);
const START: Instant = Instant(1_000_000_000);

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
    fn u64(&mut self) -> Option<u64> {
        Some((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (b, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        b
    }
}

/// Sequence numbers and message IDs the forged peers have used, per (node, link);
/// frames may also claim node `NODES`, which is not configured.
struct Forger {
    seq: [[u64; 8]; NODES as usize + 1],
    msg_id: [u64; NODES as usize + 1],
}

fn drain(llt: &mut Llt, sent: &mut Vec<u64>) {
    let mut n = 0;
    while let Some(out) = llt.poll_output() {
        n += 1;
        assert!(n <= 100_000, "outputs without end");
        if let Output::Transmit(tx) = out {
            // What the core sends always decodes, within the frame size.
            assert!(tx.bytes.len() <= wire::MAX_FRAME);
            let f = wire::decode(&tx.bytes).expect("the core sent a frame that does not decode");
            if sent.len() < 64 {
                sent.push(f.header.tx_time_us);
            }
        }
    }
}

fn forge(
    r: &mut Rd<'_>,
    f: &mut Forger,
    now: Instant,
    nlinks: u8,
    sent: &[u64],
) -> Option<Vec<u8>> {
    let a = r.u8()?;
    let b = r.u8()?;
    let src = b % (NODES + 1);
    let link = (b >> 4) % nlinks;
    let kind = if a & 1 == 0 {
        Kind::Heartbeat
    } else {
        Kind::Data
    };
    let dst = match (a >> 1) & 3 {
        0 => None,
        1 => Some(NodeId(r.u8()? % 64)),
        _ => Some(NodeId(0)),
    };
    let seq_step = r.u8()?;
    let s = &mut f.seq[usize::from(src)][usize::from(link)];
    *s = s.wrapping_add(u64::from(seq_step));
    let incarnation = Incarnation(u64::from(r.u8()?));
    let generation = Generation(u64::from(r.u8()? & 0x0f));
    let echo = r.u8()?;
    let (echo_time_us, echo_incarnation) = match echo & 3 {
        0 => (0, Incarnation(0)),
        1 => (
            sent.get(usize::from(echo >> 2)).copied().unwrap_or(1),
            MY_INCARNATION,
        ),
        2 => (
            now.as_micros().saturating_sub(u64::from(echo)),
            MY_INCARNATION,
        ),
        _ => (r.u64()?, Incarnation(r.u64()?)),
    };
    let header = Header {
        kind,
        link: LinkId(link),
        src: NodeId(src),
        dst,
        cluster: if a & 0x08 == 0 { CLUSTER } else { ClusterId(8) },
        incarnation,
        seq: *s,
        generation,
        tx_time_us: now.as_micros(),
        echo_time_us,
        echo_hold_us: u32::from(r.u8()?) * 100,
        echo_incarnation,
        confirm: a & 0x10 != 0,
    };
    let payload = match kind {
        Kind::Heartbeat => Vec::new(),
        Kind::Data => {
            let port = Port(r.u8()?);
            let step = r.u8()?;
            let id = &mut f.msg_id[usize::from(src)];
            *id = id.wrapping_add(u64::from(step));
            let len = usize::from(r.u8()?);
            wire::encode_data(port, *id, r.bytes(len))
        }
    };
    let key = match (a >> 5) & 3 {
        0 => Some(frame_key()),
        // The right key ID with the wrong key: reaches the MAC check.
        1 => Some(FrameKey {
            id: frame_key().id,
            key: OTHER_KEY,
        }),
        2 => None,
        // A key ID the node does not hold.
        _ => Some(FrameKey {
            id: KeyId(0x2424_2424),
            key: OTHER_KEY,
        }),
    };
    Some(wire::encode(&header, &payload, key.as_ref()))
}

/// Runs the input's operations on `llt` until the input runs out.
fn run(llt: &mut Llt, data: &[u8]) -> Option<()> {
    let mut r = Rd(data);
    let nlinks = llt.config().links.len() as u8;
    let mut now = START;
    let mut forger = Forger {
        seq: [[0; 8]; NODES as usize + 1],
        msg_id: [0; NODES as usize + 1],
    };
    let mut sent = Vec::new();
    drain(llt, &mut sent);
    loop {
        let op = r.u8()?;
        match op % 8 {
            OP_TIMEOUT => {
                now += Duration::from_micros(u64::from(r.u16()?) * 100);
                llt.handle_timeout(now);
                drain(llt, &mut sent);
                if let Some(t) = llt.poll_timeout() {
                    assert!(t > now, "after a timeout at {now:?} the next is at {t:?}");
                }
            }
            OP_RAW => {
                let link = LinkId(r.u8()? % 4);
                let len = usize::from(r.u16()?) % 2048;
                let bytes = r.bytes(len);
                llt.handle_frame(now, link, None, bytes);
            }
            2 => {
                let bytes = forge(&mut r, &mut forger, now, nlinks, &sent)?;
                let arrive = LinkId(if op & 0x80 == 0 {
                    wire::decode(&bytes).map_or(0, |f| f.header.link.0)
                } else {
                    (op >> 3) % 4
                });
                let from = (op & 0x40 != 0)
                    .then(|| LinkAddr::Udp(([127, 0, 0, 1], 5000 + u16::from(op)).into()));
                llt.handle_frame(now, arrive, from, &bytes);
            }
            3 => {
                let peer = NodeId(r.u8()? % 64);
                let port = Port(r.u8()?);
                let len = usize::from(r.u16()?) % 1500;
                let _ = llt.send(now, peer, port, r.bytes(len));
            }
            4 => {
                let port = Port(r.u8()?);
                let len = usize::from(r.u8()?);
                let _ = llt.broadcast(now, port, r.bytes(len));
            }
            5 => llt.set_generation(Generation(u64::from(r.u8()?))),
            6 => {
                let b = r.u8()?;
                llt.set_confirm(NodeId(b % 64), b & 0x80 != 0);
            }
            _ => {
                let b = r.u8()?;
                if b == 0xff {
                    llt.silence();
                } else {
                    llt.excuse(Duration::from_micros(u64::from(b) * 1_000));
                }
            }
        }
        drain(llt, &mut sent);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, ops)) = data.split_first() else {
        return;
    };
    let (cfg, me) = llt_setup(setup);
    let mut llt = Llt::new(cfg, me, MY_INCARNATION, START, 0).expect("a valid config");
    let _ = run(&mut llt, ops);
    // The read-only views of whatever state the input left.
    let _ = llt.status();
    let _ = llt.heartbeat_gaps();
    let _ = llt.peers_fingerprint();
    let _ = llt.poll_timeout();
});
