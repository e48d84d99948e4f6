//! The RDS instance's lifecycle: create, status, allow-ip, url, snapshot,
//! delete. Read replicas are in [`crate::replica`].

use std::fmt;
use std::net::IpAddr;

use aws_sdk_rds::types::{ApplyMethod, DbInstance, Parameter};

use super::address::{parse_single_address, single_address_cidr};
use super::ec2::{IngressRule, SecurityGroupRule};
use super::{Aws, sdk_error};
use crate::error::{Error, Remedy, Result};
use cruddur_db::DatabaseUrl;

/// The original's instance identifier.
pub const DEFAULT_IDENTIFIER: &str = "cruddur-db-instance";
/// The original's instance class.
pub const DEFAULT_INSTANCE_CLASS: &str = "db.t3.micro";
/// The engine (PostgreSQL).
pub const ENGINE: &str = "postgres";
/// The default engine version: major 16, which RDS resolves to its current
/// minor version. The original asked for 14.6, a minor version RDS no longer
/// offers for new instances; `--engine-version 14.6` is still passed through.
pub const DEFAULT_ENGINE_VERSION: &str = "16";
/// The original's storage size, in GiB.
pub const DEFAULT_ALLOCATED_STORAGE_GB: i32 = 20;
/// The original's storage type.
pub const DEFAULT_STORAGE_TYPE: &str = "gp2";
/// The original's database name.
pub const DEFAULT_DB_NAME: &str = "cruddur";
/// The original's port.
pub const DEFAULT_PORT: u16 = 5432;
/// The master user's name (the original left it as `<change>`).
pub const DEFAULT_MASTER_USERNAME: &str = "cruddurroot";
/// Automated backups are kept at least this many days (the original kept none).
pub const MIN_BACKUP_RETENTION_DAYS: i32 = 7;
/// The longest automated-backup retention RDS allows, in days.
pub const MAX_BACKUP_RETENTION_DAYS: i32 = 35;
/// Performance Insights retention, in days (the free tier, as the original).
pub const PERFORMANCE_INSIGHTS_RETENTION_DAYS: i32 = 7;
/// The parameter that makes PostgreSQL on RDS refuse connections without TLS.
pub const FORCE_SSL_PARAMETER: &str = "rds.force_ssl";

/// What `create_instance` creates. [`Default`] gives the original's values
/// with the security practices switched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Instance identifier (default [`DEFAULT_IDENTIFIER`]).
    pub identifier: String,
    /// Instance class (default [`DEFAULT_INSTANCE_CLASS`]).
    pub instance_class: String,
    /// PostgreSQL version (default [`DEFAULT_ENGINE_VERSION`]).
    pub engine_version: String,
    /// Storage in GiB (default [`DEFAULT_ALLOCATED_STORAGE_GB`]).
    pub allocated_storage_gb: i32,
    /// Storage type (default [`DEFAULT_STORAGE_TYPE`]).
    pub storage_type: String,
    /// The database created on the instance (default [`DEFAULT_DB_NAME`]).
    pub db_name: String,
    /// Port (default [`DEFAULT_PORT`]).
    pub port: u16,
    /// Master user name (default [`DEFAULT_MASTER_USERNAME`]); its password
    /// is generated and kept by Secrets Manager, never given here.
    pub master_username: String,
    /// Automated backup retention in days (default and minimum
    /// [`MIN_BACKUP_RETENTION_DAYS`]).
    pub backup_retention_days: i32,
    /// A production instance: Multi-AZ (default false).
    pub production: bool,
    /// Publicly accessible (default false). Requires `security_group_ids`
    /// whose inbound rules for the port admit single addresses only.
    pub public: bool,
    /// VPC security groups (default: the VPC's default group).
    pub security_group_ids: Vec<String>,
    /// Parameter group to use; it is created when missing, and gets
    /// `rds.force_ssl = 1` (default `cruddur-postgres<major>`).
    pub parameter_group: Option<String>,
    /// Availability zone (default: chosen by RDS; not with `production`).
    pub availability_zone: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            identifier: DEFAULT_IDENTIFIER.into(),
            instance_class: DEFAULT_INSTANCE_CLASS.into(),
            engine_version: DEFAULT_ENGINE_VERSION.into(),
            allocated_storage_gb: DEFAULT_ALLOCATED_STORAGE_GB,
            storage_type: DEFAULT_STORAGE_TYPE.into(),
            db_name: DEFAULT_DB_NAME.into(),
            port: DEFAULT_PORT,
            master_username: DEFAULT_MASTER_USERNAME.into(),
            backup_retention_days: MIN_BACKUP_RETENTION_DAYS,
            production: false,
            public: false,
            security_group_ids: Vec::new(),
            parameter_group: None,
            availability_zone: None,
        }
    }
}

impl CreateOptions {
    /// The parameter group family of the engine version (`postgres16`).
    pub fn parameter_group_family(&self) -> String {
        let major = self
            .engine_version
            .split('.')
            .next()
            .unwrap_or(&self.engine_version);
        format!("{ENGINE}{major}")
    }

    /// The parameter group the instance gets.
    pub fn parameter_group_name(&self) -> String {
        self.parameter_group
            .clone()
            .unwrap_or_else(|| format!("cruddur-{}", self.parameter_group_family()))
    }

    /// Checks every value before anything is sent to AWS.
    pub fn validate(&self) -> Result<()> {
        validate_identifier("instance identifier", &self.identifier, 63)?;
        validate_name("master user name", &self.master_username)?;
        if self.master_username.eq_ignore_ascii_case("rdsadmin") {
            return Err(invalid(
                "master user name",
                &self.master_username,
                "reserved by RDS",
            ));
        }
        validate_name("database name", &self.db_name)?;
        if self.port < 1150 {
            return Err(invalid(
                "port",
                &self.port.to_string(),
                "RDS for PostgreSQL accepts ports 1150 to 65535",
            ));
        }
        if !(20..=65536).contains(&self.allocated_storage_gb) {
            return Err(invalid(
                "allocated storage",
                &self.allocated_storage_gb.to_string(),
                "gp2 storage for PostgreSQL is 20 to 65536 GiB",
            ));
        }
        if !(MIN_BACKUP_RETENTION_DAYS..=MAX_BACKUP_RETENTION_DAYS)
            .contains(&self.backup_retention_days)
        {
            return Err(Error::Refused {
                action: format!("keep backups {} days", self.backup_retention_days),
                reason: format!(
                    "retention must be {MIN_BACKUP_RETENTION_DAYS} to {MAX_BACKUP_RETENTION_DAYS} days"
                ),
                remedy: None,
            });
        }
        if self.production && self.availability_zone.is_some() {
            return Err(invalid(
                "availability zone",
                self.availability_zone.as_deref().unwrap_or_default(),
                "a Multi-AZ (production) instance cannot be pinned to one zone",
            ));
        }
        if self.engine_version.is_empty()
            || !self
                .engine_version
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.')
        {
            return Err(invalid(
                "engine version",
                &self.engine_version,
                "expected e.g. 16 or 14.6",
            ));
        }
        for group in &self.security_group_ids {
            validate_group_id(group)?;
        }
        if let Some(group) = &self.parameter_group {
            if group.starts_with("default.") {
                return Err(invalid(
                    "parameter group",
                    group,
                    "RDS's default groups cannot be changed to require TLS; name a group of your own",
                ));
            }
            validate_identifier("parameter group", group, 255)?;
        }
        if self.public && self.security_group_ids.is_empty() {
            return Err(Error::Refused {
                action: "create a publicly accessible instance".into(),
                reason: "no security group given; a publicly accessible instance needs one \
                         whose inbound rule for the port admits one address"
                    .into(),
                remedy: Some(Remedy::NameASecurityGroup),
            });
        }
        Ok(())
    }
}

/// The result of [`create_instance`].
#[derive(Debug, Clone)]
pub struct CreatedInstance {
    /// The instance as RDS reported it right after the request.
    pub instance: InstanceStatus,
    /// The parameter group (with `rds.force_ssl = 1`).
    pub parameter_group: String,
    /// Whether that parameter group was created now.
    pub parameter_group_created: bool,
    /// The Performance Insights retention that was requested, in days.
    pub performance_insights_retention_days: i32,
}

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

/// Creates the instance with `options` (see [`CreateOptions`] for the
/// defaults): storage encrypted, deletion protection on, the master
/// password generated and kept by Secrets Manager, backups kept, Performance
/// Insights for 7 days, TLS required through the parameter group, Multi-AZ
/// for production, and not publicly accessible unless `public` is set and
/// every security group admits single addresses only on the port.
pub async fn create_instance(aws: &Aws, options: &CreateOptions) -> Result<CreatedInstance> {
    options.validate()?;
    if options.public {
        check_groups_restricted(aws, &options.security_group_ids, options.port).await?;
    }
    let parameter_group = options.parameter_group_name();
    let parameter_group_created =
        ensure_tls_parameter_group(aws, &parameter_group, &options.parameter_group_family())
            .await?;

    let mut request = aws
        .rds
        .create_db_instance()
        .db_instance_identifier(&options.identifier)
        .db_instance_class(&options.instance_class)
        .engine(ENGINE)
        .engine_version(&options.engine_version)
        .master_username(&options.master_username)
        .manage_master_user_password(true)
        .allocated_storage(options.allocated_storage_gb)
        .storage_type(&options.storage_type)
        .db_name(&options.db_name)
        .port(i32::from(options.port))
        .storage_encrypted(true)
        .publicly_accessible(options.public)
        .deletion_protection(true)
        .backup_retention_period(options.backup_retention_days)
        .enable_performance_insights(true)
        .performance_insights_retention_period(PERFORMANCE_INSIGHTS_RETENTION_DAYS)
        .multi_az(options.production)
        .copy_tags_to_snapshot(true)
        .auto_minor_version_upgrade(true)
        .db_parameter_group_name(&parameter_group);
    if !options.security_group_ids.is_empty() {
        request = request.set_vpc_security_group_ids(Some(options.security_group_ids.clone()));
    }
    if let Some(zone) = &options.availability_zone {
        request = request.availability_zone(zone);
    }
    let output = request
        .send()
        .await
        .map_err(|e| sdk_error("CreateDBInstance", e))?;
    let instance = output.db_instance().ok_or_else(|| Error::Api {
        source: None,
        operation: "CreateDBInstance".into(),
        code: None,
        message: "the answer describes no instance".into(),
    })?;
    Ok(CreatedInstance {
        instance: InstanceStatus::from_sdk(instance),
        parameter_group,
        parameter_group_created,
        performance_insights_retention_days: PERFORMANCE_INSIGHTS_RETENTION_DAYS,
    })
}

/// Refuses unless every inbound rule that reaches `port` in `groups` admits
/// a single address (`/32`, `/128`) or another security group, and at least
/// one admits a single address.
pub(crate) async fn check_groups_restricted(aws: &Aws, groups: &[String], port: u16) -> Result<()> {
    let mut single = 0;
    let mut wide = Vec::new();
    for group in groups {
        for rule in aws.ec2.describe_security_group_rules(group).await? {
            if rule.is_egress || !rule.covers_tcp_port(port) {
                continue;
            }
            if rule.single_address() {
                single += 1;
            } else if rule.referenced_group_id.is_none() {
                wide.push(format!(
                    "{} in {} admits {}",
                    rule.rule_id,
                    group,
                    rule.source()
                ));
            }
        }
    }
    if !wide.is_empty() {
        return Err(Error::Refused {
            action: "create a publicly accessible instance".into(),
            reason: format!(
                "security group rules for port {port} admit more than one address: {}",
                wide.join("; ")
            ),
            remedy: Some(Remedy::PointRulesAtOneAddress),
        });
    }
    if single == 0 {
        return Err(Error::Refused {
            action: "create a publicly accessible instance".into(),
            reason: format!(
                "no inbound rule of {} admits a single address on port {port}",
                groups.join(", ")
            ),
            remedy: Some(Remedy::AddARuleForOneAddress),
        });
    }
    Ok(())
}

/// Makes sure `name` exists and has `rds.force_ssl = 1`; true when created.
async fn ensure_tls_parameter_group(aws: &Aws, name: &str, family: &str) -> Result<bool> {
    let existing = aws
        .rds
        .describe_db_parameter_groups()
        .db_parameter_group_name(name)
        .send()
        .await;
    let exists = match existing {
        Ok(found) => found
            .db_parameter_groups()
            .iter()
            .any(|g| g.db_parameter_group_name() == Some(name)),
        Err(e) => {
            let err = sdk_error("DescribeDBParameterGroups", e);
            if !matches!(&err, Error::Api { code: Some(c), .. } if c == "DBParameterGroupNotFound")
            {
                return Err(err);
            }
            false
        }
    };
    if !exists {
        aws.rds
            .create_db_parameter_group()
            .db_parameter_group_name(name)
            .db_parameter_group_family(family)
            .description("cruddur-db: PostgreSQL with TLS required (rds.force_ssl = 1)")
            .send()
            .await
            .map_err(|e| sdk_error("CreateDBParameterGroup", e))?;
    }
    aws.rds
        .modify_db_parameter_group()
        .db_parameter_group_name(name)
        .parameters(
            Parameter::builder()
                .parameter_name(FORCE_SSL_PARAMETER)
                .parameter_value("1")
                .apply_method(ApplyMethod::PendingReboot)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("ModifyDBParameterGroup", e))?;
    Ok(!exists)
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

/// What [`allow_ip`] is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowIp {
    /// The security group (`sg-...`).
    pub group_id: String,
    /// The rule to change (`sgr-...`), which must hold a block of the
    /// address's family; when `None`, the group's one inbound rule for the
    /// port of that family is changed, or a rule is added when there is none.
    pub rule_id: Option<String>,
    /// The one address to admit.
    pub address: IpAddr,
    /// The database port (default [`DEFAULT_PORT`]).
    pub port: u16,
    /// The rule's description.
    pub description: Option<String>,
}

/// What [`allow_ip`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AllowIpOutcome {
    /// The security group.
    pub group_id: String,
    /// The rule now admitting the address.
    pub rule_id: String,
    /// The admitted block (`/32` or `/128`).
    pub cidr: String,
    /// What the rule admitted before, when it existed.
    pub previous_source: Option<String>,
    /// Whether the rule was added rather than changed.
    pub created: bool,
}

/// Points the inbound rule for the database port at exactly one address
/// (the original `rds-update-sg-rule`), then reads the rule back to confirm.
pub async fn allow_ip(aws: &Aws, request: &AllowIp) -> Result<AllowIpOutcome> {
    validate_group_id(&request.group_id)?;
    if let Some(rule) = &request.rule_id {
        validate_prefixed_id("security group rule id", rule, "sgr-")?;
    }
    // The address is re-checked here so that a caller cannot hand in
    // 0.0.0.0 or :: through the typed field.
    let address = parse_single_address(&request.address.to_string())?;
    let cidr = single_address_cidr(address);
    let rule = IngressRule {
        port: request.port,
        cidr: cidr.clone(),
        description: request.description.clone(),
    };
    let rules = aws
        .ec2
        .describe_security_group_rules(&request.group_id)
        .await?;
    // IPv4 and IPv6 rules are kept apart: a rule is only ever moved to an
    // address of its own family, and a dual-stack machine gets one of each.
    let same_family = |r: &SecurityGroupRule| match address {
        IpAddr::V4(_) => r.cidr_ipv4.is_some(),
        IpAddr::V6(_) => r.cidr_ipv6.is_some(),
    };
    let target: Option<&SecurityGroupRule> = match &request.rule_id {
        Some(id) => {
            let existing = rules
                .iter()
                .find(|r| &r.rule_id == id && !r.is_egress)
                .ok_or_else(|| Error::InvalidInput {
                    what: "security group rule id",
                    input: id.clone(),
                    reason: format!("no inbound rule with that id in {}", request.group_id),
                    remedy: None,
                })?;
            if !same_family(existing) {
                return Err(Error::InvalidInput {
                    what: "security group rule id",
                    input: id.clone(),
                    reason: format!(
                        "the rule admits {}, not an {} block; name no rule to add one for {}",
                        existing.source(),
                        if address.is_ipv4() { "IPv4" } else { "IPv6" },
                        cidr
                    ),
                    remedy: Some(Remedy::OmitTheRule),
                });
            }
            Some(existing)
        }
        None => {
            let candidates: Vec<&SecurityGroupRule> = rules
                .iter()
                .filter(|r| {
                    !r.is_egress
                        && r.protocol == "tcp"
                        && r.from_port == i32::from(request.port)
                        && r.to_port == i32::from(request.port)
                        && same_family(r)
                })
                .collect();
            match candidates.as_slice() {
                [] => None,
                [one] => Some(*one),
                many => {
                    return Err(Error::InvalidInput {
                        what: "security group",
                        input: request.group_id.clone(),
                        reason: format!(
                            "it has {} inbound rules for port {}; name one of them ({})",
                            many.len(),
                            request.port,
                            many.iter()
                                .map(|r| format!("{} {}", r.rule_id, r.source()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        remedy: Some(Remedy::NameARule),
                    });
                }
            }
        }
    };
    let (rule_id, previous_source, created) = match target {
        Some(existing) => {
            aws.ec2
                .modify_ingress_rule(&request.group_id, &existing.rule_id, &rule)
                .await?;
            (existing.rule_id.clone(), Some(existing.source()), false)
        }
        None => {
            let id = aws
                .ec2
                .authorize_ingress_rule(&request.group_id, &rule)
                .await?;
            (id, None, true)
        }
    };
    let after = aws
        .ec2
        .describe_security_group_rules(&request.group_id)
        .await?;
    let confirmed = after.iter().any(|r| {
        r.rule_id == rule_id
            && r.covers_tcp_port(request.port)
            && (r.cidr_ipv4.as_deref() == Some(&cidr) || r.cidr_ipv6.as_deref() == Some(&cidr))
    });
    if !confirmed {
        return Err(Error::Api {
            source: None,
            operation: "DescribeSecurityGroupRules".into(),
            code: None,
            message: format!("rule {rule_id} does not admit {cidr} after the change"),
        });
    }
    Ok(AllowIpOutcome {
        group_id: request.group_id.clone(),
        rule_id,
        cidr,
        previous_source,
        created,
    })
}

/// The production connection URL and where its parts came from.
#[derive(Debug, Clone)]
pub struct ProductionUrl {
    /// The URL; its `Display` hides the password.
    pub url: DatabaseUrl,
    /// The instance whose endpoint the URL names.
    pub identifier: String,
    /// The secret the credentials came from.
    pub secret_arn: String,
    /// For a read replica, its source, whose secret and database it uses.
    pub replica_of: Option<String>,
}

#[derive(serde::Deserialize)]
struct MasterSecret {
    username: String,
    password: String,
}

/// Builds `postgresql://USER:PASSWORD@ENDPOINT:PORT/DB?sslmode=verify-full&sslrootcert=...`
/// from the instance's endpoint and its Secrets Manager master secret
/// (`{"username", "password"}`). `sslrootcert` is the path of the RDS CA
/// bundle (`global-bundle.pem`), written into the URL as given. A read
/// replica is refused: its URL is [`replica_url`](crate::replica::replica_url).
pub async fn production_url(
    aws: &Aws,
    identifier: &str,
    sslrootcert: &str,
) -> Result<ProductionUrl> {
    let status = instance_status(aws, identifier).await?;
    if let Some(source) = &status.replica_of {
        return Err(Error::Refused {
            action: format!("build a primary URL for `{identifier}`"),
            reason: format!(
                "it is a read replica of `{source}`, whose credentials it shares, and has a \
                 replica's URL"
            ),
            remedy: Some(Remedy::ReplicaUrl {
                identifier: identifier.to_owned(),
            }),
        });
    }
    url_with_credentials_of(aws, &status, &status, sslrootcert).await
}

/// The URL of `endpoint`'s address with the master credentials and the
/// database of `owner` (the same instance, or a replica's source).
pub(crate) async fn url_with_credentials_of(
    aws: &Aws,
    endpoint: &InstanceStatus,
    owner: &InstanceStatus,
    sslrootcert: &str,
) -> Result<ProductionUrl> {
    let identifier = &endpoint.identifier;
    let host = endpoint.endpoint.clone().ok_or_else(|| Error::Api {
        source: None,
        operation: "DescribeDBInstances".into(),
        code: None,
        message: format!(
            "instance `{identifier}` is {} and has no endpoint yet; retry when it is available",
            endpoint.status
        ),
    })?;
    let port = endpoint.port.unwrap_or(i32::from(DEFAULT_PORT));
    let secret_arn = owner
        .master_user_secret_arn
        .clone()
        .ok_or_else(|| Error::Refused {
            action: format!("build a URL for `{identifier}`"),
            reason: format!(
                "the master password of `{}` is not managed by Secrets Manager; turn that on \
                 with `aws rds modify-db-instance --db-instance-identifier {} \
                 --manage-master-user-password --apply-immediately`",
                owner.identifier, owner.identifier
            ),
            remedy: None,
        })?;
    let secret = master_secret(aws, &secret_arn).await?;
    let database = owner.db_name.clone().unwrap_or_else(|| "postgres".into());
    let port = port.to_string();
    let url = DatabaseUrl::from_params(&[
        ("host", &host),
        ("port", &port),
        ("user", &secret.username),
        ("password", &secret.password),
        ("dbname", &database),
        ("sslmode", "verify-full"),
        ("sslrootcert", sslrootcert),
    ])?;
    Ok(ProductionUrl {
        url,
        identifier: identifier.clone(),
        secret_arn,
        replica_of: (endpoint.identifier != owner.identifier).then(|| owner.identifier.clone()),
    })
}

async fn master_secret(aws: &Aws, secret_arn: &str) -> Result<MasterSecret> {
    let value = aws
        .secrets
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| sdk_error("GetSecretValue", e))?;
    let text = value.secret_string().ok_or_else(|| Error::Api {
        source: None,
        operation: "GetSecretValue".into(),
        code: None,
        message: format!("secret {secret_arn} has no string value"),
    })?;
    // The parse error is not shown: it could quote the secret.
    serde_json::from_str(text).map_err(|_| Error::Api {
        source: None,
        operation: "GetSecretValue".into(),
        code: None,
        message: format!("secret {secret_arn} is not JSON with `username` and `password`"),
    })
}

/// A manual snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Snapshot identifier.
    pub snapshot_id: String,
    /// The instance it is of.
    pub identifier: String,
    /// RDS status (`creating`, `available`).
    pub status: String,
}

/// Takes a manual snapshot of `identifier`, named `snapshot_id` or
/// `<identifier>-<UTC yyyymmdd-hhmmss>`.
pub async fn create_snapshot(
    aws: &Aws,
    identifier: &str,
    snapshot_id: Option<&str>,
) -> Result<Snapshot> {
    validate_identifier("instance identifier", identifier, 63)?;
    let snapshot_id = snapshot_id.map_or_else(|| default_snapshot_id(identifier), str::to_owned);
    validate_identifier("snapshot identifier", &snapshot_id, 255)?;
    let output = aws
        .rds
        .create_db_snapshot()
        .db_instance_identifier(identifier)
        .db_snapshot_identifier(&snapshot_id)
        .send()
        .await
        .map_err(|e| sdk_error("CreateDBSnapshot", e))?;
    let status = output
        .db_snapshot()
        .and_then(|s| s.status())
        .unwrap_or("unknown")
        .to_owned();
    Ok(Snapshot {
        snapshot_id,
        identifier: identifier.to_owned(),
        status,
    })
}

fn default_snapshot_id(identifier: &str) -> String {
    format!(
        "{identifier}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    )
}

/// What [`delete_instance`] is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOptions {
    /// The instance.
    pub identifier: String,
    /// Delete without a final snapshot (default false: one is taken).
    pub skip_final_snapshot: bool,
    /// The final snapshot's name (default `<identifier>-final-<UTC time>`).
    pub final_snapshot_id: Option<String>,
}

/// What [`delete_instance`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeletedInstance {
    /// The instance.
    pub identifier: String,
    /// RDS status after the request (`deleting`).
    pub status: String,
    /// The final snapshot, unless skipped.
    pub final_snapshot_id: Option<String>,
}

/// Deletes the instance, taking a final snapshot unless told not to.
/// Refused while deletion protection is on; automated backups are kept.
pub async fn delete_instance(aws: &Aws, options: &DeleteOptions) -> Result<DeletedInstance> {
    let status = instance_status(aws, &options.identifier).await?;
    if status.deletion_protection {
        return Err(Error::Refused {
            action: format!("delete `{}`", options.identifier),
            reason: format!(
                "deletion protection is on; if the instance really must go, turn it off first: \
                 aws rds modify-db-instance --db-instance-identifier {} --no-deletion-protection \
                 --apply-immediately",
                options.identifier
            ),
            remedy: None,
        });
    }
    let final_snapshot_id = if options.skip_final_snapshot {
        None
    } else {
        let id = options.final_snapshot_id.clone().unwrap_or_else(|| {
            format!(
                "{}-final-{}",
                options.identifier,
                chrono::Utc::now().format("%Y%m%d-%H%M%S")
            )
        });
        validate_identifier("snapshot identifier", &id, 255)?;
        Some(id)
    };
    let output = aws
        .rds
        .delete_db_instance()
        .db_instance_identifier(&options.identifier)
        .skip_final_snapshot(options.skip_final_snapshot)
        .set_final_db_snapshot_identifier(final_snapshot_id.clone())
        .delete_automated_backups(false)
        .send()
        .await
        .map_err(|e| sdk_error("DeleteDBInstance", e))?;
    Ok(DeletedInstance {
        identifier: options.identifier.clone(),
        status: output
            .db_instance()
            .and_then(|d| d.db_instance_status())
            .unwrap_or("deleting")
            .to_owned(),
        final_snapshot_id,
    })
}

pub(crate) fn invalid(what: &'static str, input: &str, reason: &str) -> Error {
    Error::InvalidInput {
        what,
        input: input.chars().take(80).collect(),
        reason: reason.to_owned(),
        remedy: None,
    }
}

/// RDS identifiers: a letter, then letters, digits and single hyphens, no
/// trailing hyphen, at most `max` characters.
pub(crate) fn validate_identifier(what: &'static str, id: &str, max: usize) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            id,
            &format!(
                "use 1 to {max} letters, digits and single hyphens, starting with a letter and not ending with a hyphen"
            ),
        ))
    }
}

/// PostgreSQL user and database names as RDS accepts them.
fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            name,
            "use 1 to 63 letters, digits and underscores, starting with a letter",
        ))
    }
}

pub(crate) fn validate_group_id(id: &str) -> Result<()> {
    validate_prefixed_id("security group id", id, "sg-")
}

fn validate_prefixed_id(what: &'static str, id: &str, prefix: &str) -> Result<()> {
    match id.strip_prefix(prefix) {
        Some(rest) if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()) => Ok(()),
        _ => Err(invalid(
            what,
            id,
            &format!("expected `{prefix}` followed by letters and digits"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_original_with_practices_on() {
        let o = CreateOptions::default();
        assert_eq!(o.identifier, "cruddur-db-instance");
        assert_eq!(o.instance_class, "db.t3.micro");
        assert_eq!(
            (o.allocated_storage_gb, o.storage_type.as_str()),
            (20, "gp2")
        );
        assert_eq!((o.db_name.as_str(), o.port), ("cruddur", 5432));
        assert!(o.backup_retention_days >= 7 && !o.public && !o.production);
        assert_eq!(o.parameter_group_name(), "cruddur-postgres16");
        o.validate().unwrap();
    }

    #[test]
    fn refuses_bad_options() {
        let cases: Vec<(&str, CreateOptions)> = vec![
            (
                "identifier",
                CreateOptions {
                    identifier: "1db".into(),
                    ..Default::default()
                },
            ),
            (
                "identifier",
                CreateOptions {
                    identifier: "db--x".into(),
                    ..Default::default()
                },
            ),
            (
                "user",
                CreateOptions {
                    master_username: "rdsadmin".into(),
                    ..Default::default()
                },
            ),
            (
                "user",
                CreateOptions {
                    master_username: "a b".into(),
                    ..Default::default()
                },
            ),
            (
                "backup",
                CreateOptions {
                    backup_retention_days: 0,
                    ..Default::default()
                },
            ),
            (
                "port",
                CreateOptions {
                    port: 80,
                    ..Default::default()
                },
            ),
            (
                "public",
                CreateOptions {
                    public: true,
                    ..Default::default()
                },
            ),
            (
                "az",
                CreateOptions {
                    production: true,
                    availability_zone: Some("us-east-1a".into()),
                    ..Default::default()
                },
            ),
            (
                "group",
                CreateOptions {
                    security_group_ids: vec!["default".into()],
                    ..Default::default()
                },
            ),
            (
                "parameter group",
                CreateOptions {
                    parameter_group: Some("default.postgres16".into()),
                    ..Default::default()
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
}
