//! The HTTP upgrade answer parser, fed a response in any state of arrival.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockpulse::session::handshake::{parse_response, Expectation, Progress};

fuzz_target!(|data: &[u8]| {
    let subprotocols = vec!["chat".to_string(), "v2.probe".to_string()];
    let want = Expectation {
        key: "dGhlIHNhbXBsZSBub25jZQ==",
        subprotocols: &subprotocols,
        require_subprotocol: data.first().is_some_and(|b| b & 1 == 1),
    };
    // Every prefix, as the bytes would trickle in.
    for end in (0..=data.len()).step_by(7).chain([data.len()]) {
        match parse_response(&data[..end], &want) {
            Ok(Progress::Done(accepted)) => {
                assert!(accepted.leftover.len() <= end);
                if let Some(p) = &accepted.subprotocol {
                    assert!(subprotocols.contains(p), "accepted an unrequested subprotocol {p:?}");
                }
                break;
            }
            Ok(Progress::NeedMore) => {}
            Err(rejected) => {
                assert!(!rejected.detail.is_empty());
                break;
            }
        }
    }
});
