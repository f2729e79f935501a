//! What a client sends the HTTP endpoint before anything else (a request
//! head, in any state of arrival) and what a web configuration file holds:
//! hostile bytes, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockpulse::http::request::{parse, Parsed, MAX_REQUEST_HEAD};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Every prefix, as the bytes trickle in.
        let step = usize::from(mode >> 1).max(1);
        let mut end = 0;
        while end < rest.len() {
            end = (end + step).min(rest.len());
            match parse(&rest[..end]) {
                Parsed::Complete(r) => {
                    assert!(r.head_len <= end);
                    let _ = (r.path(), r.query());
                    break;
                }
                Parsed::Partial => assert!(end < MAX_REQUEST_HEAD),
                Parsed::Bad | Parsed::TooLarge => break,
            }
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let _ = sockpulse::config::web_file::parse(text, std::path::Path::new("/etc/sockpulse"), "web.yml");
    }
});
