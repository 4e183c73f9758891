//! The dynamic loader: which file this code was loaded from, and loading
//! the direct library (`pam_gateway_direct.so`, [`crate::direct`]) into
//! this process once.

use std::ffi::{CStr, CString, OsStr, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The path of the shared object (or program) that holds this function:
/// for the PAM module, the path libpam loaded it by.
pub fn own_object_path() -> Option<PathBuf> {
    // SAFETY: Dl_info is plain data; zeroed is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = own_object_path as *const c_void;
    // SAFETY: `here` is the address of a function of this object and `info`
    // a valid Dl_info to fill; dladdr only reads the loader's tables.
    let rc = unsafe { libc::dladdr(here, &mut info) };
    if rc == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr succeeded, so dli_fname points at the loader's own
    // NUL-terminated name of the object, which lives as long as it does.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(OsStr::from_bytes(name.to_bytes())))
}

/// A library loaded for good (`RTLD_NODELETE`: its code stays mapped even
/// if the handle is closed, so a function pointer taken from it never
/// dangles, whatever unloads the module that loaded it).
pub struct Library {
    handle: *mut c_void,
}

// SAFETY: the handle is only passed to dlsym, which is thread-safe.
unsafe impl Send for Library {}
// SAFETY: as above; no method mutates through the handle.
unsafe impl Sync for Library {}

impl Library {
    /// `dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)`: every symbol
    /// it needs resolved now, none of its own offered to later loads.
    pub fn open(path: &std::path::Path) -> Result<Library, String> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: a NUL byte in the path", path.display()))?;
        // SAFETY: `c` is a valid C string. Loading runs the library's
        // initialisers, which is why the caller checks the file first.
        let handle = unsafe {
            libc::dlopen(
                c.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NODELETE,
            )
        };
        if handle.is_null() {
            return Err(last_error());
        }
        Ok(Library { handle })
    }

    /// The address of `symbol` in the library, if it defines it.
    pub fn symbol(&self, symbol: &CStr) -> Option<*mut c_void> {
        // SAFETY: the handle came from dlopen and was never closed; the
        // name is a valid C string.
        let p = unsafe { libc::dlsym(self.handle, symbol.as_ptr()) };
        (!p.is_null()).then_some(p)
    }
}

/// The direct library's entry point: a request's bytes in; an answer's
/// bytes out, allocated by the library (handed back to [`FreeFn`]); 0 on
/// success.
pub type EntryFn = unsafe extern "C" fn(*const u8, usize, *mut *mut u8, *mut usize) -> i32;
/// Frees an answer [`EntryFn`] returned.
pub type FreeFn = unsafe extern "C" fn(*mut u8, usize);

/// A library's [`EntryFn`] and [`FreeFn`], called as one exchange.
#[derive(Clone, Copy)]
pub struct Exchange {
    entry: EntryFn,
    free: FreeFn,
}

impl Exchange {
    /// The two functions, by name, in `lib`. The caller vouches that they
    /// have these types: the names carry the version of the interface.
    pub fn find(lib: &Library, entry: &CStr, free: &CStr) -> Option<Exchange> {
        let (e, f) = (lib.symbol(entry)?, lib.symbol(free)?);
        // SAFETY: both symbols are functions of a library loaded for good
        // (RTLD_NODELETE) whose names promise these signatures
        // (`crate::direct`'s ENTRY and FREE, defined by `direct/src/lib.rs`
        // of the same build, which the request's version checks).
        unsafe {
            Some(Exchange {
                entry: std::mem::transmute::<*mut c_void, EntryFn>(e),
                free: std::mem::transmute::<*mut c_void, FreeFn>(f),
            })
        }
    }

    /// Sends `request`, returns the answer's bytes, or the entry point's
    /// non-zero status.
    pub fn call(&self, request: &[u8]) -> Result<Vec<u8>, i32> {
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: the request is valid for its length; out and len are
        // valid places for the answer's pointer and length.
        let rc = unsafe { (self.entry)(request.as_ptr(), request.len(), &mut out, &mut len) };
        if rc != 0 || out.is_null() {
            return Err(if rc == 0 { -1 } else { rc });
        }
        // SAFETY: on success the library returned a buffer of `len` bytes
        // that stays valid until handed to its free function, done below.
        let answer = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
        // SAFETY: `out`/`len` are what this library's entry point returned,
        // freed once.
        unsafe { (self.free)(out, len) };
        Ok(answer)
    }
}

/// The library side of [`Exchange::call`]: runs `serve` on the request
/// and hands its answer back through `out`/`out_len`; a panic in `serve`
/// is status 2, never an unwind across the C boundary.
///
/// # Safety
/// `request` must be valid for `len` bytes (or `len` 0), and `out` and
/// `out_len` valid for writes: what [`Exchange::call`] passes.
pub unsafe fn answer(
    request: *const u8,
    len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
    serve: fn(&[u8]) -> Vec<u8>,
) -> i32 {
    if out.is_null() || out_len.is_null() || (request.is_null() && len != 0) {
        return 1;
    }
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract: valid for `len` bytes.
        unsafe { std::slice::from_raw_parts(request, len) }
    };
    let Ok(answer) = std::panic::catch_unwind(|| serve(bytes)) else {
        return 2;
    };
    let answer = answer.into_boxed_slice();
    let n = answer.len();
    let p = Box::into_raw(answer).cast::<u8>();
    // SAFETY: the caller's contract: both valid for writes.
    unsafe {
        *out = p;
        *out_len = n;
    }
    0
}

/// Frees what [`answer`] handed out.
///
/// # Safety
/// `ptr` and `len` must be a pointer and length [`answer`] returned, not
/// yet freed.
pub unsafe fn free_answer(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the caller's contract: this is the boxed slice `answer`
    // leaked, of this length, freed once.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// dlerror's text (it names the file and what failed).
fn last_error() -> String {
    // SAFETY: dlerror takes no arguments; it returns NULL or a C string
    // valid until the next dl* call on this thread, which we copy at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "dlopen failed".to_string();
    }
    // SAFETY: non-NULL, so a NUL-terminated string (see above).
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_object_this_code_is_in() {
        // In a test, this code is linked into the test program itself.
        let path = own_object_path().expect("dladdr");
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(
            std::fs::canonicalize(&path).expect("canon"),
            std::fs::canonicalize(exe).expect("canon")
        );
    }

    #[test]
    fn a_missing_library_says_which_and_why() {
        let e = Library::open(std::path::Path::new("/nonexistent/x_direct.so"))
            .err()
            .expect("no such file");
        assert!(e.contains("/nonexistent/x_direct.so"), "{e}");
    }
}
