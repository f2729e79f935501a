//! `sockpulse check-config FILE`: validates a configuration and lists its
//! targets, or every problem with its field.

use std::path::Path;

use crate::cli::output::println;
use crate::cli::{Error, Exit};
use crate::config::{self, Sources};

pub fn run(file: &Path) -> Result<Exit, Error> {
    let cfg = config::load(&Sources::file(file))?;
    println(&format!("{}: ok, {} target(s)", file.display(), cfg.targets.len()));
    for t in &cfg.targets {
        let via = t.proxy.as_ref().map(|p| format!(" via {p}")).unwrap_or_default();
        println(&format!(
            "  {} ({} connection(s)) {}{via}",
            t.name, t.connections, t.url
        ));
    }
    Ok(Exit::Ok)
}
