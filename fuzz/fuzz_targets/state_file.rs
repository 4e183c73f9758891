//! State files: any text either parses to a state that survives a write and
//! re-read unchanged, and on which the limit functions never panic, or is
//! refused as corrupt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_gateway_core::limits::{self, Limits};
use pam_gateway_core::state::UserState;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let now = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let Ok(text) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let Ok(state) = UserState::parse(text) else {
        return;
    };
    let again = UserState::parse(&state.to_text()).expect("a written state reads back");
    assert_eq!(again, state);
    let l = Limits::default();
    let mut s = state.clone();
    let _ = limits::locked_until(&mut s, &l, now);
    let reserved = limits::reserve_send(&mut s, &l, now);
    if reserved.is_ok() {
        limits::release_send(&mut s, now);
    }
    assert!(s.sent.len() <= state.sent.len().max(l.codes_per_window as usize));
    let _ = limits::record_failure(&mut s, &l, now);
    if let Some(until) = s.locked_until {
        assert!(until >= now || until == u64::MAX);
    }
    limits::record_success(&mut s);
    assert_eq!(s.failures, 0);
});
