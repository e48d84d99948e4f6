//! `Config::instrumentation`: each pooled connection reports its events to
//! the application's instrumentation, which is told the server it reaches.

mod common;

use std::sync::{Arc, Mutex};

use cruddur_db::{
    ActivityDraft, Config, ConnectionInstrumentation, ConnectionTarget, Consistency, FeedPage,
    Repository,
};
use diesel::connection::{Instrumentation, InstrumentationEvent};

/// What the instrumentation saw: each event's connection target, and the
/// event.
type Seen = Arc<Mutex<Vec<(ConnectionTarget, String)>>>;

#[test]
fn each_pooled_connection_reports_its_statements_and_commits_to_the_applications_instrumentation() {
    let db = common::TestDb::migrated();
    let seen = Seen::default();
    let mut config = Config::new(db.url.clone());
    let sink = Arc::clone(&seen);
    config.instrumentation = Some(ConnectionInstrumentation::new(move |target| {
        let target = target.clone();
        let sink = Arc::clone(&sink);
        Some(Box::new(move |event: InstrumentationEvent<'_>| {
            let what = match event {
                InstrumentationEvent::StartQuery { query, .. } => format!("start {query}"),
                InstrumentationEvent::CommitTransaction { .. } => "commit".into(),
                _ => return,
            };
            sink.lock().unwrap().push((target.clone(), what));
        }) as Box<dyn Instrumentation>)
    }));
    let repo = Repository::connect(&config).expect("connect");
    repo.seed_reference().expect("seed");
    repo.home_feed_json(Consistency::Primary, FeedPage::first(5))
        .expect("feed");
    let draft =
        ActivityDraft::parse("andrewbrown", "seen by the instrumentation", "1-day").expect("draft");
    repo.create_activity(&draft).expect("post");

    let seen = seen.lock().unwrap();
    let port = db.url.param("port").map_or(5432, |p| p.parse().unwrap());
    let expected = ConnectionTarget {
        host: db.url.param("host").unwrap_or("localhost").to_owned(),
        port,
        replica: false,
        nonblocking: false,
    };
    assert!(!seen.is_empty());
    for (target, what) in seen.iter() {
        assert_eq!(*target, expected, "{what}");
    }
    let feed = seen
        .iter()
        .find(|(_, what)| what.starts_with("start") && what.contains("LIMIT $1"));
    assert!(feed.is_some(), "no feed statement in {seen:#?}");
    // The write's COMMIT reaches the application too (the library notes
    // it for the write's outcome, and passes it on).
    assert!(
        seen.iter().any(|(_, what)| what == "commit"),
        "no COMMIT in {seen:#?}"
    );
}
