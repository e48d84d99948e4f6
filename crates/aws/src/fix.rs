//! `rds audit --fix`: applies one [`AutoFix`] and reads the result back
//! from the service, so that what is reported is what AWS holds, not what
//! was asked for.

use aws_sdk_guardduty::types::DetectorStatus;
use aws_sdk_secretsmanager::types::RotationRulesType;

use super::audit::{AutoFix, ROTATION_DAYS};
use super::rds::{create_snapshot, describe_instance};
use super::{Aws, sdk_error};
use crate::error::{Error, Result};

/// What applying a fix left behind, as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The fix.
    pub fix: AutoFix,
    /// The state read back, e.g. `snapshot s-1 is available`.
    pub read_back: String,
    /// Whether the read-back shows the fix in effect; `false` when AWS
    /// accepted it but applies it later (a Multi-AZ conversion, a snapshot
    /// being created).
    pub in_effect: bool,
}

/// Applies `fix` and reads the changed setting back. An error means the
/// request was refused or the read-back contradicts it.
pub async fn apply_fix(aws: &Aws, fix: &AutoFix) -> Result<Applied> {
    let (read_back, in_effect) = match fix {
        AutoFix::CreateSnapshot { identifier } => {
            let s = create_snapshot(aws, identifier, None).await?;
            let described = aws
                .rds
                .describe_db_snapshots()
                .db_snapshot_identifier(&s.snapshot_id)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeDBSnapshots", e))?;
            let status = described
                .db_snapshots()
                .first()
                .and_then(|d| d.status())
                .ok_or_else(|| contradiction("DescribeDBSnapshots", &s.snapshot_id))?
                .to_owned();
            (
                format!("snapshot {} of {identifier} is {status}", s.snapshot_id),
                status == "available",
            )
        }
        AutoFix::EnableGuardDuty => {
            let listed = aws
                .guardduty
                .list_detectors()
                .send()
                .await
                .map_err(|e| sdk_error("ListDetectors", e))?;
            let id = match listed.detector_ids().first() {
                Some(id) => {
                    aws.guardduty
                        .update_detector()
                        .detector_id(id)
                        .enable(true)
                        .send()
                        .await
                        .map_err(|e| sdk_error("UpdateDetector", e))?;
                    id.clone()
                }
                None => aws
                    .guardduty
                    .create_detector()
                    .enable(true)
                    .send()
                    .await
                    .map_err(|e| sdk_error("CreateDetector", e))?
                    .detector_id()
                    .ok_or_else(|| contradiction("CreateDetector", "a new detector"))?
                    .to_owned(),
            };
            let d = aws
                .guardduty
                .get_detector()
                .detector_id(&id)
                .send()
                .await
                .map_err(|e| sdk_error("GetDetector", e))?;
            if d.status() != Some(&DetectorStatus::Enabled) {
                return Err(contradiction("GetDetector", &format!("detector {id}")));
            }
            (format!("detector {id} is enabled"), true)
        }
        AutoFix::EnableDeletionProtection { identifier } => {
            modify(aws, identifier, |m| m.deletion_protection(true)).await?;
            let db = describe_instance(aws, identifier).await?;
            if db.deletion_protection() != Some(true) {
                return Err(contradiction("DescribeDBInstances", identifier));
            }
            (format!("deletion protection of {identifier} is on"), true)
        }
        AutoFix::EnableMultiAz { identifier } => {
            modify(aws, identifier, |m| m.multi_az(true)).await?;
            let db = describe_instance(aws, identifier).await?;
            let pending = db.pending_modified_values().and_then(|p| p.multi_az()) == Some(true);
            match db.multi_az() {
                Some(true) => (format!("{identifier} is Multi-AZ"), true),
                _ if pending => (
                    format!(
                        "{identifier} becomes Multi-AZ (pending; RDS converts it within minutes)"
                    ),
                    false,
                ),
                _ => return Err(contradiction("DescribeDBInstances", identifier)),
            }
        }
        AutoFix::EnableRotation { secret_arn } => {
            // Not at once: a rotation changes the master password, and the
            // URL stored by `rds url --write-env` with it.
            aws.secrets
                .rotate_secret()
                .secret_id(secret_arn)
                .rotation_rules(
                    RotationRulesType::builder()
                        .automatically_after_days(ROTATION_DAYS)
                        .build(),
                )
                .rotate_immediately(false)
                .send()
                .await
                .map_err(|e| sdk_error("RotateSecret", e))?;
            let s = aws
                .secrets
                .describe_secret()
                .secret_id(secret_arn)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeSecret", e))?;
            if s.rotation_enabled() != Some(true) {
                return Err(contradiction("DescribeSecret", secret_arn));
            }
            (
                format!(
                    "rotation of {secret_arn} is on, every {} days",
                    s.rotation_rules()
                        .and_then(|r| r.automatically_after_days())
                        .map_or_else(|| "?".to_owned(), |d| d.to_string())
                ),
                true,
            )
        }
    };
    Ok(Applied {
        fix: fix.clone(),
        read_back,
        in_effect,
    })
}

async fn modify(
    aws: &Aws,
    identifier: &str,
    change: impl FnOnce(
        aws_sdk_rds::operation::modify_db_instance::builders::ModifyDBInstanceFluentBuilder,
    )
        -> aws_sdk_rds::operation::modify_db_instance::builders::ModifyDBInstanceFluentBuilder,
) -> Result<()> {
    change(
        aws.rds
            .modify_db_instance()
            .db_instance_identifier(identifier)
            .apply_immediately(true),
    )
    .send()
    .await
    .map_err(|e| sdk_error("ModifyDBInstance", e))?;
    Ok(())
}

fn contradiction(operation: &str, what: &str) -> Error {
    Error::Api {
        source: None,
        operation: operation.to_owned(),
        code: None,
        message: format!("the change to {what} was accepted but does not read back"),
    }
}
