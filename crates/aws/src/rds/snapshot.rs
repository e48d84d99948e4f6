//! Keeping and removing the instance: a manual snapshot, and deletion
//! (refused under deletion protection, with a final snapshot by default).

use super::instance_status;
use super::validation::validate_identifier;
use crate::error::{Error, Result};
use crate::{Aws, sdk_error};

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
