//! The data layer behind a real PgBouncer in transaction mode (Debian's
//! package), with a server pool smaller than the clients: refused without
//! pooler mode, every operation without an error in it, nothing leaking to
//! the next client, and what needs a session through the direct URL.

mod common;

use std::sync::{Arc, Barrier};

use common::{PgBouncer, TestDb};
use cruddur_db::repo::activities::{ActivityDraft, ReplyDraft, find_activity};
use cruddur_db::{
    Config, Consistency, Error, FeedPage, Pooler, PostConfirmationEvent, Repository, build_pool,
};
use diesel::prelude::*;

/// Clients at once, over `SERVER_CONNECTIONS` server connections.
const CLIENTS: usize = 32;
const SERVER_CONNECTIONS: u32 = 3;
/// A statement timeout no server has by default, so that a leaked one shows.
const DISTINCT_TIMEOUT_MS: u64 = 12_345;

fn pooled(bouncer: &PgBouncer, db: &TestDb) -> Config {
    let mut config = Config::new(bouncer.url(&db.name()));
    config.pooler = Pooler::Transaction;
    config.pool_size = u32::try_from(CLIENTS).unwrap();
    config.statement_timeout_ms = DISTINCT_TIMEOUT_MS;
    config
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Sessions {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement_timeout: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    read_only: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    plan_cache_mode: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    prepared: i64,
}

/// What a plain client (no settings of ours) sees on each server
/// connection of the pooler: it holds `SERVER_CONNECTIONS` transactions
/// open at once, so that each reads another server process.
fn what_plain_clients_see(bouncer: &PgBouncer, db: &TestDb) -> Vec<Sessions> {
    let url = bouncer.url(&db.name());
    let mut conns: Vec<PgConnection> = (0..SERVER_CONNECTIONS)
        .map(|_| PgConnection::establish(url.expose()).expect("plain client"))
        .collect();
    let seen = conns
        .iter_mut()
        .map(|conn| {
            diesel::sql_query("BEGIN").execute(conn).unwrap();
            diesel::sql_query(
                "SELECT current_setting('statement_timeout') AS statement_timeout, \
                 current_setting('default_transaction_read_only') AS read_only, \
                 current_setting('plan_cache_mode') AS plan_cache_mode, \
                 (SELECT count(*) FROM pg_prepared_statements) AS prepared",
            )
            .get_result::<Sessions>(conn)
            .unwrap()
        })
        .collect();
    for conn in &mut conns {
        diesel::sql_query("COMMIT").execute(conn).unwrap();
    }
    seen
}

#[test]
fn without_pooler_mode_a_pool_behind_a_transaction_pooler_is_refused() {
    let db = TestDb::migrated();
    let bouncer = PgBouncer::start(SERVER_CONNECTIONS);
    let config = Config::new(bouncer.url(&db.name()));
    let err = build_pool(&config).unwrap_err();
    assert!(matches!(err, Error::TransactionPooler { .. }), "{err}");
    assert!(
        err.to_string().contains("CRUDDUR_POOLER=transaction"),
        "{err}"
    );
    // The same server directly is no pooler.
    build_pool(&Config::new(db.url.clone())).expect("direct");
}

#[test]
fn every_operation_through_the_pooler_with_more_clients_than_server_connections() {
    let db = TestDb::migrated();
    let bouncer = PgBouncer::start(SERVER_CONNECTIONS);
    let repo = Repository::connect(&pooled(&bouncer, &db)).expect("pool behind the pooler");
    repo.seed_reference().expect("seed through the pooler");
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let errors: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (repo, barrier) = (&repo, Arc::clone(&barrier));
                s.spawn(move || -> Result<(), Error> {
                    barrier.wait();
                    let handle = format!("pooled{i}");
                    let event = PostConfirmationEvent {
                        name: format!("Pooled {i}"),
                        email: format!("{handle}@example.com"),
                        preferred_username: handle.clone(),
                        sub: format!("sub-{i}"),
                    };
                    let (confirmed, _) = repo.confirm_user(&event)?;
                    assert!(confirmed.created);
                    let draft = ActivityDraft::parse(&handle, "through the pooler", "1-day")?;
                    let (post, _) = repo.create_activity(&draft)?;
                    let reply = ReplyDraft::new(&handle, post.uuid, "a reply")?;
                    let (reply, token) = repo.create_reply(&reply)?;
                    let mine = repo.read(Consistency::AtLeast(token), |conn| {
                        find_activity(conn, reply.uuid)
                    })?;
                    assert_eq!(mine.reply_to_activity_uuid, Some(post.uuid));
                    let page = repo.home_feed(Consistency::Eventual, FeedPage::default())?;
                    assert!(!page.is_empty());
                    let json = repo.home_feed_json(Consistency::Eventual, FeedPage::default())?;
                    assert!(json.starts_with('['), "{json}");
                    // A user's page and a crud's page read through the pooler too.
                    let mine =
                        repo.user_page(Consistency::AtLeast(token), &handle, FeedPage::default())?;
                    assert_eq!(mine.profile.cruds_count, 2);
                    let thread = repo.activity_thread(
                        Consistency::AtLeast(token),
                        &handle,
                        post.uuid,
                        Default::default(),
                    )?;
                    assert_eq!(thread.replies.len(), 1);
                    let found = repo.user_by_cognito_user_id(Consistency::Primary, &event.sub)?;
                    assert_eq!(found.map(|u| u.handle), Some(handle));
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().expect("worker panicked").err())
            .map(|e| e.to_string())
            .collect()
    });
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    drop(repo);
    for seen in what_plain_clients_see(&bouncer, &db) {
        assert_eq!(
            seen,
            Sessions {
                statement_timeout: "0".into(),
                read_only: "off".into(),
                plan_cache_mode: "auto".into(),
                prepared: 0,
            },
            "a setting or a named statement of ours reached another client"
        );
    }
}

#[test]
fn what_needs_a_session_goes_through_the_direct_url_or_is_refused() {
    let db = TestDb::new();
    let bouncer = PgBouncer::start(SERVER_CONNECTIONS);
    let mut config = pooled(&bouncer, &db);
    let err = config.session_url("running migrations").unwrap_err();
    assert!(matches!(err, Error::NeedsDirectUrl { .. }), "{err}");
    assert!(err.to_string().contains("DATABASE_DIRECT_URL"), "{err}");
    let repo = Repository::connect(&config).expect("pool behind the pooler");
    let err = repo.run_migrations().unwrap_err();
    assert!(matches!(err, Error::NeedsDirectUrl { .. }), "{err}");

    // A direct URL that reaches another database is refused.
    let other = TestDb::new();
    config.direct_url = Some(other.url.clone());
    let repo = Repository::connect(&config).unwrap();
    let err = repo.run_migrations().unwrap_err();
    assert!(matches!(err, Error::DirectUrlMismatch { .. }), "{err}");
    assert!(
        cruddur_db::pending_migrations(&mut other.conn())
            .unwrap()
            .len()
            > 1,
        "nothing ran on the other database"
    );

    // Eight `prepare` at once through the direct URL: migrated once, seeded once.
    config.direct_url = Some(db.url.clone());
    let url = config.session_url("prepare").unwrap().clone();
    let barrier = Arc::new(Barrier::new(8));
    let reports: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let (url, barrier) = (&url, Arc::clone(&barrier));
                s.spawn(move || {
                    barrier.wait();
                    cruddur_db::prepare(url)
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap().expect("prepare"))
            .collect()
    });
    let applied: usize = reports.iter().map(|r| r.migrations_applied.len()).sum();
    let versions = cruddur_db::migrations::applied_versions(&mut db.conn()).unwrap();
    assert_eq!(applied, versions.len(), "{reports:?}");
    assert_eq!(
        reports.iter().filter(|r| r.seeded).count(),
        1,
        "{reports:?}"
    );
    // And the pooled repository now reads what was seeded.
    let repo = Repository::connect(&config).unwrap();
    assert!(
        !repo
            .home_feed(Consistency::Primary, FeedPage::default())
            .unwrap()
            .is_empty()
    );
}
