use super::*;

fn url(s: &str) -> DatabaseUrl {
    DatabaseUrl::parse(s).unwrap()
}

#[test]
fn libpq_resolves_hostile_spellings() {
    let cases = [
        (
            "postgres://root@127.0.0.1:5432//cruddur_prod",
            "/cruddur_prod",
        ),
        ("host=h dbname=one dbname=two", "two"),
        ("postgres://h/one?dbname=two", "two"),
        ("postgres://h/%63ruddur", "cruddur"),
        ("dbname='it''s'", "it"),
        (r"dbname='a\'b'", "a'b"),
    ];
    for (raw, dbname) in cases {
        let parsed = DatabaseUrl::parse(raw);
        if raw == "dbname='it''s'" {
            // libpq ends the value at the second quote and reads `'s'` as
            // the next keyword, which has no `=`.
            assert!(parsed.is_err(), "{raw}");
            continue;
        }
        assert_eq!(parsed.unwrap().database().as_deref(), Some(dbname), "{raw}");
    }
    let over = url("postgres://bogus.invalid:1/d?host=/tmp/sock&port=6543");
    assert_eq!(over.param("host"), Some("/tmp/sock"));
    assert_eq!(over.param("port"), Some("6543"));
}

#[test]
fn derived_strings_read_back_identically() {
    let cases = [
        "postgres://ann%40corp:p%40ss%20w@db.example.com:6543/my%20db?sslmode=verify-full",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/x",
        "postgres://[::1]:5432/x?application_name=a%26b",
        "host=h1,h2 port=1,2 dbname=d password='a b' user=u",
        "postgres:///d?host=/tmp&port=5433",
        "postgres://:pw@h/d",
        "postgres://u:@h/d",
        "host='' dbname=x",
    ];
    for raw in cases {
        let original = url(raw);
        let changed = |key: &str, value: &str| {
            let mut expected: Vec<(String, String)> = original
                .params()
                .iter()
                .filter(|(k, _)| k != key)
                .cloned()
                .collect();
            expected.push((key.to_owned(), value.to_owned()));
            expected.sort();
            expected
        };
        let odd = "other db/\\'x";
        for (derived, key, value) in [
            (original.with_database(odd), "dbname", odd),
            (
                original.with_param("connect_timeout", "5"),
                "connect_timeout",
                "5",
            ),
            (original.with_param("host", "/tmp/a b"), "host", "/tmp/a b"),
        ] {
            let mut reread = ffi::parse(derived.expose()).unwrap();
            reread.sort();
            assert_eq!(reread, changed(key, value), "{raw} -> {}", derived.expose());
        }
        assert_eq!(
            url(&render(original.params(), Style::Uri("postgres://"), false)),
            original,
            "{raw}"
        );
        assert_eq!(
            url(&render(original.params(), Style::KeyValue, false)),
            original,
            "{raw}"
        );
    }
}

#[test]
fn urls_from_params_hold_hostile_values_exactly() {
    let password = "a b:c@d/e?f#g'$%zz\\";
    let url = DatabaseUrl::from_params(&[
        ("host", "db.example.com"),
        ("port", "5432"),
        ("user", "ad@min"),
        ("password", password),
        ("dbname", "crud dur/x"),
        ("sslmode", "verify-full"),
        ("sslrootcert", "/etc/rds ca.pem"),
    ])
    .unwrap();
    assert!(
        url.expose().starts_with("postgresql://ad%40min:"),
        "{}",
        url.expose()
    );
    assert_eq!(url.password().as_deref(), Some(password));
    assert_eq!(url.database().as_deref(), Some("crud dur/x"));
    assert_eq!(url.param("sslrootcert"), Some("/etc/rds ca.pem"));
    assert!(
        url.to_string().contains("sslrootcert=/etc/rds%20ca.pem"),
        "{url}"
    );
    assert!(DatabaseUrl::from_params(&[("no_such_keyword", "x")]).is_err());
}

#[test]
fn display_never_holds_a_secret_however_short() {
    for raw in [
        "postgres://u:p@h/d",
        "postgres://u@h/d?password=p&sslpassword=q",
        "host=h password=p sslpassword=q",
        "postgres://:p@h/d",
    ] {
        let u = url(raw);
        let shown = format!("{u} {u:?}");
        assert!(
            !shown.contains(":p@") && !shown.contains("=p") && !shown.contains("=q"),
            "{raw} -> {shown}"
        );
        assert!(shown.contains("***"), "{raw} -> {shown}");
    }
}

#[test]
fn unparseable_strings_are_not_echoed() {
    for raw in [
        "postgres//root:hunter2@host/db",
        "postgres:/root:hunter2@host",
        "host=h hunter2",
        "postgres://u:hunter2@h/d?nosuchoption=1",
        "postgres://u@h/d?password=%zzhunter2",
    ] {
        let err = DatabaseUrl::parse(raw).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{raw}: {err}");
        assert!(!redact(raw).contains("hunter2"), "{raw}");
    }
    let err = DatabaseUrl::parse("host=h nosuchoption=1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid connection option"), "{err}");
}

#[test]
fn scrubbing_hides_whole_tokens_without_garbling_words() {
    let secrets = ["postgres".to_owned(), "o".to_owned(), "s3cr3t!".to_owned()];
    let cases = [
        (
            "postgres://postgres:s3cr3t!@localhost/postgresdb",
            "postgres://***:***@localhost/postgresdb",
        ),
        (
            "cannot connect: Connection refused",
            "cannot connect: Connection refused",
        ),
        ("the password is postgres.", "the password is ***."),
        ("key=s3cr3t! other", "key=*** other"),
        ("a o b", "a *** b"),
    ];
    for (text, expected) in cases {
        assert_eq!(scrub_secrets(text, &secrets), expected, "{text}");
    }
}

#[test]
fn keywords_come_from_libpq() {
    let keywords = ffi::keywords();
    for k in [
        "host", "hostaddr", "port", "dbname", "user", "password", "sslmode",
    ] {
        assert!(keywords.iter().any(|x| x == k), "{k} in {keywords:?}");
    }
}

#[test]
fn the_requested_database_is_libpqs_choice_when_the_string_names_none() {
    // A socket directory that does not exist: libpq settles its options and
    // fails to connect, without any server being involved.
    let cases = [
        ("host=/nonexistent/cruddur user=alice", Some("alice")),
        (
            "host=/nonexistent/cruddur user=alice dbname=bob",
            Some("bob"),
        ),
        (
            "postgresql://alice@%2Fnonexistent%2Fcruddur/",
            Some("alice"),
        ),
        (
            "host=/nonexistent/cruddur user='e\u{1b}[31m'",
            Some("e\u{1b}[31m"),
        ),
    ];
    for (raw, expected) in cases {
        assert_eq!(url(raw).requested_database().as_deref(), expected, "{raw}");
    }
}
