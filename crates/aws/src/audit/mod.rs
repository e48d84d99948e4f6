//! `rds audit`: the 15 security practices of the original list, each
//! checked through an API (PASS or FAIL with a fix, or UNKNOWN with the
//! reason it cannot be told) or, where a practice is not a setting,
//! stated as information with the reason. Checked for the instance, its
//! account, and each of its read replicas.
//!
//! | # | practice of the original list | reported as |
//! |---|---|---|
//! | 1 | a region where the data may be stored | [`Practice::RegionAllowed`] |
//! | 2 | the master user name and database name | [`Practice::MasterUserAndDatabase`] (information) |
//! | 3 | encryption at rest | [`Practice::StorageEncrypted`] |
//! | 4 | endpoint and port in the URL | [`Practice::EndpointAndPort`] (information) |
//! | 5 | not publicly accessible | [`Practice::NotPubliclyAccessible`] |
//! | 6 | a security group admitting known sources | [`Practice::SecurityGroupNotOpenToWorld`] |
//! | 7 | deletion protection | [`Practice::DeletionProtection`] |
//! | 8 | Multi-AZ for production | [`Practice::MultiAzForProduction`] |
//! | 9 | delete (after a snapshot) a database not in use | [`Practice::InUse`], [`Practice::BackupRetention`], [`Practice::Snapshots`] |
//! | 10 | SCPs: production changes, region lock, encryption | [`Practice::ScpProtectsProduction`], [`Practice::ScpRegionLock`], [`Practice::ScpRequiresEncryption`] |
//! | 11 | GuardDuty | [`Practice::GuardDutyEnabled`] |
//! | 12 | CloudTrail | [`Practice::CloudTrailLogging`] |
//! | 13 | appropriate authentication | [`Practice::IamAuthentication`] |
//! | 14 | encryption in transit | [`Practice::TlsRequired`] |
//! | 15 | master password in Secrets Manager, rotated | [`Practice::ManagedMasterSecret`], [`Practice::SecretRotation`] |

use std::fmt;

use aws_sdk_guardduty::types::DetectorStatus;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::rds::{FORCE_SSL_PARAMETER, InstanceStatus, MIN_BACKUP_RETENTION_DAYS, instance_status};
use super::{Aws, scp, sdk_error};
use crate::error::{Error, Result};

/// The idle window of [`Practice::InUse`] by default: 14 days.
pub const DEFAULT_IDLE_DAYS: u32 = 14;

/// The rotation schedule `audit --fix` sets: every 7 days (RDS's default
/// for a managed master secret).
pub const ROTATION_DAYS: i64 = 7;

/// One practice, checked or stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Practice {
    /// The instance is in one of the regions the data may be stored in.
    RegionAllowed,
    /// Information: the master user and database the URL names.
    MasterUserAndDatabase,
    /// Storage is encrypted at rest.
    StorageEncrypted,
    /// Information: the endpoint and port the URL names.
    EndpointAndPort,
    /// The instance is not publicly accessible.
    NotPubliclyAccessible,
    /// No security group admits the whole internet on the database port.
    SecurityGroupNotOpenToWorld,
    /// Deletion protection is on.
    DeletionProtection,
    /// A production instance is Multi-AZ.
    MultiAzForProduction,
    /// The instance had connections within the idle window (CloudWatch's
    /// `DatabaseConnections`); an unused one should be snapshotted and deleted.
    InUse,
    /// Automated backups are kept at least 7 days.
    BackupRetention,
    /// At least one manual snapshot of the instance is available (automated
    /// ones are deleted with the instance).
    Snapshots,
    /// An SCP denies deleting and modifying the production instance.
    ScpProtectsProduction,
    /// An SCP denies requests outside the allowed regions.
    ScpRegionLock,
    /// An SCP denies creating unencrypted instances.
    ScpRequiresEncryption,
    /// A GuardDuty detector is enabled.
    GuardDutyEnabled,
    /// A CloudTrail trail is logging.
    CloudTrailLogging,
    /// IAM database authentication is enabled.
    IamAuthentication,
    /// The parameter group requires TLS (`rds.force_ssl = 1`).
    TlsRequired,
    /// The master password is managed by Secrets Manager.
    ManagedMasterSecret,
    /// The master secret's rotation is on and ran within its schedule.
    SecretRotation,
}

impl Practice {
    /// Every practice, in the order of the original list, as `audit`
    /// reports them for the audited instance.
    pub const ALL: [Practice; 20] = [
        Practice::RegionAllowed,
        Practice::MasterUserAndDatabase,
        Practice::StorageEncrypted,
        Practice::EndpointAndPort,
        Practice::NotPubliclyAccessible,
        Practice::SecurityGroupNotOpenToWorld,
        Practice::DeletionProtection,
        Practice::MultiAzForProduction,
        Practice::InUse,
        Practice::BackupRetention,
        Practice::Snapshots,
        Practice::ScpProtectsProduction,
        Practice::ScpRegionLock,
        Practice::ScpRequiresEncryption,
        Practice::GuardDutyEnabled,
        Practice::CloudTrailLogging,
        Practice::IamAuthentication,
        Practice::TlsRequired,
        Practice::ManagedMasterSecret,
        Practice::SecretRotation,
    ];

    /// The practice's short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Practice::RegionAllowed => "region-allowed",
            Practice::MasterUserAndDatabase => "master-user-and-database",
            Practice::StorageEncrypted => "storage-encrypted",
            Practice::EndpointAndPort => "endpoint-and-port",
            Practice::NotPubliclyAccessible => "not-publicly-accessible",
            Practice::SecurityGroupNotOpenToWorld => "security-group-not-open-to-world",
            Practice::DeletionProtection => "deletion-protection",
            Practice::MultiAzForProduction => "multi-az-for-production",
            Practice::InUse => "in-use",
            Practice::BackupRetention => "backup-retention",
            Practice::Snapshots => "snapshots",
            Practice::ScpProtectsProduction => "scp-protects-production",
            Practice::ScpRegionLock => "scp-region-lock",
            Practice::ScpRequiresEncryption => "scp-requires-encryption",
            Practice::GuardDutyEnabled => "guardduty-enabled",
            Practice::CloudTrailLogging => "cloudtrail-logging",
            Practice::IamAuthentication => "iam-authentication",
            Practice::TlsRequired => "tls-required",
            Practice::ManagedMasterSecret => "managed-master-secret",
            Practice::SecretRotation => "secret-rotation",
        }
    }

    /// The number of the practice in the original list (1 to 15).
    pub fn item(self) -> u8 {
        match self {
            Practice::RegionAllowed => 1,
            Practice::MasterUserAndDatabase => 2,
            Practice::StorageEncrypted => 3,
            Practice::EndpointAndPort => 4,
            Practice::NotPubliclyAccessible => 5,
            Practice::SecurityGroupNotOpenToWorld => 6,
            Practice::DeletionProtection => 7,
            Practice::MultiAzForProduction => 8,
            Practice::InUse | Practice::BackupRetention | Practice::Snapshots => 9,
            Practice::ScpProtectsProduction
            | Practice::ScpRegionLock
            | Practice::ScpRequiresEncryption => 10,
            Practice::GuardDutyEnabled => 11,
            Practice::CloudTrailLogging => 12,
            Practice::IamAuthentication => 13,
            Practice::TlsRequired => 14,
            Practice::ManagedMasterSecret | Practice::SecretRotation => 15,
        }
    }

    /// Whether the practice is checked on a read replica. Backups,
    /// snapshots, Multi-AZ, authentication and the master secret belong to
    /// the source (RDS creates replicas without backups, and a replica's
    /// users and passwords are the source's); the account-wide practices
    /// are checked once.
    pub fn applies_to_replica(self) -> bool {
        matches!(
            self,
            Practice::RegionAllowed
                | Practice::StorageEncrypted
                | Practice::NotPubliclyAccessible
                | Practice::SecurityGroupNotOpenToWorld
                | Practice::DeletionProtection
                | Practice::TlsRequired
        )
    }

    /// Whether the practice is about the account rather than an instance
    /// (reported once, with no instance).
    pub fn account_wide(self) -> bool {
        matches!(
            self,
            Practice::ScpProtectsProduction
                | Practice::ScpRegionLock
                | Practice::ScpRequiresEncryption
                | Practice::GuardDutyEnabled
                | Practice::CloudTrailLogging
        )
    }
}

impl fmt::Display for Practice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Verified to follow the practice.
    Pass,
    /// Verified not to follow it; the result says how to fix it.
    Fail,
    /// Could not be told (an API that cannot be read, data that is
    /// missing); the result says why and what would tell.
    Unknown,
    /// Not a setting that can be checked: how the tool keeps the practice.
    Info,
}

impl Outcome {
    /// As printed: `PASS`, `FAIL`, `UNKNOWN`, `INFO`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Unknown => "UNKNOWN",
            Outcome::Info => "INFO",
        }
    }
}

/// A fix `audit --fix` may apply: safe, and undone by one call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AutoFix {
    /// Take a manual snapshot of the instance.
    CreateSnapshot {
        /// The instance.
        identifier: String,
    },
    /// Create (or enable) a GuardDuty detector in the region.
    EnableGuardDuty,
    /// Turn deletion protection on.
    EnableDeletionProtection {
        /// The instance.
        identifier: String,
    },
    /// Make the production instance Multi-AZ.
    EnableMultiAz {
        /// The instance.
        identifier: String,
    },
    /// Turn on rotation of the master secret, every [`ROTATION_DAYS`] days,
    /// without rotating at once.
    EnableRotation {
        /// The secret.
        secret_arn: String,
    },
}

impl fmt::Display for AutoFix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutoFix::CreateSnapshot { identifier } => write!(
                f,
                "take a manual snapshot of {identifier} (storage is billed; undo: delete the snapshot)"
            ),
            AutoFix::EnableGuardDuty => f.write_str(
                "enable a GuardDuty detector in this region (billed by volume analysed, 30 days \
                 free; undo: aws guardduty delete-detector)",
            ),
            AutoFix::EnableDeletionProtection { identifier } => write!(
                f,
                "turn deletion protection on for {identifier} (free; undo: modify-db-instance \
                 --no-deletion-protection)"
            ),
            AutoFix::EnableMultiAz { identifier } => write!(
                f,
                "make {identifier} Multi-AZ (doubles the instance's cost; no downtime; undo: \
                 modify-db-instance --no-multi-az)"
            ),
            AutoFix::EnableRotation { secret_arn } => write!(
                f,
                "rotate {secret_arn} every {ROTATION_DAYS} days, starting at the next window \
                 (each rotation changes the master password, and so the connection URL \
                 stored with it; undo: aws secretsmanager cancel-rotation)"
            ),
        }
    }
}

impl AutoFix {
    /// What to do after the fix takes effect, when anything: a rotation
    /// changes the master password, so a stored connection URL must be
    /// built again.
    pub fn afterwards(&self) -> Option<Operation> {
        match self {
            AutoFix::EnableRotation { .. } => Some(Operation::StoreUrlAgain),
            AutoFix::CreateSnapshot { .. }
            | AutoFix::EnableGuardDuty
            | AutoFix::EnableDeletionProtection { .. }
            | AutoFix::EnableMultiAz { .. } => None,
        }
    }
}

/// One of the toolkit's own operations, with its parameters, as a step of
/// a [`Fix`]. The toolkit does not name commands: a front end such as the
/// CLI words each as one of its own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Operation {
    /// Take a manual snapshot of the instance ([`crate::create_snapshot`]).
    Snapshot {
        /// The instance.
        identifier: String,
    },
    /// Delete the instance ([`crate::delete_instance`]), which takes a
    /// final snapshot.
    Delete {
        /// The instance.
        identifier: String,
    },
    /// Point the inbound rule at this machine's public address
    /// ([`crate::allow_ip`]).
    AllowIp {
        /// The security group.
        group_id: String,
        /// The rule to change.
        rule_id: String,
    },
    /// Write the SCP that keeps practice 10 for the instance
    /// ([`crate::scp::template`]), for the allowed regions.
    ScpTemplate {
        /// The production instance.
        identifier: String,
    },
    /// Audit again, naming the regions the data may be stored in
    /// ([`AuditOptions::allowed_regions`]).
    NameAllowedRegions,
    /// Audit again with a shorter idle window ([`AuditOptions::idle_days`]).
    ShorterIdleWindow,
    /// Audit again, reading Organizations with the credentials of the
    /// management account or a delegated administrator
    /// ([`crate::JsonApiClient::with_credentials`]).
    OrganizationsCredentials,
    /// Build and store the connection URL again ([`crate::production_url`]).
    StoreUrlAgain,
}

impl fmt::Display for Operation {
    /// The operation in words, naming no command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Snapshot { identifier } => {
                write!(f, "take a manual snapshot of {identifier}")
            }
            Operation::Delete { identifier } => write!(f, "delete {identifier}"),
            Operation::AllowIp { group_id, rule_id } => write!(
                f,
                "point rule {rule_id} of {group_id} at this machine's public address"
            ),
            Operation::ScpTemplate { identifier } => write!(
                f,
                "write the SCP template for {identifier} and the allowed regions to scp.json"
            ),
            Operation::NameAllowedRegions => f.write_str("name the allowed regions"),
            Operation::ShorterIdleWindow => f.write_str("audit with a shorter idle window"),
            Operation::OrganizationsCredentials => {
                f.write_str("read Organizations with that account's credentials")
            }
            Operation::StoreUrlAgain => f.write_str("store the connection URL again"),
        }
    }
}

/// One part of a [`Fix`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixPart {
    /// Words, or a command of AWS's own CLI (`aws rds ...`), shown as they
    /// are.
    Text(String),
    /// One of the toolkit's operations, for the front end to word.
    Operation(Operation),
}

/// How to fix a failure, or what would tell an unknown: text with the
/// toolkit's [`Operation`]s between its parts. Empty for a pass or
/// information. [`Fix::render`] words it with a front end's commands;
/// `Display` words the operations without naming any.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Fix(Vec<FixPart>);

impl Fix {
    /// A fix that is words only.
    pub fn text(text: impl Into<String>) -> Self {
        Self(Vec::new()).then_text(text)
    }

    /// A fix that starts with an operation.
    pub fn operation(operation: Operation) -> Self {
        Self(Vec::new()).then(operation)
    }

    /// This fix, then `text` (empty text adds nothing).
    pub fn then_text(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        if !text.is_empty() {
            self.0.push(FixPart::Text(text));
        }
        self
    }

    /// This fix, then `operation`.
    pub fn then(mut self, operation: Operation) -> Self {
        self.0.push(FixPart::Operation(operation));
        self
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[FixPart] {
        &self.0
    }

    /// The toolkit operations the fix names, in order.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.0.iter().filter_map(|p| match p {
            FixPart::Operation(o) => Some(o),
            FixPart::Text(_) => None,
        })
    }

    /// The fix as one text, each operation worded by `word` (a front end's
    /// command for it).
    pub fn render(&self, mut word: impl FnMut(&Operation) -> String) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                FixPart::Text(t) => out.push_str(t),
                FixPart::Operation(o) => out.push_str(&word(o)),
            }
        }
        out
    }
}

impl From<&str> for Fix {
    fn from(text: &str) -> Self {
        Fix::text(text)
    }
}

impl From<String> for Fix {
    fn from(text: String) -> Self {
        Fix::text(text)
    }
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(ToString::to_string))
    }
}

/// The outcome of one practice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PracticeResult {
    /// Which practice.
    pub practice: Practice,
    /// Its number in the original list.
    pub item: u8,
    /// The instance it is about; `None` for the account-wide practices.
    pub instance: Option<String>,
    /// What was found.
    pub outcome: Outcome,
    /// What was found, in words.
    pub detail: String,
    /// How to fix a failure, or what would tell an unknown (empty for a
    /// pass or information).
    pub fix: Fix,
    /// The fix `audit --fix` can apply, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_fix: Option<AutoFix>,
}

impl PracticeResult {
    /// Whether the practice passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

fn outcome(practice: Practice, outcome: Outcome, detail: String, fix: Fix) -> PracticeResult {
    PracticeResult {
        practice,
        item: practice.item(),
        instance: None,
        outcome,
        detail,
        fix: match outcome {
            Outcome::Fail | Outcome::Unknown => fix,
            Outcome::Pass | Outcome::Info => Fix::default(),
        },
        auto_fix: None,
    }
}

fn result(practice: Practice, pass: bool, detail: String, fix: impl Into<Fix>) -> PracticeResult {
    let o = if pass { Outcome::Pass } else { Outcome::Fail };
    outcome(practice, o, detail, fix.into())
}

fn unknown(practice: Practice, detail: String, hint: impl Into<Fix>) -> PracticeResult {
    outcome(practice, Outcome::Unknown, detail, hint.into())
}

fn info(practice: Practice, detail: String) -> PracticeResult {
    outcome(practice, Outcome::Info, detail, Fix::default())
}

/// How to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Audit as production: Multi-AZ is required (default false).
    pub production: bool,
    /// The regions the data may be stored in; empty (the default): not
    /// stated, and [`Practice::RegionAllowed`] is unknown.
    pub allowed_regions: Vec<String>,
    /// The window of [`Practice::InUse`], in days (default
    /// [`DEFAULT_IDLE_DAYS`]).
    pub idle_days: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            production: false,
            allowed_regions: Vec::new(),
            idle_days: DEFAULT_IDLE_DAYS,
        }
    }
}

/// Checks the instance `identifier` and its account against every
/// [`Practice`], in [`Practice::ALL`]'s order, then each of its read
/// replicas against the practices that [apply to a
/// replica](Practice::applies_to_replica); each result names its instance.
/// An instance that is itself a replica is checked as a replica (with the
/// account's practices). A check whose API call fails (for example for lack
/// of permission) is [`Outcome::Unknown`] and says so; only a failure to
/// describe `identifier` is an error.
pub async fn audit(
    aws: &Aws,
    identifier: &str,
    options: &AuditOptions,
) -> Result<Vec<PracticeResult>> {
    let db = instance_status(aws, identifier).await?;
    let mut out = instance_results(aws, &db, options, options.production).await;
    out.extend(account_results(aws, &db, options).await);
    out.sort_by_key(|r| Practice::ALL.iter().position(|p| *p == r.practice));
    for replica in &db.read_replicas {
        out.extend(replica_results(aws, replica, options).await);
    }
    Ok(out)
}

/// A replica's results; when it cannot be described, each of its practices
/// is unknown, with the reason.
async fn replica_results(
    aws: &Aws,
    identifier: &str,
    options: &AuditOptions,
) -> Vec<PracticeResult> {
    match instance_status(aws, identifier).await {
        Ok(db) => instance_results(aws, &db, options, false).await,
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
async fn instance_results(
    aws: &Aws,
    db: &InstanceStatus,
    options: &AuditOptions,
    production: bool,
) -> Vec<PracticeResult> {
    let replica = db.replica_of.is_some();
    let mut out = Vec::with_capacity(Practice::ALL.len());
    for practice in Practice::ALL {
        if practice.account_wide() || (replica && !practice.applies_to_replica()) {
            continue;
        }
        let r = check(aws, db, practice, options, production).await;
        out.push(PracticeResult {
            instance: Some(db.identifier.clone()),
            ..r
        });
    }
    out
}

/// The account-wide practices: the SCPs (one reading of Organizations for
/// the three), GuardDuty, CloudTrail.
async fn account_results(
    aws: &Aws,
    db: &InstanceStatus,
    options: &AuditOptions,
) -> Vec<PracticeResult> {
    let mut out = scps(aws, db, options).await;
    out.push(guardduty(aws).await);
    out.push(cloudtrail(aws).await);
    out
}

async fn check(
    aws: &Aws,
    db: &InstanceStatus,
    practice: Practice,
    options: &AuditOptions,
    production: bool,
) -> PracticeResult {
    let identifier = &db.identifier;
    let modify = format!("aws rds modify-db-instance --db-instance-identifier {identifier}");
    let mut r = match practice {
        Practice::RegionAllowed => region_allowed(aws, db, &options.allowed_regions),
        Practice::MasterUserAndDatabase => info(
            practice,
            format!(
                "master user {}, database {}: the connection URL is built with both as the \
                 instance reports them, so it names what the instance has",
                db.master_username.as_deref().unwrap_or("-"),
                db.db_name.as_deref().unwrap_or("-")
            ),
        ),
        Practice::StorageEncrypted => result(
            practice,
            db.storage_encrypted,
            format!("storage encrypted: {}", db.storage_encrypted),
            "encryption cannot be switched on in place: snapshot, copy the snapshot with \
             --kms-key-id, restore from the copy",
        ),
        Practice::EndpointAndPort => info(
            practice,
            format!(
                "endpoint {}:{}: parts of the connection URL, which is built from the \
                 instance; nothing to configure",
                db.endpoint.as_deref().unwrap_or("(none yet)"),
                db.port.map_or_else(|| "-".to_owned(), |p| p.to_string())
            ),
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
        Practice::InUse => in_use(aws, db, options.idle_days).await,
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
        Practice::IamAuthentication => result(
            practice,
            db.iam_auth,
            format!("IAM database authentication: {}", db.iam_auth),
            format!(
                "{modify} --enable-iam-database-authentication --apply-immediately, then \
                 `GRANT rds_iam TO app_user` and connect with tokens from `aws rds \
                 generate-db-auth-token`. Cost: no charge; no restart; a token lasts 15 \
                 minutes, so pooled connections must be re-authenticated, and AWS advises \
                 it below about 200 new connections a second; password logins keep working"
            ),
        ),
        Practice::ManagedMasterSecret => match &db.master_user_secret_arn {
            Some(arn) => result(
                practice,
                true,
                format!("master password kept by Secrets Manager: {arn}"),
                "",
            ),
            None => result(
                practice,
                false,
                "the master password is not managed by Secrets Manager".into(),
                format!("{modify} --manage-master-user-password --apply-immediately"),
            ),
        },
        Practice::SecretRotation => secret_rotation(aws, db, &modify).await,
        Practice::TlsRequired => tls_required(aws, db).await,
        Practice::ScpProtectsProduction
        | Practice::ScpRegionLock
        | Practice::ScpRequiresEncryption
        | Practice::GuardDutyEnabled
        | Practice::CloudTrailLogging => {
            unreachable!("account-wide practices are checked by account_results")
        }
    };
    if r.outcome == Outcome::Fail && r.auto_fix.is_none() {
        let id = identifier.clone();
        r.auto_fix = match practice {
            Practice::Snapshots => Some(AutoFix::CreateSnapshot { identifier: id }),
            Practice::DeletionProtection => {
                Some(AutoFix::EnableDeletionProtection { identifier: id })
            }
            Practice::MultiAzForProduction => Some(AutoFix::EnableMultiAz { identifier: id }),
            _ => None,
        };
    }
    r
}

fn cannot_check(practice: Practice, err: &Error, hint: impl Into<Fix>) -> PracticeResult {
    unknown(practice, format!("cannot check: {err}"), hint)
}

/// Practice 1: the instance's region (from its ARN) is an allowed one.
fn region_allowed(aws: &Aws, db: &InstanceStatus, allowed: &[String]) -> PracticeResult {
    let practice = Practice::RegionAllowed;
    let region = db.region().unwrap_or(&aws.region);
    if allowed.is_empty() {
        return unknown(
            practice,
            format!("the instance is in {region}; no allowed regions were given"),
            Fix::text("name the regions the data may be stored in: ")
                .then(Operation::NameAllowedRegions),
        );
    }
    result(
        practice,
        allowed.iter().any(|r| r == region),
        format!(
            "the instance is in {region}; allowed: {}",
            allowed.join(", ")
        ),
        format!(
            "move it: snapshot, `aws rds copy-db-snapshot --source-region {region} --region \
             ALLOWED ...`, restore in the allowed region, then delete {}",
            db.identifier
        ),
    )
}

/// Practice 9: whether CloudWatch's `DatabaseConnections` shows any
/// connection within the last `days` days (daily maxima).
async fn in_use(aws: &Aws, db: &InstanceStatus, days: u32) -> PracticeResult {
    let practice = Practice::InUse;
    let id = &db.identifier;
    let period = 86_400_i64;
    let end = Utc::now().timestamp();
    let start = end - i64::from(days) * period;
    let input = json!({
        "Namespace": "AWS/RDS",
        "MetricName": "DatabaseConnections",
        "Dimensions": [{ "Name": "DBInstanceIdentifier", "Value": id }],
        "StartTime": start,
        "EndTime": end,
        "Period": period,
        "Statistics": ["Maximum"],
    });
    let answer = match aws.cloudwatch.call("GetMetricStatistics", &input).await {
        Ok(a) => a,
        Err(e) => return cannot_check(practice, &e, "grant cloudwatch:GetMetricStatistics"),
    };
    let points: Vec<(f64, f64)> = answer
        .get("Datapoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get("Timestamp")?.as_f64()?, p.get("Maximum")?.as_f64()?)))
        .collect();
    let (o, detail) = judge_use(&points, start, period, days);
    let fix = match o {
        Outcome::Fail => Fix::text("snapshot and delete: ")
            .then(Operation::Snapshot {
                identifier: id.clone(),
            })
            .then_text(format!(
                "; aws rds modify-db-instance --db-instance-identifier {id} \
                 --no-deletion-protection --apply-immediately; "
            ))
            .then(Operation::Delete {
                identifier: id.clone(),
            })
            .then_text(" (restore from the snapshot when it is needed again)"),
        _ => Fix::text(format!(
            "audit again once the instance has {days} days of metrics, or "
        ))
        .then(Operation::ShorterIdleWindow)
        .then_text(format!(
            "; or `aws cloudwatch get-metric-statistics --namespace AWS/RDS \
             --metric-name DatabaseConnections --dimensions Name=DBInstanceIdentifier,Value={id} ...`"
        )),
    };
    outcome(practice, o, detail, fix)
}

/// The idle verdict on daily `(timestamp, maximum)` points of a window of
/// `days` days from `start`: any connection passes; no data is unknown; all
/// zero fails only when the data reaches back to the window's first day
/// (an instance younger than the window is not yet idle).
fn judge_use(points: &[(f64, f64)], start: i64, period: i64, days: u32) -> (Outcome, String) {
    let when = |t: f64| {
        DateTime::<Utc>::from_timestamp(t as i64, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d").to_string())
    };
    if let Some((t, max)) = points
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, m)| *m > 0.0)
    {
        return (
            Outcome::Pass,
            format!(
                "up to {max} connections within the last {days} days (most on {})",
                when(t)
            ),
        );
    }
    let Some(earliest) = points.iter().map(|p| p.0).reduce(f64::min) else {
        return (
            Outcome::Unknown,
            format!(
                "CloudWatch has no DatabaseConnections data for the last {days} days (a \
                 stopped or new instance publishes none)"
            ),
        );
    };
    if earliest > (start + period) as f64 {
        return (
            Outcome::Unknown,
            format!(
                "no connections, but data only since {}: less than the {days}-day window",
                when(earliest)
            ),
        );
    }
    (
        Outcome::Fail,
        format!(
            "no connections in the last {days} days ({} daily data points, all 0)",
            points.len()
        ),
    )
}

/// Practice 15, second half: the master secret's rotation is on and its
/// last rotation is within the schedule.
async fn secret_rotation(aws: &Aws, db: &InstanceStatus, modify: &str) -> PracticeResult {
    let practice = Practice::SecretRotation;
    let Some(arn) = &db.master_user_secret_arn else {
        return result(
            practice,
            false,
            "no managed master secret to rotate".into(),
            format!("{modify} --manage-master-user-password --apply-immediately"),
        );
    };
    let fix = format!(
        "aws secretsmanager rotate-secret --secret-id {arn} --rotation-rules \
         AutomaticallyAfterDays={ROTATION_DAYS}"
    );
    let secret = match aws.secrets.describe_secret().secret_id(arn).send().await {
        Ok(s) => s,
        Err(e) => {
            return cannot_check(
                practice,
                &sdk_error("DescribeSecret", e),
                "grant secretsmanager:DescribeSecret",
            );
        }
    };
    let date = |d: Option<&aws_sdk_secretsmanager::primitives::DateTime>| {
        d.and_then(|d| DateTime::<Utc>::from_timestamp(d.secs(), 0))
    };
    let rules = secret.rotation_rules();
    let schedule = Schedule {
        days: rules.and_then(|r| r.automatically_after_days()),
        expression: rules
            .and_then(|r| r.schedule_expression())
            .map(str::to_owned),
    };
    let (o, detail) = judge_rotation(
        secret.rotation_enabled() == Some(true),
        &schedule,
        date(secret.last_rotated_date()),
        date(secret.created_date()),
        Utc::now(),
    );
    let mut r = outcome(practice, o, format!("{detail} ({arn})"), fix.into());
    if o == Outcome::Fail && secret.rotation_enabled() != Some(true) {
        r.auto_fix = Some(AutoFix::EnableRotation {
            secret_arn: arn.clone(),
        });
    }
    r
}

/// A secret's rotation schedule, as Secrets Manager reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Schedule {
    days: Option<i64>,
    expression: Option<String>,
}

impl Schedule {
    /// The rotation period in hours: `AutomaticallyAfterDays`, or a
    /// `rate(N days)` / `rate(N hours)` expression; `None` for a cron
    /// expression, which is not read.
    fn hours(&self) -> Option<i64> {
        if let Some(d) = self.days.filter(|d| *d > 0) {
            return Some(d * 24);
        }
        let inner = self
            .expression
            .as_deref()?
            .trim()
            .strip_prefix("rate(")?
            .strip_suffix(')')?;
        let (n, unit) = inner.trim().split_once(' ')?;
        let n: i64 = n.parse().ok()?;
        match unit.trim() {
            "day" | "days" => Some(n * 24),
            "hour" | "hours" => Some(n),
            _ => None,
        }
    }
}

/// The rotation verdict. The last rotation (or, before the first, the
/// secret's creation) must be no older than the period plus one day, the
/// longest a rotation window may run.
fn judge_rotation(
    enabled: bool,
    schedule: &Schedule,
    last_rotated: Option<DateTime<Utc>>,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Outcome, String) {
    if !enabled {
        return (Outcome::Fail, "rotation is off".into());
    }
    let Some(hours) = schedule.hours() else {
        return (
            Outcome::Unknown,
            format!(
                "rotation is on with the schedule {}, which is not read; last rotated {}",
                schedule.expression.as_deref().unwrap_or("(none)"),
                last_rotated.map_or_else(|| "never".to_owned(), |d| d.to_rfc3339())
            ),
        );
    };
    let every = if hours % 24 == 0 {
        format!("every {} days", hours / 24)
    } else {
        format!("every {hours} hours")
    };
    let (since, what) = match (last_rotated, created) {
        (Some(d), _) => (d, "last rotated"),
        (None, Some(d)) => (d, "never rotated; created"),
        (None, None) => {
            return (
                Outcome::Unknown,
                format!("rotation is on, {every}; Secrets Manager reports no dates"),
            );
        }
    };
    let age = now - since;
    let due = chrono::Duration::hours(hours + 24);
    let detail = format!(
        "rotation is on, {every}; {what} {} ({} hours ago)",
        since.format("%Y-%m-%d %H:%M UTC"),
        age.num_hours()
    );
    if age <= due {
        (Outcome::Pass, detail)
    } else {
        (Outcome::Fail, format!("{detail}: overdue"))
    }
}

/// Practice 10: the three SCP results from one reading of Organizations.
async fn scps(aws: &Aws, db: &InstanceStatus, options: &AuditOptions) -> Vec<PracticeResult> {
    let practices = [
        Practice::ScpProtectsProduction,
        Practice::ScpRegionLock,
        Practice::ScpRequiresEncryption,
    ];
    let all_unknown = |detail: String, hint: Fix| {
        practices
            .iter()
            .map(|p| unknown(*p, detail.clone(), hint.clone()))
            .collect::<Vec<_>>()
    };
    let (Some(arn), Some(account)) = (db.arn.as_deref(), db.account_id()) else {
        return all_unknown(
            "RDS reports no ARN for the instance, so its account is not known".into(),
            "describe the instance with rds:DescribeDBInstances".into(),
        );
    };
    let (policies, management) = match scp::effective_policies(aws, account).await {
        Ok(p) => p,
        Err(e) => {
            return all_unknown(
                format!("cannot read the organization's SCPs from this account: {e}"),
                Fix::text(
                    "audit with the management account's (or a delegated administrator's) \
                     credentials for Organizations: ",
                )
                .then(Operation::OrganizationsCredentials)
                .then_text(
                    "; it needs organizations:DescribeOrganization, ListParents, \
                     ListPoliciesForTarget and DescribePolicy",
                ),
            );
        }
    };
    let template = Fix::operation(Operation::ScpTemplate {
        identifier: db.identifier.clone(),
    })
    .then_text(format!(
        "; aws organizations create-policy --type SERVICE_CONTROL_POLICY --name \
         cruddur-rds-guard --description 'cruddur RDS guard' --content file://scp.json; aws \
         organizations attach-policy --policy-id POLICY_ID --target-id {account}"
    ));
    if management {
        return practices
            .iter()
            .map(|p| {
                result(
                    *p,
                    false,
                    format!(
                        "account {account} is the organization's management account, to which \
                         SCPs never apply"
                    ),
                    "run production in a member account of the organization",
                )
            })
            .collect();
    }
    let j = scp::judge(
        &policies,
        scp::Instance {
            arn,
            tags: &db.tags,
        },
        &options.allowed_regions,
    );
    practices
        .iter()
        .zip([j.protects_production, j.region_lock, j.requires_encryption])
        .map(|(p, verdict)| match verdict {
            Ok(detail) => result(*p, true, detail, ""),
            Err(detail) => result(*p, false, detail, template.clone()),
        })
        .collect()
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
            Fix::operation(Operation::AllowIp {
                group_id: group.clone(),
                rule_id: rule.clone(),
            }),
        ),
    }
}

async fn snapshots(aws: &Aws, identifier: &str) -> PracticeResult {
    let practice = Practice::Snapshots;
    let fix = Fix::operation(Operation::Snapshot {
        identifier: identifier.to_owned(),
    });
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
            Err(e) => return cannot_check(practice, &sdk_error("DescribeDBSnapshots", e), fix),
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
                return cannot_check(practice, &err, fix);
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
    PracticeResult {
        auto_fix: Some(AutoFix::EnableGuardDuty),
        ..result(practice, false, detail, fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_needs_a_whole_window_of_zeros() {
        let day = 86_400;
        let start = 1_000_000;
        let cases: [(&[(f64, f64)], Outcome); 5] = [
            (&[], Outcome::Unknown),
            (
                &[((start + day) as f64, 0.0), ((start + 5 * day) as f64, 2.0)],
                Outcome::Pass,
            ),
            (
                &[
                    ((start + 100) as f64, 0.0),
                    ((start + 13 * day) as f64, 0.0),
                ],
                Outcome::Fail,
            ),
            // Data from the third day on only: younger than the window.
            (&[((start + 3 * day) as f64, 0.0)], Outcome::Unknown),
            (&[((start + 3 * day) as f64, 1.0)], Outcome::Pass),
        ];
        for (points, want) in cases {
            let (got, detail) = judge_use(points, start, day, 14);
            assert_eq!(got, want, "{points:?}: {detail}");
        }
    }

    #[test]
    fn rotation_must_be_on_and_recent() {
        let now = DateTime::<Utc>::from_timestamp(2_000_000_000, 0).unwrap();
        let days_ago = |d: i64| Some(now - chrono::Duration::days(d));
        let weekly = Schedule {
            days: Some(7),
            expression: None,
        };
        let rate = Schedule {
            days: None,
            expression: Some("rate(4 hours)".into()),
        };
        let cron = Schedule {
            days: None,
            expression: Some("cron(0 16 1,15 * ? *)".into()),
        };
        let cases = [
            (
                "off",
                false,
                &weekly,
                days_ago(1),
                days_ago(30),
                Outcome::Fail,
            ),
            (
                "on time",
                true,
                &weekly,
                days_ago(3),
                days_ago(30),
                Outcome::Pass,
            ),
            (
                "a day late is a window",
                true,
                &weekly,
                days_ago(8),
                None,
                Outcome::Pass,
            ),
            (
                "overdue",
                true,
                &weekly,
                days_ago(9),
                days_ago(30),
                Outcome::Fail,
            ),
            (
                "new, not yet due",
                true,
                &weekly,
                None,
                days_ago(2),
                Outcome::Pass,
            ),
            (
                "never rotated",
                true,
                &weekly,
                None,
                days_ago(20),
                Outcome::Fail,
            ),
            ("hourly rate", true, &rate, days_ago(2), None, Outcome::Fail),
            (
                "cron is not read",
                true,
                &cron,
                days_ago(1),
                None,
                Outcome::Unknown,
            ),
            ("no dates", true, &weekly, None, None, Outcome::Unknown),
        ];
        for (name, enabled, schedule, last, created, want) in cases {
            let (got, detail) = judge_rotation(enabled, schedule, last, created, now);
            assert_eq!(got, want, "{name}: {detail}");
        }
    }

    #[test]
    fn every_item_of_the_original_list_is_reported() {
        let mut items: Vec<u8> = Practice::ALL.iter().map(|p| p.item()).collect();
        assert!(
            items.is_sorted(),
            "ALL follows the original list: {items:?}"
        );
        items.dedup();
        assert_eq!(items, (1..=15).collect::<Vec<u8>>());
    }
}
