//! The `sockpulse` binary: all of it lives in the library; `cli::main` runs it.

fn main() -> std::process::ExitCode {
    sockpulse::cli::main()
}
