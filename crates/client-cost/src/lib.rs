#![doc = include_str!("../README.md")]

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use cruddur_db::{DatabaseUrl, FeedPage, establish, home_feed};
use diesel::connection::{Connection as _, InstrumentationEvent};
use diesel::{PgConnection, RunQueryDsl};
use uuid::Uuid;

/// Any error, with its message.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Items per page: the feed's default page.
pub const PAGE: i64 = 20;

/// An error with `message`.
pub fn fail<T>(message: impl Into<String>) -> AnyResult<T> {
    Err(message.into().into())
}

/// A program's exit: success, or the error on stderr and failure.
pub fn exit_code(result: AnyResult<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that a page is full.
pub fn full_page(len: usize) -> AnyResult<()> {
    if len == PAGE as usize {
        Ok(())
    } else {
        fail(format!(
            "a page of {len} items, not {PAGE}: is the database seeded?"
        ))
    }
}

/// The feed item as a rust-postgres user would decode it: the same ten
/// fields, in the order of the statement's columns. sqlx's `FromRow`
/// reads them by name, as `query_as` does.
#[derive(Debug, sqlx::FromRow)]
#[expect(dead_code, reason = "decoded to be paid for, never read")]
pub struct PeerItem {
    uuid: Uuid,
    display_name: String,
    handle: String,
    message: String,
    replies_count: i32,
    reposts_count: i32,
    likes_count: i32,
    reply_to_activity_uuid: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl PeerItem {
    /// Reads a row of the statement, column by column (rust-postgres and
    /// tokio-postgres share this `Row` type).
    pub fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(Self {
            uuid: row.try_get(0)?,
            display_name: row.try_get(1)?,
            handle: row.try_get(2)?,
            message: row.try_get(3)?,
            replies_count: row.try_get(4)?,
            reposts_count: row.try_get(5)?,
            likes_count: row.try_get(6)?,
            reply_to_activity_uuid: row.try_get(7)?,
            expires_at: row.try_get(8)?,
            created_at: row.try_get(9)?,
        })
    }
}

/// Decodes a page of rust-postgres (or tokio-postgres) rows into
/// [`PeerItem`]s, checks that it is full, and hands it to `black_box`.
pub fn decode_page(rows: &[postgres::Row]) -> AnyResult<()> {
    let page = rows
        .iter()
        .map(PeerItem::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    full_page(page.len())?;
    std::hint::black_box(page);
    Ok(())
}

/// The statement `home_feed` sends for the first page, as Diesel's
/// instrumentation sees it (its one bind must be the page size), and the
/// `SET` statements that give another client the session our pool's
/// connections have (`plan_cache_mode`, `TimeZone`, `statement_timeout`).
pub fn capture_typed_statement(url: &DatabaseUrl) -> AnyResult<(String, String)> {
    let mut conn = establish(url)?;
    let sent = capture_statements(&mut conn, |conn| {
        home_feed(conn, FeedPage::first(PAGE))?;
        Ok(())
    })?;
    let found: Vec<&(String, String)> = sent
        .iter()
        .filter(|(sql, _)| sql.contains("FROM (\"activities\""))
        .collect();
    let [(sql, binds)] = found.as_slice() else {
        return fail(format!(
            "the typed feed sent {} statements on `activities`, not one",
            found.len()
        ));
    };
    if *binds != format!("[{PAGE}]") {
        return fail(format!(
            "the typed feed binds {binds}, not the page size alone ([{PAGE}])"
        ));
    }
    Ok((sql.clone(), session_settings(url)?))
}

/// The statements `f` sends on `conn`, as Diesel's instrumentation shows
/// them: each one's SQL and its binds (`[..]`, empty when none shown).
pub fn capture_statements(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> AnyResult<()>,
) -> AnyResult<Vec<(String, String)>> {
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            log.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(query.to_string());
        }
    });
    let result = f(conn);
    conn.set_instrumentation(|_: InstrumentationEvent<'_>| {});
    result?;
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
    // Diesel shows a statement as `SQL -- binds: [..]`.
    Ok(sent
        .into_iter()
        .map(|shown| match shown.split_once(" -- binds: ") {
            Some((sql, binds)) => (sql.to_owned(), binds.to_owned()),
            None => (shown, String::new()),
        })
        .collect())
}

/// The `SET` statements that give another client the session our pool's
/// connections have (`plan_cache_mode`, `TimeZone`, `statement_timeout`).
pub fn session_settings(url: &DatabaseUrl) -> AnyResult<String> {
    let mut conn = establish(url)?;
    let mut settings = String::new();
    for name in ["plan_cache_mode", "TimeZone", "statement_timeout"] {
        let value: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(&format!(
            "current_setting('{name}')"
        )))
        .get_result(&mut conn)?;
        settings.push_str(&format!("SET {name} = '{}';", value.replace('\'', "''")));
    }
    Ok(settings)
}
