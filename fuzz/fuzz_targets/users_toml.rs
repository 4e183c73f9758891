//! users.toml: any text either parses to entries that each name a way in,
//! or fails with an error naming the file; a secret on a bad line is never
//! quoted back.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pam_gateway_core::users::Users;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Users::parse(Path::new("/etc/pam_gateway/users.toml"), text) {
        Ok(users) => {
            for entry in users.users.values() {
                assert!(!entry.is_empty() || entry.totp_secret.is_some());
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("/etc/pam_gateway/users.toml"));
            if e.key.as_deref().is_some_and(|k| k.ends_with("totp_secret")) {
                // The value written after `totp_secret =` must not be echoed.
                for line in text.lines().filter(|l| l.trim_start().starts_with("totp_secret")) {
                    if let Some((_, value)) = line.split_once('=') {
                        let value = value.trim().trim_matches('"');
                        if value.len() >= 8 {
                            assert!(!shown.contains(value), "secret echoed: {shown}");
                        }
                    }
                }
            }
        }
    }
});
