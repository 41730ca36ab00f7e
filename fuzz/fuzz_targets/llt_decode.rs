//! The llt frame decoder on arbitrary bytes: `wire::decode`, `wire::decode_data` and
//! MAC verification never panic, and whatever decodes re-encodes to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_llt::wire::{self, FrameKey, KeyId, Kind, HEADER_LEN, MAC_LEN};

/// A fixed key: a frame whose MAC matches it must verify, and no other.
const KEY: [u8; 32] = [0x5a; 32];

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = wire::decode(data) else {
        return;
    };
    // The slices lie inside the input, in order: header, payload, MAC.
    assert_eq!(frame.signed, &data[..frame.signed.len()]);
    assert_eq!(frame.signed.len(), HEADER_LEN + frame.payload.len());
    assert_eq!(frame.payload, &frame.signed[HEADER_LEN..]);
    if let Some(m) = frame.mac {
        assert_eq!(m.len(), MAC_LEN);
        assert_eq!(m, &data[frame.signed.len()..frame.signed.len() + MAC_LEN]);
    }
    assert!(frame.signed.len() + frame.mac.map_or(0, <[u8]>::len) <= data.len());

    // A MAC comes with a key ID and only with one.
    assert_eq!(frame.mac.is_some(), frame.key_id.is_some());
    // Verification never panics, and agrees with recomputing the MAC; under another
    // key ID the same key never verifies.
    let fk = FrameKey {
        id: frame.key_id.unwrap_or(KeyId(1)),
        key: KEY,
    };
    let verified = wire::verify(&frame, &fk);
    assert_eq!(
        verified,
        frame.mac == Some(&wire::mac(&KEY, frame.signed)[..])
    );
    let renamed = FrameKey {
        id: KeyId(fk.id.0 ^ 1),
        key: KEY,
    };
    assert!(!wire::verify(&frame, &renamed));

    // Data payloads split into port, message ID and body, and join back.
    match frame.header.kind {
        Kind::Data => {
            let msg =
                wire::decode_data(frame.payload).expect("decode accepted a short data payload");
            assert_eq!(
                wire::encode_data(msg.port, msg.msg_id, msg.body),
                frame.payload
            );
        }
        Kind::Heartbeat => assert!(frame.payload.is_empty()),
    }

    // Re-encoding the decoded header gives back the same bytes (with a MAC under
    // our key when the frame had one), which decode to the same frame.
    let key = frame.mac.map(|_| &fk);
    let again = wire::encode(&frame.header, frame.payload, key);
    assert_eq!(&again[..frame.signed.len()], frame.signed);
    let back = wire::decode(&again).expect("re-encoded frame does not decode");
    assert_eq!(back.header, frame.header);
    assert_eq!(back.payload, frame.payload);
    if key.is_some() {
        assert!(wire::verify(&back, &fk));
        assert_eq!(verified, back.mac == frame.mac);
    }
});
