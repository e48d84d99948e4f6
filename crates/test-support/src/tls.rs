//! Certificates for tests of TLS: a CA, an unrelated CA and a server
//! certificate for `localhost`, made with `openssl`, and a `verify-full`
//! URL for a [`TempCluster`] that serves them.

use std::path::Path;
use std::process::Command;

use cruddur_db::DatabaseUrl;

use crate::TempCluster;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes into `dir` a CA (`ca.pem`, `ca.key`), a second unrelated CA
/// (`other-ca.pem`), and a server certificate for `localhost` signed by the
/// first (`server.pem`, `server.key`), valid for two days.
pub fn make_certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=cruddur test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").expect("write san.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// `cluster`'s `postgres` database over TCP at `host` (a name or an
/// address), with `sslmode=verify-full` trusting the CA in `ca`.
pub fn verify_full_url(cluster: &TempCluster, host: &str, ca: &Path) -> DatabaseUrl {
    let base = cluster
        .tcp_url_for("postgres")
        .expect("the cluster listens on TCP");
    let raw = base
        .expose()
        .replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    DatabaseUrl::parse(&format!(
        "{raw}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .expect("a verify-full URL parses")
}

/// A private cluster that asks for passwords and speaks TLS with a fresh
/// CA, with the directory that holds the CA (`ca.pem`), the cluster's
/// `verify-full` URL at `localhost` and its password.
pub fn verifying_cluster() -> (tempfile::TempDir, TempCluster, DatabaseUrl, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    make_certificates(dir.path());
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("a certificate file");
    let cluster = TempCluster::builder()
        .password_auth(true)
        .ssl(read("server.pem"), read("server.key"))
        .start()
        .expect("start a TLS cluster");
    let password = cluster
        .tcp_url_for("postgres")
        .expect("the cluster listens on TCP")
        .password()
        .expect("the TCP URL carries the password");
    let good = verify_full_url(&cluster, "localhost", &dir.path().join("ca.pem"));
    (dir, cluster, good, password)
}
