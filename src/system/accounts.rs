//! Accounts and groups through NSS (`getpwnam_r`, `getgrnam_r`,
//! `getgrouplist`), as `getent` sees them: the module's group policy and the
//! CLI's "does this user exist" share these.

use std::ffi::CString;

/// Largest buffer offered to the `*_r` lookups.
const MAX_NSS_BUFFER: usize = 1 << 20;

fn c_name(name: &str, what: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("{what} name contains a NUL byte"))
}

/// Runs one reentrant lookup, doubling its buffer on ERANGE. `call` gets the
/// buffer and returns the lookup's return code; errors name `what`.
fn with_buffer(
    what: &str,
    mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int,
) -> Result<(), String> {
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        let rc = call(&mut buf);
        if rc == libc::ERANGE && buf.len() < MAX_NSS_BUFFER {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up {what}: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        return Ok(());
    }
}

/// The primary gid of user `name`; `None` when there is no such user.
pub fn user_gid(name: &str) -> Result<Option<u32>, String> {
    let cname = c_name(name, "user")?;
    let mut gid = None;
    with_buffer(&format!("user {name:?}"), |buf| {
        // SAFETY: passwd is plain old data; all-zero is a valid value and
        // getpwnam_r overwrites it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is a
        // NUL-terminated CString, pwd and result are live locals, and buf is
        // valid for buf.len() bytes. Only pw_gid (no pointer into buf) is
        // kept.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        gid = (rc == 0 && !result.is_null()).then_some(pwd.pw_gid);
        rc
    })?;
    Ok(gid)
}

/// The account's own name (`pw_name`) for the name a login gave, as NSS
/// resolves it: `Alice` may be `alice` where the account database matches
/// names case-insensitively (SSSD, winbind). `None`: no such account. Users
/// file, state file and group checks all use this name, so one account has
/// one entry, one state file and one set of limits however it is spelled.
pub fn canonical_user(name: &str) -> Result<Option<String>, String> {
    let cname = c_name(name, "user")?;
    let mut canonical = None;
    with_buffer("the login's user", |buf| {
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
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            // SAFETY: on success pw_name points to a NUL-terminated string
            // inside buf, which outlives this copy.
            let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
            canonical = Some(name.to_string_lossy().into_owned());
        }
        rc
    })?;
    Ok(canonical.filter(|n| !n.is_empty()))
}

/// Is the process's real uid root? Under su and sudo run by a user it is
/// not: that caller may signal the process and chose its resource limits.
pub fn real_uid_is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Does the account `name` exist?
pub fn user_exists(name: &str) -> Result<bool, String> {
    user_gid(name).map(|g| g.is_some())
}

/// The gid of group `name`; `None` when there is no such group.
pub fn group_gid(name: &str) -> Result<Option<u32>, String> {
    let cname = c_name(name, "group")?;
    let mut gid = None;
    with_buffer(&format!("group {name:?}"), |buf| {
        // SAFETY: group is plain old data; all-zero is valid and is
        // overwritten.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in user_gid; only gr_gid is kept.
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
    })?;
    Ok(gid)
}

/// Every gid user `name` belongs to (primary included); `None` when there
/// is no such user.
pub fn user_groups(name: &str) -> Result<Option<Vec<u32>>, String> {
    let Some(primary) = user_gid(name)? else {
        return Ok(None);
    };
    let cname = c_name(name, "user")?;
    let mut capacity: libc::c_int = 64;
    loop {
        let mut gids: Vec<libc::gid_t> = vec![0; capacity as usize];
        let mut count = capacity;
        // SAFETY: gids is valid for `count` entries; getgrouplist writes at
        // most that many and sets count to the number it needs.
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
        if next > 65_536 {
            return Err(format!("user {name:?} is in too many groups to list"));
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
        assert!(canonical_user("a\0b").is_err());
        assert!(user_exists("a\0b").is_err());
        assert_eq!(group_gid("root"), Ok(Some(0)));
        assert_eq!(group_gid("no-such-group-pgw-4242"), Ok(None));
        let groups = user_groups("root").expect("lookup").expect("root exists");
        assert!(groups.contains(&0), "{groups:?}");
        assert_eq!(user_groups("no-such-user-pgw-4242"), Ok(None));
    }
}
