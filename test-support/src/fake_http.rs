//! A generic loopback HTTP service for the gateway tests: it records every
//! request and answers what the test scripts — a handler that plays the
//! service (signal-cli, playSMS, websms, Twilio, ntfy, Matrix, …), one-shot
//! answers queued in front of it, or a never-answer mode for timeouts.
//!
//! Binds 127.0.0.1 only; `Connection: close` after each answer; the
//! server itself (threads, limits, shutdown) is [`crate::http_server`]'s,
//! shared with the fake Telegram.

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::http_server::{self, Limits, Server, Stop, TICK, lock};
pub use crate::http_server::{parse_pairs, percent_decode};

/// What the fake accepts: anything else closes the connection without an
/// answer (the clients under test send a Content-Length; anything else is a
/// test failure, made visible as an unanswered request).
const LIMITS: Limits = Limits {
    name: "fake-http",
    max_head: 64 * 1024,
    max_body: 1024 * 1024,
    idle_timeout: Duration::from_secs(10),
    request_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(5),
    max_connections: usize::MAX,
    keep_alive: false,
    chunked: false,
    linger: Duration::from_millis(200),
};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub path: String,
    /// Query pairs, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        parse_pairs(&self.body_text())
    }

    pub fn form_value(&self, key: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn query_value(&self, key: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// `Authorization: Basic` decoded to (user, password).
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(base64_decode(value.trim())?).ok()?;
        let (u, p) = decoded.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    /// `Authorization: Bearer` token.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

/// An answer with status, extra headers and body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// What the fake does with a request.
#[derive(Clone, Debug)]
pub enum Answer {
    Reply(Reply),
    /// Read the request, never answer; the connection stays open until the
    /// fake is dropped.
    Hang,
    /// Read the request, close without a byte of answer.
    Close,
    /// Send the head (this status, a `Content-Length` far beyond what is
    /// sent) at once, then one byte of body every `delay`, until the
    /// client goes away or the fake is dropped.
    TrickleBody {
        status: u16,
        delay: Duration,
    },
    /// Send the status line, then header bytes one every `delay`, never
    /// ending the head, until the client goes away or the fake is dropped.
    TrickleHead {
        delay: Duration,
    },
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Answer {
        Answer::Reply(r)
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

struct Shared {
    handler: Mutex<Handler>,
    queue: Mutex<VecDeque<Answer>>,
    requests: Mutex<Vec<Request>>,
    /// Index of the next request `wait_for_request` returns.
    waited: Mutex<usize>,
    changed: Condvar,
}

/// The fake service; stops on drop.
pub struct FakeHttp {
    shared: Arc<Shared>,
    server: Server,
}

impl FakeHttp {
    /// Starts on a free port of 127.0.0.1, answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> FakeHttp {
        let shared = Arc::new(Shared {
            handler: Mutex::new(Arc::new(handler)),
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            waited: Mutex::new(0),
            changed: Condvar::new(),
        });
        let server =
            Server::start(0, LIMITS, Stop::default(), shared.clone()).expect("bind 127.0.0.1");
        FakeHttp { shared, server }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Replaces the handler for requests from now on.
    pub fn set_handler(&self, handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) {
        *lock(&self.shared.handler) = Arc::new(handler);
    }

    /// Queues a one-shot answer, used before the handler.
    pub fn push(&self, answer: impl Into<Answer>) {
        lock(&self.shared.queue).push_back(answer.into());
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// The next request this method has not returned yet, waiting up to
    /// `timeout` for one.
    pub fn wait_for_request(&self, timeout: Duration) -> Option<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = lock(&self.shared.requests);
        loop {
            {
                let mut waited = lock(&self.shared.waited);
                if *waited < requests.len() {
                    *waited += 1;
                    return Some(requests[*waited - 1].clone());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            requests = self
                .shared
                .changed
                .wait_timeout(requests, (deadline - now).min(TICK))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl http_server::Service for Shared {
    fn answer(&self, req: &http_server::Request) -> http_server::Answer {
        let req = Request {
            method: req.method.clone(),
            target: req.target.clone(),
            path: req.path.clone(),
            query: parse_pairs(&req.query),
            headers: req.headers.clone(),
            body: req.body.clone(),
        };
        let answer = {
            let queued = lock(&self.queue).pop_front();
            match queued {
                Some(a) => a,
                None => {
                    let handler = Arc::clone(&lock(&self.handler));
                    handler(&req)
                }
            }
        };
        lock(&self.requests).push(req);
        self.changed.notify_all();
        match answer {
            Answer::Reply(reply) => http_server::Answer::Reply(http_server::Reply {
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
            }),
            Answer::Hang => http_server::Answer::Hang,
            Answer::Close => http_server::Answer::Close,
            Answer::TrickleBody { status, delay } => http_server::Answer::Endless {
                at_once: format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                     Content-Length: 1000000\r\nConnection: close\r\n\r\n",
                    http_server::reason(status)
                )
                .into_bytes(),
                trickled: b"{\"ok\":true,\"pad\":\"".to_vec(),
                delay,
            },
            Answer::TrickleHead { delay } => http_server::Answer::Endless {
                at_once: b"HTTP/1.1 200 OK\r\n".to_vec(),
                trickled: b"X-Pad: ".to_vec(),
                delay,
            },
        }
    }

    fn wake(&self) {
        self.changed.notify_all();
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub use crate::fake_telegram::find_code;
