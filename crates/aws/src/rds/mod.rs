//! The RDS instance's lifecycle: create, status, allow-ip, url, snapshot,
//! delete. Read replicas are in [`crate::replica`].

mod create;
mod network;
mod snapshot;
mod status;
mod url;
mod validation;

pub(crate) use create::check_groups_restricted;
pub use create::{CreateOptions, CreatedInstance, create_instance};
pub use network::{AllowIp, AllowIpOutcome, allow_ip};
pub use snapshot::{DeleteOptions, DeletedInstance, Snapshot, create_snapshot, delete_instance};
pub use status::{InstanceStatus, instance_status};
pub(crate) use status::{describe_instance, is_not_found};
pub(crate) use url::url_with_credentials_of;
pub use url::{ProductionUrl, production_url};
pub(crate) use validation::{invalid, validate_group_id, validate_identifier};

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
