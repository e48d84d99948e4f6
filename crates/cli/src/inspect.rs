//! `status` and `sessions`: read-only looks at the database.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::DatabaseArgs;
use crate::output::{self, HEADING, PRODUCTION, SUCCESS, WARNING, escape_controls};
use crate::server_info as inspect;
use crate::target::Target;
use cruddur_db::Settings;
use cruddur_db::environment::read_mark;
use cruddur_db::migrations;

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Options of `sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Print the sessions as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `status`: server, database, environment, TLS, migrations.
pub fn status(
    args: StatusArgs,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?;
    let conn = &mut target.connect()?;
    let server = inspect::server_info(conn).context("reading the server's status")?;
    let mark = read_mark(conn).context("reading the production mark")?;
    let states = migrations::migration_status(conn).context("reading the migrations")?;
    let applied = states.iter().filter(|m| m.applied).count();
    let pending: Vec<&str> = states
        .iter()
        .filter(|m| !m.applied)
        .map(|m| m.name.as_str())
        .collect();
    let replicas = if target.has_replicas() {
        target.repository()?.router().replicas()
    } else {
        Vec::new()
    };
    let pooler = target.config.pooler;
    let server_timeout_ms = if pooler.is_transaction() {
        Some(
            cruddur_db::pooler::server_statement_timeout_ms(conn)
                .context("reading the server's statement_timeout")?,
        )
    } else {
        None
    };
    let marked_production = mark.as_ref().is_some_and(|m| m.is_production());
    let environment = if marked_production || target.production_reason.is_some() {
        "production"
    } else {
        "development"
    };
    if args.json {
        output::json(&serde_json::json!({
            "url": target.url().to_string(),
            "server_version": server.server_version,
            "database": server.database,
            "user": server.user,
            "environment": environment,
            "mark": mark,
            "tls": server.tls,
            "tls_version": server.tls_version,
            "tls_cipher": server.tls_cipher,
            "pooler": pooler.to_string(),
            "direct_url": target.config.direct_url.as_ref().map(ToString::to_string),
            "server_statement_timeout_ms": server_timeout_ms,
            "migrations_applied": applied,
            "migrations_pending": pending,
            "replicas": replicas.iter().map(|(url, state)| serde_json::json!({
                "url": url.to_string(),
                "state": state.status.to_string(),
                "lag_bytes": state.lag_bytes,
                "lag_seconds": state.lag_time.map(|t| t.as_secs_f64()),
                "error": state.last_error.as_deref().map(output::scrub),
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    // Lines mix the tool's colours with text from the server (names, the
    // role that marked the database, errors): each such value is escaped
    // where it is put in (`output::shown`), the colours are not.
    let row =
        |k: &str, v: &str| anstream::println!("{HEADING}{k:<12}{HEADING:#} {}", output::scrub(v));
    let shown = |v: &str| output::shown(v);
    row(
        "url",
        &format!(
            "{} (from {})",
            shown(&target.url().to_string()),
            target.source
        ),
    );
    row(
        "server",
        &format!("PostgreSQL {}", shown(&server.server_version)),
    );
    row(
        "database",
        &format!("{} as {}", shown(&server.database), shown(&server.user)),
    );
    let environment_text = match (&mark, &target.production_reason) {
        (Some(m), _) if m.is_production() => format!(
            "{PRODUCTION} production {PRODUCTION:#} (marked since {} by {})",
            m.marked_at.format("%Y-%m-%d %H:%M:%S UTC"),
            shown(&m.marked_by)
        ),
        (_, Some(reason)) => {
            format!(
                "{PRODUCTION} production {PRODUCTION:#} ({}; not marked)",
                shown(reason)
            )
        }
        (Some(m), None) => format!("{} (marked)", m.environment),
        (None, None) => "development (not marked as production)".to_owned(),
    };
    row("environment", &environment_text);
    let tls = if server.tls {
        format!(
            "{SUCCESS}yes{SUCCESS:#} ({}, {})",
            shown(server.tls_version.as_deref().unwrap_or("?")),
            shown(server.tls_cipher.as_deref().unwrap_or("?"))
        )
    } else {
        format!("{WARNING}no{WARNING:#} (the connection is not encrypted)")
    };
    row("tls", &tls);
    row("pooler", &pooler_text(&target.config, server_timeout_ms));
    let migrations_text = if pending.is_empty() {
        format!("{applied} applied, 0 pending")
    } else {
        format!(
            "{applied} applied, {WARNING}{} pending{WARNING:#} ({})",
            pending.len(),
            pending.join(", ")
        )
    };
    row("migrations", &migrations_text);
    for (k, (url, state)) in replicas.iter().enumerate() {
        let bytes = state
            .lag_bytes
            .map_or_else(|| "? bytes".to_owned(), |b| format!("{b} bytes"));
        let time = state
            .lag_time
            .map_or_else(|| "?".to_owned(), |t| format!("{:.1} s", t.as_secs_f64()));
        let why = state
            .last_error
            .as_deref()
            .map(|e| format!(" ({})", shown(e)))
            .unwrap_or_default();
        row(
            &format!("replica {}", k + 1),
            &format!(
                "{}: {}, {bytes} behind, last replayed commit {time} ago{why}",
                shown(&url.to_string()),
                state.status
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sessions`: the open connections to the database.
pub fn sessions(
    args: SessionsArgs,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?;
    let database = target.database()?;
    let conn = &mut target.connect()?;
    let sessions =
        inspect::sessions(conn).with_context(|| format!("listing the sessions of `{database}`"))?;
    if args.json {
        output::json(&sessions)?;
        return Ok(ExitCode::SUCCESS);
    }
    anstream::println!(
        "{HEADING}{:>7}  {:<12}  {:<20}  {:<22}  {:<20}  {:>9}  note{HEADING:#}",
        "pid",
        "user",
        "application",
        "client",
        "state",
        "age"
    );
    for s in &sessions {
        let mut notes = Vec::new();
        if s.holds_migration_lock {
            notes.push(format!("{WARNING}holds the migration lock{WARNING:#}"));
        }
        if s.waits_for_migration_lock {
            notes.push("waits for the migration lock".to_owned());
        }
        if s.is_self {
            notes.push("this session".to_owned());
        }
        anstream::println!(
            "{:>7}  {:<12}  {:<20}  {:<22}  {:<20}  {:>9}  {}",
            s.pid,
            escape_controls(s.user.as_deref().unwrap_or("-")),
            // Any client sets its own application_name: show it inert.
            escape_controls(&output::scrub(&s.application)),
            escape_controls(s.client.as_deref().unwrap_or("-")),
            escape_controls(s.state.as_deref().unwrap_or("-")),
            output::age(s.connected_secs),
            notes.join(", ")
        );
    }
    let others = sessions.iter().filter(|s| !s.is_self).count();
    output::result(&format!(
        "{} session(s) on `{database}` ({others} besides this one)",
        sessions.len()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The `pooler` line of `status`: the mode, and behind a transaction
/// pooler which statement timeout applies (the role's or database's, since
/// the pool sets none there) and the direct URL.
fn pooler_text(config: &cruddur_db::Config, server_timeout_ms: Option<u64>) -> String {
    let Some(server_ms) = server_timeout_ms else {
        return "none (the server itself or a session pooler; CRUDDUR_POOLER unset)".to_owned();
    };
    let timeout = if server_ms == config.statement_timeout_ms {
        format!("statement_timeout {server_ms} ms, set on the role or database")
    } else {
        format!(
            "{WARNING}statement_timeout {server_ms} ms{WARNING:#} from the role or database, not the configured {} ms: set it there (ALTER ROLE … SET statement_timeout = '{}ms')",
            config.statement_timeout_ms, config.statement_timeout_ms
        )
    };
    let direct = match &config.direct_url {
        Some(url) => format!("direct URL {}", output::shown(&url.to_string())),
        None => "no direct URL (DATABASE_DIRECT_URL): migrations and lifecycle commands refuse"
            .to_owned(),
    };
    format!("transaction: no named statements, no session settings; {timeout}; {direct}")
}
