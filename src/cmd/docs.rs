//! `sockpulse completions SHELL` and `sockpulse man`: the CLI's own
//! documentation, generated from its argument definitions.

use clap::CommandFactory;

use crate::cli::args::Cli;
use crate::cli::output::print;
use crate::cli::{Error, Exit};

pub fn completions(shell: clap_complete::Shell) -> Result<Exit, Error> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sockpulse", &mut buf);
    print(&String::from_utf8_lossy(&buf));
    Ok(Exit::Ok)
}

pub fn man() -> Result<Exit, Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Error::Failed(format!("cannot render the man page: {e}")))?;
    print(&String::from_utf8_lossy(&buf));
    Ok(Exit::Ok)
}
