//! `rds audit`: the results as lines or JSON, the exit code, and `--fix`;
//! and `rds scp-template`, the policy practice 10 asks for.

use std::process::ExitCode;

use anyhow::Context;
use cruddur_db_aws::Aws;

use super::remedy;
use super::{AuditArgs, ScpTemplateArgs};

/// Organizations with the credentials of `profile` (the management
/// account's), at the same endpoint.
pub(super) async fn organizations_as(
    aws: &Aws,
    profile: &str,
) -> anyhow::Result<cruddur_db_aws::JsonApiClient> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .profile_name(profile)
        .region(aws_config::Region::new(aws.region.clone()))
        .load()
        .await;
    let credentials = config
        .credentials_provider()
        .with_context(|| format!("profile `{profile}` gives no credentials"))?;
    Ok(aws.organizations.with_credentials(credentials))
}

pub(super) async fn scp_template(
    aws: &Aws,
    a: ScpTemplateArgs,
    regions: Vec<String>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !regions.is_empty(),
        "name the regions to allow: --allowed-regions eu-west-1,... or CRUDDUR_RDS_ALLOWED_REGIONS"
    );
    let tag = match &a.tag {
        None => None,
        Some(t) => Some(
            t.split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .with_context(|| format!("--tag `{t}` is not KEY=VALUE"))?,
        ),
    };
    let db = cruddur_db_aws::instance_status(aws, &a.identifier).await?;
    let arn = db
        .arn
        .as_deref()
        .with_context(|| format!("RDS reports no ARN for {}", a.identifier))?;
    let policy = cruddur_db_aws::scp::template(arn, tag, &regions);
    println!("{}", serde_json::to_string_pretty(&policy)?);
    Ok(ExitCode::SUCCESS)
}

/// Prints the results as lines, each replica's and each proxy's under a
/// heading.
fn print_results(results: &[cruddur_db_aws::PracticeResult], identifier: &str) {
    use cruddur_db_aws::Outcome;
    let width = cruddur_db_aws::Practice::ALL
        .iter()
        .map(|p| p.name().len())
        .max()
        .unwrap_or(0);
    // The audited instance's and the account's results first; each
    // replica's and each proxy's under a heading, every line naming it.
    let mut heading: Option<&str> = None;
    let (mut replicas, mut proxies) = (0, 0);
    for r in results {
        let other = r.instance.as_deref().filter(|i| *i != identifier);
        if let Some(instance) = other
            && heading != Some(instance)
        {
            if r.practice.about_a_proxy() {
                println!("proxy {instance} (of {identifier}):");
                proxies += 1;
            } else {
                println!("replica {instance} (of {identifier}):");
                replicas += 1;
            }
            heading = Some(instance);
        }
        let detail = match other {
            Some(instance) => format!("{instance}: {}", r.detail),
            None => r.detail.clone(),
        };
        println!(
            "{} {:<width$}  {detail}",
            r.outcome.label(),
            r.practice.name(),
        );
        match r.outcome {
            Outcome::Fail => println!("     {:<width$}  fix: {}", "", remedy::fix_text(&r.fix)),
            Outcome::Unknown => {
                println!("     {:<width$}  to tell: {}", "", remedy::fix_text(&r.fix));
            }
            Outcome::Pass | Outcome::Info => {}
        }
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    println!(
        "{} pass, {} fail, {} unknown, {} informational, of the 15 practices{}",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Unknown),
        count(Outcome::Info),
        match (replicas, proxies) {
            (0, 0) => String::new(),
            (r, p) => format!(
                " ({identifier}{}{})",
                counted(r, "read replica", "read replicas"),
                counted(p, "proxy", "proxies")
            ),
        }
    );
}

/// ` and its N things`, or nothing for none.
fn counted(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => String::new(),
        1 => format!(" and its {one}"),
        n => format!(" and its {n} {many}"),
    }
}

/// One result as `rds audit --json` prints it: the toolkit's result with
/// the fix as text, its operations worded as the CLI's commands (the field
/// is the same string the text output shows).
#[derive(serde::Serialize)]
struct JsonResult<'a> {
    practice: cruddur_db_aws::Practice,
    item: u8,
    instance: Option<&'a str>,
    outcome: cruddur_db_aws::Outcome,
    detail: &'a str,
    fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_fix: Option<&'a cruddur_db_aws::AutoFix>,
}

impl<'a> From<&'a cruddur_db_aws::PracticeResult> for JsonResult<'a> {
    fn from(r: &'a cruddur_db_aws::PracticeResult) -> Self {
        Self {
            practice: r.practice,
            item: r.item,
            instance: r.instance.as_deref(),
            outcome: r.outcome,
            detail: &r.detail,
            fix: remedy::fix_text(&r.fix),
            auto_fix: r.auto_fix.as_ref(),
        }
    }
}

/// 1 on any FAIL, and with `strict` on any UNKNOWN.
fn audit_code(results: &[cruddur_db_aws::PracticeResult], strict: bool) -> ExitCode {
    use cruddur_db_aws::Outcome;
    let bad = results
        .iter()
        .any(|r| r.outcome == Outcome::Fail || (strict && r.outcome == Outcome::Unknown));
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub(super) async fn audit(
    aws: &Aws,
    a: AuditArgs,
    allowed_regions: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let options = cruddur_db_aws::AuditOptions {
        production: a.production,
        allowed_regions,
        idle_days: a.idle_days,
    };
    let results = cruddur_db_aws::audit(aws, &a.identifier, &options).await?;
    if a.json {
        let shown: Vec<JsonResult<'_>> = results.iter().map(JsonResult::from).collect();
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(audit_code(&results, a.strict));
    }
    print_results(&results, &a.identifier);
    if !a.fix {
        return Ok(audit_code(&results, a.strict));
    }

    let mut fixes: Vec<&cruddur_db_aws::AutoFix> = Vec::new();
    for f in results.iter().filter_map(|r| r.auto_fix.as_ref()) {
        if !fixes.contains(&f) {
            fixes.push(f);
        }
    }
    let by_hand: Vec<&cruddur_db_aws::PracticeResult> = results
        .iter()
        .filter(|r| r.outcome == cruddur_db_aws::Outcome::Fail && r.auto_fix.is_none())
        .collect();
    println!();
    if !by_hand.is_empty() {
        println!(
            "not applied by --fix (destructive, costly, or a decision to make; see each fix above):"
        );
        for r in &by_hand {
            match &r.instance {
                Some(i) => println!("  - {} of {i}", r.practice),
                None => println!("  - {}", r.practice),
            }
        }
    }
    if fixes.is_empty() {
        println!("no fix to apply");
        return Ok(audit_code(&results, a.strict));
    }
    println!("fixes to apply (safe, reversible):");
    for f in &fixes {
        println!("  - {}", remedy::auto_fix_text(f));
    }
    if !a.yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            println!(
                "nothing applied: standard input is not a terminal to ask on; pass -y to apply \
                 the fixes above"
            );
            return Ok(audit_code(&results, a.strict));
        }
        print!("apply these {} fixes? [y/N] ", fixes.len());
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            println!("nothing applied: not confirmed");
            return Ok(audit_code(&results, a.strict));
        }
    }
    let mut failed = 0;
    for f in &fixes {
        match cruddur_db_aws::apply_fix(aws, f).await {
            Ok(applied) => println!(
                "applied: {}{}",
                applied.read_back,
                if applied.in_effect {
                    ""
                } else {
                    " (not yet in effect)"
                }
            ),
            Err(e) => {
                failed += 1;
                println!("not applied: {f}: {e}");
            }
        }
    }
    println!();
    println!("audit after the fixes:");
    let after = cruddur_db_aws::audit(aws, &a.identifier, &options).await?;
    print_results(&after, &a.identifier);
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        audit_code(&after, a.strict)
    })
}
