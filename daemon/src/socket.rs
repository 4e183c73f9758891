//! The Unix socket the module (and the CLI) talk to: root's, mode 0600, in
//! a root-owned directory nobody else may write to; every peer checked with
//! SO_PEERCRED (uid 0, or the connection is closed at once).
//!
//! A thread per connection, at most [`MAX_CONNECTIONS`] (one more is
//! answered `Busy`); a connection idle for [`IDLE_TIMEOUT`] is closed; a
//! request must be complete within [`REQUEST_TIMEOUT`] of its first byte
//! and its answer written within [`WRITE_TIMEOUT`]: a module that its
//! caller stopped mid-request holds one thread for that long and no one
//! else's login.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pam_gateway_core::approve::wire::{
    ErrorKind, FrameError, MAX_FRAME, Request, Response, VERSION, read_frame, write_frame,
};
use pam_gateway_core::log::Level;
use pam_gateway_core::system::fs::{peer_cred, peer_uid};
use pam_gateway_core::system::set_umask;

use crate::approvals::{Daemon, error};

/// Connections served at once. A login keeps its connection from
/// `Approve` to `Finish` (while its user reads the message and types or
/// taps): room for that many logins at the prompt at once, each thread a
/// few KiB of memory while it waits.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request must be whole this long after its first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// An answer must be written within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepares the directory, removes a stale socket of ours, and binds.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("socket {} has no directory", path.display()))?;
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("cannot check {}: {e}", dir.display())),
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot check {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{} is not a directory (a symbolic link is refused too)",
            dir.display()
        ));
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be owned by root and writable by root only (it is uid {}, mode {:04o}): \
             fix it with chown root {} && chmod 700 {}",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777,
            dir.display(),
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot check {}: {e}", path.display())),
        Ok(m) if m.file_type().is_socket() && m.uid() == 0 => {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use: another pam-gatewayd is running",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket owned by root: not removed; check what it \
                 is and remove it yourself",
                path.display()
            ));
        }
    }
    // Born 0600: no moment in which anyone else could connect.
    let old = set_umask(0o177);
    let bound = UnixListener::bind(path);
    set_umask(old);
    let listener = bound.map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot check {}: {e}", path.display()))?;
    if meta.uid() != 0 || meta.mode() & 0o177 != 0 {
        return Err(format!(
            "{} came out as uid {} mode {:04o}, not root's 0600",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(listener)
}

/// Accepts connections for ever.
pub fn serve(listener: UnixListener, d: Arc<Daemon>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                d.log.log(Level::Warning, &format!("accept failed: {e}"));
                // EMFILE and the like: give the system a moment.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match peer_uid(conn.as_fd()) {
            Ok(0) => {}
            Ok(uid) => {
                d.log.log(
                    Level::Warning,
                    &format!("refused a connection from uid {uid}: only root may use the socket"),
                );
                continue;
            }
            Err(e) => {
                d.log.log(
                    Level::Warning,
                    &format!("refused a connection whose peer cannot be checked: {e}"),
                );
                continue;
            }
        }
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            busy(&d, conn);
            continue;
        }
        let (d2, active2) = (Arc::clone(&d), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                connection(&d2, conn);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            d.log.log(
                Level::Warning,
                &format!("cannot start a thread for a connection: {e}"),
            );
        }
    }
}

fn busy(d: &Daemon, conn: UnixStream) {
    d.log.log(
        Level::Warning,
        &format!("{MAX_CONNECTIONS} connections open: one refused (busy)"),
    );
    let _ = conn.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = write_frame(
        &mut &conn,
        &error(
            ErrorKind::Busy,
            format!("{MAX_CONNECTIONS} connections open"),
        ),
    );
}

/// Serves one connection's requests, one at a time.
fn connection(d: &Daemon, conn: UnixStream) {
    loop {
        let mut reader = TimedReader {
            stream: &conn,
            idle_until: Instant::now() + IDLE_TIMEOUT,
            whole_by: None,
        };
        let request: Request = match read_frame(&mut reader) {
            Ok(r) => r,
            Err(FrameError::Closed) => return,
            Err(FrameError::TooLarge(n)) => {
                d.log.log(
                    Level::Warning,
                    &format!(
                        "refused a request of {n} bytes (over {MAX_FRAME}); connection closed"
                    ),
                );
                reply(
                    &conn,
                    &error(
                        ErrorKind::BadRequest,
                        format!("a frame of {n} bytes is over the {MAX_FRAME}-byte limit"),
                    ),
                );
                return;
            }
            Err(FrameError::Malformed(why)) => {
                // serde's message names the field, never a value's text.
                d.log.log(
                    Level::Warning,
                    "refused a malformed request; connection closed",
                );
                reply(
                    &conn,
                    &error(ErrorKind::BadRequest, format!("malformed request: {why}")),
                );
                return;
            }
            Err(FrameError::Io(e)) => {
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
                    if reader.whole_by.is_some() {
                        d.log.log(
                            Level::Warning,
                            &format!(
                                "a request was not complete within {} s; connection closed",
                                REQUEST_TIMEOUT.as_secs()
                            ),
                        );
                    }
                } else {
                    d.log.log(Level::Debug, &format!("connection ended: {e}"));
                }
                return;
            }
        };
        if let Request::Login { version, .. } = &request {
            if *version != VERSION {
                reply(
                    &conn,
                    &error(
                        ErrorKind::Version,
                        format!("protocol version {version}; this daemon speaks {VERSION}"),
                    ),
                );
                return;
            }
            // The PAM process's pid, for the login's log lines.
            let pid = peer_cred(conn.as_fd())
                .ok()
                .and_then(|(_, pid)| u32::try_from(pid).ok())
                .unwrap_or(0);
            crate::host::login(d, &conn, pid, request);
            return;
        }
        let response = d.handle(request);
        if !reply(&conn, &response) {
            return;
        }
    }
}

fn reply(conn: &UnixStream, response: &Response) -> bool {
    conn.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok()
        && write_frame(&mut &*conn, response).is_ok()
}

/// Reads with two deadlines: the first byte of a request within
/// [`IDLE_TIMEOUT`], the whole request within [`REQUEST_TIMEOUT`] of it,
/// however slowly the bytes come.
struct TimedReader<'a> {
    stream: &'a UnixStream,
    idle_until: Instant,
    whole_by: Option<Instant>,
}

impl Read for TimedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = self.whole_by.unwrap_or(self.idle_until);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let n = (&mut &*self.stream).read(buf)?;
        if n > 0 && self.whole_by.is_none() {
            self.whole_by = Some(Instant::now() + REQUEST_TIMEOUT);
        }
        Ok(n)
    }
}
