//! What the tool and the example print, checked where it could mislead: the
//! feed table with hostile text, session ages, migration names, the global
//! options, and the example's line naming its database.

mod common;

use common::cli::{PASSWORD, Run, clean, cli, run, run_cmd};
use common::{TestDb, user};
use cruddur_db::{ActivityDraft, create_activity};
use diesel::prelude::*;

fn url_of(db: &TestDb) -> String {
    common::with_password(&db.url, PASSWORD).expose().to_owned()
}

fn ok(url: &str, args: &[&str]) -> Run {
    let out = run(url, args);
    out.success();
    out
}

#[test]
fn feed_table_keeps_one_line_per_activity_for_hostile_text() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    let hostile_names = [
        "Mallory\n2026-01-01T00:00:00.000000Z  Andrew Brown      @andrewbrown  0  0  0  fake row",
        "Eve\r\u{1b}[2K\u{1b}]0;pwned window title\u{7}",
        "Tab\there\u{85}next\u{2028}line\u{202e}desrever",
    ];
    let hostile_messages = [
        "first line\nsecond line\r\nthird line",
        "\u{1b}[31mred\u{1b}[0m and \u{1b}]8;;https://evil.example\u{1b}\\link\u{1b}]8;;\u{1b}\\",
        "C1 CSI \u{9b}2J, DEL \u{7f}, bell \u{7}, backspace \u{8}",
    ];
    let mut handles = Vec::new();
    for (name, message) in hostile_names.iter().zip(hostile_messages) {
        let author = user(conn, name);
        ActivityDraft::parse(&author.handle, message, "7-days")
            .and_then(|draft| create_activity(conn, &draft))
            .expect("create activity");
        handles.push(author.handle);
    }
    let out = ok(&url_of(&db), &["feed"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    // The header, one line per activity, the count.
    assert_eq!(
        lines.len(),
        1 + 3 + 1,
        "one line per activity:\n{}",
        out.stdout
    );
    assert_eq!(lines[4], "(3 activities)", "{}", out.stdout);
    for line in &lines {
        assert!(
            !line.chars().any(|c| c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')),
            "a raw control character reached the output: {line:?}"
        );
    }
    for handle in &handles {
        assert_eq!(
            lines.iter().filter(|l| l.contains(handle.as_str())).count(),
            1,
            "@{handle} is not on exactly one line:\n{}",
            out.stdout
        );
    }
    for shown in [
        "Mallory\\n2026-01-01T00:00:00.000000Z",
        "Eve\\r\\u{1b}[2K\\u{1b}]0;pwned window title\\u{7}",
        "Tab\\there\\u{85}next\\u{2028}line\\u{202e}desrever",
        "first line\\nsecond line\\r\\nthird line",
        "\\u{1b}[31mred\\u{1b}[0m",
        "C1 CSI \\u{9b}2J, DEL \\u{7f}, bell \\u{7}, backspace \\u{8}",
    ] {
        assert!(
            out.stdout.contains(shown),
            "{shown:?} not shown in:\n{}",
            out.stdout
        );
    }
    // The JSON keeps the text as stored.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&url_of(&db), &["feed", "--json"]).stdout).expect("JSON");
    let messages: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|i| i["message"].as_str())
        .collect();
    for message in hostile_messages {
        assert!(
            messages.contains(&message),
            "{message:?} not verbatim in {json}"
        );
    }
}

#[test]
fn feed_table_on_a_terminal_shows_escape_sequences_instead_of_running_them() {
    // On a terminal nothing strips escape sequences (anstream keeps them
    // there, for colours): what the table prints reaches the screen as is.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    let author = user(conn, "Eve\u{1b}]0;pwned\u{7}");
    ActivityDraft::parse(&author.handle, "\u{1b}[31mred\u{1b}[0m", "7-days")
        .and_then(|draft| create_activity(conn, &draft))
        .expect("create");
    let command = format!(
        "{} --database-url '{}' feed",
        env!("CARGO_BIN_EXE_cruddur-db"),
        url_of(&db)
    );
    let mut script = clean(assert_cmd::Command::new("script"));
    script.env_remove("NO_COLOR").env("TERM", "xterm");
    let out = run_cmd(script, &["-qec", &command, "/dev/null"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains(&author.handle))
        .unwrap_or_else(|| panic!("no row for @{}:\n{:?}", author.handle, out.stdout));
    assert!(row.contains("Eve\\u{1b}]0;pwned\\u{7}"), "{row:?}");
    assert!(row.contains("\\u{1b}[31mred\\u{1b}[0m"), "{row:?}");
    assert!(
        !row.contains("]0;pwned\u{7}"),
        "an OSC sequence reached the terminal: {row:?}"
    );
    assert!(
        !row.contains("\u{1b}[31m"),
        "a colour sequence reached the terminal: {row:?}"
    );
}

#[test]
fn sessions_never_show_a_negative_age() {
    let db = TestDb::migrated();
    let url = url_of(&db);
    // Other sessions that change state while `sessions` runs.
    let mut others: Vec<PgConnection> = (0..3).map(|_| db.conn()).collect();
    for _ in 0..5 {
        for other in &mut others {
            diesel::sql_query("SELECT 1").execute(other).expect("query");
        }
        let listed: serde_json::Value =
            serde_json::from_str(&ok(&url, &["sessions", "--json"]).stdout).expect("JSON");
        let sessions = listed.as_array().expect("an array");
        assert!(sessions.len() >= 4, "{listed}");
        for s in sessions {
            for key in ["connected_secs", "state_secs"] {
                let secs = s[key].as_f64().unwrap_or_else(|| panic!("{key} in {s}"));
                assert!(secs >= 0.0, "negative {key} in {s}");
            }
        }
    }
}

#[test]
fn migrate_names_a_migration_the_same_way_in_run_revert_and_status() {
    let db = TestDb::new();
    let url = url_of(&db);
    let run = ok(&url, &["migrate", "run"]);
    assert!(
        run.stdout
            .contains("applied 2026-11-24-000003_create_activities\n"),
        "{}",
        run.stdout
    );
    let revert = ok(&url, &["-y", "migrate", "revert"]);
    assert!(
        revert
            .stdout
            .contains("reverted 2026-12-03-000003_create_idempotency_keys"),
        "{}",
        revert.stdout
    );
    let status = ok(&url, &["migrate", "status"]);
    assert!(
        status
            .stdout
            .contains("pending   2026-12-03-000003_create_idempotency_keys"),
        "{}",
        status.stdout
    );
}

#[test]
fn global_options_are_refused_by_local_with_a_usage_error() {
    for args in [
        &["--prod", "local", "status"][..],
        &[
            "local",
            "--database-url",
            "postgres://localhost/x",
            "status",
        ],
        &["local", "status", "-y"],
        &["local", "url", "--allow-production"],
    ] {
        let out = run_cmd(cli(), args);
        assert_eq!(
            out.code, 2,
            "{args:?} should be a usage error: {}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    let help = run_cmd(cli(), &["local", "status", "--help"]);
    assert_eq!(help.code, 0);
    assert!(!help.stdout.contains("--prod"), "{}", help.stdout);
    let help = run_cmd(cli(), &["feed", "--help"]);
    let heading = help.stdout.find("Global options:").expect("a heading");
    assert!(
        help.stdout.find("--limit").is_some_and(|i| i < heading),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.find("--prod").is_some_and(|i| i > heading),
        "{}",
        help.stdout
    );
}

/// The `home_feed` example, built by `cargo test` beside the test binaries.
#[test]
fn a_missing_production_url_is_a_sentence_not_a_debug_dump() {
    let out = run_cmd(cli(), &["--prod", "status"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "no database configured: set PROD_CONNECTION_URL in the environment or in a .env file"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("MissingUrl"), "{}", out.stderr);
}
