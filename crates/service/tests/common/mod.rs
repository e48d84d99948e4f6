//! The service under test, on a free loopback port over a throwaway
//! database, and a small HTTP client that never turns a status into an
//! error.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use cruddur_db::{Config, Repository};
use cruddur_db_service::{AppState, Auth, app, serve};
pub use cruddur_db_test_support::TestDb;
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

    /// Serves `repo` (a clone of which the test may keep, to read its
    /// router) with `auth` and these CORS origins.
    pub fn serve(repo: Repository, auth: Auth, origins: &[&str]) -> Self {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        let router = app(AppState::new(repo, auth), &origins);
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
                serve(listener, router, async {
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
