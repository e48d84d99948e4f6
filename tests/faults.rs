//! Bad days, on private clusters of the tests' own (the machine's shared
//! server is never stopped): server restarts under write load, TLS with
//! certificate verification, and a wrong password. (What the command line
//! shows for the last two is the CLI's `cli_faults`.)

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TempCluster;
use cruddur_db::repo::activities::ActivityDraft;
use cruddur_db::{Config, DatabaseUrl, Error, Repository, establish, prepare};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<Uuid>>,
    errors: Mutex<Vec<String>>,
    acked_count: AtomicUsize,
}

#[test]
fn server_restarts_under_write_load_lose_no_acknowledged_write() {
    let cluster = common::private_cluster();
    let url = cluster.tcp_url_for("cruddur").unwrap();
    prepare(&url).unwrap();
    let mut config = Config::new(url.clone());
    config.pool_size = 8;
    config.checkout_timeout = Duration::from_secs(2);
    let repo = Repository::connect(&config).unwrap();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    // Bounded per thread, so a stuck stop flag cannot make the test run forever.
    let max_per_thread = 20_000;
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (repo, tally, stop, attempts) = (
                repo.clone(),
                Arc::clone(&tally),
                Arc::clone(&stop),
                Arc::clone(&attempts),
            );
            std::thread::spawn(move || {
                for i in 0..max_per_thread {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let message = format!("load {t}/{i}");
                    let draft =
                        ActivityDraft::parse("bayko", &message, "1-hour").expect("a valid draft");
                    match repo.create_activity(&draft) {
                        Ok((created, _)) => {
                            tally.acked.lock().unwrap().push(created.uuid);
                            tally.acked_count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // Typed, and one of the kinds an outage produces.
                            assert!(
                                matches!(
                                    e,
                                    Error::Query(_)
                                        | Error::ConnectionLost { .. }
                                        | Error::OutcomeUnknown { .. }
                                        | Error::Unreachable { .. }
                                        | Error::PoolTimeout { .. }
                                        | Error::Connection { .. }
                                ),
                                "unexpected error kind during the outage: {e:?}"
                            );
                            tally.errors.lock().unwrap().push(e.to_string());
                        }
                    }
                }
            })
        })
        .collect();

    let acked = || tally.acked_count.load(Ordering::Relaxed);
    let mut recoveries = Vec::new();
    assert!(
        common::eventually(Duration::from_secs(60), || acked() >= 200),
        "load never got going"
    );
    for _ in 0..2 {
        cluster.stop().unwrap();
        cluster.start().unwrap();
        let back = Instant::now();
        let before = acked();
        assert!(
            common::eventually(Duration::from_secs(60), || acked() >= before + 200),
            "the pool did not serve writes again after the restart"
        );
        recoveries.push(back.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("no worker panicked");
    }

    let acked: Vec<Uuid> = tally.acked.lock().unwrap().clone();
    let errors = tally.errors.lock().unwrap().clone();
    use cruddur_db::schema::activities;
    let stored: HashSet<Uuid> = activities::table
        .filter(activities::message.like("load %"))
        .select(activities::uuid)
        .load::<Uuid>(&mut establish(&url).unwrap())
        .unwrap()
        .into_iter()
        .collect();
    let missing: Vec<_> = acked.iter().filter(|u| !stored.contains(u)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes are missing",
        missing.len()
    );
    // A write can commit and lose its answer when the server goes down in
    // between; there are at most a few such per restart, never the reverse.
    assert!(stored.len() >= acked.len());
    assert!(
        stored.len() - acked.len() <= 16,
        "{} unacknowledged rows",
        stored.len() - acked.len()
    );
    assert!(
        !errors.is_empty(),
        "the restarts went unnoticed: no failure at all"
    );
    eprintln!(
        "restart figures: attempted {}, acknowledged {}, failed {}, found after restarts {}, \
         recovery after each restart {:?}; first errors: {:?}",
        attempts.load(Ordering::Relaxed),
        acked.len(),
        errors.len(),
        stored.len(),
        recoveries,
        errors.iter().take(3).collect::<Vec<_>>()
    );
}

#[test]
fn tls_verify_full_trusts_only_the_right_ca_and_host() {
    let (dir, cluster, good, password) = common::tls::verifying_cluster();
    #[derive(QueryableByName)]
    struct Ssl {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ssl: bool,
    }
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut establish(&good).unwrap())
        .unwrap();
    assert!(row.ssl, "verify-full with the right CA connects over TLS");

    let cases = [
        (
            "a CA that did not sign the certificate",
            common::tls::verify_full_url(&cluster, "localhost", &dir.path().join("other-ca.pem")),
        ),
        (
            "a host name the certificate does not name",
            common::tls::verify_full_url(&cluster, "127.0.0.1", &dir.path().join("ca.pem")),
        ),
    ];
    for (what, url) in cases {
        let Err(err) = establish(&url) else {
            panic!("{what}: connected")
        };
        assert!(matches!(err, Error::Tls { .. }), "{what}: {err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("TLS failure connecting to"),
            "{what}: {text}"
        );
        assert!(
            !text.contains(&password),
            "{what}: the password leaks: {text}"
        );
    }
}

#[test]
fn a_wrong_password_is_an_authentication_error() {
    let cluster = TempCluster::builder().password_auth(true).start().unwrap();
    let right = cluster.tcp_url_for("postgres").unwrap();
    let wrong_password = "Wr0ng-Pa55word";
    let mut parsed = url::Url::parse(right.expose()).unwrap();
    parsed.set_password(Some(wrong_password)).unwrap();
    let wrong = DatabaseUrl::parse(parsed.as_str()).unwrap();
    assert_eq!(wrong.password().as_deref(), Some(wrong_password));
    let err = cruddur_db::build_pool(&Config::new(wrong.clone())).unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(wrong_password), "{text}");
    assert!(!text.contains(&right.password().unwrap()), "{text}");
}
