//! The bot's one reader: a thread that long-polls `getUpdates` (each call's
//! offset confirms what the last one returned), keeps text messages for
//! enrolment, and turns taps into approval states.
//!
//! A tap counts only when `callback_query.from.id` is the approval's chat
//! (a private chat's id is its user's id): a forwarded request tapped by
//! someone else changes nothing. Every tap is answered
//! (`answerCallbackQuery`), saying why when nothing happens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pam_gateway_core::approve::wire::{ApprovalState, Final};
use pam_gateway_core::gateway::telegram::{
    BotUpdate, CallbackQuery, TelegramClient, TelegramError,
};
use pam_gateway_core::limits;
use pam_gateway_core::log::{Level, field};
use pam_gateway_core::redact::mask;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::state::{FileStateStore, update_with};

use crate::approvals::{Daemon, now, remember_finished, short, text_update};

/// Seconds of each long poll.
pub const POLL_SECS: u64 = 25;
/// Longest back-off between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Taps handled at once on threads of their own; more wait for the poller.
const MAX_TAP_THREADS: usize = 32;

/// Starts the poller thread.
pub fn start(d: Arc<Daemon>, poller: TelegramClient) -> Result<(), String> {
    std::thread::Builder::new()
        .name("getUpdates".into())
        .spawn(move || poll_loop(&d, &poller))
        .map(|_| ())
        .map_err(|e| format!("cannot start the polling thread: {e}"))
}

/// Asks getWebhookInfo; records and reports a webhook (it stops getUpdates).
fn check_webhook(d: &Daemon, poller: &TelegramClient) {
    match poller.webhook_url() {
        Ok(None) => d.lock().webhook = Some("none".to_string()),
        Ok(Some(url)) => {
            let host = url
                .split("://")
                .nth(1)
                .and_then(|r| r.split(['/', '?', '#']).next())
                .unwrap_or("?")
                .rsplit('@')
                .next()
                .unwrap_or("?")
                .to_string();
            d.log.log(
                Level::Error,
                &format!(
                    "a webhook is set for this bot (to {}): Telegram refuses getUpdates \
                     while it is, so no tap can arrive; remove it (deleteWebhook) or use \
                     another bot",
                    field(&host)
                ),
            );
            d.lock().webhook = Some(host);
        }
        Err(e) => d
            .log
            .log(Level::Warning, &format!("getWebhookInfo failed: {e}")),
    }
}

fn poll_loop(d: &Arc<Daemon>, poller: &TelegramClient) {
    check_webhook(d, poller);
    let taps = Arc::new(AtomicUsize::new(0));
    let mut offset: Option<i64> = None;
    let mut backoff = Duration::from_secs(1);
    let mut last_error: Option<String> = None;
    loop {
        match poller.poll_updates(offset, POLL_SECS) {
            Ok(list) => {
                if last_error.take().is_some() {
                    d.log.log(Level::Info, "getUpdates works again");
                }
                backoff = Duration::from_secs(1);
                if !list.is_empty() {
                    d.lock().last_update_at = Some(now());
                }
                for update in list {
                    let next = update.update_id().saturating_add(1);
                    offset = Some(offset.map_or(next, |o| o.max(next)));
                    dispatch(d, update, &taps);
                }
            }
            Err(e) => {
                let wait = match &e {
                    TelegramError::RateLimited {
                        retry_after: Some(s),
                    } => Duration::from_secs((*s).clamp(1, 300)),
                    TelegramError::PollConflict
                    | TelegramError::WebhookActive
                    | TelegramError::Unauthorized => backoff.max(Duration::from_secs(5)),
                    _ => backoff,
                };
                let text = e.to_string();
                // Each new kind of failure is logged once, not every poll.
                if last_error.as_deref() != Some(text.as_str()) {
                    let level = match e {
                        TelegramError::PollConflict
                        | TelegramError::WebhookActive
                        | TelegramError::Unauthorized => Level::Error,
                        _ => Level::Warning,
                    };
                    d.log.log(
                        level,
                        &format!(
                            "getUpdates failed: {text}; retrying every {} s or less",
                            MAX_BACKOFF.as_secs()
                        ),
                    );
                    last_error = Some(text);
                }
                if matches!(e, TelegramError::WebhookActive) {
                    check_webhook(d, poller);
                }
                std::thread::sleep(wait);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn dispatch(d: &Arc<Daemon>, update: BotUpdate, taps: &Arc<AtomicUsize>) {
    match update {
        BotUpdate::Message(m) => {
            if let Some(t) = text_update(&m) {
                d.keep_message(t);
            }
        }
        BotUpdate::Callback { query, .. } => {
            // A tap that locks a user waits for the state file's lock (a
            // login may hold it): on a thread of its own, so the others go on.
            if taps.fetch_add(1, Ordering::SeqCst) < MAX_TAP_THREADS {
                let (d2, taps2) = (Arc::clone(d), Arc::clone(taps));
                let q2 = query.clone();
                let spawned = std::thread::Builder::new()
                    .name("tap".into())
                    .spawn(move || {
                        tap(&d2, &q2);
                        taps2.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_ok() {
                    return;
                }
            }
            taps.fetch_sub(1, Ordering::SeqCst);
            tap(d, &query);
        }
        BotUpdate::Other { .. } => {}
    }
}

/// What a tap asks for.
#[derive(Debug, PartialEq, Eq)]
enum Button {
    Number(String, u8),
    NotMe(String),
}

fn parse_data(data: &str) -> Option<Button> {
    if let Some(rest) = data.strip_prefix("a:") {
        let (nonce, n) = rest.split_once(':')?;
        if n.len() != 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(Button::Number(nonce.to_string(), n.parse().ok()?));
    }
    data.strip_prefix("n:")
        .filter(|n| !n.contains(':'))
        .map(|n| Button::NotMe(n.to_string()))
}

/// What to do after the state changed (no lock held while doing it).
enum After {
    Nothing,
    /// The message to edit as expired (a nonce this daemon does not know).
    EditExpired {
        chat_id: i64,
        message_id: i64,
    },
    NotMe {
        user: String,
        chat_id: i64,
        message_id: Option<i64>,
    },
}

fn tap(d: &Daemon, q: &CallbackQuery) {
    let (reply, after) = decide(d, q);
    if let After::NotMe { user, .. } = &after {
        not_me(d, user, q);
    }
    if let Err(e) = d.sender.answer_callback_query(&q.id, reply) {
        d.log
            .log(Level::Warning, &format!("answerCallbackQuery failed: {e}"));
    }
    match after {
        After::EditExpired {
            chat_id,
            message_id,
        } => {
            let text = format!("Login request on {}: expired.", d.host);
            if let Err(e) = d.sender.edit_message_text(chat_id, message_id, &text) {
                d.log.log(
                    Level::Warning,
                    &format!("cannot edit a stale request to \"expired\": {e}"),
                );
            }
        }
        After::NotMe {
            user,
            chat_id,
            message_id: Some(message_id),
        } => d.edit_final(chat_id, message_id, &user, Final::Denied),
        _ => {}
    }
}

/// Decides what a tap does, under the state's lock; returns the notice for
/// `answerCallbackQuery` and what is left to do.
fn decide(d: &Daemon, q: &CallbackQuery) -> (&'static str, After) {
    let Some(button) = q.data.as_deref().and_then(parse_data) else {
        return ("This button is not one of pam_gateway's.", After::Nothing);
    };
    let nonce = match &button {
        Button::Number(n, _) | Button::NotMe(n) => n.clone(),
    };
    let mut st = d.lock();
    let Some(a) = st.approvals.get_mut(&nonce) else {
        if let Some((_, how)) = st.finished.iter().find(|(n, _)| *n == nonce) {
            let reply = match how {
                Final::Approved => "This login request was already approved.",
                Final::Denied => "This login request was already denied.",
                Final::Expired => "This login request has expired.",
                Final::Used => "The code was typed: this request is no longer needed.",
            };
            return (reply, After::Nothing);
        }
        // Unknown here: expired, or sent before this daemon restarted.
        d.log.log(
            Level::Info,
            &format!(
                "tap on an unknown request={} (expired, or from before a restart)",
                short(&nonce)
            ),
        );
        let after = match (q.chat_id, q.message_id) {
            (Some(chat_id), Some(message_id)) => After::EditExpired {
                chat_id,
                message_id,
            },
            _ => After::Nothing,
        };
        return (
            "This login request has expired. Type the code at the login prompt instead.",
            after,
        );
    };
    if q.from_id != a.chat_id || (q.message_id.is_some() && q.message_id != a.message_id) {
        d.log.log(
            Level::Warning,
            &format!(
                "tap on user={}'s request={} by another Telegram account ({}): ignored",
                field(&a.user),
                short(&nonce),
                mask(&q.from_id.to_string())
            ),
        );
        return (
            "Only the account this request was sent to can answer it: nothing changed.",
            After::Nothing,
        );
    }
    if let Button::Number(_, n) = button
        && !a.numbers.contains(&n)
    {
        return ("That button is not one of this request's.", After::Nothing);
    }
    if a.answered || a.state != ApprovalState::Pending {
        return ("This login request was already answered.", After::Nothing);
    }
    a.answered = true;
    let user = a.user.clone();
    let (reply, after, word) = match button {
        Button::Number(_, n) if n == a.answer => {
            a.state = ApprovalState::Approved;
            (
                "Approved. Go back to the login and press Enter.",
                After::Nothing,
                "approved",
            )
        }
        Button::Number(_, _) => {
            a.state = ApprovalState::Wrong;
            (
                "That is not the number the login shows: this login is refused.",
                After::Nothing,
                "wrong-number",
            )
        }
        Button::NotMe(_) => {
            // The state turns NotMe once the lock is written (not_me());
            // until then it stays Pending and answered (no second tap).
            a.edited = true;
            (
                "Refused. Your second factor is locked until an admin unlocks it; \
                 the admins have been told.",
                After::NotMe {
                    user: user.clone(),
                    chat_id: a.chat_id,
                    message_id: a.message_id,
                },
                "not-me",
            )
        }
    };
    drop(st);
    d.changed.notify_all();
    d.log.log(
        Level::Info,
        &format!(
            "tap: user={} request={} button={word}",
            field(&user),
            short(&nonce)
        ),
    );
    (reply, after)
}

/// "Not me": the lock on the user's second factor (the state file, under
/// its lock, as a lockout), then the state the module sees, then the
/// admins' alert.
fn not_me(d: &Daemon, user: &str, q: &CallbackQuery) {
    let store = FileStateStore::new(&d.config.state_dir, Owner::ROOT);
    let locked = update_with(&store, user, |s| limits::lock_not_me(s, now()));
    match &locked {
        Ok(()) => d.log.log(
            Level::Warning,
            &format!(
                "\"Not me\" tapped for user={}: login refused, second factor locked until \
                 pam-gateway unlock",
                field(user)
            ),
        ),
        Err(e) => d.log.log(
            Level::Error,
            &format!(
                "\"Not me\" tapped for user={}: login refused, but the lock could not be \
                 written: {e}",
                field(user)
            ),
        ),
    }
    let nonce = q
        .data
        .as_deref()
        .and_then(parse_data)
        .map(|b| match b {
            Button::Number(n, _) | Button::NotMe(n) => n,
        })
        .unwrap_or_default();
    {
        let mut st = d.lock();
        if let Some(a) = st.approvals.get_mut(&nonce) {
            a.state = ApprovalState::NotMe;
        } else {
            // Finished or expired meanwhile: remember why.
            remember_finished(&mut st, &nonce, Final::Denied);
        }
    }
    d.changed.notify_all();
    let text = format!(
        "pam_gateway on {}: the Telegram user of {} tapped \"Not me\" under a login \
         request. That login was refused and {}'s second factor is {}. Check who has \
         the password; then run `pam-gateway unlock {}` on {}.",
        d.host,
        user,
        user,
        if locked.is_ok() {
            "locked"
        } else {
            "NOT locked (the state file could not be written: see the log)"
        },
        user,
        d.host
    );
    for admin in &d.config.approve.admin_chats {
        if let Err(e) = d.sender.send_plain(*admin, &text) {
            d.log.log(
                Level::Warning,
                &format!("cannot alert admin chat {}: {e}", mask(&admin.to_string())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data() {
        assert_eq!(
            parse_data("a:abcd:42"),
            Some(Button::Number("abcd".into(), 42))
        );
        assert_eq!(parse_data("n:abcd"), Some(Button::NotMe("abcd".into())));
        for bad in ["a:abcd:4", "a:abcd:x2", "a:abcd", "x:abcd", "n:a:b", ""] {
            assert_eq!(parse_data(bad), None, "{bad}");
        }
    }
}
