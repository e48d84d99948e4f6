//! Read replicas of the RDS instance: create one with the same security
//! practices as the instance, and build its connection URL.
//!
//! A replica inherits storage encryption (with the source's key) and, in
//! the source's region, the source's parameter group; its security groups,
//! public accessibility, deletion protection and tags are not inherited, so
//! [`create_replica`] passes them, then reads the replica back and checks
//! each practice it claims.

use aws_sdk_rds::types::{DbInstance, Tag};

use super::audit::tls_required;
use super::rds::{
    InstanceStatus, PERFORMANCE_INSIGHTS_RETENTION_DAYS, ProductionUrl, check_groups_restricted,
    describe_instance, instance_status, invalid, is_not_found, url_with_credentials_of,
    validate_group_id, validate_identifier,
};
use super::{Aws, sdk_error};
use crate::error::{Error, Remedy, Result};

/// What [`create_replica`] creates. Everything not named here is the
/// source's: instance class (unless given), storage encryption and its key,
/// parameter group (so TLS stays required), port, database and master user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaOptions {
    /// The instance to replicate; it must be encrypted, keep automated
    /// backups, require TLS, and not be a replica itself.
    pub source: String,
    /// The replica's identifier (default: `<source>-replica-<n>`, with the
    /// lowest `n` from 1 that none of the source's replicas has).
    pub identifier: Option<String>,
    /// Instance class (default: the source's).
    pub instance_class: Option<String>,
    /// Publicly accessible (default false). Requires security groups whose
    /// inbound rules for the port admit single addresses only.
    pub public: bool,
    /// VPC security groups (default: the source's).
    pub security_group_ids: Vec<String>,
    /// Availability zone (default: chosen by RDS).
    pub availability_zone: Option<String>,
}

impl ReplicaOptions {
    /// Checks every value that can be checked before asking AWS.
    pub fn validate(&self) -> Result<()> {
        validate_identifier("source instance identifier", &self.source, 63)?;
        if let Some(id) = &self.identifier {
            validate_identifier("replica identifier", id, 63)?;
            if id == &self.source {
                return Err(invalid(
                    "replica identifier",
                    id,
                    "it is the source's identifier; name the replica differently",
                ));
            }
        }
        if let Some(class) = &self.instance_class
            && !class.starts_with("db.")
        {
            return Err(invalid(
                "instance class",
                class,
                "expected an RDS class such as db.t3.micro",
            ));
        }
        for group in &self.security_group_ids {
            validate_group_id(group)?;
        }
        Ok(())
    }
}

/// The result of [`create_replica`].
#[derive(Debug, Clone)]
pub struct CreatedReplica {
    /// The replica as read back after the request; its practices were
    /// checked (encrypted, public only if asked, deletion protection, TLS
    /// required, replicating the source).
    pub instance: InstanceStatus,
    /// The source instance.
    pub source: String,
    /// The keys of the source's tags given to the replica.
    pub tags_copied: Vec<String>,
    /// The Performance Insights retention that was requested, in days.
    pub performance_insights_retention_days: i32,
}

/// Creates a read replica of `options.source` with the practices of
/// [`create_instance`](super::rds::create_instance): storage encrypted (as
/// the source, which must be), not publicly accessible unless asked and
/// every security group admits single addresses only, deletion protection,
/// TLS required (the source's parameter group, which must require it),
/// Performance Insights for 7 days, and the source's tags and security
/// groups. Refused, with nothing created, when the source is missing,
/// unencrypted, without automated backups, not requiring TLS, or a replica
/// itself, or when the replica's identifier is taken. The replica is read
/// back and each practice checked; a replica that lacks one is an error
/// that names it.
pub async fn create_replica(aws: &Aws, options: &ReplicaOptions) -> Result<CreatedReplica> {
    options.validate()?;
    let source_db = describe_source(aws, &options.source).await?;
    let source = InstanceStatus::from_sdk(&source_db);
    check_source(aws, &source).await?;
    let identifier = match &options.identifier {
        Some(id) => id.clone(),
        None => default_identifier(&source)?,
    };
    ensure_free(aws, &identifier).await?;
    let groups = if options.security_group_ids.is_empty() {
        source.security_group_ids.clone()
    } else {
        options.security_group_ids.clone()
    };
    if options.public {
        check_public(aws, &groups, &source).await?;
    }
    let tags = copyable_tags(&source_db);
    let instance_class = options
        .instance_class
        .clone()
        .unwrap_or_else(|| source.instance_class.clone());

    let mut request = aws
        .rds
        .create_db_instance_read_replica()
        .db_instance_identifier(&identifier)
        .source_db_instance_identifier(&source.identifier)
        .db_instance_class(&instance_class)
        .publicly_accessible(options.public)
        .deletion_protection(true)
        .enable_performance_insights(true)
        .performance_insights_retention_period(PERFORMANCE_INSIGHTS_RETENTION_DAYS)
        .copy_tags_to_snapshot(true)
        .auto_minor_version_upgrade(true)
        .set_tags(Some(tags.clone()));
    // Not inherited: without them RDS picks the VPC's default group.
    if !groups.is_empty() {
        request = request.set_vpc_security_group_ids(Some(groups));
    }
    if let Some(zone) = &options.availability_zone {
        request = request.availability_zone(zone);
    }
    request
        .send()
        .await
        .map_err(|e| sdk_error("CreateDBInstanceReadReplica", e))?;

    let instance = instance_status(aws, &identifier).await?;
    verify(aws, &instance, &source, options.public).await?;
    Ok(CreatedReplica {
        instance,
        source: source.identifier,
        tags_copied: tags
            .iter()
            .filter_map(|t| t.key().map(str::to_owned))
            .collect(),
        performance_insights_retention_days: PERFORMANCE_INSIGHTS_RETENTION_DAYS,
    })
}

fn refused(source: &str, reason: String, remedy: Option<Remedy>) -> Error {
    Error::Refused {
        action: format!("create a read replica of `{source}`"),
        reason,
        remedy,
    }
}

async fn describe_source(aws: &Aws, source: &str) -> Result<DbInstance> {
    describe_instance(aws, source).await.map_err(|e| {
        if is_not_found(&e) {
            refused(
                source,
                format!("there is no instance `{source}` in {}", aws.region),
                Some(Remedy::CreateInstance {
                    identifier: source.to_owned(),
                }),
            )
        } else {
            e
        }
    })
}

/// The source's own practices a replica depends on.
async fn check_source(aws: &Aws, source: &InstanceStatus) -> Result<()> {
    let id = &source.identifier;
    if let Some(primary) = &source.replica_of {
        return Err(refused(
            id,
            format!(
                "it is itself a read replica of `{primary}`, and a replica of a replica \
                 adds a second hop of replication lag: replicate the primary instead"
            ),
            Some(Remedy::ReplicateThePrimary {
                identifier: primary.clone(),
            }),
        ));
    }
    if !source.storage_encrypted {
        return Err(refused(
            id,
            "its storage is not encrypted, and in its region RDS gives an unencrypted \
             instance only unencrypted replicas; encrypt it first (snapshot it, copy the \
             snapshot with --kms-key-id, restore an instance from the copy) and replicate \
             that one"
                .to_owned(),
            Some(Remedy::Audit {
                identifier: id.to_owned(),
            }),
        ));
    }
    if source.backup_retention_days < 1 {
        return Err(refused(
            id,
            format!(
                "it keeps no automated backups, which RDS requires of a replica's source: \
                 aws rds modify-db-instance --db-instance-identifier {id} \
                 --backup-retention-period 7 --apply-immediately"
            ),
            None,
        ));
    }
    let tls = tls_required(aws, source).await;
    if !tls.passed() {
        return Err(refused(
            id,
            format!(
                "a replica uses its source's parameter group, and that one does not require \
                 TLS ({}); fix the source first: {}",
                tls.detail, tls.fix
            ),
            None,
        ));
    }
    Ok(())
}

/// `<source>-replica-<n>` for the lowest `n` the source has no replica of.
fn default_identifier(source: &InstanceStatus) -> Result<String> {
    let taken = |id: &str| source.read_replicas.iter().any(|r| r == id);
    let id = (1..)
        .map(|n| format!("{}-replica-{n}", source.identifier))
        .find(|id| !taken(id))
        .unwrap_or_default();
    validate_identifier("replica identifier", &id, 63).map_err(|_| Error::InvalidInput {
        what: "replica identifier",
        input: id.chars().take(80).collect(),
        reason: "the default name is longer than 63 characters; name the replica".into(),
        remedy: Some(Remedy::NameTheReplica),
    })?;
    Ok(id)
}

/// Refuses when an instance `identifier` exists (some emulators would
/// silently create a second one).
async fn ensure_free(aws: &Aws, identifier: &str) -> Result<()> {
    match describe_instance(aws, identifier).await {
        Ok(_) => Err(Error::Refused {
            action: format!("create the read replica `{identifier}`"),
            reason: "an instance with that identifier exists already; name the replica \
                     otherwise"
                .into(),
            remedy: Some(Remedy::NameTheReplica),
        }),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn check_public(aws: &Aws, groups: &[String], source: &InstanceStatus) -> Result<()> {
    if groups.is_empty() {
        return Err(Error::Refused {
            action: "create a publicly accessible read replica".into(),
            reason: "neither the source nor the request names a security group; a publicly \
                     accessible replica needs one whose inbound rule for the port admits one \
                     address"
                .into(),
            remedy: Some(Remedy::NameASecurityGroup),
        });
    }
    let port = source
        .port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(super::rds::DEFAULT_PORT);
    check_groups_restricted(aws, groups, port).await
}

/// The source's tags, but AWS's own (`aws:`), which no caller may set.
fn copyable_tags(source: &DbInstance) -> Vec<Tag> {
    source
        .tag_list()
        .iter()
        .filter(|t| t.key().is_some_and(|k| !k.starts_with("aws:")))
        .cloned()
        .collect()
}

/// Checks each practice the replica claims, as RDS reports it.
async fn verify(
    aws: &Aws,
    replica: &InstanceStatus,
    source: &InstanceStatus,
    public: bool,
) -> Result<()> {
    let mut problems = Vec::new();
    if replica.replica_of.as_deref() != Some(source.identifier.as_str()) {
        problems.push(format!(
            "it replicates {} instead of `{}`",
            replica.replica_of.as_deref().unwrap_or("nothing"),
            source.identifier
        ));
    }
    if !replica.storage_encrypted {
        problems.push("its storage is not encrypted".to_owned());
    }
    if replica.publicly_accessible != public {
        problems.push(format!(
            "publicly accessible: {}",
            replica.publicly_accessible
        ));
    }
    if !replica.deletion_protection {
        problems.push("deletion protection is off".to_owned());
    }
    let tls = tls_required(aws, replica).await;
    if !tls.passed() {
        problems.push(tls.detail);
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Incomplete {
        what: format!("the read replica `{}`", replica.identifier),
        problems,
        remedy: Remedy::Audit {
            identifier: replica.identifier.clone(),
        },
    })
}

/// The connection URL of the read replica `identifier`: its endpoint, with
/// the master credentials of its source's Secrets Manager secret (a
/// replica's users and passwords are the source's) and the source's
/// database, `sslmode=verify-full`
/// and `sslrootcert` as [`production_url`](super::rds::production_url)
/// builds them. Refused when `identifier` is not a read replica.
pub async fn replica_url(aws: &Aws, identifier: &str, sslrootcert: &str) -> Result<ProductionUrl> {
    let replica = instance_status(aws, identifier).await?;
    let Some(source_id) = replica.replica_of.clone() else {
        return Err(Error::Refused {
            action: format!("build a replica URL for `{identifier}`"),
            reason: format!(
                "it is not a read replica{}, and has a primary's URL",
                if replica.read_replicas.is_empty() {
                    String::new()
                } else {
                    format!(" (its replicas: {})", replica.read_replicas.join(", "))
                }
            ),
            remedy: Some(Remedy::PrimaryUrl {
                identifier: identifier.to_owned(),
            }),
        });
    };
    let source = instance_status(aws, &source_id).await?;
    url_with_credentials_of(aws, &replica, &source, sslrootcert).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(identifier: &str, replicas: &[&str]) -> InstanceStatus {
        let db = DbInstance::builder()
            .db_instance_identifier(identifier)
            .set_read_replica_db_instance_identifiers(Some(
                replicas.iter().map(|r| (*r).to_owned()).collect(),
            ))
            .build();
        InstanceStatus::from_sdk(&db)
    }

    #[test]
    fn default_identifier_takes_the_lowest_free_number() {
        let cases: [(&[&str], &str); 4] = [
            (&[], "db-replica-1"),
            (&["db-replica-1"], "db-replica-2"),
            (&["db-replica-2"], "db-replica-1"),
            (&["db-replica-1", "other", "db-replica-2"], "db-replica-3"),
        ];
        for (replicas, want) in cases {
            assert_eq!(
                default_identifier(&source("db", replicas)).unwrap(),
                want,
                "replicas {replicas:?}"
            );
        }
        let long = "a".repeat(60);
        let err = default_identifier(&source(&long, &[])).unwrap_err();
        assert!(err.to_string().contains("name the replica"), "{err}");
        assert_eq!(err.remedy(), Some(&Remedy::NameTheReplica), "{err}");
    }

    #[test]
    fn refuses_bad_options() {
        let ok = ReplicaOptions {
            source: "cruddur-db-instance".into(),
            ..Default::default()
        };
        ok.validate().unwrap();
        let cases = [
            (
                "source",
                ReplicaOptions {
                    source: "1db".into(),
                    ..ok.clone()
                },
            ),
            (
                "source",
                ReplicaOptions {
                    source: String::new(),
                    ..ok.clone()
                },
            ),
            (
                "identifier",
                ReplicaOptions {
                    identifier: Some("db--r".into()),
                    ..ok.clone()
                },
            ),
            (
                "same as source",
                ReplicaOptions {
                    identifier: Some(ok.source.clone()),
                    ..ok.clone()
                },
            ),
            (
                "class",
                ReplicaOptions {
                    instance_class: Some("t3.micro".into()),
                    ..ok.clone()
                },
            ),
            (
                "group",
                ReplicaOptions {
                    security_group_ids: vec!["default".into()],
                    ..ok.clone()
                },
            ),
        ];
        for (name, options) in cases {
            assert!(
                options.validate().is_err(),
                "{name}: {options:?} should be refused"
            );
        }
    }

    #[test]
    fn aws_tags_are_not_copied() {
        let db = DbInstance::builder()
            .tag_list(
                Tag::builder()
                    .key("environment")
                    .value("production")
                    .build(),
            )
            .tag_list(
                Tag::builder()
                    .key("aws:cloudformation:stack-name")
                    .value("x")
                    .build(),
            )
            .build();
        let keys: Vec<_> = copyable_tags(&db)
            .iter()
            .filter_map(|t| t.key().map(str::to_owned))
            .collect();
        assert_eq!(keys, ["environment"]);
    }
}
