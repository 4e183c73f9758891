//! What the CLI asks the system: who runs it, which accounts exist.

use std::ffi::CString;

/// Is the effective uid root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Does the account `name` exist (passwd via NSS, as `getent passwd`)?
pub fn user_exists(name: &str) -> Result<bool, String> {
    let c_name = CString::new(name).map_err(|_| "a user name cannot contain NUL".to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain old data; an all-zero value is valid and
        // getpwnam_r overwrites it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is a
        // NUL-terminated string, `buf` is writable for `buf.len()` bytes,
        // `pwd` and `result` are live locals. The strings getpwnam_r leaves
        // in `pwd` point into `buf` and are not used after it is dropped.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up user {name:?}: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        return Ok(!result.is_null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_a_made_up_name_does_not() {
        assert_eq!(user_exists("root"), Ok(true));
        assert_eq!(user_exists("no-such-user-pgw-4242"), Ok(false));
        assert!(user_exists("a\0b").is_err());
    }
}
