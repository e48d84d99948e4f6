//! The service under test, on a free loopback port over a throwaway
//! database, and a small HTTP client that never turns a status into an
//! error.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use cruddur_db::nonblocking::AsyncPrimary;
use cruddur_db::{Config, Repository};
use cruddur_db_service::auth::Verifier;
use cruddur_db_service::{AppState, Auth, Transport, app, serve};
pub use cruddur_db_test_support::TestDb;
use serde_json::json;
use ureq::http::{Request, Response};

/// A seeded, migrated database of the test's own.
pub fn seeded_db() -> TestDb {
    let db = TestDb::migrated();
    cruddur_db::repo::seed::seed_reference(&mut db.conn()).expect("seed");
    db
}

/// The service on `127.0.0.1:<free port>`, stopped (gracefully) on drop.
pub struct Service {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Serves `config`'s database with `auth` and these CORS origins.
    pub fn start(config: &Config, auth: Auth, origins: &[&str]) -> Self {
        let repo = Repository::connect(config).expect("connect");
        Self::serve(repo, auth, origins)
    }

    /// Like [`Service::start`], with the primary's reads on async
    /// connections: over `config`'s URL with TLS off, which they take.
    pub fn start_async(config: &Config, auth: Auth, origins: &[&str]) -> Self {
        let mut config = config.clone();
        config.database_url = config
            .database_url
            .with_param("sslmode", "disable")
            .with_param("gssencmode", "disable");
        let repo = Repository::connect(&config).expect("connect");
        let primary = AsyncPrimary::new(repo.router()).expect("the async primary takes TLS off");
        let state = AppState::new(repo, auth)
            .expect("database threads")
            .with_async_primary(primary);
        Self::serve_state(state, origins)
    }

    /// Serves `repo` (a clone of which the test may keep, to read its
    /// router) with `auth` and these CORS origins.
    pub fn serve(repo: Repository, auth: Auth, origins: &[&str]) -> Self {
        Self::serve_state(
            AppState::new(repo, auth).expect("database threads"),
            origins,
        )
    }

    /// Serves `state` (made by the test, with its own settings) with these
    /// CORS origins.
    pub fn serve_state(state: AppState, origins: &[&str]) -> Self {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        let router = app(state, &origins);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                serve(listener, router, Transport::default(), async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            });
        });
        Self {
            base,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The development mode, posting as `andrewbrown`.
    pub fn development(db: &TestDb) -> Self {
        Self::start(
            &Config::new(db.url.clone()),
            Auth::Development {
                handle: "andrewbrown".into(),
            },
            &[],
        )
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A response: status, headers and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn answer(mut response: Response<ureq::Body>) -> Answer {
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.body_mut().read_to_string().expect("read the body"),
    }
}

/// Sends `method url` with these headers and body.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = match body {
        Some(body) => agent().run(request.body(body.to_owned()).expect("request")),
        None => agent().run(request.body(()).expect("request")),
    };
    answer(response.unwrap_or_else(|e| panic!("{method} {url}: {e}")))
}

/// `POST url` with a JSON body, as a client that may see the service
/// unreachable: a transport failure is an `Err` with its text, not a
/// panic.
pub fn try_post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer, String> {
    let mut request = Request::builder()
        .method("POST")
        .uri(url)
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.to_owned()).map_err(|e| e.to_string())?;
    agent().run(request).map(answer).map_err(|e| e.to_string())
}

/// `GET url`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    send("GET", url, headers, None)
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    send("POST", url, &all, Some(body))
}

/// The number of activities in `db`.
pub fn activities(db: &TestDb) -> i64 {
    cruddur_db_test_support::counts(&mut db.conn()).1
}

/// An RSA key pair made with `openssl`, and its public half as a JWKS.
pub struct Keys {
    pub kid: String,
    pub private_pem: Vec<u8>,
    pub jwks: String,
    _dir: tempfile::TempDir,
}

impl Keys {
    /// A new 2048-bit key named `kid`.
    pub fn generate(kid: &str) -> Self {
        use base64::Engine;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key.pem");
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
            &key,
        );
        let modulus = openssl(&["rsa", "-noout", "-modulus", "-in"], &key);
        let hex = modulus
            .trim()
            .strip_prefix("Modulus=")
            .expect("openssl prints Modulus=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = serde_json::json!({
            "keys": [{ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": n, "e": "AQAB" }]
        })
        .to_string();
        Self {
            kid: kid.to_owned(),
            private_pem: std::fs::read(&key).expect("read the key"),
            jwks,
            _dir: dir,
        }
    }

    /// A token signed with this key, with these claims.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&self.private_pem).expect("pem");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    /// A token signed with this key whose header is `header` as written
    /// (for members jsonwebtoken's header type cannot carry, or spellings
    /// it would normalise).
    pub fn sign_raw(&self, header: &str, claims: &serde_json::Value) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!("{}.{}", b64.encode(header), b64.encode(claims.to_string()));
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&self.private_pem).expect("pem");
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
                .expect("sign");
        format!("{message}.{signature}")
    }

    /// The JWKS written to a file in a new directory.
    pub fn jwks_file(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, &self.jwks).expect("write the JWKS");
        (dir, path)
    }
}

fn openssl(args: &[&str], file: &std::path::Path) -> String {
    let output = Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Seconds since the epoch, for `exp` and `iat`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The binary, with only these variables (and `PATH`).
pub fn service_command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cruddur-db-service"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("CRUDDUR_BIND", "127.0.0.1:0")
        .current_dir(std::env::temp_dir())
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Reads the child's stderr until it says where it listens; returns that
/// base URL and everything it printed before.
pub fn wait_for_listening(
    child: &mut Child,
) -> (String, String, BufReader<std::process::ChildStderr>) {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).expect("read stderr");
        assert!(read > 0, "the service exited before listening:\n{printed}");
        printed.push_str(&line);
        if let Some(base) = line.trim().strip_prefix("listening on ") {
            return (base.to_owned(), printed, stderr);
        }
    }
}

/// The service binary running with these variables, killed on drop.
pub struct Running {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The rest of its stderr, after the `listening on` line.
    pub stderr: BufReader<std::process::ChildStderr>,
}

impl Running {
    /// Starts the binary and waits until it listens.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        let mut child = service_command(vars).spawn().expect("start the service");
        let (base, _, stderr) = wait_for_listening(&mut child);
        Self {
            child,
            base,
            stderr,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        sigterm(&self.child);
    }
}

/// Sends SIGTERM to `child`, a process the test started.
pub fn sigterm(child: &std::process::Child) {
    // SAFETY: kill(2) on the child we started.
    #[expect(unsafe_code, reason = "sending SIGTERM through libc")]
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a raw read may wait before a test gives up on it: a bound on
/// "never", not a timing measurement.
pub const READ_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// A raw TCP connection to `base` (`http://HOST:PORT`), whose reads wait
/// at most [`READ_BOUND`].
pub fn connect(base: &str) -> std::net::TcpStream {
    let address = base.strip_prefix("http://").expect("an http:// base");
    let stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(READ_BOUND))
        .expect("read timeout");
    stream
}

/// `GET path` on `stream`, keeping the connection open.
pub fn write_get(stream: &mut std::net::TcpStream, path: &str) -> std::io::Result<()> {
    use std::io::Write;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// One response from `stream`: its status and body (by `Content-Length`);
/// `None` when the server closed the connection (or reset it) first.
pub fn read_response(stream: &mut std::net::TcpStream) -> Option<(u16, String)> {
    use std::io::Read;
    let mut data = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if is_reset(&e) => return None,
            Err(e) => panic!("no response within the bound: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if is_reset(&e) => return None,
            Err(e) => panic!("the body did not come within the bound: {e}"),
        }
    }
    Some((
        status,
        String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned(),
    ))
}

/// Whether the server has closed `stream`: a read returns end of file or
/// a reset. `false` when data comes, or nothing within the read timeout.
pub fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut byte = [0_u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => is_reset(&e),
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
    )
}

/// The issuer of the tokens the tests sign.
pub const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Test";
/// The app client of the tokens the tests sign.
pub const CLIENT: &str = "test-client";

/// The service verifying tokens signed by `keys`.
pub fn jwt_service(db: &TestDb, keys: &Keys) -> Service {
    let verifier = Verifier::from_jwks(&keys.jwks, ISSUER, CLIENT).unwrap();
    // The feed on async connections, as the service runs by default where
    // the URL allows it (the fuzz test's service among these).
    Service::start_async(
        &Config::new(db.url.clone()),
        Auth::Jwt(Box::new(verifier)),
        &[],
    )
}

/// An access token's claims for `sub`, valid for ten minutes.
pub fn access_claims(sub: &str) -> serde_json::Value {
    json!({
        "sub": sub, "iss": ISSUER, "client_id": CLIENT, "token_use": "access",
        "exp": now() + 600, "iat": now(),
    })
}

/// The user `holder`, whose Cognito subject is `sub-of-holder`.
pub fn confirm_token_holder(db: &TestDb) {
    cruddur_db::repo::users::confirm_user(
        &mut db.conn(),
        &cruddur_db::repo::users::PostConfirmationEvent {
            name: "Token Holder".into(),
            email: "holder@example.com".into(),
            preferred_username: "holder".into(),
            sub: "sub-of-holder".into(),
        },
    )
    .unwrap();
}

/// A connection holding `LOCK TABLE activities` in an open transaction:
/// every feed read and post waits until it is dropped (which ends the
/// transaction).
pub fn lock_activities(db: &TestDb) -> diesel::PgConnection {
    use diesel::connection::SimpleConnection;
    let mut conn = db.conn();
    conn.batch_execute("BEGIN; LOCK TABLE activities IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    conn
}

/// How many sessions of `db` wait for a lock.
pub fn lock_waiters(db: &TestDb) -> i64 {
    cruddur_db_test_support::lock_waiters(&mut db.conn())
}
