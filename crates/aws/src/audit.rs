//! `rds audit`: the security practices an API can check, each reported as
//! pass or fail with a short fix, for the instance and each of its read
//! replicas.
//!
//! Practices from the original list that no API can check (choosing a
//! compliant region, deleting unused databases, organization SCPs) are not
//! reported.

use std::fmt;

use aws_sdk_guardduty::types::DetectorStatus;

use super::rds::{FORCE_SSL_PARAMETER, InstanceStatus, MIN_BACKUP_RETENTION_DAYS, instance_status};
use super::{Aws, sdk_error};
use crate::error::{Error, Result};

/// One checkable practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Practice {
    /// Storage is encrypted at rest.
    StorageEncrypted,
    /// The instance is not publicly accessible.
    NotPubliclyAccessible,
    /// No security group admits the whole internet on the database port.
    SecurityGroupNotOpenToWorld,
    /// Deletion protection is on.
    DeletionProtection,
    /// A production instance is Multi-AZ.
    MultiAzForProduction,
    /// Automated backups are kept at least 7 days.
    BackupRetention,
    /// At least one manual snapshot of the instance is available (automated
    /// ones are deleted with the instance).
    Snapshots,
    /// The master password is managed (and rotated) by Secrets Manager.
    ManagedMasterSecret,
    /// The parameter group requires TLS (`rds.force_ssl = 1`).
    TlsRequired,
    /// A CloudTrail trail is logging.
    CloudTrailLogging,
    /// A GuardDuty detector is enabled.
    GuardDutyEnabled,
}

impl Practice {
    /// Every practice, in the order `audit` reports them.
    pub const ALL: [Practice; 11] = [
        Practice::StorageEncrypted,
        Practice::NotPubliclyAccessible,
        Practice::SecurityGroupNotOpenToWorld,
        Practice::DeletionProtection,
        Practice::MultiAzForProduction,
        Practice::BackupRetention,
        Practice::Snapshots,
        Practice::ManagedMasterSecret,
        Practice::TlsRequired,
        Practice::CloudTrailLogging,
        Practice::GuardDutyEnabled,
    ];

    /// The practice's short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Practice::StorageEncrypted => "storage-encrypted",
            Practice::NotPubliclyAccessible => "not-publicly-accessible",
            Practice::SecurityGroupNotOpenToWorld => "security-group-not-open-to-world",
            Practice::DeletionProtection => "deletion-protection",
            Practice::MultiAzForProduction => "multi-az-for-production",
            Practice::BackupRetention => "backup-retention",
            Practice::Snapshots => "snapshots",
            Practice::ManagedMasterSecret => "managed-master-secret",
            Practice::TlsRequired => "tls-required",
            Practice::CloudTrailLogging => "cloudtrail-logging",
            Practice::GuardDutyEnabled => "guardduty-enabled",
        }
    }
}

impl fmt::Display for Practice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one practice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PracticeResult {
    /// Which practice.
    pub practice: Practice,
    /// The instance it is about; `None` for the account-wide practices
    /// (CloudTrail, GuardDuty).
    pub instance: Option<String>,
    /// Whether the setup follows it.
    pub pass: bool,
    /// What was found.
    pub detail: String,
    /// How to fix a failure (empty when it passes).
    pub fix: String,
}

fn result(
    practice: Practice,
    pass: bool,
    detail: String,
    fix: impl Into<String>,
) -> PracticeResult {
    PracticeResult {
        practice,
        instance: None,
        pass,
        detail,
        fix: if pass { String::new() } else { fix.into() },
    }
}

impl Practice {
    /// Whether the practice is checked on a read replica. Backups,
    /// snapshots, Multi-AZ and the master secret belong to the source (RDS
    /// creates replicas without backups, and a replica's users and passwords
    /// are the source's); the account-wide practices are checked once.
    pub fn applies_to_replica(self) -> bool {
        matches!(
            self,
            Practice::StorageEncrypted
                | Practice::NotPubliclyAccessible
                | Practice::SecurityGroupNotOpenToWorld
                | Practice::DeletionProtection
                | Practice::TlsRequired
        )
    }

    fn account_wide(self) -> bool {
        matches!(
            self,
            Practice::CloudTrailLogging | Practice::GuardDutyEnabled
        )
    }
}

/// Checks the instance `identifier` and its account against every
/// [`Practice`], then each of its read replicas against the practices that
/// [apply to a replica](Practice::applies_to_replica); each result names
/// its instance. `production` makes Multi-AZ required of the instance. An
/// instance that is itself a replica is checked as a replica. A check whose
/// API call fails (for example for lack of permission) is reported as a
/// failure that says so; only a failure to describe `identifier` is an
/// error.
pub async fn audit(aws: &Aws, identifier: &str, production: bool) -> Result<Vec<PracticeResult>> {
    let db = instance_status(aws, identifier).await?;
    let mut out = instance_results(aws, &db, production).await;
    out.push(cloudtrail(aws).await);
    out.push(guardduty(aws).await);
    for replica in &db.read_replicas {
        out.extend(replica_results(aws, replica).await);
    }
    Ok(out)
}

/// A replica's results; when it cannot be described, each of its practices
/// fails with the reason.
async fn replica_results(aws: &Aws, identifier: &str) -> Vec<PracticeResult> {
    match instance_status(aws, identifier).await {
        Ok(db) => instance_results(aws, &db, false).await,
        Err(e) => Practice::ALL
            .into_iter()
            .filter(|p| p.applies_to_replica())
            .map(|p| PracticeResult {
                instance: Some(identifier.to_owned()),
                ..cannot_check(p, &e, "grant rds:DescribeDBInstances")
            })
            .collect(),
    }
}

/// The practices of one instance (all but the account-wide ones; for a
/// replica, those that apply to one), in [`Practice::ALL`]'s order.
async fn instance_results(aws: &Aws, db: &InstanceStatus, production: bool) -> Vec<PracticeResult> {
    let replica = db.replica_of.is_some();
    let mut out = Vec::with_capacity(Practice::ALL.len());
    for practice in Practice::ALL {
        if practice.account_wide() || (replica && !practice.applies_to_replica()) {
            continue;
        }
        let r = check(aws, db, practice, production).await;
        out.push(PracticeResult {
            instance: Some(db.identifier.clone()),
            ..r
        });
    }
    out
}

async fn check(
    aws: &Aws,
    db: &InstanceStatus,
    practice: Practice,
    production: bool,
) -> PracticeResult {
    let identifier = &db.identifier;
    let modify = format!("aws rds modify-db-instance --db-instance-identifier {identifier}");
    match practice {
        Practice::StorageEncrypted => result(
            practice,
            db.storage_encrypted,
            format!("storage encrypted: {}", db.storage_encrypted),
            "encryption cannot be switched on in place: snapshot, copy the snapshot with \
             --kms-key-id, restore from the copy",
        ),
        Practice::NotPubliclyAccessible => result(
            practice,
            !db.publicly_accessible,
            format!("publicly accessible: {}", db.publicly_accessible),
            format!("{modify} --no-publicly-accessible --apply-immediately"),
        ),
        Practice::SecurityGroupNotOpenToWorld => open_to_world(aws, db).await,
        Practice::DeletionProtection => result(
            practice,
            db.deletion_protection,
            format!("deletion protection: {}", db.deletion_protection),
            format!("{modify} --deletion-protection --apply-immediately"),
        ),
        Practice::MultiAzForProduction if production => result(
            practice,
            db.multi_az,
            format!("production instance, multi-az: {}", db.multi_az),
            format!("{modify} --multi-az --apply-immediately"),
        ),
        Practice::MultiAzForProduction => result(
            practice,
            true,
            format!(
                "not required: not audited as production (multi-az: {})",
                db.multi_az
            ),
            "",
        ),
        Practice::BackupRetention => result(
            practice,
            db.backup_retention_days >= MIN_BACKUP_RETENTION_DAYS,
            format!(
                "automated backups kept {} days (at least {MIN_BACKUP_RETENTION_DAYS} wanted)",
                db.backup_retention_days
            ),
            format!(
                "{modify} --backup-retention-period {MIN_BACKUP_RETENTION_DAYS} --apply-immediately"
            ),
        ),
        Practice::Snapshots => snapshots(aws, identifier).await,
        Practice::ManagedMasterSecret => match &db.master_user_secret_arn {
            Some(arn) => result(
                practice,
                true,
                format!("master password kept and rotated by Secrets Manager: {arn}"),
                "",
            ),
            None => result(
                practice,
                false,
                "the master password is not managed by Secrets Manager".into(),
                format!("{modify} --manage-master-user-password --apply-immediately"),
            ),
        },
        Practice::TlsRequired => tls_required(aws, db).await,
        Practice::CloudTrailLogging => cloudtrail(aws).await,
        Practice::GuardDutyEnabled => guardduty(aws).await,
    }
}

fn cannot_check(practice: Practice, err: &Error, fix: &str) -> PracticeResult {
    result(practice, false, format!("cannot check: {err}"), fix)
}

async fn open_to_world(aws: &Aws, db: &InstanceStatus) -> PracticeResult {
    let practice = Practice::SecurityGroupNotOpenToWorld;
    let port = u16::try_from(db.port.unwrap_or(5432)).unwrap_or(5432);
    let mut open = Vec::new();
    for group in &db.security_group_ids {
        match aws.ec2.describe_security_group_rules(group).await {
            Ok(rules) => open.extend(
                rules
                    .iter()
                    .filter(|r| !r.is_egress && r.covers_tcp_port(port) && r.open_to_world())
                    .map(|r| (group.clone(), r.rule_id.clone(), r.source())),
            ),
            Err(e) => {
                return cannot_check(practice, &e, "grant ec2:DescribeSecurityGroupRules");
            }
        }
    }
    match open.first() {
        None => result(
            practice,
            true,
            format!(
                "no inbound rule of {} admits 0.0.0.0/0 or ::/0 on port {port}",
                if db.security_group_ids.is_empty() {
                    "(no groups)".to_owned()
                } else {
                    db.security_group_ids.join(", ")
                }
            ),
            "",
        ),
        Some((group, rule, _)) => result(
            practice,
            false,
            format!(
                "open to the internet on port {port}: {}",
                open.iter()
                    .map(|(g, r, s)| format!("{r} in {g} admits {s}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!("cruddur-db rds allow-ip --group-id {group} --rule-id {rule} --ip auto"),
        ),
    }
}

async fn snapshots(aws: &Aws, identifier: &str) -> PracticeResult {
    let practice = Practice::Snapshots;
    let fix = format!("cruddur-db rds snapshot --identifier {identifier}");
    let mut available = (0, 0);
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .rds
            .describe_db_snapshots()
            .db_instance_identifier(identifier)
            .set_marker(marker.clone())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => return cannot_check(practice, &sdk_error("DescribeDBSnapshots", e), &fix),
        };
        for s in page.db_snapshots() {
            if s.status() == Some("available") {
                if s.snapshot_type() == Some("manual") {
                    available.0 += 1;
                } else {
                    available.1 += 1;
                }
            }
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    let (manual, automated) = available;
    result(
        practice,
        manual > 0,
        format!(
            "available snapshots: {manual} manual, {automated} automated; a manual one, which \
             outlives the instance, is wanted"
        ),
        fix,
    )
}

/// Whether the instance's parameter group requires TLS (also used before
/// and after creating a replica, which shares its source's group).
pub(crate) async fn tls_required(aws: &Aws, db: &InstanceStatus) -> PracticeResult {
    let practice = Practice::TlsRequired;
    let group = db.parameter_groups.first().cloned().unwrap_or_default();
    let fix = format!(
        "aws rds modify-db-parameter-group --db-parameter-group-name {group} --parameters \
         ParameterName={FORCE_SSL_PARAMETER},ParameterValue=1,ApplyMethod=pending-reboot \
         (a default group cannot be changed: create one and attach it)"
    );
    if group.is_empty() {
        return result(
            practice,
            false,
            "the instance has no parameter group".into(),
            fix,
        );
    }
    let mut value: Option<String> = None;
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .rds
            .describe_db_parameters()
            .db_parameter_group_name(&group)
            .set_marker(marker.clone())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let err = sdk_error("DescribeDBParameters", e);
                // Emulators and restricted roles may not describe the
                // built-in default groups; those default to TLS on 15+.
                if group.starts_with("default.") && db.engine_major().is_some_and(|m| m >= 15) {
                    break;
                }
                return cannot_check(practice, &err, &fix);
            }
        };
        if let Some(p) = page
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == Some(FORCE_SSL_PARAMETER))
        {
            value = p.parameter_value().map(str::to_owned);
            break;
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    match value.as_deref() {
        Some("1") => result(
            practice,
            true,
            format!("{FORCE_SSL_PARAMETER} = 1 in {group}"),
            "",
        ),
        Some(other) => result(
            practice,
            false,
            format!(
                "{FORCE_SSL_PARAMETER} = {other} in {group}: connections without TLS are accepted"
            ),
            fix,
        ),
        None if group.starts_with("default.") && db.engine_major().is_some_and(|m| m >= 15) => {
            result(
                practice,
                true,
                format!(
                    "{group} is a default group of PostgreSQL {}, where {FORCE_SSL_PARAMETER} defaults to 1",
                    db.engine_version
                ),
                "",
            )
        }
        None => result(
            practice,
            false,
            format!(
                "{FORCE_SSL_PARAMETER} is not set in {group}: connections without TLS are accepted"
            ),
            fix,
        ),
    }
}

async fn cloudtrail(aws: &Aws) -> PracticeResult {
    let practice = Practice::CloudTrailLogging;
    let fix = "aws cloudtrail create-trail --name cruddur-trail --s3-bucket-name BUCKET \
               --is-multi-region-trail && aws cloudtrail start-logging --name cruddur-trail";
    let trails = match aws.cloudtrail.describe_trails().send().await {
        Ok(t) => t,
        Err(e) => return cannot_check(practice, &sdk_error("DescribeTrails", e), fix),
    };
    let mut names = Vec::new();
    for trail in trails.trail_list() {
        let Some(id) = trail.trail_arn().or(trail.name()) else {
            continue;
        };
        let name = trail.name().unwrap_or(id).to_owned();
        match aws.cloudtrail.get_trail_status().name(id).send().await {
            Ok(status) if status.is_logging() == Some(true) => {
                return result(practice, true, format!("trail {name} is logging"), "");
            }
            Ok(_) => names.push(format!("{name} (not logging)")),
            Err(e) => names.push(format!("{name} ({})", sdk_error("GetTrailStatus", e))),
        }
    }
    let detail = if names.is_empty() {
        "no CloudTrail trail in this region".to_owned()
    } else {
        format!("no trail is logging: {}", names.join(", "))
    };
    result(practice, false, detail, fix)
}

async fn guardduty(aws: &Aws) -> PracticeResult {
    let practice = Practice::GuardDutyEnabled;
    let fix = "aws guardduty create-detector --enable";
    let detectors = match aws.guardduty.list_detectors().send().await {
        Ok(d) => d,
        Err(e) => return cannot_check(practice, &sdk_error("ListDetectors", e), fix),
    };
    let mut seen = Vec::new();
    for id in detectors.detector_ids() {
        match aws.guardduty.get_detector().detector_id(id).send().await {
            Ok(d) if d.status() == Some(&DetectorStatus::Enabled) => {
                return result(practice, true, format!("detector {id} is enabled"), "");
            }
            Ok(d) => seen.push(format!(
                "{id} ({})",
                d.status().map_or("no status", |s| s.as_str())
            )),
            Err(e) => seen.push(format!("{id} ({})", sdk_error("GetDetector", e))),
        }
    }
    let detail = if seen.is_empty() {
        "no GuardDuty detector in this region".to_owned()
    } else {
        format!("no detector is enabled: {}", seen.join(", "))
    };
    result(practice, false, detail, fix)
}
