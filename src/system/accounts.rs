//! Accounts and groups through NSS (`getpwnam_r`, `getgrnam_r`,
//! `getgrgid_r`, `getgrouplist`), as `getent` sees them: the module's group
//! policy and the CLI's "does this user exist" share these.

use std::ffi::{CStr, CString};
use std::fmt;

/// Largest buffer offered to the `*_r` lookups.
const MAX_NSS_BUFFER: usize = 1 << 20;

/// Most groups [`user_groups`] lists.
const MAX_GROUPS: libc::c_int = 65_536;

/// What a lookup was about, as its errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The user of that name.
    User(String),
    /// The name a login gave (shown elsewhere, already cleaned).
    LoginUser,
    /// The group of that name.
    Group(String),
    /// The group with that gid.
    Gid(u32),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(name) => write!(f, "user {name:?}"),
            Subject::LoginUser => write!(f, "the login's user"),
            Subject::Group(name) => write!(f, "group {name:?}"),
            Subject::Gid(gid) => write!(f, "group {gid}"),
        }
    }
}

/// A lookup that could not be answered. "No such user or group" is not an
/// error: the lookups return `None` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name holds a NUL byte, which no C string can carry.
    NulInUserName,
    /// As above, for a group name.
    NulInGroupName,
    /// NSS failed (its backend is unreachable, out of memory, ...): `errno`
    /// is what the lookup returned.
    Failed { subject: Subject, errno: i32 },
    /// The user is in more groups than [`user_groups`] lists.
    TooManyGroups(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NulInUserName => write!(f, "user name contains a NUL byte"),
            LookupError::NulInGroupName => write!(f, "group name contains a NUL byte"),
            LookupError::Failed { subject, errno } => write!(
                f,
                "cannot look up {subject}: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            LookupError::TooManyGroups(name) => {
                write!(f, "user {name:?} is in too many groups to list")
            }
        }
    }
}

impl std::error::Error for LookupError {}

fn user_c_name(name: &str) -> Result<CString, LookupError> {
    CString::new(name).map_err(|_| LookupError::NulInUserName)
}

/// Runs one reentrant lookup, doubling its buffer on ERANGE. `call` gets the
/// buffer and returns the lookup's return code; errors name `subject`.
fn with_buffer(
    subject: impl FnOnce() -> Subject,
    mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int,
) -> Result<(), LookupError> {
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        let rc = call(&mut buf);
        if rc == libc::ERANGE && buf.len() < MAX_NSS_BUFFER {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(LookupError::Failed {
                subject: subject(),
                errno: rc,
            });
        }
        return Ok(());
    }
}

/// The passwd entry of `name` as (`pw_name`, `pw_gid`); `None` when there
/// is no such user. `subject` names the lookup in an error.
fn passwd_entry(
    name: &str,
    subject: impl Fn() -> Subject,
) -> Result<Option<(String, u32)>, LookupError> {
    let cname = user_c_name(name)?;
    let mut entry = None;
    with_buffer(subject, |buf| {
        // SAFETY: passwd is plain old data; all-zero is a valid value and
        // getpwnam_r overwrites it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is a
        // NUL-terminated CString, pwd and result are live locals, and buf is
        // valid for buf.len() bytes.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        entry = None;
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            // SAFETY: on success pw_name points to a NUL-terminated string
            // inside buf, which outlives this copy.
            let own = unsafe { CStr::from_ptr(pwd.pw_name) };
            entry = Some((own.to_string_lossy().into_owned(), pwd.pw_gid));
        }
        rc
    })?;
    Ok(entry)
}

/// The primary gid of user `name`; `None` when there is no such user.
pub fn user_gid(name: &str) -> Result<Option<u32>, LookupError> {
    Ok(passwd_entry(name, || Subject::User(name.to_string()))?.map(|(_, gid)| gid))
}

/// The account's own name (`pw_name`) for the name a login gave, as NSS
/// resolves it: `Alice` may be `alice` where the account database matches
/// names case-insensitively (SSSD, winbind). `None`: no such account. Users
/// file, state file and group checks all use this name, so one account has
/// one entry, one state file and one set of limits however it is spelled.
pub fn canonical_user(name: &str) -> Result<Option<String>, LookupError> {
    Ok(passwd_entry(name, || Subject::LoginUser)?
        .map(|(own, _)| own)
        .filter(|n| !n.is_empty()))
}

/// Does the account `name` exist?
pub fn user_exists(name: &str) -> Result<bool, LookupError> {
    user_gid(name).map(|g| g.is_some())
}

/// The gid of group `name`; `None` when there is no such group.
pub fn group_gid(name: &str) -> Result<Option<u32>, LookupError> {
    let cname = CString::new(name).map_err(|_| LookupError::NulInGroupName)?;
    let mut gid = None;
    with_buffer(
        || Subject::Group(name.to_string()),
        |buf| {
            // SAFETY: group is plain old data; all-zero is valid and is
            // overwritten.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: as in user_gid (getgrnam_r has the same contract);
            // only gr_gid is kept.
            let rc = unsafe {
                libc::getgrnam_r(
                    cname.as_ptr(),
                    &mut grp,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            };
            gid = (rc == 0 && !result.is_null()).then_some(grp.gr_gid);
            rc
        },
    )?;
    Ok(gid)
}

/// The name of the group with `gid`; `None` when there is no such group.
pub fn group_name(gid: u32) -> Result<Option<String>, LookupError> {
    let mut name = None;
    with_buffer(
        || Subject::Gid(gid),
        |buf| {
            // SAFETY: group is plain old data; all-zero is valid and is
            // overwritten.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: grp and result are live locals and buf is valid for
            // buf.len() bytes.
            let rc = unsafe {
                libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result)
            };
            if rc == 0 && !result.is_null() && !grp.gr_name.is_null() {
                // SAFETY: on success gr_name points to a NUL-terminated
                // string inside buf, which outlives this copy.
                let text = unsafe { CStr::from_ptr(grp.gr_name) };
                name = Some(text.to_string_lossy().into_owned());
            }
            rc
        },
    )?;
    Ok(name)
}

/// Every gid user `name` belongs to (primary included); `None` when there
/// is no such user.
pub fn user_groups(name: &str) -> Result<Option<Vec<u32>>, LookupError> {
    let Some(primary) = user_gid(name)? else {
        return Ok(None);
    };
    let cname = user_c_name(name)?;
    let mut capacity: libc::c_int = 64;
    loop {
        let mut gids: Vec<libc::gid_t> = vec![0; capacity as usize];
        let mut count = capacity;
        // SAFETY: the name is a NUL-terminated CString and gids is valid for
        // `count` entries; getgrouplist writes at most that many and sets
        // count to the number it needs.
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), primary, gids.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            gids.truncate(count.max(0) as usize);
            return Ok(Some(gids));
        }
        let next = if count > capacity {
            count
        } else {
            capacity * 2
        };
        if next > MAX_GROUPS {
            return Err(LookupError::TooManyGroups(name.to_string()));
        }
        capacity = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_made_up_names() {
        assert_eq!(user_gid("root"), Ok(Some(0)));
        assert_eq!(user_exists("root"), Ok(true));
        assert_eq!(user_exists("no-such-user-pgw-4242"), Ok(false));
        assert_eq!(canonical_user("root"), Ok(Some("root".to_string())));
        assert_eq!(canonical_user("no-such-user-pgw-4242"), Ok(None));
        assert_eq!(canonical_user("a\0b"), Err(LookupError::NulInUserName));
        assert_eq!(user_exists("a\0b"), Err(LookupError::NulInUserName));
        assert_eq!(group_gid("root"), Ok(Some(0)));
        assert_eq!(group_gid("no-such-group-pgw-4242"), Ok(None));
        assert_eq!(group_gid("a\0b"), Err(LookupError::NulInGroupName));
        assert_eq!(group_name(0), Ok(Some("root".to_string())));
        let groups = user_groups("root").expect("lookup").expect("root exists");
        assert!(groups.contains(&0), "{groups:?}");
        assert_eq!(user_groups("no-such-user-pgw-4242"), Ok(None));
    }

    #[test]
    fn errors_say_what_was_looked_up() {
        let failed = |subject| LookupError::Failed {
            subject,
            errno: libc::EIO,
        };
        assert_eq!(
            failed(Subject::User("alice".into())).to_string(),
            "cannot look up user \"alice\": Input/output error (os error 5)"
        );
        assert_eq!(
            failed(Subject::LoginUser).to_string(),
            "cannot look up the login's user: Input/output error (os error 5)"
        );
        assert_eq!(
            failed(Subject::Group("wheel".into())).to_string(),
            "cannot look up group \"wheel\": Input/output error (os error 5)"
        );
        assert_eq!(
            LookupError::NulInUserName.to_string(),
            "user name contains a NUL byte"
        );
        assert_eq!(
            LookupError::TooManyGroups("bob".into()).to_string(),
            "user \"bob\" is in too many groups to list"
        );
    }
}
