//! A long-lived PAM host for `make bench`: one process runs many complete
//! authentications (pam_start_confdir, pam_authenticate, pam_end) against a
//! service file in a private directory, as a display manager or any daemon
//! that links libpam would, and reports authentications per second and
//! whether descriptors, threads or memory grow.
//!
//! ```text
//! pam_loop --confdir DIR --service NAME [--user USER] [--cycles N] [--warmup N]
//!          [--codes FIFO | --totp-secret BASE32] [--reset-state DIR]
//! ```
//!
//! Prompts are answered with the next line of `--codes` (the fake Bot API
//! writes each code it delivers there), or with the current TOTP code of
//! `--totp-secret` (RFC 6238, SHA-1, 6 digits, 30 s, as
//! pam_google_authenticator). `--reset-state` names pam_gateway's
//! state_dir: its `*.json` files are removed before each cycle, so the rate
//! limit never binds. Only the authentications are timed (not the warm-up,
//! not the resets): `seconds` is their sum. Prints one line of `key=value`
//! pairs; exits non-zero if any authentication failed.

use std::ffi::{CStr, CString, c_int, c_void};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libpam_ffi::*;
use pgw_test_support::libpam_ffi;

/// Where answers to prompts come from.
enum Answers {
    /// One line per prompt from this file (a FIFO), waiting at most 10 s.
    Codes(File, Vec<u8>),
    Totp(totp_rs::TOTP),
    /// No prompt expected (pam_permit).
    Nothing,
}

impl Answers {
    fn next(&mut self) -> Option<String> {
        match self {
            Answers::Codes(f, pending) => read_line(f, pending, Duration::from_secs(10)),
            Answers::Totp(t) => t.generate_current().ok(),
            Answers::Nothing => None,
        }
    }
}

/// The next line from the codes FIFO, waiting at most `max` for data. The
/// fake writes each code and its newline with one write(2) (atomic below
/// PIPE_BUF), so a read returns whole lines; any extra is kept for later.
fn read_line(f: &mut File, pending: &mut Vec<u8>, max: Duration) -> Option<String> {
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            return String::from_utf8(line[..end].to_vec()).ok();
        }
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, max.as_millis() as c_int) };
        if n <= 0 {
            return None;
        }
        let mut buf = [0u8; 256];
        match f.read(&mut buf) {
            Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    let n = num_msg as usize;
    // SAFETY: appdata is the &mut Answers main() passed to pam_start.
    let answers = unsafe { &mut *(appdata as *mut Answers) };
    // SAFETY: libpam frees the array and each resp string with free().
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of num_msg message pointers.
        let m = unsafe { &**msg.add(i) };
        if m.msg_style == PAM_PROMPT_ECHO_OFF || m.msg_style == PAM_PROMPT_ECHO_ON {
            let Some(answer) = answers.next().and_then(|a| CString::new(a).ok()) else {
                for j in 0..i {
                    // SAFETY: out has n entries; earlier ones hold strdup'ed strings or NULL.
                    unsafe { libc::free((*out.add(j)).resp.cast()) };
                }
                // SAFETY: allocated above with calloc.
                unsafe { libc::free(out.cast()) };
                return PAM_CONV_ERR;
            };
            // SAFETY: out has n zeroed entries; strdup copies into malloc'ed memory.
            unsafe { (*out.add(i)).resp = libc::strdup(answer.as_ptr()) };
        }
    }
    // SAFETY: resp is the caller's out-parameter.
    unsafe { *resp = out };
    PAM_SUCCESS
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A field of /proc/self/status, e.g. "Threads" or "VmRSS" (kB).
fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Args {
    confdir: String,
    service: String,
    user: String,
    cycles: u64,
    warmup: u64,
    codes: Option<String>,
    totp_secret: Option<String>,
    reset_state: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        confdir: String::new(),
        service: String::new(),
        user: "root".into(),
        cycles: 10_000,
        warmup: 100,
        codes: None,
        totp_secret: None,
        reset_state: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--confdir" => a.confdir = value()?,
            "--service" => a.service = value()?,
            "--user" => a.user = value()?,
            "--cycles" => a.cycles = value()?.parse().map_err(|_| "bad --cycles")?,
            "--warmup" => a.warmup = value()?.parse().map_err(|_| "bad --warmup")?,
            "--codes" => a.codes = Some(value()?),
            "--totp-secret" => a.totp_secret = Some(value()?),
            "--reset-state" => a.reset_state = Some(value()?.into()),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if a.confdir.is_empty() || a.service.is_empty() {
        return Err("--confdir and --service are required".into());
    }
    Ok(a)
}

/// Removes the `*.json` state files in `--reset-state`, if given.
fn reset_state(args: &Args) -> Result<(), String> {
    let Some(dir) = &args.reset_state else {
        return Ok(());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // The module creates it at its first login.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// One pam_start_confdir / pam_authenticate / pam_end; the error text on failure.
fn authenticate(args: &Args, answers: &mut Answers) -> Result<(), String> {
    let service = CString::new(args.service.as_str()).map_err(|e| e.to_string())?;
    let user = CString::new(args.user.as_str()).map_err(|e| e.to_string())?;
    let confdir = CString::new(args.confdir.as_str()).map_err(|e| e.to_string())?;
    let conv = PamConv {
        conv: conversation,
        appdata_ptr: (answers as *mut Answers).cast(),
    };
    let mut pamh: *mut c_void = std::ptr::null_mut();
    // SAFETY: all pointers are valid C strings / structs that outlive the handle.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS {
        return Err(format!("pam_start_confdir failed ({rc})"));
    }
    // SAFETY: pamh is a live handle from pam_start_confdir.
    let rc = unsafe { pam_authenticate(pamh, 0) };
    let err = (rc != PAM_SUCCESS).then(|| {
        // SAFETY: pam_strerror returns a static string for any code.
        let text = unsafe { CStr::from_ptr(pam_strerror(pamh, rc)) };
        format!("{} ({rc})", text.to_string_lossy())
    });
    // SAFETY: pamh is live and not used after this.
    unsafe { pam_end(pamh, rc) };
    err.map_or(Ok(()), Err)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pam_loop: {e}");
            return ExitCode::from(2);
        }
    };
    let mut answers = if let Some(path) = &args.codes {
        // Read-write: the FIFO stays open even between the fake's writes.
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => Answers::Codes(f, Vec::new()),
            Err(e) => {
                eprintln!("pam_loop: cannot open {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if let Some(b32) = &args.totp_secret {
        let secret = totp_rs::Secret::Encoded(b32.clone()).to_bytes();
        match secret.map(|s| totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, s)) {
            Ok(Ok(t)) => Answers::Totp(t),
            _ => {
                eprintln!("pam_loop: --totp-secret is not a usable base32 secret");
                return ExitCode::from(2);
            }
        }
    } else {
        Answers::Nothing
    };

    for _ in 0..args.warmup {
        if let Err(e) = reset_state(&args).and_then(|()| authenticate(&args, &mut answers)) {
            eprintln!("pam_loop: warm-up authentication failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (fds0, threads0, rss0) = (count_fds(), status("Threads"), status("VmRSS"));
    let mut failures = 0u64;
    let mut first_error = None;
    let mut timed = Duration::ZERO;
    for _ in 0..args.cycles {
        if let Err(e) = reset_state(&args) {
            eprintln!("pam_loop: {e}");
            return ExitCode::FAILURE;
        }
        let start = Instant::now();
        let result = authenticate(&args, &mut answers);
        timed += start.elapsed();
        if let Err(e) = result {
            failures += 1;
            first_error.get_or_insert(e);
        }
    }
    let secs = timed.as_secs_f64();
    let (fds1, threads1, rss1) = (count_fds(), status("Threads"), status("VmRSS"));
    println!(
        "service={} cycles={} seconds={secs:.3} auths_per_sec={:.1} failures={failures} \
         fds_before={fds0} fds_after={fds1} threads_before={threads0} threads_after={threads1} \
         rss_kib_before={rss0} rss_kib_after={rss1} rss_kib_peak={}",
        args.service,
        args.cycles,
        args.cycles as f64 / secs,
        status("VmHWM"),
    );
    if let Some(e) = first_error {
        eprintln!("pam_loop: {failures} of {} failed, first: {e}", args.cycles);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
