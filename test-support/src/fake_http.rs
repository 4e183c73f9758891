//! A generic loopback HTTP service for the gateway tests: it records every
//! request and answers what the test scripts — a handler that plays the
//! service (signal-cli, playSMS, websms, Twilio, ntfy, Matrix, …), one-shot
//! answers queued in front of it, or a never-answer mode for timeouts.
//!
//! Only std and serde_json. Binds 127.0.0.1 only; one thread per
//! connection; `Connection: close` after each answer; every wait is bounded
//! and checks the shutdown flag, and dropping the fake joins every thread.
//!
//! Included with `#[path = "support/fake_http.rs"] mod fake_http;`.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(25);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

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
    shutdown: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake service; stops on drop.
pub struct FakeHttp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeHttp {
    /// Starts on a free port of 127.0.0.1, answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            handler: Mutex::new(Arc::new(handler)),
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            waited: Mutex::new(0),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let workers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let shared = Arc::clone(&shared);
            let workers = Arc::clone(&workers);
            thread::Builder::new()
                .name("fake-http-accept".into())
                .spawn(move || accept_loop(listener, shared, workers))
                .expect("spawn")
        };
        FakeHttp {
            shared,
            addr,
            acceptor: Some(acceptor),
            workers,
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for w in std::mem::take(&mut *lock(&self.workers)) {
            let _ = w.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                if let Ok(h) = thread::Builder::new()
                    .name("fake-http-conn".into())
                    .spawn(move || serve(stream, &shared))
                {
                    lock(&workers).push(h);
                }
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(TICK));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Some(req) = read_request(&mut stream, shared) else {
        return;
    };
    let answer = {
        let queued = lock(&shared.queue).pop_front();
        match queued {
            Some(a) => a,
            None => {
                let handler = Arc::clone(&lock(&shared.handler));
                handler(&req)
            }
        }
    };
    lock(&shared.requests).push(req);
    shared.changed.notify_all();
    match answer {
        Answer::Reply(reply) => {
            let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
            for (k, v) in &reply.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                reply.body.len()
            ));
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&reply.body);
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Write);
            // Let the client read before the socket goes away.
            let mut sink = [0u8; 1024];
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                match stream.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        }
        Answer::Hang => {
            while !shared.shutdown.load(Ordering::SeqCst) {
                thread::sleep(TICK);
            }
        }
        Answer::Close => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Answer::TrickleBody { status, delay } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000000\r\nConnection: close\r\n\r\n",
                reason(status)
            );
            if stream.write_all(head.as_bytes()).is_ok() && stream.flush().is_ok() {
                trickle(&mut stream, shared, delay, b"{\"ok\":true,\"pad\":\"");
            }
        }
        Answer::TrickleHead { delay } => {
            if stream.write_all(b"HTTP/1.1 200 OK\r\n").is_ok() {
                trickle(&mut stream, shared, delay, b"X-Pad: ");
            }
        }
    }
}

/// Writes `prefix`, then `x` forever, one byte every `delay`; stops when a
/// write fails (the client left) or the fake shuts down.
fn trickle(stream: &mut TcpStream, shared: &Shared, delay: Duration, prefix: &[u8]) {
    let _ = stream.set_nodelay(true);
    let mut bytes = prefix.iter().copied().chain(std::iter::repeat(b'x'));
    loop {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if shared.shutdown.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(until.saturating_duration_since(Instant::now()).min(TICK));
        }
        let Some(b) = bytes.next() else { return };
        if stream.write_all(&[b]).is_err() || stream.flush().is_err() {
            return;
        }
    }
}

fn read_request(stream: &mut TcpStream, shared: &Shared) -> Option<Request> {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut fill = |buf: &mut Vec<u8>| -> Option<()> {
        loop {
            if shared.shutdown.load(Ordering::SeqCst) || start.elapsed() > REQUEST_TIMEOUT {
                return None;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Some(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
    };
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        fill(&mut buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY
        || headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        // The clients under test send Content-Length; anything else is a
        // test failure, made visible as an unparsable request.
        return None;
    }
    while buf.len() < head_end + 4 + length {
        fill(&mut buf)?;
    }
    let body = buf[head_end + 4..head_end + 4 + length].to_vec();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_pairs(q)),
        None => (target.clone(), Vec::new()),
    };
    Some(Request {
        method,
        target,
        path,
        query,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Percent-decodes `a=b&c=d` (`+` is a space).
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// The first run of 6 to 10 ASCII digits in `text` (the code).
pub fn find_code(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| (6..=10).contains(&w.len()))
        .map(str::to_string)
}
