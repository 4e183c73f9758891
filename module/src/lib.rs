//! `pam_gateway.so`: the PAM layer, the only code that knows about PAM. It
//! parses the module arguments, reads the login's items, wraps the
//! conversation, runs the core's flow (`pam_gateway_core::flow`) and maps its
//! [`Outcome`] to a PAM return code. Its session hook sends the `[alert]`
//! (`pam_gateway_core::alert`) and always returns PAM_IGNORE.
//! pam-bindings wraps every hook in `catch_unwind`: a panic is PAM_ABORT
//! (the session hook catches its own, so that it stays PAM_IGNORE).

// System calls go through pam_gateway_core::system, which documents each.
#![forbid(unsafe_code)]

use std::ffi::CStr;

use pam::constants::{PAM_PROMPT_ECHO_OFF, PamFlag, PamResultCode};
use pam::conv::Conv;
use pam::items::{AuthTok, RHost, RUser, Service, Tty};
use pam::module::{PamHandle, PamHooks};

use pam_gateway_core::alert;
use pam_gateway_core::approve::hosted::{self, Hosted, Resume};
use pam_gateway_core::approve::wire::{self, Handover, PamResult, Request};
use pam_gateway_core::approve::{self, Approver};
use pam_gateway_core::code::OsCodeSource;
use pam_gateway_core::config::Config;
use pam_gateway_core::direct;
use pam_gateway_core::flow::{
    Answer, ConvError, Conversation, Flow, LoginContext, Lookup, MonotonicClock, Outcome, clean,
};
use pam_gateway_core::log::{Level, Log, SyslogLog};
use pam_gateway_core::module_args::ModuleArgs;
use pam_gateway_core::policy::SystemGroups;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::setup;
use pam_gateway_core::state::{FileStateStore, SystemWallClock};
use pam_gateway_core::system::{self, accounts, hostname};

/// What OpenSSH passes as the password when the real one was wrong (or the
/// user does not exist), so that PAM modules run the same either way.
pub const OPENSSH_WRONG_PASSWORD: &[u8] = b"\x08\n\r\x7fINCORRECT";

/// Maps an outcome to what PAM expects (DESIGN.md's table).
pub fn pam_code(outcome: &Outcome) -> PamResultCode {
    code_of(outcome.pam_result())
}

/// The return code for a [`PamResult`] (the module's own, or the one
/// pam-gatewayd sends for a login it ran).
pub fn code_of(result: PamResult) -> PamResultCode {
    match result {
        PamResult::Success => PamResultCode::PAM_SUCCESS,
        PamResult::AuthErr => PamResultCode::PAM_AUTH_ERR,
        PamResult::MaxTries => PamResultCode::PAM_MAXTRIES,
        PamResult::UserUnknown => PamResultCode::PAM_USER_UNKNOWN,
        PamResult::Ignore => PamResultCode::PAM_IGNORE,
        PamResult::ServiceErr => PamResultCode::PAM_SERVICE_ERR,
        PamResult::AuthinfoUnavail => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        PamResult::ConvErr => PamResultCode::PAM_CONV_ERR,
        PamResult::SystemErr => PamResultCode::PAM_SYSTEM_ERR,
    }
}

/// Syslog, opened at the first line: a login pam-gatewayd runs logs
/// nothing in this process.
#[derive(Default)]
struct LazyLog(Option<SyslogLog>);

impl Log for LazyLog {
    fn log(&mut self, level: Level, line: &str) {
        self.0.get_or_insert_with(SyslogLog::open).log(level, line);
    }
}

/// The first hidden prompt answered with an answer the user gave already
/// (to pam-gatewayd, which went away before it judged it).
struct Replay<'a> {
    first: Option<Answer>,
    inner: &'a mut dyn Conversation,
}

impl Conversation for Replay<'_> {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError> {
        match self.first.take() {
            Some(answer) => Ok(Some(answer)),
            None => self.inner.prompt_hidden(prompt),
        }
    }

    fn error(&mut self, text: &str) -> Result<(), ConvError> {
        self.inner.error(text)
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.inner.info(text)
    }
}

/// The application's conversation function as a [`Conversation`].
struct PamConversation<'a> {
    conv: Conv<'a>,
}

impl Conversation for PamConversation<'_> {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError> {
        match self.conv.send(PAM_PROMPT_ECHO_OFF, prompt) {
            Ok(Some(secret)) => Ok(Some(Answer::new(secret.as_bytes().to_vec()))),
            Ok(None) => Ok(None),
            Err(code) => Err(ConvError(format!("{code:?}"))),
        }
    }

    fn error(&mut self, text: &str) -> Result<(), ConvError> {
        self.conv
            .send(pam::constants::PAM_ERROR_MSG, text)
            .map(|_| ())
            .map_err(|code| ConvError(format!("{code:?}")))
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.conv
            .send(pam::constants::PAM_TEXT_INFO, text)
            .map(|_| ())
            .map_err(|code| ConvError(format!("{code:?}")))
    }
}

fn item_string<'a, T>(pamh: &'a PamHandle) -> Option<String>
where
    T: pam::items::Item<'a> + std::ops::Deref<Target = &'a CStr>,
{
    match pamh.get_item::<T>() {
        Ok(Some(v)) => Some(v.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// The stack line's arguments as strings (libpam hands them over as C
/// strings).
fn module_args(args: &[&CStr]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// gateway.toml (root's, checked), and the way to the direct library for
/// what the login sends itself (`pam_gateway_core::direct`).
fn load_config(args: &ModuleArgs) -> Result<(Config, direct::Library), setup::SetupError> {
    let (config, text) = setup::load_config_with_text(&args.config, Owner::ROOT)?;
    Ok((
        config,
        direct::Library::new(&args.config, text, Owner::ROOT),
    ))
}

fn authenticate(pamh: &mut PamHandle, args: &[&CStr]) -> PamResultCode {
    // Debug builds only: how tests/pam_real.rs checks that a panic unwinds
    // to pam-bindings' catch_unwind through the unwinder the module links
    // in (module/build.rs). A release build has no such argument.
    #[cfg(debug_assertions)]
    if args.iter().any(|a| a.to_bytes() == b"debug_panic") {
        panic!("debug_panic: a panic the stack line asked for");
    }
    let mut log = LazyLog::default();
    let raw_args = module_args(args);
    let args = match ModuleArgs::parse(&raw_args) {
        Ok(a) => a,
        Err(e) => {
            log.log(Level::Error, &format!("denied: {e}"));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };

    let given = match pamh.get_user(None) {
        Ok(u) => u,
        Err(code) => {
            log.log(
                Level::Error,
                &format!("denied: cannot get the user name ({code:?})"),
            );
            return code;
        }
    };
    let password_was_wrong = matches!(
        pamh.get_item::<AuthTok>(),
        Ok(Some(tok)) if tok.as_bytes() == OPENSSH_WRONG_PASSWORD
    );
    let facts = Facts {
        service: item_string::<Service>(pamh).unwrap_or_default(),
        rhost: item_string::<RHost>(pamh),
        tty: item_string::<Tty>(pamh),
        ruser: item_string::<RUser>(pamh),
        password_was_wrong,
        // Under su and sudo run by a user it is not: that caller may signal
        // the process and chose its resource limits.
        caller_is_root: system::real_uid() == 0,
    };
    let conv = match pamh.get_item::<Conv>() {
        Ok(Some(c)) => c,
        _ => {
            log.log(
                Level::Error,
                &format!(
                    "user={} denied: the application offers no conversation",
                    clean(&given)
                ),
            );
            return PamResultCode::PAM_CONV_ERR;
        }
    };
    let mut conversation = PamConversation { conv };

    // pam-gatewayd, if it runs, runs the login (approve::hosted); the
    // module runs it itself when it does not, declines, or goes away.
    let login = Request::Login {
        version: wire::VERSION,
        args: raw_args,
        user: given.clone(),
        service: facts.service.clone(),
        rhost: facts.rhost.clone(),
        tty: facts.tty.clone(),
        ruser: facts.ruser.clone(),
        password_was_wrong: facts.password_was_wrong,
        caller_is_root: facts.caller_is_root,
    };
    let socket = args
        .socket
        .as_deref()
        .unwrap_or(std::path::Path::new(approve::DEFAULT_SOCKET));
    let resume = match hosted::run(socket, Owner::ROOT, &login, &mut conversation) {
        Hosted::Done(result) => {
            if args.debug {
                let line = format!(
                    "user={} the login was run by pam-gatewayd: {result:?}",
                    clean(&given)
                );
                log.log(Level::Debug, &line);
            }
            return code_of(result);
        }
        Hosted::Local { why, resume } => {
            if let Some(why) = why {
                log.log(Level::Warning, &format!("user={} {why}", clean(&given)));
            }
            resume
        }
    };
    match local(&args, given, facts, &mut conversation, &mut log, resume) {
        Ok(outcome) => pam_code(&outcome),
        Err(result) => code_of(result),
    }
}

/// The login's PAM items.
struct Facts {
    service: String,
    rhost: Option<String>,
    tty: Option<String>,
    ruser: Option<String>,
    password_was_wrong: bool,
    caller_is_root: bool,
}

/// How a login run in this process starts.
enum Start<'l> {
    /// From the start, with the user's enrolment.
    Fresh(Lookup<'l>),
    /// From where pam-gatewayd left it after the code went out.
    Resumed(Handover),
}

/// The login run in this process: from the start, or (`resume`) from
/// where pam-gatewayd left it after the code went out. `Err`: ended
/// before the flow ran, logged.
fn local(
    args: &ModuleArgs,
    given: String,
    facts: Facts,
    conversation: &mut dyn Conversation,
    log: &mut LazyLog,
    resume: Option<Resume>,
) -> Result<Outcome, PamResult> {
    // One account, one name: users.toml, the state file and the group
    // checks use the account's own name (pw_name), never the spelling the
    // client typed. A name NSS does not know is denied (by the flow, after
    // the same prompts as any login); a failed lookup denies here.
    let (user, known) = setup::login_account(&given, log)?;
    // Any problem with the files denies, whatever failmode says.
    let (config, net) = setup::for_login(load_config(args), &user, "config: ", log)?;
    let users = setup::load_users(&config, Owner::ROOT);
    let users = setup::for_login(users, &user, "users file: ", log)?;
    let store = FileStateStore::new(config.state_dir.clone(), Owner::ROOT);
    // users.toml first (an entry there overrides the directory wholly),
    // then [directory], asked only once [policy] covers the login; only for
    // accounts NSS knows. A resumed login was looked up by the daemon.
    let (start, pending) = match resume {
        Some(Resume { handover, pending }) => (Start::Resumed(handover), pending),
        None => {
            let sources = setup::Sources::of_root(&config, &users, &net, &store);
            let lookup = sources.enrolment_lookup(&user, known);
            (
                Start::Fresh(setup::for_login(lookup, &user, "", log)?),
                None,
            )
        }
    };

    let ctx = LoginContext {
        user: user.clone(),
        service: facts.service,
        rhost: facts.rhost,
        tty: facts.tty,
        ruser: facts.ruser,
        host: hostname(),
        password_was_wrong: facts.password_was_wrong,
        caller_is_root: facts.caller_is_root,
    };

    // [approve]: pam-gatewayd, asked over its socket (checked as root's
    // before each request); without it the code is sent directly.
    let mut client = config
        .approve
        .enabled
        .then(|| approve::Client::new(&config.approve.socket));
    let mut replay = Replay {
        first: pending,
        inner: conversation,
    };
    let mut flow = Flow {
        config: &config,
        conv: &mut replay,
        clock: &MonotonicClock::default(),
        codes: &mut OsCodeSource,
        log,
        debug: args.debug,
        state: &store,
        wall: &SystemWallClock,
        groups: &SystemGroups,
        totp: users.get(&user).and_then(|e| e.totp_secret.as_ref()),
        approver: client.as_mut().map(|c| c as &mut dyn Approver),
    };
    let outcome = match start {
        Start::Resumed(handover) => flow.resume(&ctx, &handover),
        Start::Fresh(enrolment) => flow.authenticate(&ctx, enrolment),
    };
    // [alert]: how this login got in, for the session hook (which sshd runs
    // in another process). Never changes the result.
    alert::record_way_in_logged(&config, &store, &ctx, &outcome, log);
    Ok(outcome)
}

/// The session hook: one `[alert]` message about this login. Whatever
/// goes wrong is logged; nothing here changes the session.
fn open_session(pamh: &mut PamHandle, args: &[&CStr]) {
    let mut log = SyslogLog::open();
    let args = match ModuleArgs::parse(&module_args(args)) {
        Ok(a) => a,
        Err(e) => {
            log.log(Level::Error, &format!("session: no alert: {e}"));
            return;
        }
    };
    let Ok(given) = pamh.get_user(None) else {
        log.log(Level::Warning, "session: no alert: no user name");
        return;
    };
    let user = match accounts::canonical_user(&given) {
        Ok(Some(name)) => name,
        _ => {
            log.log(
                Level::Warning,
                &format!(
                    "user={} session: no alert: not an account NSS knows",
                    clean(&given)
                ),
            );
            return;
        }
    };
    let shown = clean(&user);
    let (config, net) = match load_config(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            log.log(
                Level::Error,
                &format!("user={shown} session: no alert: config: {e}"),
            );
            return;
        }
    };
    let service = item_string::<Service>(pamh).unwrap_or_default();
    if !config.alert.applies_to(&service) {
        if args.debug {
            log.log(
                Level::Debug,
                &format!(
                    "user={shown} session: [alert] is off or does not list service {}",
                    clean(&service)
                ),
            );
        }
        return;
    }
    let store = FileStateStore::new(config.state_dir.clone(), Owner::ROOT);
    // The user's recipients: the users file, else [directory] (or its
    // fresh cache). A users file that cannot be read: the admins only.
    let entry = match setup::load_users(&config, Owner::ROOT) {
        Ok(users) => {
            setup::Sources::of_root(&config, &users, &net, &store).alert_entry(&user, &mut log)
        }
        Err(e) => {
            log.log(
                Level::Error,
                &format!("user={shown} session: alert to the admins only: users file: {e}"),
            );
            None
        }
    };
    let ctx = LoginContext {
        user,
        service,
        rhost: item_string::<RHost>(pamh),
        tty: item_string::<Tty>(pamh),
        ruser: item_string::<RUser>(pamh),
        host: hostname(),
        password_was_wrong: false,
        caller_is_root: system::real_uid() == 0,
    };
    alert::on_session(
        &config,
        &net,
        entry.as_ref(),
        &store,
        &SystemWallClock,
        &ctx,
        &mut log,
    );
}

/// The hooks pam-bindings exports as `pam_sm_*`.
pub struct PamGateway;

impl PamHooks for PamGateway {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        authenticate(pamh, &args)
    }

    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }

    /// `session optional pam_gateway.so`: the `[alert]`. Always PAM_IGNORE,
    /// even after a panic: an alert never decides a session.
    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_session(pamh, &args)));
        PamResultCode::PAM_IGNORE
    }
}

pam::pam_hooks!(PamGateway);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_design_table() {
        use PamResultCode::*;
        let table = [
            (
                Outcome::Success {
                    gateway: "telegram",
                },
                PAM_SUCCESS,
            ),
            (Outcome::MaxTries, PAM_MAXTRIES),
            (Outcome::Expired, PAM_AUTH_ERR),
            (Outcome::NotEnrolledDenied, PAM_AUTH_ERR),
            (Outcome::NotEnrolledIgnored, PAM_IGNORE),
            (Outcome::WrongPassword, PAM_AUTH_ERR),
            (Outcome::DeliveryFailedDenied, PAM_AUTHINFO_UNAVAIL),
            (Outcome::DeliveryFailedIgnored, PAM_IGNORE),
            (Outcome::ConversationFailed, PAM_CONV_ERR),
            (Outcome::SystemError, PAM_SYSTEM_ERR),
            (Outcome::LockedOut, PAM_MAXTRIES),
            (Outcome::RateLimited, PAM_AUTH_ERR),
            (Outcome::PolicyIgnored, PAM_IGNORE),
            (Outcome::StateFailed, PAM_SERVICE_ERR),
            (Outcome::UnknownUser, PAM_USER_UNKNOWN),
            (Outcome::Remembered, PAM_SUCCESS),
            (Outcome::DirectoryUnavailable, PAM_AUTHINFO_UNAVAIL),
            (Outcome::DeniedNotMe, PAM_AUTH_ERR),
        ];
        for (outcome, code) in table {
            assert_eq!(pam_code(&outcome), code, "{outcome:?}");
        }
    }
}
