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
//! | 14 | encryption in transit | [`Practice::TlsRequired`], and for each RDS Proxy in front of the instance [`Practice::ProxyRequiresTls`] |
//! | 15 | master password in Secrets Manager, rotated | [`Practice::ManagedMasterSecret`], [`Practice::SecretRotation`] |

use std::fmt;

use super::Aws;
use super::rds::{InstanceStatus, instance_status};
use crate::error::{Error, Result};

mod account;
mod fixes;
mod instance;
mod rotation;
mod usage;

use account::{cloudtrail, guardduty, scps};
pub use fixes::{AutoFix, Fix, FixPart, Operation};
use instance::check;
pub(crate) use instance::tls_required;

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
    /// An RDS Proxy in front of the instance requires TLS from its clients
    /// (`RequireTLS`): the instance's own requirement does not reach
    /// clients of the proxy. Checked for each proxy with the instance among
    /// its targets, not in [`Practice::ALL`].
    ProxyRequiresTls,
    /// The master password is managed by Secrets Manager.
    ManagedMasterSecret,
    /// The master secret's rotation is on and ran within its schedule.
    SecretRotation,
}

impl Practice {
    /// Every practice of an instance and its account, in the order of the
    /// original list, as `audit` reports them for the audited instance
    /// (each proxy's are [`Practice::PROXY`]).
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

    /// The practices checked for each RDS Proxy in front of the instance.
    pub const PROXY: [Practice; 1] = [Practice::ProxyRequiresTls];

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
            Practice::ProxyRequiresTls => "proxy-requires-tls",
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
            Practice::TlsRequired | Practice::ProxyRequiresTls => 14,
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

    /// Whether the practice is about an RDS Proxy (its result's
    /// [`instance`](PracticeResult::instance) names the proxy).
    pub fn about_a_proxy(self) -> bool {
        matches!(self, Practice::ProxyRequiresTls)
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

/// The outcome of one practice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PracticeResult {
    /// Which practice.
    pub practice: Practice,
    /// Its number in the original list.
    pub item: u8,
    /// The instance it is about (for a [proxy's](Practice::about_a_proxy)
    /// practice, the proxy); `None` for the account-wide practices.
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
/// account's practices). Last come the RDS Proxies with the instance among
/// their targets, each checked against [`Practice::PROXY`] (none: nothing
/// reported). A check whose API call fails (for example for lack
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
    out.extend(proxy_results(aws, &db.identifier).await);
    Ok(out)
}

/// The results of each RDS Proxy in front of `identifier`, each naming
/// the proxy; when the proxies cannot be listed, one unknown result says
/// why.
async fn proxy_results(aws: &Aws, identifier: &str) -> Vec<PracticeResult> {
    let practice = Practice::ProxyRequiresTls;
    let proxies = match crate::proxy::proxies_of(aws, identifier).await {
        Ok(proxies) => proxies,
        Err(e) => {
            return vec![cannot_check(
                practice,
                &e,
                "grant rds:DescribeDBProxies and rds:DescribeDBProxyTargets",
            )];
        }
    };
    proxies
        .into_iter()
        .map(|proxy| PracticeResult {
            instance: Some(proxy.name.clone()),
            ..result(
                practice,
                proxy.require_tls,
                format!(
                    "proxy {} in front of {identifier} requires TLS: {}",
                    proxy.name, proxy.require_tls
                ),
                format!(
                    "aws rds modify-db-proxy --db-proxy-name {} --require-tls (clients \
                     without TLS are refused from then on: connect with sslmode=verify-full)",
                    proxy.name
                ),
            )
        })
        .collect()
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

fn cannot_check(practice: Practice, err: &Error, hint: impl Into<Fix>) -> PracticeResult {
    unknown(practice, format!("cannot check: {err}"), hint)
}

#[cfg(test)]
mod tests {
    use super::*;

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
