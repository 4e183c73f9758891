//! The module ↔ pam-gatewayd socket protocol: any byte stream either reads
//! as frames of requests that survive a write and re-read unchanged, or
//! stops with an error; no input panics, and a length over MAX_FRAME is
//! refused before its body is read (so no input makes a large allocation).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_gateway_core::approve::wire::{
    FrameError, HostMsg, HostReply, MAX_FRAME, Request, Response, read_frame, write_frame,
};

fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let mut input = data;
    for _ in 0..16 {
        match read_frame::<T>(&mut input) {
            Ok(value) => {
                let mut buf = Vec::new();
                write_frame(&mut buf, &value).expect("a frame that was read can be written");
                assert!(buf.len() <= 4 + MAX_FRAME);
                let back: T = read_frame(&mut buf.as_slice()).expect("and read back");
                assert_eq!(back, value);
            }
            Err(FrameError::TooLarge(n)) => {
                assert!(n > MAX_FRAME);
                return;
            }
            Err(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Request>(data);
    round_trip::<Response>(data);
    // A login the daemon runs: its frames to the module, and the module's
    // replies.
    round_trip::<HostMsg>(data);
    round_trip::<HostReply>(data);
});
