fn main() -> std::process::ExitCode {
    sockpulse::cli::main()
}
