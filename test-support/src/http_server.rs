//! The loopback HTTP/1.1 server under both fakes ([`crate::fake_telegram`],
//! [`crate::fake_http`]): the accept loop, reading requests within limits
//! (Content-Length or chunked bodies, `Expect: 100-continue`, keep-alive),
//! writing answers at once or trickled, hanging or closing on purpose, and
//! stopping. The fake is a [`Service`]: it sees each request and says what
//! to answer.
//!
//! Binds 127.0.0.1 only; every connection is served on its own thread;
//! every wait is bounded (sockets have timeouts, loops look at the stop
//! flag at least every [`TICK`]); dropping the [`Server`] closes the port
//! and joins every thread it started.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked threads look at the stop flag.
pub(crate) const TICK: Duration = Duration::from_millis(25);

/// Locks, ignoring poisoning: a panicking worker must not wedge the test.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set when the server stops; the service's own waits look at it too.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<AtomicBool>);

impl Stop {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Sleeps `total`, in ticks; Err if the server stops meanwhile.
    pub(crate) fn sleep(&self, total: Duration) -> io::Result<()> {
        let deadline = Instant::now() + total;
        loop {
            if self.is_set() {
                return Err(io::Error::other("the fake is shutting down"));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            thread::sleep((deadline - now).min(TICK));
        }
    }
}

/// What a fake accepts and how it treats connections.
pub(crate) struct Limits {
    /// Thread names: `NAME-accept`, `NAME-conn`.
    pub name: &'static str,
    /// Largest request line plus headers.
    pub max_head: usize,
    /// Largest request body.
    pub max_body: usize,
    /// A connection with no request begun is closed after this.
    pub idle_timeout: Duration,
    /// A request must be complete this long after its first byte.
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    /// Connections served at once; more are closed straight away.
    pub max_connections: usize,
    /// Serve several requests per connection when the client asks; false:
    /// one request, answered with `Connection: close`.
    pub keep_alive: bool,
    /// Accept `Transfer-Encoding: chunked` bodies; false: refuse them (400).
    pub chunked: bool,
    /// After the last answer on a connection: stop writing, then read what
    /// the client still sends for at most this long, so that closing does
    /// not reset the connection before the client has read the answer.
    pub linger: Duration,
}

/// One request as read.
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The target without the query string.
    pub path: String,
    /// The query string as sent (without `?`).
    pub query: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client asked to keep the connection open.
    pub keep_alive: bool,
    /// Which connection it came on: a number unique in this process.
    pub connection: u64,
}

/// Numbers the connections every server of this process accepts.
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Request {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A complete answer: status, headers in order (`Content-Length` and
/// `Connection` are added), body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the server does with a request.
pub(crate) enum Answer {
    Reply(Reply),
    /// The whole answer one byte at a time, `delay` before each byte.
    Trickle(Reply, Duration),
    /// The status line and headers at once, then the body one byte at a
    /// time, `delay` before each byte.
    TrickleBody(Reply, Duration),
    /// `at_once`, then `trickled` and `x` for ever, one byte after each
    /// `delay`, until the client goes away or the server stops.
    Endless {
        at_once: Vec<u8>,
        trickled: Vec<u8>,
        delay: Duration,
    },
    /// No answer; the connection stays open until the server stops.
    Hang,
    /// Close without a byte of answer.
    Close,
}

/// The fake behind the server.
pub(crate) trait Service: Send + Sync + 'static {
    /// A request line and headers were read (the body may yet be refused).
    fn head(&self, _method: &str, _target: &str) {}
    /// A whole request was read, before it is answered.
    fn received(&self, _req: &Request) {}
    fn answer(&self, req: &Request) -> Answer;
    /// The answer to a request the server refused (400, 413) before it
    /// closes the connection; `None`: close without a word.
    fn refusal(&self, _status: u16) -> Option<Reply> {
        None
    }
    /// The server is stopping: wake the service's own waits.
    fn wake(&self) {}
}

/// A running server; stops on drop.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Stop,
    service: Arc<dyn Service>,
    acceptor: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: a free one) and serves `service`.
    pub(crate) fn start(
        port: u16,
        limits: Limits,
        stop: Stop,
        service: Arc<dyn Service>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let workers = Arc::new(Mutex::new(Vec::new()));
        let conn = Arc::new(Conn {
            limits,
            stop: stop.clone(),
            service: Arc::clone(&service),
        });
        let acceptor = {
            let workers = Arc::clone(&workers);
            thread::Builder::new()
                .name(format!("{}-accept", conn.limits.name))
                .spawn(move || accept_loop(listener, conn, workers))?
        };
        Ok(Server {
            addr,
            stop,
            service,
            acceptor: Some(acceptor),
            workers,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.set();
        self.service.wake();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // The acceptor is gone: no worker can be added any more.
        let workers = std::mem::take(&mut *lock(&self.workers));
        for w in workers {
            let _ = w.join();
        }
    }
}

/// What every connection's thread shares.
struct Conn {
    limits: Limits,
    stop: Stop,
    service: Arc<dyn Service>,
}

fn accept_loop(listener: TcpListener, conn: Arc<Conn>, workers: Arc<Mutex<Vec<JoinHandle<()>>>>) {
    while !conn.stop.is_set() {
        match listener.accept() {
            Ok((stream, _)) => {
                let mut list = lock(&workers);
                let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut *list)
                    .into_iter()
                    .partition(|h| h.is_finished());
                *list = live;
                for h in done {
                    let _ = h.join();
                }
                if list.len() >= conn.limits.max_connections {
                    continue; // dropping the stream closes it
                }
                let conn = Arc::clone(&conn);
                let spawned = thread::Builder::new()
                    .name(format!("{}-conn", conn.limits.name))
                    .spawn(move || serve_connection(stream, &conn));
                if let Ok(h) = spawned {
                    list.push(h);
                }
            }
            // Nothing pending: sleep in poll(2) until a connection arrives
            // (no added latency, which benchmarks would measure) or a tick
            // passes (to look at the stop flag).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(&listener, TICK),
            // E.g. EMFILE: try again shortly.
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Waits until `listener` has a connection to accept, at most `max`.
fn wait_readable(listener: &TcpListener, max: Duration) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let _ = unsafe { libc::poll(&mut pfd, 1, max.as_millis() as libc::c_int) };
}

enum ReadError {
    /// Connection closed, idle too long, or stopping: just close.
    Gone,
    /// Refuse with this status, then close.
    Refuse(u16),
}

fn serve_connection(mut stream: TcpStream, conn: &Conn) {
    // Accepted sockets may inherit the listener's non-blocking flag.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(TICK));
    let _ = stream.set_write_timeout(Some(conn.limits.write_timeout));
    let mut buf = Vec::new();
    let connection = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    loop {
        let req = match read_request(&mut stream, &mut buf, conn) {
            Ok(mut req) => {
                req.connection = connection;
                req
            }
            Err(ReadError::Gone) => return,
            Err(ReadError::Refuse(status)) => {
                if let Some(reply) = conn.service.refusal(status)
                    && write_reply(&mut stream, &reply, false, None, &conn.stop).is_ok()
                {
                    linger_close(&mut stream, conn);
                }
                return;
            }
        };
        conn.service.received(&req);
        let keep_alive = conn.limits.keep_alive && req.keep_alive && !conn.stop.is_set();
        let written = match conn.service.answer(&req) {
            Answer::Reply(reply) => write_reply(&mut stream, &reply, keep_alive, None, &conn.stop),
            Answer::Trickle(reply, delay) => {
                write_reply(&mut stream, &reply, keep_alive, Some(delay), &conn.stop)
            }
            Answer::TrickleBody(reply, delay) => {
                write_reply_trickle_body(&mut stream, &reply, keep_alive, delay, &conn.stop)
            }
            Answer::Endless {
                at_once,
                trickled,
                delay,
            } => {
                if stream.write_all(&at_once).is_ok() && stream.flush().is_ok() {
                    for b in trickled.into_iter().chain(std::iter::repeat(b'x')) {
                        if conn.stop.sleep(delay).is_err()
                            || stream.write_all(&[b]).is_err()
                            || stream.flush().is_err()
                        {
                            break;
                        }
                    }
                }
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Answer::Hang => {
                while !conn.stop.is_set() {
                    thread::sleep(TICK);
                }
                return;
            }
            Answer::Close => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        };
        if written.is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if !keep_alive || conn.stop.is_set() {
            linger_close(&mut stream, conn);
            return;
        }
    }
}

/// Reads one request from `stream` (bytes already in `buf` first; bytes past
/// the request stay in `buf` for the next one).
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    conn: &Conn,
) -> Result<Request, ReadError> {
    let limits = &conn.limits;
    let idle_since = Instant::now();
    let mut started: Option<Instant> = None;
    // Request line and headers.
    let head_end = loop {
        // Empty lines before a request line are to be ignored (RFC 9112 2.2).
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if !buf.is_empty() && started.is_none() {
            started = Some(Instant::now());
        }
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > limits.max_head {
            return Err(ReadError::Refuse(413));
        }
        fill(stream, buf, conn, idle_since, started)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => {
            (m.to_string(), t.to_string(), v.to_string())
        }
        _ => return Err(ReadError::Refuse(400)),
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Refuse(400));
    }
    let mut headers = Vec::new();
    for line in lines {
        match line.split_once(':') {
            Some((name, value)) => {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()))
            }
            None => return Err(ReadError::Refuse(400)),
        }
    }
    conn.service.head(&method, &target);

    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let connection = header("connection").unwrap_or_default();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked = header("transfer-encoding").is_some_and(|te| te.contains("chunked"));
    if chunked && !limits.chunked {
        return Err(ReadError::Refuse(400));
    }
    let content_length = match header("content-length") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return Err(ReadError::Refuse(400)),
        },
    };
    if content_length > limits.max_body {
        return Err(ReadError::Refuse(413));
    }
    let body_start = head_end + 4;
    let has_body = chunked || content_length > 0;
    if has_body && buf.len() == body_start && header("expect").is_some_and(|e| e == "100-continue")
    {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Gone)?;
    }
    let body = if chunked {
        loop {
            match decode_chunked(&buf[body_start..], limits.max_body) {
                Err(()) => return Err(ReadError::Refuse(400)),
                Ok(Some((body, used))) => {
                    buf.drain(..body_start + used);
                    break body;
                }
                Ok(None) => {
                    if buf.len() - body_start > limits.max_body + 64 * 1024 {
                        return Err(ReadError::Refuse(413));
                    }
                    fill(stream, buf, conn, idle_since, started)?;
                }
            }
        }
    } else {
        while buf.len() < body_start + content_length {
            fill(stream, buf, conn, idle_since, started)?;
        }
        let body = buf[body_start..body_start + content_length].to_vec();
        buf.drain(..body_start + content_length);
        body
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    Ok(Request {
        method,
        target,
        path,
        query,
        headers,
        body,
        keep_alive,
        connection: 0,
    })
}

/// Reads more bytes into `buf`, waiting in ticks; gives up on EOF, error,
/// stopping, an idle connection or a request that takes too long.
fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    conn: &Conn,
    idle_since: Instant,
    started: Option<Instant>,
) -> Result<(), ReadError> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if conn.stop.is_set() {
            return Err(ReadError::Gone);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Gone),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                let too_long = match started {
                    Some(t) => t.elapsed() > conn.limits.request_timeout,
                    None => idle_since.elapsed() > conn.limits.idle_timeout,
                };
                if too_long {
                    return Err(ReadError::Gone);
                }
            }
            Err(_) => return Err(ReadError::Gone),
        }
    }
}

/// Decodes a complete chunked body at the start of `data`: Ok(None) if more
/// bytes are needed, Err on malformed input or a body over `max`, else the
/// body and bytes used.
fn decode_chunked(data: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_len) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[pos..pos + line_len]).map_err(|_| ())?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| ())?;
        pos += line_len + 2;
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            loop {
                let Some(len) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += len + 2;
                if len == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if size > max || body.len() + size > max {
            return Err(());
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The reason phrase for `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        420 => "Flood",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn head_bytes(reply: &Reply, keep_alive: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        reply.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    ));
    head.into_bytes()
}

fn write_reply(
    stream: &mut TcpStream,
    reply: &Reply,
    keep_alive: bool,
    trickle: Option<Duration>,
    stop: &Stop,
) -> io::Result<()> {
    let mut bytes = head_bytes(reply, keep_alive);
    bytes.extend_from_slice(&reply.body);
    match trickle {
        None => stream.write_all(&bytes)?,
        Some(delay) => {
            for byte in bytes {
                stop.sleep(delay)?;
                stream.write_all(&[byte])?;
                stream.flush()?;
            }
        }
    }
    stream.flush()
}

/// Like [`write_reply`], but the status line and headers go at once and
/// only the body is trickled, one byte after each `delay`.
fn write_reply_trickle_body(
    stream: &mut TcpStream,
    reply: &Reply,
    keep_alive: bool,
    delay: Duration,
    stop: &Stop,
) -> io::Result<()> {
    stream.write_all(&head_bytes(reply, keep_alive))?;
    stream.flush()?;
    for byte in &reply.body {
        stop.sleep(delay)?;
        stream.write_all(&[*byte])?;
        stream.flush()?;
    }
    stream.flush()
}

/// After the last answer: stop writing, then drain what the client still
/// sends for a bounded time so closing does not reset the connection before
/// the client has read the answer.
fn linger_close(stream: &mut TcpStream, conn: &Conn) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + conn.limits.linger;
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0usize;
    while Instant::now() < deadline && !conn.stop.is_set() && drained < 16 * conn.limits.max_body {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
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

/// Decodes `%XX` escapes and `+` (a space); anything else stays as it is.
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
