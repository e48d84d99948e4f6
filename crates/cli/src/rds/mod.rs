//! `cruddur-db rds`: the production database on AWS RDS, with the security
//! practices as defaults and an audit of them.

use std::process::ExitCode;

use anyhow::Context;

use cruddur_db_aws::{self, Aws, AwsOptions};

mod args;
mod audit;
mod create;
mod network;
pub mod remedy;
mod url;

pub use args::{
    AllowIpArgs, AuditArgs, CreateArgs, CreateReplicaArgs, DEFAULT_IP_ENDPOINT, DeleteArgs,
    InstanceArg, ProxyCommand, ProxyCreateArgs, RdsArgs, RdsCommand, ScpTemplateArgs, SnapshotArgs,
    UrlArgs,
};
use audit::{audit, organizations_as, scp_template};
use create::{create, create_proxy, create_replica};
use network::allow_ip;
use url::url;

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
        RdsCommand::Proxy(ProxyCommand::Create(a)) => create_proxy(&aws, a).await,
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
