//! `rds allow-ip`: point the security group's rule at this machine.

use std::net::IpAddr;
use std::process::ExitCode;

use cruddur_db_aws::Aws;

use super::AllowIpArgs;

pub(super) async fn allow_ip(aws: &Aws, a: AllowIpArgs) -> anyhow::Result<ExitCode> {
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
