//! Edits of `gateway.toml` and `users.toml` that keep everything else:
//! comments, blank lines, key order, other users, keys we do not know.
//!
//! Built on `toml_edit` (the format-preserving half of the `toml` family).
//! Callers validate the text with [`crate::config::Config::parse`] or
//! [`crate::users::Users::parse`] before and after an edit; errors here
//! never quote the file (a config line may hold a token).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::toml_errors::{ParseError, line_at};

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
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = Value::from(text);
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(text));
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
    use crate::config::Config;
    use crate::users::Users;

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
        assert_eq!(c.telegram.expect("tg").bot_token.expose(), OTHER);
    }

    #[test]
    fn telegram_section_added_to_a_file_without_it() {
        let text = "# mine\nusers_file = \"/srv/u.toml\"\n";
        let out = set_telegram(f(), text, TOKEN, Some("http://127.0.0.1:9")).expect("edit");
        assert!(out.starts_with(text), "{out}");
        let c = Config::parse(f(), &out).expect("valid");
        let tg = c.telegram.expect("tg");
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
                .and_then(|e| e.telegram.as_ref())
                .map(|c| c.as_str()),
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
