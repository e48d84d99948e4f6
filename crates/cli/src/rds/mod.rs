//! `cruddur-db rds`: the production database on AWS RDS, with the security
//! practices as defaults and an audit of them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use cruddur_db_aws::rds::{
    DEFAULT_ALLOCATED_STORAGE_GB, DEFAULT_DB_NAME, DEFAULT_ENGINE_VERSION, DEFAULT_IDENTIFIER,
    DEFAULT_INSTANCE_CLASS, DEFAULT_MASTER_USERNAME, DEFAULT_PORT, DEFAULT_STORAGE_TYPE,
    MIN_BACKUP_RETENTION_DAYS,
};
use cruddur_db_aws::{self, Aws, AwsOptions};

pub mod remedy;

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

/// Runs an `rds` subcommand. Audit returns exit code 1 when a practice fails.
pub fn run(args: RdsArgs, settings: &cruddur_db::Settings) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args, settings))
}

async fn run_async(args: RdsArgs, settings: &cruddur_db::Settings) -> anyhow::Result<ExitCode> {
    let options = AwsOptions {
        region: args.region,
        endpoint_url: args.endpoint_url,
        profile: args.profile,
        ec2_endpoint_url: settings
            .get(&cruddur_db_aws::variables::AWS_ENDPOINT_URL_EC2)
            .map(str::to_owned),
    };
    let mut aws = Aws::from_env(&options).await?;
    if let RdsCommand::Audit(AuditArgs {
        organizations_profile: Some(profile),
        ..
    }) = &args.command
    {
        aws.organizations = organizations_as(&aws, profile).await?;
    }
    match args.command {
        RdsCommand::Create(a) => create(&aws, a).await,
        RdsCommand::CreateReplica(a) => create_replica(&aws, a).await,
        RdsCommand::Status(a) => {
            print!(
                "{}",
                cruddur_db_aws::instance_status(&aws, &a.identifier).await?
            );
            Ok(ExitCode::SUCCESS)
        }
        RdsCommand::AllowIp(a) => allow_ip(&aws, a).await,
        RdsCommand::Url(a) => url(&aws, a).await,
        RdsCommand::Audit(a) => {
            let regions = allowed_regions(&a.allowed_regions, settings)?;
            audit(&aws, a, regions).await
        }
        RdsCommand::ScpTemplate(a) => {
            let regions = allowed_regions(&a.allowed_regions, settings)?;
            scp_template(&aws, a, regions).await
        }
        RdsCommand::Snapshot(a) => {
            let s = cruddur_db_aws::create_snapshot(&aws, &a.identifier, a.snapshot_id.as_deref())
                .await?;
            println!(
                "snapshot {} of {} is {}",
                s.snapshot_id, s.identifier, s.status
            );
            Ok(ExitCode::SUCCESS)
        }
        RdsCommand::Delete(a) => {
            if a.confirm != a.identifier {
                anyhow::bail!(
                    "--confirm `{}` does not match --identifier `{}`; nothing was deleted",
                    a.confirm,
                    a.identifier
                );
            }
            let d = cruddur_db_aws::delete_instance(
                &aws,
                &cruddur_db_aws::DeleteOptions {
                    identifier: a.identifier,
                    skip_final_snapshot: a.skip_final_snapshot,
                    final_snapshot_id: a.final_snapshot_id,
                },
            )
            .await?;
            match &d.final_snapshot_id {
                Some(s) => println!("{} is {}; final snapshot {s}", d.identifier, d.status),
                None => println!("{} is {}; no final snapshot", d.identifier, d.status),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(aws: &Aws, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let options = cruddur_db_aws::CreateOptions {
        identifier: a.identifier,
        instance_class: a.instance_class,
        engine_version: a.engine_version,
        allocated_storage_gb: a.allocated_storage,
        storage_type: a.storage_type,
        db_name: a.db_name,
        port: a.port,
        master_username: a.master_username,
        backup_retention_days: a.backup_retention_days,
        production: a.production,
        public: a.public,
        security_group_ids: a.security_group_ids,
        parameter_group: a.parameter_group,
        availability_zone: a.availability_zone,
    };
    let created = cruddur_db_aws::create_instance(aws, &options).await?;
    println!(
        "created {} (parameter group {}{}, requiring TLS; performance insights {} days)",
        created.instance.identifier,
        created.parameter_group,
        if created.parameter_group_created {
            ", new"
        } else {
            ""
        },
        created.performance_insights_retention_days
    );
    print!("{}", created.instance);
    println!();
    println!(
        "next: wait until `cruddur-db rds status --identifier {id}` says available (about 10 \
         minutes), then `cruddur-db rds url --identifier {id} --write-env`",
        id = created.instance.identifier
    );
    Ok(ExitCode::SUCCESS)
}

async fn create_replica(aws: &Aws, a: CreateReplicaArgs) -> anyhow::Result<ExitCode> {
    let options = cruddur_db_aws::ReplicaOptions {
        source: a.source,
        identifier: a.identifier,
        instance_class: a.instance_class,
        public: a.public,
        security_group_ids: a.security_group_ids,
        availability_zone: a.availability_zone,
    };
    let created = cruddur_db_aws::create_replica(aws, &options).await?;
    let replica = &created.instance;
    println!(
        "created read replica {} of {} (parameter group {}, requiring TLS; performance \
         insights {} days; tags copied: {})",
        replica.identifier,
        created.source,
        replica.parameter_groups.join(", "),
        created.performance_insights_retention_days,
        if created.tags_copied.is_empty() {
            "none".to_owned()
        } else {
            created.tags_copied.join(", ")
        }
    );
    print!("{replica}");
    println!();
    println!(
        "next: wait until `cruddur-db rds status --identifier {id}` says available, then \
         `cruddur-db rds url --replica {id}`",
        id = replica.identifier
    );
    Ok(ExitCode::SUCCESS)
}

async fn allow_ip(aws: &Aws, a: AllowIpArgs) -> anyhow::Result<ExitCode> {
    let address: IpAddr = if a.ip == "auto" {
        aws.public_ip(&a.ip_endpoint).await?
    } else {
        cruddur_db_aws::parse_single_address(&a.ip)?
    };
    let outcome = cruddur_db_aws::allow_ip(
        aws,
        &cruddur_db_aws::AllowIp {
            group_id: a.group_id,
            rule_id: a.rule_id,
            address,
            port: a.port,
            description: Some(a.description),
        },
    )
    .await?;
    match &outcome.previous_source {
        Some(previous) => println!(
            "rule {} in {} now admits {} on port {} (was {previous})",
            outcome.rule_id, outcome.group_id, outcome.cidr, a.port
        ),
        None => println!(
            "added rule {} in {}: {} on port {}",
            outcome.rule_id, outcome.group_id, outcome.cidr, a.port
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn url(aws: &Aws, a: UrlArgs) -> anyhow::Result<ExitCode> {
    let root = std::path::absolute(&a.sslrootcert)
        .with_context(|| format!("cannot resolve {}", a.sslrootcert.display()))?;
    if !root.exists() {
        eprintln!(
            "note: {} does not exist yet; download the RDS CA bundle with\n  curl -o {} \
             https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem",
            root.display(),
            root.display()
        );
    }
    let root_text = root.to_string_lossy();
    if !a.replicas.is_empty() {
        return replica_urls(aws, &a.replicas, &root_text, a.show_password).await;
    }
    let production = cruddur_db_aws::production_url(aws, &a.identifier, &root_text).await?;
    if a.show_password {
        println!("{}", production.url.expose());
    } else {
        println!("{}", production.url);
    }
    if a.write_env {
        let w = crate::env_file::write_env_var(
            &a.env_file,
            "PROD_CONNECTION_URL",
            production.url.expose(),
        )?;
        println!(
            "{} PROD_CONNECTION_URL in {} (mode 0600)",
            if w.replaced { "replaced" } else { "wrote" },
            a.env_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: the replicas' URLs, comma-separated (redacted unless
/// `show_password`), as `DATABASE_REPLICA_URLS` takes them.
async fn replica_urls(
    aws: &Aws,
    replicas: &[String],
    sslrootcert: &str,
    show_password: bool,
) -> anyhow::Result<ExitCode> {
    let mut urls = Vec::with_capacity(replicas.len());
    for id in replicas {
        let url = cruddur_db_aws::replica_url(aws, id, sslrootcert).await?;
        urls.push(if show_password {
            url.url.expose().to_owned()
        } else {
            url.url.to_string()
        });
    }
    println!("{}", urls.join(","));
    Ok(ExitCode::SUCCESS)
}

/// Organizations with the credentials of `profile` (the management
/// account's), at the same endpoint.
async fn organizations_as(
    aws: &Aws,
    profile: &str,
) -> anyhow::Result<cruddur_db_aws::JsonApiClient> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .profile_name(profile)
        .region(aws_config::Region::new(aws.region.clone()))
        .load()
        .await;
    let credentials = config
        .credentials_provider()
        .with_context(|| format!("profile `{profile}` gives no credentials"))?;
    Ok(aws.organizations.with_credentials(credentials))
}

/// The allowed regions: the flag's, else CRUDDUR_RDS_ALLOWED_REGIONS's;
/// each must look like a region name (`eu-west-1`).
fn allowed_regions(
    flag: &[String],
    settings: &cruddur_db::Settings,
) -> anyhow::Result<Vec<String>> {
    let (raw, source): (Vec<String>, &str) = if flag.is_empty() {
        (
            settings
                .list(&cruddur_db_aws::variables::CRUDDUR_RDS_ALLOWED_REGIONS)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            "CRUDDUR_RDS_ALLOWED_REGIONS",
        )
    } else {
        (flag.to_vec(), "--allowed-regions")
    };
    let mut regions = Vec::new();
    for r in raw.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        let parts: Vec<&str> = r.split('-').collect();
        let ok = parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
        anyhow::ensure!(
            ok,
            "{source}: `{}` is not a region name like eu-west-1",
            r.chars().take(40).collect::<String>()
        );
        if !regions.iter().any(|x| x == r) {
            regions.push(r.to_owned());
        }
    }
    Ok(regions)
}

async fn scp_template(
    aws: &Aws,
    a: ScpTemplateArgs,
    regions: Vec<String>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !regions.is_empty(),
        "name the regions to allow: --allowed-regions eu-west-1,... or CRUDDUR_RDS_ALLOWED_REGIONS"
    );
    let tag = match &a.tag {
        None => None,
        Some(t) => Some(
            t.split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .with_context(|| format!("--tag `{t}` is not KEY=VALUE"))?,
        ),
    };
    let db = cruddur_db_aws::instance_status(aws, &a.identifier).await?;
    let arn = db
        .arn
        .as_deref()
        .with_context(|| format!("RDS reports no ARN for {}", a.identifier))?;
    let policy = cruddur_db_aws::scp::template(arn, tag, &regions);
    println!("{}", serde_json::to_string_pretty(&policy)?);
    Ok(ExitCode::SUCCESS)
}

/// Prints the results as lines, each replica's under a heading.
fn print_results(results: &[cruddur_db_aws::PracticeResult], identifier: &str) {
    use cruddur_db_aws::Outcome;
    let width = cruddur_db_aws::Practice::ALL
        .iter()
        .map(|p| p.name().len())
        .max()
        .unwrap_or(0);
    // The audited instance's and the account's results first; each
    // replica's under a heading, every line naming the replica.
    let mut heading: Option<&str> = None;
    let mut replicas = 0;
    for r in results {
        let other = r.instance.as_deref().filter(|i| *i != identifier);
        if let Some(instance) = other
            && heading != Some(instance)
        {
            println!("replica {instance} (of {identifier}):");
            heading = Some(instance);
            replicas += 1;
        }
        let detail = match other {
            Some(instance) => format!("{instance}: {}", r.detail),
            None => r.detail.clone(),
        };
        println!(
            "{} {:<width$}  {detail}",
            r.outcome.label(),
            r.practice.name(),
        );
        match r.outcome {
            Outcome::Fail => println!("     {:<width$}  fix: {}", "", remedy::fix_text(&r.fix)),
            Outcome::Unknown => {
                println!("     {:<width$}  to tell: {}", "", remedy::fix_text(&r.fix));
            }
            Outcome::Pass | Outcome::Info => {}
        }
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    println!(
        "{} pass, {} fail, {} unknown, {} informational, of the 15 practices{}",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Unknown),
        count(Outcome::Info),
        match replicas {
            0 => String::new(),
            1 => format!(" ({identifier} and its read replica)"),
            n => format!(" ({identifier} and its {n} read replicas)"),
        }
    );
}

/// One result as `rds audit --json` prints it: the toolkit's result with
/// the fix as text, its operations worded as the CLI's commands (the field
/// is the same string the text output shows).
#[derive(serde::Serialize)]
struct JsonResult<'a> {
    practice: cruddur_db_aws::Practice,
    item: u8,
    instance: Option<&'a str>,
    outcome: cruddur_db_aws::Outcome,
    detail: &'a str,
    fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_fix: Option<&'a cruddur_db_aws::AutoFix>,
}

impl<'a> From<&'a cruddur_db_aws::PracticeResult> for JsonResult<'a> {
    fn from(r: &'a cruddur_db_aws::PracticeResult) -> Self {
        Self {
            practice: r.practice,
            item: r.item,
            instance: r.instance.as_deref(),
            outcome: r.outcome,
            detail: &r.detail,
            fix: remedy::fix_text(&r.fix),
            auto_fix: r.auto_fix.as_ref(),
        }
    }
}

/// 1 on any FAIL, and with `strict` on any UNKNOWN.
fn audit_code(results: &[cruddur_db_aws::PracticeResult], strict: bool) -> ExitCode {
    use cruddur_db_aws::Outcome;
    let bad = results
        .iter()
        .any(|r| r.outcome == Outcome::Fail || (strict && r.outcome == Outcome::Unknown));
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn audit(aws: &Aws, a: AuditArgs, allowed_regions: Vec<String>) -> anyhow::Result<ExitCode> {
    let options = cruddur_db_aws::AuditOptions {
        production: a.production,
        allowed_regions,
        idle_days: a.idle_days,
    };
    let results = cruddur_db_aws::audit(aws, &a.identifier, &options).await?;
    if a.json {
        let shown: Vec<JsonResult<'_>> = results.iter().map(JsonResult::from).collect();
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(audit_code(&results, a.strict));
    }
    print_results(&results, &a.identifier);
    if !a.fix {
        return Ok(audit_code(&results, a.strict));
    }

    let mut fixes: Vec<&cruddur_db_aws::AutoFix> = Vec::new();
    for f in results.iter().filter_map(|r| r.auto_fix.as_ref()) {
        if !fixes.contains(&f) {
            fixes.push(f);
        }
    }
    let by_hand: Vec<&cruddur_db_aws::PracticeResult> = results
        .iter()
        .filter(|r| r.outcome == cruddur_db_aws::Outcome::Fail && r.auto_fix.is_none())
        .collect();
    println!();
    if !by_hand.is_empty() {
        println!(
            "not applied by --fix (destructive, costly, or a decision to make; see each fix above):"
        );
        for r in &by_hand {
            match &r.instance {
                Some(i) => println!("  - {} of {i}", r.practice),
                None => println!("  - {}", r.practice),
            }
        }
    }
    if fixes.is_empty() {
        println!("no fix to apply");
        return Ok(audit_code(&results, a.strict));
    }
    println!("fixes to apply (safe, reversible):");
    for f in &fixes {
        println!("  - {}", remedy::auto_fix_text(f));
    }
    if !a.yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            println!(
                "nothing applied: standard input is not a terminal to ask on; pass -y to apply \
                 the fixes above"
            );
            return Ok(audit_code(&results, a.strict));
        }
        print!("apply these {} fixes? [y/N] ", fixes.len());
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("nothing applied: not confirmed");
            return Ok(audit_code(&results, a.strict));
        }
    }
    let mut failed = 0;
    for f in &fixes {
        match cruddur_db_aws::apply_fix(aws, f).await {
            Ok(applied) => println!(
                "applied: {}{}",
                applied.read_back,
                if applied.in_effect {
                    ""
                } else {
                    " (not yet in effect)"
                }
            ),
            Err(e) => {
                failed += 1;
                println!("not applied: {f}: {e}");
            }
        }
    }
    println!();
    println!("audit after the fixes:");
    let after = cruddur_db_aws::audit(aws, &a.identifier, &options).await?;
    print_results(&after, &a.identifier);
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        audit_code(&after, a.strict)
    })
}
