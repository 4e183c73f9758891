//! Files and descriptors beyond what std offers: open flags, `flock`,
//! in-memory files, non-blocking descriptors, `poll`.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::time::Duration;

/// Open flags for `OpenOptionsExt::custom_flags`. `O_NOFOLLOW`: refuse a
/// symbolic link as the last component (see [`is_symlink_refused`]);
/// `O_CLOEXEC`: no program this process runs inherits the descriptor;
/// `O_NOCTTY`: a terminal opened never becomes the controlling one;
/// `O_NONBLOCK`: a FIFO put in a file's place cannot hang `open`.
pub use libc::{O_CLOEXEC, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK};

/// Did `open` fail because the last component is a symbolic link and
/// [`O_NOFOLLOW`] was given (ELOOP)?
pub fn is_symlink_refused(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Takes an exclusive `flock` on `file`, waiting as long as another open
/// file description holds one. It is released when `file` is closed.
pub fn lock_exclusive(file: &File) -> std::io::Result<()> {
    flock(file, libc::LOCK_EX).map(|_| ())
}

/// Like [`lock_exclusive`] without waiting: `Ok(false)` when another open
/// file description holds the lock.
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
}

/// `flock(op)`, again when a signal interrupts it; `Ok(false)` when a
/// non-blocking `op` finds the lock taken.
fn flock(file: &File, op: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock only acts on the descriptor, which is open for the
        // lifetime of `file`; it touches no memory of ours.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// A new anonymous file in memory (`memfd_create`), close-on-exec, empty;
/// `name` shows in /proc/PID/fd. Nothing else can open it.
pub fn memory_file(name: &CStr) -> std::io::Result<File> {
    // SAFETY: the name is a NUL-terminated C string; memfd_create returns a
    // new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Makes reads from (and writes to) `fd` return `WouldBlock` instead of
/// waiting (`O_NONBLOCK` on its open file description).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's
    // flags; the descriptor is open while `fd` borrows it.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: F_SETFL takes an int of flags and touches no memory of ours;
    // the descriptor is open while `fd` borrows it.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until one of `fds` is readable (or at its end, or failed), at most
/// `timeout` (whole milliseconds, no more than `i32::MAX`); returns how many
/// are ready, 0 after the timeout.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> std::io::Result<usize> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `polled` is a valid array of polled.len() pollfd structures,
    // which poll reads and whose revents it writes; the descriptors are
    // open while `fds` borrows them.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn locks_exclude_each_other_until_closed() {
        let dir = TestDir::new("fs-lock");
        let path = dir.join("lock");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .expect("open")
        };
        let (first, second) = (open(), open());
        lock_exclusive(&first).expect("lock");
        assert!(!try_lock_exclusive(&second).expect("try"));
        drop(first);
        assert!(try_lock_exclusive(&second).expect("try"));
    }

    #[test]
    fn symlinks_are_refused_with_nofollow() {
        let dir = TestDir::new("fs-link");
        let target = dir.join("target");
        std::fs::write(&target, b"x").expect("write");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW | O_CLOEXEC)
            .open(&link)
            .expect_err("a symlink");
        assert!(is_symlink_refused(&err), "{err}");
        assert!(!is_symlink_refused(&std::io::Error::from(
            std::io::ErrorKind::NotFound
        )));
    }

    #[test]
    fn memory_files_and_nonblocking_pipes() {
        let mut file = memory_file(c"pgw-test").expect("memfd");
        file.write_all(b"hello").expect("write");
        file.rewind().expect("rewind");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read");
        assert_eq!(text, "hello");

        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sleep");
        let mut out = child.stdout.take().expect("stdout");
        set_nonblocking(out.as_fd()).expect("nonblocking");
        let err = out.read(&mut [0u8; 8]).expect_err("nothing yet");
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        let ready = poll_readable(&[out.as_fd()], Duration::from_millis(10)).expect("poll");
        assert_eq!(ready, 0);
        let _ = child.kill();
        let _ = child.wait();
        // The writer is gone: the pipe is at its end, which poll reports.
        let ready = poll_readable(&[out.as_fd()], Duration::from_millis(1000)).expect("poll");
        assert_eq!(ready, 1);
    }
}

/// The uid of the process at the other end of a connected Unix socket, as
/// the kernel recorded it when the connection was made (SO_PEERCRED): the
/// peer's effective uid at `connect` (or `listen`) time, which the peer
/// cannot forge.
pub fn peer_uid(socket: BorrowedFd<'_>) -> std::io::Result<u32> {
    peer_cred(socket).map(|(uid, _)| uid)
}

/// [`peer_uid`] and the peer's pid (as of `connect`), from SO_PEERCRED.
pub fn peer_cred(socket: BorrowedFd<'_>) -> std::io::Result<(u32, i32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `socket` is an open descriptor for the borrow's lifetime;
    // `cred` is a valid, writable ucred and `len` says its size, which is
    // what SO_PEERCRED writes (at most `len` bytes).
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short answer",
        ));
    }
    Ok((cred.uid, cred.pid))
}

#[cfg(test)]
mod peer_tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn peer_uid_is_this_process_uid_for_a_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let me = crate::system::effective_uid();
        assert_eq!(peer_uid(a.as_fd()).unwrap(), me);
        assert_eq!(peer_uid(b.as_fd()).unwrap(), me);
    }

    #[test]
    fn peer_uid_of_a_non_socket_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(peer_uid(f.as_fd()).is_err());
    }
}
