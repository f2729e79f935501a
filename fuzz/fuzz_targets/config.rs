//! The config parser: any text yields a config or a list of problems.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Extra URLs as --target flags would give them: the last line, if any.
    let extra: Vec<String> = text.lines().last().map(|l| vec![l.to_string()]).unwrap_or_default();
    if let Err(e) = sockpulse::config::parse(text, "fuzz.toml", &extra, &|_| None) {
        // Every problem names where it is.
        assert!(!e.problems.is_empty());
        let _ = e.to_string();
    }
});
