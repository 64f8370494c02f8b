fn main() -> std::process::ExitCode {
    poolxmpp::cli::main()
}
