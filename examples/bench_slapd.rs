//! A real OpenLDAP slapd on loopback for `make bench` (the directory
//! cases): test-support's harness (test-support/src/slapd.rs) with one
//! user whose `pamGatewayTelegram` is the bench's chat.
//!
//! ```text
//! bench_slapd --user NAME --chat ID --out FILE --while PATH
//! ```
//!
//! Writes FILE (atomically) once slapd answers, as shell assignments:
//! `LDAP_URI` (StartTLS), `LDAPS_URI`, `LDAPI_URI`, `LDAP_CA`, `LDAP_BASE`,
//! `LDAP_BIND_DN`, `LDAP_BIND_PW`. Runs while PATH exists, then stops
//! slapd and removes its directory (scripts/bench.sh removes PATH and
//! waits for this process).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pgw_test_support::slapd::Slapd;

fn run(argv: &[String]) -> Result<(), String> {
    let mut user = None;
    let mut chat = None;
    let mut out = None;
    let mut watch = None;
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--user" => user = Some(value),
            "--chat" => chat = Some(value),
            "--out" => out = Some(PathBuf::from(value)),
            "--while" => watch = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let (Some(user), Some(chat), Some(out), Some(watch)) = (user, chat, out, watch) else {
        return Err("usage: bench_slapd --user NAME --chat ID --out FILE --while PATH".into());
    };
    let slapd = Slapd::start().map_err(|e| format!("slapd: {e}"))?;
    slapd
        .add_user(&user, &[("pamGatewayTelegram", &chat)])
        .map_err(|e| format!("add {user}: {e}"))?;
    let text = format!(
        "LDAP_URI='{}'\nLDAPS_URI='{}'\nLDAPI_URI='{}'\nLDAP_CA='{}'\nLDAP_BASE='{}'\n\
         LDAP_BIND_DN='{}'\nLDAP_BIND_PW='{}'\n",
        slapd.ldap_uri(),
        slapd.ldaps_uri(),
        slapd.ldapi_uri(),
        slapd.ca_file().display(),
        Slapd::BASE_DN,
        slapd.reader_dn(),
        slapd.reader_password(),
    );
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    while watch.exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(slapd);
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_slapd: {e}");
            ExitCode::FAILURE
        }
    }
}
