//! The account-wide practices: the organization's SCPs (practice 10),
//! GuardDuty (11) and CloudTrail (12).

use aws_sdk_guardduty::types::DetectorStatus;

use super::{
    AuditOptions, AutoFix, Fix, Operation, Practice, PracticeResult, cannot_check, result, unknown,
};
use crate::rds::InstanceStatus;
use crate::{Aws, scp, sdk_error};

/// Practice 10: the three SCP results from one reading of Organizations.
pub(super) async fn scps(
    aws: &Aws,
    db: &InstanceStatus,
    options: &AuditOptions,
) -> Vec<PracticeResult> {
    let practices = [
        Practice::ScpProtectsProduction,
        Practice::ScpRegionLock,
        Practice::ScpRequiresEncryption,
    ];
    let all_unknown = |detail: String, hint: Fix| {
        practices
            .iter()
            .map(|p| unknown(*p, detail.clone(), hint.clone()))
            .collect::<Vec<_>>()
    };
    let (Some(arn), Some(account)) = (db.arn.as_deref(), db.account_id()) else {
        return all_unknown(
            "RDS reports no ARN for the instance, so its account is not known".into(),
            "describe the instance with rds:DescribeDBInstances".into(),
        );
    };
    let (policies, management) = match scp::effective_policies(aws, account).await {
        Ok(p) => p,
        Err(e) => {
            return all_unknown(
                format!("cannot read the organization's SCPs from this account: {e}"),
                Fix::text(
                    "audit with the management account's (or a delegated administrator's) \
                     credentials for Organizations: ",
                )
                .then(Operation::OrganizationsCredentials)
                .then_text(
                    "; it needs organizations:DescribeOrganization, ListParents, \
                     ListPoliciesForTarget and DescribePolicy",
                ),
            );
        }
    };
    let template = Fix::operation(Operation::ScpTemplate {
        identifier: db.identifier.clone(),
    })
    .then_text(format!(
        "; aws organizations create-policy --type SERVICE_CONTROL_POLICY --name \
         cruddur-rds-guard --description 'cruddur RDS guard' --content file://scp.json; aws \
         organizations attach-policy --policy-id POLICY_ID --target-id {account}"
    ));
    if management {
        return practices
            .iter()
            .map(|p| {
                result(
                    *p,
                    false,
                    format!(
                        "account {account} is the organization's management account, to which \
                         SCPs never apply"
                    ),
                    "run production in a member account of the organization",
                )
            })
            .collect();
    }
    let j = scp::judge(
        &policies,
        scp::Instance {
            arn,
            tags: &db.tags,
        },
        &options.allowed_regions,
    );
    practices
        .iter()
        .zip([j.protects_production, j.region_lock, j.requires_encryption])
        .map(|(p, verdict)| match verdict {
            Ok(detail) => result(*p, true, detail, ""),
            Err(detail) => result(*p, false, detail, template.clone()),
        })
        .collect()
}

pub(super) async fn cloudtrail(aws: &Aws) -> PracticeResult {
    let practice = Practice::CloudTrailLogging;
    let fix = "aws cloudtrail create-trail --name cruddur-trail --s3-bucket-name BUCKET \
               --is-multi-region-trail && aws cloudtrail start-logging --name cruddur-trail";
    let trails = match aws.cloudtrail.describe_trails().send().await {
        Ok(t) => t,
        Err(e) => return cannot_check(practice, &sdk_error("DescribeTrails", e), fix),
    };
    let mut names = Vec::new();
    for trail in trails.trail_list() {
        let Some(id) = trail.trail_arn().or(trail.name()) else {
            continue;
        };
        let name = trail.name().unwrap_or(id).to_owned();
        match aws.cloudtrail.get_trail_status().name(id).send().await {
            Ok(status) if status.is_logging() == Some(true) => {
                return result(practice, true, format!("trail {name} is logging"), "");
            }
            Ok(_) => names.push(format!("{name} (not logging)")),
            Err(e) => names.push(format!("{name} ({})", sdk_error("GetTrailStatus", e))),
        }
    }
    let detail = if names.is_empty() {
        "no CloudTrail trail in this region".to_owned()
    } else {
        format!("no trail is logging: {}", names.join(", "))
    };
    result(practice, false, detail, fix)
}

pub(super) async fn guardduty(aws: &Aws) -> PracticeResult {
    let practice = Practice::GuardDutyEnabled;
    let fix = "aws guardduty create-detector --enable";
    let detectors = match aws.guardduty.list_detectors().send().await {
        Ok(d) => d,
        Err(e) => return cannot_check(practice, &sdk_error("ListDetectors", e), fix),
    };
    let mut seen = Vec::new();
    for id in detectors.detector_ids() {
        match aws.guardduty.get_detector().detector_id(id).send().await {
            Ok(d) if d.status() == Some(&DetectorStatus::Enabled) => {
                return result(practice, true, format!("detector {id} is enabled"), "");
            }
            Ok(d) => seen.push(format!(
                "{id} ({})",
                d.status().map_or("no status", |s| s.as_str())
            )),
            Err(e) => seen.push(format!("{id} ({})", sdk_error("GetDetector", e))),
        }
    }
    let detail = if seen.is_empty() {
        "no GuardDuty detector in this region".to_owned()
    } else {
        format!("no detector is enabled: {}", seen.join(", "))
    };
    PracticeResult {
        auto_fix: Some(AutoFix::EnableGuardDuty),
        ..result(practice, false, detail, fix)
    }
}
