//! Everything this project asks of the C library, behind safe functions.
//!
//! The only module of the shipped crates with `unsafe` code (the crate root
//! denies it everywhere else; the module and CLI crates forbid it). Every
//! `unsafe` block here says in a `// SAFETY:` comment which contract makes
//! it sound. One file per concern:
//! - this file: who this process is, this machine's name, the umask;
//! - [`accounts`]: users and groups through NSS;
//! - [`dl`]: which file this code was loaded from; loading the direct
//!   library;
//! - [`fs`]: open flags, `flock`, in-memory files, descriptor flags, `poll`,
//!   a Unix socket peer's uid;
//! - [`process`]: the command gateway's new process (its setup between
//!   fork and exec), waiting for it without reaping, killing its group;
//! - [`terminal`]: echo off while the admin types a secret.

pub mod accounts;
pub mod dl;
pub mod fs;
pub mod process;
pub mod terminal;

/// This machine's name, for messages (`alice@host`); `localhost` if unknown.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for buf.len() bytes; gethostname writes at
    // most that many and we stop at the first NUL (or the end).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The effective uid of this process: whose rights it has (root inside
/// sshd, sudo and su).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sets this process's file mode creation mask to `mask` and returns the
/// previous one. The mask is process-wide: `pam-gatewayd` sets it before
/// it starts any thread (a socket is born with `0777 & !mask`).
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::umask((mask & 0o777) as libc::mode_t) as u32 }
}

/// The real uid of this process: under su and sudo run by a user, that
/// user, who may signal the process and chose its resource limits.
pub fn real_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_name() {
        assert!(!hostname().is_empty());
        // A test run by a user has no setuid bit: both ids are the same.
        assert_eq!(effective_uid(), real_uid());
    }
}
