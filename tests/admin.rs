//! What a rebuild establishes before it drops anything: whether the role may
//! create the database again, and the name to create it under.

mod common;

use common::{Dropper, server_url, unique_name};
use cruddur_db::admin::{connect_maintenance, create_named, database_exists, ensure_may_create};
use cruddur_db::{Error, create_database};
use diesel::connection::SimpleConnection;

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A throwaway role, dropped when the guard goes.
struct Role(String);

impl Role {
    fn create(attributes: &str) -> Self {
        let name = unique_name("cruddur_admin");
        connect_maintenance(&server_url())
            .unwrap()
            .batch_execute(&format!("CREATE ROLE {} LOGIN {attributes}", quote(&name)))
            .unwrap();
        Self(name)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let role = quote(&self.0);
        if let Ok(mut conn) = connect_maintenance(&server_url()) {
            let _ = conn.batch_execute(&format!(
                "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}"
            ));
        }
    }
}

#[test]
fn only_a_role_that_may_create_databases_passes_the_check() {
    for (attributes, may) in [
        ("NOCREATEDB NOSUPERUSER", false),
        ("CREATEDB NOSUPERUSER", true),
        ("SUPERUSER NOCREATEDB", true),
    ] {
        let role = Role::create(attributes);
        let url = server_url().with_param("user", &role.0);
        match ensure_may_create(&url, "set up `x`") {
            Ok(()) => assert!(may, "{attributes}: passed"),
            Err(Error::Refused { action, reason }) => {
                assert!(!may, "{attributes}: refused: {reason}");
                assert_eq!(action, "set up `x`");
                assert!(
                    reason.contains("CREATEDB") && reason.contains(&role.0),
                    "{reason}"
                );
            }
            Err(e) => panic!("{attributes}: {e}"),
        }
    }
}

#[test]
fn a_database_is_created_under_the_exact_name_given_or_libpqs_default() {
    // A name no URL spells plainly: quotes, a space, an escape sequence.
    let name = format!("{} \"q\" \u{1b}[0m", &unique_name("cr")[..16]);
    let url = server_url().with_database(&name);
    let _dropper = Dropper(url.clone());
    assert!(create_named(&server_url(), &name).unwrap());
    assert!(
        !create_named(&server_url(), &name).unwrap(),
        "created twice"
    );
    assert!(database_exists(&url).unwrap());

    // No dbname: libpq asks for the database named like the user.
    let role = Role::create("CREATEDB");
    let unnamed = server_url()
        .with_param("user", &role.0)
        .with_param("dbname", "");
    let _dropper = Dropper(server_url().with_database(&role.0));
    assert_eq!(
        unnamed.requested_database().as_deref(),
        Some(role.0.as_str())
    );
    assert!(create_database(&unnamed).unwrap());
    assert!(database_exists(&server_url().with_database(&role.0)).unwrap());
}
