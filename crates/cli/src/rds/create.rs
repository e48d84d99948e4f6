//! `rds create`, `rds create-replica` and `rds proxy create`.

use std::process::ExitCode;

use cruddur_db_aws::Aws;

use super::{CreateArgs, CreateReplicaArgs, ProxyCreateArgs};

pub(super) async fn create(aws: &Aws, a: CreateArgs) -> anyhow::Result<ExitCode> {
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

pub(super) async fn create_replica(aws: &Aws, a: CreateReplicaArgs) -> anyhow::Result<ExitCode> {
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

pub(super) async fn create_proxy(aws: &Aws, a: ProxyCreateArgs) -> anyhow::Result<ExitCode> {
    let options = cruddur_db_aws::ProxyOptions {
        instance: a.identifier,
        name: a.name,
        role_arn: a.role_arn,
    };
    let p = cruddur_db_aws::create_proxy(aws, &options).await?;
    println!(
        "created proxy {} for {} (TLS required; authenticating with {}; clients {})",
        p.name,
        p.target,
        p.secret_arn,
        if p.iam_auth {
            "with IAM tokens"
        } else {
            "with the password (SCRAM-SHA-256)"
        }
    );
    println!(
        "endpoint        {}",
        p.endpoint.as_deref().unwrap_or("(not yet)")
    );
    println!("subnets         {}", p.subnet_ids.join(", "));
    println!("security groups {}", p.security_group_ids.join(", "));
    println!();
    println!(
        "next: connect through the endpoint with sslmode=verify-full and \
         CRUDDUR_POOLER=transaction, and keep PROD_DIRECT_URL on the instance itself \
         (`cruddur-db rds url --identifier {}`) for migrations",
        p.target
    );
    Ok(ExitCode::SUCCESS)
}
