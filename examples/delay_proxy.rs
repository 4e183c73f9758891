//! A loopback TCP proxy that adds round-trip time, for `make bench`: the
//! module's direct https send and `pam-gatewayd`'s warm connection compared
//! over a link with the latency of a real one (issue 14).
//!
//! ```text
//! delay_proxy --to HOST:PORT --rtt-ms N [--ready-file PATH]
//! ```
//!
//! Listens on a free port of 127.0.0.1 (printed as `listening on PORT` and
//! written to the ready file), connects each client to `--to`, and passes
//! the bytes both ways, each chunk held for half of `--rtt-ms` before it is
//! written: every round trip through it (a TCP handshake's data, a TLS
//! flight, a request and its answer) costs N ms more. A new connection's
//! TCP handshake, which the client's `connect` finishes with the proxy at
//! once, is paid by its first bytes instead: nothing the client sends goes
//! on before N ms after the accept, as nothing could be sent before the
//! handshake over a real link. Order within each direction is kept; a half
//! close is passed on after the same delay. Runs until killed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: delay_proxy --to HOST:PORT --rtt-ms N [--ready-file PATH]";

struct Args {
    to: String,
    half: Duration,
    ready_file: Option<PathBuf>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut to, mut rtt, mut ready_file) = (None, None, None);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--to" => to = Some(value()?),
            "--rtt-ms" => {
                rtt = Some(value()?.parse::<u64>().map_err(|_| "bad --rtt-ms")?);
            }
            "--ready-file" => ready_file = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Args {
        to: to.ok_or("--to is required")?,
        half: Duration::from_micros(rtt.ok_or("--rtt-ms is required")? * 500),
        ready_file,
    })
}

/// Reads `from` and hands each chunk, stamped with when it may go (half
/// the round trip after it was read, and never before `not_before` plus
/// that), to a writer thread that writes it to `to` at that time.
fn pump(mut from: TcpStream, mut to: TcpStream, half: Duration, not_before: Instant) {
    let due = move || Instant::now().max(not_before) + half;
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    let writer = thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send((due(), None));
                break;
            }
            Ok(n) => {
                if tx.send((due(), Some(buf[..n].to_vec()))).is_err() {
                    break;
                }
            }
        }
    }
    let _ = writer.join();
}

fn serve(client: TcpStream, to: &str, half: Duration) -> io::Result<()> {
    // The handshake a real link would have made the client wait for.
    let handshake_done = Instant::now() + 2 * half;
    let server = TcpStream::connect(to)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    thread::spawn(move || pump(c2, s2, half, handshake_done));
    thread::spawn(move || pump(server, client, half, Instant::now()));
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("listening on {port}");
    if let Some(p) = &args.ready_file {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n"))
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if let Err(e) = serve(client, &args.to, args.half) {
            eprintln!("delay_proxy: {}: {e}", args.to);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("delay_proxy: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delay_proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
