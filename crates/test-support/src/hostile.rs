//! Session settings that change how the server renders values, applied the
//! three ways a user's setup can apply them: in the URL's `options`, per
//! role (`ALTER ROLE … SET`) and per database (`ALTER DATABASE … SET`).
//!
//! Code that compares, parses or routes on a server value must give the same
//! answer under each: [`Hostile::ALL`] lists the ways, [`Hostile::apply`]
//! turns a test database's URL into one whose sessions carry the settings.

use cruddur_db::{DatabaseUrl, admin};
use diesel::connection::SimpleConnection;

use crate::unique_name;

/// Settings chosen to render differently from the defaults: a non-ISO
/// `DateStyle` with day-first order, a zone with a 45-minute offset,
/// another `IntervalStyle`, fewer float digits, and explicit `lc_*` (the
/// only locales every machine has are C and POSIX).
pub const HOSTILE_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "SQL,DMY"),
    ("TimeZone", "Pacific/Chatham"),
    ("IntervalStyle", "sql_standard"),
    ("extra_float_digits", "-15"),
    ("lc_monetary", "C"),
    ("lc_numeric", "POSIX"),
    ("lc_time", "C"),
];

/// Other `DateStyle`s, each of which printed `pg_postmaster_start_time()`
/// differently from ISO.
pub const OTHER_DATESTYLES: &[&str] = &["German", "Postgres,MDY", "SQL,MDY"];

/// One way of applying [`HOSTILE_SETTINGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// `options=-c DateStyle=… -c …` in the URL.
    Options,
    /// A throwaway superuser role with `ALTER ROLE … SET`, named in the URL.
    Role,
    /// `ALTER DATABASE … SET` on the test's own database.
    Database,
}

impl Hostile {
    /// Every way.
    pub const ALL: [Hostile; 3] = [Hostile::Options, Hostile::Role, Hostile::Database];

    /// `url` (a database of the test's own) with the settings applied this
    /// way, and the guard of what was created for it (a role), which undoes
    /// it when dropped. For [`Hostile::Database`] the database itself
    /// carries the settings from then on, for every new session.
    pub fn apply(self, url: &DatabaseUrl) -> (DatabaseUrl, Option<HostileRole>) {
        match self {
            Hostile::Options => (url.with_param("options", &options_value()), None),
            Hostile::Role => {
                let role = HostileRole::new(url);
                (url.with_param("user", &role.name), Some(role))
            }
            Hostile::Database => {
                let db = url.database().expect("the URL names a database");
                let mut conn = admin::connect_maintenance(url).expect("connect to the server");
                conn.batch_execute(&alter_statements(&format!("DATABASE {}", quote(&db))))
                    .expect("ALTER DATABASE … SET");
                (url.clone(), None)
            }
        }
    }
}

/// The `options` value that sets [`HOSTILE_SETTINGS`] at connection start.
pub fn options_value() -> String {
    HOSTILE_SETTINGS
        .iter()
        .map(|(k, v)| format!("-c {k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn alter_statements(target: &str) -> String {
    HOSTILE_SETTINGS
        .iter()
        .map(|(k, v)| format!("ALTER {target} SET {k} = '{v}';"))
        .collect()
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A superuser role of the test's own with [`HOSTILE_SETTINGS`] set on it,
/// dropped (with whatever it owns) when the guard drops.
pub struct HostileRole {
    /// The role's name.
    pub name: String,
    server: DatabaseUrl,
}

impl HostileRole {
    /// Creates the role on the server of `url`.
    pub fn new(url: &DatabaseUrl) -> Self {
        let name = unique_name("hostile");
        let mut conn = admin::connect_maintenance(url).expect("connect to the server");
        conn.batch_execute(&format!(
            "CREATE ROLE {0} LOGIN SUPERUSER; {1}",
            quote(&name),
            alter_statements(&format!("ROLE {}", quote(&name)))
        ))
        .expect("create the hostile role");
        Self {
            name,
            server: url.clone(),
        }
    }
}

impl Drop for HostileRole {
    fn drop(&mut self) {
        let result = admin::connect_maintenance(&self.server).and_then(|mut conn| {
            // Databases it created (a `setup` run as it) go to the caller's role.
            Ok(conn.batch_execute(&format!(
                "REASSIGN OWNED BY {0} TO CURRENT_USER; DROP OWNED BY {0}; DROP ROLE {0};",
                quote(&self.name)
            ))?)
        });
        if let Err(e) = result {
            eprintln!("could not drop role {}: {e}", self.name);
        }
    }
}
