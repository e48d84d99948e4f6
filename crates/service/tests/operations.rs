//! The service in operation: the health check, database trouble answered
//! with 503 (never a hang), start-up announcements and refusals, and a
//! graceful shutdown that answers the request in flight.

mod common;

use std::io::BufRead;
use std::time::Duration;

use common::{
    Service, TestDb, get, lock_activities, lock_waiters, seeded_db, service_command,
    wait_for_listening,
};
use cruddur_db::{Config, Environment};
use cruddur_db_service::Auth;
use cruddur_db_test_support::eventually;
use diesel::connection::SimpleConnection;
use serde_json::json;

/// How a test starts the service: its primary's reads on the database
/// threads, or on async connections.
type Start = fn(&Config, Auth, &[&str]) -> Service;

#[test]
fn database_trouble_is_a_503_with_a_json_body_and_the_service_recovers() {
    database_trouble(Service::start);
}

#[test]
fn database_trouble_on_async_connections_is_a_503_too_and_the_service_recovers() {
    database_trouble(Service::start_async);
}

fn database_trouble(start: Start) {
    let db = seeded_db();
    let mut config = Config::new(db.url.clone());
    config.checkout_timeout = Duration::from_millis(500);
    let service = start(
        &config,
        Auth::Development {
            handle: "andrewbrown".into(),
        },
        &[],
    );
    let health = get(&service.url("/api/health-check"), &[]);
    assert_eq!(
        (health.status, health.json()),
        (200, json!({ "success": true, "ver": 1 }))
    );
    assert_eq!(get(&service.url("/api/activities/home"), &[]).status, 200);

    // The database stops taking connections and loses the ones it had.
    let mut admin = cruddur_db::establish(&db.url.with_database("postgres")).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
            name = db.name()
        ))
        .unwrap();
    for path in [
        "/api/activities/home",
        "/api/health-check",
        "/api/activities/home",
    ] {
        let answer = get(&service.url(path), &[]);
        assert_eq!(answer.status, 503, "{path}: {}", answer.body);
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with("the database is unavailable"),
            "{path}: {error}"
        );
    }
    let post = common::post_json(
        &service.url("/api/activities"),
        &[],
        r#"{"message": "while down", "ttl": "1-day"}"#,
    );
    assert_eq!(post.status, 503, "{}", post.body);

    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name()
        ))
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || get(
            &service.url("/api/health-check"),
            &[]
        )
        .status
            == 200),
        "the service did not recover"
    );
    assert_eq!(get(&service.url("/api/activities/home"), &[]).status, 200);
}

#[test]
fn an_exhausted_pool_answers_503_within_the_checkout_timeout() {
    exhausted_pool(Service::start);
}

#[test]
fn an_exhausted_async_pool_answers_503_within_the_checkout_timeout() {
    exhausted_pool(Service::start_async);
}

fn exhausted_pool(start: Start) {
    let db = seeded_db();
    let mut config = Config::new(db.url.clone());
    config.pool_size = 1;
    config.checkout_timeout = Duration::from_millis(300);
    let service = start(
        &config,
        Auth::Development {
            handle: "andrewbrown".into(),
        },
        &[],
    );
    let lock = lock_activities(&db);
    let url = service.url("/api/activities/home");
    let held = std::thread::spawn(move || get(&url, &[]));
    assert!(
        eventually(Duration::from_secs(10), || lock_waiters(&db) > 0),
        "the first request never reached the database"
    );
    // The only connection is busy: the next request waits 300 ms for it.
    let second = get(&service.url("/api/activities/home"), &[]);
    assert_eq!(
        (second.status, second.json()),
        (503, json!({ "error": "the database is busy" }))
    );
    drop(lock);
    let first = held.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_cleanly() {
    let db = seeded_db();
    let mut child = service_command(&[("DATABASE_URL", db.url.expose())])
        .spawn()
        .expect("start the service");
    let (base, printed, mut stderr) = wait_for_listening(&mut child);
    assert!(printed.contains("DEVELOPMENT MODE"), "{printed}");
    assert!(printed.contains("`andrewbrown`"), "{printed}");

    let lock = lock_activities(&db);
    let url = format!("{base}/api/activities/home");
    let in_flight = std::thread::spawn(move || get(&url, &[]));
    assert!(
        eventually(Duration::from_secs(10), || lock_waiters(&db) > 0),
        "the request never reached the database"
    );
    common::sigterm(&child);
    // Log lines come through a writer thread: others may come first.
    let mut seen = String::new();
    while !seen.contains("shutting down") {
        let read = stderr.read_line(&mut seen).expect("read stderr");
        assert!(read > 0, "the service exited without shutting down: {seen}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    drop(lock);
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json().as_array().is_some_and(|a| !a.is_empty()));
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(
        rest.contains("every request in flight was answered"),
        "{rest}"
    );
}

#[test]
fn sigterm_exits_at_the_shutdown_deadline_while_a_request_waits_on_the_database() {
    let db = seeded_db();
    let mut child = service_command(&[
        ("DATABASE_URL", db.url.expose()),
        // Nothing but the deadline ends the waiting statement.
        ("CRUDDUR_STATEMENT_TIMEOUT_MS", "0"),
        ("CRUDDUR_SHUTDOWN_DEADLINE_MS", "200"),
    ])
    .spawn()
    .expect("start the service");
    let (base, _, mut stderr) = wait_for_listening(&mut child);
    let lock = lock_activities(&db);
    let url = format!("{base}/api/activities/home");
    let _in_flight = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| get(&url, &[]));
    });
    assert!(
        eventually(Duration::from_secs(10), || lock_waiters(&db) > 0),
        "the request never reached the database"
    );
    common::sigterm(&child);
    let mut status = None;
    let exited = eventually(Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    drop(lock);
    assert!(
        exited,
        "the service waited for the database past its deadline"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.unwrap().success(), "{rest}");
    assert!(
        rest.contains("still open at the shutdown deadline were dropped"),
        "{rest}"
    );
}

/// Serves `body` as JSON to every request on a free loopback port, from a
/// thread of its own; returns the base URL.
fn serve_json_forever(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

/// Starts the binary with `vars` and `args` and reads its stderr until it
/// listens or exits; stops it. Returns whether it listened, and what it
/// printed.
fn start_up(vars: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut child = service_command(vars).args(args).spawn().expect("start");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut printed = String::new();
    let listened = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("read stderr") == 0 {
            break false;
        }
        printed.push_str(&line);
        if line.starts_with("listening on ") {
            break true;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    (listened, printed)
}

#[test]
fn start_up_says_whether_the_primarys_reads_use_async_connections_and_why_not() {
    let db = seeded_db();
    let plain = db
        .url
        .with_param("sslmode", "disable")
        .with_param("gssencmode", "disable");
    let (listened, printed) = start_up(&[("DATABASE_URL", plain.expose())], &[]);
    assert!(listened, "{printed}");
    assert!(
        printed.contains("the primary's reads use async connections"),
        "{printed}"
    );
    assert!(
        !printed.contains("stay on its database threads"),
        "{printed}"
    );

    let (listened, printed) = start_up(
        &[
            ("DATABASE_URL", plain.expose()),
            ("CRUDDUR_ASYNC_PRIMARY", "0"),
        ],
        &[],
    );
    assert!(listened, "{printed}");
    assert!(!printed.contains("async connections"), "{printed}");

    // Over TCP with libpq's default sslmode (prefer), the async
    // connections would go without the TLS libpq uses: declined, and why.
    // (A server reached over a unix socket has no TLS to lose.)
    let prefer = db.url.with_param("sslmode", "prefer");
    if !prefer.param("host").is_some_and(|h| h.starts_with('/')) {
        let (listened, printed) = start_up(&[("DATABASE_URL", prefer.expose())], &[]);
        assert!(listened, "{printed}");
        assert!(
            printed.contains("stay on its database threads")
                && printed.contains("sslmode=prefer over TCP"),
            "{printed}"
        );
    }
}

#[test]
fn a_jwks_url_over_plain_http_is_refused_at_start_up_and_a_jwks_file_verifies_posts() {
    let db = seeded_db();
    cruddur_db::repo::users::confirm_user(
        &mut db.conn(),
        &cruddur_db::repo::users::PostConfirmationEvent {
            name: "File Key".into(),
            email: "file@example.com".into(),
            preferred_username: "filekey".into(),
            sub: "sub-file".into(),
        },
    )
    .unwrap();
    let keys = common::Keys::generate("file-key");
    let issuer = "https://issuer.example/pool";
    // A server that would hand out the keys, over plain HTTP.
    let plain = serve_json_forever(keys.jwks.clone());
    let address = plain.strip_prefix("http://").unwrap();
    for jwks in [
        format!("{plain}/.well-known/jwks.json"),
        format!("HTTP://{address}/.well-known/jwks.json"),
        format!(" Http://user:secret@{address}/jwks.json "),
    ] {
        let (listened, printed) = start_up(
            &[
                ("DATABASE_URL", db.url.expose()),
                ("CRUDDUR_JWKS", &jwks),
                ("CRUDDUR_JWT_ISSUER", issuer),
                ("AWS_COGNITO_USER_POOL_CLIENT_ID", "file-client"),
            ],
            &[],
        );
        assert!(!listened, "{jwks}: {printed}");
        assert!(
            printed.contains("refusing CRUDDUR_JWKS") && printed.contains("https://"),
            "{jwks}: {printed}"
        );
        assert!(!printed.contains("secret"), "{printed}");
    }

    let (_dir, path) = keys.jwks_file();
    let mut child = service_command(&[
        ("DATABASE_URL", db.url.expose()),
        ("CRUDDUR_JWKS", path.to_str().unwrap()),
        ("CRUDDUR_JWT_ISSUER", issuer),
        ("AWS_COGNITO_USER_POOL_CLIENT_ID", "file-client"),
    ])
    .spawn()
    .unwrap();
    let (base, printed, _stderr) = wait_for_listening(&mut child);
    assert!(!printed.contains("DEVELOPMENT MODE"), "{printed}");
    let token = keys.sign(&json!({
        "sub": "sub-file", "iss": issuer, "client_id": "file-client", "token_use": "access",
        "exp": common::now() + 600,
    }));
    let url = format!("{base}/api/activities");
    let body = r#"{"message": "via a key file", "ttl": "1-day"}"#;
    let signed = common::post_json(&url, &[("Authorization", &format!("Bearer {token}"))], body);
    let anonymous = common::post_json(&url, &[], body);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.json()["handle"], "filekey");
    assert_eq!((anonymous.status, anonymous.json()), (401, json!({})));
}

#[test]
fn the_development_mode_refuses_the_database_of_prod_connection_url_however_spelled() {
    let db = seeded_db();
    let url = db.url.expose();
    let name = db.name();
    let refused = [
        url.to_owned(),
        db.url.with_param("host", "127.0.0.1").expose().to_owned(),
        db.url
            .with_param(
                "options",
                "-c DateStyle=SQL,DMY -c TimeZone=Pacific/Chatham",
            )
            .expose()
            .to_owned(),
        db.url
            .with_param("application_name", "prod")
            .expose()
            .to_owned(),
        format!("host=127.0.0.1 port=5432 dbname={name}"),
        format!("postgresql://127.0.0.1:5432/{name}?connect_timeout=5"),
    ];
    for prod in &refused {
        let (listened, printed) =
            start_up(&[("DATABASE_URL", url), ("PROD_CONNECTION_URL", prod)], &[]);
        assert!(!listened, "{prod}: {printed}");
        assert!(
            printed.contains("refusing the development mode")
                && printed.contains("it is the database of PROD_CONNECTION_URL"),
            "{prod}: {printed}"
        );
    }
    // What cannot be asked is a refusal too.
    for (prod, expected) in [
        (
            "postgres://127.0.0.1:1/x?connect_timeout=2",
            "cannot tell whether",
        ),
        ("postgres://[", "reading PROD_CONNECTION_URL"),
    ] {
        let (listened, printed) =
            start_up(&[("DATABASE_URL", url), ("PROD_CONNECTION_URL", prod)], &[]);
        assert!(!listened, "{prod}: {printed}");
        assert!(printed.contains(expected), "{prod}: {printed}");
    }
    // Another database of the same server is not production.
    let other = db.url.with_database("postgres");
    let (listened, printed) = start_up(
        &[
            ("DATABASE_URL", url),
            ("PROD_CONNECTION_URL", other.expose()),
        ],
        &[],
    );
    assert!(listened, "{printed}");
    // With token verification the service may serve production.
    let keys = common::Keys::generate("k");
    let (_dir, path) = keys.jwks_file();
    let (listened, printed) = start_up(
        &[
            ("DATABASE_URL", url),
            ("PROD_CONNECTION_URL", url),
            ("CRUDDUR_JWKS", path.to_str().unwrap()),
            ("CRUDDUR_JWT_ISSUER", "https://issuer.example"),
            ("AWS_COGNITO_USER_POOL_CLIENT_ID", "client"),
        ],
        &[],
    );
    assert!(listened, "{printed}");
}

#[test]
fn the_development_mode_refuses_a_network_address_unless_allowed() {
    let db = seeded_db();
    let url = db.url.expose();
    for (vars, args) in [
        (vec![("CRUDDUR_BIND", "0.0.0.0:0")], vec![]),
        (vec![("CRUDDUR_BIND", "[::]:0")], vec![]),
        (vec![], vec!["--bind", "0.0.0.0:0"]),
        (
            vec![
                ("CRUDDUR_BIND", "0.0.0.0:0"),
                ("CRUDDUR_DEV_ALLOW_NETWORK", "0"),
            ],
            vec![],
        ),
    ] {
        let mut all = vec![("DATABASE_URL", url)];
        all.extend(vars.iter().copied());
        let (listened, printed) = start_up(&all, &args);
        assert!(!listened, "{vars:?} {args:?}: {printed}");
        assert!(
            printed.contains("refusing to listen on")
                && printed.contains("CRUDDUR_DEV_ALLOW_NETWORK=1"),
            "{vars:?} {args:?}: {printed}"
        );
    }
    let (listened, printed) = start_up(
        &[
            ("DATABASE_URL", url),
            ("CRUDDUR_BIND", "0.0.0.0:0"),
            ("CRUDDUR_DEV_ALLOW_NETWORK", "yes"),
        ],
        &[],
    );
    assert!(!listened, "{printed}");
    assert!(printed.contains("must be 1 or 0"), "{printed}");
    let (listened, printed) = start_up(
        &[
            ("DATABASE_URL", url),
            ("CRUDDUR_BIND", "0.0.0.0:0"),
            ("CRUDDUR_DEV_ALLOW_NETWORK", "1"),
        ],
        &[],
    );
    assert!(listened, "{printed}");
    assert!(printed.contains("DEVELOPMENT MODE"), "{printed}");
}

#[test]
fn start_up_refuses_conflicting_auth_a_bad_jwks_and_the_development_mode_on_production() {
    let db = seeded_db();
    let url = db.url.expose();
    type Vars<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Vars, &str); 3] = [
        (
            "a JWKS and a development handle",
            vec![
                ("DATABASE_URL", url),
                ("CRUDDUR_JWKS", "/nonexistent/jwks.json"),
                ("CRUDDUR_DEV_HANDLE", "bayko"),
            ],
            "never both",
        ),
        (
            "an unreadable JWKS",
            vec![
                ("DATABASE_URL", url),
                ("CRUDDUR_JWKS", "/nonexistent/jwks.json"),
                ("CRUDDUR_JWT_ISSUER", "https://issuer.example"),
                ("AWS_COGNITO_USER_POOL_CLIENT_ID", "client"),
            ],
            "cannot read the JWKS from /nonexistent/jwks.json",
        ),
        (
            "a bad bind address",
            vec![("DATABASE_URL", url), ("CRUDDUR_BIND", "everywhere")],
            "invalid CRUDDUR_BIND",
        ),
    ];
    for (what, vars, expected) in cases {
        let output = service_command(&vars).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }

    cruddur_db::mark_environment(&mut db.conn(), Environment::Production).unwrap();
    let output = service_command(&[("DATABASE_URL", url)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("refusing the development mode") && stderr.contains("marked production"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// As root, with nothing answering at the default URL, the service falls
/// back to the local cluster. A `.env` of its project naming programs in a
/// directory anyone may write, or a `.env` anyone may write, never chooses
/// a program it runs; a cluster directory that is a link is refused, and
/// what it points at is left alone.
#[test]
fn files_others_could_write_never_choose_what_the_service_runs_or_touches() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return; // the checks are root's
    }
    let tmp = tempfile::tempdir().unwrap();
    let mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // The fake initdb would run as the server user: it may write the marker.
    mode(tmp.path(), 0o777);
    let marker = tmp.path().join("ran");
    let planted = tmp.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    for tool in ["initdb", "pg_ctl", "postgres"] {
        let path = planted.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {tool} >> '{}'\nexit 1\n", marker.display()),
        )
        .unwrap();
        mode(&path, 0o755);
    }
    mode(&planted, 0o777);
    let project = tmp.path().join("project");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    let env_file = project.join(".env");
    std::fs::write(
        &env_file,
        format!("CRUDDUR_PG_BINDIR={}\n", planted.display()),
    )
    .unwrap();
    mode(&env_file, 0o600);
    let cluster_dir = tmp.path().join("pg");
    let cluster_dir = cluster_dir.to_str().unwrap();
    let vars = [
        ("CRUDDUR_DEFAULT_URL", "postgres://localhost:1/cruddur"),
        ("CRUDDUR_LOCAL_DIR", cluster_dir),
    ];
    let run = || {
        let output = service_command(&vars)
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    let stderr = run();
    assert!(!marker.exists(), "a planted program ran: {stderr}");
    assert!(
        stderr.contains("refusing to run") && stderr.contains(&planted.display().to_string()),
        "{stderr}"
    );

    mode(&env_file, 0o666);
    let stderr = run();
    assert!(!marker.exists(), "a planted program ran: {stderr}");
    assert!(
        stderr.contains("not reading") && stderr.contains(&env_file.display().to_string()),
        "{stderr}"
    );
    std::fs::remove_file(&env_file).unwrap();

    // The cluster directory planted as a link to a root-owned directory.
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    mode(&victim, 0o755);
    std::os::unix::fs::symlink(&victim, cluster_dir).unwrap();
    let stderr = run();
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o755), "{stderr}");
    assert!(
        std::fs::read_dir(&victim).unwrap().next().is_none(),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to use"), "{stderr}");
}

#[test]
fn the_zero_setup_path_seeds_a_database_a_killed_first_start_left_unseeded() {
    // Migrated with no user: what a first start killed after its last
    // migration and before the seed's commit leaves behind.
    let db = TestDb::new();
    cruddur_db::run_migrations(&mut db.conn()).expect("migrate");
    // No configured URL: the default URL is the zero-setup path.
    let mut child = service_command(&[("CRUDDUR_DEFAULT_URL", db.url.expose())])
        .spawn()
        .expect("start the service");
    let (base, printed, _stderr) = wait_for_listening(&mut child);
    let answer = get(&format!("{base}/api/activities/home"), &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer.status, 200, "{}\n{printed}", answer.body);
    assert!(
        answer.body.contains("This was imported as seed data!"),
        "{}\n{printed}",
        answer.body
    );
    // The reference seed: two users, a post and a reply to it.
    assert_eq!(cruddur_db_test_support::counts(&mut db.conn()), (2, 2));
}
