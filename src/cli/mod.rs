//! The command line: parse the flags, run the chosen command, and turn how
//! it ended into an exit code, in this one place. Exit codes: 0 all good,
//! 1 something unhealthy, 2 usage or config error.

pub mod args;
mod error;
pub mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cmd;
use args::{Cli, Command};
pub use error::{Error, Exit};

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version "fail" to stdout and are not errors.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    }))
    .format_timestamp_millis()
    .init();
    let ended = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Sockets(args) => cmd::sockets::run(args),
        Command::CheckConfig { file } => cmd::check_config::run(&file),
        Command::Completions { shell } => cmd::docs::completions(shell),
        Command::Man => cmd::docs::man(),
    };
    match ended {
        Ok(exit) => exit.into(),
        Err(e) => {
            output::complain(&e.to_string());
            e.exit_code()
        }
    }
}
