//! gateway.toml(5) is the reference: every key the parsers accept must be a
//! term there, in the section of the file it belongs to, and every term
//! there must be a key they accept.
//!
//! The keys come from the parsers, not from a list kept by hand: every
//! section is `deny_unknown_fields`, so a section holding only
//! `zz_unknown_key = 1` is refused with serde's "unknown field
//! `zz_unknown_key`, expected one of `a`, `b`, ..." — the section's keys.
//! A top-level key that is itself such a section (`[telegram]`) is probed
//! the same way; `[webhook.headers]` is a free-form table and yields no list.
//! A key is documented when it is a bold term of a tagged paragraph
//! (`.TP` then `.B key`, `.BR a ", " b` or `\fBkey\fR`) under the page's
//! `.SH [section]` heading (`TOP-LEVEL KEYS` and `THE USERS FILE` for the
//! keys outside sections).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pam_gateway_core::config::Config;
use pam_gateway_core::users::Users;

const PAGE: &str = "man/gateway.toml.5";
const PROBE: &str = "zz_unknown_key";
const TOP_LEVEL: &str = "TOP-LEVEL KEYS";
const USERS_FILE: &str = "THE USERS FILE";

/// Sections whose key lists the probe must find: if serde's message or the
/// parsers change so that one yields none, the test fails instead of
/// checking nothing. New sections are found without being listed here.
const KNOWN_SECTIONS: &[&str] = &[
    "telegram",
    "signal",
    "sms",
    "webhook",
    "command",
    "code",
    "policy",
    "limits",
    "message",
    "remember",
    "alert",
    "directory",
];

/// The keys serde names after "expected" in an unknown-field error, or
/// `None` when the error is something else (the probed key is no section).
fn expected_keys(message: &str) -> Option<Vec<String>> {
    let rest = message.strip_prefix(&format!("unknown field `{PROBE}`, "))?;
    if rest.starts_with("there are no fields") {
        return Some(Vec::new());
    }
    let list = rest
        .strip_prefix("expected one of ")
        .or_else(|| rest.strip_prefix("expected "))?;
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

fn config_error(text: &str) -> String {
    match Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), text) {
        Ok(_) => panic!("gateway.toml with an unknown key parsed:\n{text}"),
        Err(e) => e.message,
    }
}

fn users_error(text: &str) -> String {
    match Users::parse(Path::new("/etc/pam_gateway/users.toml"), text) {
        Ok(_) => panic!("users.toml with an unknown key parsed:\n{text}"),
        Err(e) => e.message,
    }
}

/// Every key of gateway.toml and users.toml, by the heading of the man page
/// section that must document it.
fn parser_keys() -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    let message = config_error(&format!("{PROBE} = 1\n"));
    let top = expected_keys(&message)
        .unwrap_or_else(|| panic!("no key list for the top level of gateway.toml: {message}"));
    assert!(!top.is_empty(), "gateway.toml has no top-level keys?");
    let mut sections = BTreeSet::new();
    for key in top {
        let message = config_error(&format!("[{key}]\n{PROBE} = 1\n"));
        match expected_keys(&message) {
            Some(fields) => {
                keys.insert(format!("[{key}]"), fields.into_iter().collect());
                sections.insert(key);
            }
            None => {
                keys.entry(TOP_LEVEL.to_string()).or_default().insert(key);
            }
        }
    }
    for known in KNOWN_SECTIONS {
        assert!(
            sections.contains(*known),
            "[{known}]: probing gateway.toml yielded no key list for this section \
             (did serde's unknown-field message change?)"
        );
    }
    for (section, fields) in &keys {
        assert!(!fields.is_empty(), "{section}: no keys found");
    }

    // users.toml: one top-level table `users`, a map of named entries.
    let message = users_error(&format!("{PROBE} = 1\n"));
    let top = expected_keys(&message)
        .unwrap_or_else(|| panic!("no key list for the top level of users.toml: {message}"));
    assert_eq!(
        top,
        ["users"],
        "users.toml has a new top-level key: document it in {PAGE} ({USERS_FILE}) \
         and teach this test where"
    );
    let message = users_error(&format!("[users.alice]\n{PROBE} = 1\n"));
    let entry = expected_keys(&message)
        .unwrap_or_else(|| panic!("no key list for a [users.NAME] entry: {message}"));
    assert!(!entry.is_empty(), "[users.NAME]: no keys found");
    keys.insert(USERS_FILE.to_string(), entry.into_iter().collect());
    keys
}

/// Roff escapes that may appear in a heading or a term.
fn unescape(s: &str) -> String {
    s.replace("\\-", "-")
        .replace("\\(dq", "\"")
        .replace("\\&", "")
        .replace("\\e", "\\")
}

/// A macro line's arguments, with roff's double-quote grouping.
fn macro_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(&first) = chars.peek() else {
            return args;
        };
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.next_if_eq(&'"').is_some() => arg.push('"'),
                    '"' => break,
                    c => arg.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '\t') {
                arg.push(c);
            }
        }
        args.push(arg);
    }
}

/// The bold text of one line: every argument of `.B`, the alternating ones
/// of `.BR`, `.BI`, `.RB` and `.IB`, and `\fB...\f` runs.
fn bold_text(line: &str) -> Vec<String> {
    let mut bold = Vec::new();
    if let Some(rest) = line.strip_prefix('.') {
        let (name, args) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let args = macro_args(args);
        let first_bold = match name {
            "B" => {
                bold.push(args.join(" "));
                None
            }
            "BR" | "BI" => Some(0),
            "RB" | "IB" => Some(1),
            _ => None,
        };
        if let Some(start) = first_bold {
            bold.extend(args.into_iter().skip(start).step_by(2));
        }
    }
    let mut rest = line;
    while let Some(at) = rest.find("\\fB") {
        rest = &rest[at + 3..];
        let end = rest.find("\\f").unwrap_or(rest.len());
        bold.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    bold
}

/// The terms of the tagged paragraphs (`.TP` and the line after it) of each
/// `.SH` section of the page, as key-like words.
fn man_terms(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut terms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut heading = String::new();
    let mut tag_next = false;
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix(".SH") {
            heading = unescape(&macro_args(rest).join(" "));
            tag_next = false;
            continue;
        }
        if line == ".TP" || line.starts_with(".TP ") {
            tag_next = true;
            continue;
        }
        if !tag_next || line.starts_with(".\\\"") {
            continue;
        }
        tag_next = false;
        for text in bold_text(line) {
            let words = unescape(&text);
            for word in words.split(|c: char| c == ',' || c.is_whitespace()) {
                let word = word.trim_matches(|c| c == '"' || c == '.');
                if !word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    terms
                        .entry(heading.clone())
                        .or_default()
                        .insert(word.to_string());
                }
            }
        }
    }
    terms
}

fn page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What is wrong between the parsers' keys and the page's terms.
fn mismatches(
    keys: &BTreeMap<String, BTreeSet<String>>,
    terms: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let none = BTreeSet::new();
    let mut problems = Vec::new();
    for (section, keys) in keys {
        let documented = terms.get(section).unwrap_or(&none);
        if !terms.contains_key(section) {
            problems.push(format!("no `.SH {section}` section"));
        }
        for key in keys.difference(documented) {
            problems.push(format!(
                "{section}: key `{key}` is not documented (add `.TP` / `.B {key}` there)"
            ));
        }
        for term in documented.difference(keys) {
            problems.push(format!(
                "{section}: `{term}` is documented but the parser does not accept it"
            ));
        }
    }
    for section in terms.keys() {
        if section.starts_with('[') && !keys.contains_key(section) {
            problems.push(format!(
                "`.SH {section}` documents a section the parser does not accept"
            ));
        }
    }
    problems
}

#[test]
fn every_config_key_is_documented_in_gateway_toml_5() {
    let keys = parser_keys();
    let problems = mismatches(&keys, &man_terms(&page()));
    assert!(
        problems.is_empty(),
        "{PAGE} and the parsers disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The check itself: a key dropped from the page, or a page without a
/// section, is reported.
#[test]
fn a_missing_key_or_section_is_reported() {
    let keys = parser_keys();
    let page = page();

    let without_key = page.replacen(".TP\n.B recipient_arg\n", ".TP\n.B zz_other\n", 1);
    assert_ne!(
        without_key, page,
        "the page no longer has `.B recipient_arg`"
    );
    let problems = mismatches(&keys, &man_terms(&without_key));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("[command]: key `recipient_arg` is not documented")),
        "{problems:?}"
    );

    let without_section = page.replacen(".SH [limits]\n", ".SH LIMITS\n", 1);
    assert_ne!(
        without_section, page,
        "the page no longer has `.SH [limits]`"
    );
    let problems = mismatches(&keys, &man_terms(&without_section));
    assert!(
        problems.iter().any(|p| p == "no `.SH [limits]` section"),
        "{problems:?}"
    );
}

#[test]
fn terms_are_read_from_every_form_of_bold() {
    let terms = man_terms(
        ".SH [x]\n.TP\n.B a_key\nText.\n.TP\n.BR one \", \" two\n.TP\n\\fBthree\\fR, \\fIfour\\fR\n\
         .TP\n.RB ( five )\n.PP\n.B not_a_term\n",
    );
    let found: Vec<&str> = terms["[x]"].iter().map(String::as_str).collect();
    assert_eq!(found, ["a_key", "five", "one", "three", "two"]);
}
