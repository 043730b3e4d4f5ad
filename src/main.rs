//! The `auth-service` binary: parse the command line and run the command.

fn main() -> std::process::ExitCode {
    auth_service::cli::main()
}
