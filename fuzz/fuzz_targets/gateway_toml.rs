//! gateway.toml: any text either parses to a config whose values are in
//! their documented ranges, or fails with an error naming the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pam_gateway_core::config::{Config, check_template};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/pam_gateway/gateway.toml");
    match Config::parse(path, text) {
        Ok(c) => {
            assert!((6..=10).contains(&c.code.digits));
            assert!((1..=10).contains(&c.code.attempts));
            assert!(check_template(&c.template).is_ok());
            assert!(c.state_dir.is_absolute() && c.users_file.is_absolute());
            assert!(c.limits.codes_per_window >= 1 && c.limits.max_lockout >= c.limits.lockout);
        }
        Err(e) => {
            assert!(e.to_string().starts_with("/etc/pam_gateway/gateway.toml"));
        }
    }
});
