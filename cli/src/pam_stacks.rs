//! Reading `/etc/pam.d` the way libpam does, far enough to say which
//! stacks load pam_gateway.so and whether their `auth` lines make sense.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::finding::Level;
use pam_gateway_core::direct;
use pam_gateway_core::module_args::ModuleArgs;
use pam_gateway_core::secure_file::{Owner, check_library};

/// Our module's file name.
const MODULE: &str = "pam_gateway.so";

/// Modules that check a password (or another first factor) in `auth`.
const PASSWORD_MODULES: &[&str] = &[
    "pam_unix.so",
    "pam_unix2.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
    "pam_pwdb.so",
    "pam_userdb.so",
    "pam_radius_auth.so",
];

/// Includes nested deeper than this are not followed (libpam stops too).
const MAX_DEPTH: usize = 8;

/// One `auth` rule after includes are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Where it is written: `file:line`.
    pub origin: String,
    /// `-auth`: libpam skips the line silently if the module is missing.
    pub dash: bool,
    pub control: String,
    pub module: String,
    pub args: Vec<String>,
}

impl Rule {
    fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    fn is_ours(&self) -> bool {
        self.module_name() == MODULE
    }

    fn is_password(&self) -> bool {
        PASSWORD_MODULES.contains(&self.module_name())
    }
}

/// What one service's stack says about pam_gateway.
#[derive(Debug, Default)]
pub struct ServiceReport {
    pub service: String,
    pub findings: Vec<(Level, String)>,
    /// A password module runs before pam_gateway (None: no password module).
    pub password_first: Option<bool>,
}

/// A line of a PAM file, split into words; `[...]` is one word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' if depth > 0 => {
                depth -= 1;
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Logical lines (continuations joined, comments dropped) with their
/// first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = raw.split('#').next().unwrap_or("");
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let joined = std::mem::take(&mut pending);
        if !joined.trim().is_empty() {
            out.push((start, joined));
        }
    }
    if !pending.trim().is_empty() {
        out.push((start, pending));
    }
    out
}

/// The `auth` rules of `service`, includes expanded, in the order libpam
/// runs them. Files that cannot be read are listed in `missing`.
fn auth_rules(
    dir: &Path,
    service: &str,
    depth: usize,
    rules: &mut Vec<Rule>,
    missing: &mut BTreeSet<String>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(text) = std::fs::read_to_string(dir.join(service)) else {
        missing.insert(service.to_string());
        return;
    };
    for (line_no, line) in logical_lines(&text) {
        let w = words(&line);
        let Some(first) = w.first() else { continue };
        if first == "@include" {
            if let Some(target) = w.get(1) {
                auth_rules(dir, target, depth + 1, rules, missing);
            }
            continue;
        }
        let kind = first.trim_start_matches('-').to_ascii_lowercase();
        if kind != "auth" || w.len() < 3 {
            continue;
        }
        let control = w[1].clone();
        if control == "include" || control == "substack" {
            auth_rules(dir, &w[2], depth + 1, rules, missing);
            continue;
        }
        rules.push(Rule {
            origin: format!("{service}:{line_no}"),
            dash: first.starts_with('-'),
            control,
            module: w[2].clone(),
            args: w[3..]
                .iter()
                .map(|a| a.trim_start_matches('[').trim_end_matches(']').to_string())
                .collect(),
        });
    }
}

/// Files that another file includes (common-auth, system-auth, ...): they
/// are parts of stacks, not services.
fn included_names(dir: &Path, names: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in names {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        for (_, line) in logical_lines(&text) {
            let w = words(&line);
            match (w.first().map(String::as_str), w.get(1), w.get(2)) {
                (Some("@include"), Some(target), _) => {
                    out.insert(target.clone());
                }
                (Some(_), Some(control), Some(target))
                    if control == "include" || control == "substack" =>
                {
                    out.insert(target.clone());
                }
                _ => {}
            }
        }
    }
    out
}

/// Where libpam looks for a module given by name only.
fn module_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "/lib/security",
        "/lib64/security",
        "/usr/lib/security",
        "/usr/lib64/security",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for base in ["/lib", "/usr/lib"] {
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains("-linux-") {
                    dirs.push(e.path().join("security"));
                }
            }
        }
    }
    dirs
}

/// The file libpam loads for `rule`, if there is one.
fn module_installed(rule: &Rule) -> Option<PathBuf> {
    let path = Path::new(&rule.module);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    module_dirs()
        .into_iter()
        .map(|d| d.join(&rule.module))
        .find(|p| p.is_file())
}

/// Why the direct library beside `module` (src/direct.rs) cannot be
/// loaded, if it cannot.
fn direct_library_problem(module: &Path) -> Option<String> {
    let lib = match direct::library_path_for(module) {
        Ok(lib) => lib,
        Err(e) => return Some(e),
    };
    check_library(&lib, Owner::ROOT)
        .err()
        .map(|e| e.to_string())
}

fn check_control(service: &str, rule: &Rule) -> (Level, String) {
    let c = rule.control.as_str();
    let what = format!("{service}: `auth {c} {}` ({})", rule.module, rule.origin);
    match c {
        "required" | "requisite" => (Level::Ok, what),
        "sufficient" => (
            Level::Warn,
            format!(
                "{what}: with `sufficient` a right code ends the stack at once and the lines \
                 after it are skipped; use `required`"
            ),
        ),
        "optional" => (
            Level::Warn,
            format!(
                "{what}: with `optional` a wrong code does not stop the login when another \
                 module succeeds; use `required`"
            ),
        ),
        _ if c.starts_with('[') && (c.contains("default=die") || c.contains("default=bad")) => {
            (Level::Ok, what)
        }
        _ => (
            Level::Warn,
            format!(
                "{what}: check the control: a wrong code must end in `die` or `bad` \
                 (`required` does)"
            ),
        ),
    }
}

/// Inspects every service in `dir` that loads pam_gateway.so. `config` is
/// the gateway.toml the caller checked; stacks that name another are noted.
pub fn inspect(dir: &Path, config: &Path) -> Result<Vec<ServiceReport>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with('~') && !n.contains(".dpkg-"))
        .collect();
    names.sort();
    let included = included_names(dir, &names);
    let mut reports = Vec::new();
    for service in names.iter().filter(|n| !included.contains(*n)) {
        let mut rules = Vec::new();
        let mut missing = BTreeSet::new();
        auth_rules(dir, service, 0, &mut rules, &mut missing);
        let ours: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].is_ours()).collect();
        let Some(&first) = ours.first() else {
            continue;
        };
        let mut report = ServiceReport {
            service: service.clone(),
            ..ServiceReport::default()
        };
        let f = &mut report.findings;
        for name in &missing {
            f.push((
                Level::Warn,
                format!(
                    "{service}: includes {name}, which is not in {}",
                    dir.display()
                ),
            ));
        }
        if ours.len() > 1 {
            let at: Vec<&str> = ours.iter().map(|&i| rules[i].origin.as_str()).collect();
            f.push((
                Level::Warn,
                format!(
                    "{service}: loads pam_gateway {} times ({}): each sends its own code",
                    ours.len(),
                    at.join(", ")
                ),
            ));
        }
        let rule = &rules[first];
        f.push(check_control(service, rule));
        match ModuleArgs::parse(&rule.args) {
            Err(m) => f.push((
                Level::Fail,
                format!(
                    "{service}: {m} ({}): the module refuses every login through {service}",
                    rule.origin
                ),
            )),
            Ok(args) if args.config != config => f.push((
                Level::Info,
                format!(
                    "{service}: uses config={} ({}), not the {} checked here",
                    args.config.display(),
                    rule.origin,
                    config.display()
                ),
            )),
            Ok(_) => {}
        }
        let installed = module_installed(rule);
        if let Some(why) = installed.as_deref().and_then(direct_library_problem) {
            f.push((
                Level::Fail,
                format!(
                    "{service}: the module's direct library cannot be loaded: {why}: every \
                     login through {service} whose message the module sends itself (not \
                     pam-gatewayd) is denied (make install)"
                ),
            ));
        }
        if installed.is_none() {
            if rule.dash {
                f.push((
                    Level::Warn,
                    format!(
                        "{service}: {} is not installed and `-auth` makes libpam skip it \
                         silently: no code is asked (make install)",
                        rule.module
                    ),
                ));
            } else {
                f.push((
                    Level::Fail,
                    format!(
                        "{service}: {} is not installed{}: libpam cannot load it and every \
                         login through {service} fails (make install)",
                        rule.module,
                        if Path::new(&rule.module).is_absolute() {
                            String::new()
                        } else {
                            " in the PAM module directory".to_string()
                        }
                    ),
                ));
            }
        }
        let before = rules[..first].iter().find(|r| r.is_password());
        let after = rules[first + 1..].iter().find(|r| r.is_password());
        match (before, after) {
            (Some(pw), _) => {
                report.password_first = Some(true);
                f.push((
                    Level::Ok,
                    format!(
                        "{service}: pam_gateway runs after the password check ({}, {})",
                        pw.module_name(),
                        pw.origin
                    ),
                ));
            }
            (None, Some(pw)) => {
                report.password_first = Some(false);
                f.push((
                    Level::Warn,
                    format!(
                        "{service}: pam_gateway ({}) runs before the password check ({}, {}): \
                         anyone who types an enrolled user's name makes the bot send them a \
                         code. Move the pam_gateway line below the password check \
                         (e.g. below @include common-auth)",
                        rule.origin,
                        pw.module_name(),
                        pw.origin
                    ),
                ));
            }
            (None, None) if service == "sshd" => f.push((
                Level::Info,
                "sshd: no password module in the stack: the code is the only PAM check, so \
                 sshd must require a key first (see SSH below)"
                    .to_string(),
            )),
            (None, None) => f.push((
                Level::Warn,
                format!(
                    "{service}: no password module in the stack: the code alone logs a user in \
                     through {service}"
                ),
            )),
        }
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_brackets_together() {
        assert_eq!(
            words("auth [success=1 default=ignore] pam_unix.so nullok"),
            vec![
                "auth",
                "[success=1 default=ignore]",
                "pam_unix.so",
                "nullok"
            ]
        );
        assert_eq!(
            words("  @include   common-auth "),
            vec!["@include", "common-auth"]
        );
    }

    #[test]
    fn comments_and_continuations() {
        let text = "# c\nauth required pam_x.so \\\n  a b # tail\n\n  \nauth optional y.so\n";
        assert_eq!(
            logical_lines(text),
            vec![
                (2, "auth required pam_x.so    a b ".to_string()),
                (6, "auth optional y.so".to_string())
            ]
        );
    }
}
