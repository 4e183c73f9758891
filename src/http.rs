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

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::HttpSettings;

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

/// Builds a blocking client for one gateway.
pub fn client(settings: &HttpSettings) -> Result<reqwest::blocking::Client, String> {
    client_with_timeout(settings, settings.timeout)
}

/// Like [`client`] with another overall timeout (long polls need more).
pub fn client_with_timeout(
    settings: &HttpSettings,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, String> {
    client_with_roots(settings, timeout, TrustRoots::System)
}

/// Like [`client_with_timeout`], verifying https against `roots`. Nothing
/// is read until the first TLS handshake: a plain-http (loopback) gateway
/// never loads a certificate.
pub fn client_with_roots(
    settings: &HttpSettings,
    timeout: Duration,
    roots: TrustRoots,
) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(settings.connect_timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pam_gateway/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(0)
        .tls_backend_preconfigured(tls_config(roots)?);
    if let Some(proxy) = &settings.proxy {
        let proxy = reqwest::Proxy::all(proxy.as_str())
            .map_err(|_| "the configured proxy is not a valid URL".to_string())?;
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| {
        format!(
            "cannot set up the HTTP client: {}",
            describe(&e.without_url())
        )
    })
}

/// TLS 1.2 and 1.3 with ring's safe defaults, HTTP/1.1 only (reqwest is
/// built without HTTP/2), certificates checked by [`LazyWebPkiVerifier`].
fn tls_config(roots: TrustRoots) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = LazyWebPkiVerifier {
        algorithms: provider.signature_verification_algorithms,
        provider: Arc::clone(&provider),
        roots,
        inner: OnceLock::new(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous() // only to install the verifier below, which verifies fully
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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
    inner: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl LazyWebPkiVerifier {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.inner
            .get_or_init(|| {
                let store = load_roots(&self.roots)?;
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| format!("cannot set up certificate verification: {e}"))
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
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
    let path: &Path = match roots {
        TrustRoots::PemFile(p) => p,
        TrustRoots::System => SYSTEM_CA_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no system CA bundle found (looked for {}): install the ca-certificates package",
                    SYSTEM_CA_BUNDLES.join(", ")
                )
            })?,
    };
    let what = |m: String| format!("trusted CA certificates {}: {m}", path.display());
    // O_NONBLOCK: a FIFO put in its place must not hang the login in open();
    // the fstat below then refuses it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| what(format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| what(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(what("not a regular file".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
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
        .map_err(|e| what(format!("cannot read: {e}")))?;
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
pub fn read_body(response: reqwest::blocking::Response) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut limited = response.take(MAX_BODY);
    if let Err(e) = limited.read_to_end(&mut buf) {
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut
            || e.get_ref()
                .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                .is_some_and(|r| r.is_timeout());
        return Err(if timed_out {
            "timed out reading the answer".to_string()
        } else {
            "the connection broke while reading the answer".to_string()
        });
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
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

/// Why an HTTP exchange produced no usable answer, for the gateways that
/// share [`exchange`]. Texts are already stripped of URLs and secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing listens at the address.
    Refused(String),
    /// No answer (or no complete answer) within the timeout.
    Timeout,
    /// DNS, TLS, a reset connection, a client that cannot be built.
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Refused(d) => write!(f, "connection refused ({d})"),
            TransportError::Timeout => f.write_str("no answer within the timeout"),
            TransportError::Other(d) => write!(f, "transport error: {d}"),
        }
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

/// Sends `request` and reads the answer. Every error text has the URL
/// removed and each of `secrets` (and its percent-encoded form) redacted,
/// because URLs and reqwest's messages may carry tokens.
pub fn exchange(
    request: reqwest::blocking::RequestBuilder,
    secrets: &[&str],
) -> Result<HttpAnswer, TransportError> {
    let scrub = |text: &str| scrub(text, secrets);
    let response = request.send().map_err(|err| {
        let timed_out = err.is_timeout();
        let connect = err.is_connect();
        let text = scrub(&describe(&err.without_url()));
        if timed_out {
            TransportError::Timeout
        } else if connect && text.contains("refused") {
            TransportError::Refused(text)
        } else {
            TransportError::Other(text)
        }
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = read_body(response).map_err(|e| {
        if e.starts_with("timed out") {
            TransportError::Timeout
        } else {
            TransportError::Other(scrub(&e))
        }
    })?;
    Ok(HttpAnswer {
        status,
        retry_after,
        body,
    })
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
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    crate::gateway::redact(text, &all)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a
/// path segment or a query value).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&k=v` with every key and value percent-encoded: a query string, or
/// an `application/x-www-form-urlencoded` body.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_catches_plain_and_encoded_secrets() {
        let text = "GET /x?h=ab%2Bc%2Fd&u=me failed: ab+c/d\nnext";
        assert_eq!(
            scrub(text, &["ab+c/d"]),
            "GET /x?h=[redacted]&u=me failed: [redacted] next"
        );
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("!room:ex.org"), "%21room%3Aex.org");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("To", "+4915112345678"), ("Body", "a b&c=d")]),
            "To=%2B4915112345678&Body=a%20b%26c%3Dd"
        );
    }

    #[test]
    fn excerpt_is_bounded() {
        assert_eq!(excerpt("  abcdef ", 3, &[]), "abc…");
        assert_eq!(excerpt("token=s3cr3t", 50, &["s3cr3t"]), "token=[redacted]");
    }
}
