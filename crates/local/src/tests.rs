//! Unit tests of the local cluster.

use super::*;
use crate::binaries::*;
use crate::os::*;
use crate::resolve::*;
use std::fs;
use std::path::{Path, PathBuf};

use crate::variables::{CRUDDUR_PG_BINDIR, CRUDDUR_PG_USER};
use cruddur_db::variables::CONNECTION_URL;
use cruddur_db::{DatabaseUrl, Environment, Settings, UrlSource};

#[test]
fn socket_dir_falls_back_to_tmp_when_too_long_or_odd() {
    let bins = Binaries {
        dir: PathBuf::from("/nonexistent"),
    };
    let cluster = |dir: &str| LocalCluster {
        dir: PathBuf::from(dir),
        bins: bins.clone(),
        owner: None,
        options: ClusterOptions::default(),
    };
    let short = cluster("/work/project/.cruddur/pg");
    assert_eq!(
        short.socket_dir(),
        Path::new("/work/project/.cruddur/pg/socket")
    );
    let long_path = format!("/work/{}/.cruddur/pg", "x".repeat(80));
    let long = cluster(&long_path);
    let dir = long.socket_dir();
    assert!(
        dir.to_string_lossy().starts_with("/tmp/cruddur-"),
        "{}",
        dir.display()
    );
    assert!(dir.as_os_str().len() + SOCKET_FILE_LEN <= MAX_SOCKET_PATH);
    assert_eq!(
        dir,
        cluster(&long_path).socket_dir(),
        "stable per directory"
    );
    assert_ne!(dir, cluster(&format!("{long_path}2")).socket_dir());
    let spaced = cluster("/work/my project/.cruddur/pg");
    assert!(
        spaced
            .socket_dir()
            .to_string_lossy()
            .starts_with("/tmp/cruddur-")
    );
}

#[test]
fn missing_server_user_message_says_what_to_do() {
    let message = Error::NoServerUser {
        user: "postgres".into(),
    }
    .to_string();
    for needle in [
        "refuses to run as root",
        "`postgres`",
        "useradd",
        "CRUDDUR_PG_USER",
        "DATABASE_URL",
    ] {
        assert!(message.contains(needle), "{needle:?} missing in: {message}");
    }
}

#[test]
fn missing_binaries_message_names_places_and_remedies() {
    let settings = Settings::default().with(&CRUDDUR_PG_BINDIR, "/nonexistent/pg/bin");
    let err = Binaries::find_version(None, &settings).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/nonexistent/pg/bin"), "{message}");
    assert!(message.contains("apt-get install postgresql"), "{message}");
}

#[test]
fn unknown_server_user_is_reported_when_root() {
    if !rustix::process::geteuid().is_root() {
        return; // the server runs as the current user; nothing to look up
    }
    let settings = Settings::default().with(&CRUDDUR_PG_USER, "cruddur-no-such-user-x");
    let err = server_user(&settings).unwrap_err();
    assert!(
        matches!(&err, Error::NoServerUser { user } if user == "cruddur-no-such-user-x"),
        "{err}"
    );
}

#[test]
fn project_root_prefers_a_cruddur_dir_then_the_workspace_then_cargo_toml() {
    let base = std::env::temp_dir().join(format!("cruddur-root-{}", uuid::Uuid::new_v4().simple()));
    let nested = base.join("a/b");
    fs::create_dir_all(&nested).unwrap();
    assert_eq!(project_root(&nested), nested, "no marker: the start");
    fs::write(base.join("a/Cargo.toml"), "[package]\nname = \"member\"\n").unwrap();
    assert_eq!(
        project_root(&nested),
        base.join("a"),
        "the nearest Cargo.toml"
    );
    fs::write(base.join("Cargo.toml"), "[workspace]\nmembers = [\"a\"]\n").unwrap();
    assert_eq!(project_root(&nested), base, "the workspace root wins");
    fs::create_dir_all(base.join("a/.cruddur")).unwrap();
    assert_eq!(
        project_root(&nested),
        base.join("a"),
        "an existing .cruddur wins"
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn explicit_and_environment_urls_are_never_replaced() {
    let no_cluster = || -> Result<LocalCluster> { panic!("the local cluster must not be used") };
    let explicit = DatabaseUrl::parse("postgres://localhost:1/explicit").unwrap();
    let none = Settings::default();
    let r = resolve_with(
        Some(explicit),
        Environment::Development,
        &none,
        Fallback::Start,
        no_cluster,
    )
    .unwrap();
    assert_eq!(r.source, UrlSource::Explicit);
    assert_eq!(
        r.config.database_url.database().as_deref(),
        Some("explicit")
    );
    assert!(r.notice.is_none());

    let env = Settings::default().with(&CONNECTION_URL, "postgres://localhost:1/from_env");
    let r = resolve_with(
        None,
        Environment::Development,
        &env,
        Fallback::Start,
        no_cluster,
    )
    .unwrap();
    assert_eq!(r.source, UrlSource::Environment(&CONNECTION_URL));
    assert_eq!(
        r.config.database_url.database().as_deref(),
        Some("from_env")
    );
}

#[test]
fn auth_names_round_trip() {
    assert_eq!(Auth::parse("password"), Some(Auth::Password));
    assert_eq!(
        Auth::parse(Auth::SocketTrust.as_str()),
        Some(Auth::SocketTrust)
    );
    assert_eq!(Auth::parse("md5"), None);
}

#[test]
fn programs_others_could_write_are_untrusted() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tmp")
        .join(format!("cruddur-trust-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(&base).unwrap();
    let base = fs::canonicalize(&base).unwrap();
    let program = |dir_mode: u32, file_mode: u32| {
        let dir = base.join(format!("{dir_mode:o}-{file_mode:o}"));
        fs::create_dir(&dir).unwrap();
        let path = dir.join("pg_ctl");
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(file_mode)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(dir_mode)).unwrap();
        path
    };
    let base_is_safe = base.ancestors().all(|d| {
        fs::metadata(d).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt as _;
            (m.uid() == 0 || m.uid() == rustix::process::geteuid().as_raw())
                && m.mode() & 0o022 == 0
        })
    });
    if base_is_safe {
        assert_eq!(untrusted(&program(0o755, 0o755)), None);
    }
    for (dir_mode, file_mode, needle) in [
        (0o777, 0o755, "mode 777"),
        (0o1777, 0o755, "mode 1777"),
        (0o775, 0o755, "mode 775"),
        (0o755, 0o775, "mode 775"),
        (0o755, 0o757, "mode 757"),
    ] {
        let path = program(dir_mode, file_mode);
        let why = untrusted(&path).unwrap_or_else(|| panic!("{} is trusted", path.display()));
        assert!(why.contains(needle), "{}: {why}", path.display());
    }
    assert!(untrusted(&base.join("missing/pg_ctl")).is_some());
    assert!(untrusted(Path::new("/tmp/../tmp/no-such-pg_ctl")).is_some());
    fs::remove_dir_all(&base).unwrap();
}
