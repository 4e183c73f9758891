//! The CLI's side of `pam-gatewayd`'s socket: `status` asks how the daemon
//! is, and `enroll` reads the bot's messages through it while it runs (a
//! second reader of the bot would get 409).
//!
//! Like the module, it checks what it is about to talk to: the socket must
//! be a socket owned by root with no access for group or others, and the
//! peer it reaches must be root (SO_PEERCRED).

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use pam_gateway_core::approve::wire::{
    DaemonStatus, MAX_WAIT_MS, Request, Response, TextUpdate, VERSION, read_frame, write_frame,
};
use pam_gateway_core::gateway::telegram::Update;
use pam_gateway_core::system::fs::peer_uid;

/// Connect and write within this.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one request on a new connection and reads the answer, waiting up
/// to `answer_within` for it.
pub fn ask(socket: &Path, request: &Request, answer_within: Duration) -> Result<Response, String> {
    let meta =
        std::fs::symlink_metadata(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    if !meta.file_type().is_socket() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not root's private socket (uid {}, mode {:04o})",
            socket.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    match peer_uid(s.as_fd()) {
        Ok(0) => {}
        Ok(uid) => {
            return Err(format!(
                "{} is served by uid {uid}, not root",
                socket.display()
            ));
        }
        Err(e) => return Err(format!("cannot check who serves {}: {e}", socket.display())),
    }
    s.set_write_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_read_timeout(Some(answer_within)))
        .map_err(|e| e.to_string())?;
    write_frame(&mut s, request).map_err(|e| e.to_string())?;
    read_frame(&mut s).map_err(|e| e.to_string())
}

/// The daemon's status, or why there is none.
pub fn status(socket: &Path) -> Result<DaemonStatus, String> {
    match ask(socket, &Request::Status { version: VERSION }, IO_TIMEOUT)? {
        Response::Status { status } => Ok(status),
        Response::Error { kind, detail } => Err(format!("{kind:?}: {detail}")),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Text messages the daemon read with an update id above `after`, waiting
/// up to `wait` for one.
pub fn updates(socket: &Path, after: i64, wait: Duration) -> Result<Vec<Update>, String> {
    let wait_ms = u64::try_from(wait.as_millis())
        .unwrap_or(MAX_WAIT_MS)
        .min(MAX_WAIT_MS);
    let request = Request::Updates {
        version: VERSION,
        after,
        wait_ms,
    };
    match ask(
        socket,
        &request,
        Duration::from_millis(wait_ms) + IO_TIMEOUT,
    )? {
        Response::Updates { updates } => Ok(updates.iter().map(to_update).collect()),
        Response::Error { kind, detail } => Err(format!("{kind:?}: {detail}")),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn to_update(u: &TextUpdate) -> Update {
    Update {
        update_id: u.update_id,
        chat_id: Some(u.chat_id),
        chat_type: Some(u.chat_type.clone()),
        text: Some(u.text.clone()),
        from_id: u.from_id,
        from_username: u.username.clone(),
        from_name: u.first_name.clone(),
        from_last_name: u.last_name.clone(),
    }
}
