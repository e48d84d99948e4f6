//! Practice 10 of the original list: service control policies that deny
//! modifying and deleting the production database, lock the region, and
//! require encryption. [`effective_policies`] reads the SCPs attached to an
//! account and to each organizational unit above it, [`judge`] decides
//! whether they deny what the practice asks, and [`template`] writes a
//! policy that does.
//!
//! The judgement reads the policies' text; it does not simulate AWS's
//! evaluation. A statement counts only when every part of it is understood
//! (its actions, resources and conditions); one that is not is never taken
//! as a denial.

use serde_json::{Value, json};

use super::Aws;
use crate::error::{Error, Result};

/// The actions practice 10 wants denied on the production instance.
pub const PRODUCTION_ACTIONS: [&str; 2] = ["rds:DeleteDBInstance", "rds:ModifyDBInstance"];

/// Services a region lock must leave alone: they are global, served from
/// us-east-1 whatever the region (AWS's example "Deny access to AWS based on
/// the requested AWS Region").
pub const GLOBAL_SERVICE_ACTIONS: [&str; 18] = [
    "a4b:*",
    "acm:*",
    "aws-marketplace-management:*",
    "aws-marketplace:*",
    "aws-portal:*",
    "budgets:*",
    "ce:*",
    "chime:*",
    "cloudfront:*",
    "config:*",
    "cur:*",
    "directconnect:*",
    "globalaccelerator:*",
    "health:*",
    "iam:*",
    "organizations:*",
    "route53:*",
    "sts:*",
];

/// One service control policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its id (`p-...`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where it is attached: the account, an OU (`ou-...`) or the root (`r-...`).
    pub target: String,
    /// The policy document.
    pub content: String,
}

/// The SCPs that apply to `account_id`: those attached to it, to each OU
/// above it and to the root. Also says whether `account_id` is the
/// organization's management account, to which SCPs never apply.
pub async fn effective_policies(aws: &Aws, account_id: &str) -> Result<(Vec<Policy>, bool)> {
    let org = aws
        .organizations
        .call("DescribeOrganization", &json!({}))
        .await?;
    let management = org
        .pointer("/Organization/MasterAccountId")
        .and_then(Value::as_str)
        == Some(account_id);
    let mut targets = vec![account_id.to_owned()];
    let mut child = account_id.to_owned();
    // An organization is at most five OUs deep; the bound guards against a
    // cycle in a malformed answer.
    for _ in 0..8 {
        let parents = aws
            .organizations
            .call("ListParents", &json!({ "ChildId": child }))
            .await?;
        let Some(parent) = parents.pointer("/Parents/0") else {
            break;
        };
        let id = parent.get("Id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() {
            break;
        }
        targets.push(id.to_owned());
        if parent.get("Type").and_then(Value::as_str) == Some("ROOT") {
            break;
        }
        child = id.to_owned();
    }
    let mut policies: Vec<Policy> = Vec::new();
    for target in &targets {
        let mut token: Option<String> = None;
        loop {
            let mut input = json!({ "TargetId": target, "Filter": "SERVICE_CONTROL_POLICY" });
            if let Some(t) = &token {
                input["NextToken"] = json!(t);
            }
            let page = aws
                .organizations
                .call("ListPoliciesForTarget", &input)
                .await?;
            for summary in page
                .get("Policies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = summary.get("Id").and_then(Value::as_str) else {
                    continue;
                };
                if policies.iter().any(|p| p.id == id) {
                    continue;
                }
                let described = aws
                    .organizations
                    .call("DescribePolicy", &json!({ "PolicyId": id }))
                    .await?;
                let content = described
                    .pointer("/Policy/Content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::Api {
                        source: None,
                        operation: "DescribePolicy".into(),
                        code: None,
                        message: format!("policy {id} has no content"),
                    })?;
                policies.push(Policy {
                    id: id.to_owned(),
                    name: summary
                        .get("Name")
                        .and_then(Value::as_str)
                        .unwrap_or(id)
                        .to_owned(),
                    target: target.clone(),
                    content: content.to_owned(),
                });
            }
            match page.get("NextToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    Ok((policies, management))
}

/// What the policies are judged against: the production instance.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    /// Its ARN.
    pub arn: &'a str,
    /// Its tags.
    pub tags: &'a [(String, String)],
}

/// The verdict on one of the three parts of practice 10: the policy and
/// statement that satisfy it, or why none does.
pub type Verdict = std::result::Result<String, String>;

/// The three parts of practice 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Deleting and modifying the production instance is denied.
    pub protects_production: Verdict,
    /// Requests outside the allowed regions are denied.
    pub region_lock: Verdict,
    /// Creating an unencrypted instance is denied.
    pub requires_encryption: Verdict,
}

/// Judges `policies` for `instance`. `allowed_regions`, when not empty,
/// is what a region lock may admit at most.
pub fn judge(policies: &[Policy], instance: Instance<'_>, allowed_regions: &[String]) -> Judgement {
    let mut statements = Vec::new();
    let mut unreadable = Vec::new();
    for p in policies {
        match serde_json::from_str::<Value>(&p.content) {
            Ok(doc) => {
                let list = match doc.get("Statement") {
                    Some(Value::Array(a)) => a.clone(),
                    Some(s @ Value::Object(_)) => vec![s.clone()],
                    _ => Vec::new(),
                };
                statements.extend(list.into_iter().map(|s| (p, s)));
            }
            Err(e) => unreadable.push(format!("{} ({e})", p.name)),
        }
    }
    let denies = |s: &Value| s.get("Effect").and_then(Value::as_str) == Some("Deny");
    let named = |p: &Policy, s: &Value| match s.get("Sid").and_then(Value::as_str) {
        Some(sid) => format!(
            "policy {} ({}, on {}), statement {sid}",
            p.name, p.id, p.target
        ),
        None => format!("policy {} ({}, on {})", p.name, p.id, p.target),
    };
    let none = |what: &str| {
        let mut reason = format!(
            "none of the {} SCPs applying to the account {what}",
            policies.len()
        );
        if !unreadable.is_empty() {
            reason.push_str(&format!(" (not JSON: {})", unreadable.join(", ")));
        }
        reason
    };

    let tag_context: Vec<(String, String)> = instance
        .tags
        .iter()
        .flat_map(|(k, v)| {
            [
                (format!("aws:resourcetag/{}", k.to_lowercase()), v.clone()),
                (format!("rds:db-tag/{}", k.to_lowercase()), v.clone()),
            ]
        })
        .collect();
    let protects = statements.iter().find(|(_, s)| {
        denies(s)
            && PRODUCTION_ACTIONS
                .iter()
                .all(|a| covers_action(s, a) && covers_resource(s, instance.arn))
            && conditions_hold(s.get("Condition"), &tag_context)
    });
    let protects_production = match protects {
        Some((p, s)) => Ok(format!(
            "{} denies {} on {}",
            named(p, s),
            PRODUCTION_ACTIONS.join(" and "),
            instance.arn
        )),
        None => Err(none(&format!(
            "denies {} on {} (with its tags {})",
            PRODUCTION_ACTIONS.join(" and "),
            instance.arn,
            if instance.tags.is_empty() {
                "none".to_owned()
            } else {
                instance
                    .tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))),
    };

    let mut region_lock = Err(none(
        "denies rds:CreateDBInstance when aws:RequestedRegion is not an allowed one",
    ));
    for (p, s) in &statements {
        if !(denies(s) && covers_action(s, "rds:CreateDBInstance") && covers_resource(s, "*")) {
            continue;
        }
        let Some(regions) = region_condition(s.get("Condition")) else {
            continue;
        };
        let extra: Vec<&String> = regions
            .iter()
            .filter(|r| !allowed_regions.is_empty() && !allowed_regions.contains(r))
            .collect();
        if extra.is_empty() {
            region_lock = Ok(format!(
                "{} denies every region but {}",
                named(p, s),
                regions.join(", ")
            ));
            break;
        }
        region_lock = Err(format!(
            "{} locks the regions to {}, but {} is not among the allowed regions ({})",
            named(p, s),
            regions.join(", "),
            extra
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            allowed_regions.join(", ")
        ));
    }

    let encryption = statements.iter().find(|(_, s)| {
        denies(s)
            && covers_action(s, "rds:CreateDBInstance")
            && covers_resource(s, "*")
            && denies_unencrypted(s.get("Condition"))
    });
    let requires_encryption = match encryption {
        Some((p, s)) => Ok(format!(
            "{} denies rds:CreateDBInstance when rds:StorageEncrypted is false",
            named(p, s)
        )),
        None => Err(none(
            "denies rds:CreateDBInstance when rds:StorageEncrypted is false",
        )),
    };
    Judgement {
        protects_production,
        region_lock,
        requires_encryption,
    }
}

/// A policy that satisfies practice 10: deletion and modification of the
/// instance `arn` (or, with `tag`, of every instance carrying it) denied,
/// every region but `regions` denied (global services excepted), and
/// unencrypted instances denied. Ready for `aws organizations
/// create-policy --type SERVICE_CONTROL_POLICY --content file://...`.
pub fn template(arn: &str, tag: Option<(&str, &str)>, regions: &[String]) -> Value {
    let mut production = json!({
        "Sid": "DenyProductionDatabaseChanges",
        "Effect": "Deny",
        "Action": PRODUCTION_ACTIONS,
        "Resource": arn,
    });
    if let Some((key, value)) = tag {
        production["Resource"] = json!("*");
        production["Condition"] =
            json!({ "StringEquals": { format!("aws:ResourceTag/{key}"): value } });
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [
            production,
            {
                "Sid": "DenyOtherRegions",
                "Effect": "Deny",
                "NotAction": GLOBAL_SERVICE_ACTIONS,
                "Resource": "*",
                "Condition": { "StringNotEquals": { "aws:RequestedRegion": regions } }
            },
            {
                "Sid": "DenyUnencryptedDatabases",
                "Effect": "Deny",
                "Action": ["rds:CreateDBInstance", "rds:CreateDBCluster"],
                "Resource": "*",
                "Condition": { "Bool": { "rds:StorageEncrypted": "false" } }
            }
        ]
    })
}

/// A string or a list of strings.
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>(),
        Value::Bool(b) => Some(vec![b.to_string()]),
        _ => None,
    }
}

/// Whether the statement's actions take in `action`.
fn covers_action(s: &Value, action: &str) -> bool {
    let lower = action.to_lowercase();
    let matches = |list: Vec<String>| list.iter().any(|p| glob(&p.to_lowercase(), &lower));
    match (strings(s.get("Action")), strings(s.get("NotAction"))) {
        (Some(list), None) => matches(list),
        (None, Some(list)) => !matches(list),
        _ => false,
    }
}

/// Whether the statement's resources take in `arn` (`*`: every resource).
fn covers_resource(s: &Value, arn: &str) -> bool {
    let matches = |list: Vec<String>| {
        list.iter()
            .any(|p| p == "*" || (arn != "*" && glob(p, arn)))
    };
    match (strings(s.get("Resource")), strings(s.get("NotResource"))) {
        (Some(list), None) => matches(list),
        (None, Some(list)) => arn != "*" && !matches(list),
        // SCPs require Resource; a statement without one is not understood.
        _ => false,
    }
}

/// Whether every condition of a production-protecting statement holds for
/// an instance with `tags` (lower-cased keys `aws:resourcetag/k` and
/// `rds:db-tag/k`). Only string equality and likeness on those keys are
/// understood; anything else is not taken as holding.
fn conditions_hold(condition: Option<&Value>, tags: &[(String, String)]) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    let Some(ops) = condition.as_object() else {
        return false;
    };
    ops.iter().all(|(op, keys)| {
        let Some(keys) = keys.as_object() else {
            return false;
        };
        let op = op.trim_end_matches("IfExists");
        keys.iter().all(|(key, values)| {
            let Some(values) = strings(Some(values)) else {
                return false;
            };
            let key = key.to_lowercase();
            let Some((_, actual)) = tags.iter().find(|(k, _)| *k == key) else {
                return false;
            };
            match op {
                "StringEquals" => values.iter().any(|v| v == actual),
                "StringEqualsIgnoreCase" => values.iter().any(|v| v.eq_ignore_ascii_case(actual)),
                "StringLike" => values.iter().any(|v| glob(v, actual)),
                _ => false,
            }
        })
    })
}

/// The regions of a `StringNotEquals` (or `StringNotEqualsIgnoreCase`,
/// `StringNotLike`) on `aws:RequestedRegion`, when that is the statement's
/// only condition.
fn region_condition(condition: Option<&Value>) -> Option<Vec<String>> {
    let ops = condition?.as_object()?;
    if ops.len() != 1 {
        return None;
    }
    let (op, keys) = ops.iter().next()?;
    if !matches!(
        op.as_str(),
        "StringNotEquals" | "StringNotEqualsIgnoreCase" | "StringNotLike"
    ) {
        return None;
    }
    let keys = keys.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (key, values) = keys.iter().next()?;
    if !key.eq_ignore_ascii_case("aws:RequestedRegion") {
        return None;
    }
    let mut regions = strings(Some(values))?;
    regions.sort();
    Some(regions)
}

/// Whether the statement's only condition is `rds:StorageEncrypted` false.
fn denies_unencrypted(condition: Option<&Value>) -> bool {
    let Some(ops) = condition.and_then(Value::as_object) else {
        return false;
    };
    ops.len() == 1
        && ops.iter().all(|(op, keys)| {
            matches!(op.as_str(), "Bool" | "BoolIfExists")
                && keys.as_object().is_some_and(|k| {
                    k.len() == 1
                        && k.iter().all(|(key, v)| {
                            key.eq_ignore_ascii_case("rds:StorageEncrypted")
                                && strings(Some(v)).is_some_and(|vs| {
                                    vs.len() == 1 && vs[0].eq_ignore_ascii_case("false")
                                })
                        })
                })
        })
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests;
