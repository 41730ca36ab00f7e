//! Membership and fencing messages (carried on port `b`) and their encoding.
//!
//! The encoding is a tag byte and big-endian fields. [`Msg::decode`] accepts any
//! byte string and never panics; a malformed message is an error the node counts.

use crate::view::{Member, PortMask, View};
use crate::NodeSet;
use serde::{Deserialize, Serialize};
use vigil_llt::types::{Generation, Incarnation, NodeId, Port, MAX_NODE_ID};

/// A Paxos ballot: a round number and the proposer in one of its incarnations,
/// ordered by round, then node, then incarnation.
///
/// The incarnation makes every ballot unique to one run of the proposer: a node
/// that restarts and races again (with the same round, since rounds are not kept
/// across restarts) uses a ballot no earlier run used, so no `Promise`, `Nack` or
/// `Accepted` made for an earlier run can match its race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u32,
    pub node: NodeId,
    #[serde(default = "no_incarnation")]
    pub incarnation: Incarnation,
}

fn no_incarnation() -> Incarnation {
    Incarnation(0)
}

impl Ballot {
    /// Lower than every ballot a proposer uses.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
        incarnation: Incarnation(0),
    };
}

/// The slot a race decides: the view that follows generation `prev`, or with `prev`
/// zero, the cluster's first (seed) view.
pub type Slot = Generation;

/// One membership or fencing message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Who the sender can reach, its ports, the highest generation it has seen and
    /// the one it has installed (0: unseeded).
    Reach {
        up: NodeSet,
        ports: PortMask,
        highest: Generation,
        installed: Generation,
    },
    /// Phase 1a of the race for `slot`.
    Prepare { slot: Slot, ballot: Ballot },
    /// Phase 1b: the promise, with the value accepted in this slot, if any.
    Promise {
        slot: Slot,
        ballot: Ballot,
        accepted: Option<(Ballot, View)>,
    },
    /// Refused: a higher ballot was promised, or (seeding) the generation is too low.
    Nack {
        slot: Slot,
        promised: Ballot,
        highest: Generation,
    },
    /// Phase 2a: accept `value` as the view for `slot`.
    Accept {
        slot: Slot,
        ballot: Ballot,
        value: View,
        /// A manual seed (`gabconfig -x`, slot 0 only): the acceptor does not
        /// check that the group holds a quorum of the views it knows.
        manual: bool,
    },
    /// Phase 2b, with how long ago (µs) the acceptor last heard each member the value
    /// excludes, for the settle window.
    Accepted {
        slot: Slot,
        ballot: Ballot,
        heard_ago_us: Vec<(NodeId, u64)>,
    },
    /// A decided view; receivers hand it to clients after `settle_us`.
    Decided { view: View, settle_us: u64 },
    /// The racer of `slot` found no quorum: every node of its side self-fences.
    Lost { slot: Slot },
    /// An unseeded node asks to join, in this incarnation, with these ports.
    Join {
        incarnation: Incarnation,
        ports: PortMask,
    },
    /// A member leaves gracefully.
    Leave,
    /// Answer to a `Join` from an incarnation that a decided view already dropped
    /// (it was a member of a view it never learned): that incarnation can never
    /// join again; it fences itself, and a restart joins as a new incarnation.
    Excluded {
        incarnation: Incarnation,
        generation: Slot,
    },
}

/// Why bytes are not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadMsg(pub &'static str);

struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadMsg> {
        if self.b.len() < n {
            return Err(BadMsg("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, BadMsg> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, BadMsg> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, BadMsg> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn node(&mut self) -> Result<NodeId, BadMsg> {
        NodeId::new(self.u8()?).ok_or(BadMsg("node id"))
    }
    fn gen(&mut self) -> Result<Generation, BadMsg> {
        let g = Generation(self.u64()?);
        if !g.is_valid() {
            return Err(BadMsg("generation beyond the usable range"));
        }
        Ok(g)
    }
    fn ballot(&mut self) -> Result<Ballot, BadMsg> {
        Ok(Ballot {
            round: self.u32()?,
            node: self.node()?,
            incarnation: Incarnation(self.u64()?),
        })
    }
    fn view(&mut self) -> Result<View, BadMsg> {
        let generation = self.gen()?;
        let n = self.u8()? as usize;
        if n > MAX_NODE_ID as usize + 1 {
            return Err(BadMsg("member count"));
        }
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            members.push(Member {
                id: self.node()?,
                incarnation: Incarnation(self.u64()?),
                ports: self.u32()?,
            });
        }
        let primary = self.node()?;
        let np = self.u8()? as usize;
        if np > 26 {
            return Err(BadMsg("port count"));
        }
        let mut port_generations = Vec::with_capacity(np);
        for _ in 0..np {
            let p = self.u8()?;
            if !p.is_ascii_lowercase() {
                return Err(BadMsg("port"));
            }
            port_generations.push((Port(p), self.gen()?));
        }
        let mut sorted = members.clone();
        sorted.sort();
        sorted.dedup_by_key(|m| m.id);
        if sorted != members {
            return Err(BadMsg("members not in ID order"));
        }
        if !members.iter().any(|m| m.id == primary) {
            return Err(BadMsg("primary not a member"));
        }
        Ok(View {
            generation,
            members,
            primary,
            port_generations,
        })
    }
    fn end(&self) -> Result<(), BadMsg> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(BadMsg("trailing bytes"))
        }
    }
}

fn put_ballot(o: &mut Vec<u8>, b: Ballot) {
    o.extend_from_slice(&b.round.to_be_bytes());
    o.push(b.node.0);
    o.extend_from_slice(&b.incarnation.0.to_be_bytes());
}

fn put_view(o: &mut Vec<u8>, v: &View) {
    o.extend_from_slice(&v.generation.0.to_be_bytes());
    o.push(v.members.len() as u8);
    for m in &v.members {
        o.push(m.id.0);
        o.extend_from_slice(&m.incarnation.0.to_be_bytes());
        o.extend_from_slice(&m.ports.to_be_bytes());
    }
    o.push(v.primary.0);
    o.push(v.port_generations.len() as u8);
    for (p, g) in &v.port_generations {
        o.push(p.0);
        o.extend_from_slice(&g.0.to_be_bytes());
    }
}

impl Msg {
    /// The encoded message (at most ~1.2 KB for a 64-node view).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(64);
        match self {
            Msg::Reach {
                up,
                ports,
                highest,
                installed,
            } => {
                o.push(1);
                o.extend_from_slice(&up.bits().to_be_bytes());
                o.extend_from_slice(&ports.to_be_bytes());
                o.extend_from_slice(&highest.0.to_be_bytes());
                o.extend_from_slice(&installed.0.to_be_bytes());
            }
            Msg::Prepare { slot, ballot } => {
                o.push(2);
                o.extend_from_slice(&slot.0.to_be_bytes());
                put_ballot(&mut o, *ballot);
            }
            Msg::Promise {
                slot,
                ballot,
                accepted,
            } => {
                o.push(3);
                o.extend_from_slice(&slot.0.to_be_bytes());
                put_ballot(&mut o, *ballot);
                match accepted {
                    None => o.push(0),
                    Some((b, v)) => {
                        o.push(1);
                        put_ballot(&mut o, *b);
                        put_view(&mut o, v);
                    }
                }
            }
            Msg::Nack {
                slot,
                promised,
                highest,
            } => {
                o.push(4);
                o.extend_from_slice(&slot.0.to_be_bytes());
                put_ballot(&mut o, *promised);
                o.extend_from_slice(&highest.0.to_be_bytes());
            }
            Msg::Accept {
                slot,
                ballot,
                value,
                manual,
            } => {
                o.push(5);
                o.extend_from_slice(&slot.0.to_be_bytes());
                put_ballot(&mut o, *ballot);
                put_view(&mut o, value);
                o.push(u8::from(*manual));
            }
            Msg::Accepted {
                slot,
                ballot,
                heard_ago_us,
            } => {
                o.push(6);
                o.extend_from_slice(&slot.0.to_be_bytes());
                put_ballot(&mut o, *ballot);
                o.push(heard_ago_us.len() as u8);
                for (n, ago) in heard_ago_us {
                    o.push(n.0);
                    o.extend_from_slice(&ago.to_be_bytes());
                }
            }
            Msg::Decided { view, settle_us } => {
                o.push(7);
                put_view(&mut o, view);
                o.extend_from_slice(&settle_us.to_be_bytes());
            }
            Msg::Lost { slot } => {
                o.push(8);
                o.extend_from_slice(&slot.0.to_be_bytes());
            }
            Msg::Join { incarnation, ports } => {
                o.push(9);
                o.extend_from_slice(&incarnation.0.to_be_bytes());
                o.extend_from_slice(&ports.to_be_bytes());
            }
            Msg::Leave => o.push(10),
            Msg::Excluded {
                incarnation,
                generation,
            } => {
                o.push(11);
                o.extend_from_slice(&incarnation.0.to_be_bytes());
                o.extend_from_slice(&generation.0.to_be_bytes());
            }
        }
        o
    }

    /// Parse a message; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Msg, BadMsg> {
        let mut r = Rd { b: bytes };
        let msg = match r.u8()? {
            1 => Msg::Reach {
                up: NodeSet::from_bits(r.u64()?),
                ports: r.u32()?,
                highest: r.gen()?,
                installed: r.gen()?,
            },
            2 => Msg::Prepare {
                slot: r.gen()?,
                ballot: r.ballot()?,
            },
            3 => {
                let slot = r.gen()?;
                let ballot = r.ballot()?;
                let accepted = match r.u8()? {
                    0 => None,
                    1 => Some((r.ballot()?, r.view()?)),
                    _ => return Err(BadMsg("accepted flag")),
                };
                Msg::Promise {
                    slot,
                    ballot,
                    accepted,
                }
            }
            4 => Msg::Nack {
                slot: r.gen()?,
                promised: r.ballot()?,
                highest: r.gen()?,
            },
            5 => Msg::Accept {
                slot: r.gen()?,
                ballot: r.ballot()?,
                value: r.view()?,
                manual: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(BadMsg("manual flag")),
                },
            },
            6 => {
                let slot = r.gen()?;
                let ballot = r.ballot()?;
                let n = r.u8()? as usize;
                if n > 64 {
                    return Err(BadMsg("count"));
                }
                let mut heard_ago_us = Vec::with_capacity(n);
                for _ in 0..n {
                    heard_ago_us.push((r.node()?, r.u64()?));
                }
                Msg::Accepted {
                    slot,
                    ballot,
                    heard_ago_us,
                }
            }
            7 => Msg::Decided {
                view: r.view()?,
                settle_us: r.u64()?,
            },
            8 => Msg::Lost { slot: r.gen()? },
            9 => Msg::Join {
                incarnation: Incarnation(r.u64()?),
                ports: r.u32()?,
            },
            10 => Msg::Leave,
            11 => Msg::Excluded {
                incarnation: Incarnation(r.u64()?),
                generation: r.gen()?,
            },
            _ => return Err(BadMsg("tag")),
        };
        r.end()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view() -> View {
        let members = (0..64u8)
            .map(|i| Member {
                id: NodeId(i),
                incarnation: Incarnation(1000 + u64::from(i)),
                ports: 0b101,
            })
            .collect();
        View::new(Generation(42), members, None)
    }

    fn all() -> Vec<Msg> {
        let b = Ballot {
            round: 3,
            node: NodeId(2),
            incarnation: Incarnation(1002),
        };
        vec![
            Msg::Reach {
                up: NodeSet::from_bits(0b1011),
                ports: 4,
                highest: Generation(9),
                installed: Generation(8),
            },
            Msg::Prepare {
                slot: Generation(8),
                ballot: b,
            },
            Msg::Promise {
                slot: Generation(8),
                ballot: b,
                accepted: Some((b, view())),
            },
            Msg::Promise {
                slot: Generation(8),
                ballot: b,
                accepted: None,
            },
            Msg::Nack {
                slot: Generation(8),
                promised: b,
                highest: Generation(11),
            },
            Msg::Accept {
                slot: Generation(8),
                ballot: b,
                value: view(),
                manual: false,
            },
            Msg::Accept {
                slot: Generation(0),
                ballot: b,
                value: view(),
                manual: true,
            },
            Msg::Accepted {
                slot: Generation(8),
                ballot: b,
                heard_ago_us: vec![(NodeId(4), 812_000)],
            },
            Msg::Decided {
                view: view(),
                settle_us: 5,
            },
            Msg::Lost {
                slot: Generation(8),
            },
            Msg::Join {
                incarnation: Incarnation(77),
                ports: 8,
            },
            Msg::Leave,
            Msg::Excluded {
                incarnation: Incarnation(77),
                generation: Generation(9),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_fits_a_frame() {
        for m in all() {
            let b = m.encode();
            assert!(
                b.len() <= vigil_llt::wire::MAX_DATA_BODY,
                "{} bytes",
                b.len()
            );
            assert_eq!(Msg::decode(&b), Ok(m));
            for cut in 0..b.len() {
                assert!(Msg::decode(&b[..cut]).is_err());
            }
        }
    }

    #[test]
    fn a_view_whose_primary_is_no_member_is_refused() {
        let members = vec![
            Member {
                id: NodeId(1),
                incarnation: Incarnation(5),
                ports: 0,
            },
            Member {
                id: NodeId(3),
                incarnation: Incarnation(6),
                ports: 0,
            },
        ];
        let mut v = View::new(Generation(7), members, None);
        assert_eq!(v.primary, NodeId(1));
        let ok = Msg::Decided {
            view: v.clone(),
            settle_us: 0,
        };
        assert_eq!(Msg::decode(&ok.encode()), Ok(ok));
        v.primary = NodeId(3);
        let sticky = Msg::Decided {
            view: v.clone(),
            settle_us: 0,
        };
        assert_eq!(Msg::decode(&sticky.encode()), Ok(sticky));
        v.primary = NodeId(2);
        let bad = Msg::Decided {
            view: v.clone(),
            settle_us: 0,
        };
        assert_eq!(
            Msg::decode(&bad.encode()),
            Err(BadMsg("primary not a member"))
        );
        v.members.clear();
        v.primary = NodeId(0);
        let empty = Msg::Accept {
            slot: Generation(6),
            ballot: Ballot::ZERO,
            value: v,
            manual: false,
        };
        assert_eq!(
            Msg::decode(&empty.encode()),
            Err(BadMsg("primary not a member"))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = Msg::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutations(idx in 0usize..11, flips in proptest::collection::vec((0usize..1200, any::<u8>()), 1..6)) {
            let mut b = all()[idx].encode();
            for (i, v) in flips {
                if i < b.len() { b[i] = v; }
            }
            let _ = Msg::decode(&b);
        }
    }
}
