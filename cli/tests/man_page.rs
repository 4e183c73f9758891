//! pam-gateway(8) is generated (`pam-gateway generate man`, `make man`)
//! from the clap definitions and cli/doc/pam-gateway.8.in: the committed
//! man/pam-gateway.8 must be exactly that output, name every command, and
//! render without a warning. Needs no root.

use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory;

const PAGE: &str = "man/pam-gateway.8";

fn pam_gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pam-gateway"))
        .args(args)
        .output()
        .expect("run pam-gateway")
}

fn generated() -> String {
    let out = pam_gateway(&["generate", "man"]);
    assert!(
        out.status.success(),
        "pam-gateway generate man: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(PAGE);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every visible command that takes no subcommand, as its words.
fn commands() -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let words = format!("{path} {}", sub.get_name()).trim().to_string();
            if sub.has_subcommands() {
                walk(sub, &words, out);
            } else {
                out.push(words);
            }
        }
    }
    let mut out = Vec::new();
    walk(&pam_gateway_cli::Cli::command(), "", &mut out);
    assert!(out.len() >= 13, "{out:?}");
    out
}

#[test]
fn the_committed_man_page_is_what_the_binary_generates() {
    let generated = generated();
    let committed = committed();
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(g, c)| g != c)
            .unwrap_or_else(|| generated.lines().count().min(committed.lines().count()));
        panic!(
            "{PAGE} is not what `pam-gateway generate man` prints (first difference at line \
             {}: generated {:?}, committed {:?}). Edit the clap definitions in cli/src/lib.rs \
             or cli/doc/pam-gateway.8.in, never {PAGE}; then run `make man`.",
            line + 1,
            generated.lines().nth(line),
            committed.lines().nth(line),
        );
    }
}

#[test]
fn the_man_page_documents_every_command_and_its_options() {
    let page = generated();
    let synopsis = page
        .split_once(".SH SYNOPSIS\n")
        .and_then(|(_, rest)| rest.split_once("\n.SH "))
        .map(|(synopsis, _)| synopsis)
        .expect("SYNOPSIS");
    for words in commands() {
        let roff = words.replace('-', "\\-");
        assert!(
            page.lines()
                .any(|l| l == format!(".SS {words}") || l.starts_with(&format!(".SS {words} "))),
            "no `.SS {words}` in the man page"
        );
        assert!(
            synopsis.contains(&format!("\\fBpam\\-gateway {roff}\\fR")),
            "`pam-gateway {words}` is not in the SYNOPSIS"
        );
    }
    // Every option of every command, by its long name.
    let cli = pam_gateway_cli::Cli::command();
    let mut cmds = vec![&cli];
    while let Some(cmd) = cmds.pop() {
        cmds.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()));
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let roff = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
                assert!(page.contains(&roff), "--{long} is not in the man page");
            }
        }
    }
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(page.contains(&format!("\n.SH {section}\n")), "no {section}");
    }
    for code in 0..=5 {
        assert!(
            page.contains(&format!("\n.B {code}\n")),
            "exit status {code}"
        );
    }
    // The generator itself is not a command an admin needs.
    assert!(
        !page.contains(".SS generate") && !page.contains("\\fBpam\\-gateway generate"),
        "the hidden command is in the page"
    );
}

#[test]
fn the_man_page_renders_without_warnings() {
    let dir = std::env::temp_dir().join(format!("pgw-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("pam-gateway.8");
    std::fs::write(&file, generated()).expect("write");
    let out = Command::new("groff")
        .args(["-man", "-Tascii", "-ww"])
        .arg(&file)
        .output()
        .expect("groff (apt-get install groff-base)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "groff -ww: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("configure telegram"), "{text}");
}

#[test]
fn generate_is_hidden_from_help() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = pam_gateway(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("backup-codes"), "{help}");
        assert!(!help.contains("generate"), "{args:?}: {help}");
    }
}
