//! The test network both core.rs and witness.rs drive: llt cores joined by every
//! link with a fixed one-way delay, in virtual time.
//!
//! Each test file is its own crate: an item only one of them uses carries
//! `#[allow(dead_code)]`.

use std::collections::BTreeSet;
use std::time::Duration;
use vigil_llt::types::{ClusterId, Incarnation, Instant, LinkId, NodeId, Port};
use vigil_llt::wire::{self, Kind};
use vigil_llt::{DropReason, Event, LinkSpec, LinkState, Llt, LltConfig, Output};

pub const HB: Duration = Duration::from_millis(100);
pub const TROUBLE: Duration = Duration::from_millis(400);
pub const INACTIVE: Duration = Duration::from_millis(800);
pub const DELAY: Duration = Duration::from_millis(1);

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
pub fn at(d: Duration) -> Instant {
    Instant::ZERO + d
}
pub fn n(i: u8) -> NodeId {
    NodeId(i)
}
pub fn l(i: u8) -> LinkId {
    LinkId(i)
}

/// Cluster 7 of `ids` over `links`, on the test timers: beats every `HB` (250 ms on
/// low-priority links), TROUBLE after `TROUBLE`, DOWN after `INACTIVE`, a link UP
/// after 3 fresh beats, and 300 ms of listening at start.
pub fn base_config(ids: Vec<NodeId>, links: Vec<LinkSpec>) -> LltConfig {
    let mut cfg = LltConfig::with_defaults(ClusterId(7), ids, links);
    cfg.heartbeat = HB;
    cfg.heartbeat_lowpri = ms(250);
    cfg.peer_trouble = TROUBLE;
    cfg.peer_inactive = INACTIVE;
    cfg.link_up_count = 3;
    cfg.listen_window = ms(300);
    cfg
}

/// What `node` dropped on `link` for `reason`.
pub fn drop_count(node: &Llt, link: u8, reason: DropReason) -> u64 {
    node.status().links[usize::from(link)]
        .stats
        .drops
        .get(reason)
}

/// A frame in flight, between slots of the network.
struct Flight {
    due: Instant,
    to: usize,
    from: usize,
    link: LinkId,
    bytes: Vec<u8>,
}

/// One transmit as a node handed it out (a broadcast is one, `to` `None`).
#[derive(Clone, Debug)]
pub struct Sent {
    pub at: Instant,
    pub from: NodeId,
    pub to: Option<NodeId>,
    pub link: LinkId,
    pub bytes: Vec<u8>,
}

impl Sent {
    /// Whether this frame goes to `id`: addressed to it, or a broadcast by another.
    #[allow(dead_code)] // core.rs only
    pub fn reaches(&self, id: NodeId) -> bool {
        self.from != id && self.to.is_none_or(|to| to == id)
    }
}

/// The cores of a configuration's nodes, one per slot in the order of `ids`, joined
/// by every link with a fixed one-way delay (`DELAY`): a frame goes to its addressee
/// (a broadcast to every other core), whatever the link, so that the cores alone
/// decide which links carry what. Any (from, to, link) of slots may be cut (frames
/// in flight on it are lost too); a stopped slot neither runs nor receives.
pub struct Net {
    /// The node ID of each slot.
    pub ids: Vec<NodeId>,
    pub nodes: Vec<Llt>,
    /// Stopped slots.
    pub stopped: BTreeSet<usize>,
    /// (from, to, link) slot pairs that lose every frame.
    pub cut: BTreeSet<(usize, usize, u8)>,
    pub now: Instant,
    flights: Vec<Flight>,
    /// (when, at which node, what).
    pub events: Vec<(Instant, NodeId, Event)>,
    /// (to, from, port, body).
    pub delivered: Vec<(NodeId, NodeId, Port, Vec<u8>)>,
    /// Every frame sent, cut or not, in the order sent.
    pub sent: Vec<Sent>,
}

impl Net {
    /// A core for each node of `cfg`, all started at zero; node `id` has incarnation
    /// 1000 + `id` and seed `id`.
    pub fn new(cfg: &LltConfig) -> Net {
        let ids = cfg.nodes.clone();
        let nodes = ids
            .iter()
            .map(|id| {
                let inc = Incarnation(1000 + u64::from(id.0));
                Llt::new(cfg.clone(), *id, inc, Instant::ZERO, u64::from(id.0)).unwrap()
            })
            .collect();
        Net {
            ids,
            nodes,
            stopped: BTreeSet::new(),
            cut: BTreeSet::new(),
            now: Instant::ZERO,
            flights: Vec::new(),
            events: Vec::new(),
            delivered: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// The slot of node `id`.
    pub fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|i| *i == id).unwrap()
    }

    pub fn node(&self, id: NodeId) -> &Llt {
        &self.nodes[self.index(id)]
    }

    /// Takes every output of slot `i`: frames into flight, events and deliveries
    /// into their records.
    pub fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Transmit(tx) => {
                    self.sent.push(Sent {
                        at: self.now,
                        from: self.ids[i],
                        to: tx.to,
                        link: tx.link,
                        bytes: tx.bytes.clone(),
                    });
                    let receivers: Vec<usize> = match tx.to {
                        Some(to) => vec![self.index(to)],
                        None => (0..self.nodes.len()).filter(|j| *j != i).collect(),
                    };
                    for to in receivers {
                        if !self.cut.contains(&(i, to, tx.link.0)) {
                            self.flights.push(Flight {
                                due: self.now + DELAY,
                                to,
                                from: i,
                                link: tx.link,
                                bytes: tx.bytes.clone(),
                            });
                        }
                    }
                }
                Output::Event(e) => self.events.push((self.now, self.ids[i], e)),
                Output::Deliver(d) => self.delivered.push((self.ids[i], d.from, d.port, d.body)),
            }
        }
    }

    /// Run every node until `until`, jumping from one deadline or delivery to the next.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            for i in 0..self.nodes.len() {
                self.drain(i);
            }
            let mut next: Option<Instant> = self.flights.iter().map(|f| f.due).min();
            for (i, node) in self.nodes.iter().enumerate() {
                if self.stopped.contains(&i) {
                    continue;
                }
                if let Some(t) = node.poll_timeout() {
                    next = Some(next.map_or(t, |x| x.min(t)));
                }
            }
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let (due, rest): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
                .into_iter()
                .partition(|f| f.due <= now);
            self.flights = rest;
            for f in due {
                if !self.stopped.contains(&f.to) && !self.cut.contains(&(f.from, f.to, f.link.0)) {
                    self.nodes[f.to].handle_frame(now, f.link, None, &f.bytes);
                }
            }
            for i in 0..self.nodes.len() {
                if self.stopped.contains(&i) {
                    continue;
                }
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.nodes[i].handle_timeout(now);
                }
            }
        }
    }

    /// Cuts `link` between `a` and `b`, both ways.
    pub fn cut_both(&mut self, a: NodeId, b: NodeId, link: u8) {
        let (a, b) = (self.index(a), self.index(b));
        self.cut.insert((a, b, link));
        self.cut.insert((b, a, link));
    }

    /// Heals `link` between `a` and `b`, both ways.
    #[allow(dead_code)] // core.rs only
    pub fn heal_both(&mut self, a: NodeId, b: NodeId, link: u8) {
        let (a, b) = (self.index(a), self.index(b));
        self.cut.remove(&(a, b, link));
        self.cut.remove(&(b, a, link));
    }

    /// When `node` had the events `pred` picks.
    pub fn events_of(&self, node: NodeId, pred: impl Fn(&Event) -> bool) -> Vec<Instant> {
        self.events
            .iter()
            .filter(|(_, i, e)| *i == node && pred(e))
            .map(|(t, _, _)| *t)
            .collect()
    }

    /// The state of `link` to `peer` as `node` sees it.
    pub fn link_state(&self, node: NodeId, peer: NodeId, link: u8) -> LinkState {
        let st = self.node(node).status();
        let p = st.peers.iter().find(|p| p.id == peer).unwrap();
        p.links[usize::from(link)].state
    }

    /// What `node` dropped on `link` for `reason`.
    pub fn drops(&self, node: NodeId, link: u8, reason: DropReason) -> u64 {
        drop_count(self.node(node), link, reason)
    }

    /// The last frame `from` sent that reached `to` on `link`.
    #[allow(dead_code)] // core.rs only
    pub fn capture(&self, from: NodeId, to: NodeId, link: u8) -> Vec<u8> {
        self.sent
            .iter()
            .rev()
            .find(|s| s.from == from && s.reaches(to) && s.link == l(link))
            .map(|s| s.bytes.clone())
            .unwrap()
    }

    /// Heartbeats `from` sent to `to` on `link` in `[start, end)`.
    pub fn beats(&self, from: NodeId, to: NodeId, link: u8, start: Instant, end: Instant) -> usize {
        self.sent
            .iter()
            .filter(|s| {
                s.from == from
                    && s.to == Some(to)
                    && s.link == l(link)
                    && s.at >= start
                    && s.at < end
                    && wire::decode(&s.bytes).unwrap().header.kind == Kind::Heartbeat
            })
            .count()
    }
}

/// Every core sees every peer up, none in jeopardy.
pub fn all_up(net: &Net) -> bool {
    net.nodes
        .iter()
        .all(|node| node.status().peers.iter().all(|p| p.up && !p.jeopardy))
}
