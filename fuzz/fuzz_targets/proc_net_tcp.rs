//! The /proc/net/tcp{,6} parser and the de-duplication after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockpulse::kernel::table;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut entries) = table::parse(data) {
        // At most one entry per line after the header.
        assert!(entries.len() <= data.iter().filter(|&&b| b == b'\n').count() + 1);
        let before = entries.len();
        table::dedupe(&mut entries);
        assert!(entries.len() <= before);
    }
});
