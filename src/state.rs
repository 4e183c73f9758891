//! Per-user mutable state: the codes sent in the current window, wrong
//! answers and lockouts, the last accepted TOTP step and the hashes of the
//! user's unused backup codes.
//!
//! One small JSON file per user in `state_dir` (root, 0700), never in the
//! root-owned `users.toml`. Every change is a read-modify-write under an
//! exclusive `flock` on `<file>.lock`, saved with an atomic replace, so 50
//! logins of one user at once are counted exactly. A state file that is
//! unsafe (wrong owner or mode, a symlink) or unreadable denies the login and
//! says so; it is never silently reset.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::backup_hash::BackupHash;
use crate::secure_file::{
    Durability, FileError, FileLock, Owner, Secrecy, read_secure, write_atomic,
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/pam_gateway";
/// The format written by this version.
pub const STATE_VERSION: u32 = 1;
/// More send timestamps than any sane `codes_per_window`: a file with more
/// is corrupt, not a busy user.
pub const MAX_SENT_ENTRIES: usize = 1000;
/// Upper bound on stored backup-code hashes.
pub const MAX_BACKUP_CODES: usize = 100;
/// Most remembered sources kept per user (`[remember]`): the oldest is
/// dropped when a new one comes.
pub const MAX_REMEMBERED: usize = 32;
/// Most recent ways in kept per user for the session alert (`[alert]`).
pub const MAX_RECENT_LOGINS: usize = 8;
/// More alert times than any `per_hour` allows: a file with more is corrupt.
pub const MAX_ALERT_TIMES: usize = 1000;
/// Longest remote host, service or factor name stored for `[remember]` and
/// `[alert]`; a longer one is never stored.
pub const MAX_STORED_NAME: usize = 255;
/// Longest a login waits for another login's lock on the same user's state
/// (each holds it for a read-modify-write of a small file): a process that
/// a su caller stopped while holding it must not hang the user's logins.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest encoded user name used as a file name.
const MAX_FILE_STEM: usize = 200;

/// Seconds since the Unix epoch. The persistent limits need wall-clock time
/// (they outlive the process), unlike code expiry, which uses the monotonic
/// [`crate::flow::Clock`].
pub trait WallClock {
    fn unix_now(&self) -> u64;
}

/// The system's wall clock.
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn unix_now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// One user's state, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserState {
    /// Format version; [`STATE_VERSION`].
    pub version: u32,
    /// Unix times at which a code was sent (only those still in the window).
    #[serde(default)]
    pub sent: Vec<u64>,
    /// Wrong answers since the last success or lockout.
    #[serde(default)]
    pub failures: u32,
    /// Lockouts since the last success: each one is longer.
    #[serde(default)]
    pub lockouts: u32,
    /// Unix time until which the user is locked out.
    #[serde(default)]
    pub locked_until: Option<u64>,
    /// The last TOTP time step accepted: a step is never accepted twice.
    #[serde(default)]
    pub totp_last_step: Option<u64>,
    /// Salted hashes of the unused backup codes.
    #[serde(default)]
    pub backup_codes: Vec<BackupHash>,
    /// Backup codes tried during the current lockout (their own limit:
    /// [`crate::limits::LOCKOUT_BACKUP_TRIES`]). Written only when not 0,
    /// so files stay readable by versions without it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lockout_backup_tries: u32,
    /// `[remember]`: sources (remote host + service) whose second factor
    /// succeeded lately; [`crate::remember`] matches and ends them. Written
    /// only when not empty (files stay readable by versions without it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remembered: Vec<RememberedSource>,
    /// `[alert]`: how the last few logins got in, for the session hook
    /// ([`crate::alert`]), which runs in another process than the
    /// authentication under sshd. Written only when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_logins: Vec<LoginRecord>,
    /// `[approve]`: Unix time the user tapped "Not me" under a login
    /// request. The second factor stays locked (as a lockout that never
    /// runs out: [`crate::limits::locked_until`]) until `pam-gateway
    /// unlock`. Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_me: Option<u64>,
    /// `[alert]`: Unix times of the alerts sent in the last hour (the
    /// per-user rate limit). Written only when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts_sent: Vec<u64>,
}

/// A source whose second factor succeeded: logins of the same user from
/// the same remote host through the same service skip the code until
/// `since` + `[remember] duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RememberedSource {
    /// PAM_RHOST as the service gave it (never empty).
    pub rhost: String,
    /// PAM_SERVICE.
    pub service: String,
    /// Unix time of the login that proved the second factor.
    pub since: u64,
    /// The factor it proved (`telegram`, `totp`, `backup-code`, ...).
    pub factor: String,
}

/// How one login got past (or around) the module, for the session alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRecord {
    pub service: String,
    /// PAM_RHOST; `None` when the service gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rhost: Option<String>,
    /// Unix time of the authentication.
    pub time: u64,
    /// The way in ([`crate::alert::WayIn`] as stored).
    pub how: String,
    /// Its detail: the gateway, the exempt network or group, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for UserState {
    /// A fresh state for a user seen for the first time.
    fn default() -> UserState {
        UserState {
            version: STATE_VERSION,
            sent: Vec::new(),
            failures: 0,
            lockouts: 0,
            locked_until: None,
            totp_last_step: None,
            backup_codes: Vec::new(),
            lockout_backup_tries: 0,
            remembered: Vec::new(),
            recent_logins: Vec::new(),
            not_me: None,
            alerts_sent: Vec::new(),
        }
    }
}

impl UserState {
    /// A fresh state for a user seen for the first time.
    pub fn new() -> UserState {
        UserState::default()
    }

    /// Parses and validates a state file's text. The error says what is
    /// wrong, never quotes the content.
    pub fn parse(text: &str) -> Result<UserState, String> {
        let state: UserState = serde_json::from_str(text).map_err(|e| {
            // serde_json's messages name the field and position, not values.
            format!("not a valid state file: {e}")
        })?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "format version {} is not supported (this module writes version {STATE_VERSION})",
                state.version
            ));
        }
        if state.sent.len() > MAX_SENT_ENTRIES {
            return Err(format!(
                "{} send times recorded, more than the {MAX_SENT_ENTRIES} allowed",
                state.sent.len()
            ));
        }
        if state.backup_codes.len() > MAX_BACKUP_CODES {
            return Err(format!(
                "{} backup-code hashes, more than the {MAX_BACKUP_CODES} allowed",
                state.backup_codes.len()
            ));
        }
        if state.remembered.len() > MAX_REMEMBERED {
            return Err(format!(
                "{} remembered sources, more than the {MAX_REMEMBERED} allowed",
                state.remembered.len()
            ));
        }
        if state.recent_logins.len() > MAX_RECENT_LOGINS {
            return Err(format!(
                "{} recent logins recorded, more than the {MAX_RECENT_LOGINS} allowed",
                state.recent_logins.len()
            ));
        }
        if state.alerts_sent.len() > MAX_ALERT_TIMES {
            return Err(format!(
                "{} alert times recorded, more than the {MAX_ALERT_TIMES} allowed",
                state.alerts_sent.len()
            ));
        }
        let names = state
            .remembered
            .iter()
            .flat_map(|r| [&r.rhost, &r.service, &r.factor])
            .chain(state.recent_logins.iter().flat_map(|l| {
                [
                    Some(&l.service),
                    l.rhost.as_ref(),
                    Some(&l.how),
                    l.detail.as_ref(),
                ]
                .into_iter()
                .flatten()
            }));
        for name in names {
            if name.len() > MAX_STORED_NAME * 2 {
                return Err(format!(
                    "a remembered source or recent login holds a name of {} bytes",
                    name.len()
                ));
            }
        }
        Ok(state)
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        // Serializing plain integers, options and strings cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Why a user's state could not be used. Any of these denies the login.
#[derive(Debug)]
pub enum StateError {
    /// `state_dir` is missing and cannot be created, or is unsafe.
    Dir { dir: PathBuf, message: String },
    /// The user's file failed a safety check or could not be read/written.
    File(FileError),
    /// The file is there but its content is not a valid state.
    Corrupt { path: PathBuf, message: String },
    /// The user name cannot be turned into a file name.
    BadUser(String),
    /// The store returned without running the update (a broken
    /// [`StateStore`]): nothing is known about the user's state.
    Skipped,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Dir { dir, message } => {
                write!(f, "state_dir {}: {message}", dir.display())
            }
            StateError::File(e) => write!(f, "state file {e}"),
            StateError::Corrupt { path, message } => write!(
                f,
                "state file {} is corrupt ({message}); it was left as it is: inspect it, \
                 or remove it to reset this user's limits, TOTP replay guard and backup codes",
                path.display()
            ),
            StateError::BadUser(m) => write!(f, "{m}"),
            StateError::Skipped => f.write_str("the state store did not run the update"),
        }
    }
}

impl std::error::Error for StateError {}

/// Where user state lives. Production: [`FileStateStore`]; tests may use
/// [`MemoryStateStore`].
pub trait StateStore {
    /// Runs `f` on `user`'s state while holding that user's lock, and saves
    /// the state if `f` changed it. A user without a file starts from
    /// [`UserState::new`].
    fn update(&self, user: &str, f: &mut dyn FnMut(&mut UserState)) -> Result<(), StateError>;
}

/// [`StateStore::update`] with a result.
pub fn update_with<R>(
    store: &dyn StateStore,
    user: &str,
    f: impl FnOnce(&mut UserState) -> R,
) -> Result<R, StateError> {
    let mut f = Some(f);
    let mut out = None;
    store.update(user, &mut |state| {
        if let Some(f) = f.take() {
            out = Some(f(state));
        }
    })?;
    out.ok_or(StateError::Skipped)
}

/// The file name stem for a user: `[A-Za-z0-9_.-]` kept (a leading dot is
/// escaped), anything else as `%XX`, so distinct names never share a file
/// and no name can climb out of the directory.
pub fn file_stem(user: &str) -> Result<String, StateError> {
    if user.is_empty() {
        return Err(StateError::BadUser(
            "an empty user name has no state file".to_string(),
        ));
    }
    let mut out = String::with_capacity(user.len());
    for (i, b) in user.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_FILE_STEM {
        return Err(StateError::BadUser(format!(
            "user name of {} bytes is too long for a state file name",
            user.len()
        )));
    }
    Ok(out)
}

/// One JSON file per user under a root-only directory.
pub struct FileStateStore {
    dir: PathBuf,
    owner: Owner,
}

impl FileStateStore {
    /// `owner` is root in production; unprivileged tests pass their own uid.
    pub fn new(dir: impl Into<PathBuf>, owner: Owner) -> FileStateStore {
        FileStateStore {
            dir: dir.into(),
            owner,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `user`'s state.
    pub fn path_for(&self, user: &str) -> Result<PathBuf, StateError> {
        Ok(self.dir.join(format!("{}.json", file_stem(user)?)))
    }

    /// Creates the directory (mode 0700) if it is missing; checks that it
    /// is a real directory owned by the owner with no access for group or
    /// others.
    pub fn ensure_dir(&self) -> Result<(), StateError> {
        let dir_err = |message: String| StateError::Dir {
            dir: self.dir.clone(),
            message,
        };
        if !self.dir.is_absolute() {
            return Err(dir_err("must be an absolute path".to_string()));
        }
        let meta = match std::fs::symlink_metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
                    // Another login created it a moment ago: check that one.
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(dir_err(format!(
                            "does not exist and cannot be created ({e}); create it: \
                             install -d -m 700 -o root {}",
                            self.dir.display()
                        )));
                    }
                }
                std::fs::symlink_metadata(&self.dir)
                    .map_err(|e| dir_err(format!("cannot be checked: {e}")))?
            }
            Err(e) => return Err(dir_err(format!("cannot be checked: {e}"))),
        };
        if meta.file_type().is_symlink() {
            return Err(dir_err(
                "is a symbolic link; point state_dir at the real directory".to_string(),
            ));
        }
        if !meta.is_dir() {
            return Err(dir_err("is not a directory".to_string()));
        }
        if meta.uid() != self.owner.0 {
            return Err(dir_err(format!(
                "owned by uid {}, must be owned by uid {} (chown {} {})",
                meta.uid(),
                self.owner.0,
                self.owner.0,
                self.dir.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(dir_err(format!(
                "mode {:04o} lets group or others in (chmod 700 {})",
                meta.mode() & 0o7777,
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Reads `user`'s state without taking the lock (for display).
    pub fn load(&self, user: &str) -> Result<UserState, StateError> {
        self.ensure_dir()?;
        let path = self.path_for(user)?;
        self.read(&path)
    }

    fn read(&self, path: &Path) -> Result<UserState, StateError> {
        match read_secure(path, Secrecy::Secret, self.owner) {
            Ok(text) => UserState::parse(&text).map_err(|message| StateError::Corrupt {
                path: path.to_path_buf(),
                message,
            }),
            Err(FileError::NotFound(_)) => Ok(UserState::new()),
            Err(e) => Err(StateError::File(e)),
        }
    }
}

impl StateStore for FileStateStore {
    fn update(&self, user: &str, f: &mut dyn FnMut(&mut UserState)) -> Result<(), StateError> {
        self.ensure_dir()?;
        let path = self.path_for(user)?;
        let _lock = FileLock::acquire_within(&path, LOCK_WAIT).map_err(StateError::File)?;
        let before = self.read(&path)?;
        let mut state = before.clone();
        f(&mut state);
        if state != before {
            state.version = STATE_VERSION;
            write_atomic(
                &path,
                state.to_text().as_bytes(),
                0o600,
                durability_of(&before, &state),
            )
            .map_err(StateError::File)?;
        }
        Ok(())
    }
}

/// How durable a change must be. A crash may bring back the previous
/// counts of codes sent and wrong answers: harmless, and it saves every
/// login the directory's fsync. A used backup code or TOTP step coming back
/// would let that code be used again, and new backup codes are what the
/// admin just handed out: those changes wait for the rename to be on disk.
fn durability_of(before: &UserState, after: &UserState) -> Durability {
    // A remembered source that was ended (a wrong code, forget, unlock)
    // must not come back either.
    // Nor may a "Not me" lock.
    if before.backup_codes != after.backup_codes
        || before.totp_last_step != after.totp_last_step
        || before.remembered != after.remembered
        || before.not_me != after.not_me
    {
        Durability::Rename
    } else {
        Durability::Content
    }
}

/// State in memory (tests, fuzzing). Can be told to fail like a broken file.
#[derive(Default)]
pub struct MemoryStateStore {
    pub users: Mutex<BTreeMap<String, UserState>>,
    /// When set, every update fails with this message.
    pub broken: Mutex<Option<String>>,
}

impl MemoryStateStore {
    pub fn get(&self, user: &str) -> Option<UserState> {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .cloned()
    }

    pub fn set(&self, user: &str, state: UserState) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_string(), state);
    }
}

impl StateStore for MemoryStateStore {
    fn update(&self, user: &str, f: &mut dyn FnMut(&mut UserState)) -> Result<(), StateError> {
        if let Some(message) = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(StateError::Corrupt {
                path: PathBuf::from(format!("(memory)/{user}.json")),
                message,
            });
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let state = users.entry(user.to_string()).or_default();
        f(state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir() -> TestDir {
        TestDir::new("state")
    }

    fn store(dir: &Path) -> FileStateStore {
        FileStateStore::new(dir.join("state"), Owner::current())
    }

    /// A store that returns without calling the update.
    struct Lazy;

    impl StateStore for Lazy {
        fn update(&self, _: &str, _: &mut dyn FnMut(&mut UserState)) -> Result<(), StateError> {
            Ok(())
        }
    }

    #[test]
    fn an_update_that_never_ran_is_an_error_of_its_own() {
        let e = update_with(&Lazy, "alice", |s| s.failures).unwrap_err();
        assert!(matches!(e, StateError::Skipped), "{e:?}");
        assert_eq!(e.to_string(), "the state store did not run the update");
    }

    #[test]
    fn file_stems_are_safe_and_distinct() {
        assert_eq!(file_stem("alice").expect("stem"), "alice");
        assert_eq!(file_stem("john.doe").expect("stem"), "john.doe");
        assert_eq!(file_stem("..").expect("stem"), "%2E.");
        assert_eq!(file_stem("a/b").expect("stem"), "a%2Fb");
        assert_eq!(file_stem("a%2Fb").expect("stem"), "a%252Fb");
        assert_eq!(file_stem("DOMAIN\\bob").expect("stem"), "DOMAIN%5Cbob");
        assert_eq!(file_stem("é").expect("stem"), "%C3%A9");
        assert!(file_stem("").is_err());
        assert!(file_stem(&"x".repeat(201)).is_err());
        for name in ["/etc/passwd", "../../x", ".", ".hidden"] {
            let stem = file_stem(name).expect("stem");
            assert!(!stem.contains('/') && !stem.starts_with('.'), "{stem}");
        }
    }

    #[test]
    fn creates_dir_0700_and_round_trips() {
        let root = private_dir();
        let s = store(&root);
        update_with(&s, "alice", |st| {
            st.sent.push(100);
            st.failures = 2;
        })
        .expect("update");
        let meta = std::fs::metadata(s.dir()).expect("dir");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        let file = s.path_for("alice").expect("path");
        let fmeta = std::fs::metadata(&file).expect("file");
        assert_eq!(fmeta.permissions().mode() & 0o7777, 0o600);
        let st = s.load("alice").expect("load");
        assert_eq!(st.sent, vec![100]);
        assert_eq!(st.failures, 2);
        assert_eq!(st.version, STATE_VERSION);
        assert_eq!(s.load("bob").expect("load"), UserState::new());
        assert!(
            !s.path_for("bob").expect("path").exists(),
            "read creates no file"
        );
    }

    #[test]
    fn unchanged_state_is_not_rewritten() {
        let root = private_dir();
        let s = store(&root);
        update_with(&s, "alice", |st| st.failures = 1).expect("update");
        let file = s.path_for("alice").expect("path");
        let before = std::fs::metadata(&file).expect("meta").ino();
        update_with(&s, "alice", |_| ()).expect("update");
        assert_eq!(std::fs::metadata(&file).expect("meta").ino(), before);
    }

    #[test]
    fn only_counters_skip_the_directory_fsync() {
        let before = UserState::new();
        let mut counted = before.clone();
        counted.sent.push(1_700_000_000);
        counted.failures = 2;
        counted.lockouts = 1;
        counted.locked_until = Some(1_700_000_900);
        assert_eq!(durability_of(&before, &counted), Durability::Content);
        let mut totp = counted.clone();
        totp.totp_last_step = Some(56_666_666);
        assert_eq!(durability_of(&counted, &totp), Durability::Rename);
        let with_codes = UserState::parse(
            "{\"version\": 1, \"backup_codes\": [\"pbkdf2-sha256$10$00112233445566778899aabbccddeeff$\
             00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"]}",
        )
        .expect("state with a backup code");
        // A backup code used (or handed out) waits for the rename.
        assert_eq!(durability_of(&with_codes, &before), Durability::Rename);
        assert_eq!(durability_of(&before, &with_codes), Durability::Rename);
    }

    #[test]
    fn corrupt_file_denies_and_is_left_alone() {
        let root = private_dir();
        let s = store(&root);
        s.ensure_dir().expect("dir");
        let file = s.path_for("alice").expect("path");
        for bad in [
            "{not json",
            "{\"version\":1,\"failures\":-1}",
            "{\"version\":2}",
            "{\"version\":1,\"surprise\":1}",
            "{\"version\":1,\"backup_codes\":[\"plain-text-code\"]}",
            "",
        ] {
            std::fs::write(&file, bad).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = update_with(&s, "alice", |st| st.failures += 1).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{bad}: {err}");
            let text = err.to_string();
            assert!(
                text.contains("alice.json") && text.contains("remove it"),
                "{text}"
            );
            assert_eq!(std::fs::read_to_string(&file).expect("read"), bad);
        }
    }

    #[test]
    fn unsafe_file_or_dir_denies() {
        let root = private_dir();
        let s = store(&root);
        update_with(&s, "alice", |st| st.failures = 1).expect("update");
        let file = s.path_for("alice").expect("path");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = update_with(&s, "alice", |_| ()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

        std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = update_with(&s, "alice", |_| ()).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o700)).expect("chmod");

        let real = root.join("real.json");
        std::fs::rename(&file, &real).expect("mv");
        std::os::unix::fs::symlink(&real, &file).expect("ln");
        let err = update_with(&s, "alice", |_| ()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let other = FileStateStore::new(s.dir(), Owner(Owner::current().0.wrapping_add(7)));
        let err = update_with(&other, "bob", |_| ()).unwrap_err();
        assert!(matches!(err, StateError::Dir { .. }), "{err}");

        let linked = root.join("linked-state");
        std::os::unix::fs::symlink(s.dir(), &linked).expect("ln");
        let err = update_with(
            &FileStateStore::new(&linked, Owner::current()),
            "bob",
            |_| (),
        )
        .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let root = private_dir();
        let dir = root.join("state");
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let s = FileStateStore::new(dir, Owner::current());
                    for _ in 0..10 {
                        update_with(&s, "alice", |st| st.failures += 1).expect("update");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        let st = FileStateStore::new(dir, Owner::current())
            .load("alice")
            .expect("load");
        assert_eq!(st.failures, 160);
    }

    #[test]
    fn remember_and_alert_fields_are_optional_and_written_only_when_used() {
        // A file from a version without them still parses...
        let old = UserState::parse("{\"version\":1,\"sent\":[5],\"failures\":1}").expect("old");
        assert!(old.remembered.is_empty() && old.recent_logins.is_empty());
        // ...and one that never used them is written as before.
        let text = old.to_text();
        for key in ["remembered", "recent_logins", "alerts_sent"] {
            assert!(!text.contains(key), "{text}");
        }
        let mut used = old.clone();
        used.remembered.push(RememberedSource {
            rhost: "203.0.113.7".into(),
            service: "sshd".into(),
            since: 10,
            factor: "telegram".into(),
        });
        used.alerts_sent.push(11);
        assert_eq!(UserState::parse(&used.to_text()).expect("round trip"), used);
        // Bounded like the other lists; an unknown key inside is corrupt.
        used.remembered = vec![used.remembered[0].clone(); MAX_REMEMBERED + 1];
        assert!(UserState::parse(&used.to_text()).is_err());
        assert!(
            UserState::parse(
                "{\"version\":1,\"remembered\":[{\"rhost\":\"h\",\"service\":\"s\",\
                 \"since\":1,\"factor\":\"f\",\"extra\":1}]}"
            )
            .is_err()
        );
        // Ending a remembered source waits for the rename, like a used code.
        let mut ended = UserState::parse(&old.to_text()).expect("parse");
        ended.remembered = Vec::new();
        let mut had = ended.clone();
        had.remembered.push(RememberedSource {
            rhost: "h".into(),
            service: "sshd".into(),
            since: 1,
            factor: "telegram".into(),
        });
        assert_eq!(durability_of(&had, &ended), Durability::Rename);
    }

    #[test]
    fn memory_store_can_break() {
        let m = MemoryStateStore::default();
        update_with(&m, "a", |s| s.failures = 3).expect("update");
        assert_eq!(m.get("a").map(|s| s.failures), Some(3));
        *m.broken.lock().expect("lock") = Some("disk on fire".into());
        assert!(update_with(&m, "a", |_| ()).is_err());
    }
}
