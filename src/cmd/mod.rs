//! One module per subcommand. Each returns how it ended (`cli::Exit`) or
//! why it could not run (`cli::Error`); `cli` turns either into an exit code.

pub mod check_config;
pub mod docs;
pub mod run;
pub mod sockets;
pub mod status;
