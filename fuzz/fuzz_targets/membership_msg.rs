//! The port-`b` codec on arbitrary bytes: `Msg::decode` never panics, and a message
//! it accepts encodes back to the same bytes, which decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_membership::Msg;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Msg::decode(data) else {
        return;
    };
    let bytes = msg.encode();
    assert_eq!(
        Msg::decode(&bytes).as_ref(),
        Ok(&msg),
        "decode(encode(m)) != m"
    );
    // The encoding is canonical: every field is fixed-width or length-prefixed and
    // decode refuses trailing bytes, so nothing else encodes this message.
    assert_eq!(bytes, data, "encode(decode(b)) != b");
    // What a peer can send also fits the frame it has to travel in.
    assert!(bytes.len() <= vigil_llt::wire::MAX_DATA_BODY);
});
