//! Creating the instance: [`CreateOptions`] with the security practices as
//! defaults, and the parameter group that requires TLS.

use aws_sdk_rds::types::{ApplyMethod, Parameter};

use super::validation::{invalid, validate_group_id, validate_identifier, validate_name};
use super::{
    DEFAULT_ALLOCATED_STORAGE_GB, DEFAULT_DB_NAME, DEFAULT_ENGINE_VERSION, DEFAULT_IDENTIFIER,
    DEFAULT_INSTANCE_CLASS, DEFAULT_MASTER_USERNAME, DEFAULT_PORT, DEFAULT_STORAGE_TYPE, ENGINE,
    FORCE_SSL_PARAMETER, InstanceStatus, MAX_BACKUP_RETENTION_DAYS, MIN_BACKUP_RETENTION_DAYS,
    PERFORMANCE_INSIGHTS_RETENTION_DAYS,
};
use crate::error::{Error, Remedy, Result};
use crate::{Aws, sdk_error};

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
