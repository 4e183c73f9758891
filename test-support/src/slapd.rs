//! A real OpenLDAP `slapd` (Debian's package: /usr/sbin/slapd, ldap-utils)
//! in a private temporary directory, listening on loopback only, for the
//! directory tests. No mocks: the configuration is a cn=config LDIF loaded
//! with `slapadd -n0` -- the schema LDIFs Debian ships (core, cosine, nis,
//! inetorgperson) and pam_gateway's own `conf/ldap/pam-gateway.ldif`, so the
//! schema admins load is the one the tests use -- and an mdb database with
//! `dc=example,dc=test`, `ou=people` below it, a read-only `cn=reader`, and
//! the rootdn `cn=admin`. Passwords are random per server.
//!
//! Listeners: `ldap://127.0.0.1:PORT` (StartTLS offered), `ldaps://` on a
//! second port, and `ldapi://` on a socket in the directory. TLS uses
//! tests/data/tls/leaf.pem (IP 127.0.0.1 and DNS localhost, signed by
//! ca.pem; other-ca.pem signed nothing here). Debian's slapd uses GnuTLS,
//! which reads the PKCS#8 EC key `regenerate.sh` writes.
//!
//! Ports are free ports of 127.0.0.1 picked at start below the kernel's
//! ephemeral range (so no client's `connect` takes one while slapd is
//! stopped for a restart), never 389/636: a
//! system slapd that Debian's postinst may have started on a fresh machine
//! (`apt-get install slapd`) cannot answer in place of this one, and this one
//! cannot disturb it. The `ldap-utils` tools run with `LDAPCONF` pointing at
//! this server's own ldap.conf and every inherited `LDAP*` variable removed,
//! so neither /etc/ldap/ldap.conf nor the caller's ~/.ldaprc changes them.
//!
//! AppArmor: Debian's slapd package ships no AppArmor profile (`dpkg -L
//! slapd`). Ubuntu's does (/etc/apparmor.d/usr.sbin.slapd), and in enforce
//! mode it stops slapd from reading a temporary directory: [`Slapd::start`]
//! then fails at once and says how to put the profile in complain mode.
//!
//! Root is not needed: slapd runs as the calling user on high ports.
//! Dropping a [`Slapd`] stops it (SIGTERM, SIGKILL after a bounded wait) and
//! removes its directory; every wait is bounded.

#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;

const SLAPD: &str = "/usr/sbin/slapd";
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const MODULE_DIR: &str = "/usr/lib/ldap";
/// The schema LDIFs Debian ships that the test entries need, in load order.
const SHIPPED_SCHEMAS: [&str; 4] = ["core", "cosine", "nis", "inetorgperson"];
/// How long slapd may take to answer after it was started.
const START_WAIT: Duration = Duration::from_secs(20);
/// How long slapd may take to exit after SIGTERM before it gets SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long one ldap-utils command may take.
const TOOL_WAIT: Duration = Duration::from_secs(20);
const TICK: Duration = Duration::from_millis(20);

/// A running (or stopped) slapd in its own temporary directory.
pub struct Slapd {
    dir: PathBuf,
    child: Option<Child>,
    ldap_port: u16,
    ldaps_port: u16,
    admin_dn: String,
    admin_password: String,
    reader_dn: String,
    reader_password: String,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    next_uid_number: AtomicU32,
    our_schema: bool,
}

impl Slapd {
    pub const BASE_DN: &'static str = "dc=example,dc=test";
    /// Where [`Slapd::add_user`] puts users.
    pub const PEOPLE_DN: &'static str = "ou=people,dc=example,dc=test";

    /// Builds the configuration and the database in a new temporary
    /// directory, starts slapd on free loopback ports and waits until it
    /// answers a search over ldapi.
    pub fn start() -> io::Result<Slapd> {
        Self::start_with(true)
    }

    /// As [`Slapd::start`] but without pam_gateway's schema (only Debian's
    /// core, cosine, nis, inetorgperson): for the test that loads
    /// conf/ldap/pam-gateway.ldif with `ldapadd -Y EXTERNAL` into the
    /// running server. [`Slapd::add_user`] fails until it is loaded.
    pub fn start_without_schema() -> io::Result<Slapd> {
        Self::start_with(false)
    }

    fn start_with(our_schema: bool) -> io::Result<Slapd> {
        for tool in [SLAPD, "/usr/sbin/slapadd"] {
            if !Path::new(tool).is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{tool} is missing: apt-get install slapd ldap-utils"),
                ));
            }
        }
        check_apparmor()?;
        let dir = private_dir()?;
        let mut slapd = Slapd {
            child: None,
            ldap_port: 0,
            ldaps_port: 0,
            admin_dn: format!("cn=admin,{}", Self::BASE_DN),
            admin_password: random_hex(16)?,
            reader_dn: format!("cn=reader,{}", Self::BASE_DN),
            reader_password: random_hex(16)?,
            ca_file: dir.join("ca.pem"),
            other_ca_file: dir.join("other-ca.pem"),
            next_uid_number: AtomicU32::new(20_000),
            our_schema,
            dir,
        };
        // On error the Drop below removes the directory.
        slapd.build()?;
        // A free port found here may be taken by someone else before slapd
        // binds it: try again with new ports.
        let mut last = None;
        for _ in 0..3 {
            slapd.ldap_port = free_port()?;
            slapd.ldaps_port = free_port()?;
            if slapd.ldaps_port == slapd.ldap_port {
                continue;
            }
            match slapd.launch() {
                Ok(()) => return Ok(slapd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no two free loopback ports")))
    }

    /// `ldap://127.0.0.1:PORT`: plain LDAP; slapd offers StartTLS there.
    pub fn ldap_uri(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:PORT2`: TLS from the first byte.
    pub fn ldaps_uri(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// `ldapi://` with the percent-encoded path of slapd's Unix socket.
    pub fn ldapi_uri(&self) -> String {
        format!("ldapi://{}", percent_encode(&self.socket_path()))
    }

    /// `ldap://localhost:PORT`: the same listener as [`Slapd::ldap_uri`],
    /// by the name the certificate also carries.
    pub fn ldap_uri_localhost(&self) -> String {
        format!("ldap://localhost:{}", self.ldap_port)
    }

    /// The plain-LDAP port (StartTLS offered).
    pub fn ldap_port(&self) -> u16 {
        self.ldap_port
    }

    /// The ldaps port.
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    /// PEM of the CA that signed slapd's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// PEM of a CA that signed nothing slapd presents.
    pub fn other_ca_file(&self) -> &Path {
        &self.other_ca_file
    }

    /// The rootdn: may read and write everything.
    pub fn admin_dn(&self) -> &str {
        &self.admin_dn
    }

    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// `cn=reader,dc=example,dc=test`: may read the database, write nothing.
    pub fn reader_dn(&self) -> &str {
        &self.reader_dn
    }

    pub fn reader_password(&self) -> &str {
        &self.reader_password
    }

    /// The server's private directory (configuration, database, socket,
    /// log); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file holding the admin password (for `ldap* -y`), mode 0600.
    pub fn admin_password_file(&self) -> PathBuf {
        self.dir.join("admin.pw")
    }

    /// A file holding the reader password (for `ldap* -y` and the gateway's
    /// `bind_password_file`), mode 0600.
    pub fn reader_password_file(&self) -> PathBuf {
        self.dir.join("reader.pw")
    }

    /// An ldap-utils program (`ldapsearch`, `ldapmodify`, ...) set up for
    /// this server: its own ldap.conf (TLS_CACERT = [`Slapd::ca_file`],
    /// TLS_REQCERT demand), no inherited `LDAP*` variable, no ~/.ldaprc.
    /// Callers may still set e.g. `LDAPTLS_CACERT` on it.
    pub fn ldap_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LDAP") {
                cmd.env_remove(name);
            }
        }
        cmd.env("LDAPCONF", self.dir.join("ldap.conf"))
            .env("LDAPRC", self.dir.join("no-ldaprc"))
            .env("HOME", &self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// The DN [`Slapd::add_user`] gives `uid`.
    pub fn user_dn(uid: &str) -> String {
        format!("uid={uid},{}", Self::PEOPLE_DN)
    }

    /// Adds `uid=UID,ou=people,dc=example,dc=test` as an inetOrgPerson,
    /// posixAccount and pamGatewayUser (cn, sn, uidNumber, gidNumber,
    /// homeDirectory filled in) with `attrs` on top; repeat a name for
    /// several values. Values may hold any bytes (they are sent base64).
    pub fn add_user(&self, uid: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        check_name("uid", uid, |c| {
            c.is_ascii_alphanumeric() || "._-".contains(c)
        })?;
        let number = self.next_uid_number.fetch_add(1, Ordering::SeqCst);
        let mut ldif = format!(
            "dn: {}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
             objectClass: pamGatewayUser\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             uidNumber: {number}\ngidNumber: {number}\nhomeDirectory: /home/{uid}\n",
            Self::user_dn(uid)
        );
        for (name, value) in attrs {
            check_name("attribute", name, |c| {
                c.is_ascii_alphanumeric() || "-;".contains(c)
            })?;
            ldif.push_str(&ldif_line(name, value));
        }
        self.admin_modify(&["-a"], &ldif)
    }

    /// Applies an LDIF change (ldapmodify) as the admin over ldapi.
    pub fn modify(&self, ldif: &str) -> io::Result<()> {
        self.admin_modify(&[], ldif)
    }

    /// The values of `attr` in the user's entry, read back with ldapsearch
    /// as the admin (empty when the entry has no such attribute; NotFound
    /// when there is no such entry).
    pub fn attr(&self, uid: &str, attr: &str) -> io::Result<Vec<String>> {
        check_name("uid", uid, |c| {
            c.is_ascii_alphanumeric() || "._-".contains(c)
        })?;
        check_name("attribute", attr, |c| {
            c.is_ascii_alphanumeric() || "-;".contains(c)
        })?;
        let mut cmd = self.ldap_command("ldapsearch");
        cmd.args(["-LLL", "-o", "ldif-wrap=no", "-x", "-H"])
            .arg(self.ldapi_uri())
            .args(["-D", &self.admin_dn, "-y"])
            .arg(self.admin_password_file())
            .args(["-s", "base", "-b"])
            .arg(Self::user_dn(uid))
            .args(["(objectClass=*)", attr]);
        let out = run(cmd, None)?;
        if out.status.code() == Some(32) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no entry {}", Self::user_dn(uid)),
            ));
        }
        if !out.status.success() {
            return Err(tool_error("ldapsearch", &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut values = Vec::new();
        for line in text.lines() {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            if !name.eq_ignore_ascii_case(attr) {
                continue;
            }
            let value = match rest.strip_prefix(':') {
                Some(b64) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                None => rest.strip_prefix(' ').unwrap_or(rest).to_string(),
            };
            values.push(value);
        }
        Ok(values)
    }

    /// Stops slapd (SIGCONT if paused, SIGTERM, SIGKILL after a bounded
    /// wait); its directory, data and ports stay for [`Slapd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGCONT);
            signal(&child, libc::SIGTERM);
            let deadline = Instant::now() + STOP_WAIT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => thread::sleep(TICK),
                }
            }
        }
    }

    /// Starts slapd again on the same ports with the same data. A port held
    /// for a moment by someone else gets a few more tries (bounded).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let mut tries = 0;
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if tries < 5 => {
                    eprintln!("slapd restart, try {}: {e}", tries + 1);
                    tries += 1;
                    thread::sleep(Duration::from_millis(300));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGSTOP: slapd keeps its sockets but answers nothing (a hung server).
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child, libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`Slapd::pause`].
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child, libc::SIGCONT);
        }
    }

    /// What slapd wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.join("ldapi")
    }

    /// Writes the certificates, the passwords, ldap.conf, the cn=config
    /// LDIF and the database's first entries, and loads both with slapadd.
    fn build(&mut self) -> io::Result<()> {
        let tls = crate::repo_root().join("tests/data/tls");
        for (from, to, mode) in [
            ("ca.pem", "ca.pem", 0o644),
            ("other-ca.pem", "other-ca.pem", 0o644),
            ("leaf.pem", "leaf.pem", 0o644),
            ("leaf.key", "leaf.key", 0o600),
        ] {
            let data = fs::read(tls.join(from)).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", tls.join(from).display()))
            })?;
            write_file(&self.dir.join(to), &data, mode)?;
        }
        write_file(
            &self.admin_password_file(),
            self.admin_password.as_bytes(),
            0o600,
        )?;
        write_file(
            &self.reader_password_file(),
            self.reader_password.as_bytes(),
            0o600,
        )?;
        let dir = self.dir.display().to_string();
        write_file(
            &self.dir.join("ldap.conf"),
            format!("TLS_CACERT {dir}/ca.pem\nTLS_REQCERT demand\n").as_bytes(),
            0o644,
        )?;
        fs::create_dir(self.dir.join("slapd.d"))?;
        fs::create_dir(self.dir.join("data"))?;

        let schema = crate::repo_root().join("conf/ldap/pam-gateway.ldif");
        let mut config = format!(
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\
             olcPidFile: {dir}/slapd.pid\n\
             olcTLSCACertificateFile: {dir}/ca.pem\n\
             olcTLSCertificateFile: {dir}/leaf.pem\n\
             olcTLSCertificateKeyFile: {dir}/leaf.key\n\n\
             dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
             olcModulePath: {MODULE_DIR}\nolcModuleLoad: back_mdb\n\n\
             dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n"
        );
        let shipped = SHIPPED_SCHEMAS
            .iter()
            .map(|s| PathBuf::from(format!("{SCHEMA_DIR}/{s}.ldif")));
        let ours = if self.our_schema { Some(schema) } else { None };
        for file in shipped.chain(ours) {
            let text = fs::read_to_string(&file)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
            config.push_str(text.trim_end());
            config.push_str("\n\n");
        }
        // Root over ldapi (SASL EXTERNAL) may manage cn=config, as on a
        // Debian server: the test that loads the schema with ldapadd uses it.
        // The same for the uid running the tests when it is not root.
        // SAFETY: geteuid/getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let admin_dn = &self.admin_dn;
        let base = Self::BASE_DN;
        let reader_dn = &self.reader_dn;
        let admin_pw = &self.admin_password;
        config.push_str(&format!(
            "dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
             olcDatabase: {{0}}config\n\
             olcAccess: {{0}}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage \
             by dn.exact=gidNumber={gid}+uidNumber={uid},cn=peercred,cn=external,cn=auth manage by * none\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n\
             olcDatabase: {{1}}mdb\nolcDbDirectory: {dir}/data\nolcDbMaxSize: 16777216\n\
             olcSuffix: {base}\nolcRootDN: {admin_dn}\nolcRootPW: {admin_pw}\n\
             olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none\n\
             olcAccess: {{1}}to * by dn.exact=\"{reader_dn}\" read by * none\n"
        ));
        write_file(&self.dir.join("config.ldif"), config.as_bytes(), 0o600)?;
        let data = format!(
            "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n\
             dn: {people}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {reader_dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: reader\n{pw}",
            people = Self::PEOPLE_DN,
            pw = ldif_line("userPassword", &self.reader_password),
        );
        write_file(&self.dir.join("data.ldif"), data.as_bytes(), 0o600)?;
        for (db, file) in [("0", "config.ldif"), ("1", "data.ldif")] {
            let mut cmd = Command::new("/usr/sbin/slapadd");
            cmd.args(["-q", "-n", db, "-F"])
                .arg(self.dir.join("slapd.d"))
                .arg("-l")
                .arg(self.dir.join(file));
            let out = run(cmd, None)?;
            if !out.status.success() {
                return Err(tool_error(&format!("slapadd -n{db} {file}"), &out));
            }
        }
        Ok(())
    }

    /// Starts slapd in the foreground (`-d 0`) on this server's ports and
    /// waits until it answers over ldapi.
    fn launch(&mut self) -> io::Result<()> {
        // A socket left by a killed slapd would stop the ldapi listener.
        let _ = fs::remove_file(self.socket_path());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("slapd.log"))?;
        let urls = format!(
            "{}/ {}/ {}",
            self.ldap_uri(),
            self.ldaps_uri(),
            self.ldapi_uri()
        );
        let child = Command::new(SLAPD)
            .args(["-d", "0", "-F"])
            .arg(self.dir.join("slapd.d"))
            .arg("-h")
            .arg(&urls)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let busy: Vec<String> = [self.ldap_port, self.ldaps_port]
                    .into_iter()
                    .filter(|&p| !port_is_free(p))
                    .map(|p| p.to_string())
                    .collect();
                return Err(io::Error::other(format!(
                    "slapd exited ({status}) on {urls} (ports in use by someone \
                     else now: {}); its log:\n{}",
                    if busy.is_empty() {
                        "none".to_string()
                    } else {
                        busy.join(", ")
                    },
                    self.log()
                )));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "slapd did not answer within {START_WAIT:?}; its log:\n{}",
                        self.log()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A root-DSE search over ldapi succeeds.
    fn answers(&self) -> bool {
        if !self.socket_path().exists() {
            return false;
        }
        let mut cmd = self.ldap_command("ldapsearch");
        cmd.args(["-LLL", "-x", "-H"]).arg(self.ldapi_uri()).args([
            "-s",
            "base",
            "-b",
            "",
            "(objectClass=*)",
            "namingContexts",
        ]);
        matches!(run(cmd, Some(Duration::from_secs(2))), Ok(out) if out.status.success())
    }

    fn admin_modify(&self, extra: &[&str], ldif: &str) -> io::Result<()> {
        let file = self.dir.join(format!(
            "change-{}.ldif",
            self.next_uid_number.fetch_add(1, Ordering::SeqCst)
        ));
        write_file(&file, ldif.as_bytes(), 0o600)?;
        let mut cmd = self.ldap_command("ldapmodify");
        cmd.args(extra)
            .args(["-x", "-H"])
            .arg(self.ldapi_uri())
            .args(["-D", &self.admin_dn, "-y"])
            .arg(self.admin_password_file())
            .arg("-f")
            .arg(&file);
        let out = run(cmd, None);
        let _ = fs::remove_file(&file);
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            Err(tool_error("ldapmodify", &out))
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Accepts TCP connections on 127.0.0.1 and never answers: a stalled
/// directory (or a TLS port that never completes a handshake). Holds every
/// connection until dropped; dropping closes the port and joins its thread.
pub struct StallListener {
    port: u16,
    shutdown: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallListener {
    pub fn start() -> io::Result<StallListener> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shutdown = Arc::new(AtomicBool::new(false));
        let accepted: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let shutdown = Arc::clone(&shutdown);
            let accepted = Arc::clone(&accepted);
            thread::Builder::new()
                .name("stall-listener".into())
                .spawn(move || {
                    while !shutdown.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => accepted
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(stream),
                            Err(_) => thread::sleep(TICK),
                        }
                    }
                })?
        };
        Ok(StallListener {
            port,
            shutdown,
            acceptor: Some(acceptor),
            accepted,
        })
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` (the same port: the handshake never ends).
    pub fn ldaps_uri(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for StallListener {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Fails when an AppArmor profile confines /usr/sbin/slapd in enforce mode
/// (Ubuntu ships one; Debian does not): it would not let slapd read the
/// temporary directory, and slapd's own error would not say why.
fn check_apparmor() -> io::Result<()> {
    let Ok(profiles) = fs::read_to_string("/sys/kernel/security/apparmor/profiles") else {
        return Ok(());
    };
    if profiles
        .lines()
        .any(|l| l.contains("slapd") && l.ends_with("(enforce)"))
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "an AppArmor profile confines slapd in enforce mode and would stop it from \
             reading the test's temporary directory; for the tests run \
             `aa-complain /usr/sbin/slapd` (apparmor-utils), or \
             `ln -s /etc/apparmor.d/usr.sbin.slapd /etc/apparmor.d/disable/ && \
             apparmor_parser -R /etc/apparmor.d/usr.sbin.slapd`",
        ));
    }
    Ok(())
}

/// A new 0700 directory under the temp dir with a random name.
fn private_dir() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pgw-slapd-{}", random_hex(8)?));
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where [`free_port`] looks: below the kernel's ephemeral range.
const FIXED_PORTS_FROM: u16 = 10_000;

/// A port of 127.0.0.1 that was free a moment ago, picked at random *below*
/// the kernel's ephemeral range (`net.ipv4.ip_local_port_range`). The kernel
/// hands out ephemeral ports for every `connect` and every bind to port 0:
/// one of them, taken by some other test's client while this slapd is
/// stopped, made [`Slapd::restart`] fail with EADDRINUSE. A port below the
/// range is only ever taken by an explicit bind. Falls back to a port of the
/// kernel's choice when the range starts too low to leave room.
fn free_port() -> io::Result<u16> {
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if low > FIXED_PORTS_FROM + 1_000 {
        let span = u32::from(low - FIXED_PORTS_FROM);
        for _ in 0..64 {
            let mut r = [0u8; 4];
            getrandom::fill(&mut r).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
            let offset = u32::from_le_bytes(r) % span;
            let port = FIXED_PORTS_FROM + u16::try_from(offset).unwrap_or(0);
            if port_is_free(port) {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Nothing holds 127.0.0.1:`port` right now (slapd binds with SO_REUSEADDR,
/// as std's listener does, so a TIME_WAIT leftover does not count).
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(data)
}

/// `name:: BASE64` -- safe for any value (newlines, leading spaces, UTF-8).
fn ldif_line(name: &str, value: &str) -> String {
    format!(
        "{name}:: {}\n",
        base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
    )
}

fn check_name(what: &str, s: &str, ok: impl Fn(char) -> bool) -> io::Result<()> {
    if s.is_empty() || !s.chars().all(ok) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {s:?}: letters, digits and a few punctuation marks only"),
        ));
    }
    Ok(())
}

/// RFC 3986 percent-encoding of everything but unreserved characters (the
/// ldapi socket path goes in the URI's host part).
fn percent_encode(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn signal(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; pid is our own child,
    // not yet reaped (the Child is still held), so it names no other process.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs a command with a bounded wait (TOOL_WAIT, or `wait`), collecting
/// its output; a command still running then is killed.
fn run(mut cmd: Command, wait: Option<Duration>) -> io::Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{program}: {e} (apt-get install ldap-utils slapd)"),
            )
        })?;
    let readers: Vec<JoinHandle<Vec<u8>>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    })
    .collect();
    let deadline = Instant::now() + wait.unwrap_or(TOOL_WAIT);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{program} did not finish in time"),
            ));
        }
        thread::sleep(TICK);
    };
    let mut outputs = readers.into_iter().map(|h| h.join().unwrap_or_default());
    Ok(Output {
        status,
        stdout: outputs.next().unwrap_or_default(),
        stderr: outputs.next().unwrap_or_default(),
    })
}

fn tool_error(what: &str, out: &Output) -> io::Error {
    io::Error::other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Runs one ldap-utils command built with [`Slapd::ldap_command`] with a
/// bounded wait and returns its output (for tests).
pub fn run_tool(cmd: Command) -> io::Result<Output> {
    run(cmd, None)
}
