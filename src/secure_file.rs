//! Reading and writing root-owned files that decide who gets in.
//!
//! One place for the checks pam-u2f makes on its config: the file is opened
//! with `O_NOFOLLOW`, the *opened* descriptor is `fstat`ed (no race between
//! check and read), it must be a regular file owned by the expected user with
//! no group/other write bit, at most [`MAX_FILE_SIZE`] bytes, and a file that
//! holds a secret must not be readable by group or others either. Its
//! directory must be owned by the same user and not writable by group/others.
//!
//! Writes go to a temporary file in the same directory, are fsynced, then
//! renamed over the target under an `flock` on a lock file, so a reader sees
//! either the old or the new file and never a half-written one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::system;
use crate::system::fs::{O_CLOEXEC, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK};

/// Largest file we agree to read: config and users files are small.
pub const MAX_FILE_SIZE: u64 = 64 * 1024;

/// What the file holds, which decides how private it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// Readable by others is fine (users.toml): only writing is restricted.
    Public,
    /// Holds a secret (gateway.toml holds the bot token): owner-only read.
    Secret,
}

/// Who must own the file and its directory. Root in production; tests that
/// run unprivileged use their own uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner(pub u32);

impl Owner {
    pub const ROOT: Owner = Owner(0);

    /// The effective uid of this process.
    pub fn current() -> Owner {
        Owner(system::effective_uid())
    }
}

/// Which check a file failed, said precisely enough to fix it.
#[derive(Debug)]
pub enum FileError {
    NotAbsolute(PathBuf),
    NotFound(PathBuf),
    Symlink(PathBuf),
    Open(PathBuf, std::io::Error),
    NotRegular(PathBuf),
    WrongOwner { path: PathBuf, uid: u32, want: u32 },
    GroupOrOtherWritable { path: PathBuf, mode: u32 },
    GroupOrOtherReadable { path: PathBuf, mode: u32 },
    TooLarge { path: PathBuf, size: u64 },
    NotUtf8(PathBuf),
    DirWrongOwner { dir: PathBuf, uid: u32, want: u32 },
    DirGroupOrOtherWritable { dir: PathBuf, mode: u32 },
    DirUnusable(PathBuf, std::io::Error),
    Write(PathBuf, std::io::Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FileError::*;
        match self {
            NotAbsolute(p) => write!(f, "{}: path must be absolute", p.display()),
            NotFound(p) => write!(f, "{}: no such file", p.display()),
            Symlink(p) => write!(
                f,
                "{}: is a symbolic link; refusing to follow it (point the config at the real file)",
                p.display()
            ),
            Open(p, e) => write!(f, "{}: cannot open: {e}", p.display()),
            NotRegular(p) => write!(f, "{}: not a regular file", p.display()),
            WrongOwner { path, uid, want } => write!(
                f,
                "{}: owned by uid {uid}, must be owned by uid {want} (chown {want} {})",
                path.display(),
                path.display()
            ),
            GroupOrOtherWritable { path, mode } => write!(
                f,
                "{}: mode {:04o} is writable by group or others (chmod go-w {})",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            GroupOrOtherReadable { path, mode } => write!(
                f,
                "{}: mode {:04o} lets group or others read a file holding secrets (chmod 600 {})",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            TooLarge { path, size } => write!(
                f,
                "{}: {size} bytes, larger than the {MAX_FILE_SIZE}-byte limit",
                path.display()
            ),
            NotUtf8(p) => write!(f, "{}: not valid UTF-8", p.display()),
            DirWrongOwner { dir, uid, want } => write!(
                f,
                "{}: directory owned by uid {uid}, must be owned by uid {want}",
                dir.display()
            ),
            DirGroupOrOtherWritable { dir, mode } => write!(
                f,
                "{}: directory mode {:04o} is writable by group or others (chmod go-w {})",
                dir.display(),
                mode & 0o7777,
                dir.display()
            ),
            DirUnusable(d, e) => write!(f, "{}: directory cannot be checked: {e}", d.display()),
            Write(p, e) => write!(f, "{}: cannot write: {e}", p.display()),
        }
    }
}

impl std::error::Error for FileError {}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}

/// Checks the directory that holds `path`: owned by `owner`, not writable
/// by group or others (a writable directory lets anyone swap the file).
pub fn check_dir(path: &Path, owner: Owner) -> Result<(), FileError> {
    let dir = parent_of(path);
    let meta = std::fs::metadata(&dir).map_err(|e| FileError::DirUnusable(dir.clone(), e))?;
    if meta.uid() != owner.0 {
        return Err(FileError::DirWrongOwner {
            dir,
            uid: meta.uid(),
            want: owner.0,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(FileError::DirGroupOrOtherWritable {
            dir,
            mode: meta.mode(),
        });
    }
    Ok(())
}

/// Opens `path` without following a symlink and checks the open descriptor;
/// returns it with the metadata those checks read.
fn open_checked(
    path: &Path,
    secrecy: Secrecy,
    owner: Owner,
) -> Result<(File, std::fs::Metadata), FileError> {
    if !path.is_absolute() {
        return Err(FileError::NotAbsolute(path.to_path_buf()));
    }
    check_dir(path, owner)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if system::fs::is_symlink_refused(&e) {
                FileError::Symlink(path.to_path_buf())
            } else if e.kind() == std::io::ErrorKind::NotFound {
                FileError::NotFound(path.to_path_buf())
            } else {
                FileError::Open(path.to_path_buf(), e)
            }
        })?;
    // fstat of the descriptor we will read from: no window for a swap.
    let meta = file
        .metadata()
        .map_err(|e| FileError::Open(path.to_path_buf(), e))?;
    let mode = check_owned_file(path, &meta, owner)?;
    if secrecy == Secrecy::Secret && mode & 0o044 != 0 {
        return Err(FileError::GroupOrOtherReadable {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    Ok((file, meta))
}

/// Checks code before it is loaded (the direct library): an absolute path
/// to a regular file, not a symlink, owned by `owner` and not writable by
/// group or others, in a directory that passes [`check_dir`].
pub fn check_library(path: &Path, owner: Owner) -> Result<(), FileError> {
    if !path.is_absolute() {
        return Err(FileError::NotAbsolute(path.to_path_buf()));
    }
    check_dir(path, owner)?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileError::NotFound(path.to_path_buf())
        } else {
            FileError::Open(path.to_path_buf(), e)
        }
    })?;
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink(path.to_path_buf()));
    }
    check_owned_file(path, &meta, owner).map(|_| ())
}

/// `meta` (of `path`) is a regular file owned by `owner` and not writable
/// by group or others; returns its mode.
fn check_owned_file(path: &Path, meta: &std::fs::Metadata, owner: Owner) -> Result<u32, FileError> {
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular(path.to_path_buf()));
    }
    if meta.uid() != owner.0 {
        return Err(FileError::WrongOwner {
            path: path.to_path_buf(),
            uid: meta.uid(),
            want: owner.0,
        });
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(FileError::GroupOrOtherWritable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(mode)
}

/// Reads a whole protected file after every check above has passed.
pub fn read_secure(path: &Path, secrecy: Secrecy, owner: Owner) -> Result<String, FileError> {
    read_secure_with_mode(path, secrecy, owner).map(|(text, _)| text)
}

/// [`read_secure`], also returning the mode of the descriptor that was read,
/// for callers that learn from the content whether it holds a secret.
pub fn read_secure_with_mode(
    path: &Path,
    secrecy: Secrecy,
    owner: Owner,
) -> Result<(String, u32), FileError> {
    let (file, meta) = open_checked(path, secrecy, owner)?;
    let mode = meta.permissions().mode();
    // Room for the checked size and one byte more, so that a file read
    // whole takes one read(2) and one that ends there, not a doubling series.
    let mut buf = Vec::with_capacity(meta.len() as usize + 1);
    // The size was checked on the fd, but the file may grow while we read.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::Open(path.to_path_buf(), e))?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
        });
    }
    let text = String::from_utf8(buf).map_err(|_| FileError::NotUtf8(path.to_path_buf()))?;
    Ok((text, mode))
}

/// An exclusive `flock` on `<file>.lock` beside the file, held until drop.
/// Writers of the same file (two `enroll` runs at once) take turns.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock, FileError> {
        match Self::lock(path, true)? {
            Some(lock) => Ok(lock),
            // A blocking flock only returns once it holds the lock.
            None => Err(FileError::Write(
                path.to_path_buf(),
                std::io::Error::other("flock returned without the lock"),
            )),
        }
    }

    /// Like [`acquire`](Self::acquire), waiting at most `wait`. A login must
    /// not hang on a lock another process holds for ever: under su or sudo
    /// the caller can stop that process (SIGSTOP) while it holds the lock.
    /// After `wait` the error says the lock is busy; the caller denies.
    pub fn acquire_within(path: &Path, wait: std::time::Duration) -> Result<FileLock, FileError> {
        let deadline = std::time::Instant::now() + wait;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            if let Some(lock) = Self::lock(path, false)? {
                return Ok(lock);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(FileError::Write(
                    path.to_path_buf(),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "its lock was held by another process for more than {} s",
                            wait.as_secs()
                        ),
                    ),
                ));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(std::time::Duration::from_millis(20));
        }
    }

    /// Like [`acquire`](Self::acquire) without waiting: `None` when another
    /// process holds the lock.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, FileError> {
        Self::lock(path, false)
    }

    fn lock(path: &Path, wait: bool) -> Result<Option<FileLock>, FileError> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW | O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| FileError::Write(lock_path.clone(), e))?;
        let locked = if wait {
            system::fs::lock_exclusive(&file).map(|()| true)
        } else {
            system::fs::try_lock_exclusive(&file)
        };
        match locked {
            Ok(true) => Ok(Some(FileLock { _file: file })),
            Ok(false) => Ok(None),
            Err(e) => Err(FileError::Write(lock_path, e)),
        }
    }
}

/// The prefix of the temp files [`write_atomic`] creates for `path`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    format!(".{name}.tmp-")
}

/// Removes temp files that a writer killed between creating and renaming
/// them left beside `path`. They never replace the real file (only a
/// completed rename does), but they should not pile up. Call it only while
/// holding `path`'s [`FileLock`]: every writer works under it, so no temp
/// file seen then belongs to a live writer. Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> Result<usize, FileError> {
    let dir = parent_of(path);
    let prefix = temp_prefix(path);
    let entries = std::fs::read_dir(&dir).map_err(|e| FileError::DirUnusable(dir.clone(), e))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && std::fs::remove_file(dir.join(name)).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Read-modify-write of a protected file, the one way the CLI changes
/// `gateway.toml` and `users.toml`: checks the directory, takes the file's
/// [`FileLock`], clears stale temp files, reads the current text with the
/// same checks as [`read_secure`] (`None` when the file does not exist yet),
/// and writes what `edit` returns with [`write_atomic`]. `edit` returning
/// `Ok(None)` leaves the file as it is.
///
/// A new file gets `new_mode`; an existing one keeps its mode minus the
/// group/other write bits (and the read bits for a secret).
pub fn update_locked<E: From<FileError>>(
    path: &Path,
    secrecy: Secrecy,
    owner: Owner,
    new_mode: u32,
    edit: impl FnOnce(Option<&str>) -> Result<Option<String>, E>,
) -> Result<(), E> {
    update_locked_as(path, secrecy, owner, new_mode, |current| {
        Ok(edit(current)?.map(|text| (text, secrecy)))
    })
}

/// [`update_locked`] for a file whose content decides how private it must
/// be (users.toml turns secret once it holds a `totp_secret`): the file is
/// read with `secrecy`'s checks, and `edit` returns the new text with the
/// secrecy it needs. Written as [`Secrecy::Secret`], an existing file also
/// loses its group/other read bits, in the same atomic replace (the new
/// content is never readable by others, not even for a moment).
pub fn update_locked_as<E: From<FileError>>(
    path: &Path,
    secrecy: Secrecy,
    owner: Owner,
    new_mode: u32,
    edit: impl FnOnce(Option<&str>) -> Result<Option<(String, Secrecy)>, E>,
) -> Result<(), E> {
    if !path.is_absolute() {
        return Err(FileError::NotAbsolute(path.to_path_buf()).into());
    }
    check_dir(path, owner)?;
    let _lock = FileLock::acquire(path)?;
    remove_stale_temps(path)?;
    let current = match read_secure(path, secrecy, owner) {
        Ok(text) => Some(text),
        Err(FileError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let old_mode = match &current {
        None => None,
        Some(_) => Some(
            std::fs::symlink_metadata(path)
                .map_err(|e| FileError::Open(path.to_path_buf(), e))?
                .permissions()
                .mode(),
        ),
    };
    if let Some((text, written_as)) = edit(current.as_deref())? {
        let mode = match old_mode {
            None => new_mode,
            Some(old) => {
                let strip = match (secrecy, written_as) {
                    (Secrecy::Public, Secrecy::Public) => 0o022,
                    _ => 0o077,
                };
                old & 0o7777 & !strip
            }
        };
        write_atomic(path, text.as_bytes(), mode, Durability::Rename)?;
    }
    Ok(())
}

/// How much of an atomic replace has reached the disk when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The new content and the rename (fsync of the file, then of the
    /// directory): what the CLI writes, which an admin expects to find
    /// after a power cut.
    Rename,
    /// The new content only (fsync of the file). After a crash the path
    /// holds the old content or the new, each whole, never a torn or empty
    /// file; only the rename may be lost. For the per-login state files,
    /// where going back to the previous state is harmless and the
    /// directory's fsync would cost every login about 0.1 ms (BENCHMARKS.md).
    Content,
}

/// Replaces `path` with `contents` atomically: temp file in the same
/// directory with `mode`, fsync, rename, and with [`Durability::Rename`]
/// an fsync of the directory. The caller holds a [`FileLock`] when
/// read-modify-write must not interleave.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    durability: Durability,
) -> Result<(), FileError> {
    let dir = parent_of(path);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce)
        .map_err(|e| FileError::Write(path.to_path_buf(), std::io::Error::other(e.to_string())))?;
    let suffix = crate::hex::encode(&nonce);
    let tmp = dir.join(format!("{}{suffix}", temp_prefix(path)));
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(O_NOFOLLOW | O_CLOEXEC)
            .open(&tmp)?;
        // root:root, as the module expects, even when root runs with
        // another group (sudo -g, newgrp).
        if system::effective_uid() == 0 {
            std::os::unix::fs::fchown(&file, Some(0), Some(0))?;
        }
        // The umask may have masked bits off; set exactly what was asked.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if durability == Durability::Rename {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::Write(path.to_path_buf(), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::os::unix::fs::symlink;

    fn private_dir() -> TestDir {
        TestDir::new("sf")
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_library_must_be_a_plain_file_only_its_owner_can_change() {
        let dir = private_dir();
        let lib = dir.join("x_direct.so");
        write(&lib, "code", 0o644);
        let me = Owner::current();
        assert!(check_library(&lib, me).is_ok());
        assert!(matches!(
            check_library(&lib, Owner(me.0 + 1)),
            Err(FileError::WrongOwner { .. }) | Err(FileError::DirWrongOwner { .. })
        ));
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        assert!(matches!(
            check_library(&lib, me),
            Err(FileError::GroupOrOtherWritable { .. })
        ));
        let link = dir.join("y_direct.so");
        symlink(&lib, &link).expect("symlink");
        assert!(matches!(
            check_library(&link, me),
            Err(FileError::Symlink(_))
        ));
        assert!(matches!(
            check_library(&dir.join("none.so"), me),
            Err(FileError::NotFound(_))
        ));
        assert!(matches!(
            check_library(Path::new("x_direct.so"), me),
            Err(FileError::NotAbsolute(_))
        ));
    }

    #[test]
    fn reads_a_private_file() {
        let dir = private_dir();
        let p = dir.join("a.toml");
        write(&p, "x = 1\n", 0o600);
        let text = read_secure(&p, Secrecy::Secret, Owner::current()).expect("read");
        assert_eq!(text, "x = 1\n");
    }

    #[test]
    fn refuses_group_writable() {
        let dir = private_dir();
        let p = dir.join("a.toml");
        write(&p, "", 0o620);
        let err = read_secure(&p, Secrecy::Public, Owner::current()).unwrap_err();
        assert!(
            matches!(err, FileError::GroupOrOtherWritable { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
    }

    #[test]
    fn secret_refuses_world_readable_public_allows_it() {
        let dir = private_dir();
        let p = dir.join("a.toml");
        write(&p, "", 0o644);
        let err = read_secure(&p, Secrecy::Secret, Owner::current()).unwrap_err();
        assert!(
            matches!(err, FileError::GroupOrOtherReadable { .. }),
            "{err}"
        );
        assert!(read_secure(&p, Secrecy::Public, Owner::current()).is_ok());
    }

    #[test]
    fn refuses_symlink() {
        let dir = private_dir();
        let real = dir.join("real.toml");
        write(&real, "", 0o600);
        let link = dir.join("link.toml");
        symlink(&real, &link).expect("symlink");
        let err = read_secure(&link, Secrecy::Public, Owner::current()).unwrap_err();
        assert!(matches!(err, FileError::Symlink(_)), "{err}");
    }

    #[test]
    fn refuses_wrong_owner() {
        let dir = private_dir();
        let p = dir.join("a.toml");
        write(&p, "", 0o600);
        let other = Owner(Owner::current().0.wrapping_add(4242));
        let err = read_secure(&p, Secrecy::Public, other).unwrap_err();
        // The directory is checked first and has the same owner.
        assert!(matches!(err, FileError::DirWrongOwner { .. }), "{err}");
    }

    #[test]
    fn refuses_writable_directory() {
        let dir = private_dir();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let p = dir.join("a.toml");
        write(&p, "", 0o600);
        let err = read_secure(&p, Secrecy::Public, Owner::current()).unwrap_err();
        assert!(
            matches!(err, FileError::DirGroupOrOtherWritable { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_large_file_directory_and_relative_path() {
        let dir = private_dir();
        let p = dir.join("big.toml");
        write(&p, &"#".repeat(MAX_FILE_SIZE as usize + 1), 0o600);
        let err = read_secure(&p, Secrecy::Public, Owner::current()).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { .. }), "{err}");
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let err = read_secure(&sub, Secrecy::Public, Owner::current()).unwrap_err();
        assert!(matches!(err, FileError::NotRegular(_)), "{err}");
        let err =
            read_secure(Path::new("rel.toml"), Secrecy::Public, Owner::current()).unwrap_err();
        assert!(matches!(err, FileError::NotAbsolute(_)), "{err}");
        let err = read_secure(&dir.join("none"), Secrecy::Public, Owner::current()).unwrap_err();
        assert!(matches!(err, FileError::NotFound(_)), "{err}");
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp() {
        let dir = private_dir();
        let p = dir.join("users.toml");
        write(&p, "old", 0o644);
        let _lock = FileLock::acquire(&p).expect("lock");
        write_atomic(&p, b"new\n", 0o600, Durability::Rename).expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "new\n");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn try_acquire_sees_a_held_lock() {
        let dir = private_dir();
        let p = dir.join("users.toml");
        let held = FileLock::acquire(&p).expect("lock");
        // flock locks belong to the open file, so a second open conflicts
        // even within one process.
        assert!(FileLock::try_acquire(&p).expect("try").is_none());
        let t = std::time::Instant::now();
        let err = FileLock::acquire_within(&p, std::time::Duration::from_millis(200))
            .err()
            .expect("busy");
        assert!(t.elapsed() >= std::time::Duration::from_millis(200));
        assert!(err.to_string().contains("held by another process"), "{err}");
        drop(held);
        assert!(FileLock::try_acquire(&p).expect("try").is_some());
    }

    #[test]
    fn update_locked_keeps_mode_clears_stale_temps_and_can_leave_the_file() {
        let dir = private_dir();
        let p = dir.join("users.toml");
        write(&p, "old\n", 0o640);
        write(&dir.join(".users.toml.tmp-dead"), "half", 0o600);
        write(&dir.join(".other.toml.tmp-live"), "x", 0o600);
        let owner = Owner::current();
        update_locked(&p, Secrecy::Public, owner, 0o600, |cur| {
            assert_eq!(cur, Some("old\n"));
            Ok::<_, FileError>(Some("new\n".to_string()))
        })
        .expect("update");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "new\n");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o640, "existing mode kept");
        assert!(
            !dir.join(".users.toml.tmp-dead").exists(),
            "stale temp removed"
        );
        assert!(
            dir.join(".other.toml.tmp-live").exists(),
            "other files' temps kept"
        );
        update_locked(&p, Secrecy::Public, owner, 0o600, |_| {
            Ok::<_, FileError>(None)
        })
        .expect("no-op");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "new\n");
        // A new file gets the given mode; a secret loses group/other bits.
        let n = dir.join("new.toml");
        update_locked(&n, Secrecy::Secret, owner, 0o600, |cur| {
            assert_eq!(cur, None);
            Ok::<_, FileError>(Some("x\n".to_string()))
        })
        .expect("create");
        let mode = std::fs::metadata(&n).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
    }

    #[test]
    fn update_locked_as_secret_drops_read_bits_in_the_same_write() {
        let dir = private_dir();
        let p = dir.join("users.toml");
        write(&p, "public\n", 0o644);
        let owner = Owner::current();
        // Public content keeps the readable mode.
        update_locked_as(&p, Secrecy::Public, owner, 0o600, |_| {
            Ok::<_, FileError>(Some(("still public\n".to_string(), Secrecy::Public)))
        })
        .expect("update");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        // Secret content: the replaced file is owner-only.
        update_locked_as(&p, Secrecy::Public, owner, 0o600, |cur| {
            assert_eq!(cur, Some("still public\n"));
            Ok::<_, FileError>(Some(("secret\n".to_string(), Secrecy::Secret)))
        })
        .expect("update");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "secret\n");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        // Left alone: the mode does not change either.
        write(&p, "public\n", 0o644);
        update_locked_as(&p, Secrecy::Public, owner, 0o600, |_| {
            Ok::<_, FileError>(None)
        })
        .expect("no-op");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
    }

    #[test]
    fn update_locked_refuses_unsafe_files() {
        let dir = private_dir();
        let p = dir.join("users.toml");
        write(&p, "x", 0o666);
        let err = update_locked(&p, Secrecy::Public, Owner::current(), 0o600, |_| {
            Ok::<_, FileError>(Some("y".to_string()))
        })
        .unwrap_err();
        assert!(
            matches!(err, FileError::GroupOrOtherWritable { .. }),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "x");
    }
}
