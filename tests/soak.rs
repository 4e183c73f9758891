//! A long-lived host: one process calls libpam's `pam_start_confdir` /
//! `pam_authenticate` / `pam_end` over and over (as sshd's monitor does),
//! loading the module against the loopback fake, and watches its own open
//! fds, threads and RSS.
//!
//! The test re-runs its own binary as the host process inside bwrap (a
//! private /dev with a socket over /dev/log, drained here), feeding it each
//! code the fake received on stdin. `PGW_SOAK_CYCLES` sets the count:
//! 200 in `make test`, 10,000 in `make soak`.

use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::ffi::{CString, c_int, c_void};
use std::io::{BufRead, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram};
use pam_harness::*;

/// Users the cycles rotate through, so `codes_per_window` never binds.
const USERS: usize = NUMBERED_ACCOUNTS;
/// Cycles before the baseline is taken (first loads, caches, pools).
const WARMUP: usize = 20;
/// Bounds the host must stay within after warm-up.
const MAX_RSS_GROWTH_KB: i64 = 4096;

use libpam_ffi::*;
use pgw_test_support::libpam_ffi;

/// Answers every echo-off prompt with the next line of stdin; other
/// messages get no response text. Responses are malloc'd: libpam frees them.
extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    let n = num_msg as usize;
    // SAFETY: calloc of n zeroed PamResponse structs; checked for NULL.
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: libpam passes num_msg valid message pointers (Linux-PAM
        // layout: an array of pointers).
        let m = unsafe { &**msg.add(i) };
        if m.msg_style == PAM_PROMPT_ECHO_OFF {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
                // SAFETY: entries below i were filled by us; libpam frees
                // nothing when the conversation fails.
                unsafe { free_replies(replies, i) };
                return PAM_CONV_ERR;
            }
            let c = CString::new(line.trim_end()).unwrap_or_default();
            // SAFETY: strdup copies a NUL-terminated string into malloc'd memory.
            unsafe { (*replies.add(i)).resp = libc::strdup(c.as_ptr()) };
        }
    }
    // SAFETY: resp is a valid out-pointer from libpam.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Frees the first `filled` replies' texts and the array.
unsafe fn free_replies(replies: *mut PamResponse, filled: usize) {
    for i in 0..filled {
        // SAFETY: entries below `filled` hold NULL or strdup'd text.
        unsafe { libc::free((*replies.add(i)).resp.cast()) };
    }
    // SAFETY: the array came from calloc.
    unsafe { libc::free(replies.cast()) };
}

/// Open fds, threads and RSS (kB) of this process.
fn usage() -> (usize, usize, i64) {
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    (fds, field("Threads:") as usize, field("VmRSS:"))
}

/// The host process: the test below, run by itself as its child with
/// `PGW_SOAK_HOST=cycles:service:confdir`.
fn soak_host_process(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let cycles: usize = parts.next().and_then(|c| c.parse().ok()).expect("cycles");
    let service = CString::new(parts.next().expect("service")).expect("service");
    let confdir = CString::new(parts.next().expect("confdir")).expect("confdir");
    let conv = PamConv {
        conv: conversation,
        appdata_ptr: std::ptr::null_mut(),
    };
    let mut ok = 0;
    let mut out = std::io::stdout();
    for cycle in 1..=cycles {
        let user = CString::new(format!("user{}", cycle % USERS)).expect("user");
        let mut pamh: *mut c_void = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the call; conv
        // lives for the whole loop; pamh is an out-pointer.
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                user.as_ptr(),
                &conv,
                confdir.as_ptr(),
                &mut pamh,
            )
        };
        assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir");
        // SAFETY: pamh came from a successful pam_start_confdir.
        let rc = unsafe { pam_authenticate(pamh, 0) };
        if rc == PAM_SUCCESS {
            ok += 1;
        }
        // SAFETY: pamh is ended exactly once.
        unsafe { pam_end(pamh, rc) };
        if cycle == WARMUP || cycle % (cycles / 10).max(1) == 0 || cycle == cycles {
            let (fds, threads, rss) = usage();
            let _ = writeln!(
                out,
                "SOAK cycle={cycle} ok={ok} fds={fds} threads={threads} rss_kb={rss}"
            );
            let _ = out.flush();
        }
    }
}

fn field(line: &str, name: &str) -> i64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn long_lived_host_keeps_fds_threads_and_memory_bounded() {
    if let Ok(spec) = std::env::var("PGW_SOAK_HOST") {
        return soak_host_process(&spec);
    }
    let cycles: usize = std::env::var("PGW_SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    assert!(cycles > WARMUP, "PGW_SOAK_CYCLES must exceed {WARMUP}");
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let env = PamEnv::with_fake(&fake, "[limits]\ncodes_per_window = 1000\nwindow = 10\n");
    let users: String = (0..USERS)
        .map(|i| format!("[users.user{i}]\ntelegram = \"{CHAT}\"\n"))
        .collect();
    write_file(&env.users, &users, 0o644);
    env.set_stack("auth required {module} config={config}\n");

    // Drain syslog so the module never blocks on a full socket.
    let log_sock = env.log_sock.try_clone().expect("socket");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            let (mut lines, mut successes) = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = log_sock.recv(&mut buf) {
                    lines += 1;
                    let text = String::from_utf8_lossy(&buf[..n]);
                    successes += usize::from(text.contains("result=success"));
                    assert!(!text.contains(SECRET_HALF), "token in the log");
                }
            }
            (lines, successes)
        })
    };

    let exe = std::env::current_exe().expect("exe");
    // env.bwrap(): the test accounts user0.. exist in the namespace (the
    // module denies users NSS does not know).
    let mut child = env
        .bwrap()
        .arg("--bind")
        .arg(&env.log_path)
        .arg("/dev/log")
        .arg("--die-with-parent")
        .arg(&exe)
        .args([
            "long_lived_host_keeps_fds_threads_and_memory_bounded",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "PGW_SOAK_HOST",
            format!("{cycles}:pgw:{}", env.pam_d.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the host");
    let mut stdin = child.stdin.take().expect("stdin");
    let started = Instant::now();
    for i in 0..cycles {
        let msg = fake
            .wait_for_message(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no code for cycle {}", i + 1));
        let code = fake_telegram::find_code(&msg.text).expect("code");
        writeln!(stdin, "{code}").expect("feed the host");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("host");
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (log_lines, log_successes) = drain.join().expect("drain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "host failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // libtest's "test … " may share the first line: take from the marker.
    let points: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("SOAK ").map(|i| &l[i..]))
        .collect();
    eprintln!("{cycles} cycles in {elapsed:?}; {log_lines} syslog lines");
    for p in &points {
        eprintln!("{p}");
    }
    let base = points
        .iter()
        .find(|l| field(l, "cycle") == WARMUP as i64)
        .expect("baseline point");
    let last = points.last().expect("final point");
    assert_eq!(field(last, "cycle"), cycles as i64);
    assert_eq!(
        field(last, "ok"),
        cycles as i64,
        "every cycle authenticated"
    );
    assert_eq!(log_successes, cycles, "every success was logged");
    for p in &points[1..] {
        assert!(
            field(p, "fds") <= field(base, "fds"),
            "fds grew: {base} -> {p}"
        );
        assert!(
            field(p, "threads") <= field(base, "threads"),
            "threads grew: {base} -> {p}"
        );
    }
    let growth = field(last, "rss_kb") - field(base, "rss_kb");
    assert!(
        growth <= MAX_RSS_GROWTH_KB,
        "RSS grew by {growth} kB over {} cycles: {base} -> {last}",
        cycles - WARMUP
    );
}
