//! A loopback fake of the Telegram Bot API for shell use and `make demo`.
//!
//! ```text
//! cargo run --example fake_telegram -- [--port N] [--token T] [--chat ID]...
//!     [--blocked ID]... [--bot-username NAME] [--ready-file PATH]
//!     [--messages PATH] [--codes PATH] [--arrivals PATH]
//!     [--tls-cert PEM --tls-key PEM] [--mode normal|down500|garbage|never|webhook]
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` once bound, writes the port to
//! the ready file (atomically: temp file, then rename), prints each delivered
//! message as `[fake Telegram] to chat <id>: <text>` and appends it as one
//! JSON line `{"chat_id":..,"text":..}` to the messages file, and writes
//! the code in it (the first run of 6 to 10 digits) as one line to the codes
//! file. The codes file may be a FIFO: it is opened read-write, so opening
//! never blocks and the pipe stays open between readers; `make bench` feeds
//! pamtester's stdin from it. The arrivals file gets one line per delivered
//! message, the wall-clock time it arrived in microseconds since the Unix
//! epoch (`make bench`: the time from a login's start to its message). With `--tls-cert`/`--tls-key` (e.g.
//! tests/data/tls/leaf.pem and leaf.key) it serves https instead, through
//! a TLS front on its own port (the one printed and written to the ready
//! file). Runs until killed.

use pgw_test_support::fake_telegram;
use pgw_test_support::tls_front;

use fake_telegram::{FakeOptions, FakeTelegram, Mode, SentMessage};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: fake_telegram [--port N] [--token T] [--chat ID]... [--blocked ID]... \
[--bot-username NAME] [--ready-file PATH] [--messages PATH] [--codes PATH] \
[--arrivals PATH] [--tls-cert PEM --tls-key PEM] [--mode normal|down500|garbage|never|webhook]";

struct Args {
    opts: FakeOptions,
    ready_file: Option<PathBuf>,
    messages: Option<PathBuf>,
    codes: Option<PathBuf>,
    arrivals: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    mode: Mode,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut opts = FakeOptions::default();
    let mut chats = Vec::new();
    let mut ready_file = None;
    let mut messages = None;
    let mut codes = None;
    let mut arrivals = None;
    let mut tls_cert = None;
    let mut tls_key = None;
    let mut mode = Mode::Normal;
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                opts.port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--token" => opts.token = value()?,
            "--chat" => {
                let v = value()?;
                chats.push(v.parse().map_err(|_| format!("bad --chat {v:?}"))?);
            }
            "--blocked" => {
                let v = value()?;
                opts.blocked
                    .push(v.parse().map_err(|_| format!("bad --blocked {v:?}"))?);
            }
            "--bot-username" => opts.bot_username = value()?,
            "--ready-file" => ready_file = Some(PathBuf::from(value()?)),
            "--messages" => messages = Some(PathBuf::from(value()?)),
            "--codes" => codes = Some(PathBuf::from(value()?)),
            "--arrivals" => arrivals = Some(PathBuf::from(value()?)),
            "--tls-cert" => tls_cert = Some(PathBuf::from(value()?)),
            "--tls-key" => tls_key = Some(PathBuf::from(value()?)),
            "--mode" => {
                let v = value()?;
                mode = match v.as_str() {
                    "normal" => Mode::Normal,
                    "down500" => Mode::Status {
                        code: 500,
                        body:
                            r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#
                                .to_string(),
                    },
                    "garbage" => Mode::Garbage,
                    "never" => Mode::NeverAnswer,
                    "webhook" => Mode::Webhook,
                    _ => return Err(format!("unknown --mode {v:?}")),
                };
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if !chats.is_empty() {
        opts.chats = chats;
    }
    let tls = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_string()),
    };
    Ok(Args {
        opts,
        ready_file,
        messages,
        codes,
        arrivals,
        tls,
        mode,
    })
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory and a rename, so a reader sees all of it or nothing.
fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

fn record(
    m: &SentMessage,
    messages: Option<&mut File>,
    codes: Option<&mut File>,
    arrivals: Option<&mut File>,
) -> io::Result<()> {
    let arrived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    // The code first: a benchmark's pamtester is waiting for it.
    if let (Some(f), Some(code)) = (codes, fake_telegram::find_code(&m.text)) {
        f.write_all(format!("{code}\n").as_bytes())?;
    }
    if let Some(f) = arrivals {
        f.write_all(format!("{arrived}\n").as_bytes())?;
    }
    let mut out = io::stdout().lock();
    writeln!(out, "[fake Telegram] to chat {}: {}", m.chat_id, m.text)?;
    out.flush()?;
    if let Some(f) = messages {
        let chat_id = match m.chat_id.trim().parse::<i64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(m.chat_id.clone()),
        };
        let line = serde_json::json!({"chat_id": chat_id, "text": m.text});
        writeln!(f, "{line}")?;
        f.flush()?;
    }
    Ok(())
}

/// `path` opened for appending (created if missing); read-write too when
/// `read` (a FIFO opened so does not wait for a reader).
fn open_append(path: Option<&PathBuf>, read: bool) -> Result<Option<File>, String> {
    path.map(|p| {
        OpenOptions::new()
            .read(read)
            .append(true)
            .create(true)
            .open(p)
            .map_err(|e| format!("cannot open {}: {e}", p.display()))
    })
    .transpose()
}

fn run(args: Args) -> Result<(), String> {
    let mut messages = open_append(args.messages.as_ref(), false)?;
    let mut codes = open_append(args.codes.as_ref(), true)?;
    let mut arrivals = open_append(args.arrivals.as_ref(), false)?;
    let fake = FakeTelegram::start(args.opts).map_err(|e| format!("cannot listen: {e}"))?;
    fake.set_mode(args.mode);
    let front = match &args.tls {
        Some((cert, key)) => {
            let backend = ([127, 0, 0, 1], fake.port()).into();
            Some(
                tls_front::TlsFront::start(cert, key, backend)
                    .map_err(|e| format!("cannot serve TLS: {e}"))?,
            )
        }
        None => None,
    };
    let (url, port) = match &front {
        Some(f) => (f.url(), f.port()),
        None => (fake.url(), fake.port()),
    };
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {url}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    if let Some(p) = &args.ready_file {
        write_atomically(p, &format!("{port}\n"))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    loop {
        if let Some(m) = fake.wait_for_message(Duration::from_secs(1)) {
            record(&m, messages.as_mut(), codes.as_mut(), arrivals.as_mut())
                .map_err(|e| format!("cannot record a message: {e}"))?;
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake_telegram: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake_telegram: {e}");
            ExitCode::FAILURE
        }
    }
}
