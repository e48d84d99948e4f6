//! The service binary behind a real PgBouncer in transaction mode (3 server
//! connections): refused at start without pooler mode, and with it 32
//! clients reading and posting at once get no error, and no setting of the
//! service reaches another client of the pooler.

mod common;

use common::{Running, get, post_json, seeded_db, service_command};
use cruddur_db_test_support::PgBouncer;
use diesel::prelude::*;

const CLIENTS: usize = 32;

#[test]
fn behind_a_transaction_pooler_the_service_serves_32_clients_without_an_error() {
    let db = seeded_db();
    let bouncer = PgBouncer::start(3);
    let pooled = bouncer.url(&db.name());

    let refused = service_command(&[("DATABASE_URL", pooled.expose())])
        .output()
        .expect("run the service");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("CRUDDUR_POOLER=transaction"), "{stderr}");

    let service = Running::start(&[
        ("DATABASE_URL", pooled.expose()),
        ("CRUDDUR_POOLER", "transaction"),
        ("DATABASE_DIRECT_URL", db.url.expose()),
        ("CRUDDUR_POOL_SIZE", "16"),
        ("CRUDDUR_STATEMENT_TIMEOUT_MS", "12345"),
    ]);
    let failures: Vec<String> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let base = &service.base;
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for round in 0..3 {
                        let feed = get(&format!("{base}/api/activities/home"), &[]);
                        if feed.status != 200 {
                            failures.push(format!("GET {}: {}", feed.status, feed.body));
                        }
                        let body =
                            format!(r#"{{"message": "pooled {i}.{round}", "ttl": "1-day"}}"#);
                        let post = post_json(&format!("{base}/api/activities"), &[], &body);
                        if post.status != 200 {
                            failures.push(format!("POST {}: {}", post.status, post.body));
                        }
                    }
                    failures
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    assert_eq!(
        common::activities(&db),
        // The seed's post and reply, and three posts per client.
        2 + 3 * i64::try_from(CLIENTS).unwrap()
    );

    // A plain client on each server connection sees the server's defaults.
    let mut conns: Vec<PgConnection> = (0..3)
        .map(|_| PgConnection::establish(pooled.expose()).expect("plain client"))
        .collect();
    for conn in &mut conns {
        diesel::sql_query("BEGIN").execute(conn).unwrap();
    }
    for conn in &mut conns {
        #[derive(QueryableByName)]
        struct Timeout {
            #[diesel(sql_type = diesel::sql_types::Text)]
            statement_timeout: String,
        }
        let seen: Timeout =
            diesel::sql_query("SELECT current_setting('statement_timeout') AS statement_timeout")
                .get_result(conn)
                .unwrap();
        assert_eq!(seen.statement_timeout, "0", "the service's timeout leaked");
    }
}
