//! `Node`: the one sans-IO state machine a vigil node runs, composed of the llt
//! transport and the fence core (views, the race, leases). The daemon and the
//! simulator both drive it.

use std::collections::VecDeque;
use vigil_fence::{Fence, FenceConfig, FenceEvent, FenceOutput, FenceStatus, PeerInfo};
use vigil_llt::types::{Generation, Incarnation, Instant, LinkAddr, LinkId, NodeId, Port};
use vigil_llt::{Llt, LltConfig, SendError};
use vigil_membership::{port_bit, NodeSet, PortMask, View};

pub use vigil_llt::{ConfigError, Deliver, Event as LltEvent, Status as LltStatus, Transmit};

/// Bound on queued outputs.
const MAX_OUTPUTS: usize = 64 * 1024;

/// What a node step produced, drained in order with [`Node::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A frame to put on a link.
    Transmit(Transmit),
    /// A port message for a client.
    Deliver(Deliver),
    /// Something that happened in the transport.
    Llt(LltEvent),
    /// Something that happened in membership and fencing. On
    /// [`FenceEvent::SelfFence`] the driver acts at once (the node already stopped
    /// sending).
    Fence(FenceEvent),
    /// Make this highest generation durable (write, fsync, rename) before carrying
    /// out any output that follows it.
    Persist(Generation),
}

/// A snapshot of the whole node, for the inspection commands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub llt: LltStatus,
    pub fence: FenceStatus,
}

/// One vigil node as a sans-IO state machine.
#[derive(Clone, Debug)]
pub struct Node {
    llt: Llt,
    fence: Fence,
    ports: PortMask,
    outputs: VecDeque<Output>,
    /// Fingerprint of the peer facts the fence core last stepped on.
    peer_print: u64,
    /// The fence core has not stepped since an input that bypasses the fingerprint.
    fresh: bool,
    /// The peers llt currently confirms.
    confirming: NodeSet,
}

impl Node {
    /// A node `me` in `incarnation`, started at `now`, that has seen generations up
    /// to `persisted` before (from its state file).
    pub fn new(
        llt: LltConfig,
        fence: FenceConfig,
        me: NodeId,
        incarnation: Incarnation,
        now: Instant,
        rng_seed: u64,
        persisted: Generation,
    ) -> Result<Node, ConfigError> {
        let llt = Llt::new(llt, me, incarnation, now, rng_seed)?;
        let fence = Fence::new(fence, me, incarnation, now, persisted);
        let mut node = Node {
            llt,
            fence,
            ports: 0,
            outputs: VecDeque::new(),
            peer_print: 0,
            fresh: true,
            confirming: NodeSet::EMPTY,
        };
        node.pump(now);
        Ok(node)
    }

    pub fn me(&self) -> NodeId {
        self.llt.me()
    }

    pub fn incarnation(&self) -> Incarnation {
        self.llt.incarnation()
    }

    /// A frame arrived on `link`.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link: LinkId,
        from: Option<LinkAddr>,
        bytes: &[u8],
    ) {
        self.llt.handle_frame(now, link, from, bytes);
        self.pump(now);
    }

    /// The deadline from [`Node::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.llt.handle_timeout(now);
        // The fence core steps inside pump, after it has seen the transport's
        // latest facts (confirmations included).
        self.fresh = true;
        self.pump(now);
    }

    /// When the node next needs [`Node::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let fence = if self.llt.running() {
            self.fence.poll_timeout()
        } else {
            None
        };
        match (self.llt.poll_timeout(), fence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// `gabconfig -x`: seed by hand with whoever is reachable.
    pub fn manual_seed(&mut self, now: Instant) {
        self.observe();
        self.fence.manual_seed(now);
        self.pump(now);
    }

    /// `vigil stop`: leave the cluster gracefully; [`FenceEvent::Left`] follows.
    pub fn leave(&mut self, now: Instant) {
        self.observe();
        self.fence.leave(now);
        self.pump(now);
    }

    /// A health probe of this node failed (a custom probe of an embedder, or the
    /// daemon's probes): the node stops being a member by leaving gracefully, so the
    /// others take over. [`FenceEvent::Left`] follows once a view without it is
    /// decided.
    pub fn report_unhealthy(&mut self, now: Instant) {
        self.leave(now);
    }

    /// Whether this node left the cluster (graceful stop or failed health).
    pub fn left(&self) -> bool {
        self.fence.left()
    }

    /// Register on a client port (`c`..=`z`; `a` and `b` are always there). The
    /// port's membership changes through a view change, like a join.
    pub fn register_port(&mut self, now: Instant, port: Port) -> bool {
        let Some(bit) = port_bit(port) else {
            return false;
        };
        self.ports |= bit;
        self.observe();
        self.fence.set_ports(now, self.ports);
        self.pump(now);
        true
    }

    /// Send a port message to one peer.
    pub fn send(
        &mut self,
        now: Instant,
        to: NodeId,
        port: Port,
        body: &[u8],
    ) -> Result<(), SendError> {
        let r = self.llt.send(now, to, port, body);
        self.pump(now);
        r
    }

    /// Send a port message to every peer that is up.
    pub fn broadcast(&mut self, now: Instant, port: Port, body: &[u8]) -> Result<usize, SendError> {
        let r = self.llt.broadcast(now, port, body);
        self.pump(now);
        r
    }

    /// The installed generation: the fencing token storage can check.
    pub fn generation(&self) -> Generation {
        self.fence.advertised_generation()
    }

    /// The view clients act on, if any.
    pub fn view(&self) -> Option<&View> {
        self.fence.client_view()
    }

    /// Whether this node held authority at its last step. Before acting on it,
    /// use [`Node::authority_at`] with the current time.
    pub fn authority(&self) -> bool {
        self.fence.authority()
    }

    /// Whether this node holds authority at `now` (its lease has not lapsed since
    /// the last step): what a client checks before it acts on the view.
    pub fn authority_at(&self, now: Instant) -> bool {
        self.fence.authority_at(now)
    }

    /// Whether this node fenced itself.
    pub fn fenced(&self) -> bool {
        self.fence.fenced()
    }

    /// True when the node refused to start (its ID is in use by a live node).
    pub fn refused(&self) -> bool {
        self.llt.refused()
    }

    /// A side-effect-free snapshot.
    pub fn status(&self) -> Status {
        Status {
            llt: self.llt.status(),
            fence: self.fence.status(),
        }
    }

    /// Hand the fence core the transport's facts about every peer.
    fn observe(&mut self) {
        let peers: Vec<(NodeId, PeerInfo)> = self
            .llt
            .peer_ids()
            .filter_map(|id| {
                self.llt.peer_summary(id).map(|s| {
                    (
                        id,
                        PeerInfo {
                            up: s.up,
                            incarnation: s.incarnation,
                            generation: s.generation,
                            last_heard: s.last_heard,
                            confirmed: s.confirmed,
                        },
                    )
                })
            })
            .collect();
        self.fence.observe(peers);
    }

    fn push(&mut self, o: Output) {
        if self.outputs.len() >= MAX_OUTPUTS {
            self.outputs.pop_front();
        }
        self.outputs.push_back(o);
    }

    /// Move outputs between the layers until both are quiet: transport deliveries on
    /// port `b` feed the fence core, whose messages go out through the transport.
    fn pump(&mut self, now: Instant) {
        for _ in 0..64 {
            let mut moved = false;
            if self.llt.silenced() {
                // Fenced or left: the transport sends nothing new; hand out what it
                // still holds (events).
                while let Some(o) = self.llt.poll_output() {
                    if let vigil_llt::Output::Event(e) = o {
                        self.push(Output::Llt(e));
                    }
                }
                return;
            }
            let mut news = false;
            while let Some(o) = self.llt.poll_output() {
                moved = true;
                match o {
                    vigil_llt::Output::Deliver(d) if d.port == Port::FENCE => {
                        self.fence.handle_message(now, d.from, &d.body);
                    }
                    vigil_llt::Output::Deliver(d) => self.push(Output::Deliver(d)),
                    vigil_llt::Output::Transmit(t) => self.push(Output::Transmit(t)),
                    vigil_llt::Output::Event(e) => {
                        news = true;
                        self.push(Output::Llt(e));
                    }
                }
            }
            if !self.llt.running() {
                // Still listening for a duplicate node ID (or refused): no
                // membership decisions before the transport may speak.
                break;
            }
            // The fence core decides on peers up, their incarnations and
            // generations. Plain heartbeats that change none of it (they only
            // refresh lease confirmations, read at the core's next step, which comes
            // before the lease runs out) need no step.
            let print = self.llt.peers_fingerprint();
            let due = self.fence.poll_timeout().is_some_and(|t| t <= now);
            // A node waiting for authority steps on every frame: a confirmation may
            // be what it waits for.
            let waiting = !self.fence.authority() && !self.fence.fenced();
            if news || due || waiting || print != self.peer_print || self.fresh {
                self.peer_print = print;
                self.fresh = false;
                self.observe();
                self.fence.handle_timeout(now);
            }
            while let Some(f) = self.fence.poll_output() {
                moved = true;
                match f {
                    FenceOutput::Send { to, msg } => {
                        // A peer that is down misses it; races retransmit.
                        let _ = self.llt.send(now, to, Port::FENCE, &msg.encode());
                        // Keep the order: this message goes out before any event or
                        // persist that follows it (a `Lost` before our own fence).
                        while let Some(o) = self.llt.poll_output() {
                            if let vigil_llt::Output::Transmit(t) = o {
                                self.push(Output::Transmit(t));
                            } else if let vigil_llt::Output::Event(e) = o {
                                self.push(Output::Llt(e));
                            }
                        }
                    }
                    FenceOutput::Persist(g) => self.push(Output::Persist(g)),
                    FenceOutput::Event(e) => {
                        let stop =
                            matches!(e, FenceEvent::SelfFence { .. } | FenceEvent::Left { .. });
                        self.push(Output::Fence(e));
                        if stop {
                            // Stop presenting ourselves as a member before anything else.
                            self.llt.silence();
                        }
                    }
                }
            }
            self.llt.set_generation(self.fence.advertised_generation());
            let confirm: NodeSet = self.fence.confirm_set();
            if confirm != self.confirming {
                let ids: Vec<NodeId> = self.llt.peer_ids().collect();
                for id in ids {
                    self.llt.set_confirm(id, confirm.contains(id));
                }
                self.confirming = confirm;
            }
            if !moved {
                break;
            }
        }
    }
}
