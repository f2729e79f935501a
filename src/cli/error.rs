//! How a command ends: its verdict when it ran, or the error that stopped
//! it; each maps to one exit code.

use std::fmt;
use std::process::ExitCode;

use crate::agent::AgentError;
use crate::agent_client::FetchError;
use crate::config::ConfigError;

/// The verdict of a command that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything checked is healthy: exit 0.
    Ok,
    /// Something checked is unhealthy: exit 1.
    Unhealthy,
}

impl Exit {
    /// `Ok` when `healthy`.
    pub fn healthy_if(healthy: bool) -> Exit {
        if healthy {
            Exit::Ok
        } else {
            Exit::Unhealthy
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::from(0),
            Exit::Unhealthy => ExitCode::from(1),
        }
    }
}

/// Why a command could not run or finish.
#[derive(Debug)]
pub enum Error {
    /// The configuration has problems: exit 2.
    Config(ConfigError),
    /// The command line asks for something that cannot work: exit 2.
    Usage(String),
    /// The command could not do its job: exit 1.
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::Usage(_) => ExitCode::from(2),
            Error::Failed(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Usage(msg) | Error::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<AgentError> for Error {
    fn from(e: AgentError) -> Error {
        match e {
            AgentError::Config(e) => Error::Config(e),
            AgentError::Start(_) => Error::Usage(e.to_string()),
            AgentError::Loop(_) => Error::Failed(e.to_string()),
        }
    }
}

impl From<FetchError> for Error {
    fn from(e: FetchError) -> Error {
        match e {
            FetchError::BadUrl(_) => Error::Usage(e.to_string()),
            FetchError::Unreachable(_) => Error::Failed(e.to_string()),
        }
    }
}
