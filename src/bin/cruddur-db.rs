//! `cruddur-db`: the database lifecycle of Cruddur.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--database-url", url, "migrate", "run"] => migrate(url),
        _ => Err(anyhow::anyhow!(
            "usage: cruddur-db --database-url URL migrate run"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(url: &str) -> anyhow::Result<()> {
    let url = cruddur_db::DatabaseUrl::parse(url)?;
    let applied = cruddur_db::run_migrations(&mut cruddur_db::establish(&url)?)?;
    println!("applied {} migration(s)", applied.len());
    Ok(())
}
