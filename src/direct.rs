//! The PAM module's direct path, in a library of its own.
//!
//! Everything a login sends itself -- a gateway's message (HTTP, TLS, a
//! helper program), a `[directory]` lookup (LDAP) -- lives in
//! `pam_gateway_direct.so`, next to the module, which loads it the first
//! time a login needs it: a login whose message pam-gatewayd sends never
//! maps those clients (issue 14's per-login targets; BENCHMARKS.md). The
//! module reaches it through [`Library`], a [`Network`]; the library runs
//! [`serve`] with [`Direct`], the same code the CLI and the daemon run.
//!
//! The library's file is the module's own (symlinks resolved) with
//! `_direct` before `.so`: `pam_gateway.so` loads `pam_gateway_direct.so`,
//! cargo's `libpam_gateway.so` its `libpam_gateway_direct.so`. It is loaded
//! only if root owns it and its directory and neither is writable by group
//! or others ([`check_library`]). A library that cannot be loaded, or one
//! of another build, fails the send as a local error: the login is denied,
//! whatever `failmode` says, and the reason is logged.
//!
//! One C entry point carries a JSON request (the config text the module
//! read and checked, and the call) and a JSON answer ([`crate::system::dl`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::directory::{DirectoryConfig, DirectoryError};
use crate::gateway::{DeliveryError, Gateway, GatewayKind};
use crate::network::{Direct, Network, Recipients};
use crate::secure_file::{Owner, check_library};
use crate::system::dl::{self, Exchange};

/// The entry point's name; its number is the interface's version.
pub const ENTRY: &std::ffi::CStr = c"pam_gateway_direct_v1";
/// The function that frees the entry point's answers.
pub const FREE: &std::ffi::CStr = c"pam_gateway_direct_free_v1";
/// The build a request comes from; the library serves only its own.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+direct-v1");

/// One call of the module's into the library. Borrowed where it can be:
/// the module writes it from what it holds (no copy of the config's
/// secrets or of the code), the library reads it from the request's bytes.
#[derive(Serialize, Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    version: Cow<'a, str>,
    /// gateway.toml as the module read it (after its checks), and where.
    #[serde(borrow)]
    config_path: Cow<'a, Path>,
    #[serde(borrow)]
    config: Cow<'a, str>,
    #[serde(borrow)]
    call: Call<'a>,
}

#[derive(Serialize, Deserialize)]
enum Call<'a> {
    Send {
        #[serde(borrow)]
        gateway: Cow<'a, str>,
        #[serde(borrow)]
        recipient: Cow<'a, str>,
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    Lookup {
        #[serde(borrow)]
        user: Cow<'a, str>,
        owner: u32,
    },
}

#[derive(Serialize, Deserialize)]
enum Answer {
    Sent,
    NotSent(DeliveryError),
    Found(Option<BTreeMap<String, String>>),
    LookupFailed(DirectoryError),
    /// The library could not run the call (another build, a config it
    /// cannot read).
    Failed(String),
}

/// The library's side: one request's bytes in, the answer's out.
pub fn serve(request: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<Request>(request) {
        // serde's message may quote the request, which holds secrets:
        // only where it stopped.
        Err(e) => Answer::Failed(format!(
            "a request it cannot read (line {}, column {})",
            e.line(),
            e.column()
        )),
        Ok(r) if r.version != VERSION => Answer::Failed(format!(
            "it is build {VERSION}, the module {}: install both from one build",
            crate::flow::clean(&r.version)
        )),
        Ok(r) => run(r),
    };
    serde_json::to_vec(&answer)
        .unwrap_or_else(|_| br#"{"Failed":"cannot write the answer"}"#.to_vec())
}

fn run(r: Request) -> Answer {
    let config = match Config::parse(&r.config_path, &r.config) {
        Ok(c) => c,
        Err(e) => return Answer::Failed(format!("config: {e}")),
    };
    match r.call {
        Call::Send {
            gateway,
            recipient,
            text,
        } => {
            let text = Zeroizing::new(text.into_owned());
            let Some(kind) = GatewayKind::from_id(&gateway) else {
                return Answer::Failed(format!("no gateway {}", crate::flow::clean(&gateway)));
            };
            let Some(g) = Direct.gateway(&config, kind) else {
                return Answer::Failed(format!("gateway.toml has no [{}] section", kind.id()));
            };
            match g.send(&recipient, &text) {
                Ok(()) => Answer::Sent,
                Err(e) => Answer::NotSent(e),
            }
        }
        Call::Lookup { user, owner } => {
            let Some(dir) = config.directory.as_ref() else {
                return Answer::Failed("gateway.toml has no [directory] section".to_string());
            };
            match Direct.lookup(dir, &user, Owner(owner)) {
                Ok(found) => Answer::Found(found.map(|r| {
                    r.into_iter()
                        .map(|(k, v)| (k.id().to_string(), v))
                        .collect()
                })),
                Err(e) => Answer::LookupFailed(e),
            }
        }
    }
}

/// The module's side: gateways and lookups through the direct library,
/// loaded on the first call that needs it.
pub struct Library {
    source: Arc<Source>,
}

/// What every call carries, shared by the gateways a [`Library`] hands out.
struct Source {
    config_path: PathBuf,
    config: Zeroizing<String>,
    /// Who must own the library and its directory (root).
    owner: Owner,
}

impl Library {
    /// For the config at `config_path` whose text (as read and checked)
    /// is `config`.
    pub fn new(config_path: &Path, config: String, owner: Owner) -> Library {
        Library {
            source: Arc::new(Source {
                config_path: config_path.to_path_buf(),
                config: Zeroizing::new(config),
                owner,
            }),
        }
    }
}

impl Source {
    /// Runs `call` in the library; `Err` says why the library could not.
    fn call(&self, call: Call<'_>) -> Result<Answer, String> {
        let exchange = loaded(self.owner)?;
        let request = Request {
            version: Cow::Borrowed(VERSION),
            config_path: Cow::Borrowed(&self.config_path),
            config: Cow::Borrowed(&self.config),
            call,
        };
        // The request holds the config's secrets and the code: wiped once sent.
        let bytes = Zeroizing::new(
            serde_json::to_vec(&request).map_err(|_| "cannot write the request".to_string())?,
        );
        let answer = exchange
            .call(&bytes)
            .map_err(|rc| format!("{LIBRARY} failed (status {rc})"))?;
        serde_json::from_slice(&answer)
            .map_err(|_| format!("{LIBRARY} gave an answer that cannot be read"))
    }
}

/// Why a call's outcome is not one of its own answers: the library could
/// not run it, or answered another call. Always a local error.
fn unexpected(outcome: Result<Answer, String>) -> String {
    match outcome {
        Ok(Answer::Failed(why)) => format!("{LIBRARY}: {why}"),
        Ok(_) => format!("{LIBRARY} answered another call"),
        Err(why) => why,
    }
}

/// What logs call the library.
const LIBRARY: &str = "the direct library";

impl Network for Library {
    fn gateway(&self, config: &Config, kind: GatewayKind) -> Option<Box<dyn Gateway>> {
        config.gateway_section(kind)?;
        Some(Box::new(LibraryGateway {
            source: Arc::clone(&self.source),
            kind,
            name: config.display_name(kind).to_string(),
        }))
    }

    fn lookup(
        &self,
        _dir: &DirectoryConfig,
        user: &str,
        owner: Owner,
    ) -> Result<Option<Recipients>, DirectoryError> {
        let call = Call::Lookup {
            user: Cow::Borrowed(user),
            owner: owner.0,
        };
        match self.source.call(call) {
            Ok(Answer::Found(found)) => found
                .map(|r| {
                    r.into_iter()
                        .map(|(id, v)| match GatewayKind::from_id(&id) {
                            Some(k) => Ok((k, v)),
                            None => Err(DirectoryError::Local(format!(
                                "{LIBRARY} answered an unknown gateway"
                            ))),
                        })
                        .collect()
                })
                .transpose(),
            Ok(Answer::LookupFailed(e)) => Err(e),
            other => Err(DirectoryError::Local(unexpected(other))),
        }
    }
}

/// A gateway whose sends the library makes.
struct LibraryGateway {
    source: Arc<Source>,
    kind: GatewayKind,
    name: String,
}

impl Gateway for LibraryGateway {
    fn id(&self) -> &'static str {
        self.kind.id()
    }

    fn display_name(&self) -> &str {
        &self.name
    }

    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        let call = Call::Send {
            gateway: Cow::Borrowed(self.kind.id()),
            recipient: Cow::Borrowed(recipient),
            text: Cow::Borrowed(text),
        };
        match self.source.call(call) {
            Ok(Answer::Sent) => Ok(()),
            Ok(Answer::NotSent(e)) => Err(e),
            other => Err(DeliveryError::Local(unexpected(other))),
        }
    }
}

/// The library's path for the module at `module` (symlinks resolved):
/// its file name with `_direct` before `.so`.
pub fn library_path_for(module: &Path) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(module)
        .map_err(|e| format!("cannot resolve the module's path {}: {e}", module.display()))?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".so"))
        .ok_or_else(|| format!("the module's file {} does not end in .so", real.display()))?;
    Ok(real.with_file_name(format!("{name}_direct.so")))
}

/// The library's entry points, loaded once per process (and kept: see
/// [`dl::Library`]). A failure is not kept: the next login tries again.
fn loaded(owner: Owner) -> Result<Exchange, String> {
    static LOADED: OnceLock<Exchange> = OnceLock::new();
    if let Some(e) = LOADED.get() {
        return Ok(*e);
    }
    let not_loaded = |why: String| format!("{LIBRARY} not loaded: {why}");
    let module = dl::own_object_path()
        .ok_or_else(|| not_loaded("cannot find the module's own file (dladdr)".to_string()))?;
    let path = library_path_for(&module).map_err(not_loaded)?;
    check_library(&path, owner).map_err(|e| not_loaded(e.to_string()))?;
    let lib = dl::Library::open(&path).map_err(not_loaded)?;
    let exchange = Exchange::find(&lib, ENTRY, FREE).ok_or_else(|| {
        not_loaded(format!(
            "{} has no {}",
            path.display(),
            ENTRY.to_string_lossy()
        ))
    })?;
    Ok(*LOADED.get_or_init(|| exchange))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: &str, config: &str, call: Call) -> Vec<u8> {
        serde_json::to_vec(&Request {
            version: version.into(),
            config_path: Path::new("/etc/pam_gateway/gateway.toml").into(),
            config: config.into(),
            call,
        })
        .expect("json")
    }

    fn answer(bytes: &[u8]) -> Answer {
        serde_json::from_slice(&serve(bytes)).expect("answer")
    }

    const TELEGRAM: &str = "[telegram]\nbot_token = \"123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c\"\n\
                            api_url = \"http://127.0.0.1:1\"\n";

    fn send() -> Call<'static> {
        Call::Send {
            gateway: "telegram".into(),
            recipient: "1234".into(),
            text: "code 123456".into(),
        }
    }

    #[test]
    fn another_builds_request_is_refused() {
        match answer(&request("0.0.1+direct-v0", TELEGRAM, send())) {
            Answer::Failed(why) => assert!(why.contains("install both from one build"), "{why}"),
            _ => panic!("served another build"),
        }
    }

    #[test]
    fn garbage_is_refused_without_quoting_it() {
        match answer(b"{\"version\": \"secret-token-123\", ") {
            Answer::Failed(why) => {
                assert!(why.contains("cannot read"), "{why}");
                assert!(!why.contains("secret-token"), "{why}");
            }
            _ => panic!("served garbage"),
        }
    }

    #[test]
    fn a_send_is_made_and_its_failure_comes_back_whole() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        match answer(&request(VERSION, TELEGRAM, send())) {
            Answer::NotSent(DeliveryError::Refused(_)) => {}
            Answer::NotSent(e) => panic!("not refused: {e}"),
            _ => panic!("not a send's answer"),
        }
    }

    #[test]
    fn a_gateway_without_its_section_or_a_bad_config_fails() {
        let signal = Call::Send {
            gateway: "signal".into(),
            recipient: "+4915112345678".into(),
            text: "x".into(),
        };
        match answer(&request(VERSION, TELEGRAM, signal)) {
            Answer::Failed(why) => assert!(why.contains("no [signal] section"), "{why}"),
            _ => panic!("sent without a section"),
        }
        match answer(&request(VERSION, "[telegram\n", send())) {
            Answer::Failed(why) => assert!(why.starts_with("config: "), "{why}"),
            _ => panic!("sent with a broken config"),
        }
        let lookup = Call::Lookup {
            user: "alice".into(),
            owner: 0,
        };
        match answer(&request(VERSION, TELEGRAM, lookup)) {
            Answer::Failed(why) => assert!(why.contains("no [directory]"), "{why}"),
            _ => panic!("looked up without a directory"),
        }
    }

    #[test]
    fn the_library_sits_next_to_the_module() {
        let dir = crate::test_dir::TestDir::new("direct");
        let module = dir.join("libpam_gateway.so");
        std::fs::write(&module, "x").expect("write");
        let link = dir.join("pam_gateway.so");
        std::os::unix::fs::symlink(&module, &link).expect("symlink");
        let want = std::fs::canonicalize(&*dir)
            .expect("canon")
            .join("libpam_gateway_direct.so");
        assert_eq!(library_path_for(&module), Ok(want.clone()));
        // A symlink to the module: next to the file it points to.
        assert_eq!(library_path_for(&link), Ok(want));
        let odd = dir.join("module");
        std::fs::write(&odd, "x").expect("write");
        assert!(library_path_for(&odd).is_err());
    }

    #[test]
    fn without_its_library_a_send_is_a_local_error() {
        // In a test the "module" is the test program, which has no
        // `_direct.so` beside it: never a send, never a skip.
        let lib = Library::new(
            Path::new("/etc/pam_gateway/gateway.toml"),
            TELEGRAM.to_string(),
            Owner::current(),
        );
        let config =
            Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), TELEGRAM).expect("config");
        let g = lib
            .gateway(&config, GatewayKind::Telegram)
            .expect("gateway");
        assert_eq!(g.display_name(), "Telegram");
        match g.send("1234", "x") {
            Err(DeliveryError::Local(why)) => {
                assert!(why.contains("direct library"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
