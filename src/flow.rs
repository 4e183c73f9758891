//! One authentication, as plain Rust: no PAM types here.
//!
//! The PAM layer (the module crate, `module/src/lib.rs`) gathers the login's facts, loads the
//! files and hands this module a [`Conversation`], a [`Clock`], a
//! [`CodeSource`], a [`Log`] and the user's delivery [`Route`]s. Tests drive
//! the same function with scripted fakes.

use std::time::Duration;

use zeroize::Zeroize;

use crate::backup_codes;
use crate::code::{Code, CodeSource, MAX_ANSWER_LEN};
use crate::config::{Config, FailMode, Unenrolled};
use crate::gateway::Gateway;
use crate::limits::{self, Block, wait_text};
use crate::log::{Level, Log};
use crate::policy::{Coverage, Groups};
use crate::redact::mask;
use crate::state::{StateStore, WallClock, update_with};
use crate::totp::TotpKey;

/// A user's answer to a prompt; wiped on drop.
pub struct Answer(Vec<u8>);

impl Answer {
    pub fn new(bytes: Vec<u8>) -> Answer {
        Answer(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The conversation failed: EOF, no terminal, the client hung up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvError(pub String);

/// The application's side of the dialogue (PAM conversation in production).
pub trait Conversation {
    /// Asks with echo off. `Ok(None)`: the application gave no answer.
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError>;
    /// Shows an error line (PAM_ERROR_MSG).
    fn error(&mut self, text: &str) -> Result<(), ConvError>;
    /// Shows an informational line (PAM_TEXT_INFO). By default dropped.
    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        let _ = text;
        Ok(())
    }
}

/// Monotonic time since an arbitrary start: expiry must not follow changes
/// of the wall clock.
pub trait Clock {
    fn now(&self) -> Duration;
}

/// The system's monotonic clock.
pub struct MonotonicClock {
    start: std::time::Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            start: std::time::Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Facts about this login, as PAM gave them.
#[derive(Debug, Clone, Default)]
pub struct LoginContext {
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    /// This machine's name, for the message.
    pub host: String,
    /// PAM_AUTHTOK is OpenSSH's marker for a wrong password.
    pub password_was_wrong: bool,
    /// The process's real uid is 0 (sshd, login, root's own su). Under su
    /// or sudo run by a user it is not, and that caller can stop the process
    /// or starve it of resources at will: a failure the remote side did not
    /// prove is then never a reason to skip the code. `false` (the default)
    /// is the strict reading.
    pub caller_is_root: bool,
}

impl LoginContext {
    fn rhost_or_local(&self) -> &str {
        self.rhost
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or("local")
    }
}

/// One way to reach the user: a gateway and the recipient there.
pub struct Route {
    pub gateway: Box<dyn Gateway>,
    pub recipient: String,
}

/// The user's entry in the users file, as routes.
pub enum Enrolment {
    /// The name PAM gave is not an account NSS knows (a typo, an attacker's
    /// guess, or a spelling the account database does not resolve): denied
    /// whatever `unenrolled` says, after the same prompts as a real login.
    UnknownUser,
    NotEnrolled,
    Enrolled(Vec<Route>),
}

/// How an authentication ended. The PAM layer maps each to a return code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The right code, in time.
    Success { gateway: &'static str },
    /// Wrong answers until all attempts were used.
    MaxTries,
    /// The code expired before the right answer came.
    Expired,
    /// No entry, `unenrolled = "deny"`: prompted, sent nothing, failed.
    NotEnrolledDenied,
    /// No entry, `unenrolled = "ignore"`.
    NotEnrolledIgnored,
    /// OpenSSH's wrong-password marker: prompted, sent nothing, failed.
    WrongPassword,
    /// No gateway delivered and the fail mode (or the kind of failure) denies.
    DeliveryFailedDenied,
    /// No gateway could be reached and `failmode = "safe"`.
    DeliveryFailedIgnored,
    /// The conversation broke (EOF, no terminal).
    ConversationFailed,
    /// Something on this machine failed (no randomness, group lookup).
    SystemError,
    /// Too many wrong answers: locked out, nothing sent or accepted.
    LockedOut,
    /// `codes_per_window` codes were sent already and no fallback factor
    /// is set up: nothing sent.
    RateLimited,
    /// `[policy]` does not cover this login (exempt network or group).
    PolicyIgnored,
    /// The user's state file is unsafe, corrupt or cannot be written.
    StateFailed,
    /// The account is unknown to NSS: prompted, sent nothing, failed.
    UnknownUser,
}

impl Outcome {
    /// The word for the log's `result=` field.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::MaxTries => "denied-max-tries",
            Outcome::Expired => "denied-expired",
            Outcome::NotEnrolledDenied => "denied-not-enrolled",
            Outcome::NotEnrolledIgnored => "ignored-not-enrolled",
            Outcome::WrongPassword => "denied-wrong-password",
            Outcome::DeliveryFailedDenied => "denied-delivery-failed",
            Outcome::DeliveryFailedIgnored => "ignored-delivery-failed",
            Outcome::ConversationFailed => "conversation-error",
            Outcome::SystemError => "system-error",
            Outcome::LockedOut => "denied-locked-out",
            Outcome::RateLimited => "denied-rate-limited",
            Outcome::PolicyIgnored => "ignored-policy",
            Outcome::StateFailed => "denied-state-error",
            Outcome::UnknownUser => "denied-unknown-user",
        }
    }
}

/// Everything one authentication needs besides the login's facts.
pub struct Flow<'a> {
    pub config: &'a Config,
    pub conv: &'a mut dyn Conversation,
    pub clock: &'a dyn Clock,
    pub codes: &'a mut dyn CodeSource,
    pub log: &'a mut dyn Log,
    pub debug: bool,
    /// Per-user state: limits, TOTP replay guard, backup codes.
    pub state: &'a dyn StateStore,
    /// Wall-clock time for the persistent limits and TOTP.
    pub wall: &'a dyn WallClock,
    /// Group lookups for `[policy]`.
    pub groups: &'a dyn Groups,
    /// The user's authenticator secret, if they have one.
    pub totp: Option<&'a TotpKey>,
}

/// The ways a second factor can be proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    /// The code sent through this gateway.
    Sent(&'static str),
    Totp,
    Backup {
        left: usize,
    },
}

impl Factor {
    fn id(&self) -> &'static str {
        match self {
            Factor::Sent(gateway) => gateway,
            Factor::Totp => "totp",
            Factor::Backup { .. } => "backup-code",
        }
    }
}

/// The fallback factors a user has.
#[derive(Debug, Clone, Copy)]
struct Fallback {
    totp: bool,
    backup: bool,
}

impl Fallback {
    fn any(&self) -> bool {
        self.totp || self.backup
    }
    fn prompt(&self) -> &'static str {
        match (self.totp, self.backup) {
            (true, true) => "Authenticator or backup code: ",
            (true, false) => "Authenticator code: ",
            _ => "Backup code: ",
        }
    }
}

/// What an answer may match.
struct Expect<'c> {
    /// The code that was sent, its deadline and gateway.
    code: Option<(&'c Code, Duration, &'static str)>,
}

/// How one answer was judged.
enum Verdict {
    Accepted(Factor),
    /// The sent code, but too late.
    Expired,
    Wrong {
        expired: bool,
        replay: bool,
        locked_until: Option<u64>,
    },
    Locked(u64),
}

/// Fills the message template.
pub fn render_message(template: &str, ctx: &LoginContext, code: &Code, ttl: Duration) -> String {
    let minutes = ttl.as_secs().div_ceil(60).to_string();
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        match &after[..end] {
            "code" => out.push_str(code.expose()),
            "user" => out.push_str(&message_field(&ctx.user)),
            "host" => out.push_str(&message_field(&ctx.host)),
            "service" => out.push_str(&message_field(&ctx.service)),
            "rhost" => out.push_str(&message_field(ctx.rhost_or_local())),
            "minutes" => out.push_str(&minutes),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A value from PAM as a log field ([`crate::log::field`]): bare when
/// plain, otherwise quoted and escaped, so it cannot forge a line or a field.
pub fn clean(value: &str) -> String {
    crate::log::field(value)
}

/// A value from PAM (user, service, remote host) as it goes into the
/// message: control characters replaced (a newline in PAM_RHOST must not
/// write lines of its own into the user's chat), at most 128 characters.
pub fn message_field(value: &str) -> String {
    value
        .chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Like [`clean`] with another bound: delivery errors are longer (one per
/// gateway tried) and are our own text.
fn clean_max(value: &str, max: usize) -> String {
    value
        .chars()
        .take(max)
        .map(|c| if c.is_control() || c == '"' { '?' } else { c })
        .collect()
}

impl Flow<'_> {
    fn debug(&mut self, ctx: &LoginContext, step: &str) {
        if self.debug {
            self.log.log(
                Level::Debug,
                &format!("user={} step: {step}", clean(&ctx.user)),
            );
        }
    }

    fn finish(
        &mut self,
        ctx: &LoginContext,
        gateway: &str,
        outcome: Outcome,
        reason: &str,
    ) -> Outcome {
        let level = match outcome {
            Outcome::Success { .. } | Outcome::NotEnrolledIgnored => Level::Info,
            Outcome::SystemError | Outcome::DeliveryFailedDenied => Level::Error,
            _ => Level::Warning,
        };
        self.log.log(
            level,
            &format!(
                "user={} service={} rhost={} tty={} gateway={} result={} reason=\"{}\"",
                clean(&ctx.user),
                clean(&ctx.service),
                clean(ctx.rhost_or_local()),
                clean(ctx.tty.as_deref().unwrap_or("-")),
                gateway,
                outcome.label(),
                clean_max(reason, 1000),
            ),
        );
        outcome
    }

    /// A log line about this login that is not its result.
    fn note(&mut self, ctx: &LoginContext, level: Level, text: &str) {
        self.log.log(
            level,
            &format!(
                "user={} rhost={} {}",
                clean(&ctx.user),
                clean(ctx.rhost_or_local()),
                clean_max(text, 1000)
            ),
        );
    }

    /// Runs one authentication to its [`Outcome`].
    pub fn authenticate(&mut self, ctx: &LoginContext, enrolment: Enrolment) -> Outcome {
        let attempts = self.config.code.attempts;
        if matches!(enrolment, Enrolment::UnknownUser) {
            // Before [policy] and `unenrolled`: neither may wave through a
            // name the account database does not know. Same prompts as a
            // real login; nothing is sent.
            self.debug(ctx, "user unknown to NSS: prompting without sending");
            let prompt = decoy_prompt(self.config, &ctx.user);
            return match self.ask(ctx, None, &prompt, attempts) {
                Err(outcome) => self.finish(ctx, "-", outcome, "conversation failed"),
                Ok(_) => self.finish(
                    ctx,
                    "-",
                    Outcome::UnknownUser,
                    "no account of this name (NSS getpwnam); denied whatever unenrolled says",
                ),
            };
        }
        match self
            .config
            .access
            .coverage(&ctx.user, ctx.rhost.as_deref(), self.groups)
        {
            Ok(Coverage::Covered) => {}
            Ok(Coverage::Exempt(why)) => {
                return self.finish(
                    ctx,
                    "-",
                    Outcome::PolicyIgnored,
                    &format!("not covered by [policy]: {why}"),
                );
            }
            Err(e) => {
                return self.finish(
                    ctx,
                    "-",
                    Outcome::SystemError,
                    &format!("[policy] cannot be applied: {e}"),
                );
            }
        }
        let routes = match enrolment {
            Enrolment::UnknownUser => {
                return self.finish(ctx, "-", Outcome::UnknownUser, "no account of this name");
            }
            Enrolment::NotEnrolled => match self.config.unenrolled {
                Unenrolled::Ignore => {
                    return self.finish(
                        ctx,
                        "-",
                        Outcome::NotEnrolledIgnored,
                        "user has no entry in the users file; unenrolled=ignore",
                    );
                }
                Unenrolled::Deny => {
                    // Same prompts as a real login, so enrolment does not leak
                    // through behaviour; nothing is sent.
                    self.debug(ctx, "not enrolled: prompting without sending");
                    let prompt = decoy_prompt(self.config, &ctx.user);
                    return match self.ask(ctx, None, &prompt, attempts) {
                        Err(outcome) => self.finish(ctx, "-", outcome, "conversation failed"),
                        Ok(_) => self.finish(
                            ctx,
                            "-",
                            Outcome::NotEnrolledDenied,
                            "user has no entry in the users file; unenrolled=deny",
                        ),
                    };
                }
            },
            Enrolment::Enrolled(routes) => routes,
        };

        let first_prompt = match routes.first() {
            Some(r) => prompt_for(r),
            None => "Verification code: ".to_string(),
        };
        let first_gateway = routes.first().map(|r| r.gateway.id()).unwrap_or("-");

        if ctx.password_was_wrong {
            // The first factor already failed: sending would let anyone who
            // knows a user name make the bot spam that user.
            self.debug(
                ctx,
                "OpenSSH marks the password as wrong: prompting without sending",
            );
            return match self.ask(ctx, None, &first_prompt, attempts) {
                Err(outcome) => self.finish(ctx, first_gateway, outcome, "conversation failed"),
                Ok(_) => self.finish(
                    ctx,
                    first_gateway,
                    Outcome::WrongPassword,
                    "first factor failed (OpenSSH wrong-password marker); no code sent",
                ),
            };
        }

        let code = match self.codes.generate(self.config.code.digits) {
            Ok(c) => c,
            Err(e) => return self.finish(ctx, first_gateway, Outcome::SystemError, &e),
        };

        // Reserve this send under the user's lock before anything goes out,
        // so concurrent logins are counted exactly.
        let now = self.wall.unix_now();
        let limits = &self.config.limits;
        let reserved = update_with(self.state, &ctx.user, |s| {
            (limits::reserve_send(s, limits, now), s.backup_codes.len())
        });
        let (reservation, backup_left) = match reserved {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .conv
                    .error("Login refused: the login state cannot be read. Tell your admin.");
                return self.finish(ctx, first_gateway, Outcome::StateFailed, &e.to_string());
            }
        };
        let fallback = Fallback {
            totp: self.totp.is_some(),
            backup: backup_left > 0,
        };
        match reservation {
            Ok(()) => {}
            Err(Block::LockedOut { until }) => {
                let wait = wait_text(until, now);
                if fallback.backup {
                    // The lockout may be someone else's doing (they have the
                    // password): the user's backup codes still work, under
                    // their own limit (limits::LOCKOUT_BACKUP_TRIES).
                    self.note(
                        ctx,
                        Level::Warning,
                        &format!(
                            "locked out (retry in {wait}); no code sent; asking for a backup code"
                        ),
                    );
                    let prompt = format!(
                        "Too many wrong codes: no code sent (try again in {wait}). Backup code: "
                    );
                    let result = self.ask(ctx, Some(Expect { code: None }), &prompt, attempts);
                    return self.conclude(ctx, first_gateway, result, attempts);
                }
                let _ = self
                    .conv
                    .error(&format!("Too many wrong codes. Try again in {wait}."));
                return self.finish(
                    ctx,
                    first_gateway,
                    Outcome::LockedOut,
                    &format!(
                        "locked out after too many wrong codes; no code sent; retry in {wait}"
                    ),
                );
            }
            Err(Block::TooManyCodes { until }) => {
                let wait = wait_text(until, now);
                let why = format!(
                    "{} code(s) sent in the last {} s, the [limits] codes_per_window; \
                     no code sent; next in {wait}",
                    self.config.limits.codes_per_window, self.config.limits.window
                );
                if fallback.any() {
                    self.note(
                        ctx,
                        Level::Warning,
                        &format!("limit: {why}; asking for a fallback factor"),
                    );
                    let prompt = format!(
                        "No new code sent (limit reached; next in {wait}). {}",
                        fallback.prompt()
                    );
                    let result = self.ask(ctx, Some(Expect { code: None }), &prompt, attempts);
                    return self.conclude(ctx, first_gateway, result, attempts);
                }
                let _ = self.conv.error(&format!(
                    "Too many codes requested: no code sent. Try again in {wait}."
                ));
                return self.finish(ctx, first_gateway, Outcome::RateLimited, &why);
            }
        }
        let issued_at = self.clock.now();
        let text = render_message(&self.config.template, ctx, &code, self.config.code.ttl);

        let mut failures: Vec<String> = Vec::new();
        // failmode=safe may excuse every failure so far: the service could
        // not be reached, and (unless the caller is root) the remote side
        // proved it. A caller of su/sudo can stop this process past the
        // timeout or starve it of file descriptors, never make a peer
        // refuse a connection or answer 503.
        let mut safe_may_excuse = true;
        // Certainly no message reached anyone: only then is the reservation
        // given back. A send whose fate is unknown counts as sent.
        let mut nothing_delivered = true;
        let mut delivered: Option<&Route> = None;
        for route in &routes {
            self.debug(
                ctx,
                &format!(
                    "sending via {} to {}",
                    route.gateway.id(),
                    mask(&route.recipient)
                ),
            );
            match route.gateway.send(&route.recipient, &text) {
                Ok(()) => {
                    delivered = Some(route);
                    break;
                }
                Err(e) => {
                    safe_may_excuse &=
                        e.is_unreachable() && (ctx.caller_is_root || e.proven_remote());
                    nothing_delivered &= e.nothing_delivered();
                    // A service may echo the request in its error: the code
                    // must not reach the log (the next route delivers it).
                    let line =
                        format!("{}: {e}", route.gateway.id()).replace(code.expose(), "[code]");
                    self.log.log(
                        Level::Warning,
                        &format!(
                            "user={} delivery failed: {}",
                            clean(&ctx.user),
                            clean_max(&line, 400)
                        ),
                    );
                    failures.push(line);
                }
            }
        }
        let mut text = text;
        text.zeroize();

        let Some(route) = delivered else {
            if nothing_delivered {
                // No code reached the user: the reservation does not count.
                if let Err(e) = update_with(self.state, &ctx.user, |s| limits::release_send(s, now))
                {
                    self.note(
                        ctx,
                        Level::Warning,
                        &format!("could not give back the unused send: {e}"),
                    );
                }
            }
            let mut reason = if failures.is_empty() {
                "the user's entry names no gateway".to_string()
            } else {
                failures.join("; ")
            };
            if !nothing_delivered {
                reason.push_str("; counted against codes_per_window: a send may have got through");
            }
            if fallback.any() {
                // A user with an authenticator or backup codes is asked for
                // one instead of being refused (or waved through).
                self.note(
                    ctx,
                    Level::Info,
                    &format!("no code delivered ({reason}); asking for a fallback factor"),
                );
                let prompt = match routes.first() {
                    Some(r) => format!(
                        "Could not send a code via {}. {}",
                        r.gateway.display_name(),
                        fallback.prompt()
                    ),
                    None => fallback.prompt().to_string(),
                };
                drop(routes);
                let result = self.ask(ctx, Some(Expect { code: None }), &prompt, attempts);
                return self.conclude(ctx, first_gateway, result, attempts);
            }
            // failmode=safe covers a service we cannot reach. A refusal
            // (rate limit, blocked bot) or a misconfiguration can be caused
            // or kept up on purpose, so it always denies.
            let outcome = match self.config.failmode {
                FailMode::Safe if safe_may_excuse && !failures.is_empty() => {
                    Outcome::DeliveryFailedIgnored
                }
                FailMode::Safe => {
                    reason.push_str(
                        "; failmode=safe not applied: a local failure, a refusal, or (the \
                         caller not being root) no proof that the service failed",
                    );
                    Outcome::DeliveryFailedDenied
                }
                FailMode::Secure => Outcome::DeliveryFailedDenied,
            };
            return self.finish(ctx, first_gateway, outcome, &reason);
        };

        let gateway = route.gateway.id();
        let prompt = prompt_for(route);
        // The user may take minutes to answer: the gateways' HTTP clients
        // (reqwest's runtime thread, its epoll and sockets) go now, not at
        // the end of the login.
        drop(routes);
        let deadline = issued_at + self.config.code.ttl;
        let expect = Expect {
            code: Some((&code, deadline, gateway)),
        };
        let result = self.ask(ctx, Some(expect), &prompt, attempts);
        self.conclude(ctx, gateway, result, attempts)
    }

    /// Maps how the prompting ended to the outcome, and logs it.
    fn conclude(
        &mut self,
        ctx: &LoginContext,
        gateway: &'static str,
        result: Result<AskResult, Outcome>,
        attempts: u32,
    ) -> Outcome {
        match result {
            Err(outcome) => self.finish(ctx, gateway, outcome, "conversation failed"),
            Ok(AskResult::Matched(factor)) => {
                let reason = match factor {
                    Factor::Sent(_) => "code accepted".to_string(),
                    Factor::Totp => "authenticator code accepted".to_string(),
                    Factor::Backup { left } => {
                        format!("backup code accepted; {left} left")
                    }
                };
                let id = factor.id();
                self.finish(ctx, id, Outcome::Success { gateway: id }, &reason)
            }
            Ok(AskResult::Expired) => self.finish(
                ctx,
                gateway,
                Outcome::Expired,
                "answer came after the code expired",
            ),
            Ok(AskResult::Exhausted) => self.finish(
                ctx,
                gateway,
                Outcome::MaxTries,
                &format!("{attempts} wrong code(s)"),
            ),
            Ok(AskResult::LockedOut { until, started }) => {
                let wait = wait_text(until, self.wall.unix_now());
                let reason = if started {
                    format!(
                        "{} wrong codes in a row: locked out for {wait}",
                        self.config.limits.failures_before_lockout
                    )
                } else {
                    format!("locked out (by another login's wrong codes); retry in {wait}")
                };
                self.finish(ctx, gateway, Outcome::LockedOut, &reason)
            }
            Ok(AskResult::StateFailed(e)) => self.finish(ctx, gateway, Outcome::StateFailed, &e),
        }
    }

    /// Judges one answer under the user's lock: the lockout first, then the
    /// sent code, an authenticator code, a backup code; anything else is a
    /// wrong answer and counts towards the lockout.
    fn judge(
        &mut self,
        ctx: &LoginContext,
        expect: &Expect<'_>,
        answer: &Answer,
    ) -> Result<Verdict, String> {
        let bytes = answer.as_bytes();
        // An absurdly long answer is wrong without further work.
        let bytes_ok = bytes.len() <= MAX_ANSWER_LEN;
        let expired = expect
            .code
            .is_some_and(|(_, deadline, _)| self.clock.now() > deadline);
        let now = self.wall.unix_now();
        let limits = &self.config.limits;
        let totp = self.totp;
        update_with(self.state, &ctx.user, |s| {
            if let Some(until) = limits::locked_until(s, limits, now) {
                // During a lockout only a backup code is checked, and only
                // LOCKOUT_BACKUP_TRIES of them: the user's way in that
                // someone who merely has the password does not have.
                if bytes_ok
                    && !s.backup_codes.is_empty()
                    && backup_codes::normalize(bytes).is_some()
                    && s.lockout_backup_tries < limits::LOCKOUT_BACKUP_TRIES
                {
                    s.lockout_backup_tries += 1;
                    if let Some(i) = backup_codes::find_match(&s.backup_codes, bytes) {
                        s.backup_codes.remove(i);
                        limits::record_success(s);
                        return Verdict::Accepted(Factor::Backup {
                            left: s.backup_codes.len(),
                        });
                    }
                }
                return Verdict::Locked(until);
            }
            let mut replay = false;
            if bytes_ok {
                if let Some((code, _, gateway)) = expect.code {
                    if code.matches(bytes) {
                        if expired {
                            return Verdict::Expired;
                        }
                        limits::record_success(s);
                        return Verdict::Accepted(Factor::Sent(gateway));
                    }
                }
                if let Some(step) = totp.and_then(|k| k.matching_step(bytes, now)) {
                    if s.totp_last_step.is_none_or(|last| step > last) {
                        s.totp_last_step = Some(step);
                        limits::record_success(s);
                        return Verdict::Accepted(Factor::Totp);
                    }
                    replay = true;
                }
                if let Some(i) = backup_codes::find_match(&s.backup_codes, bytes) {
                    s.backup_codes.remove(i);
                    limits::record_success(s);
                    return Verdict::Accepted(Factor::Backup {
                        left: s.backup_codes.len(),
                    });
                }
            }
            Verdict::Wrong {
                expired,
                replay,
                locked_until: limits::record_failure(s, limits, now),
            }
        })
        .map_err(|e| e.to_string())
    }

    /// Prompts up to `attempts` times. With `expected = None` no answer can
    /// match (nothing was sent), but the dialogue looks the same.
    fn ask(
        &mut self,
        ctx: &LoginContext,
        expected: Option<Expect<'_>>,
        prompt: &str,
        attempts: u32,
    ) -> Result<AskResult, Outcome> {
        for attempt in 1..=attempts {
            let answer = match self.conv.prompt_hidden(prompt) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    self.debug(ctx, "conversation returned no answer");
                    return Err(Outcome::ConversationFailed);
                }
                Err(ConvError(e)) => {
                    self.debug(ctx, &format!("conversation error: {e}"));
                    return Err(Outcome::ConversationFailed);
                }
            };
            if let Some(expect) = &expected {
                let verdict = match self.judge(ctx, expect, &answer) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = self.conv.error(
                            "Login refused: the login state cannot be saved. Tell your admin.",
                        );
                        return Ok(AskResult::StateFailed(e));
                    }
                };
                match verdict {
                    Verdict::Accepted(factor) => {
                        if let Factor::Backup { left } = factor {
                            let text = match left {
                                0 => "Backup code accepted. That was your last one: \
                                      ask your admin for new backup codes."
                                    .to_string(),
                                1 => "Backup code accepted. 1 backup code left.".to_string(),
                                n => format!("Backup code accepted. {n} backup codes left."),
                            };
                            let _ = self.conv.info(&text);
                        }
                        return Ok(AskResult::Matched(factor));
                    }
                    Verdict::Expired => {
                        let _ = self.conv.error("The code has expired.");
                        return Ok(AskResult::Expired);
                    }
                    Verdict::Locked(until) => {
                        let wait = wait_text(until, self.wall.unix_now());
                        let _ = self
                            .conv
                            .error(&format!("Too many wrong codes. Try again in {wait}."));
                        return Ok(AskResult::LockedOut {
                            until,
                            started: false,
                        });
                    }
                    Verdict::Wrong {
                        expired,
                        replay,
                        locked_until,
                    } => {
                        if replay {
                            self.note(
                                ctx,
                                Level::Warning,
                                "an authenticator code was used a second time: refused",
                            );
                        }
                        if let Some(until) = locked_until {
                            let wait = wait_text(until, self.wall.unix_now());
                            let _ = self.conv.error(&format!(
                                "Wrong code. Too many wrong codes: try again in {wait}."
                            ));
                            return Ok(AskResult::LockedOut {
                                until,
                                started: true,
                            });
                        }
                        if expired {
                            let _ = self.conv.error("The code has expired.");
                            return Ok(AskResult::Expired);
                        }
                    }
                }
            }
            let left = attempts - attempt;
            self.debug(ctx, &format!("wrong code, {left} attempt(s) left"));
            if left > 0 {
                let msg = if left == 1 {
                    "Wrong code. 1 attempt left.".to_string()
                } else {
                    format!("Wrong code. {left} attempts left.")
                };
                if self.conv.error(&msg).is_err() {
                    return Err(Outcome::ConversationFailed);
                }
            }
        }
        Ok(AskResult::Exhausted)
    }
}

enum AskResult {
    Matched(Factor),
    Expired,
    Exhausted,
    LockedOut { until: u64, started: bool },
    StateFailed(String),
}

/// The prompt for a user without an entry under `unenrolled = "deny"`: it
/// looks like an enrolled user's (first gateway, three digits), so the prompt
/// does not tell someone who has a password whether the account is enrolled.
/// The digits are keyed on the config's secrets and stable per user.
pub fn decoy_prompt(config: &Config, user: &str) -> String {
    use sha2::Digest;
    let Some(kind) = config.gateways.first() else {
        return "Verification code: ".to_string();
    };
    let mut hash = sha2::Sha256::new();
    hash.update(config.decoy_key.0);
    hash.update(user.as_bytes());
    let digest = hash.finalize();
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1000;
    format!(
        "Code sent via {} to ***{n:03}. Verification code: ",
        config.display_name(*kind)
    )
}

/// "Code sent via Telegram to ***977. Verification code: " — OpenSSH shows
/// informational messages only after authentication, so the hint goes into
/// the prompt itself.
pub fn prompt_for(route: &Route) -> String {
    format!(
        "Code sent via {} to {}. Verification code: ",
        route.gateway.display_name(),
        mask(&route.recipient)
    )
}
