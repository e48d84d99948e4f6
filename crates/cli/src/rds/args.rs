//! The `rds` command line: its clap types, whose doc comments are the help.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use cruddur_db_aws::rds::{
    DEFAULT_ALLOCATED_STORAGE_GB, DEFAULT_DB_NAME, DEFAULT_ENGINE_VERSION, DEFAULT_IDENTIFIER,
    DEFAULT_INSTANCE_CLASS, DEFAULT_MASTER_USERNAME, DEFAULT_PORT, DEFAULT_STORAGE_TYPE,
    MIN_BACKUP_RETENTION_DAYS,
};

/// The default "what is my IP" endpoint of `allow-ip --ip auto`.
pub const DEFAULT_IP_ENDPOINT: &str = "https://checkip.amazonaws.com";

/// Provision, inspect and audit the production database on AWS RDS.
///
/// Region and credentials come from the standard AWS chain (AWS_REGION,
/// AWS_PROFILE, ~/.aws/config, SSO, instance roles).
#[derive(Debug, Args)]
pub struct RdsArgs {
    /// One endpoint for every AWS service, EC2 included (default:
    /// AWS_ENDPOINT_URL, then the profile's endpoint_url, then AWS itself).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION, then the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Shared-config profile (default: AWS_PROFILE, then `default`).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: RdsCommand,
}

/// The `rds` subcommands.
#[derive(Debug, Subcommand)]
pub enum RdsCommand {
    /// Create the instance: encrypted, private, deletion-protected, master
    /// password in Secrets Manager, backups kept, TLS required.
    Create(CreateArgs),
    /// Create a read replica of the instance: encrypted like it, private,
    /// deletion-protected, TLS required (its parameter group), its security
    /// groups and tags; checked after creation.
    CreateReplica(CreateReplicaArgs),
    /// RDS Proxy, a transaction pooler in front of the instance (run the
    /// data layer behind it with CRUDDUR_POOLER=transaction).
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Show the endpoint, status and every security-relevant attribute.
    Status(InstanceArg),
    /// Point the security group's inbound rule for the database port at one
    /// address (the current public one by default).
    AllowIp(AllowIpArgs),
    /// Print (or store in .env) the production connection URL, built from
    /// the endpoint and the managed secret, with sslmode=verify-full; with
    /// --replica, the read replicas' URLs.
    Url(UrlArgs),
    /// Check the setup, its read replicas included, against the 15 security
    /// practices of the original list: each PASS, FAIL (with the fix) or
    /// UNKNOWN (with the reason), or INFO where a practice is not a setting;
    /// exits 1 on any FAIL (with --strict, also on UNKNOWN). --fix applies
    /// the safe, reversible fixes.
    Audit(AuditArgs),
    /// Print an SCP that keeps practice 10 for the instance: deleting and
    /// modifying it denied, every region but the allowed ones denied,
    /// unencrypted instances denied; for `aws organizations create-policy
    /// --content file://...`.
    ScpTemplate(ScpTemplateArgs),
    /// Take a manual snapshot.
    Snapshot(SnapshotArgs),
    /// Delete the instance (refused under deletion protection; takes a final
    /// snapshot unless --skip-final-snapshot).
    Delete(DeleteArgs),
}

/// Names the instance.
#[derive(Debug, Args)]
pub struct InstanceArg {
    /// Instance identifier.
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
}

/// `rds create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Instance identifier.
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// Instance class.
    #[arg(long, default_value = DEFAULT_INSTANCE_CLASS)]
    pub instance_class: String,
    /// PostgreSQL version (a major version picks RDS's current minor).
    #[arg(long, default_value = DEFAULT_ENGINE_VERSION)]
    pub engine_version: String,
    /// Storage in GiB.
    #[arg(long, default_value_t = DEFAULT_ALLOCATED_STORAGE_GB)]
    pub allocated_storage: i32,
    /// Storage type.
    #[arg(long, default_value = DEFAULT_STORAGE_TYPE)]
    pub storage_type: String,
    /// Database created on the instance.
    #[arg(long, default_value = DEFAULT_DB_NAME)]
    pub db_name: String,
    /// Port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Master user name. Its password is generated and kept by Secrets
    /// Manager; no password is ever taken on the command line.
    #[arg(long, default_value = DEFAULT_MASTER_USERNAME)]
    pub master_username: String,
    /// Always on; accepted for familiarity with `aws rds create-db-instance`.
    #[arg(long)]
    pub manage_master_user_password: bool,
    /// Days of automated backups (7 to 35).
    #[arg(long, default_value_t = MIN_BACKUP_RETENTION_DAYS)]
    pub backup_retention_days: i32,
    /// A production instance: Multi-AZ.
    #[arg(long)]
    pub production: bool,
    /// Make the instance publicly accessible. Requires --security-group-id
    /// groups whose inbound rules for the port admit one address only.
    #[arg(long)]
    pub public: bool,
    /// VPC security group (repeat for several; default: the VPC's default group).
    #[arg(long = "security-group-id", value_name = "ID")]
    pub security_group_ids: Vec<String>,
    /// Parameter group; created when missing, and set to require TLS
    /// (default: cruddur-postgresMAJOR, e.g. cruddur-postgres16).
    #[arg(long)]
    pub parameter_group: Option<String>,
    /// Availability zone (not with --production).
    #[arg(long)]
    pub availability_zone: Option<String>,
}

/// `rds create-replica`.
#[derive(Debug, Args)]
pub struct CreateReplicaArgs {
    /// The instance to replicate (it must be encrypted, keep backups and
    /// require TLS, and not be a replica itself).
    #[arg(long, default_value = DEFAULT_IDENTIFIER, value_name = "ID")]
    pub source: String,
    /// The replica's identifier (default: SOURCE-replica-N, with the lowest
    /// N the source has no replica of).
    #[arg(long, value_name = "ID")]
    pub identifier: Option<String>,
    /// Instance class (default: the source's).
    #[arg(long)]
    pub instance_class: Option<String>,
    /// Make the replica publicly accessible. Requires security groups whose
    /// inbound rules for the port admit one address only.
    #[arg(long)]
    pub public: bool,
    /// VPC security group (repeat for several; default: the source's).
    #[arg(long = "security-group-id", value_name = "ID")]
    pub security_group_ids: Vec<String>,
    /// Availability zone (default: chosen by RDS).
    #[arg(long)]
    pub availability_zone: Option<String>,
}

/// The `rds proxy` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Create an RDS Proxy for the instance: TLS required, authenticating
    /// with the instance's managed master-user secret (clients use IAM when
    /// the instance does), in the instance's subnets and security groups,
    /// the instance as its target.
    Create(ProxyCreateArgs),
}

/// `rds proxy create`.
#[derive(Debug, Args)]
pub struct ProxyCreateArgs {
    /// The instance the proxy is for (a PostgreSQL instance whose master
    /// password Secrets Manager manages; not a read replica).
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// The proxy's name (default: IDENTIFIER-proxy).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The IAM role the proxy assumes to read the instance's secret
    /// (arn:aws:iam::ACCOUNT:role/NAME, allowed secretsmanager:GetSecretValue
    /// on it); RDS requires one.
    #[arg(long, value_name = "ARN")]
    pub role_arn: String,
}

/// `rds allow-ip`.
#[derive(Debug, Args)]
pub struct AllowIpArgs {
    /// The database's security group.
    #[arg(long, env = "DB_SG_ID")]
    pub group_id: String,
    /// The inbound rule to change (default: the group's one rule for the
    /// port; a rule is added when there is none).
    #[arg(long, env = "DB_SG_RULE_ID")]
    pub rule_id: Option<String>,
    /// One IPv4 or IPv6 address, or `auto` for this machine's public address.
    #[arg(long, default_value = "auto", value_name = "ADDR|auto")]
    pub ip: String,
    /// Where `auto` asks for the public address (answers with it as text).
    #[arg(long, env = "CRUDDUR_IP_ENDPOINT", default_value = DEFAULT_IP_ENDPOINT)]
    pub ip_endpoint: String,
    /// The database port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The rule's description.
    #[arg(long, default_value = "cruddur-db rds allow-ip")]
    pub description: String,
}

/// `rds url`.
#[derive(Debug, Args)]
pub struct UrlArgs {
    /// Instance identifier.
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// A read replica (repeat for several): print its URL, with its
    /// source's credentials; several are printed comma-separated, the form
    /// DATABASE_REPLICA_URLS takes.
    #[arg(long = "replica", value_name = "ID", conflicts_with_all = ["identifier", "write_env"])]
    pub replicas: Vec<String>,
    /// The RDS CA bundle; the URL names it by absolute path.
    #[arg(long, default_value = "global-bundle.pem")]
    pub sslrootcert: PathBuf,
    /// Print the password instead of `***`.
    #[arg(long)]
    pub show_password: bool,
    /// Store the URL as PROD_CONNECTION_URL in the env file (mode 0600).
    /// Not with --replica: DATABASE_REPLICA_URLS in .env would also apply
    /// to commands run without --prod.
    #[arg(long)]
    pub write_env: bool,
    /// The env file --write-env writes.
    #[arg(long, default_value = ".env")]
    pub env_file: PathBuf,
}

/// `rds audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Instance identifier.
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// Audit as production: Multi-AZ is required.
    #[arg(long)]
    pub production: bool,
    /// The regions the data may be stored in, comma-separated (default:
    /// CRUDDUR_RDS_ALLOWED_REGIONS; without either, region-allowed is UNKNOWN).
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub allowed_regions: Vec<String>,
    /// An instance with no connection in this many days fails in-use.
    #[arg(long, default_value_t = cruddur_db_aws::audit::DEFAULT_IDLE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=455))]
    pub idle_days: u32,
    /// Exit 1 on UNKNOWN too, not only on FAIL.
    #[arg(long)]
    pub strict: bool,
    /// One JSON object per practice (an array), for CI pipelines.
    #[arg(long, conflicts_with = "fix")]
    pub json: bool,
    /// Apply the safe, reversible fixes (manual snapshot, GuardDuty
    /// detector, deletion protection, Multi-AZ for production, secret
    /// rotation) after listing them and asking; then audit again. Anything
    /// destructive or costly is listed, never applied.
    #[arg(long)]
    pub fix: bool,
    /// With --fix: apply without asking.
    #[arg(short = 'y', long, requires = "fix")]
    pub yes: bool,
    /// A shared-config profile of the organization's management account (or
    /// a delegated administrator) for reading its SCPs; SCPs cannot be read
    /// from a member account.
    #[arg(long, value_name = "PROFILE")]
    pub organizations_profile: Option<String>,
}

/// `rds scp-template`.
#[derive(Debug, Args)]
pub struct ScpTemplateArgs {
    /// The production instance (its ARN goes into the policy).
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// Protect every instance with this tag instead of the one ARN.
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Option<String>,
    /// The regions to allow, comma-separated (default:
    /// CRUDDUR_RDS_ALLOWED_REGIONS).
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub allowed_regions: Vec<String>,
}

/// `rds snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Instance identifier.
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// Snapshot name (default: IDENTIFIER-yyyymmdd-hhmmss, in UTC).
    #[arg(long)]
    pub snapshot_id: Option<String>,
}

/// `rds delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Instance identifier.
    #[arg(long, default_value = DEFAULT_IDENTIFIER)]
    pub identifier: String,
    /// Repeat the identifier to confirm.
    #[arg(long, value_name = "IDENTIFIER")]
    pub confirm: String,
    /// Delete without a final snapshot.
    #[arg(long)]
    pub skip_final_snapshot: bool,
    /// The final snapshot's name (default: IDENTIFIER-final-yyyymmdd-hhmmss, in UTC).
    #[arg(long, conflicts_with = "skip_final_snapshot")]
    pub final_snapshot_id: Option<String>,
}
