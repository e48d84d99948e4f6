//! The service's transport under clients that misbehave, over raw TCP: a
//! request head sent in part or trickled, keep-alive connections left
//! idle, more connections than the cap, and SIGTERM while a half-sent
//! request is open. Each runs the binary with small limits set through
//! its variables.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Running, TestDb, closed_by_server, connect, read_response, write_get};
use cruddur_db_test_support::eventually;

/// The binary on a migrated database of its own, with these limits.
fn start(db: &TestDb, limits: &[(&str, &str)]) -> Running {
    let mut vars = vec![("DATABASE_URL", db.url.expose())];
    vars.extend_from_slice(limits);
    Running::start(&vars)
}

/// A request that needs no database: the JSON `404`.
const PATH: &str = "/not-a-route";

#[test]
fn a_request_head_cut_short_or_trickled_is_closed_at_the_header_read_timeout() {
    let db = TestDb::migrated();
    let service = start(
        &db,
        &[
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "300"),
            ("CRUDDUR_IDLE_TIMEOUT_MS", "600000"),
        ],
    );

    let mut cut_short = connect(&service.base);
    cut_short
        .write_all(b"GET /api/health-check HTTP/1.1\r\nHost: test\r\n")
        .unwrap();
    assert!(
        closed_by_server(&mut cut_short),
        "a head cut short stays open"
    );

    // One byte per read timeout: every byte would restart a timeout
    // counted from the last byte; this one counts from the first.
    let mut trickled = connect(&service.base);
    trickled
        .write_all(b"GET /api/health-check HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .unwrap();
    trickled
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut closed = false;
    for _ in 0..300 {
        if trickled.write_all(b"a").is_err() || closed_by_server(&mut trickled) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled head was read for 300 bytes");

    // Whoever sends a whole request is answered meanwhile.
    let mut whole = connect(&service.base);
    write_get(&mut whole, PATH).unwrap();
    assert_eq!(read_response(&mut whole).map(|r| r.0), Some(404));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout_and_only_then() {
    let db = TestDb::migrated();
    // The header-read timeout does not close an idle connection.
    let service = start(
        &db,
        &[
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "200"),
            ("CRUDDUR_IDLE_TIMEOUT_MS", "600000"),
        ],
    );
    let mut idle = connect(&service.base);
    write_get(&mut idle, PATH).unwrap();
    assert_eq!(read_response(&mut idle).map(|r| r.0), Some(404));
    let mut half = connect(&service.base);
    half.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(closed_by_server(&mut half), "the half-sent one stays open");
    // Idle longer than the header-read timeout, and still served.
    write_get(&mut idle, PATH).unwrap();
    assert_eq!(
        read_response(&mut idle).map(|r| r.0),
        Some(404),
        "an idle connection was closed by the header-read timeout"
    );
    drop(service);

    let service = start(
        &db,
        &[
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "600000"),
            ("CRUDDUR_IDLE_TIMEOUT_MS", "200"),
        ],
    );
    let mut kept_alive = connect(&service.base);
    write_get(&mut kept_alive, PATH).unwrap();
    assert_eq!(read_response(&mut kept_alive).map(|r| r.0), Some(404));
    assert!(
        closed_by_server(&mut kept_alive),
        "an idle keep-alive connection stays open"
    );
    let mut silent = connect(&service.base);
    assert!(
        closed_by_server(&mut silent),
        "a connection that never sends stays open"
    );
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once_until_one_frees() {
    let db = TestDb::migrated();
    let service = start(&db, &[("CRUDDUR_MAX_CONNECTIONS", "2")]);
    let mut open: Vec<_> = (0..2)
        .map(|_| {
            let mut stream = connect(&service.base);
            write_get(&mut stream, PATH).unwrap();
            assert_eq!(read_response(&mut stream).map(|r| r.0), Some(404));
            stream
        })
        .collect();

    for attempt in 0..3 {
        let mut extra = connect(&service.base);
        // The write may already find the connection closed.
        let _ = write_get(&mut extra, PATH);
        assert_eq!(
            read_response(&mut extra),
            None,
            "connection {attempt} beyond the cap was served"
        );
    }
    // The two within the cap are still served.
    for stream in &mut open {
        write_get(stream, PATH).unwrap();
        assert_eq!(read_response(stream).map(|r| r.0), Some(404));
    }

    drop(open.pop());
    assert!(
        eventually(Duration::from_secs(30), || {
            let mut next = connect(&service.base);
            write_get(&mut next, PATH).is_ok() && read_response(&mut next).is_some()
        }),
        "a closed connection never freed its place"
    );
}

#[test]
fn sigterm_exits_at_the_shutdown_deadline_while_a_half_sent_request_is_open() {
    let db = TestDb::migrated();
    let mut service = start(
        &db,
        &[
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "600000"),
            ("CRUDDUR_SHUTDOWN_DEADLINE_MS", "300"),
        ],
    );
    let mut half = connect(&service.base);
    half.write_all(b"POST /api/activities HTTP/1.1\r\nHost: test\r\nContent-")
        .unwrap();
    // Accepted in order: once a later connection is answered, the
    // half-sent one is open on the server.
    let mut whole = connect(&service.base);
    write_get(&mut whole, PATH).unwrap();
    assert_eq!(read_response(&mut whole).map(|r| r.0), Some(404));

    service.terminate();
    let mut status = None;
    assert!(
        eventually(Duration::from_secs(60), || {
            status = service.child.try_wait().unwrap();
            status.is_some()
        }),
        "SIGTERM never finished with a half-sent request open"
    );
    let status = status.unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut service.stderr, &mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(
        rest.contains("still open at the shutdown deadline were dropped"),
        "{rest}"
    );
    assert!(closed_by_server(&mut half));
}

#[test]
fn a_body_that_stops_coming_is_408_at_the_header_read_timeout() {
    let db = TestDb::migrated();
    let service = start(
        &db,
        &[
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "300"),
            ("CRUDDUR_IDLE_TIMEOUT_MS", "600000"),
        ],
    );
    let mut slow = connect(&service.base);
    slow.write_all(
        b"POST /api/activities HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"message\": ",
    )
    .unwrap();
    let (status, body) = read_response(&mut slow).expect("an answer");
    assert_eq!(status, 408, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].is_string(), "{body}");
}
