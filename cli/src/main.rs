//! The `pam-gateway` admin CLI; everything is in `pam_gateway::cli`.

fn main() -> std::process::ExitCode {
    pam_gateway_cli::main()
}
