//! `seed`: the reference rows, or bulk synthetic data through COPY.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

use crate::DatabaseArgs;
use crate::output;
use crate::target::Target;
use cruddur_db::Settings;
use cruddur_db::migrations::ensure_current;
use cruddur_db::repo::seed::has_data;
use cruddur_db::repo::synthetic::{SeedProgress, SyntheticSeed, seed_synthetic};

/// Options of `seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Load USERS users and ACTIVITIES activities of generated data with
    /// COPY instead of the reference seed (a progress bar shows on a
    /// terminal).
    #[arg(long, num_args = 2, value_names = ["USERS", "ACTIVITIES"])]
    pub synthetic: Option<Vec<u64>>,

    /// The random seed of --synthetic: the same value gives the same rows.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "synthetic")]
    pub rng_seed: u64,
}

/// Runs `seed`.
pub fn run(args: SeedArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?.session("seeding")?;
    let database = target.database()?;
    let Some(sizes) = args.synthetic else {
        let (report, _) = target
            .repository()?
            .seed_reference()
            .with_context(|| format!("seeding `{database}`"))?;
        if report.inserted_anything() {
            output::success(&format!(
                "seeded `{database}`: {} user(s), {} activit{}",
                report.users,
                report.activities,
                if report.activities == 1 { "y" } else { "ies" }
            ));
        } else {
            output::result(&format!(
                "`{database}` already holds the reference seed; nothing to do"
            ));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let [users, activities] = sizes[..] else {
        anyhow::bail!("--synthetic takes two numbers: USERS ACTIVITIES");
    };
    // Bulk loading is not an operation of the repository: COPY on one
    // connection, whose checks (below) are the ones the load relies on.
    let conn = &mut target.connect()?;
    ensure_current(conn).with_context(|| format!("seeding `{database}`"))?;
    if has_data(conn)? {
        let action = "bulk-seed the non-empty database";
        // The checks run on a connection of their own, which then carries
        // the load, so that what was checked is what is written to.
        let question = |name: &str| {
            format!(
                "Add {users} user(s) and {activities} activities of generated data to the non-empty `{name}` ({})?",
                target.url()
            )
        };
        let Some((checked, _)) = target.check_and_confirm(db, settings, action, question)? else {
            anyhow::bail!("database `{database}` does not exist");
        };
        *conn = checked;
    }
    let spec = SyntheticSeed {
        users,
        activities,
        rng_seed: args.rng_seed,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(users + activities);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg:10} [{bar:40}] {human_pos}/{human_len} rows ({rate}, {eta})",
        ) {
            // indicatif's own `{per_sec}` prints four decimals
            // (`67,764.6344/s`); a whole number of rows reads better.
            bar.set_style(
                style
                    .with_key(
                        "rate",
                        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&rows_per_sec(state.per_sec()));
                        },
                    )
                    .progress_chars("=> "),
            );
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = |p: SeedProgress| {
        bar.set_message(if p.activities == 0 {
            "users"
        } else {
            "activities"
        });
        bar.set_position(p.users + p.activities);
    };
    let started = std::time::Instant::now();
    let result = seed_synthetic(conn, spec, &progress);
    bar.finish_and_clear();
    let report = match result {
        Err(cruddur_db::Error::SeedAlreadyLoaded { rng_seed }) => anyhow::bail!(
            "`{database}` already holds the synthetic seed of --rng-seed {rng_seed}; nothing was \
             written: pass another value (e.g. --rng-seed {}) to add a fresh batch",
            rng_seed.wrapping_add(1)
        ),
        other => other.with_context(|| format!("bulk-seeding `{database}`"))?,
    };
    output::success(&format!(
        "seeded `{database}` with {} user(s) and {} activities (rng seed {}) in {:.1}s",
        report.users,
        report.activities,
        args.rng_seed,
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

/// A rate for the progress bar: a whole number of rows per second with
/// thousands separators, e.g. `67,765 rows/s`.
fn rows_per_sec(per_sec: f64) -> String {
    let whole = if per_sec.is_finite() && per_sec > 0.0 {
        // Saturates: rates are far below u64::MAX.
        per_sec.round() as u64
    } else {
        0
    };
    format!("{} rows/s", HumanCount(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_rows_per_second() {
        for (per_sec, shown) in [
            (67_764.634_4, "67,765 rows/s"),
            (0.4, "0 rows/s"),
            (999.5, "1,000 rows/s"),
            (1_234_567.0, "1,234,567 rows/s"),
            (f64::NAN, "0 rows/s"),
            (f64::INFINITY, "0 rows/s"),
        ] {
            assert_eq!(rows_per_sec(per_sec), shown, "{per_sec}");
        }
    }
}
