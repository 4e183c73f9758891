//! Edits of `gateway.toml` and `users.toml` that keep everything else:
//! comments, blank lines, key order, other users, keys we do not know.
//!
//! Built on `toml_edit` (the format-preserving half of the `toml` family).
//! Callers validate the text with [`pam_gateway_core::config::Config::parse`] or
//! [`pam_gateway_core::users::Users::parse`] before and after an edit; errors here
//! never quote the file (a config line may hold a token).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, Value};

use pam_gateway_core::gateway::GatewayKind;

use pam_gateway_core::toml_errors::{ParseError, line_at};

fn parse(file: &Path, text: &str) -> Result<DocumentMut, ParseError> {
    text.parse::<DocumentMut>().map_err(|e| ParseError {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_at(text, s.start)),
        key: None,
        // toml_edit's message quotes the line, which may hold a secret.
        message: "is not valid TOML here; fix the file by hand".to_string(),
    })
}

fn not_a_table(file: &Path, key: &str) -> ParseError {
    ParseError {
        file: file.to_path_buf(),
        line: None,
        key: Some(key.to_string()),
        message: "is not a table; fix the file by hand".to_string(),
    }
}

/// Sets `key` in `table` to a string, keeping the comment that may follow
/// the old value on its line.
fn set_string(table: &mut dyn toml_edit::TableLike, key: &str, text: &str) {
    set_value(table, key, Value::from(text));
}

/// Sets `key` in `table` to `value`, keeping the comment that may follow
/// the old value on its line.
fn set_value(table: &mut dyn toml_edit::TableLike, key: &str, value: Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// Returns `table[key]` as a table, creating `[key]` when it is missing,
/// with `prefix` (comment lines) above its header.
fn table_entry<'a>(
    file: &Path,
    parent: &'a mut dyn toml_edit::TableLike,
    key: &str,
    dotted: &str,
    implicit: bool,
    prefix: &str,
) -> Result<&'a mut dyn toml_edit::TableLike, ParseError> {
    if parent.get(key).is_none() {
        let mut t = Table::new();
        t.set_implicit(implicit);
        if !prefix.is_empty() {
            t.decor_mut().set_prefix(prefix);
        }
        parent.insert(key, Item::Table(t));
    }
    parent
        .get_mut(key)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| not_a_table(file, dotted))
}

/// A file of nothing but comments keeps them as the document's trailing
/// text, which would end up below a table added now. Returns them (ending
/// in a blank line, so they stay a header apart from the table) for the
/// new table's prefix, and clears the trailing text.
fn take_header(doc: &mut DocumentMut) -> String {
    if !doc.as_table().is_empty() {
        return String::new();
    }
    let mut header = doc.trailing().as_str().unwrap_or("").to_string();
    if header.trim().is_empty() {
        return String::new();
    }
    doc.set_trailing("");
    if !header.ends_with('\n') {
        header.push('\n');
    }
    if !header.ends_with("\n\n") {
        header.push('\n');
    }
    header
}

/// The part of the comments above a table that a blank line separates from
/// it (a header for what follows); the lines right above the table are its
/// own and go with it.
fn detached_part(prefix: &str) -> &str {
    let mut end = 0;
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        offset += line.len();
        if line.trim().is_empty() {
            end = offset;
        }
    }
    &prefix[..end]
}

/// Puts the bot token (and, when given, the API URL) into `[telegram]`.
pub fn set_telegram(
    file: &Path,
    text: &str,
    bot_token: &str,
    api_url: Option<&str>,
) -> Result<String, ParseError> {
    let mut doc = parse(file, text)?;
    let header = take_header(&mut doc);
    let telegram = table_entry(
        file,
        doc.as_table_mut(),
        "telegram",
        "telegram",
        false,
        &header,
    )?;
    set_string(telegram, "bot_token", bot_token);
    if let Some(url) = api_url {
        set_string(telegram, "api_url", url);
    }
    Ok(doc.to_string())
}

/// The largest document position of a gateway section (or a table below
/// one): a new gateway section goes right after it.
fn last_gateway_position(doc: &DocumentMut) -> Option<isize> {
    fn deepest(table: &Table) -> Option<isize> {
        table
            .iter()
            .filter_map(|(_, item)| item.as_table())
            .filter_map(deepest)
            .chain(table.position())
            .max()
    }
    doc.as_table()
        .iter()
        .filter(|(key, _)| GatewayKind::from_id(key).is_some())
        .filter_map(|(_, item)| item.as_table())
        .filter_map(deepest)
        .max()
}

/// Comment lines right after a table's last key are stored as the prefix
/// of the next table, yet belong to the table above (a commented-out key).
/// Splits such a prefix at its first blank line: `(head, tail)` when
/// comment lines come before that blank line.
fn split_trailing_comments(prefix: &str) -> Option<(&str, &str)> {
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        if line.trim().is_empty() {
            return (offset > 0).then(|| (&prefix[..offset], &prefix[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// The key path of the table (at any depth) that comes first after
/// document position `after`.
fn next_table_path(table: &Table, after: isize) -> Option<Vec<String>> {
    fn walk(
        table: &Table,
        after: isize,
        path: &mut Vec<String>,
        best: &mut Option<(isize, Vec<String>)>,
    ) {
        for (key, item) in table.iter() {
            let Some(t) = item.as_table() else { continue };
            path.push(key.to_string());
            if let Some(p) = t.position()
                && p > after
                && best.as_ref().is_none_or(|(b, _)| p < *b)
            {
                *best = Some((p, path.clone()));
            }
            walk(t, after, path, best);
            path.pop();
        }
    }
    let mut best = None;
    walk(table, after, &mut Vec::new(), &mut best);
    best.map(|(_, path)| path)
}

/// The table at `path` below `table`.
fn table_at_mut<'a>(table: &'a mut Table, path: &[String]) -> Option<&'a mut Table> {
    let mut t = table;
    for key in path {
        t = t.get_mut(key)?.as_table_mut()?;
    }
    Some(t)
}

/// What [`set_gateway_section`] changed besides the section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionEdit {
    pub text: String,
    /// The `gateways` list after the edit, when the file has one and the
    /// gateway had to be added to it.
    pub added_to_order: Option<Vec<String>>,
}

/// Writes one gateway's `[section]`: sets `values` (a replaced value keeps
/// its comments), removes the keys of `managed` that `values` does not
/// set, and keeps every other key (timeouts, proxy) and comment. A new
/// section goes right after the last gateway section. When the file has
/// an explicit `gateways = [...]` without this gateway, it is appended
/// (a list that leaves out a configured section is invalid).
pub fn set_gateway_section(
    file: &Path,
    text: &str,
    section: &str,
    managed: &[&str],
    values: &[(&str, Value)],
) -> Result<SectionEdit, ParseError> {
    let mut doc = parse(file, text)?;
    let header = take_header(&mut doc);
    let position = last_gateway_position(&doc);
    if doc.get(section).is_none() {
        let mut t = Table::new();
        let mut prefix = header;
        if let Some(p) = position {
            // Equal positions keep document order, and this table is
            // visited last: it lands right after that gateway section.
            t.set_position(Some(p));
            // Comment lines right below that section's last key stay with
            // it, above the new header.
            if let Some(next) = next_table_path(doc.as_table(), p)
                .and_then(|path| table_at_mut(doc.as_table_mut(), &path))
            {
                let old = next
                    .decor()
                    .prefix()
                    .and_then(|r| r.as_str())
                    .unwrap_or("")
                    .to_string();
                if let Some((head, tail)) = split_trailing_comments(&old) {
                    prefix = format!("{prefix}{head}\n");
                    next.decor_mut().set_prefix(format!("\n{tail}"));
                }
            }
        }
        if !prefix.is_empty() {
            t.decor_mut().set_prefix(prefix);
        }
        doc.insert(section, Item::Table(t));
    }
    let table = doc
        .get_mut(section)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| not_a_table(file, section))?;
    for key in managed {
        if !values.iter().any(|(k, _)| k == key) {
            table.remove(key);
        }
    }
    for (key, value) in values {
        set_value(table, key, value.clone());
    }
    let mut added_to_order = None;
    if let Some(list) = doc.get_mut("gateways").and_then(Item::as_array_mut)
        && !list.iter().any(|v| v.as_str() == Some(section))
    {
        list.push(section);
        added_to_order = Some(
            list.iter()
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect(),
        );
    }
    Ok(SectionEdit {
        text: doc.to_string(),
        added_to_order,
    })
}

/// Sets `[users.USER] <gateway> = "RECIPIENT"`, keeping the user's other keys.
pub fn set_user_recipient(
    file: &Path,
    text: &str,
    user: &str,
    gateway: &str,
    recipient: &str,
) -> Result<String, ParseError> {
    let mut doc = parse(file, text)?;
    let header = take_header(&mut doc);
    let users = table_entry(file, doc.as_table_mut(), "users", "users", true, "")?;
    let entry = table_entry(file, users, user, &format!("users.{user}"), false, &header)?;
    set_string(entry, gateway, recipient);
    Ok(doc.to_string())
}

/// Sets `[users.USER] totp_secret = "BASE32"`, keeping the user's other
/// keys (a replaced secret keeps its place and trailing comment).
pub fn set_user_totp_secret(
    file: &Path,
    text: &str,
    user: &str,
    base32: &str,
) -> Result<String, ParseError> {
    set_user_recipient(file, text, user, "totp_secret", base32)
}

/// Removes `[users.USER]`. Returns `None` when the user has no entry.
pub fn remove_user(file: &Path, text: &str, user: &str) -> Result<Option<String>, ParseError> {
    let mut doc = parse(file, text)?;
    let Some(users) = doc.get_mut("users") else {
        return Ok(None);
    };
    let users = users
        .as_table_like_mut()
        .ok_or_else(|| not_a_table(file, "users"))?;
    let Some(removed) = users.remove(user) else {
        return Ok(None);
    };
    // A header above the removed table stays, above the next one.
    let removed = removed.as_table();
    let header = removed
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .map(detached_part)
        .unwrap_or("")
        .to_string();
    if !header.is_empty() {
        let position = removed.and_then(Table::position);
        let next = users
            .iter_mut()
            .filter_map(|(_, item)| item.as_table_mut())
            .filter(|t| t.position() > position)
            .min_by_key(|t| t.position());
        match next {
            Some(t) => {
                let own = t
                    .decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or("")
                    .to_string();
                t.decor_mut().set_prefix(format!("{header}{own}"));
            }
            None => {
                let trailing = doc.trailing().as_str().unwrap_or("").to_string();
                doc.set_trailing(format!("{header}{trailing}"));
            }
        }
    }
    Ok(Some(doc.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_gateway_core::config::Config;
    use pam_gateway_core::gateway::GatewayKind;
    use pam_gateway_core::gateway::telegram::TelegramConfig;
    use pam_gateway_core::users::Users;

    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
    const OTHER: &str = "987654321:BBEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3x";

    fn f() -> &'static Path {
        Path::new("/etc/pam_gateway/x.toml")
    }

    #[test]
    fn token_replaced_comments_and_keys_kept() {
        let text = format!(
            "# top comment\nusers_file = \"/srv/u.toml\"\n\n[telegram]\n# the bot\n\
             bot_token = \"{TOKEN}\" # from BotFather\ntimeout = 3\n\n[code]\ndigits = 8\n"
        );
        let out = set_telegram(f(), &text, OTHER, None).expect("edit");
        assert_eq!(
            out,
            text.replace(TOKEN, OTHER),
            "only the token changed:\n{out}"
        );
        let c = Config::parse(f(), &out).expect("valid");
        assert_eq!(
            c.section::<TelegramConfig>()
                .cloned()
                .expect("tg")
                .bot_token
                .expose(),
            OTHER
        );
    }

    #[test]
    fn telegram_section_added_to_a_file_without_it() {
        let text = "# mine\nusers_file = \"/srv/u.toml\"\n";
        let out = set_telegram(f(), text, TOKEN, Some("http://127.0.0.1:9")).expect("edit");
        assert!(out.starts_with(text), "{out}");
        let c = Config::parse(f(), &out).expect("valid");
        let tg = c.section::<TelegramConfig>().cloned().expect("tg");
        assert_eq!(tg.api_url, "http://127.0.0.1:9");
        assert_eq!(c.users_file, Path::new("/srv/u.toml"));
        let empty = set_telegram(f(), "", TOKEN, None).expect("edit");
        assert!(Config::parse(f(), &empty).is_ok(), "{empty}");
    }

    #[test]
    fn user_added_others_and_comments_kept() {
        let text = "# enrolled users\n[users.bob]\n# bob's phone\ntelegram = \"555\"\n";
        let out = set_user_recipient(f(), text, "alice", "telegram", "123456977").expect("edit");
        assert!(out.starts_with(text), "{out}");
        let u = Users::parse(f(), &out).expect("valid");
        assert_eq!(u.users.len(), 2);
        assert_eq!(
            u.get("alice")
                .and_then(|e| e.recipient(GatewayKind::Telegram)),
            Some("123456977")
        );
        assert!(
            out.contains("[users.alice]\ntelegram = \"123456977\"\n"),
            "{out}"
        );
        // Replacing keeps the entry where it is and its trailing comment.
        let text = "[users.alice]\ntelegram = \"1\" # old phone\n[users.bob]\ntelegram = \"2\"\n";
        let out = set_user_recipient(f(), text, "alice", "telegram", "3").expect("edit");
        assert_eq!(
            out,
            "[users.alice]\ntelegram = \"3\" # old phone\n[users.bob]\ntelegram = \"2\"\n"
        );
    }

    #[test]
    fn a_comment_only_file_stays_a_header() {
        let out = set_user_recipient(f(), "# users\n", "alice", "telegram", "1").expect("edit");
        assert_eq!(out, "# users\n\n[users.alice]\ntelegram = \"1\"\n");
        let out = set_user_recipient(f(), &out, "bob", "telegram", "2").expect("edit");
        assert!(out.starts_with("# users\n\n[users.alice]"), "{out}");
        let out = set_telegram(f(), "# config\n# more", TOKEN, None).expect("edit");
        assert!(out.starts_with("# config\n# more\n\n[telegram]\n"), "{out}");
    }

    #[test]
    fn totp_secret_joins_the_entry_and_replaces_in_place() {
        const A: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        const B: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let text = "# team\n[users.alice]\n# phone\ntelegram = \"1\"\n\n[users.bob]\nsms = \"+4915112345678\"\n";
        let out = set_user_totp_secret(f(), text, "alice", A).expect("edit");
        assert_eq!(
            out,
            format!(
                "# team\n[users.alice]\n# phone\ntelegram = \"1\"\ntotp_secret = \"{A}\"\n\n\
                 [users.bob]\nsms = \"+4915112345678\"\n"
            )
        );
        let u = Users::parse(f(), &out).expect("valid");
        assert!(
            u.get("alice")
                .and_then(|e| e.totp_secret.as_ref())
                .is_some()
        );
        assert!(u.get("bob").and_then(|e| e.totp_secret.as_ref()).is_none());
        let marked = out.replace(&format!("\"{A}\"\n"), &format!("\"{A}\" # phone app\n"));
        let again = set_user_totp_secret(f(), &marked, "alice", B).expect("edit");
        assert_eq!(again, marked.replace(A, B));
        // A user with no entry gets one holding only the secret (valid).
        let out = set_user_totp_secret(f(), text, "carol", A).expect("edit");
        let u = Users::parse(f(), &out).expect("valid");
        assert!(
            u.get("carol")
                .is_some_and(|e| e.is_empty() && e.totp_secret.is_some())
        );
    }

    #[test]
    fn odd_user_names_are_quoted() {
        let out = set_user_recipient(f(), "", "first.last", "telegram", "42").expect("edit");
        let u = Users::parse(f(), &out).expect("valid");
        assert!(u.get("first.last").is_some(), "{out}");
    }

    #[test]
    fn remove_keeps_the_rest() {
        let text = "# header\n\n# alice\n[users.alice]\ntelegram = \"1\"\n\n# bob\n[users.bob]\ntelegram = \"2\"\n";
        let out = remove_user(f(), text, "alice")
            .expect("edit")
            .expect("removed");
        let u = Users::parse(f(), &out).expect("valid");
        assert!(u.get("alice").is_none());
        assert!(u.get("bob").is_some());
        assert_eq!(out, "# header\n\n\n# bob\n[users.bob]\ntelegram = \"2\"\n");
        // The last table's header stays too.
        let out = remove_user(f(), &out, "bob")
            .expect("edit")
            .expect("removed");
        assert_eq!(out, "# header\n\n\n");
        // A comment right above a table is that table's own.
        let out = remove_user(f(), "# alice\n[users.alice]\ntelegram = \"1\"\n", "alice")
            .expect("edit")
            .expect("removed");
        assert_eq!(out, "");
        assert_eq!(remove_user(f(), text, "carol").expect("edit"), None);
        assert_eq!(remove_user(f(), "", "carol").expect("edit"), None);
    }

    const SIGNAL_KEYS: &[&str] = &["url", "number", "mode", "username", "password"];

    fn signal_values(url: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("url", Value::from(url)),
            ("number", Value::from("+4915100000001")),
        ]
    }

    #[test]
    fn gateway_section_lands_after_the_last_gateway_and_joins_the_list() {
        let text = format!(
            "# top\ngateways = [\"telegram\"] # order\n\n[telegram]\nbot_token = \"{TOKEN}\"\n\n\
             # codes\n[code]\ndigits = 8\n"
        );
        let edit = set_gateway_section(
            f(),
            &text,
            "signal",
            SIGNAL_KEYS,
            &signal_values("http://127.0.0.1:8080"),
        )
        .expect("edit");
        assert_eq!(
            edit.added_to_order,
            Some(vec!["telegram".to_string(), "signal".to_string()])
        );
        assert_eq!(
            edit.text,
            format!(
                "# top\ngateways = [\"telegram\", \"signal\"] # order\n\n[telegram]\n\
                 bot_token = \"{TOKEN}\"\n\n[signal]\nurl = \"http://127.0.0.1:8080\"\n\
                 number = \"+4915100000001\"\n\n# codes\n[code]\ndigits = 8\n"
            )
        );
        let c = Config::parse(f(), &edit.text).expect("valid");
        assert_eq!(
            c.gateways,
            [GatewayKind::Telegram, GatewayKind::Signal],
            "{}",
            edit.text
        );
    }

    #[test]
    fn gateway_section_replaced_managed_keys_only() {
        let text = "[signal]\n# where\nurl = \"http://127.0.0.1:1\" # old\nmode = \"jsonrpc\"\n\
                    username = \"u\"\npassword = \"p\"\ntimeout = 3\n";
        let edit = set_gateway_section(
            f(),
            text,
            "signal",
            SIGNAL_KEYS,
            &signal_values("http://127.0.0.1:2"),
        )
        .expect("edit");
        assert_eq!(edit.added_to_order, None, "no list, none added");
        assert_eq!(
            edit.text,
            "[signal]\n# where\nurl = \"http://127.0.0.1:2\" # old\ntimeout = 3\n\
             number = \"+4915100000001\"\n"
        );
        // Already listed: the list stays as it is.
        let listed = format!("gateways = [\"signal\"]\n{}", edit.text);
        let again = set_gateway_section(
            f(),
            &listed,
            "signal",
            SIGNAL_KEYS,
            &signal_values("http://127.0.0.1:3"),
        )
        .expect("edit");
        assert_eq!(again.added_to_order, None);
        assert!(
            again.text.starts_with("gateways = [\"signal\"]\n"),
            "{}",
            again.text
        );
    }

    #[test]
    fn comments_below_the_last_gateway_stay_with_it() {
        let text = include_str!("../../conf/gateway.toml");
        let edit = set_gateway_section(
            f(),
            text,
            "signal",
            SIGNAL_KEYS,
            &signal_values("http://127.0.0.1:8080"),
        )
        .expect("edit");
        assert!(
            edit.text.contains(
                "connect_timeout = 5\n# Optional outbound proxy. Proxy variables in the \
                 environment are ignored.\n# proxy = \"http://proxy.example.org:3128\"\n\n\
                 [signal]\nurl = \"http://127.0.0.1:8080\"\nnumber = \"+4915100000001\"\n\n\
                 # ---- Signal"
            ),
            "{}",
            edit.text
        );
        // Every other line is still there, in order.
        let removed: Vec<&str> = text
            .lines()
            .filter(|l| !edit.text.lines().any(|m| m == *l))
            .collect();
        assert!(removed.is_empty(), "{removed:?}");
        Config::parse(f(), &edit.text).expect("valid");
    }

    #[test]
    fn gateway_section_into_a_new_or_comment_only_file() {
        let edit = set_gateway_section(
            f(),
            "# config\n",
            "command",
            &["path"],
            &[("path", Value::from("/usr/bin/gammu"))],
        )
        .expect("edit");
        assert_eq!(
            edit.text,
            "# config\n\n[command]\npath = \"/usr/bin/gammu\"\n"
        );
        let err = set_gateway_section(f(), "signal = 3\n", "signal", &[], &[]).unwrap_err();
        assert!(err.to_string().contains("not a table"), "{err}");
    }

    #[test]
    fn errors_do_not_quote_the_file() {
        let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n[[[broken\n");
        let err = set_telegram(f(), &text, OTHER, None).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(!err.to_string().contains("AAEh"), "{err}");
        let err = set_user_recipient(f(), "users = 3\n", "a", "telegram", "1").unwrap_err();
        assert!(err.to_string().contains("not a table"), "{err}");
    }
}
