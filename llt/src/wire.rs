//! The llt wire format, version 2. See `docs/llt-wire.md` for the layout.
//!
//! [`decode`] accepts any byte string and never panics: every way a frame can be
//! wrong is a [`DecodeError`], which the core counts as a drop reason.

use crate::types::{ClusterId, Generation, Incarnation, LinkId, NodeId, Port, MAX_NODE_ID};
use serde::{Deserialize, Serialize};

/// `"VG"`: the first two bytes of every frame.
pub const MAGIC: u16 = 0x5647;
/// The only version this code speaks.
pub const VERSION: u8 = 2;
/// Fixed header length in bytes.
pub const HEADER_LEN: usize = 70;
/// Length of the MAC trailer when frames are authenticated.
pub const MAC_LEN: usize = 16;
/// Largest frame on the wire: fits a 1500-byte MTU in a UDP/IPv4 datagram.
pub const MAX_FRAME: usize = 1472;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD: usize = MAX_FRAME - HEADER_LEN - MAC_LEN;
/// A data payload starts with the port (1 byte) and a message ID (8 bytes).
pub const DATA_PREFIX: usize = 9;
/// Largest body a data message can carry.
pub const MAX_DATA_BODY: usize = MAX_PAYLOAD - DATA_PREFIX;
/// Destination meaning "every node".
pub const BROADCAST: u8 = 0xFF;
/// Context string for deriving the frame key from the key file.
pub const KEY_CONTEXT: &str = "vigil llt frame mac v1";
/// Context string for deriving a key's ID (carried in every keyed frame) from the
/// key file, so that a receiver holding several keys knows which one to check.
pub const KEY_ID_CONTEXT: &str = "vigil llt key id v1";

/// Names a frame key on the wire: the first four bytes of a BLAKE3 derivation from
/// the key material, never 0 (0 marks an unkeyed frame). It says which key to check
/// a MAC with; it is no secret and proves nothing by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub u32);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A frame-MAC key and its ID.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameKey {
    pub id: KeyId,
    pub key: [u8; 32],
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        write!(f, "FrameKey({})", self.id)
    }
}

impl FrameKey {
    /// The frame key and its ID, both derived from a key file's contents.
    pub fn from_material(material: &[u8]) -> FrameKey {
        let key = derive_key(material);
        let idb = blake3::derive_key(KEY_ID_CONTEXT, material);
        let id = u32::from_be_bytes([idb[0], idb[1], idb[2], idb[3]]);
        FrameKey {
            id: KeyId(id.max(1)),
            key,
        }
    }
}

const FLAG_MAC: u8 = 0x01;
const FLAG_CONFIRM: u8 = 0x02;

/// What a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Liveness, sequence and echo fields only.
    Heartbeat = 1,
    /// A port message: payload is port, message ID, body.
    Data = 2,
}

/// Every fixed field of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub link: LinkId,
    pub src: NodeId,
    /// `None` for a frame to every node.
    pub dst: Option<NodeId>,
    pub cluster: ClusterId,
    pub incarnation: Incarnation,
    /// Per sender and link, strictly increasing, starting at 1.
    pub seq: u64,
    /// The sender's installed generation.
    pub generation: Generation,
    /// The sender's clock when it sent the frame, in microseconds.
    pub tx_time_us: u64,
    /// The `tx_time_us` of the last frame the sender heard from the receiver on this link.
    pub echo_time_us: u64,
    /// How long the sender held that echo before this frame went out, in microseconds.
    pub echo_hold_us: u32,
    /// The receiver's incarnation as the sender knows it; 0 when it has heard nothing.
    pub echo_incarnation: Incarnation,
    /// The echo is also a lease confirmation: the sender, a member of the receiver's
    /// view at the frame's generation, vouches for having heard the receiver.
    pub confirm: bool,
}

/// A decoded frame, borrowing from the input bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub payload: &'a [u8],
    /// The key the MAC was made with; `None` for an unkeyed frame.
    pub key_id: Option<KeyId>,
    /// The bytes the MAC covers (header and payload).
    pub signed: &'a [u8],
    pub mac: Option<&'a [u8]>,
}

/// A port message carried in a data frame's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataMsg<'a> {
    pub port: Port,
    pub msg_id: u64,
    pub body: &'a [u8],
}

/// Why a byte string is not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header, or than its own length fields say.
    Truncated,
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// A version this code does not speak.
    BadVersion(u8),
    /// A field holds a value no sender produces (kind, flags, node ID, length).
    Malformed(&'static str),
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Parse a frame. Trailing bytes after the frame (Ethernet padding) are ignored.
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Truncated);
    }
    if be_u16(bytes, 0) != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[2] != VERSION {
        return Err(DecodeError::BadVersion(bytes[2]));
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let kind = match bytes[3] {
        1 => Kind::Heartbeat,
        2 => Kind::Data,
        _ => return Err(DecodeError::Malformed("kind")),
    };
    let flags = bytes[4];
    if flags & !(FLAG_MAC | FLAG_CONFIRM) != 0 {
        return Err(DecodeError::Malformed("flags"));
    }
    let link = bytes[5];
    if link as usize >= crate::types::MAX_LINKS {
        return Err(DecodeError::Malformed("link"));
    }
    let src = NodeId::new(bytes[6]).ok_or(DecodeError::Malformed("source node"))?;
    let dst = match bytes[7] {
        BROADCAST => None,
        d if d <= MAX_NODE_ID => Some(NodeId(d)),
        _ => return Err(DecodeError::Malformed("destination node")),
    };
    let key_id = be_u32(bytes, 64);
    let payload_len = be_u16(bytes, 68) as usize;
    if payload_len > MAX_PAYLOAD {
        return Err(DecodeError::Malformed("payload length"));
    }
    if kind == Kind::Heartbeat && payload_len != 0 {
        return Err(DecodeError::Malformed("heartbeat with payload"));
    }
    if kind == Kind::Data && payload_len < DATA_PREFIX {
        return Err(DecodeError::Malformed("data payload length"));
    }
    let mac_len = if flags & FLAG_MAC != 0 { MAC_LEN } else { 0 };
    if (mac_len == 0) != (key_id == 0) {
        return Err(DecodeError::Malformed("key id"));
    }
    let end = HEADER_LEN + payload_len;
    if bytes.len() < end + mac_len {
        return Err(DecodeError::Truncated);
    }
    let generation = Generation(be_u64(bytes, 28));
    if !generation.is_valid() {
        return Err(DecodeError::Malformed("generation beyond the usable range"));
    }
    let header = Header {
        kind,
        link: LinkId(link),
        src,
        dst,
        cluster: ClusterId(be_u32(bytes, 8)),
        incarnation: Incarnation(be_u64(bytes, 12)),
        seq: be_u64(bytes, 20),
        generation,
        tx_time_us: be_u64(bytes, 36),
        echo_time_us: be_u64(bytes, 44),
        echo_hold_us: be_u32(bytes, 52),
        echo_incarnation: Incarnation(be_u64(bytes, 56)),
        confirm: flags & FLAG_CONFIRM != 0,
    };
    Ok(Frame {
        header,
        payload: &bytes[HEADER_LEN..end],
        key_id: (key_id != 0).then_some(KeyId(key_id)),
        signed: &bytes[..end],
        mac: (mac_len > 0).then(|| &bytes[end..end + MAC_LEN]),
    })
}

/// Split a data frame's payload into port, message ID and body.
pub fn decode_data(payload: &[u8]) -> Result<DataMsg<'_>, DecodeError> {
    if payload.len() < DATA_PREFIX {
        return Err(DecodeError::Malformed("data payload length"));
    }
    Ok(DataMsg {
        port: Port(payload[0]),
        msg_id: be_u64(payload, 1),
        body: &payload[DATA_PREFIX..],
    })
}

/// The MAC over `signed` with `key`: keyed BLAKE3, truncated to [`MAC_LEN`] bytes.
pub fn mac(key: &[u8; 32], signed: &[u8]) -> [u8; MAC_LEN] {
    let full = blake3::keyed_hash(key, signed);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full.as_bytes()[..MAC_LEN]);
    out
}

/// Whether `frame` carries a valid MAC under `key`, made with that key's ID
/// (constant-time comparison).
pub fn verify(frame: &Frame<'_>, key: &FrameKey) -> bool {
    let Some(got) = frame.mac else {
        return false;
    };
    if frame.key_id != Some(key.id) {
        return false;
    }
    let want = mac(&key.key, frame.signed);
    let mut diff = 0u8;
    for (a, b) in want.iter().zip(got) {
        diff |= a ^ b;
    }
    diff == 0 && got.len() == MAC_LEN
}

/// Derive the 32-byte frame key from a key file's contents.
pub fn derive_key(material: &[u8]) -> [u8; 32] {
    blake3::derive_key(KEY_CONTEXT, material)
}

/// Encode a frame. `payload` must be at most [`MAX_PAYLOAD`] bytes (the core never
/// builds a larger one; a larger one is cut to keep the frame within [`MAX_FRAME`]).
pub fn encode(header: &Header, payload: &[u8], key: Option<&FrameKey>) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let mut b = Vec::with_capacity(HEADER_LEN + payload.len() + MAC_LEN);
    b.extend_from_slice(&MAGIC.to_be_bytes());
    b.push(VERSION);
    b.push(header.kind as u8);
    let mut flags = if key.is_some() { FLAG_MAC } else { 0 };
    if header.confirm {
        flags |= FLAG_CONFIRM;
    }
    b.push(flags);
    b.push(header.link.0);
    b.push(header.src.0);
    b.push(header.dst.map_or(BROADCAST, |d| d.0));
    b.extend_from_slice(&header.cluster.0.to_be_bytes());
    b.extend_from_slice(&header.incarnation.0.to_be_bytes());
    b.extend_from_slice(&header.seq.to_be_bytes());
    b.extend_from_slice(&header.generation.0.to_be_bytes());
    b.extend_from_slice(&header.tx_time_us.to_be_bytes());
    b.extend_from_slice(&header.echo_time_us.to_be_bytes());
    b.extend_from_slice(&header.echo_hold_us.to_be_bytes());
    b.extend_from_slice(&header.echo_incarnation.0.to_be_bytes());
    b.extend_from_slice(&key.map_or(0, |k| k.id.0).to_be_bytes());
    b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    b.extend_from_slice(payload);
    if let Some(key) = key {
        let m = mac(&key.key, &b);
        b.extend_from_slice(&m);
    }
    b
}

/// Whether an encoded frame carries a payload (a port message), as opposed to
/// llt's own heartbeat state only. A driver that must hold back everything that
/// depends on a write in progress still sends the frames for which this is false.
/// Anything too short to hold a header counts as carrying one.
pub fn carries_payload(frame: &[u8]) -> bool {
    match frame.get(68..70) {
        Some(len) => u16::from_be_bytes([len[0], len[1]]) != 0,
        None => true,
    }
}

/// Build a data payload from port, message ID and body.
pub fn encode_data(port: Port, msg_id: u64, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(DATA_PREFIX + body.len());
    p.push(port.0);
    p.extend_from_slice(&msg_id.to_be_bytes());
    p.extend_from_slice(body);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            kind: Kind::Heartbeat,
            link: LinkId(1),
            src: NodeId(3),
            dst: Some(NodeId(4)),
            cluster: ClusterId(77),
            incarnation: Incarnation(0xdead_beef),
            seq: 42,
            generation: Generation(9),
            tx_time_us: 123_456,
            echo_time_us: 111,
            echo_hold_us: 5,
            echo_incarnation: Incarnation(8),
            confirm: true,
        }
    }

    #[test]
    fn heartbeats_carry_no_payload_and_data_frames_do() {
        let key = FrameKey::from_material(b"0123456789abcdef");
        for k in [None, Some(&key)] {
            assert!(!carries_payload(&encode(&header(), &[], k)));
            let mut data = header();
            data.kind = Kind::Data;
            let body = encode_data(Port(b'a'), 7, b"promise");
            assert!(carries_payload(&encode(&data, &body, k)));
        }
        assert!(carries_payload(&[0u8; 10]));
    }

    #[test]
    fn round_trip_with_and_without_key() {
        let key = FrameKey::from_material(b"0123456789abcdef");
        for k in [None, Some(&key)] {
            let bytes = encode(&header(), &[], k);
            let f = decode(&bytes).expect("decodes");
            assert_eq!(f.header, header());
            assert_eq!(f.mac.is_some(), k.is_some());
            if let Some(k) = k {
                assert!(verify(&f, k));
                assert_eq!(f.key_id, Some(k.id));
                assert!(!verify(&f, &FrameKey::from_material(b"another key 12345")));
                // The right key under another ID is not accepted either.
                let renamed = FrameKey {
                    id: KeyId(k.id.0 ^ 1),
                    key: k.key,
                };
                assert!(!verify(&f, &renamed));
            }
        }
    }

    #[test]
    fn data_round_trip_and_padding_ignored() {
        let mut h = header();
        h.kind = Kind::Data;
        let mut bytes = encode(&h, &encode_data(Port(b'c'), 7, b"hello"), None);
        bytes.extend_from_slice(&[0u8; 20]);
        let f = decode(&bytes).expect("decodes");
        let d = decode_data(f.payload).expect("data");
        assert_eq!((d.port, d.msg_id, d.body), (Port(b'c'), 7, &b"hello"[..]));
    }

    #[test]
    fn every_truncation_is_refused() {
        let key = FrameKey::from_material(b"0123456789abcdef");
        let mut h = header();
        h.kind = Kind::Data;
        let bytes = encode(&h, &encode_data(Port(b'a'), 1, b"xyz"), Some(&key));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn a_generation_beyond_the_range_is_malformed() {
        let mut h = header();
        h.generation = Generation::MAX;
        assert!(decode(&encode(&h, &[], None)).is_ok());
        for g in [Generation::MAX.0 + 1, u64::MAX] {
            h.generation = Generation(g);
            assert_eq!(
                decode(&encode(&h, &[], None)),
                Err(DecodeError::Malformed("generation beyond the usable range"))
            );
        }
    }

    #[test]
    fn tampering_breaks_the_mac() {
        let key = FrameKey::from_material(b"0123456789abcdef");
        let bytes = encode(&header(), &[], Some(&key));
        for i in 0..HEADER_LEN {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            if let Ok(f) = decode(&t) {
                assert!(!verify(&f, &key), "flip of byte {i} still verifies");
            }
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_frames(
            flips in proptest::collection::vec((0usize..120, any::<u8>()), 1..8),
            cut in 0usize..120,
        ) {
            let mut h = header();
            h.kind = Kind::Data;
            let mut bytes = encode(&h, &encode_data(Port(b'b'), 3, b"payload"), Some(&FrameKey { id: KeyId(9), key: [7u8; 32] }));
            for (i, v) in flips {
                if i < bytes.len() { bytes[i] = v; }
            }
            bytes.truncate(cut.max(1));
            if let Ok(f) = decode(&bytes) {
                prop_assert!(f.signed.len() + f.mac.map_or(0, |m| m.len()) <= bytes.len());
                let _ = decode_data(f.payload);
            }
        }

        #[test]
        fn round_trip_any_header(seq in any::<u64>(), inc in any::<u64>(), gen in 0..=Generation::MAX.0,
                                 src in 0u8..64, dst in proptest::option::of(0u8..64),
                                 body in proptest::collection::vec(any::<u8>(), 0..MAX_DATA_BODY)) {
            let mut h = header();
            h.kind = Kind::Data;
            h.seq = seq; h.incarnation = Incarnation(inc); h.generation = Generation(gen);
            h.src = NodeId(src); h.dst = dst.map(NodeId);
            let bytes = encode(&h, &encode_data(Port(b'c'), seq, &body), None);
            prop_assert!(bytes.len() <= MAX_FRAME);
            let f = decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(f.header, h);
            let d = decode_data(f.payload).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(d.body, &body[..]);
        }
    }
}
