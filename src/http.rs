//! The one way HTTP clients are built: bounded timeouts, no proxy from the
//! environment (a login's environment is not the admin's), rustls with the
//! ring provider and full certificate verification, capped response bodies.
//!
//! Every gateway uses reqwest's blocking client built here. Its TLS
//! configuration is ours, not reqwest's default: that default asks
//! rustls-platform-verifier, which on Linux reads the whole system store --
//! the PEM bundle *and* every file in `/etc/ssl/certs` -- each time a client
//! is built, even for a plain-http request that never handshakes; that was
//! 94 % of the instructions of a loopback login (BENCHMARKS.md). Here the
//! verifier is rustls' own `WebPkiServerVerifier` (chain to a trusted root,
//! validity dates, name, key usage), created at the first certificate a
//! server presents, from one PEM bundle at a fixed path
//! ([`SYSTEM_CA_BUNDLES`]), parsed by rustls-pki-types.
//!
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` are ignored on purpose: the module
//! runs inside sudo, su and login with the *caller's* environment, and a
//! user who could point it at a CA of their own could impersonate the
//! gateway (and, with `failmode = "safe"` or a self-made "delivered",
//! weaken the second factor). A private CA is trusted once
//! `update-ca-certificates` has put it into the system bundle.
//!
//! Every exchange goes through [`Client::exchange`]: one deadline from the
//! connect to the last byte of the body, whatever the peer trickles. Its
//! failures are sorted by the error chain (errno values, not English):
//! this machine's shortages (EMFILE, ENFILE, ENOMEM, ENOBUFS, EAGAIN, a
//! client that cannot be built) are [`TransportError::Local`], a refused
//! connection [`TransportError::Refused`], the rest a timeout or
//! [`TransportError::Other`]. Under su and sudo the caller sets the
//! rlimits: starving this process must never look like a dead service.

use std::cell::OnceCell;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::gateway::delivery::DeliveryError;
use crate::redact::redact;
use crate::section::{SectionError, check_range};
use crate::toml_errors::ParseError;
use crate::uri::percent_encode;

/// Connection settings shared by the HTTP gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub proxy: Option<String>,
}

impl HttpSettings {
    /// The connection keys every HTTP gateway section shares: `timeout`
    /// (1..=120, default `default_timeout`), `connect_timeout` (1..=60,
    /// default 5) and `proxy`.
    pub fn from_keys(
        timeout: Option<u64>,
        connect_timeout: Option<u64>,
        proxy: Option<&String>,
        default_timeout: u64,
        e: SectionError,
    ) -> Result<HttpSettings, ParseError> {
        let timeout = check_range(timeout.unwrap_or(default_timeout), 1, 120, &|m| {
            e("timeout", m)
        })?;
        let connect_timeout = check_range(connect_timeout.unwrap_or(5), 1, 60, &|m| {
            e("connect_timeout", m)
        })?;
        if let Some(proxy) = proxy {
            reqwest::Proxy::all(proxy.as_str())
                .map_err(|_| e("proxy", "is not a valid proxy URL".to_string()))?;
        }
        Ok(HttpSettings {
            timeout: Duration::from_secs(timeout),
            connect_timeout: Duration::from_secs(connect_timeout),
            proxy: proxy.cloned(),
        })
    }
}

/// Largest response body read from a gateway.
pub const MAX_BODY: u64 = 256 * 1024;

/// The system's CA bundle as the distributions' ca-certificates packages
/// keep it, first one that exists wins: Debian/Ubuntu/Arch/Gentoo,
/// Fedora/RHEL, openSUSE, Alpine.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Largest CA bundle read (Debian's is about 220 KB).
pub const MAX_CA_BUNDLE: u64 = 4 * 1024 * 1024;

/// Which certificates https connections are verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The system's CA bundle (the first of [`SYSTEM_CA_BUNDLES`] that
    /// exists), kept current by the distribution's ca-certificates package,
    /// with the admin's own CAs once update-ca-certificates added them.
    System,
    /// The CA certificates in this PEM file only (tests, a private CA).
    PemFile(PathBuf),
}

/// A blocking client and the one deadline each exchange through it has.
///
/// reqwest's blocking client applies its own `timeout` to each wait
/// separately -- the response head, then every read of the body -- so a
/// peer that trickles its answer a byte at a time could hold a login for
/// as long as it liked. [`Client::exchange`] gives every request a total
/// timeout instead, which reqwest's async core applies from the start of
/// the connection to the last byte of the body, and checks the deadline
/// between reads too: connect, TLS, request, head and body end within
/// `timeout`, whatever the peer does.
#[derive(Debug, Clone)]
pub struct Client {
    inner: reqwest::blocking::Client,
    timeout: Duration,
}

impl Client {
    pub fn get<U: reqwest::IntoUrl>(&self, url: U) -> reqwest::blocking::RequestBuilder {
        self.inner.get(url)
    }

    pub fn post<U: reqwest::IntoUrl>(&self, url: U) -> reqwest::blocking::RequestBuilder {
        self.inner.post(url)
    }

    pub fn put<U: reqwest::IntoUrl>(&self, url: U) -> reqwest::blocking::RequestBuilder {
        self.inner.put(url)
    }

    /// How long one exchange may take, from the connect to the last byte.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The reqwest client itself (its requests get no deadline of ours:
    /// use [`Client::exchange`]).
    pub fn reqwest(&self) -> &reqwest::blocking::Client {
        &self.inner
    }

    /// Sends `request` (built from this client) and reads the answer, all
    /// of it within [`Client::timeout`]. Every error text has the URL
    /// removed and each of `secrets` (and its percent-encoded form)
    /// redacted, because URLs and reqwest's messages may carry tokens.
    pub fn exchange(
        &self,
        request: reqwest::blocking::RequestBuilder,
        secrets: &[&str],
    ) -> Result<HttpAnswer, TransportError> {
        let deadline = Instant::now() + self.timeout;
        // The request's own timeout is the total one of reqwest's async
        // core (connect to end of body); the blocking side waits as long.
        let request = request.timeout(self.timeout);
        // reqwest's blocking side panics when its runtime thread died (a
        // worker thread that could not be spawned): that is this machine.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            exchange_by(request, deadline, secrets)
        }))
        .unwrap_or_else(|_| {
            Err(TransportError::Local(
                "the HTTP client's runtime thread failed".to_string(),
            ))
        })
    }
}

/// A gateway's client, built on first use: a login that sends nothing
/// builds none (a client starts a thread and opens descriptors). One per
/// gateway value, used by one login's thread.
#[derive(Debug)]
pub struct LazyClient<T = Client> {
    cell: OnceCell<T>,
}

impl<T> LazyClient<T> {
    pub fn new() -> LazyClient<T> {
        LazyClient {
            cell: OnceCell::new(),
        }
    }

    /// The client, built by `build` the first time it is asked for (and
    /// again after a failed build).
    pub fn get_or_build<E>(&self, build: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        if let Some(client) = self.cell.get() {
            return Ok(client);
        }
        let client = build()?;
        Ok(self.cell.get_or_init(|| client))
    }
}

impl<T> Default for LazyClient<T> {
    fn default() -> LazyClient<T> {
        LazyClient::new()
    }
}

/// Builds a blocking client for one gateway.
pub fn client(settings: &HttpSettings) -> Result<Client, TransportError> {
    client_with_timeout(settings, settings.timeout)
}

/// Like [`client`] with another overall timeout (long polls need more).
pub fn client_with_timeout(
    settings: &HttpSettings,
    timeout: Duration,
) -> Result<Client, TransportError> {
    client_with_roots(settings, timeout, TrustRoots::System)
}

/// Like [`client_with_timeout`], verifying https against `roots`. Nothing
/// is read until the first TLS handshake: a plain-http (loopback) gateway
/// never loads a certificate.
///
/// Any failure here is [`TransportError::Local`]: building a client opens
/// descriptors (an event loop) and starts a thread, which a caller who
/// chose this process's rlimits can make fail. It is never "the service
/// is unreachable".
pub fn client_with_roots(
    settings: &HttpSettings,
    timeout: Duration,
    roots: TrustRoots,
) -> Result<Client, TransportError> {
    build_client(settings, timeout, roots, 0)
}

/// Like [`client_with_timeout`], but keeping up to [`WARM_CONNECTIONS`]
/// idle connections per host open between exchanges (each up to
/// [`WARM_IDLE`]): for a long-lived process (`pam-gatewayd`) whose sends
/// should not each pay a new TCP and TLS handshake. A login's client keeps
/// none (it sends once).
pub fn warm_client(settings: &HttpSettings, timeout: Duration) -> Result<Client, TransportError> {
    build_client(settings, timeout, TrustRoots::System, WARM_CONNECTIONS)
}

/// Idle connections [`warm_client`] keeps per host. More than one: an
/// exchange that finds every kept connection busy (a login's message sent
/// while the last login's final edit is still on its way) opens a new one,
/// and with room for one idle connection only, one of the two would be
/// closed again once both are done, so that every such overlap paid a new
/// handshake (one round trip more to the Bot API, measured in
/// BENCHMARKS.md).
pub const WARM_CONNECTIONS: usize = 4;

/// How long [`warm_client`] keeps an idle connection.
pub const WARM_IDLE: Duration = Duration::from_secs(90);

fn build_client(
    settings: &HttpSettings,
    timeout: Duration,
    roots: TrustRoots,
    idle_per_host: usize,
) -> Result<Client, TransportError> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(settings.connect_timeout.min(timeout))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pam_gateway/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(idle_per_host)
        .pool_idle_timeout(WARM_IDLE)
        .tls_backend_preconfigured(tls_config(roots).map_err(TransportError::Local)?);
    if let Some(proxy) = &settings.proxy {
        let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|_| {
            TransportError::Local("the configured proxy is not a valid URL".to_string())
        })?;
        builder = builder.proxy(proxy);
    }
    let inner = builder.build().map_err(|e| {
        TransportError::Local(format!(
            "cannot set up the HTTP client: {}",
            describe(&e.without_url())
        ))
    })?;
    Ok(Client { inner, timeout })
}

/// TLS 1.2 and 1.3 with ring's safe defaults, HTTP/1.1 only (reqwest is
/// built without HTTP/2), certificates checked by [`LazyWebPkiVerifier`].
fn tls_config(roots: TrustRoots) -> Result<rustls::ClientConfig, String> {
    let mut config = rustls_config(roots)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The one TLS client configuration (HTTP gateways, the directory): TLS
/// 1.2 and 1.3 with ring's safe defaults, certificates checked against
/// `roots` by rustls' WebPKI verifier, the roots read at the first
/// handshake.
pub fn rustls_config(roots: TrustRoots) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = LazyWebPkiVerifier {
        algorithms: provider.signature_verification_algorithms,
        provider: Arc::clone(&provider),
        roots,
        inner: OnceLock::new(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous() // only to install the verifier below, which verifies fully
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// rustls' `WebPkiServerVerifier`, created on the first certificate it has
/// to check. Every check is the WebPKI verifier's own; only the loading of
/// the roots waits until a server presents a certificate. If the roots
/// cannot be loaded, every certificate is refused (fail closed) with the
/// reason, which ends up in the gateway's error and the log.
#[derive(Debug)]
struct LazyWebPkiVerifier {
    provider: Arc<CryptoProvider>,
    algorithms: WebPkiSupportedAlgorithms,
    roots: TrustRoots,
    inner: OnceLock<Result<Arc<WebPkiServerVerifier>, Arc<RootsError>>>,
}

impl LazyWebPkiVerifier {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.inner
            .get_or_init(|| {
                let store = load_root_store(&self.roots).map_err(Arc::new)?;
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| {
                    Arc::new(RootsError {
                        text: format!("cannot set up certificate verification: {e}"),
                        io: None,
                    })
                })
            })
            .as_ref()
            // Other, not General: it keeps the io::Error (EMFILE opening
            // the bundle is this machine's failure, not the server's).
            .map_err(|e| rustls::Error::Other(OtherError(e.clone())))
    }
}

impl ServerCertVerifier for LazyWebPkiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // The handshake signatures need no roots: the same functions the WebPKI
    // verifier calls, with the same algorithms. rustls calls these only
    // after verify_server_cert accepted the certificate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Reads the trusted CA certificates. The bundle decides whom the module
/// trusts, so it is checked like the config files: the opened descriptor
/// must be a regular file, owned by root (or by this process's user: an
/// unprivileged CLI or test run), not writable by group or others, at most
/// [`MAX_CA_BUNDLE`] bytes. Symbolic links are followed (Fedora's bundle is
/// one). Blocks that are not certificates, or not valid PEM, are skipped
/// as every TLS library does with a system bundle; a bundle without one
/// usable certificate is refused.
pub fn load_roots(roots: &TrustRoots) -> Result<RootCertStore, String> {
    load_root_store(roots).map_err(|e| e.text)
}

/// Why the trusted CA certificates could not be loaded: the text, and the
/// I/O error behind it when there was one (its source, so that EMFILE or
/// ENOMEM is seen as this machine's failure).
#[derive(Debug)]
struct RootsError {
    text: String,
    io: Option<std::io::Error>,
}

impl std::fmt::Display for RootsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RootsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn load_root_store(roots: &TrustRoots) -> Result<RootCertStore, RootsError> {
    let path: &Path = match roots {
        TrustRoots::PemFile(p) => p,
        TrustRoots::System => SYSTEM_CA_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| RootsError {
                text: format!(
                    "no system CA bundle found (looked for {}): install the ca-certificates package",
                    SYSTEM_CA_BUNDLES.join(", ")
                ),
                io: None,
            })?,
    };
    let what = |m: String| RootsError {
        text: format!("trusted CA certificates {}: {m}", path.display()),
        io: None,
    };
    let io_what = |m: &str, e: std::io::Error| RootsError {
        text: format!("trusted CA certificates {}: {m}: {e}", path.display()),
        io: Some(e),
    };
    // O_NONBLOCK: a FIFO put in its place must not hang the login in open();
    // the fstat below then refuses it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            crate::system::fs::O_NONBLOCK
                | crate::system::fs::O_NOCTTY
                | crate::system::fs::O_CLOEXEC,
        )
        .open(path)
        .map_err(|e| io_what("cannot open", e))?;
    let meta = file.metadata().map_err(|e| io_what("cannot stat", e))?;
    if !meta.is_file() {
        return Err(what("not a regular file".into()));
    }
    let euid = crate::system::effective_uid();
    if (meta.uid() != 0 && meta.uid() != euid) || meta.mode() & 0o022 != 0 {
        return Err(what(format!(
            "must be owned by root and not writable by group or others \
             (owner uid {}, mode {:o}): fix with chown root and chmod go-w",
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    if meta.len() > MAX_CA_BUNDLE {
        return Err(what(format!("larger than {MAX_CA_BUNDLE} bytes")));
    }
    let mut pem = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CA_BUNDLE)
        .read_to_end(&mut pem)
        .map_err(|e| io_what("cannot read", e))?;
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
    if store.is_empty() {
        return Err(what(
            "holds no usable CA certificate (PEM `CERTIFICATE` blocks): \
             reinstall ca-certificates or run update-ca-certificates"
                .into(),
        ));
    }
    Ok(store)
}

/// Reads at most [`MAX_BODY`] bytes of a response body as text. A read
/// error is a transport failure (the answer stalled past the timeout, or
/// the connection dropped) and is returned as a description without URL.
/// Each read waits at most the client's timeout, but there is no overall
/// deadline here: the gateways go through [`Client::exchange`].
pub fn read_body(response: reqwest::blocking::Response) -> Result<String, String> {
    read_until(response, None)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| match e {
            TransportError::Timeout => "timed out reading the answer".to_string(),
            other => other.to_string(),
        })
}

/// Reads the body, at most [`MAX_BODY`] bytes, and stops with
/// [`TransportError::Timeout`] once `deadline` has passed.
fn read_until(
    mut response: reqwest::blocking::Response,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, TransportError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8 * 1024];
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(TransportError::Timeout);
        }
        let room = (MAX_BODY as usize).saturating_sub(buf.len());
        if room == 0 {
            break;
        }
        let want = room.min(chunk.len());
        match response.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(match cause(&e) {
                    Cause::Local => {
                        TransportError::Local(format!("cannot read the answer: {}", describe(&e)))
                    }
                    Cause::TimedOut => TransportError::Timeout,
                    Cause::Refused | Cause::Other => TransportError::Other(
                        "the connection broke while reading the answer".to_string(),
                    ),
                });
            }
        }
    }
    Ok(buf)
}

/// An error and its causes on one line, e.g. "error sending request: client
/// error (Connect): tcp connect error: Connection refused (os error 111)".
/// Callers strip the URL first (`without_url`) and redact secrets after.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

/// Why an HTTP exchange produced no usable answer. Texts are already
/// stripped of URLs and secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing listens at the address: ECONNREFUSED (the peer, or a
    /// firewall for it, answered with a reset to the SYN).
    Refused(String),
    /// No answer (or no complete answer) within the timeout.
    Timeout,
    /// This machine failed before or while sending: the client could not
    /// be built, no descriptor, memory, buffer or thread was to be had
    /// (EMFILE, ENFILE, ENOMEM, ENOBUFS, EAGAIN). A caller chooses the
    /// rlimits of su and sudo: this is never "unreachable".
    Local(String),
    /// DNS, TLS, a reset connection, an answer cut off.
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Refused(d) => write!(f, "connection refused ({d})"),
            TransportError::Timeout => f.write_str("no answer within the timeout"),
            TransportError::Local(d) => write!(f, "this machine could not send: {d}"),
            TransportError::Other(d) => write!(f, "transport error: {d}"),
        }
    }
}

impl TransportError {
    /// The delivery error this is, with `text` (the gateway's wording).
    pub fn delivery_error(&self, text: String) -> DeliveryError {
        match self {
            TransportError::Refused(_) => DeliveryError::Refused(text),
            TransportError::Timeout | TransportError::Other(_) => DeliveryError::Unreachable(text),
            TransportError::Local(_) => DeliveryError::Local(text),
        }
    }

    /// A failure of this machine (a random source, a thread) met while
    /// preparing a request.
    pub fn local(what: &str, err: impl std::fmt::Display) -> TransportError {
        TransportError::Local(format!("{what}: {err}"))
    }
}

/// A service's answer: status, `Retry-After` in seconds when it sent one,
/// and at most [`MAX_BODY`] bytes of body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
}

fn exchange_by(
    request: reqwest::blocking::RequestBuilder,
    deadline: Instant,
    secrets: &[&str],
) -> Result<HttpAnswer, TransportError> {
    let response = request.send().map_err(|err| classify(err, secrets))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = read_until(response, Some(deadline)).map_err(|e| match e {
        TransportError::Local(t) => TransportError::Local(scrub(&t, secrets)),
        TransportError::Other(t) => TransportError::Other(scrub(&t, secrets)),
        other => other,
    })?;
    Ok(HttpAnswer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sorts a failed send by what the error chain says, not by its English.
fn classify(err: reqwest::Error, secrets: &[&str]) -> TransportError {
    let err = err.without_url();
    let text = || scrub(&describe(&err), secrets);
    match cause(&err) {
        Cause::Local => TransportError::Local(text()),
        Cause::Refused => TransportError::Refused(text()),
        Cause::TimedOut => TransportError::Timeout,
        // A request that could not be built never left this machine.
        Cause::Other if err.is_builder() => TransportError::Local(text()),
        Cause::Other => TransportError::Other(text()),
    }
}

/// What an error chain says happened, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    Other,
    TimedOut,
    Refused,
    Local,
}

/// errno values that mean this machine ran out of something: descriptors
/// (per process, system-wide), memory, buffers, threads or processes.
const LOCAL_ERRNOS: &[i32] = &[
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOMEM,
    libc::ENOBUFS,
    libc::EAGAIN,
];

/// Walks `err` and its causes -- `source()`, the error inside an
/// `io::Error`, the error inside rustls' `Other` -- for an `io::Error`
/// that names a local shortage, a refused connection or a timeout.
fn cause(err: &(dyn std::error::Error + 'static)) -> Cause {
    let mut found = Cause::Other;
    let mut todo: Vec<&(dyn std::error::Error + 'static)> = vec![err];
    let mut visited = 0;
    while let Some(e) = todo.pop() {
        visited += 1;
        if visited > 64 {
            break;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.raw_os_error() {
                Some(code) if LOCAL_ERRNOS.contains(&code) => return Cause::Local,
                Some(libc::ECONNREFUSED) => found = found.max(Cause::Refused),
                _ => {}
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => found = found.max(Cause::Refused),
                std::io::ErrorKind::TimedOut => found = found.max(Cause::TimedOut),
                std::io::ErrorKind::OutOfMemory => return Cause::Local,
                _ => {}
            }
            // An io::Error's source() skips the error it wraps.
            if let Some(inner) = io.get_ref() {
                todo.push(inner);
            }
            continue;
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && r.is_timeout()
        {
            found = found.max(Cause::TimedOut);
        }
        if let Some(rustls::Error::Other(OtherError(inner))) = e.downcast_ref::<rustls::Error>() {
            todo.push(inner.as_ref());
        }
        if let Some(s) = e.source() {
            todo.push(s);
        }
    }
    found
}

/// Redacts `secrets` and their percent-encoded forms (a token in a query
/// string is encoded) from `text`, and flattens control characters.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let encoded: Vec<String> = secrets
        .iter()
        .map(|s| percent_encode(s))
        .filter(|e| !secrets.contains(&e.as_str()))
        .collect();
    let mut all: Vec<&str> = secrets.to_vec();
    all.extend(encoded.iter().map(String::as_str));
    // Longest first, so a secret containing another is replaced whole.
    longest_first(&mut all);
    redact(text, &all)
}

/// Sorts `texts` longest first, keeping the order of equal lengths (one
/// copy of the sort in the module for [`scrub`] and [`redact_message`]).
fn longest_first(texts: &mut [&str]) {
    crate::small_sort::sort_by_key(texts, |s| std::cmp::Reverse(s.len()));
}

/// A short, printable piece of a service's answer for an error message:
/// at most `max` characters, secrets redacted.
pub fn excerpt(body: &str, max: usize, secrets: &[&str]) -> String {
    let flat = scrub(body.trim(), secrets);
    let mut out: String = flat.chars().take(max).collect();
    if flat.chars().count() > max {
        out.push('…');
    }
    out
}

/// Shortest message replaced as a whole; a shorter one holds little more
/// than the digits [`redact_message`] removes anyway.
const MIN_REDACTED_MESSAGE: usize = 8;
/// Shortest run of digits of the message removed from error texts.
const MIN_DIGIT_RUN: usize = 4;

/// Removes the message being sent from a text bound for the log (a
/// service that echoes the request puts the code into its error): the
/// message in each form a service may echo it -- as sent, JSON-escaped,
/// percent- or form-encoded, with line breaks flattened -- becomes
/// `[message]`, then every run of 4 or more digits that the message holds
/// becomes `[digits]`. The code is digits, and digits survive any
/// re-encoding of the message.
pub fn redact_message(text: &str, message: &str) -> String {
    let mut out = text.to_string();
    if message.chars().count() >= MIN_REDACTED_MESSAGE {
        let json = serde_json::Value::String(message.to_string()).to_string();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(&json)
            .to_string();
        let percent = percent_encode(message);
        let form = percent.replace("%20", "+");
        let flat: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut forms = vec![message, &json, &percent, &form, &flat];
        longest_first(&mut forms);
        forms.dedup();
        for form in forms {
            out = out.replace(form, "[message]");
        }
    }
    let mut runs: Vec<&str> = message
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| r.len() >= MIN_DIGIT_RUN)
        .collect();
    longest_first(&mut runs);
    runs.dedup();
    for run in runs {
        out = out.replace(run, "[digits]");
    }
    out
}

/// [`excerpt`] of an answer to a request that carried `message`: the
/// message is removed ([`redact_message`]) before the cut, so no piece of
/// it survives.
pub fn excerpt_sent(body: &str, max: usize, secrets: &[&str], message: &str) -> String {
    excerpt(&redact_message(body, message), max, secrets)
}

/// `err` with [`redact_message`] applied to its text: the last step of
/// each gateway's `send`, so that whatever an error quotes, the message it
/// was sending is not in it.
pub fn without_message(err: DeliveryError, message: &str) -> DeliveryError {
    let r = |t: String| redact_message(&t, message);
    match err {
        DeliveryError::Unreachable(t) => DeliveryError::Unreachable(r(t)),
        DeliveryError::Refused(t) => DeliveryError::Refused(r(t)),
        DeliveryError::ServiceFailed(t) => DeliveryError::ServiceFailed(r(t)),
        DeliveryError::Rejected {
            reason,
            retry_after,
        } => DeliveryError::Rejected {
            reason: r(reason),
            retry_after,
        },
        DeliveryError::Misconfigured(t) => DeliveryError::Misconfigured(r(t)),
        DeliveryError::Local(t) => DeliveryError::Local(r(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::form_encode;

    #[test]
    fn scrub_catches_plain_and_encoded_secrets() {
        let text = "GET /x?h=ab%2Bc%2Fd&u=me failed: ab+c/d\nnext";
        assert_eq!(
            scrub(text, &["ab+c/d"]),
            "GET /x?h=[redacted]&u=me failed: [redacted] next"
        );
    }

    #[test]
    fn the_message_and_its_digits_are_redacted() {
        let message = "123456 is your code for alice@host\nexpires 12:05 (port 2222)";
        let echoed = [
            message.to_string(),
            serde_json::json!({ "text": message }).to_string(),
            form_encode(&[("msg", message)]),
            percent_encode(message).replace("%20", "+"),
            "bad request: code 123456 from 2222".to_string(),
        ];
        for text in echoed {
            let out = redact_message(&text, message);
            assert!(!out.contains("123456"), "{out}");
            assert!(!out.contains("2222"), "{out}");
            assert!(!out.contains("alice@host"), "{out}");
        }
        assert_eq!(redact_message(message, message), "[message]");
        assert_eq!(
            redact_message("HTTP 400: 1234567 and 12:05", message),
            "HTTP 400: [digits]7 and 12:05"
        );
        // A short message is only stripped of its digit runs.
        assert_eq!(redact_message("x and 4711", "x 4711"), "x and [digits]");
        let cut = excerpt_sent(&format!("echo: {message}"), 12, &[], message);
        assert_eq!(cut, "echo: [messa…");
    }

    #[test]
    fn errors_are_classified_by_their_chain() {
        let io = |code: i32| std::io::Error::from_raw_os_error(code);
        assert_eq!(cause(&io(libc::EMFILE)), Cause::Local);
        assert_eq!(cause(&io(libc::EAGAIN)), Cause::Local);
        assert_eq!(cause(&io(libc::ECONNREFUSED)), Cause::Refused);
        assert_eq!(cause(&io(libc::ECONNRESET)), Cause::Other);
        // Wrapped in an io::Error (whose source() skips what it wraps), and
        // inside rustls' Other.
        let wrapped = std::io::Error::other(RootsError {
            text: "cannot open".into(),
            io: Some(io(libc::ENFILE)),
        });
        assert_eq!(cause(&wrapped), Cause::Local);
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::Other(OtherError(Arc::new(RootsError {
                text: "cannot open".into(),
                io: Some(io(libc::EMFILE)),
            }))),
        );
        assert_eq!(cause(&tls), Cause::Local);
        // English text alone decides nothing.
        assert_eq!(
            cause(&std::io::Error::other("Connection refused")),
            Cause::Other
        );
    }

    #[test]
    fn excerpt_is_bounded() {
        assert_eq!(excerpt("  abcdef ", 3, &[]), "abc…");
        assert_eq!(excerpt("token=s3cr3t", 50, &["s3cr3t"]), "token=[redacted]");
    }
}
