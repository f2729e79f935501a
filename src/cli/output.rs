//! Writing to stdout and stderr for the commands: a closed pipe
//! (`sockpulse … | head`) means the reader is done, not a reason to panic
//! as `print!` would.

use std::io::Write;

use serde::Serialize;

use super::Error;

/// Writes `text` to stdout as it is.
pub fn print(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// Writes `line` and a newline to stdout.
pub fn println(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Writes `text` to stderr, ending it with a newline if it has none.
pub fn complain(text: &str) {
    let mut err = std::io::stderr();
    let _ = err.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Failed(format!("cannot encode JSON: {e}")))?;
    println(&text);
    Ok(())
}
