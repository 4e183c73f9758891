//! The `pam-gateway` admin CLI; everything is in `pam_gateway::cli`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    pam_gateway_cli::main()
}
