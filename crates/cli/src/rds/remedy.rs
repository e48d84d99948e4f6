//! The CLI's words for the steps the AWS toolkit hands over as values: an
//! error's [`Remedy`] and the [`Operation`]s of an audit's fixes each become
//! the `cruddur-db rds` command, or flag, that takes the step. The toolkit
//! states what failed and names no command; naming ours is the CLI's job.

use cruddur_db_aws::Remedy;
use cruddur_db_aws::audit::{AutoFix, Fix, Operation};

/// The hint for an error's remedy, added in parentheses after the error;
/// `None` for a remedy the CLI has no words for yet (the message alone
/// still says what failed).
pub fn hint(remedy: &Remedy) -> Option<String> {
    Some(match remedy {
        Remedy::NameASecurityGroup => "pass --security-group-id with a group whose inbound rule \
                                        for the port admits one address (see `cruddur-db rds \
                                        allow-ip`)"
            .to_owned(),
        Remedy::PointRulesAtOneAddress => {
            "point them at one address with `cruddur-db rds allow-ip`".to_owned()
        }
        Remedy::AddARuleForOneAddress => {
            "add one with `cruddur-db rds allow-ip --group-id GROUP --ip auto`".to_owned()
        }
        Remedy::CreateInstance { identifier } => format!(
            "create it with `cruddur-db rds create --identifier {identifier}` or name another \
             with --source"
        ),
        Remedy::Audit { identifier } => format!(
            "`cruddur-db rds audit --identifier {identifier}` lists what it lacks and the fixes"
        ),
        Remedy::ReplicaUrl { identifier } => {
            format!("its URL is `cruddur-db rds url --replica {identifier}`")
        }
        Remedy::PrimaryUrl { identifier } => {
            format!("its own URL is `cruddur-db rds url --identifier {identifier}`")
        }
        Remedy::NameARegion => "or pass --region".to_owned(),
        Remedy::OmitTheRule => "omit --rule-id".to_owned(),
        Remedy::NameARule => "choose one with --rule-id".to_owned(),
        Remedy::ReplicateThePrimary { identifier } => {
            format!("`cruddur-db rds create-replica --source {identifier}`")
        }
        Remedy::NameTheReplica => "name it with --identifier".to_owned(),
        Remedy::ProxyThePrimary { identifier } => {
            format!("`cruddur-db rds proxy create --identifier {identifier}`")
        }
        _ => return None,
    })
}

/// The command, or flag, that takes one of an audit fix's operations.
pub fn command(operation: &Operation) -> String {
    match operation {
        Operation::Snapshot { identifier } => {
            format!("cruddur-db rds snapshot --identifier {identifier}")
        }
        Operation::Delete { identifier } => {
            format!("cruddur-db rds delete --identifier {identifier} --confirm {identifier}")
        }
        Operation::AllowIp { group_id, rule_id } => {
            format!("cruddur-db rds allow-ip --group-id {group_id} --rule-id {rule_id} --ip auto")
        }
        Operation::ScpTemplate { identifier } => format!(
            "cruddur-db rds scp-template --identifier {identifier} --allowed-regions REGIONS \
             > scp.json"
        ),
        Operation::NameAllowedRegions => {
            "--allowed-regions eu-west-1,... or CRUDDUR_RDS_ALLOWED_REGIONS".to_owned()
        }
        Operation::ShorterIdleWindow => "pass a shorter --idle-days".to_owned(),
        Operation::OrganizationsCredentials => "--organizations-profile PROFILE".to_owned(),
        Operation::StoreUrlAgain => "run `cruddur-db rds url --write-env` again".to_owned(),
        // An operation added to the toolkit before the CLI words it: its
        // words still say what to do.
        other => other.to_string(),
    }
}

/// An audit fix as one text, its operations as the CLI's commands.
pub fn fix_text(fix: &Fix) -> String {
    fix.render(command)
}

/// An automatic fix as listed before it is applied, with what to do once
/// it takes effect.
pub fn auto_fix_text(fix: &AutoFix) -> String {
    match fix.afterwards() {
        Some(then) => format!("{fix}; after each: {}", command(&then)),
        None => fix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` names one of the CLI's commands or flags.
    fn names_a_command(text: &str) -> bool {
        text.contains("cruddur-db rds ") || text.contains(" --") || text.starts_with("--")
    }

    #[test]
    fn every_remedy_is_worded_as_a_command() {
        let id = || "db-1".to_owned();
        let remedies = [
            Remedy::NameASecurityGroup,
            Remedy::PointRulesAtOneAddress,
            Remedy::AddARuleForOneAddress,
            Remedy::CreateInstance { identifier: id() },
            Remedy::Audit { identifier: id() },
            Remedy::ReplicaUrl { identifier: id() },
            Remedy::PrimaryUrl { identifier: id() },
            Remedy::NameARegion,
            Remedy::OmitTheRule,
            Remedy::NameARule,
            Remedy::ReplicateThePrimary { identifier: id() },
            Remedy::NameTheReplica,
            Remedy::ProxyThePrimary { identifier: id() },
        ];
        for remedy in &remedies {
            let shown = hint(remedy);
            assert!(
                shown.as_deref().is_some_and(names_a_command),
                "{remedy:?}: {shown:?}"
            );
        }
        for (remedy, want) in [
            (Remedy::NameARegion, "or pass --region"),
            (Remedy::OmitTheRule, "omit --rule-id"),
            (Remedy::NameARule, "choose one with --rule-id"),
            (
                Remedy::ReplicateThePrimary { identifier: id() },
                "`cruddur-db rds create-replica --source db-1`",
            ),
            (Remedy::NameTheReplica, "name it with --identifier"),
            (
                Remedy::ProxyThePrimary { identifier: id() },
                "`cruddur-db rds proxy create --identifier db-1`",
            ),
        ] {
            assert_eq!(hint(&remedy).as_deref(), Some(want), "{remedy:?}");
        }
    }

    #[test]
    fn every_operation_of_a_fix_is_worded_as_a_command() {
        let id = || "db-1".to_owned();
        let cases = [
            (
                Operation::Snapshot { identifier: id() },
                "cruddur-db rds snapshot --identifier db-1",
            ),
            (
                Operation::Delete { identifier: id() },
                "cruddur-db rds delete --identifier db-1 --confirm db-1",
            ),
            (
                Operation::AllowIp {
                    group_id: "sg-1".into(),
                    rule_id: "sgr-1".into(),
                },
                "cruddur-db rds allow-ip --group-id sg-1 --rule-id sgr-1 --ip auto",
            ),
            (
                Operation::ScpTemplate { identifier: id() },
                "cruddur-db rds scp-template --identifier db-1 --allowed-regions REGIONS > scp.json",
            ),
            (
                Operation::NameAllowedRegions,
                "--allowed-regions eu-west-1,... or CRUDDUR_RDS_ALLOWED_REGIONS",
            ),
            (Operation::ShorterIdleWindow, "pass a shorter --idle-days"),
            (
                Operation::OrganizationsCredentials,
                "--organizations-profile PROFILE",
            ),
            (
                Operation::StoreUrlAgain,
                "run `cruddur-db rds url --write-env` again",
            ),
        ];
        for (operation, want) in cases {
            let words = operation.to_string();
            assert!(!names_a_command(&words), "the toolkit's words: {words}");
            assert_eq!(command(&operation), want, "{operation:?}");
            // Within a fix, the command takes the operation's place.
            let fix = Fix::text("first ")
                .then(operation.clone())
                .then_text(" then");
            assert_eq!(fix_text(&fix), format!("first {want} then"));
            assert_eq!(fix.to_string(), format!("first {words} then"));
        }
        let rotation = AutoFix::EnableRotation {
            secret_arn: "arn:s".into(),
        };
        let listed = auto_fix_text(&rotation);
        assert!(
            listed.ends_with("; after each: run `cruddur-db rds url --write-env` again"),
            "{listed}"
        );
        assert!(!rotation.to_string().contains("cruddur-db"), "{rotation}");
    }
}
