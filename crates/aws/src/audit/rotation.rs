//! Practice 15, second half: the master secret's rotation is on and
//! recent enough for its schedule.

use chrono::{DateTime, Utc};

use super::{
    AutoFix, Outcome, Practice, PracticeResult, ROTATION_DAYS, cannot_check, outcome, result,
};
use crate::Aws;
use crate::rds::InstanceStatus;
use crate::sdk_error;

/// Practice 15, second half: the master secret's rotation is on and its
/// last rotation is within the schedule.
pub(super) async fn secret_rotation(
    aws: &Aws,
    db: &InstanceStatus,
    modify: &str,
) -> PracticeResult {
    let practice = Practice::SecretRotation;
    let Some(arn) = &db.master_user_secret_arn else {
        return result(
            practice,
            false,
            "no managed master secret to rotate".into(),
            format!("{modify} --manage-master-user-password --apply-immediately"),
        );
    };
    let fix = format!(
        "aws secretsmanager rotate-secret --secret-id {arn} --rotation-rules \
         AutomaticallyAfterDays={ROTATION_DAYS}"
    );
    let secret = match aws.secrets.describe_secret().secret_id(arn).send().await {
        Ok(s) => s,
        Err(e) => {
            return cannot_check(
                practice,
                &sdk_error("DescribeSecret", e),
                "grant secretsmanager:DescribeSecret",
            );
        }
    };
    let date = |d: Option<&aws_sdk_secretsmanager::primitives::DateTime>| {
        d.and_then(|d| DateTime::<Utc>::from_timestamp(d.secs(), 0))
    };
    let rules = secret.rotation_rules();
    let schedule = Schedule {
        days: rules.and_then(|r| r.automatically_after_days()),
        expression: rules
            .and_then(|r| r.schedule_expression())
            .map(str::to_owned),
    };
    let (o, detail) = judge_rotation(
        secret.rotation_enabled() == Some(true),
        &schedule,
        date(secret.last_rotated_date()),
        date(secret.created_date()),
        Utc::now(),
    );
    let mut r = outcome(practice, o, format!("{detail} ({arn})"), fix.into());
    if o == Outcome::Fail && secret.rotation_enabled() != Some(true) {
        r.auto_fix = Some(AutoFix::EnableRotation {
            secret_arn: arn.clone(),
        });
    }
    r
}

/// A secret's rotation schedule, as Secrets Manager reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Schedule {
    days: Option<i64>,
    expression: Option<String>,
}

impl Schedule {
    /// The rotation period in hours: `AutomaticallyAfterDays`, or a
    /// `rate(N days)` / `rate(N hours)` expression; `None` for a cron
    /// expression, which is not read.
    fn hours(&self) -> Option<i64> {
        if let Some(d) = self.days.filter(|d| *d > 0) {
            return Some(d * 24);
        }
        let inner = self
            .expression
            .as_deref()?
            .trim()
            .strip_prefix("rate(")?
            .strip_suffix(')')?;
        let (n, unit) = inner.trim().split_once(' ')?;
        let n: i64 = n.parse().ok()?;
        match unit.trim() {
            "day" | "days" => Some(n * 24),
            "hour" | "hours" => Some(n),
            _ => None,
        }
    }
}

/// The rotation verdict. The last rotation (or, before the first, the
/// secret's creation) must be no older than the period plus one day, the
/// longest a rotation window may run.
fn judge_rotation(
    enabled: bool,
    schedule: &Schedule,
    last_rotated: Option<DateTime<Utc>>,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Outcome, String) {
    if !enabled {
        return (Outcome::Fail, "rotation is off".into());
    }
    let Some(hours) = schedule.hours() else {
        return (
            Outcome::Unknown,
            format!(
                "rotation is on with the schedule {}, which is not read; last rotated {}",
                schedule.expression.as_deref().unwrap_or("(none)"),
                last_rotated.map_or_else(|| "never".to_owned(), |d| d.to_rfc3339())
            ),
        );
    };
    let every = if hours % 24 == 0 {
        format!("every {} days", hours / 24)
    } else {
        format!("every {hours} hours")
    };
    let (since, what) = match (last_rotated, created) {
        (Some(d), _) => (d, "last rotated"),
        (None, Some(d)) => (d, "never rotated; created"),
        (None, None) => {
            return (
                Outcome::Unknown,
                format!("rotation is on, {every}; Secrets Manager reports no dates"),
            );
        }
    };
    let age = now - since;
    let due = chrono::Duration::hours(hours + 24);
    let detail = format!(
        "rotation is on, {every}; {what} {} ({} hours ago)",
        since.format("%Y-%m-%d %H:%M UTC"),
        age.num_hours()
    );
    if age <= due {
        (Outcome::Pass, detail)
    } else {
        (Outcome::Fail, format!("{detail}: overdue"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_must_be_on_and_recent() {
        let now = DateTime::<Utc>::from_timestamp(2_000_000_000, 0).unwrap();
        let days_ago = |d: i64| Some(now - chrono::Duration::days(d));
        let weekly = Schedule {
            days: Some(7),
            expression: None,
        };
        let rate = Schedule {
            days: None,
            expression: Some("rate(4 hours)".into()),
        };
        let cron = Schedule {
            days: None,
            expression: Some("cron(0 16 1,15 * ? *)".into()),
        };
        let cases = [
            (
                "off",
                false,
                &weekly,
                days_ago(1),
                days_ago(30),
                Outcome::Fail,
            ),
            (
                "on time",
                true,
                &weekly,
                days_ago(3),
                days_ago(30),
                Outcome::Pass,
            ),
            (
                "a day late is a window",
                true,
                &weekly,
                days_ago(8),
                None,
                Outcome::Pass,
            ),
            (
                "overdue",
                true,
                &weekly,
                days_ago(9),
                days_ago(30),
                Outcome::Fail,
            ),
            (
                "new, not yet due",
                true,
                &weekly,
                None,
                days_ago(2),
                Outcome::Pass,
            ),
            (
                "never rotated",
                true,
                &weekly,
                None,
                days_ago(20),
                Outcome::Fail,
            ),
            ("hourly rate", true, &rate, days_ago(2), None, Outcome::Fail),
            (
                "cron is not read",
                true,
                &cron,
                days_ago(1),
                None,
                Outcome::Unknown,
            ),
            ("no dates", true, &weekly, None, None, Outcome::Unknown),
        ];
        for (name, enabled, schedule, last, created, want) in cases {
            let (got, detail) = judge_rotation(enabled, schedule, last, created, now);
            assert_eq!(got, want, "{name}: {detail}");
        }
    }
}
