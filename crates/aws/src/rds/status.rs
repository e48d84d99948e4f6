//! What an instance is: [`InstanceStatus`], its endpoint, status and every
//! security-relevant attribute, as RDS describes it.

use std::fmt;

use aws_sdk_rds::types::DbInstance;

use super::validation::validate_identifier;
use crate::error::{Error, Result};
use crate::{Aws, sdk_error};

/// Endpoint, status and the security-relevant attributes of an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceStatus {
    /// Instance identifier.
    pub identifier: String,
    /// RDS status (`creating`, `available`, ...).
    pub status: String,
    /// Host name of the endpoint, once there is one.
    pub endpoint: Option<String>,
    /// Port.
    pub port: Option<i32>,
    /// Engine.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// Instance class.
    pub instance_class: String,
    /// Storage in GiB.
    pub allocated_storage_gb: Option<i32>,
    /// Storage type.
    pub storage_type: Option<String>,
    /// Database created on the instance.
    pub db_name: Option<String>,
    /// Master user name.
    pub master_username: Option<String>,
    /// Storage encryption at rest.
    pub storage_encrypted: bool,
    /// Reachable from the internet (subject to the security groups).
    pub publicly_accessible: bool,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// A standby in a second availability zone.
    pub multi_az: bool,
    /// Automated backup retention in days (0: none).
    pub backup_retention_days: i32,
    /// Performance Insights, when RDS reports it.
    pub performance_insights_enabled: Option<bool>,
    /// Performance Insights retention in days, when RDS reports it.
    pub performance_insights_retention_days: Option<i32>,
    /// ARN of the Secrets Manager secret holding the master password.
    pub master_user_secret_arn: Option<String>,
    /// VPC security groups.
    pub security_group_ids: Vec<String>,
    /// Parameter groups.
    pub parameter_groups: Vec<String>,
    /// The CA the server certificate is issued by.
    pub ca_certificate: Option<String>,
    /// IAM database authentication.
    pub iam_auth: bool,
    /// The instance this one is a read replica of (`None`: not a replica).
    pub replica_of: Option<String>,
    /// This instance's read replicas, sorted, each named once.
    pub read_replicas: Vec<String>,
    /// The instance's ARN (`arn:aws:rds:REGION:ACCOUNT:db:ID`).
    pub arn: Option<String>,
    /// The instance's tags, as key and value.
    pub tags: Vec<(String, String)>,
}

impl InstanceStatus {
    /// Reads an SDK `DBInstance`.
    pub fn from_sdk(db: &DbInstance) -> Self {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Self {
            identifier: db.db_instance_identifier().unwrap_or_default().to_owned(),
            status: db.db_instance_status().unwrap_or("unknown").to_owned(),
            endpoint: db.endpoint().and_then(|e| s(e.address())),
            port: db
                .endpoint()
                .and_then(|e| e.port())
                .or(db.db_instance_port()),
            engine: db.engine().unwrap_or_default().to_owned(),
            engine_version: db.engine_version().unwrap_or_default().to_owned(),
            instance_class: db.db_instance_class().unwrap_or_default().to_owned(),
            allocated_storage_gb: db.allocated_storage(),
            storage_type: s(db.storage_type()),
            db_name: s(db.db_name()),
            master_username: s(db.master_username()),
            storage_encrypted: db.storage_encrypted().unwrap_or(false),
            publicly_accessible: db.publicly_accessible().unwrap_or(false),
            deletion_protection: db.deletion_protection().unwrap_or(false),
            multi_az: db.multi_az().unwrap_or(false),
            backup_retention_days: db.backup_retention_period().unwrap_or(0),
            performance_insights_enabled: db.performance_insights_enabled(),
            performance_insights_retention_days: db.performance_insights_retention_period(),
            master_user_secret_arn: db.master_user_secret().and_then(|m| s(m.secret_arn())),
            security_group_ids: db
                .vpc_security_groups()
                .iter()
                .filter_map(|g| s(g.vpc_security_group_id()))
                .collect(),
            parameter_groups: db
                .db_parameter_groups()
                .iter()
                .filter_map(|g| s(g.db_parameter_group_name()))
                .collect(),
            ca_certificate: s(db.ca_certificate_identifier()),
            iam_auth: db.iam_database_authentication_enabled().unwrap_or(false),
            replica_of: s(db.read_replica_source_db_instance_identifier()),
            read_replicas: {
                // Sorted and deduplicated: emulators may repeat a name.
                let mut ids = db.read_replica_db_instance_identifiers().to_vec();
                ids.sort();
                ids.dedup();
                ids
            },
            arn: s(db.db_instance_arn()),
            tags: db
                .tag_list()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
        }
    }

    /// The account the instance belongs to, from its ARN.
    pub fn account_id(&self) -> Option<&str> {
        self.arn
            .as_deref()?
            .split(':')
            .nth(4)
            .filter(|a| !a.is_empty())
    }

    /// The region the instance is in, from its ARN.
    pub fn region(&self) -> Option<&str> {
        self.arn
            .as_deref()?
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
    }

    /// The major engine version as a number (`16` for `16.4`).
    pub fn engine_major(&self) -> Option<u32> {
        self.engine_version.split('.').next()?.parse().ok()
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let opt_i = |v: Option<i32>| v.map_or_else(|| "-".into(), |n| n.to_string());
        let pi = match (
            self.performance_insights_enabled,
            self.performance_insights_retention_days,
        ) {
            (Some(true), Some(days)) => format!("on, {days} days"),
            (Some(true), None) => "on".into(),
            (Some(false), _) => "off".into(),
            (None, _) => "not reported".into(),
        };
        let rows: [(&str, String); 22] = [
            ("identifier", self.identifier.clone()),
            ("status", self.status.clone()),
            ("endpoint", opt(&self.endpoint)),
            ("port", opt_i(self.port)),
            ("engine", format!("{} {}", self.engine, self.engine_version)),
            ("class", self.instance_class.clone()),
            (
                "storage",
                format!(
                    "{} GiB {}",
                    opt_i(self.allocated_storage_gb),
                    opt(&self.storage_type)
                ),
            ),
            ("database", opt(&self.db_name)),
            ("master user", opt(&self.master_username)),
            ("storage encrypted", yes_no(self.storage_encrypted).into()),
            (
                "publicly accessible",
                yes_no(self.publicly_accessible).into(),
            ),
            (
                "deletion protection",
                yes_no(self.deletion_protection).into(),
            ),
            ("multi-az", yes_no(self.multi_az).into()),
            (
                "backup retention",
                format!("{} days", self.backup_retention_days),
            ),
            ("performance insights", pi),
            (
                "master secret",
                self.master_user_secret_arn
                    .clone()
                    .unwrap_or_else(|| "none (password not managed)".into()),
            ),
            ("security groups", self.security_group_ids.join(", ")),
            ("parameter groups", self.parameter_groups.join(", ")),
            ("ca certificate", opt(&self.ca_certificate)),
            ("iam auth", yes_no(self.iam_auth).into()),
            ("replica of", opt(&self.replica_of)),
            (
                "read replicas",
                if self.read_replicas.is_empty() {
                    "none".into()
                } else {
                    self.read_replicas.join(", ")
                },
            ),
        ];
        for (name, value) in rows {
            writeln!(f, "{name:<21} {value}")?;
        }
        Ok(())
    }
}

/// Describes the instance `identifier`.
pub async fn instance_status(aws: &Aws, identifier: &str) -> Result<InstanceStatus> {
    describe_instance(aws, identifier)
        .await
        .map(|db| InstanceStatus::from_sdk(&db))
}

/// The SDK's description of the instance `identifier`; a missing instance
/// is an [`Error::Api`] with the code `DBInstanceNotFound`.
pub(crate) async fn describe_instance(aws: &Aws, identifier: &str) -> Result<DbInstance> {
    validate_identifier("instance identifier", identifier, 63)?;
    let output = aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeDBInstances", e))?;
    output
        .db_instances()
        .first()
        .cloned()
        .ok_or_else(|| Error::Api {
            source: None,
            operation: "DescribeDBInstances".into(),
            code: Some("DBInstanceNotFound".into()),
            message: format!("no instance `{identifier}`"),
        })
}

/// Whether `err` says that an instance does not exist.
pub(crate) fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::Api { code: Some(c), .. } if c == "DBInstanceNotFound")
}
