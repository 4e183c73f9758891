//! A loopback stand-in for the Telegram Bot API, for tests and `make demo`.
//!
//! The server ([`crate::http_server`], shared with [`crate::fake_http`])
//! binds 127.0.0.1 only, serves every connection on its own thread, keeps
//! connections alive as clients ask, and stops (closing the port and joining
//! every thread it started) when the [`FakeTelegram`] is dropped. Every wait
//! inside it is bounded: sockets have read/write timeouts, long polls are
//! capped at 50 s and every blocking loop checks the shutdown flag at least
//! every 25 ms.
//!
//! `getUpdates` long-polls with offsets like the real API, and like it ends
//! a long poll with 409 ("terminated by other getUpdates request") when a
//! newer `getUpdates` arrives: two readers of one bot's updates conflict.
//! Tests queue incoming messages from any account in any chat
//! ([`FakeTelegram::push`]), several for one batch
//! ([`FakeTelegram::push_together`]), or for the moment the next
//! `sendMessage` is delivered ([`FakeTelegram::push_on_next_send`]): a
//! second Start while an enrolment code is awaited.
//!
//! For `pam-gatewayd`: `sendMessage` keeps its `reply_markup` (an inline
//! keyboard) and the fake remembers every message it delivered, so that a
//! test can tap a button ([`FakeTelegram::tap`]: a `callback_query` update
//! from any account, under any message); `answerCallbackQuery` and
//! `editMessageText` are recorded ([`FakeTelegram::callback_answers`],
//! [`FakeTelegram::edits`]) and an edit changes the message's current text
//! and keyboard ([`FakeTelegram::message`]), with the real API's refusals
//! (no such message, "message is not modified"). `getWebhookInfo` reports
//! the webhook of [`Mode::Webhook`] or [`FakeTelegram::set_webhook`].

use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http_server::{self, Answer, Limits, Server, Stop, TICK, lock, parse_pairs};

/// Largest request body accepted; a larger one gets 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest request line plus headers accepted; larger gets 413.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest `getUpdates` long poll, in seconds (the real API's cap too).
pub const MAX_LONG_POLL_SECS: u64 = 50;
/// Longest message text in characters, as in the real API.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The server's side: keep-alive, chunked bodies, refusals answered (413,
/// 400) like nginx in front of the real API.
const LIMITS: Limits = Limits {
    name: "fake-telegram",
    max_head: MAX_HEADER_BYTES,
    max_body: MAX_BODY_BYTES,
    // An idle keep-alive connection is closed after this.
    idle_timeout: Duration::from_secs(60),
    // A request must be complete this long after its first byte.
    request_timeout: Duration::from_secs(30),
    write_timeout: Duration::from_secs(10),
    max_connections: 256,
    keep_alive: true,
    chunked: true,
    linger: Duration::from_secs(2),
};
/// Sender of updates pushed into a group chat.
const GROUP_SENDER_ID: i64 = 123_456_977;
const USER_FIRST_NAME: &str = "Alice";
const GROUP_TITLE: &str = "pam_gateway test group";
const BOT_FIRST_NAME: &str = "pam_gateway test";
const FIRST_UPDATE_ID: i64 = 100_000_001;

/// What the fake knows about: its bot token, the chats it can deliver to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeOptions {
    /// The only token the fake accepts; any other gets 401.
    pub token: String,
    /// Chats that exist; `sendMessage` to any other gets "chat not found".
    pub chats: Vec<i64>,
    /// Chats whose user blocked the bot: `sendMessage` gets 403.
    pub blocked: Vec<i64>,
    /// `username` returned by `getMe`.
    pub bot_username: String,
    /// Port on 127.0.0.1 to bind; 0 picks a free one.
    pub port: u16,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            token: "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c".to_string(),
            chats: vec![123_456_977],
            blocked: Vec::new(),
            bot_username: "pam_gateway_test_bot".to_string(),
            port: 0,
        }
    }
}

/// How the fake answers. Every mode but `Normal`, `Trickle`, `TrickleBody`
/// and `Webhook` applies to every request, whatever its path or token, and
/// such requests deliver nothing (they are not in [`FakeTelegram::sent`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Behave like the real Bot API.
    Normal,
    /// Answer every request with this status and body (sent as
    /// `application/json` when the body parses as JSON, else `text/html`).
    Status { code: u16, body: String },
    /// 429 with Telegram's JSON, including `parameters.retry_after`.
    RateLimited { retry_after: u64 },
    /// Read the request, never answer; the connection stays open until the
    /// fake is dropped.
    NeverAnswer,
    /// The normal answer (messages are delivered), written one byte at a time
    /// with this delay before each byte.
    Trickle { delay_ms: u64 },
    /// 200 with a body that is not JSON (an HTML page).
    Garbage,
    /// Read the request, then close the connection without a byte of answer.
    CloseWithoutAnswer,
    /// Like `Normal`, but `getUpdates` answers 409 Conflict as when a webhook
    /// is set.
    Webhook,
    /// The normal answer (messages are delivered): status line and headers
    /// at once, then the body one byte at a time with this delay before
    /// each byte.
    TrickleBody { delay_ms: u64 },
    /// A 200 head at once (with a `Content-Length` far beyond what comes),
    /// then one byte of body every `delay_ms`, until the client goes away
    /// or the fake is dropped. Delivers nothing.
    TrickleBodyForever { delay_ms: u64 },
}

/// A request as the fake received it, whatever the answer (or none): the
/// whole body, even of a request it never answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    /// The request target as sent (with the query string, if any).
    pub target: String,
    /// The request body, as UTF-8 (lossy).
    pub body: String,
}

/// A `sendMessage` call that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// The token from the path.
    pub token: String,
    /// `chat_id` as received: a JSON number rendered to a string, or the
    /// string as sent.
    pub chat_id: String,
    pub text: String,
    /// The request body, as UTF-8 (lossy).
    pub raw_body: String,
    /// The request target as sent, e.g. `/bot<TOKEN>/sendMessage` (with the
    /// query string, if there was one).
    pub path: String,
    /// The request's `Content-Type` header, or "" if it had none.
    pub content_type: String,
    /// The id the fake gave the message.
    pub message_id: i64,
    /// `reply_markup` as sent (an inline keyboard), if any.
    pub reply_markup: Option<Value>,
    /// The TCP connection it came on (unique in this process): equal
    /// numbers mean a kept-alive connection was used again.
    pub connection: u64,
}

/// A message the fake delivered, as it stands now (after any edits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    /// The inline keyboard's buttons as (text, callback_data), row by row;
    /// empty when it has none (or an edit removed it).
    pub buttons: Vec<Vec<(String, String)>>,
}

impl Message {
    /// The `callback_data` of the button labelled `label` (panics when
    /// there is none).
    pub fn button_data(&self, label: &str) -> String {
        self.buttons
            .iter()
            .flatten()
            .find(|(text, _)| text == label)
            .map(|(_, data)| data.clone())
            .unwrap_or_else(|| panic!("no button {label:?} in {self:?}"))
    }
}

/// An `answerCallbackQuery` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackAnswer {
    pub callback_query_id: String,
    /// The notice shown, "" when none.
    pub text: String,
    /// The tap's update id, when the query id is one the fake issued.
    pub update_id: Option<i64>,
}

/// A successful `editMessageText` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub chat_id: i64,
    pub message_id: i64,
    /// The message before and after the edit.
    pub before: Message,
    pub after: Message,
    /// The TCP connection it came on, as [`SentMessage::connection`].
    pub connection: u64,
}

/// A Telegram account as `message.from` describes it; in a private chat
/// the chat carries the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TgUser {
    pub id: i64,
    /// Self-chosen, like every name on Telegram.
    pub first_name: String,
    pub last_name: Option<String>,
    /// Without the `@`; many accounts have none.
    pub username: Option<String>,
}

impl TgUser {
    /// The sender [`FakeTelegram::push_update`] uses: `id`, first name
    /// "Alice", no last name, no username.
    pub fn alice(id: i64) -> TgUser {
        TgUser::new(id, USER_FIRST_NAME)
    }

    pub fn new(id: i64, first_name: &str) -> TgUser {
        TgUser {
            id,
            first_name: first_name.to_string(),
            last_name: None,
            username: None,
        }
    }

    pub fn with_username(mut self, username: &str) -> TgUser {
        self.username = Some(username.to_string());
        self
    }

    pub fn with_last_name(mut self, last_name: &str) -> TgUser {
        self.last_name = Some(last_name.to_string());
        self
    }
}

/// An incoming text message to queue for `getUpdates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub chat_id: i64,
    /// "private", "group", "supergroup" or "channel".
    pub chat_type: String,
    pub from: TgUser,
    pub text: String,
}

impl Incoming {
    /// A message from `from` in their private chat with the bot (whose id
    /// is theirs, as on Telegram).
    pub fn private(from: TgUser, text: &str) -> Incoming {
        Incoming {
            chat_id: from.id,
            chat_type: "private".to_string(),
            from,
            text: text.to_string(),
        }
    }

    /// A message from `from` in the chat `chat_id` of type `chat_type`.
    pub fn in_chat(chat_id: i64, chat_type: &str, from: TgUser, text: &str) -> Incoming {
        Incoming {
            chat_id,
            chat_type: chat_type.to_string(),
            from,
            text: text.to_string(),
        }
    }
}

/// The fake server. Runs on background threads; stops on drop.
pub struct FakeTelegram {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    opts: FakeOptions,
    state: Mutex<State>,
    /// Signalled on every new message, update and on shutdown.
    changed: Condvar,
    shutdown: Stop,
}

struct State {
    mode: Mode,
    sent: Vec<SentMessage>,
    /// Index in `sent` of the next message `wait_for_message` returns.
    waited: usize,
    requests: Vec<(String, String)>,
    /// Every complete request, with its body.
    received: Vec<Received>,
    /// Updates not yet confirmed by a `getUpdates` offset, oldest first.
    updates: VecDeque<(i64, Value)>,
    next_update_id: i64,
    next_message_id: i64,
    /// Counts `getUpdates` calls; a long poll that sees a newer one end
    /// with 409, as the real API does.
    poll_generation: u64,
    /// Messages that arrive the moment the next `sendMessage` is delivered.
    on_next_send: Vec<Incoming>,
    /// Every delivered message as it stands now, by message id.
    messages: std::collections::BTreeMap<i64, Message>,
    callback_answers: Vec<CallbackAnswer>,
    edits: Vec<Edit>,
    /// callback_query ids issued by `tap`, with their update ids.
    taps: Vec<(String, i64)>,
    /// The webhook URL getWebhookInfo reports ("" for none).
    webhook: String,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn is_shutdown(&self) -> bool {
        self.shutdown.is_set()
    }

    /// Waits on `changed` for at most `max` (and at most one tick).
    fn wait<'a>(&self, guard: MutexGuard<'a, State>, max: Duration) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(guard, max.min(TICK))
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
}

impl FakeTelegram {
    /// Binds 127.0.0.1:`opts.port` and starts serving.
    pub fn start(opts: FakeOptions) -> io::Result<FakeTelegram> {
        let port = opts.port;
        let shutdown = Stop::default();
        let shared = Arc::new(Shared {
            opts,
            state: Mutex::new(State {
                mode: Mode::Normal,
                sent: Vec::new(),
                waited: 0,
                requests: Vec::new(),
                received: Vec::new(),
                updates: VecDeque::new(),
                next_update_id: FIRST_UPDATE_ID,
                next_message_id: 1,
                poll_generation: 0,
                on_next_send: Vec::new(),
                messages: std::collections::BTreeMap::new(),
                callback_answers: Vec::new(),
                edits: Vec::new(),
                taps: Vec::new(),
                webhook: String::new(),
            }),
            changed: Condvar::new(),
            shutdown: shutdown.clone(),
        });
        let server = Server::start(port, LIMITS, shutdown, shared.clone())?;
        Ok(FakeTelegram { shared, server })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    pub fn token(&self) -> &str {
        &self.shared.opts.token
    }

    pub fn options(&self) -> &FakeOptions {
        &self.shared.opts
    }

    /// Changes how requests that arrive from now on are answered.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.state().mode = mode;
    }

    pub fn mode(&self) -> Mode {
        self.shared.state().mode.clone()
    }

    /// Successful `sendMessage` calls, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.shared.state().sent.clone()
    }

    /// The first message sent to `chat_id`, waiting up to `timeout` for one.
    pub fn wait_for_sent_to(&self, chat_id: i64, timeout: Duration) -> Option<SentMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .sent()
                .into_iter()
                .find(|s| s.chat_id == chat_id.to_string())
            {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every request seen (including rejected ones and those answered by a
    /// fault mode) as (HTTP method, request target), in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.state().requests.clone()
    }

    /// Every complete request the fake read (method, target, body), in
    /// order, whether it was answered, held (`NeverAnswer`) or refused.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// Waits up to `timeout` until at least `n` complete requests whose
    /// target ends with `suffix` were received; returns them all.
    pub fn wait_for_received(&self, suffix: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state();
        loop {
            let matching: Vec<Received> = st
                .received
                .iter()
                .filter(|r| r.target.split('?').next().unwrap_or("").ends_with(suffix))
                .cloned()
                .collect();
            let now = Instant::now();
            if matching.len() >= n || now >= deadline {
                return matching;
            }
            st = self.shared.wait(st, deadline - now);
        }
    }

    /// Returns the next delivered message that this method has not returned
    /// yet, waiting up to `timeout` for one to arrive. A message delivered
    /// before the call but never returned by it counts, so there is no race
    /// between starting a login and waiting for its code.
    pub fn wait_for_message(&self, timeout: Duration) -> Option<SentMessage> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state();
        loop {
            if st.waited < st.sent.len() {
                let m = st.sent[st.waited].clone();
                st.waited += 1;
                return Some(m);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.shared.wait(st, deadline - now);
        }
    }

    /// The first run of 6 to 10 ASCII digits in the last delivered text.
    pub fn last_code(&self) -> Option<String> {
        let st = self.shared.state();
        st.sent.last().and_then(|m| find_code(&m.text))
    }

    /// Queues an incoming text message for `getUpdates`, from Alice: in a
    /// private chat (`chat_type` "private") she is the chat; in a group she is
    /// user 123456977. Returns the update_id.
    pub fn push_update(&self, chat_id: i64, chat_type: &str, text: &str) -> i64 {
        let from = if chat_type == "private" {
            chat_id
        } else {
            GROUP_SENDER_ID
        };
        self.push_update_from(chat_id, chat_type, from, text)
    }

    /// Like [`push_update`](Self::push_update) with an explicit sender id.
    pub fn push_update_from(&self, chat_id: i64, chat_type: &str, from_id: i64, text: &str) -> i64 {
        self.push(&Incoming::in_chat(
            chat_id,
            chat_type,
            TgUser::alice(from_id),
            text,
        ))
    }

    /// Queues one incoming message, from any account in any chat. Returns
    /// the update_id.
    pub fn push(&self, message: &Incoming) -> i64 {
        self.push_together(std::slice::from_ref(message))[0]
    }

    /// Queues several messages at once: a long poll waiting now, or the
    /// next `getUpdates`, returns them in one batch (up to its `limit`), as
    /// when two people press Start within the same instant. Returns their
    /// update_ids.
    pub fn push_together(&self, messages: &[Incoming]) -> Vec<i64> {
        let mut st = self.shared.state();
        let ids = messages.iter().map(|m| queue_update(&mut st, m)).collect();
        self.shared.changed.notify_all();
        ids
    }

    /// Queues `message` the moment the next `sendMessage` is delivered,
    /// before that request is answered: it arrives while whoever sent the
    /// message (a login code, an enrolment code) waits for an answer.
    pub fn push_on_next_send(&self, message: Incoming) {
        self.shared.state().on_next_send.push(message);
    }

    /// Updates not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.shared.state().updates.len()
    }

    /// Queues a tap on an inline button: a `callback_query` update from
    /// the account `from_id` under the message `message_id` (whatever
    /// that message's buttons say: `data` is sent as given, as a client
    /// may). Returns the update id; the query's id is `q<update_id>`.
    pub fn tap(&self, from_id: i64, message_id: i64, data: &str) -> i64 {
        let mut st = self.shared.state();
        let update_id = st.next_update_id;
        st.next_update_id += 1;
        let query_id = format!("q{update_id}");
        let (chat_id, text) = st
            .messages
            .get(&message_id)
            .map(|m| (m.chat_id, m.text.clone()))
            .unwrap_or((from_id, String::new()));
        let update = json!({
            "update_id": update_id,
            "callback_query": {
                "id": query_id,
                "from": {
                    "id": from_id,
                    "is_bot": false,
                    "first_name": USER_FIRST_NAME,
                    "language_code": "en"
                },
                "message": {
                    "message_id": message_id,
                    "chat": chat_json(chat_id),
                    "date": unix_now(),
                    "text": text
                },
                "chat_instance": format!("{}", chat_id.wrapping_mul(7919)),
                "data": data
            }
        });
        st.taps.push((query_id, update_id));
        st.updates.push_back((update_id, update));
        self.shared.changed.notify_all();
        update_id
    }

    /// A delivered message as it stands now.
    pub fn message(&self, message_id: i64) -> Option<Message> {
        self.shared.state().messages.get(&message_id).cloned()
    }

    /// Every `answerCallbackQuery`, in order.
    pub fn callback_answers(&self) -> Vec<CallbackAnswer> {
        self.shared.state().callback_answers.clone()
    }

    /// Waits up to `timeout` for the answer to the tap `update_id`.
    pub fn wait_for_callback_answer(
        &self,
        update_id: i64,
        timeout: Duration,
    ) -> Option<CallbackAnswer> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state();
        loop {
            if let Some(a) = st
                .callback_answers
                .iter()
                .find(|a| a.update_id == Some(update_id))
            {
                return Some(a.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.shared.wait(st, deadline - now);
        }
    }

    /// Every successful `editMessageText`, in order.
    pub fn edits(&self) -> Vec<Edit> {
        self.shared.state().edits.clone()
    }

    /// Waits up to `timeout` until the message `message_id` was edited at
    /// least once; returns its last edit.
    pub fn wait_for_edit(&self, message_id: i64, timeout: Duration) -> Option<Edit> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state();
        loop {
            if let Some(e) = st.edits.iter().rev().find(|e| e.message_id == message_id) {
                return Some(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.shared.wait(st, deadline - now);
        }
    }

    /// Sets the webhook getWebhookInfo reports (`None`: none).
    pub fn set_webhook(&self, url: Option<&str>) {
        self.shared.state().webhook = url.unwrap_or_default().to_string();
    }
}

/// The inline keyboard of a `reply_markup` as (text, callback_data) rows.
fn buttons_of(markup: Option<&Value>) -> Vec<Vec<(String, String)>> {
    let rows = markup
        .and_then(|m| m.get("inline_keyboard"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .filter_map(Value::as_array)
        .map(|row| {
            row.iter()
                .map(|b| {
                    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("text"), s("callback_data"))
                })
                .collect::<Vec<_>>()
        })
        .filter(|row| !row.is_empty())
        .collect()
}

/// `reply_markup` from the parameters: a JSON object, or its text (form
/// bodies and query strings carry it serialized, as the real API takes it).
fn markup_param(params: &Map<String, Value>) -> Result<Option<Value>, Reply> {
    match params.get("reply_markup") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => Ok(params.get("reply_markup").cloned()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(Some(v)),
            _ => Err(Reply::error(
                400,
                "Bad Request: can't parse reply keyboard markup JSON object",
            )),
        },
        Some(_) => Err(Reply::error(
            400,
            "Bad Request: can't parse reply keyboard markup JSON object",
        )),
    }
}

/// Checks an inline keyboard as the real API does: each button has a text
/// and `callback_data` of 1 to 64 bytes.
fn check_markup(markup: Option<&Value>) -> Result<(), Reply> {
    let Some(m) = markup else { return Ok(()) };
    let Some(rows) = m.get("inline_keyboard").and_then(Value::as_array) else {
        return Err(Reply::error(
            400,
            "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array",
        ));
    };
    for row in rows {
        for b in row.as_array().into_iter().flatten() {
            let data = b.get("callback_data").and_then(Value::as_str).unwrap_or("");
            let text = b.get("text").and_then(Value::as_str).unwrap_or("");
            if text.is_empty() {
                return Err(Reply::error(
                    400,
                    "Bad Request: text buttons are unallowed in the inline keyboard",
                ));
            }
            if data.is_empty() || data.len() > 64 {
                return Err(Reply::error(400, "Bad Request: BUTTON_DATA_INVALID"));
            }
        }
    }
    Ok(())
}

impl http_server::Service for Shared {
    fn head(&self, method: &str, target: &str) {
        self.state()
            .requests
            .push((method.to_string(), target.to_string()));
    }

    fn received(&self, req: &Request) {
        let mut st = self.state();
        st.received.push(Received {
            method: req.method.clone(),
            target: req.target.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        });
        self.changed.notify_all();
    }

    fn answer(&self, req: &Request) -> Answer {
        handle(self, req)
    }

    fn refusal(&self, status: u16) -> Option<http_server::Reply> {
        Some(Reply::error(status, http_server::reason(status)).into())
    }

    fn wake(&self) {
        let _st = self.state();
        self.changed.notify_all();
    }
}

// ---------------------------------------------------------------- HTTP ----

use http_server::Request;

struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl From<Reply> for http_server::Reply {
    fn from(r: Reply) -> http_server::Reply {
        http_server::Reply {
            status: r.status,
            headers: vec![
                ("Server".into(), "nginx/1.18.0".into()),
                ("Content-Type".into(), r.content_type.into()),
            ],
            body: r.body,
        }
    }
}

impl Reply {
    /// Envelopes are written by hand to keep Telegram's key order ("ok"
    /// first); serde_json's maps would sort the keys.
    fn raw_json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    fn ok(result: Value) -> Reply {
        Reply::raw_json(200, format!(r#"{{"ok":true,"result":{result}}}"#))
    }

    fn error(code: u16, description: &str) -> Reply {
        Reply::raw_json(code, error_body(code, description, None))
    }
}

/// `{"ok":false,"error_code":..,"description":..[,"parameters":..]}`.
fn error_body(code: u16, description: &str, parameters: Option<Value>) -> String {
    let description = Value::from(description);
    match parameters {
        None => format!(r#"{{"ok":false,"error_code":{code},"description":{description}}}"#),
        Some(p) => format!(
            r#"{{"ok":false,"error_code":{code},"description":{description},"parameters":{p}}}"#
        ),
    }
}

// ------------------------------------------------------------ Bot API ----

fn handle(shared: &Shared, req: &Request) -> Answer {
    let mode = shared.state().mode.clone();
    match mode {
        Mode::Normal => Answer::Reply(api(shared, req, false).into()),
        Mode::Webhook => Answer::Reply(api(shared, req, true).into()),
        Mode::Trickle { delay_ms } => {
            Answer::Trickle(api(shared, req, false).into(), Duration::from_millis(delay_ms))
        }
        Mode::TrickleBody { delay_ms } => {
            Answer::TrickleBody(api(shared, req, false).into(), Duration::from_millis(delay_ms))
        }
        Mode::Status { code, body } => {
            let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
                "application/json"
            } else {
                "text/html"
            };
            Answer::Reply(
                Reply {
                    status: code,
                    content_type,
                    body: body.into_bytes(),
                }
                .into(),
            )
        }
        Mode::RateLimited { retry_after } => Answer::Reply(
            Reply::raw_json(
                429,
                error_body(
                    429,
                    &format!("Too Many Requests: retry after {retry_after}"),
                    Some(json!({"retry_after": retry_after})),
                ),
            )
            .into(),
        ),
        Mode::Garbage => Answer::Reply(Reply {
            status: 200,
            content_type: "text/html",
            body: b"<html><head><title>Welcome</title></head><body><h1>Sign in to the guest network</h1></body></html>\n".to_vec(),
        }.into()),
        Mode::NeverAnswer => Answer::Hang,
        Mode::CloseWithoutAnswer => Answer::Close,
        // The head and the start of a body at once, then `x` for ever.
        Mode::TrickleBodyForever { delay_ms } => Answer::Endless {
            at_once: b"HTTP/1.1 200 OK\r\nServer: nginx/1.18.0\r\n\
                       Content-Type: application/json\r\nContent-Length: 1000000\r\n\
                       Connection: close\r\n\r\n{\"ok\":true,\"result\":{\"pad\":\""
                .to_vec(),
            trickled: Vec::new(),
            delay: Duration::from_millis(delay_ms),
        },
    }
}

fn api(shared: &Shared, req: &Request, webhook: bool) -> Reply {
    if req.method != "GET" && req.method != "POST" {
        return Reply::error(405, "Method Not Allowed");
    }
    let Some((token, method)) = req
        .path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Reply::error(404, "Not Found");
    };
    if token != shared.opts.token {
        return Reply::error(401, "Unauthorized");
    }
    let params = match collect_params(req) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    // A webhook set with set_webhook refuses getUpdates too.
    let webhook = webhook || !shared.state().webhook.is_empty();
    // Method names are case-insensitive in the real API.
    match method.to_ascii_lowercase().as_str() {
        "getme" => get_me(shared),
        "sendmessage" => send_message(shared, req, token, &params),
        "getupdates" if webhook => Reply::error(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        ),
        "getupdates" => get_updates(shared, &params),
        "answercallbackquery" => answer_callback_query(shared, &params),
        "editmessagetext" => edit_message_text(shared, req, &params),
        "getwebhookinfo" => get_webhook_info(shared, webhook),
        _ => Reply::error(404, "Not Found"),
    }
}

/// Query string parameters, overridden by those of a JSON or form body.
fn collect_params(req: &Request) -> Result<Map<String, Value>, Reply> {
    let mut params = Map::new();
    for (k, v) in parse_pairs(&req.query) {
        params.insert(k, Value::String(v));
    }
    if req.body.is_empty() {
        return Ok(params);
    }
    let content_type = req
        .header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let body = String::from_utf8_lossy(&req.body);
    let as_json = content_type == "application/json"
        || (content_type.is_empty() && body.trim_start().starts_with('{'));
    if as_json {
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Object(map)) => params.extend(map),
            _ => return Err(Reply::error(400, "Bad Request: can't parse JSON object")),
        }
    } else if content_type == "application/x-www-form-urlencoded" || content_type.is_empty() {
        for (k, v) in parse_pairs(&body) {
            params.insert(k, Value::String(v));
        }
    }
    Ok(params)
}

/// A parameter as a string: strings as they are, numbers and booleans
/// rendered, anything else (or absent) as None.
fn param_str(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn param_int(params: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reply> {
    match param_str(params, name) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Reply::error(400, &format!("Bad Request: wrong parameter {name}"))),
    }
}

fn get_me(shared: &Shared) -> Reply {
    let id_digits = shared.opts.token.split(':').next().unwrap_or_default();
    let id = id_digits
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or(json!(0));
    Reply::ok(json!({
        "id": id,
        "is_bot": true,
        "first_name": BOT_FIRST_NAME,
        "username": shared.opts.bot_username,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false
    }))
}

fn chat_json(id: i64) -> Value {
    if id < 0 {
        json!({"id": id, "title": GROUP_TITLE, "type": "group"})
    } else {
        json!({"id": id, "first_name": USER_FIRST_NAME, "type": "private"})
    }
}

fn send_message(shared: &Shared, req: &Request, token: &str, params: &Map<String, Value>) -> Reply {
    let chat_id = param_str(params, "chat_id").unwrap_or_default();
    if chat_id.trim().is_empty() {
        return Reply::error(400, "Bad Request: chat_id is empty");
    }
    let text = param_str(params, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Reply::error(400, "Bad Request: message text is empty");
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Reply::error(400, "Bad Request: message is too long");
    }
    let markup = match markup_param(params) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = check_markup(markup.as_ref()) {
        return r;
    }
    let Ok(id) = chat_id.trim().parse::<i64>() else {
        // "@channelusername" or junk: no such chat here.
        return Reply::error(400, "Bad Request: chat not found");
    };
    if shared.opts.blocked.contains(&id) {
        return Reply::error(403, "Forbidden: bot was blocked by the user");
    }
    if !shared.opts.chats.contains(&id) {
        return Reply::error(400, "Bad Request: chat not found");
    }
    let bot_id = shared
        .opts
        .token
        .split(':')
        .next()
        .unwrap_or_default()
        .parse::<i64>()
        .unwrap_or(0);
    let mut st = shared.state();
    let message_id = st.next_message_id;
    st.next_message_id += 1;
    st.sent.push(SentMessage {
        token: token.to_string(),
        chat_id,
        text: text.clone(),
        raw_body: String::from_utf8_lossy(&req.body).into_owned(),
        path: req.target.clone(),
        content_type: req.header("content-type").unwrap_or_default().to_string(),
        message_id,
        reply_markup: markup.clone(),
        connection: req.connection,
    });
    st.messages.insert(
        message_id,
        Message {
            chat_id: id,
            message_id,
            text: text.clone(),
            buttons: buttons_of(markup.as_ref()),
        },
    );
    for m in std::mem::take(&mut st.on_next_send) {
        queue_update(&mut st, &m);
    }
    shared.changed.notify_all();
    drop(st);
    Reply::ok(json!({
        "message_id": message_id,
        "from": {
            "id": bot_id,
            "is_bot": true,
            "first_name": BOT_FIRST_NAME,
            "username": shared.opts.bot_username
        },
        "chat": chat_json(id),
        "date": unix_now(),
        "text": text
    }))
}

fn answer_callback_query(shared: &Shared, params: &Map<String, Value>) -> Reply {
    let Some(id) = param_str(params, "callback_query_id").filter(|i| !i.is_empty()) else {
        return Reply::error(
            400,
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        );
    };
    let text = param_str(params, "text").unwrap_or_default();
    if text.chars().count() > 200 {
        return Reply::error(400, "Bad Request: MESSAGE_TOO_LONG");
    }
    let mut st = shared.state();
    let update_id = st.taps.iter().find(|(q, _)| *q == id).map(|(_, u)| *u);
    if update_id.is_none() {
        return Reply::error(
            400,
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        );
    }
    if st
        .callback_answers
        .iter()
        .any(|a| a.callback_query_id == id)
    {
        return Reply::error(
            400,
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        );
    }
    st.callback_answers.push(CallbackAnswer {
        callback_query_id: id,
        text,
        update_id,
    });
    shared.changed.notify_all();
    Reply::ok(json!(true))
}

fn edit_message_text(shared: &Shared, req: &Request, params: &Map<String, Value>) -> Reply {
    let (chat_id, message_id) = match (
        param_int(params, "chat_id"),
        param_int(params, "message_id"),
    ) {
        (Ok(Some(c)), Ok(Some(m))) => (c, m),
        (Err(r), _) | (_, Err(r)) => return r,
        _ => return Reply::error(400, "Bad Request: message identifier is not specified"),
    };
    let text = param_str(params, "text").unwrap_or_default();
    if text.trim().is_empty() {
        return Reply::error(400, "Bad Request: message text is empty");
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Reply::error(400, "Bad Request: MESSAGE_TOO_LONG");
    }
    let markup = match markup_param(params) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = check_markup(markup.as_ref()) {
        return r;
    }
    let mut st = shared.state();
    let Some(before) = st
        .messages
        .get(&message_id)
        .filter(|m| m.chat_id == chat_id)
        .cloned()
    else {
        return Reply::error(400, "Bad Request: message to edit not found");
    };
    // Without reply_markup the inline keyboard goes, as on Telegram.
    let after = Message {
        text: text.clone(),
        buttons: buttons_of(markup.as_ref()),
        ..before.clone()
    };
    if after == before {
        return Reply::error(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        );
    }
    st.messages.insert(message_id, after.clone());
    st.edits.push(Edit {
        chat_id,
        message_id,
        before,
        after,
        connection: req.connection,
    });
    shared.changed.notify_all();
    Reply::ok(json!({
        "message_id": message_id,
        "chat": chat_json(chat_id),
        "date": unix_now(),
        "edit_date": unix_now(),
        "text": text
    }))
}

fn get_webhook_info(shared: &Shared, webhook_mode: bool) -> Reply {
    let st = shared.state();
    let url = if !st.webhook.is_empty() {
        st.webhook.clone()
    } else if webhook_mode {
        "https://hooks.example.net/telegram/pam".to_string()
    } else {
        String::new()
    };
    Reply::ok(json!({
        "url": url,
        "has_custom_certificate": false,
        "pending_update_count": st.updates.len()
    }))
}

/// Drops the updates an offset confirms: below it if positive; all but the
/// last `-offset` if negative.
fn confirm(updates: &mut VecDeque<(i64, Value)>, offset: Option<i64>) {
    match offset {
        Some(o) if o > 0 => updates.retain(|(id, _)| *id >= o),
        Some(o) if o < 0 => {
            let keep = usize::try_from(o.unsigned_abs()).unwrap_or(usize::MAX);
            while updates.len() > keep {
                updates.pop_front();
            }
        }
        _ => {}
    }
}

fn get_updates(shared: &Shared, params: &Map<String, Value>) -> Reply {
    let (offset, limit, timeout) = match (
        param_int(params, "offset"),
        param_int(params, "limit"),
        param_int(params, "timeout"),
    ) {
        (Ok(o), Ok(l), Ok(t)) => (o, l, t),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let limit = usize::try_from(limit.unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let timeout = u64::try_from(timeout.unwrap_or(0))
        .unwrap_or(0)
        .min(MAX_LONG_POLL_SECS);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut st = shared.state();
    // Like the real API, a new getUpdates ends any long poll still waiting.
    st.poll_generation += 1;
    let generation = st.poll_generation;
    shared.changed.notify_all();
    confirm(&mut st.updates, offset);
    loop {
        if st.poll_generation != generation {
            return Reply::error(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            );
        }
        // A positive offset also hides updates pushed later with lower ids.
        if offset.is_some_and(|o| o > 0) {
            confirm(&mut st.updates, offset);
        }
        let now = Instant::now();
        if !st.updates.is_empty() || now >= deadline || shared.is_shutdown() {
            break;
        }
        st = shared.wait(st, deadline - now);
    }
    let result: Vec<Value> = st
        .updates
        .iter()
        .take(limit)
        .map(|(_, u)| u.clone())
        .collect();
    Reply::ok(Value::Array(result))
}

/// Appends an update holding `m` to the queue; returns its update_id.
fn queue_update(st: &mut State, m: &Incoming) -> i64 {
    let mut chat = Map::new();
    chat.insert("id".to_string(), json!(m.chat_id));
    chat.insert("type".to_string(), json!(m.chat_type));
    let mut from = Map::new();
    from.insert("id".to_string(), json!(m.from.id));
    from.insert("is_bot".to_string(), json!(false));
    from.insert("first_name".to_string(), json!(m.from.first_name));
    if m.chat_type == "private" {
        chat.insert("first_name".to_string(), json!(m.from.first_name));
    } else {
        chat.insert("title".to_string(), json!(GROUP_TITLE));
    }
    if let Some(last) = &m.from.last_name {
        from.insert("last_name".to_string(), json!(last));
        if m.chat_type == "private" {
            chat.insert("last_name".to_string(), json!(last));
        }
    }
    if let Some(username) = &m.from.username {
        from.insert("username".to_string(), json!(username));
        if m.chat_type == "private" {
            chat.insert("username".to_string(), json!(username));
        }
    }
    from.insert("language_code".to_string(), json!("en"));
    let update_id = st.next_update_id;
    st.next_update_id += 1;
    let message_id = st.next_message_id;
    st.next_message_id += 1;
    let update = json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": Value::Object(from),
            "chat": Value::Object(chat),
            "date": unix_now(),
            "text": m.text
        }
    });
    st.updates.push_back((update_id, update));
    update_id
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The first maximal run of 6 to 10 ASCII digits in `text`.
pub fn find_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if (6..=10).contains(&(i - start)) {
                return Some(text[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    None
}
