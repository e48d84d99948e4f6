//! Practice 9, "delete a database that is not used, or snapshot it":
//! whether CloudWatch shows connections, and whether a manual snapshot
//! exists.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Fix, Operation, Outcome, Practice, PracticeResult, cannot_check, outcome, result};
use crate::Aws;
use crate::rds::InstanceStatus;
use crate::sdk_error;

/// Practice 9: whether CloudWatch's `DatabaseConnections` shows any
/// connection within the last `days` days (daily maxima).
pub(super) async fn in_use(aws: &Aws, db: &InstanceStatus, days: u32) -> PracticeResult {
    let practice = Practice::InUse;
    let id = &db.identifier;
    let period = 86_400_i64;
    let end = Utc::now().timestamp();
    let start = end - i64::from(days) * period;
    let input = json!({
        "Namespace": "AWS/RDS",
        "MetricName": "DatabaseConnections",
        "Dimensions": [{ "Name": "DBInstanceIdentifier", "Value": id }],
        "StartTime": start,
        "EndTime": end,
        "Period": period,
        "Statistics": ["Maximum"],
    });
    let answer = match aws.cloudwatch.call("GetMetricStatistics", &input).await {
        Ok(a) => a,
        Err(e) => return cannot_check(practice, &e, "grant cloudwatch:GetMetricStatistics"),
    };
    let points: Vec<(f64, f64)> = answer
        .get("Datapoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get("Timestamp")?.as_f64()?, p.get("Maximum")?.as_f64()?)))
        .collect();
    let (o, detail) = judge_use(&points, start, period, days);
    let fix = match o {
        Outcome::Fail => Fix::text("snapshot and delete: ")
            .then(Operation::Snapshot {
                identifier: id.clone(),
            })
            .then_text(format!(
                "; aws rds modify-db-instance --db-instance-identifier {id} \
                 --no-deletion-protection --apply-immediately; "
            ))
            .then(Operation::Delete {
                identifier: id.clone(),
            })
            .then_text(" (restore from the snapshot when it is needed again)"),
        _ => Fix::text(format!(
            "audit again once the instance has {days} days of metrics, or "
        ))
        .then(Operation::ShorterIdleWindow)
        .then_text(format!(
            "; or `aws cloudwatch get-metric-statistics --namespace AWS/RDS \
             --metric-name DatabaseConnections --dimensions Name=DBInstanceIdentifier,Value={id} ...`"
        )),
    };
    outcome(practice, o, detail, fix)
}

/// The idle verdict on daily `(timestamp, maximum)` points of a window of
/// `days` days from `start`: any connection passes; no data is unknown; all
/// zero fails only when the data reaches back to the window's first day
/// (an instance younger than the window is not yet idle).
fn judge_use(points: &[(f64, f64)], start: i64, period: i64, days: u32) -> (Outcome, String) {
    let when = |t: f64| {
        DateTime::<Utc>::from_timestamp(t as i64, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d").to_string())
    };
    if let Some((t, max)) = points
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, m)| *m > 0.0)
    {
        return (
            Outcome::Pass,
            format!(
                "up to {max} connections within the last {days} days (most on {})",
                when(t)
            ),
        );
    }
    let Some(earliest) = points.iter().map(|p| p.0).reduce(f64::min) else {
        return (
            Outcome::Unknown,
            format!(
                "CloudWatch has no DatabaseConnections data for the last {days} days (a \
                 stopped or new instance publishes none)"
            ),
        );
    };
    if earliest > (start + period) as f64 {
        return (
            Outcome::Unknown,
            format!(
                "no connections, but data only since {}: less than the {days}-day window",
                when(earliest)
            ),
        );
    }
    (
        Outcome::Fail,
        format!(
            "no connections in the last {days} days ({} daily data points, all 0)",
            points.len()
        ),
    )
}

pub(super) async fn snapshots(aws: &Aws, identifier: &str) -> PracticeResult {
    let practice = Practice::Snapshots;
    let fix = Fix::operation(Operation::Snapshot {
        identifier: identifier.to_owned(),
    });
    let mut available = (0, 0);
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .rds
            .describe_db_snapshots()
            .db_instance_identifier(identifier)
            .set_marker(marker.clone())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => return cannot_check(practice, &sdk_error("DescribeDBSnapshots", e), fix),
        };
        for s in page.db_snapshots() {
            if s.status() == Some("available") {
                if s.snapshot_type() == Some("manual") {
                    available.0 += 1;
                } else {
                    available.1 += 1;
                }
            }
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    let (manual, automated) = available;
    result(
        practice,
        manual > 0,
        format!(
            "available snapshots: {manual} manual, {automated} automated; a manual one, which \
             outlives the instance, is wanted"
        ),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_needs_a_whole_window_of_zeros() {
        let day = 86_400;
        let start = 1_000_000;
        let cases: [(&[(f64, f64)], Outcome); 5] = [
            (&[], Outcome::Unknown),
            (
                &[((start + day) as f64, 0.0), ((start + 5 * day) as f64, 2.0)],
                Outcome::Pass,
            ),
            (
                &[
                    ((start + 100) as f64, 0.0),
                    ((start + 13 * day) as f64, 0.0),
                ],
                Outcome::Fail,
            ),
            // Data from the third day on only: younger than the window.
            (&[((start + 3 * day) as f64, 0.0)], Outcome::Unknown),
            (&[((start + 3 * day) as f64, 1.0)], Outcome::Pass),
        ];
        for (points, want) in cases {
            let (got, detail) = judge_use(points, start, day, 14);
            assert_eq!(got, want, "{points:?}: {detail}");
        }
    }
}
