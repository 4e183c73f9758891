//! One authentication, as plain Rust: no PAM types here.
//!
//! The PAM layer (`pam_module.rs`) gathers the login's facts, loads the
//! files and hands this module a [`Conversation`], a [`Clock`], a
//! [`CodeSource`], a [`Log`] and the user's delivery [`Route`]s. Tests drive
//! the same function with scripted fakes.

use std::time::Duration;

use zeroize::Zeroize;

use crate::code::{Code, CodeSource, MAX_ANSWER_LEN};
use crate::config::{Config, FailMode, Unenrolled};
use crate::gateway::{DeliveryError, Gateway};
use crate::log::{Level, Log};
use crate::users::mask;

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
    /// Something on this machine failed (no randomness).
    SystemError,
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
            "user" => out.push_str(&ctx.user),
            "host" => out.push_str(&ctx.host),
            "service" => out.push_str(&ctx.service),
            "rhost" => out.push_str(ctx.rhost_or_local()),
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

/// Printable, bounded form of a value from PAM for log lines: control
/// characters (forged log lines) and quotes replaced, at most 128 chars.
pub fn clean(value: &str) -> String {
    clean_max(value, 128)
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

    /// Runs one authentication to its [`Outcome`].
    pub fn authenticate(&mut self, ctx: &LoginContext, enrolment: Enrolment) -> Outcome {
        let attempts = self.config.code.attempts;
        let routes = match enrolment {
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
                    return match self.ask(ctx, None, "Verification code: ", attempts) {
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
        let issued_at = self.clock.now();
        let text = render_message(&self.config.template, ctx, &code, self.config.code.ttl);

        let mut failures: Vec<String> = Vec::new();
        let mut only_unreachable = true;
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
                    if !matches!(e, DeliveryError::Unreachable(_)) {
                        only_unreachable = false;
                    }
                    let line = format!("{}: {e}", route.gateway.id());
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
            let reason = if failures.is_empty() {
                "the user's entry names no gateway".to_string()
            } else {
                failures.join("; ")
            };
            // failmode=safe covers a service we cannot reach. A refusal
            // (rate limit, blocked bot) or a misconfiguration can be caused
            // or kept up on purpose, so it always denies.
            let outcome = match self.config.failmode {
                FailMode::Safe if only_unreachable && !failures.is_empty() => {
                    Outcome::DeliveryFailedIgnored
                }
                _ => Outcome::DeliveryFailedDenied,
            };
            return self.finish(ctx, first_gateway, outcome, &reason);
        };

        let gateway = route.gateway.id();
        let prompt = prompt_for(route);
        let deadline = issued_at + self.config.code.ttl;
        match self.ask(ctx, Some((&code, deadline)), &prompt, attempts) {
            Err(outcome) => self.finish(ctx, gateway, outcome, "conversation failed"),
            Ok(AskResult::Matched) => {
                self.finish(ctx, gateway, Outcome::Success { gateway }, "code accepted")
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
        }
    }

    /// Prompts up to `attempts` times. With `expected = None` no answer can
    /// match (nothing was sent), but the dialogue looks the same.
    fn ask(
        &mut self,
        ctx: &LoginContext,
        expected: Option<(&Code, Duration)>,
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
            if let Some((code, deadline)) = expected {
                if self.clock.now() > deadline {
                    let _ = self.conv.error("The code has expired.");
                    return Ok(AskResult::Expired);
                }
                if answer.as_bytes().len() <= MAX_ANSWER_LEN && code.matches(answer.as_bytes()) {
                    return Ok(AskResult::Matched);
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
    Matched,
    Expired,
    Exhausted,
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
