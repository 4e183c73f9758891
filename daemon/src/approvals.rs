//! The daemon's state and what each request does with it: the pending
//! approvals (in memory only: a restart forgets them, and the module then
//! asks for the typed code), the recently finished ones (so that a stale
//! tap is answered with why nothing happens), and the recent text messages
//! for `pam-gateway enroll`.
//!
//! One mutex guards it all; no HTTP request is made while it is held.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pam_gateway_core::approve::wire::{
    ApprovalState, BlockKind, DaemonStatus, ErrorKind, Final, MAX_FRAME, MAX_WAIT_MS, Request,
    Reserve, Response, TextUpdate, VERSION,
};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::delivery::DeliveryError;
use pam_gateway_core::gateway::telegram::TelegramClient;
use pam_gateway_core::limits::{self, Block};
use pam_gateway_core::log::{Level, field};
use pam_gateway_core::redact::mask;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::state::{FileStateStore, SystemWallClock, WallClock, update_with};
use serde_json::{Value, json};

use crate::log::Logger;

/// Most approvals waiting for a tap at once; one more is `Busy`.
pub const MAX_PENDING: usize = 1000;
/// Finished nonces remembered for stale taps.
const MAX_FINISHED: usize = 1000;
/// Recent text messages kept for `Updates`.
const MAX_RECENT: usize = 50;
/// Longest text of a kept message (enrolment needs `/start` and a code).
const MAX_RECENT_TEXT: usize = 256;
/// Bytes of updates in one `Updates` answer: the frame's limit less room
/// for the envelope.
const UPDATES_BUDGET: usize = MAX_FRAME - 1024;
/// Longest an approval may live.
pub const MAX_EXPIRY_SECS: u64 = 3600;
/// Longest message text Telegram takes.
const MAX_TEXT_CHARS: usize = 4096;
/// Final edits waiting for the editor thread; with more, `Finish` edits
/// before it answers, as it would without the thread.
const MAX_QUEUED_EDITS: usize = 256;

/// A message to edit to its final state, after `Finish` has answered.
struct FinalEdit {
    chat_id: i64,
    message_id: i64,
    user: String,
    how: Final,
}

/// One login's request for a tap.
#[derive(Debug, Clone)]
pub struct Approval {
    pub user: String,
    pub chat_id: i64,
    /// Set once the message went out.
    pub message_id: Option<i64>,
    pub numbers: [u8; 3],
    pub answer: u8,
    pub state: ApprovalState,
    pub expires: Instant,
    /// The message already shows its final state (after "Not me").
    pub edited: bool,
    /// A tap was taken: later ones change nothing.
    pub answered: bool,
}

pub struct Inner {
    pub approvals: HashMap<String, Approval>,
    /// Nonces that ended (oldest first) and how.
    pub finished: VecDeque<(String, Final)>,
    pub recent: VecDeque<TextUpdate>,
    pub last_update_at: Option<u64>,
    pub webhook: Option<String>,
}

pub struct Daemon {
    pub config: Config,
    /// The warm connection every send and edit goes over.
    pub sender: TelegramClient,
    pub log: Logger,
    pub started: u64,
    inner: Mutex<Inner>,
    /// Signalled on every change of an approval and every new message.
    pub changed: Condvar,
    pub host: String,
    /// To the editor thread ([`start_editor`]): the login that sent
    /// `Finish` does not wait for Telegram to take the edit.
    edits: SyncSender<FinalEdit>,
    edits_to_do: Mutex<Option<Receiver<FinalEdit>>>,
}

impl Daemon {
    pub fn new(config: Config, sender: TelegramClient, log: Logger) -> Daemon {
        let (edits, edits_to_do) = mpsc::sync_channel(MAX_QUEUED_EDITS);
        Daemon {
            edits,
            edits_to_do: Mutex::new(Some(edits_to_do)),
            config,
            sender,
            log,
            started: now(),
            inner: Mutex::new(Inner {
                approvals: HashMap::new(),
                finished: VecDeque::new(),
                recent: VecDeque::new(),
                last_update_at: None,
                webhook: None,
            }),
            changed: Condvar::new(),
            host: pam_gateway_core::system::hostname(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The message's text once the login is over: no code, no buttons.
    pub fn final_text(&self, user: &str, how: Final) -> String {
        let word = match how {
            Final::Approved => "approved",
            Final::Denied => "denied",
            Final::Expired => "expired",
            Final::Used => "used (the code was typed)",
        };
        format!("Login of {user} on {}: {word}.", self.host)
    }

    /// Edits the message to its final state, logging a failure.
    pub fn edit_final(&self, chat_id: i64, message_id: i64, user: &str, how: Final) {
        let text = self.final_text(user, how);
        if let Err(e) = self.sender.edit_message_text(chat_id, message_id, &text) {
            self.log.log(
                Level::Warning,
                &format!(
                    "cannot edit the request in chat {} to its final state: {e}",
                    mask(&chat_id.to_string())
                ),
            );
        }
    }

    /// [`Daemon::edit_final`] on the editor thread, so that the caller's
    /// answer does not wait for Telegram; at once when the queue is full.
    fn edit_final_later(&self, chat_id: i64, message_id: i64, user: &str, how: Final) {
        let edit = FinalEdit {
            chat_id,
            message_id,
            user: user.to_string(),
            how,
        };
        if let Err(TrySendError::Full(e) | TrySendError::Disconnected(e)) =
            self.edits.try_send(edit)
        {
            self.edit_final(e.chat_id, e.message_id, &e.user, e.how);
        }
    }

    /// Answers one request. Never logs a request's text.
    pub fn handle(&self, request: Request) -> Response {
        let version = match &request {
            Request::Approve { version, .. }
            | Request::Wait { version, .. }
            | Request::Finish { version, .. }
            | Request::Send { version, .. }
            | Request::Updates { version, .. }
            | Request::Status { version }
            | Request::Login { version, .. } => *version,
        };
        if version != VERSION {
            return error(
                ErrorKind::Version,
                format!("protocol version {version}; this daemon speaks {VERSION}"),
            );
        }
        match request {
            Request::Approve {
                nonce,
                user,
                chat_id,
                text,
                numbers,
                answer,
                expires_in_secs,
                reserve,
                ..
            } => self.approve(
                nonce,
                user,
                chat_id,
                &text,
                numbers,
                answer,
                expires_in_secs,
                reserve.as_ref(),
            ),
            Request::Wait { nonce, wait_ms, .. } => self.wait(&nonce, wait_ms),
            Request::Finish { nonce, result, .. } => self.finish(&nonce, result),
            Request::Send { chat_id, text, .. } => self.send(chat_id, &text),
            Request::Updates { after, wait_ms, .. } => self.updates(after, wait_ms),
            Request::Status { .. } => self.status(),
            // A connection of its own (socket::connection, crate::host).
            Request::Login { .. } => error(
                ErrorKind::BadRequest,
                "a login is run on a connection of its own".to_string(),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn approve(
        &self,
        nonce: String,
        user: String,
        chat_id: i64,
        text: &str,
        numbers: [u8; 3],
        answer: u8,
        expires_in_secs: u64,
        reserve: Option<&Reserve>,
    ) -> Response {
        if let Err(why) = check_approve(&nonce, &user, chat_id, text, numbers, answer) {
            return error(ErrorKind::BadRequest, why);
        }
        if let Some(r) = reserve
            && !std::path::Path::new(&r.state_dir).is_absolute()
        {
            return error(
                ErrorKind::BadRequest,
                "reserve.state_dir must be an absolute path".to_string(),
            );
        }
        if !(1..=MAX_EXPIRY_SECS).contains(&expires_in_secs) {
            return error(
                ErrorKind::BadRequest,
                format!("expires_in_secs {expires_in_secs} is out of range 1..={MAX_EXPIRY_SECS}"),
            );
        }
        {
            let mut st = self.lock();
            if st.approvals.contains_key(&nonce) || st.finished.iter().any(|(n, _)| *n == nonce) {
                return error(ErrorKind::BadRequest, "nonce already used".to_string());
            }
            if st.approvals.len() >= MAX_PENDING {
                drop(st);
                self.log.log(
                    Level::Warning,
                    &format!("{MAX_PENDING} approvals pending: request refused (busy)"),
                );
                return error(ErrorKind::Busy, format!("{MAX_PENDING} approvals pending"));
            }
            st.approvals.insert(
                nonce.clone(),
                Approval {
                    user: user.clone(),
                    chat_id,
                    message_id: None,
                    numbers,
                    answer,
                    state: ApprovalState::Pending,
                    expires: Instant::now() + Duration::from_secs(expires_in_secs),
                    edited: false,
                    answered: false,
                },
            );
        }
        // The send counted before it goes out, as the module counts it.
        let reserved = match reserve.map(|r| self.reserve(&user, r)).transpose() {
            Ok(at) => at,
            Err(answer) => {
                self.lock().approvals.remove(&nonce);
                return answer;
            }
        };
        let markup = keyboard(&nonce, numbers);
        match self.sender.send_with_markup(chat_id, text, &markup) {
            Ok(message_id) => {
                let mut st = self.lock();
                if let Some(a) = st.approvals.get_mut(&nonce) {
                    a.message_id = Some(message_id);
                }
                drop(st);
                self.log.log(
                    Level::Info,
                    &format!(
                        "approval sent: user={} chat={} request={}",
                        field(&user),
                        mask(&chat_id.to_string()),
                        short(&nonce)
                    ),
                );
                Response::Sent { message_id }
            }
            Err(e) => {
                self.lock().approvals.remove(&nonce);
                let e = pam_gateway_core::http::without_message(DeliveryError::from(e), text);
                if let (Some(r), Some(at)) = (reserve, reserved)
                    && e.nothing_delivered()
                {
                    self.release(&user, r, at);
                }
                self.log.log(
                    Level::Warning,
                    &format!("approval for user={} not sent: {e}", field(&user)),
                );
                delivery_error(e)
            }
        }
    }

    /// `Approve`'s reservation (`limits::reserve_send` in the user's state
    /// file, under its lock): the Unix time it was made at, or the answer
    /// that ends the request (the limits allow no send; the file cannot
    /// be used).
    fn reserve(&self, user: &str, r: &Reserve) -> Result<u64, Response> {
        let store = FileStateStore::new(&r.state_dir, Owner::ROOT);
        let limits = r.limits();
        let now = SystemWallClock.unix_now();
        let counted = update_with(&store, user, |s| {
            (limits::reserve_send(s, &limits, now), s.backup_codes.len())
        });
        match counted {
            Ok((Ok(()), _)) => Ok(now),
            Ok((Err(block), backup_codes)) => {
                let (kind, until) = match block {
                    Block::LockedOut { until } => (BlockKind::LockedOut, until),
                    Block::TooManyCodes { until } => (BlockKind::TooManyCodes, until),
                };
                self.log.log(
                    Level::Info,
                    &format!(
                        "approval for user={} not sent: {}",
                        field(user),
                        match kind {
                            BlockKind::LockedOut => "the second factor is locked",
                            BlockKind::TooManyCodes => "codes_per_window reached",
                        }
                    ),
                );
                Err(Response::Blocked {
                    block: kind,
                    until,
                    backup_codes: u32::try_from(backup_codes).unwrap_or(u32::MAX),
                })
            }
            Err(e) => {
                self.log.log(
                    Level::Error,
                    &format!("approval for user={} not sent: state: {e}", field(user)),
                );
                Err(error(ErrorKind::State, e.to_string()))
            }
        }
    }

    /// Gives back a reservation whose send certainly reached nobody.
    fn release(&self, user: &str, r: &Reserve, at: u64) {
        let store = FileStateStore::new(&r.state_dir, Owner::ROOT);
        if let Err(e) = update_with(&store, user, |s| limits::release_send(s, at)) {
            self.log.log(
                Level::Warning,
                &format!(
                    "could not give back the unused send of user={}: {e}",
                    field(user)
                ),
            );
        }
    }

    fn wait(&self, nonce: &str, wait_ms: u64) -> Response {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        let mut st = self.lock();
        loop {
            let state = st
                .approvals
                .get(nonce)
                .map(|a| a.state)
                .unwrap_or(ApprovalState::Gone);
            let now = Instant::now();
            if state != ApprovalState::Pending || now >= deadline {
                return Response::State { state };
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn finish(&self, nonce: &str, how: Final) -> Response {
        let ended = {
            let mut st = self.lock();
            let ended = st.approvals.remove(nonce);
            if ended.is_some() {
                remember_finished(&mut st, nonce, how);
            }
            ended
        };
        self.changed.notify_all();
        if let Some(a) = ended {
            if let (Some(message_id), false) = (a.message_id, a.edited) {
                self.edit_final_later(a.chat_id, message_id, &a.user, how);
            }
            self.log.log(
                Level::Info,
                &format!(
                    "approval finished: user={} request={} result={}",
                    field(&a.user),
                    short(nonce),
                    final_word(how)
                ),
            );
        }
        Response::Done
    }

    fn send(&self, chat_id: i64, text: &str) -> Response {
        if chat_id == 0 || text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
            return error(
                ErrorKind::BadRequest,
                "a message needs a chat id and 1 to 4096 characters".to_string(),
            );
        }
        match self.sender.send_plain(chat_id, text) {
            Ok(message_id) => Response::Sent { message_id },
            Err(e) => {
                let e = pam_gateway_core::http::without_message(DeliveryError::from(e), text);
                self.log
                    .log(Level::Warning, &format!("message not sent: {e}"));
                delivery_error(e)
            }
        }
    }

    fn updates(&self, after: i64, wait_ms: u64) -> Response {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        let mut st = self.lock();
        loop {
            let updates = fit_in_frame(st.recent.iter().filter(|u| u.update_id > after));
            let now = Instant::now();
            if !updates.is_empty() || now >= deadline {
                return Response::Updates { updates };
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn status(&self) -> Response {
        let st = self.lock();
        let pending = st
            .approvals
            .values()
            .filter(|a| a.state == ApprovalState::Pending)
            .count();
        Response::Status {
            status: DaemonStatus {
                daemon: format!("pam-gatewayd {}", env!("CARGO_PKG_VERSION")),
                started: self.started,
                last_update_at: st.last_update_at,
                webhook: st.webhook.clone(),
                pending: u32::try_from(pending).unwrap_or(u32::MAX),
            },
        }
    }

    /// A text message from `getUpdates`, kept for `Updates`.
    pub fn keep_message(&self, update: TextUpdate) {
        let mut st = self.lock();
        st.recent.push_back(update);
        while st.recent.len() > MAX_RECENT {
            st.recent.pop_front();
        }
        drop(st);
        self.changed.notify_all();
    }
}

/// A [`Response::Error`] whose detail is already safe to log.
pub fn error(kind: ErrorKind, detail: String) -> Response {
    Response::Error { kind, detail }
}

fn delivery_error(e: DeliveryError) -> Response {
    let kind = match &e {
        DeliveryError::Unreachable(_) => ErrorKind::Unreachable,
        DeliveryError::Refused(_) => ErrorKind::Refused,
        DeliveryError::ServiceFailed(_) => ErrorKind::ServiceFailed,
        DeliveryError::Rejected { .. } => ErrorKind::Rejected,
        DeliveryError::Misconfigured(_) => ErrorKind::Misconfigured,
        DeliveryError::Local(_) => ErrorKind::Local,
    };
    error(kind, e.to_string())
}

/// Oldest first, as many updates as fit in one frame; the rest come with
/// the next request (its `after` is the last one's id).
fn fit_in_frame<'a>(updates: impl Iterator<Item = &'a TextUpdate>) -> Vec<TextUpdate> {
    let mut size = 0;
    updates
        .take_while(|u| {
            size += serde_json::to_string(u).map_or(MAX_FRAME, |t| t.len() + 1);
            size <= UPDATES_BUDGET
        })
        .cloned()
        .collect()
}

/// A text message as `Updates` returns it: cut to what enrolment needs.
pub fn text_update(u: &pam_gateway_core::gateway::telegram::Update) -> Option<TextUpdate> {
    let cut = |s: &Option<String>| s.as_ref().map(|t| t.chars().take(64).collect::<String>());
    Some(TextUpdate {
        update_id: u.update_id,
        chat_id: u.chat_id?,
        chat_type: u.chat_type.clone().unwrap_or_default(),
        from_id: u.from_id,
        username: cut(&u.from_username),
        first_name: cut(&u.from_name),
        last_name: cut(&u.from_last_name),
        text: u.text.as_ref()?.chars().take(MAX_RECENT_TEXT).collect(),
    })
}

pub fn remember_finished(st: &mut Inner, nonce: &str, how: Final) {
    st.finished.push_back((nonce.to_string(), how));
    while st.finished.len() > MAX_FINISHED {
        st.finished.pop_front();
    }
}

/// The inline keyboard: the three numbers in one row, "Not me" below.
/// `callback_data` is `a:<nonce>:<nn>` or `n:<nonce>` (at most 64 bytes:
/// the nonce is at most 48 characters).
pub fn keyboard(nonce: &str, numbers: [u8; 3]) -> Value {
    let row: Vec<Value> = numbers
        .iter()
        .map(|n| json!({ "text": format!("{n:02}"), "callback_data": format!("a:{nonce}:{n:02}") }))
        .collect();
    json!({
        "inline_keyboard": [
            row,
            [{ "text": "Not me", "callback_data": format!("n:{nonce}") }]
        ]
    })
}

fn check_approve(
    nonce: &str,
    user: &str,
    chat_id: i64,
    text: &str,
    numbers: [u8; 3],
    answer: u8,
) -> Result<(), String> {
    if !(16..=48).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the nonce must be 16 to 48 hex digits".to_string());
    }
    if user.is_empty() || user.len() > 256 {
        return Err("the user name must be 1 to 256 bytes".to_string());
    }
    if chat_id <= 0 {
        return Err("approval goes to a private chat (a positive chat id)".to_string());
    }
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err("the text must be 1 to 4096 characters".to_string());
    }
    let [a, b, c] = numbers;
    if numbers.iter().any(|n| *n > 99) || a == b || b == c || a == c {
        return Err("the numbers must be three distinct two-digit numbers".to_string());
    }
    if !numbers.contains(&answer) {
        return Err("the answer must be one of the numbers".to_string());
    }
    Ok(())
}

/// The first 8 characters of a nonce, to tell requests apart in the log
/// (the whole nonce is in the chat's buttons anyway).
pub fn short(nonce: &str) -> String {
    nonce.chars().take(8).collect()
}

pub fn final_word(how: Final) -> &'static str {
    match how {
        Final::Approved => "approved",
        Final::Denied => "denied",
        Final::Expired => "expired",
        Final::Used => "used",
    }
}

pub fn now() -> u64 {
    SystemWallClock.unix_now()
}

/// The expiry thread: every approval past its time is forgotten and its
/// message edited to "expired" (the module may have died, or the user
/// never answered).
/// The editor thread: the final edits `Finish` queued, in order.
pub fn start_editor(d: Arc<Daemon>) -> Result<(), String> {
    let Some(edits) = d
        .edits_to_do
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return Err("the editor thread runs once".to_string());
    };
    std::thread::Builder::new()
        .name("editor".into())
        .spawn(move || {
            for e in edits {
                d.edit_final(e.chat_id, e.message_id, &e.user, e.how);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the editor thread: {e}"))
}

pub fn start_expiry(d: Arc<Daemon>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("expiry".into())
        .spawn(move || {
            loop {
                let expired: Vec<(String, Approval)> = {
                    let mut st = d.lock();
                    let now = Instant::now();
                    let gone: Vec<String> = st
                        .approvals
                        .iter()
                        .filter(|(_, a)| a.expires <= now)
                        .map(|(n, _)| n.clone())
                        .collect();
                    let mut out = Vec::new();
                    for n in gone {
                        if let Some(a) = st.approvals.remove(&n) {
                            remember_finished(&mut st, &n, Final::Expired);
                            out.push((n, a));
                        }
                    }
                    out
                };
                if !expired.is_empty() {
                    d.changed.notify_all();
                }
                for (nonce, a) in expired {
                    d.log.log(
                        Level::Info,
                        &format!(
                            "approval expired: user={} request={}",
                            field(&a.user),
                            short(&nonce)
                        ),
                    );
                    if let (Some(message_id), false) = (a.message_id, a.edited) {
                        d.edit_final(a.chat_id, message_id, &a.user, Final::Expired);
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the expiry thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_fits_telegrams_64_bytes() {
        let nonce = "f".repeat(48);
        let k = keyboard(&nonce, [7, 42, 99]);
        let mut n = 0;
        for row in k["inline_keyboard"].as_array().into_iter().flatten() {
            for b in row.as_array().into_iter().flatten() {
                let data = b["callback_data"].as_str().unwrap_or_default();
                assert!(data.len() <= 64, "{data}");
                n += 1;
            }
        }
        assert_eq!(n, 4);
        assert_eq!(k["inline_keyboard"][0][1]["text"], "42");
        assert_eq!(k["inline_keyboard"][0][0]["text"], "07");
        assert_eq!(k["inline_keyboard"][1][0]["text"], "Not me");
    }

    #[test]
    fn updates_fit_in_one_frame_whatever_their_text() {
        use pam_gateway_core::approve::wire::write_frame;
        let mut inner = VecDeque::new();
        for i in 0..MAX_RECENT as i64 {
            inner.push_back(TextUpdate {
                update_id: i + 1,
                chat_id: 1,
                chat_type: "private".into(),
                from_id: Some(1),
                username: Some("\u{1}".repeat(64)),
                first_name: Some("\u{1}".repeat(64)),
                last_name: Some("\u{1}".repeat(64)),
                text: "\u{1}".repeat(MAX_RECENT_TEXT),
            });
        }
        let fit = fit_in_frame(inner.iter());
        assert!(!fit.is_empty() && fit.len() < MAX_RECENT);
        let mut buf = Vec::new();
        write_frame(&mut buf, &Response::Updates { updates: fit }).expect("fits");
    }

    #[test]
    fn approve_requests_are_checked() {
        let nonce = "ab".repeat(16);
        assert!(check_approve(&nonce, "alice", 42, "t", [1, 2, 3], 2).is_ok());
        assert!(check_approve("xyz", "alice", 42, "t", [1, 2, 3], 2).is_err());
        assert!(check_approve(&nonce, "", 42, "t", [1, 2, 3], 2).is_err());
        assert!(check_approve(&nonce, "alice", -42, "t", [1, 2, 3], 2).is_err());
        assert!(check_approve(&nonce, "alice", 42, " ", [1, 2, 3], 2).is_err());
        assert!(check_approve(&nonce, "alice", 42, "t", [1, 1, 3], 1).is_err());
        assert!(check_approve(&nonce, "alice", 42, "t", [1, 2, 100], 2).is_err());
        assert!(check_approve(&nonce, "alice", 42, "t", [1, 2, 3], 4).is_err());
    }
}
