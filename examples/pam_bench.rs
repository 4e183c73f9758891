//! The measuring half of `make bench` (scripts/bench.sh prepares the files
//! and the fake Bot API, then runs this). Whole-process timing of one
//! authentication through pamtester for each PAM stack side by side, in a
//! private mount namespace; then the long-lived host loop (pam_loop).
//!
//! ```text
//! pam_bench --dir DIR --ga-secret BASE32 [--runs N] [--warmup N] [--cycles N]
//!           [--pamtester "CMD ARGS"] [--loop "CMD ARGS"] [--user NAME]
//!           [--size LABEL=PATH]... [--bundle PATH] [--label TEXT]
//!           [--case LABEL=SERVICE:none|totp|fifo]... [--rtt HOST:PORT/PATH]
//!           [--state-dir DIR]... [--tmpfs DIR]... [--arrivals PATH]
//!           [--focus-runs N]
//! ```
//!
//! DIR holds `pam.d/` with the services `bench-permit`, `bench-ga`,
//! `bench-ga-rl` (optional; with DIR/ga-secret-rl.pristine),
//! `bench-gw` and optionally `bench-gw-tls`, `bench-gw-dns`,
//! `bench-gw-tmpfs`, `bench-gw-ldap` and `bench-gw-ldapi` (the recipient
//! from a slapd on loopback; a case runs when its file exists), and `codes`, the
//! FIFO the fake writes each delivered code to.
//! `--case` adds a service of your own (e.g. a variant of the module) with
//! where its answer comes from. `--rtt` names the fake's `getMe` (e.g.
//! `127.0.0.1:4242/bot<TOKEN>/getMe`): each round also times one plain HTTP
//! round trip to it from this process with std's TcpStream, the share of a
//! pam_gateway login that is the server's and the loopback's, not the
//! module's. `--state-dir` is a pam_gateway `state_dir`: its users' state
//! files (`*.json`) are removed before each pam_gateway run, outside the
//! timing, so every login is the first of its rate-limit window (the
//! default limit of 5 codes per 15 minutes would stop a benchmark after 5
//! runs) and pays what a real one does: the state file's locked,
//! fsynced write. `--tmpfs` mounts an empty tmpfs there in the namespace
//! (a state_dir below it shows what the fsyncs cost).
//!
//! `pam-gatewayd` (issue 14): `bench-gw-daemon` is the http case with
//! `[approve]` on and a daemon running (bench.sh starts it) whose socket
//! the stack line names, so the daemon runs the login and the PAM process
//! only holds the conversation; `bench-gw-approvals` is the same config
//! without `socket=`: the module runs the login and hands only its message
//! to the daemon. `bench-gw-slow` and `bench-gw-slow-daemon` reach the
//! TLS fake through a proxy that adds round-trip time (examples/delay_proxy):
//! the module's own new connection per login against the daemon's warm one.
//! `--arrivals` is the TLS fake's file of arrival times (one line per
//! message, µs since the epoch); for the cases that send there the report
//! adds the time from pamtester's start to the message at the fake.
//! `--focus-runs N` then runs N more rounds of `bench-permit`, `bench-ga`,
//! the `bench-gw-*daemon` and `bench-gw-approvals` cases and the `--case`
//! variants through pam-gatewayd alone
//! (issue 14's per-login CPU target, ≤ 1.2 × GA), with a bootstrap interval
//! of the median per-round ratio. `--focus-typing-ms D` adds GA and those
//! cases with the answer typed D ms after it is known (against GA typed so);
//! `--focus-gap-ms G` leaves the machine idle G ms before each login of those
//! rounds, as on a server where logins are rare. `--daemon-pid P` reads
//! daemon A's CPU time around each login of those rounds.
//!
//! How: this process binds a datagram socket and drains it (the syslog
//! both modules write to; without one glibc's syslog falls back to
//! /dev/console, which costs pam_google_authenticator a slow console
//! write), then re-runs itself under `bwrap` with DIR/pam.d over
//! /etc/pam.d, the socket over /dev/log and, with `--bundle`, that file
//! over /etc/ssl/certs/ca-certificates.crt (the https case needs the test
//! CA trusted). Inside, the cases run interleaved -- every round runs
//! every case once, in a new shuffled order -- so a burst of load
//! elsewhere on the machine hits every case alike, and no case always
//! runs in the tail of the same other one. Each run is spawned directly
//! (no shell), timed from spawn to exit, and its peak RSS and CPU time come
//! from wait4's rusage. pam_google_authenticator gets a fresh code from
//! `oathtool --totp -b SECRET` before each run (outside the timing); the
//! pam_gateway cases read the code from the FIFO the fake fills.
//! `--pamtester` and `--loop` may carry a wrapper, e.g.
//! `--pamtester "qemu-aarch64-static -L /usr/aarch64-linux-gnu ./pamtester"`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Args {
    dir: PathBuf,
    ga_secret: String,
    runs: usize,
    warmup: usize,
    cycles: u64,
    pamtester: Vec<String>,
    loop_cmd: Vec<String>,
    user: String,
    sizes: Vec<(String, PathBuf)>,
    bundle: Option<PathBuf>,
    label: String,
    extra: Vec<(String, String, Input)>,
    rtt: Option<String>,
    state_dirs: Vec<PathBuf>,
    tmpfs: Vec<PathBuf>,
    arrivals: Option<PathBuf>,
    focus_runs: usize,
    focus_typing_ms: u64,
    focus_gap_ms: u64,
    /// pam-gatewayd A: its CPU time is read around each login.
    daemon_pid: Option<u32>,
    inner: bool,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::new(),
        ga_secret: String::new(),
        runs: 100,
        warmup: 5,
        cycles: 10_000,
        pamtester: vec!["pamtester".into()],
        loop_cmd: Vec::new(),
        user: "root".into(),
        sizes: Vec::new(),
        bundle: None,
        label: String::new(),
        extra: Vec::new(),
        rtt: None,
        state_dirs: Vec::new(),
        tmpfs: Vec::new(),
        arrivals: None,
        focus_runs: 0,
        focus_typing_ms: 0,
        focus_gap_ms: 0,
        daemon_pid: None,
        inner: false,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let words = |s: String| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(value()?),
            "--ga-secret" => a.ga_secret = value()?,
            "--runs" => a.runs = value()?.parse().map_err(|_| "bad --runs")?,
            "--warmup" => a.warmup = value()?.parse().map_err(|_| "bad --warmup")?,
            "--cycles" => a.cycles = value()?.parse().map_err(|_| "bad --cycles")?,
            "--pamtester" => a.pamtester = words(value()?),
            "--loop" => a.loop_cmd = words(value()?),
            "--user" => a.user = value()?,
            "--size" => {
                let v = value()?;
                let (label, path) = v.split_once('=').ok_or("--size wants LABEL=PATH")?;
                a.sizes.push((label.to_string(), PathBuf::from(path)));
            }
            "--bundle" => a.bundle = Some(PathBuf::from(value()?)),
            "--label" => a.label = value()?,
            "--case" => {
                let v = value()?;
                let (label, rest) = v
                    .split_once('=')
                    .ok_or("--case wants LABEL=SERVICE:INPUT")?;
                let (service, input) = rest
                    .split_once(':')
                    .ok_or("--case wants LABEL=SERVICE:INPUT")?;
                let input = match input {
                    "none" => Input::Nothing,
                    "totp" => Input::Totp,
                    "fifo" => Input::Fifo,
                    _ => return Err(format!("--case input {input:?}: none, totp or fifo")),
                };
                a.extra
                    .push((label.to_string(), service.to_string(), input));
            }
            "--rtt" => a.rtt = Some(value()?),
            "--state-dir" => a.state_dirs.push(PathBuf::from(value()?)),
            "--tmpfs" => a.tmpfs.push(PathBuf::from(value()?)),
            "--arrivals" => a.arrivals = Some(PathBuf::from(value()?)),
            "--focus-runs" => a.focus_runs = value()?.parse().map_err(|_| "bad --focus-runs")?,
            "--focus-typing-ms" => {
                a.focus_typing_ms = value()?.parse().map_err(|_| "bad --focus-typing-ms")?
            }
            "--focus-gap-ms" => {
                a.focus_gap_ms = value()?.parse().map_err(|_| "bad --focus-gap-ms")?
            }
            "--daemon-pid" => {
                a.daemon_pid = Some(value()?.parse().map_err(|_| "bad --daemon-pid")?)
            }
            "--inner" => a.inner = true,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if a.dir.as_os_str().is_empty() || a.ga_secret.is_empty() {
        return Err("--dir and --ga-secret are required".into());
    }
    if a.pamtester.is_empty() || a.runs == 0 {
        return Err("--pamtester must name a program and --runs be positive".into());
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Input {
    Nothing,
    Totp,
    Fifo,
}

struct Case {
    name: String,
    service: String,
    input: Input,
    /// How long the "user" takes to type the answer once it is known
    /// (zero: it is there as soon as pamtester reads; see [`typed_after`]).
    typing: Duration,
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    rss_kib: Vec<f64>,
    /// From pamtester's start to the message at the TLS fake (the cases
    /// in [`ARRIVAL_SERVICES`]).
    arrive_ms: Vec<f64>,
    /// pam-gatewayd A's CPU time during the login (`--daemon-pid`), in
    /// clock ticks of /proc converted to ms: only their mean over many
    /// logins means anything.
    daemon_ms: Vec<f64>,
}

/// pam_google_authenticator with the rate limit and reuse check its own
/// setup offers (`google-authenticator -d -r 3 -R 30`): it then rewrites
/// its secret file at every login (mkstemp, write, fsync, rename), as
/// pam_gateway writes its state file. Its file, DIR/ga-secret-rl, is put
/// back from DIR/ga-secret-rl.pristine before each run (outside the
/// timing), so neither binds, as pam_gateway's state files are removed.
const GA_STATEFUL: &str = "bench-ga-rl";

/// The services whose message goes to the TLS fake, which records when
/// each arrives (`--arrivals`).
/// The rounds' case order: xorshift64 and Fisher–Yates, the same sequence
/// in every run of the benchmark.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle(&mut self, v: &mut [usize]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

const ARRIVAL_SERVICES: &[&str] = &["bench-gw-tls", "bench-gw-slow", "bench-gw-slow-daemon"];

const CASES: &[(&str, &str, Input)] = &[
    ("pam_permit", "bench-permit", Input::Nothing),
    ("pam_google_authenticator", "bench-ga", Input::Totp),
    (
        "pam_google_authenticator (RATE_LIMIT 3 30, DISALLOW_REUSE)",
        GA_STATEFUL,
        Input::Totp,
    ),
    ("pam_gateway (http)", "bench-gw", Input::Fifo),
    ("pam_gateway (https)", "bench-gw-tls", Input::Fifo),
    ("pam_gateway (http, host name)", "bench-gw-dns", Input::Fifo),
    (
        "pam_gateway (http, state on tmpfs)",
        "bench-gw-tmpfs",
        Input::Fifo,
    ),
    (
        "pam_gateway (http, directory over ldap+StartTLS)",
        "bench-gw-ldap",
        Input::Fifo,
    ),
    (
        "pam_gateway (http, directory over ldapi)",
        "bench-gw-ldapi",
        Input::Fifo,
    ),
    (
        "pam_gateway (http, via pam-gatewayd)",
        "bench-gw-daemon",
        Input::Fifo,
    ),
    (
        "pam_gateway (http, approvals via pam-gatewayd: the module runs the login)",
        "bench-gw-approvals",
        Input::Fifo,
    ),
    (
        "pam_gateway (https + added RTT, direct)",
        "bench-gw-slow",
        Input::Fifo,
    ),
    (
        "pam_gateway (https + added RTT, via pam-gatewayd)",
        "bench-gw-slow-daemon",
        Input::Fifo,
    ),
];

struct Run {
    ok: bool,
    wall_ms: f64,
    cpu_ms: f64,
    rss_kib: f64,
    /// Milliseconds from the spawn to the message at the TLS fake.
    arrive_ms: Option<f64>,
    stderr: String,
}

/// Microseconds since the Unix epoch (the clock the fake stamps with).
fn epoch_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// The newest arrival in `path` after `since` (µs), waiting up to 200 ms
/// for the fake to write it (it writes the code to the FIFO first).
fn arrival_after(path: &std::path::Path, since: u128) -> Option<u128> {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let last = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u128>().ok()));
        if let Some(t) = last.filter(|&t| t >= since) {
            return Some(t);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ms(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3
}

/// Removes the users' state files (`*.json`) in pam_gateway's state_dir.
fn reset_state(dir: &std::path::Path) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
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

/// One pamtester run, timed from spawn to exit; rusage from wait4.
fn run_once(args: &Args, case: &Case, capture: bool) -> Result<Run, String> {
    if case.input == Input::Fifo {
        for dir in &args.state_dirs {
            reset_state(dir)?;
        }
    }
    if case.service == GA_STATEFUL {
        let (from, to) = (
            args.dir.join("ga-secret-rl.pristine"),
            args.dir.join("ga-secret-rl"),
        );
        std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o400))
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    let stdin = match case.input {
        Input::Nothing => Stdio::null(),
        Input::Totp => {
            let out = Command::new("oathtool")
                .args(["--totp", "-b", &args.ga_secret])
                .output()
                .map_err(|e| format!("cannot run oathtool: {e}"))?;
            if !out.status.success() {
                return Err("oathtool failed".into());
            }
            if case.typing > Duration::ZERO {
                typed_after(case.typing, Source::Text(out.stdout))?
            } else {
                let path = args.dir.join("ga-code");
                std::fs::write(&path, &out.stdout).map_err(|e| e.to_string())?;
                Stdio::from(File::open(&path).map_err(|e| e.to_string())?)
            }
        }
        Input::Fifo => {
            let fifo =
                File::open(args.dir.join("codes")).map_err(|e| format!("codes FIFO: {e}"))?;
            if case.typing > Duration::ZERO {
                typed_after(case.typing, Source::Fifo(fifo))?
            } else {
                Stdio::from(fifo)
            }
        }
    };
    let err_path = args.dir.join("last-stderr");
    let stderr = if capture {
        Stdio::from(File::create(&err_path).map_err(|e| e.to_string())?)
    } else {
        Stdio::null()
    };
    let started_us = epoch_us();
    let start = Instant::now();
    let child = Command::new(&args.pamtester[0])
        .args(&args.pamtester[1..])
        .args([case.service.as_str(), args.user.as_str(), "authenticate"])
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args.pamtester[0]))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (Child is never waited on).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    if rc != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let arrive_ms = match &args.arrivals {
        Some(path) if ok && ARRIVAL_SERVICES.contains(&case.service.as_str()) => {
            arrival_after(path, started_us).map(|t| (t - started_us) as f64 / 1e3)
        }
        _ => None,
    };
    Ok(Run {
        ok,
        wall_ms,
        arrive_ms,
        cpu_ms: ms(ru.ru_utime) + ms(ru.ru_stime),
        rss_kib: ru.ru_maxrss as f64,
        stderr: if capture {
            std::fs::read_to_string(&err_path).unwrap_or_default()
        } else {
            String::new()
        },
    })
}

/// Where a typed answer comes from: known now (GA's TOTP code), or the
/// next line the fake writes to the codes FIFO (the code it delivered).
enum Source {
    Text(Vec<u8>),
    Fifo(File),
}

/// pamtester's stdin for a user who types the answer `typing` after it is
/// known to them: a socket, written by a thread that waits that long after
/// the answer is there. A real user always takes a moment, and a process
/// that sleeps meanwhile wakes with cold caches: the answer ready at once
/// (the main table's way) is the cheapest login a stack can have.
fn typed_after(typing: Duration, source: Source) -> Result<Stdio, String> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    // A socket pair, as a pipe (std::io::pipe is newer than the MSRV).
    let (reader, mut writer) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    std::thread::spawn(move || {
        let line = match source {
            Source::Text(t) => t,
            Source::Fifo(mut fifo) => {
                // The fake keeps the FIFO open for writing: wait for a line
                // at most 5 s (a login that sends nothing must not leave a
                // reader behind to take the next login's code).
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while !line.ends_with(b"\n") {
                    let mut pfd = libc::pollfd {
                        fd: fifo.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, its fd open for the call.
                    if unsafe { libc::poll(&mut pfd, 1, 5000) } != 1 {
                        return;
                    }
                    match fifo.read(&mut byte) {
                        Ok(1) => line.push(byte[0]),
                        _ => return,
                    }
                }
                line
            }
        };
        std::thread::sleep(typing);
        let _ = writer.write_all(&line);
    });
    Ok(Stdio::from(std::os::fd::OwnedFd::from(reader)))
}

/// One `POST` to the fake with `Connection: close`, read to the end: ms.
fn round_trip(target: &str) -> Result<f64, String> {
    use std::io::{Read, Write};
    let (host, path) = target.split_once('/').ok_or("--rtt wants HOST:PORT/PATH")?;
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(host).map_err(|e| format!("--rtt: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("--rtt: {e}"))?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err("--rtt: the fake did not answer 200".into());
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// The loop's `key=value` line as a map.
fn run_loop(
    args: &Args,
    service: &str,
    extra: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let out = Command::new(&args.loop_cmd[0])
        .args(&args.loop_cmd[1..])
        .args(["--confdir", &args.dir.join("pam.d").display().to_string()])
        .args(["--service", service, "--user", &args.user])
        .args(["--cycles", &args.cycles.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.loop_cmd[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let map: BTreeMap<String, String> = text
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !out.status.success() || map.is_empty() {
        return Err(format!(
            "pam_loop {service} failed: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(map)
}

/// Runs `warmup + runs` interleaved rounds of `cases` (each round every case
/// once, in a new shuffled order) and keeps the last `runs` rounds' figures;
/// with `rtt`, also one plain HTTP round trip per round into `rtts`.
fn time_rounds(
    args: &Args,
    cases: &mut [Case],
    runs: usize,
    rtt: Option<&str>,
    rtts: &mut Vec<f64>,
    gap: Duration,
) -> Result<(), String> {
    let mut order: Vec<usize> = (0..cases.len()).collect();
    let mut rng = Shuffle(0x9E37_79B9_7F4A_7C15);
    for round in 0..args.warmup + runs {
        if let Some(target) = rtt {
            let ms = round_trip(target)?;
            if round >= args.warmup {
                rtts.push(ms);
            }
        }
        // A new order every round: a login leaves work behind it (the
        // daemon's final edit, the fake, the file system's journal), and
        // in a fixed cyclic order every case would always follow the same
        // one and carry its tail.
        rng.shuffle(&mut order);
        for &idx in &order {
            if gap > Duration::ZERO {
                std::thread::sleep(gap);
            }
            let before = args.daemon_pid.and_then(process_cpu_ms);
            let run = run_once(args, &cases[idx], false)?;
            let after = args.daemon_pid.and_then(process_cpu_ms);
            if !run.ok {
                let again = run_once(args, &cases[idx], true)?;
                return Err(format!(
                    "{} failed in round {round}; a rerun said:\n{}",
                    cases[idx].name, again.stderr
                ));
            }
            if round >= args.warmup {
                let c = &mut cases[idx];
                c.wall_ms.push(run.wall_ms);
                c.cpu_ms.push(run.cpu_ms);
                c.rss_kib.push(run.rss_kib);
                c.arrive_ms.extend(run.arrive_ms);
                if let (Some(b), Some(a)) = (before, after) {
                    c.daemon_ms.push(a - b);
                }
            }
        }
    }
    Ok(())
}

/// A process's user and system CPU time (all its threads, those gone
/// too), ms, from /proc/PID/stat (clock ticks, 100 per second on Linux's
/// ABI).
fn process_cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn inner(args: &Args) -> Result<(), String> {
    let mut cases: Vec<Case> = CASES
        .iter()
        .map(|&(name, service, input)| (name.to_string(), service.to_string(), input))
        .chain(args.extra.iter().cloned())
        .filter(|(_, service, _)| args.dir.join("pam.d").join(service).is_file())
        .map(|(name, service, input)| Case {
            name,
            service,
            input,
            typing: Duration::ZERO,
            wall_ms: Vec::new(),
            cpu_ms: Vec::new(),
            rss_kib: Vec::new(),
            arrive_ms: Vec::new(),
            daemon_ms: Vec::new(),
        })
        .collect();
    // Every case must work before anything is timed.
    for case in &cases {
        let run = run_once(args, case, true)?;
        if !run.ok {
            return Err(format!(
                "{} ({}) does not authenticate:\n{}",
                case.name, case.service, run.stderr
            ));
        }
    }
    let mut rtts = Vec::new();
    time_rounds(
        args,
        &mut cases,
        args.runs,
        args.rtt.as_deref(),
        &mut rtts,
        Duration::ZERO,
    )?;
    report(args, &cases, &rtts);
    if args.focus_runs > 0 {
        focus(args, &cases)?;
    }

    if args.cycles > 0 && !args.loop_cmd.is_empty() {
        println!(
            "\n### Long-lived host: {} authentications in one process (pam_start_confdir .. pam_end)\n",
            args.cycles
        );
        println!(
            "| stack | auths/s | µs per auth | fds before→after | threads before→after | RSS KiB before→after (peak) |"
        );
        println!("|---|---:|---:|---|---|---|");
        let fifo = args.dir.join("codes").display().to_string();
        let mut loops: Vec<(&str, &str, Vec<String>)> = vec![
            ("pam_permit", "bench-permit", vec![]),
            (
                "pam_google_authenticator",
                "bench-ga",
                vec!["--totp-secret".into(), args.ga_secret.clone()],
            ),
            ("pam_gateway (http)", "bench-gw", {
                let mut v = vec!["--codes".to_string(), fifo.clone()];
                if let Some(dir) = args.state_dirs.first() {
                    v.extend(["--reset-state".to_string(), dir.display().to_string()]);
                }
                v
            }),
        ];
        // The state dir on a tmpfs (bench.sh's second --state-dir): the
        // module's own cost, without waiting for the disk.
        if let Some(dir) = args.state_dirs.get(1)
            && args.dir.join("pam.d/bench-gw-tmpfs").is_file()
        {
            loops.push((
                "pam_gateway (http, state on tmpfs)",
                "bench-gw-tmpfs",
                vec![
                    "--codes".to_string(),
                    fifo,
                    "--reset-state".to_string(),
                    dir.display().to_string(),
                ],
            ));
            // --case variants on the tmpfs state dir too (bench.sh labels
            // them so); not those via pam-gatewayd, whose state dir is the
            // first one (like "via pam-gatewayd", they are timed per login
            // only).
            for (name, service, input) in &args.extra {
                if *input == Input::Fifo && name.contains("state on tmpfs") {
                    loops.push((
                        name.as_str(),
                        service.as_str(),
                        vec![
                            "--codes".to_string(),
                            args.dir.join("codes").display().to_string(),
                            "--reset-state".to_string(),
                            dir.display().to_string(),
                        ],
                    ));
                }
            }
        }
        let mut rates = BTreeMap::new();
        for (name, service, extra) in loops {
            let m = run_loop(args, service, &extra)?;
            let get = |k: &str| m.get(k).cloned().unwrap_or_else(|| "?".into());
            let rate: f64 = get("auths_per_sec").parse().unwrap_or(f64::NAN);
            rates.insert(name, rate);
            println!(
                "| {name} | {rate:.0} | {:.0} | {}→{} | {}→{} | {}→{} ({}) |",
                1e6 / rate,
                get("fds_before"),
                get("fds_after"),
                get("threads_before"),
                get("threads_after"),
                get("rss_kib_before"),
                get("rss_kib_after"),
                get("rss_kib_peak"),
            );
        }
        if let (Some(gw), Some(ga)) = (
            rates.get("pam_gateway (http)"),
            rates.get("pam_google_authenticator"),
        ) {
            println!(
                "\nLoop throughput ratio pam_gateway / pam_google_authenticator: {:.2} \
                 (above 1 is faster)",
                gw / ga
            );
        }
    }
    Ok(())
}

/// The services of the focused rounds: the floor, the reference and the
/// logins through pam-gatewayd (issue 14's per-login CPU target).
fn in_focus(c: &Case) -> bool {
    matches!(
        c.service.as_str(),
        "bench-permit"
            | "bench-ga"
            | "bench-gw-daemon"
            | "bench-gw-slow-daemon"
            | "bench-gw-approvals"
    ) || (c.service.starts_with("bench-v-") && c.name.contains("via pam-gatewayd"))
}

/// `--focus-runs N`: N more interleaved rounds of pam_permit, GA and the
/// cases through pam-gatewayd alone, for issue 14's CPU target, with a 95 %
/// bootstrap interval of the median per-round ratio to GA. The main table's
/// rounds (`--runs`) are few for a ratio whose target is 1.2: a run of 60
/// rounds moved it by 0.1 from one run to the next. With
/// `--focus-typing-ms D`, the same rounds also run GA and those cases with
/// the answer typed D ms after it is known ([`typed_after`]), each against
/// GA typed so.
fn focus(args: &Args, all: &[Case]) -> Result<(), String> {
    let typing = Duration::from_millis(args.focus_typing_ms);
    let mut cases: Vec<Case> = Vec::new();
    for c in all.iter().filter(|c| in_focus(c)) {
        let typed = typing > Duration::ZERO && c.input != Input::Nothing;
        for t in [Duration::ZERO, typing]
            .into_iter()
            .take(if typed { 2 } else { 1 })
        {
            cases.push(Case {
                name: c.name.clone(),
                service: c.service.clone(),
                input: c.input,
                typing: t,
                wall_ms: Vec::new(),
                cpu_ms: Vec::new(),
                rss_kib: Vec::new(),
                arrive_ms: Vec::new(),
                daemon_ms: Vec::new(),
            });
        }
    }
    if !cases.iter().any(|c| c.service == "bench-gw-daemon") {
        return Ok(());
    }
    time_rounds(
        args,
        &mut cases,
        args.focus_runs,
        None,
        &mut Vec::new(),
        Duration::from_millis(args.focus_gap_ms),
    )?;
    let find = |s: &str, t: Duration| cases.iter().find(|c| c.service == s && c.typing == t);
    let Some(permit) = find("bench-permit", Duration::ZERO) else {
        return Ok(());
    };
    println!(
        "\n### Issue 14's CPU target: {} more rounds of the logins through pam-gatewayd\n\n\
         pam_permit, pam_google_authenticator and the cases through pam-gatewayd alone, {} \
         interleaved rounds (after {} warm-up rounds). The interval is a 95 % bootstrap \
         interval of the median per-round ratio (rounds resampled).",
        args.focus_runs, args.focus_runs, args.warmup
    );
    if typing > Duration::ZERO {
        println!(
            "\"typed after {} ms\": the answer reaches pamtester {} ms after the user \
             could know it (GA: its code; pam_gateway: the code at the fake), as when a user \
             types it; those rows are against GA typed so, in the same rounds.",
            args.focus_typing_ms, args.focus_typing_ms
        );
    }
    let daemon = args.daemon_pid.is_some();
    if daemon {
        println!(
            "\"pam-gatewayd CPU\": daemon A's CPU time (/proc, 10 ms ticks) during each \
             login of the row, the mean over its rounds: the work a login the daemon runs \
             moves out of the PAM process (GA's row shows the daemon's own background, long \
             polling; the +RTT case has a daemon of its own, not measured)."
        );
    }
    println!(
        "\n| stack | CPU ms (median) | CPU over pam_permit, ms | CPU ÷ GA (medians) | CPU ÷ GA (median of per-round ratios) | 95 % interval | peak RSS − GA, KiB (median) |{}",
        if daemon {
            " pam-gatewayd CPU, ms per login (mean) |"
        } else {
            ""
        }
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|{}",
        if daemon { "---:|" } else { "" }
    );
    let daemon_cell = |c: &Case| {
        if !daemon {
            String::new()
        } else if c.daemon_ms.is_empty() || c.service == "bench-gw-slow-daemon" {
            // Daemon B's logins: A is not theirs.
            " |".to_string()
        } else {
            format!(" {:.3} |", mean(&c.daemon_ms))
        }
    };
    let floor = median(&permit.cpu_ms);
    let label = |c: &Case| {
        if c.typing > Duration::ZERO {
            format!("{}, typed after {} ms", c.name, c.typing.as_millis())
        } else {
            c.name.clone()
        }
    };
    let modes = if typing > Duration::ZERO {
        vec![Duration::ZERO, typing]
    } else {
        vec![Duration::ZERO]
    };
    for t in modes {
        let Some(ga) = find("bench-ga", t) else {
            continue;
        };
        println!(
            "| {} | {:.3} | {:+.3} | 1 (reference) | 1 (reference) | | +0 |{}",
            label(ga),
            median(&ga.cpu_ms),
            median(&ga.cpu_ms) - floor,
            daemon_cell(ga)
        );
        for c in cases
            .iter()
            .filter(|c| c.typing == t && !matches!(c.service.as_str(), "bench-permit" | "bench-ga"))
        {
            let ratios: Vec<f64> = c
                .cpu_ms
                .iter()
                .zip(&ga.cpu_ms)
                .map(|(x, g)| x / g)
                .collect();
            let (lo, hi) = bootstrap_median(&ratios);
            println!(
                "| {} | {:.3} | {:+.3} | {:.3} | {:.3} | {:.3}–{:.3} | {:+.0} |{}",
                label(c),
                median(&c.cpu_ms),
                median(&c.cpu_ms) - floor,
                median(&c.cpu_ms) / median(&ga.cpu_ms),
                median(&ratios),
                lo,
                hi,
                median(&c.rss_kib) - median(&ga.rss_kib),
                daemon_cell(c),
            );
        }
    }
    Ok(())
}

/// A 95 % percentile bootstrap interval of the median of `v`: 2,000
/// resamples with replacement (xorshift, a fixed seed).
fn bootstrap_median(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Shuffle(0x2545_F491_4F6C_DD1D);
    let mut sample = vec![0.0; v.len()];
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            for x in sample.iter_mut() {
                *x = v[(rng.next() % v.len() as u64) as usize];
            }
            sample.sort_by(|a, b| a.total_cmp(b));
            let mid = sample.len() / 2;
            if sample.len() % 2 == 1 {
                sample[mid]
            } else {
                (sample[mid - 1] + sample[mid]) / 2.0
            }
        })
        .collect();
    medians.sort_by(|a, b| a.total_cmp(b));
    (quantile(&medians, 0.025), quantile(&medians, 0.975))
}

fn report(args: &Args, cases: &[Case], rtts: &[f64]) {
    let title = if args.label.is_empty() {
        String::new()
    } else {
        format!(" — {}", args.label)
    };
    println!(
        "### One authentication, whole process{title}\n\n`{} SERVICE {} authenticate`, {} interleaved rounds \
         (after {} warm-up rounds), private /etc/pam.d, syslog to a drained /dev/log.\n",
        args.pamtester.join(" "),
        args.user,
        args.runs,
        args.warmup
    );
    println!(
        "| stack | median ms | min–max ms | p90 ms | CPU ms (median) | peak RSS KiB (median, max) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for c in cases {
        let s = sorted(&c.wall_ms);
        println!(
            "| {} | {:.2} | {:.2}–{:.2} | {:.2} | {:.2} | {:.0}, {:.0} |",
            c.name,
            median(&c.wall_ms),
            s[0],
            s[s.len() - 1],
            quantile(&c.wall_ms, 0.9),
            median(&c.cpu_ms),
            median(&c.rss_kib),
            quantile(&c.rss_kib, 1.0),
        );
    }
    if !rtts.is_empty() {
        let s = sorted(rtts);
        println!(
            "| (reference) one HTTP round trip to the fake, std TcpStream | {:.2} | {:.2}–{:.2} | {:.2} | | |",
            median(rtts),
            s[0],
            s[s.len() - 1],
            quantile(rtts, 0.9)
        );
    }
    let find = |n: &str| cases.iter().find(|c| c.name == n);
    let (Some(permit), Some(ga)) = (find("pam_permit"), find("pam_google_authenticator")) else {
        return;
    };
    let floor = median(&permit.wall_ms);
    let floor_cpu = median(&permit.cpu_ms);
    println!(
        "\n| stack | wall ÷ GA (medians) | wall ÷ GA (median of per-round ratios) | CPU ÷ GA (medians) | CPU ÷ GA (median of per-round ratios) | wall over pam_permit, ms | CPU over pam_permit, ms | peak RSS − GA, KiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in cases.iter().filter(|c| c.name != "pam_permit") {
        let is_ga = c.name == ga.name;
        let per_round = |mine: &[f64], ga: &[f64]| -> Vec<f64> {
            mine.iter().zip(ga).map(|(x, g)| x / g).collect()
        };
        let paired = per_round(&c.wall_ms, &ga.wall_ms);
        let paired_cpu = per_round(&c.cpu_ms, &ga.cpu_ms);
        let ratio = |v: f64| {
            if is_ga {
                "1 (reference)".to_string()
            } else {
                format!("{v:.2}")
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {:+.2} | {:+.2} | {:+.0} |",
            c.name,
            ratio(median(&c.wall_ms) / median(&ga.wall_ms)),
            ratio(median(&paired)),
            ratio(median(&c.cpu_ms) / median(&ga.cpu_ms)),
            ratio(median(&paired_cpu)),
            median(&c.wall_ms) - floor,
            median(&c.cpu_ms) - floor_cpu,
            median(&c.rss_kib) - median(&ga.rss_kib),
        );
    }
    report_arrivals(cases);
    if !args.sizes.is_empty() {
        println!("\n| module file | bytes |\n|---|---:|");
        for (label, path) in &args.sizes {
            match std::fs::metadata(path) {
                Ok(m) => println!("| {label} | {} |", m.len()),
                Err(e) => println!("| {label} | ({}: {e}) |", path.display()),
            }
        }
    }
}

/// From pamtester's start to the message at the TLS fake, for the cases
/// that send there; and the daemon's time over the direct one's.
fn report_arrivals(cases: &[Case]) {
    let timed: Vec<&Case> = cases.iter().filter(|c| !c.arrive_ms.is_empty()).collect();
    if timed.is_empty() {
        return;
    }
    println!(
        "\n| until the message reaches the (TLS) fake Bot API, from pamtester's start | median ms | min–max ms | p90 ms | runs timed |"
    );
    println!("|---|---:|---:|---:|---:|");
    for c in &timed {
        let s = sorted(&c.arrive_ms);
        println!(
            "| {} | {:.2} | {:.2}–{:.2} | {:.2} | {} |",
            c.name,
            median(&c.arrive_ms),
            s[0],
            s[s.len() - 1],
            quantile(&c.arrive_ms, 0.9),
            c.arrive_ms.len()
        );
    }
    let find = |service: &str| timed.iter().find(|c| c.service == service);
    if let (Some(direct), Some(daemon)) = (find("bench-gw-slow"), find("bench-gw-slow-daemon")) {
        println!(
            "\nWith the added round-trip time, via pam-gatewayd ÷ direct (medians): {:.2}",
            median(&daemon.arrive_ms) / median(&direct.arrive_ms)
        );
    }
}

/// Binds the syslog socket, drains it, runs `--inner` in the namespace.
fn outer(args: &Args, argv: &[String]) -> Result<(), String> {
    let sock_path = args.dir.join("log.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).map_err(|e| format!("syslog socket: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let lines = Arc::new(AtomicUsize::new(0));
    let drain = {
        let (stop, lines) = (Arc::clone(&stop), Arc::clone(&lines));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while !stop.load(Ordering::SeqCst) {
                if sock.recv(&mut buf).is_ok() {
                    lines.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("bwrap");
    cmd.args(["--bind", "/", "/", "--dev", "/dev", "--bind"])
        .arg(args.dir.join("pam.d"))
        .arg("/etc/pam.d")
        .arg("--bind")
        .arg(&sock_path)
        .arg("/dev/log");
    for dir in &args.tmpfs {
        cmd.arg("--tmpfs").arg(dir);
    }
    if let Some(bundle) = &args.bundle {
        cmd.arg("--bind")
            .arg(bundle)
            .arg("/etc/ssl/certs/ca-certificates.crt");
    }
    let status = cmd
        .arg("--die-with-parent")
        .arg("--")
        .arg(exe)
        .arg("--inner")
        .args(argv)
        .status()
        .map_err(|e| format!("cannot run bwrap (apt-get install bubblewrap): {e}"))?;
    stop.store(true, Ordering::SeqCst);
    let _ = drain.join();
    let _ = std::fs::remove_file(&sock_path);
    if !status.success() {
        return Err("the measurement failed (see above)".into());
    }
    println!(
        "\n({} syslog lines received from the modules.)",
        lines.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pam_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.inner {
        inner(&args)
    } else {
        outer(&args, &argv)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pam_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
