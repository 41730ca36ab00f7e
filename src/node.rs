//! `Node`: the one sans-IO state machine a vigil node runs, composed of the llt,
//! membership and fence cores. The daemon and the simulator both drive it.
//!
//! Today it carries llt; membership and the fencing race are composed in here as
//! they land, behind the same verbs, so drivers do not change.

use vigil_llt::types::{Generation, Incarnation, Instant, LinkAddr, LinkId, NodeId, Port};
use vigil_llt::{Llt, LltConfig, SendError};

pub use vigil_llt::{ConfigError, Deliver, Event as LltEvent, Status as LltStatus, Transmit};

/// What a node step produced, drained in order with [`Node::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A frame to put on a link.
    Transmit(Transmit),
    /// A port message for a client.
    Deliver(Deliver),
    /// Something that happened in the transport.
    Llt(LltEvent),
}

/// A snapshot of the whole node, for the inspection commands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub llt: LltStatus,
}

/// One vigil node as a sans-IO state machine.
#[derive(Clone, Debug)]
pub struct Node {
    llt: Llt,
}

impl Node {
    /// A node `me` with `incarnation`, started at `now`.
    pub fn new(
        llt: LltConfig,
        me: NodeId,
        incarnation: Incarnation,
        now: Instant,
        rng_seed: u64,
    ) -> Result<Node, ConfigError> {
        Ok(Node {
            llt: Llt::new(llt, me, incarnation, now, rng_seed)?,
        })
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
    }

    /// The deadline from [`Node::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.llt.handle_timeout(now);
    }

    /// When the node next needs [`Node::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.llt.poll_timeout()
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.llt.poll_output().map(|o| match o {
            vigil_llt::Output::Transmit(t) => Output::Transmit(t),
            vigil_llt::Output::Deliver(d) => Output::Deliver(d),
            vigil_llt::Output::Event(e) => Output::Llt(e),
        })
    }

    /// Send a port message to one peer.
    pub fn send(
        &mut self,
        now: Instant,
        to: NodeId,
        port: Port,
        body: &[u8],
    ) -> Result<(), SendError> {
        self.llt.send(now, to, port, body)
    }

    /// Send a port message to every peer that is up.
    pub fn broadcast(&mut self, now: Instant, port: Port, body: &[u8]) -> Result<usize, SendError> {
        self.llt.broadcast(now, port, body)
    }

    /// The current generation: the fencing token storage can check.
    pub fn generation(&self) -> Generation {
        self.llt.generation()
    }

    /// True when the node refused to start (its ID is in use by a live node).
    pub fn refused(&self) -> bool {
        self.llt.refused()
    }

    /// A side-effect-free snapshot.
    pub fn status(&self) -> Status {
        Status {
            llt: self.llt.status(),
        }
    }
}
