//! `pam_gateway_direct.so`: the PAM module's direct path -- the gateways'
//! clients (HTTP, TLS, the command gateway's helper) and the `[directory]`
//! lookup -- which `pam_gateway.so` loads the first time a login sends a
//! message or asks the directory itself (`pam_gateway_core::direct`). A
//! login whose message pam-gatewayd sends never loads it.
//!
//! Two C functions, named for the interface's version; the work is
//! `pam_gateway_core::direct::serve`, the pointers' handling
//! `pam_gateway_core::system::dl`.

use pam_gateway_core::direct::serve;
use pam_gateway_core::system::dl;

/// Serves one request (`pam_gateway_core::direct::ENTRY`).
///
/// # Safety
/// `request` valid for `len` bytes; `out` and `out_len` valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_gateway_direct_v1(
    request: *const u8,
    len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: the caller's contract is `dl::answer`'s, passed on unchanged.
    unsafe { dl::answer(request, len, out, out_len, serve) }
}

/// Frees an answer of [`pam_gateway_direct_v1`]
/// (`pam_gateway_core::direct::FREE`).
///
/// # Safety
/// `ptr` and `len` as `pam_gateway_direct_v1` returned them, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_gateway_direct_free_v1(ptr: *mut u8, len: usize) {
    // SAFETY: the caller's contract is `dl::free_answer`'s, passed on.
    unsafe { dl::free_answer(ptr, len) }
}
