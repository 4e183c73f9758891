//! A TLS front for a loopback test server: accepts TLS on 127.0.0.1 with a
//! given certificate, and passes the decrypted bytes to a plain-TCP backend
//! (e.g. the fake Bot API) and its answers back. Lets the https path of a
//! client -- handshake and certificate verification -- run without leaving
//! loopback. Certificates: tests/data/tls (see regenerate.sh there).
//!
//! Included with `#[path = "support/tls_front.rs"] mod tls_front;` (tests)
//! or `#[path = "../test-support/src/tls_front.rs"]` (examples). Stops, closing
//! its port and joining its threads, when dropped; every wait is bounded.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How often blocked threads look at the shutdown flag.
const TICK: Duration = Duration::from_millis(25);

pub struct TlsFront {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TlsFront {
    /// Serves TLS with `cert_chain` (PEM, leaf first) and `key` (PEM) on a
    /// free port of 127.0.0.1, forwarding to `backend`.
    pub fn start(cert_chain: &Path, key: &Path, backend: SocketAddr) -> io::Result<TlsFront> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_chain)
            .map_err(|e| bad("certificate file", &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad("certificate file", &e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key file", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| bad("certificate and key", &e))?;
        let config = Arc::new(config);

        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let shutdown = Arc::clone(&shutdown);
            let workers = Arc::clone(&workers);
            thread::Builder::new()
                .name("tls-front-accept".into())
                .spawn(move || {
                    while !shutdown.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((client, _)) => {
                                let config = Arc::clone(&config);
                                let shutdown = Arc::clone(&shutdown);
                                let mut list = workers.lock().unwrap_or_else(|e| e.into_inner());
                                list.retain(|h| !h.is_finished());
                                if let Ok(h) = thread::Builder::new()
                                    .name("tls-front-conn".into())
                                    .spawn(move || {
                                        let _ = relay(client, backend, config, &shutdown);
                                    })
                                {
                                    list.push(h);
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                poll_in(&[listener.as_raw_fd()], TICK);
                            }
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })?
        };
        Ok(TlsFront {
            addr,
            shutdown,
            acceptor: Some(acceptor),
            workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}

/// Waits until one of `fds` is readable (or hung up), at most `max`;
/// returns which ones are.
fn poll_in(fds: &[i32], max: Duration) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pfds.len() pollfd structs.
    let n = unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            max.as_millis() as libc::c_int,
        )
    };
    pfds.iter().map(|p| n > 0 && p.revents != 0).collect()
}

/// One connection: TLS from the client, plain bytes to and from `backend`.
fn relay(
    mut client: TcpStream,
    backend: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    shutdown: &AtomicBool,
) -> io::Result<()> {
    let other = |e: rustls::Error| io::Error::other(e.to_string());
    client.set_nonblocking(false)?;
    client.set_nodelay(true)?;
    client.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut conn = rustls::ServerConnection::new(config).map_err(other)?;
    let mut server = TcpStream::connect(backend)?;
    server.set_nodelay(true)?;
    server.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut idle = Duration::ZERO;
    while !shutdown.load(Ordering::SeqCst) && idle < Duration::from_secs(30) {
        while conn.wants_write() {
            conn.write_tls(&mut client)?;
        }
        let ready = poll_in(&[client.as_raw_fd(), server.as_raw_fd()], TICK);
        if !ready[0] && !ready[1] {
            idle += TICK;
            continue;
        }
        idle = Duration::ZERO;
        if ready[0] {
            if conn.read_tls(&mut client)? == 0 {
                return Ok(()); // the client closed
            }
            let state = conn.process_new_packets().map_err(|e| {
                // Tell the client why (e.g. an alert it can report).
                let _ = conn.write_tls(&mut client);
                other(e)
            })?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let mut plain = vec![0u8; n];
                conn.reader().read_exact(&mut plain)?;
                server.write_all(&plain)?;
            }
            if state.peer_has_closed() {
                return Ok(());
            }
        }
        if ready[1] {
            let n = server.read(&mut buf)?;
            if n == 0 {
                conn.send_close_notify();
                while conn.wants_write() {
                    conn.write_tls(&mut client)?;
                }
                return Ok(());
            }
            conn.writer().write_all(&buf[..n])?;
        }
    }
    Ok(())
}
