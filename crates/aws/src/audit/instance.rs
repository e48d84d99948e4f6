//! The checks of one instance's settings: the dispatch of each practice to
//! its check, and the checks that read more than the instance's
//! description (region, security groups, parameter group).

use super::rotation::secret_rotation;
use super::usage::{in_use, snapshots};
use super::{
    AuditOptions, AutoFix, Fix, Operation, Outcome, Practice, PracticeResult, cannot_check, info,
    result, unknown,
};
use crate::Aws;
use crate::rds::{FORCE_SSL_PARAMETER, InstanceStatus, MIN_BACKUP_RETENTION_DAYS};
use crate::sdk_error;

pub(super) async fn check(
    aws: &Aws,
    db: &InstanceStatus,
    practice: Practice,
    options: &AuditOptions,
    production: bool,
) -> PracticeResult {
    let identifier = &db.identifier;
    let modify = format!("aws rds modify-db-instance --db-instance-identifier {identifier}");
    let mut r = match practice {
        Practice::RegionAllowed => region_allowed(aws, db, &options.allowed_regions),
        Practice::MasterUserAndDatabase => info(
            practice,
            format!(
                "master user {}, database {}: the connection URL is built with both as the \
                 instance reports them, so it names what the instance has",
                db.master_username.as_deref().unwrap_or("-"),
                db.db_name.as_deref().unwrap_or("-")
            ),
        ),
        Practice::StorageEncrypted => result(
            practice,
            db.storage_encrypted,
            format!("storage encrypted: {}", db.storage_encrypted),
            "encryption cannot be switched on in place: snapshot, copy the snapshot with \
             --kms-key-id, restore from the copy",
        ),
        Practice::EndpointAndPort => info(
            practice,
            format!(
                "endpoint {}:{}: parts of the connection URL, which is built from the \
                 instance; nothing to configure",
                db.endpoint.as_deref().unwrap_or("(none yet)"),
                db.port.map_or_else(|| "-".to_owned(), |p| p.to_string())
            ),
        ),
        Practice::NotPubliclyAccessible => result(
            practice,
            !db.publicly_accessible,
            format!("publicly accessible: {}", db.publicly_accessible),
            format!("{modify} --no-publicly-accessible --apply-immediately"),
        ),
        Practice::SecurityGroupNotOpenToWorld => open_to_world(aws, db).await,
        Practice::DeletionProtection => result(
            practice,
            db.deletion_protection,
            format!("deletion protection: {}", db.deletion_protection),
            format!("{modify} --deletion-protection --apply-immediately"),
        ),
        Practice::MultiAzForProduction if production => result(
            practice,
            db.multi_az,
            format!("production instance, multi-az: {}", db.multi_az),
            format!("{modify} --multi-az --apply-immediately"),
        ),
        Practice::MultiAzForProduction => result(
            practice,
            true,
            format!(
                "not required: not audited as production (multi-az: {})",
                db.multi_az
            ),
            "",
        ),
        Practice::InUse => in_use(aws, db, options.idle_days).await,
        Practice::BackupRetention => result(
            practice,
            db.backup_retention_days >= MIN_BACKUP_RETENTION_DAYS,
            format!(
                "automated backups kept {} days (at least {MIN_BACKUP_RETENTION_DAYS} wanted)",
                db.backup_retention_days
            ),
            format!(
                "{modify} --backup-retention-period {MIN_BACKUP_RETENTION_DAYS} --apply-immediately"
            ),
        ),
        Practice::Snapshots => snapshots(aws, identifier).await,
        Practice::IamAuthentication => result(
            practice,
            db.iam_auth,
            format!("IAM database authentication: {}", db.iam_auth),
            format!(
                "{modify} --enable-iam-database-authentication --apply-immediately, then \
                 `GRANT rds_iam TO app_user` and connect with tokens from `aws rds \
                 generate-db-auth-token`. Cost: no charge; no restart; a token lasts 15 \
                 minutes, so pooled connections must be re-authenticated, and AWS advises \
                 it below about 200 new connections a second; password logins keep working"
            ),
        ),
        Practice::ManagedMasterSecret => match &db.master_user_secret_arn {
            Some(arn) => result(
                practice,
                true,
                format!("master password kept by Secrets Manager: {arn}"),
                "",
            ),
            None => result(
                practice,
                false,
                "the master password is not managed by Secrets Manager".into(),
                format!("{modify} --manage-master-user-password --apply-immediately"),
            ),
        },
        Practice::SecretRotation => secret_rotation(aws, db, &modify).await,
        Practice::TlsRequired => tls_required(aws, db).await,
        Practice::ScpProtectsProduction
        | Practice::ScpRegionLock
        | Practice::ScpRequiresEncryption
        | Practice::GuardDutyEnabled
        | Practice::CloudTrailLogging => {
            unreachable!("account-wide practices are checked by account_results")
        }
        Practice::ProxyRequiresTls => {
            unreachable!("a proxy's practices are checked by proxy_results")
        }
    };
    if r.outcome == Outcome::Fail && r.auto_fix.is_none() {
        let id = identifier.clone();
        r.auto_fix = match practice {
            Practice::Snapshots => Some(AutoFix::CreateSnapshot { identifier: id }),
            Practice::DeletionProtection => {
                Some(AutoFix::EnableDeletionProtection { identifier: id })
            }
            Practice::MultiAzForProduction => Some(AutoFix::EnableMultiAz { identifier: id }),
            _ => None,
        };
    }
    r
}

/// Practice 1: the instance's region (from its ARN) is an allowed one.
fn region_allowed(aws: &Aws, db: &InstanceStatus, allowed: &[String]) -> PracticeResult {
    let practice = Practice::RegionAllowed;
    let region = db.region().unwrap_or(&aws.region);
    if allowed.is_empty() {
        return unknown(
            practice,
            format!("the instance is in {region}; no allowed regions were given"),
            Fix::text("name the regions the data may be stored in: ")
                .then(Operation::NameAllowedRegions),
        );
    }
    result(
        practice,
        allowed.iter().any(|r| r == region),
        format!(
            "the instance is in {region}; allowed: {}",
            allowed.join(", ")
        ),
        format!(
            "move it: snapshot, `aws rds copy-db-snapshot --source-region {region} --region \
             ALLOWED ...`, restore in the allowed region, then delete {}",
            db.identifier
        ),
    )
}

async fn open_to_world(aws: &Aws, db: &InstanceStatus) -> PracticeResult {
    let practice = Practice::SecurityGroupNotOpenToWorld;
    let port = u16::try_from(db.port.unwrap_or(5432)).unwrap_or(5432);
    let mut open = Vec::new();
    for group in &db.security_group_ids {
        match aws.ec2.describe_security_group_rules(group).await {
            Ok(rules) => open.extend(
                rules
                    .iter()
                    .filter(|r| !r.is_egress && r.covers_tcp_port(port) && r.open_to_world())
                    .map(|r| (group.clone(), r.rule_id.clone(), r.source())),
            ),
            Err(e) => {
                return cannot_check(practice, &e, "grant ec2:DescribeSecurityGroupRules");
            }
        }
    }
    match open.first() {
        None => result(
            practice,
            true,
            format!(
                "no inbound rule of {} admits 0.0.0.0/0 or ::/0 on port {port}",
                if db.security_group_ids.is_empty() {
                    "(no groups)".to_owned()
                } else {
                    db.security_group_ids.join(", ")
                }
            ),
            "",
        ),
        Some((group, rule, _)) => result(
            practice,
            false,
            format!(
                "open to the internet on port {port}: {}",
                open.iter()
                    .map(|(g, r, s)| format!("{r} in {g} admits {s}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Fix::operation(Operation::AllowIp {
                group_id: group.clone(),
                rule_id: rule.clone(),
            }),
        ),
    }
}

/// Whether the instance's parameter group requires TLS (also used before
/// and after creating a replica, which shares its source's group).
pub(crate) async fn tls_required(aws: &Aws, db: &InstanceStatus) -> PracticeResult {
    let practice = Practice::TlsRequired;
    let group = db.parameter_groups.first().cloned().unwrap_or_default();
    let fix = format!(
        "aws rds modify-db-parameter-group --db-parameter-group-name {group} --parameters \
         ParameterName={FORCE_SSL_PARAMETER},ParameterValue=1,ApplyMethod=pending-reboot \
         (a default group cannot be changed: create one and attach it)"
    );
    if group.is_empty() {
        return result(
            practice,
            false,
            "the instance has no parameter group".into(),
            fix,
        );
    }
    let mut value: Option<String> = None;
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .rds
            .describe_db_parameters()
            .db_parameter_group_name(&group)
            .set_marker(marker.clone())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let err = sdk_error("DescribeDBParameters", e);
                // Emulators and restricted roles may not describe the
                // built-in default groups; those default to TLS on 15+.
                if group.starts_with("default.") && db.engine_major().is_some_and(|m| m >= 15) {
                    break;
                }
                return cannot_check(practice, &err, fix);
            }
        };
        if let Some(p) = page
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == Some(FORCE_SSL_PARAMETER))
        {
            value = p.parameter_value().map(str::to_owned);
            break;
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    match value.as_deref() {
        Some("1") => result(
            practice,
            true,
            format!("{FORCE_SSL_PARAMETER} = 1 in {group}"),
            "",
        ),
        Some(other) => result(
            practice,
            false,
            format!(
                "{FORCE_SSL_PARAMETER} = {other} in {group}: connections without TLS are accepted"
            ),
            fix,
        ),
        None if group.starts_with("default.") && db.engine_major().is_some_and(|m| m >= 15) => {
            result(
                practice,
                true,
                format!(
                    "{group} is a default group of PostgreSQL {}, where {FORCE_SSL_PARAMETER} defaults to 1",
                    db.engine_version
                ),
                "",
            )
        }
        None => result(
            practice,
            false,
            format!(
                "{FORCE_SSL_PARAMETER} is not set in {group}: connections without TLS are accepted"
            ),
            fix,
        ),
    }
}
