//! Whether sshd asks PAM at all: `sshd -T` (the effective settings) read
//! for UsePAM, KbdInteractiveAuthentication and AuthenticationMethods.

use std::process::Command;

use super::finding::Level;
use super::pam_stacks::ServiceReport;

/// The settings that decide whether pam_gateway is asked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SshdSettings {
    pub use_pam: Option<bool>,
    pub kbd_interactive: Option<bool>,
    pub password: Option<bool>,
    pub pubkey: Option<bool>,
    /// AuthenticationMethods: each list is one way in; `None` is `any`.
    pub methods: Option<Vec<Vec<String>>>,
}

fn yes(v: &str) -> bool {
    v.eq_ignore_ascii_case("yes")
}

/// Parses `sshd -T` output (`key value` lines, keys in lower case).
pub fn parse(text: &str) -> SshdSettings {
    let mut s = SshdSettings::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(' ') else {
            continue;
        };
        let value = value.trim();
        match key {
            "usepam" => s.use_pam = Some(yes(value)),
            "kbdinteractiveauthentication" => s.kbd_interactive = Some(yes(value)),
            // OpenSSH before 8.7 spelt it this way.
            "challengeresponseauthentication" if s.kbd_interactive.is_none() => {
                s.kbd_interactive = Some(yes(value))
            }
            "passwordauthentication" => s.password = Some(yes(value)),
            "pubkeyauthentication" => s.pubkey = Some(yes(value)),
            "authenticationmethods" => {
                s.methods = if value == "any" {
                    None
                } else {
                    Some(
                        value
                            .split_whitespace()
                            .map(|list| list.split(',').map(str::to_string).collect())
                            .collect(),
                    )
                }
            }
            _ => {}
        }
    }
    s
}

/// Runs `sshd -T`. `Ok(None)` when sshd is not installed.
pub fn query() -> Result<Option<String>, String> {
    let output = match Command::new("sshd").arg("-T").output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match Command::new("/usr/sbin/sshd").arg("-T").output() {
                Ok(o) => o,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("cannot run sshd -T: {e}")),
            }
        }
        Err(e) => return Err(format!("cannot run sshd -T: {e}")),
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let first = err
            .lines()
            .next()
            .unwrap_or("no message")
            .trim()
            .to_string();
        return Err(format!("`sshd -T` failed: {first}"));
    }
    Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
}

fn is_kbd(method: &str) -> bool {
    method == "keyboard-interactive" || method.starts_with("keyboard-interactive:")
}

const METHODS_HINT: &str = "set AuthenticationMethods publickey,keyboard-interactive:pam \
    (key + code) or keyboard-interactive:pam (password + code)";

/// What `s` means for pam_gateway, given the sshd PAM stack's report
/// (`None` when the sshd stack does not load the module).
pub fn check(s: &SshdSettings, stack: Option<&ServiceReport>) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    let Some(stack) = stack else {
        out.push((
            Level::Info,
            "the sshd PAM stack does not load pam_gateway: SSH logins are not asked for a code"
                .to_string(),
        ));
        return out;
    };
    if s.use_pam == Some(false) {
        out.push((
            Level::Warn,
            "UsePAM no: sshd never asks PAM, so SSH logins skip the code. Set UsePAM yes"
                .to_string(),
        ));
        return out;
    }
    out.push((Level::Ok, "UsePAM yes".to_string()));
    match (s.kbd_interactive, s.password) {
        (Some(false), Some(true)) => out.push((
            Level::Fail,
            "KbdInteractiveAuthentication no: sshd checks passwords through PAM but can only \
             answer a password prompt, so it answers the code prompt with the password and \
             every password login through pam_gateway fails. Set \
             KbdInteractiveAuthentication yes"
                .to_string(),
        )),
        (Some(false), _) => out.push((
            Level::Warn,
            "KbdInteractiveAuthentication no: sshd never shows the code prompt, so SSH logins \
             skip pam_gateway. Set KbdInteractiveAuthentication yes"
                .to_string(),
        )),
        _ => out.push((Level::Ok, "KbdInteractiveAuthentication yes".to_string())),
    }
    match &s.methods {
        None => {
            if s.pubkey != Some(false) {
                out.push((
                    Level::Warn,
                    format!(
                        "AuthenticationMethods any: a client with an authorized key logs in \
                         without a code; {METHODS_HINT}"
                    ),
                ));
            }
            if stack.password_first.is_none() {
                out.push((
                    Level::Warn,
                    format!(
                        "the sshd stack has no password module and AuthenticationMethods is \
                         any: the code alone logs a user in; {METHODS_HINT}"
                    ),
                ));
            }
        }
        Some(lists) => {
            let mut fine = true;
            for list in lists {
                let joined = list.join(",");
                let kbd = list.iter().position(|m| is_kbd(m));
                let key = list.iter().position(|m| m == "publickey");
                match kbd {
                    None => {
                        fine = false;
                        out.push((
                            Level::Warn,
                            format!(
                                "AuthenticationMethods {joined}: this way in never asks PAM, \
                                 so no code; {METHODS_HINT}"
                            ),
                        ));
                    }
                    Some(k) if stack.password_first.is_none() && key.is_none_or(|p| p > k) => {
                        fine = false;
                        out.push((
                            Level::Warn,
                            format!(
                                "AuthenticationMethods {joined}: the sshd stack has no \
                                 password module, so without a key first the code alone \
                                 logs a user in; use publickey,keyboard-interactive:pam"
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if fine {
                let all: Vec<String> = lists.iter().map(|l| l.join(",")).collect();
                out.push((
                    Level::Ok,
                    format!(
                        "AuthenticationMethods {}: every way in asks pam_gateway",
                        all.join(" ")
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(password_first: Option<bool>) -> ServiceReport {
        ServiceReport {
            service: "sshd".into(),
            findings: Vec::new(),
            password_first,
        }
    }

    fn levels(out: &[(Level, String)]) -> Vec<Level> {
        out.iter().map(|(l, _)| *l).collect()
    }

    #[test]
    fn parses_sshd_t() {
        let s = parse(
            "port 22\nusepam yes\nkbdinteractiveauthentication no\npasswordauthentication yes\n\
             authenticationmethods publickey,keyboard-interactive:pam password\n",
        );
        assert_eq!(s.use_pam, Some(true));
        assert_eq!(s.kbd_interactive, Some(false));
        assert_eq!(
            s.methods,
            Some(vec![
                vec![
                    "publickey".to_string(),
                    "keyboard-interactive:pam".to_string()
                ],
                vec!["password".to_string()]
            ])
        );
        assert_eq!(parse("authenticationmethods any\n").methods, None);
        assert_eq!(
            parse("challengeresponseauthentication yes\n").kbd_interactive,
            Some(true)
        );
    }

    #[test]
    fn key_plus_code_is_fine() {
        let s = parse(
            "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
             authenticationmethods publickey,keyboard-interactive:pam\n",
        );
        let out = check(&s, Some(&report(None)));
        assert!(out.iter().all(|(l, _)| *l == Level::Ok), "{out:?}");
    }

    #[test]
    fn kbd_interactive_off_with_passwords_stops_logins() {
        let s = parse("usepam yes\nkbdinteractiveauthentication no\npasswordauthentication yes\n");
        assert!(levels(&check(&s, Some(&report(Some(true))))).contains(&Level::Fail));
    }

    #[test]
    fn any_method_and_key_only_stack_warn() {
        let s = parse("usepam yes\nkbdinteractiveauthentication yes\nauthenticationmethods any\n");
        let out = check(&s, Some(&report(None)));
        assert_eq!(
            levels(&out).iter().filter(|l| **l == Level::Warn).count(),
            2,
            "{out:?}"
        );
        let s = parse(
            "usepam yes\nkbdinteractiveauthentication yes\nauthenticationmethods keyboard-interactive password\n",
        );
        let out = check(&s, Some(&report(Some(true))));
        assert!(
            out.iter()
                .any(|(l, t)| *l == Level::Warn && t.contains("password")),
            "{out:?}"
        );
    }

    #[test]
    fn use_pam_off_skips_the_module() {
        let out = check(&parse("usepam no\n"), Some(&report(Some(true))));
        assert_eq!(levels(&out), vec![Level::Warn]);
        assert_eq!(levels(&check(&parse(""), None)), vec![Level::Info]);
    }
}
