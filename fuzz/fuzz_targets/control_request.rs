//! The control socket's request parsing on arbitrary bytes: the daemon reads one
//! JSON line and parses it as a `Request`. Parsing never panics, and an accepted
//! request survives a round trip through its JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_runtime::control::Request;

fuzz_target!(|data: &[u8]| {
    let from_bytes = serde_json::from_slice::<Request>(data);
    // The daemon parses the line as a string; both ways agree.
    if let Ok(text) = std::str::from_utf8(data) {
        let from_text = serde_json::from_str::<Request>(text);
        assert_eq!(from_bytes.is_ok(), from_text.is_ok());
    }
    let Ok(req) = from_bytes else {
        return;
    };
    let json = serde_json::to_string(&req).expect("a request serializes");
    let back: Request = serde_json::from_str(&json).expect("a serialized request parses");
    assert_eq!(serde_json::to_string(&back).expect("serializes"), json);
    assert_eq!(format!("{back:?}"), format!("{req:?}"));
});
