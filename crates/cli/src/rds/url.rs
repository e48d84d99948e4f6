//! `rds url`: the production URL (and `.env`), or the replicas' URLs.

use std::process::ExitCode;

use anyhow::Context;
use cruddur_db_aws::Aws;

use super::UrlArgs;

pub(super) async fn url(aws: &Aws, a: UrlArgs) -> anyhow::Result<ExitCode> {
    let root = std::path::absolute(&a.sslrootcert)
        .with_context(|| format!("cannot resolve {}", a.sslrootcert.display()))?;
    if !root.exists() {
        eprintln!(
            "note: {} does not exist yet; download the RDS CA bundle with\n  curl -o {} \
             https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem",
            root.display(),
            root.display()
        );
    }
    let root_text = root.to_string_lossy();
    if !a.replicas.is_empty() {
        return replica_urls(aws, &a.replicas, &root_text, a.show_password).await;
    }
    let production = cruddur_db_aws::production_url(aws, &a.identifier, &root_text).await?;
    if a.show_password {
        println!("{}", production.url.expose());
    } else {
        println!("{}", production.url);
    }
    if a.write_env {
        let w = crate::env_file::write_env_var(
            &a.env_file,
            "PROD_CONNECTION_URL",
            production.url.expose(),
        )?;
        println!(
            "{} PROD_CONNECTION_URL in {} (mode 0600)",
            if w.replaced { "replaced" } else { "wrote" },
            a.env_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line: the replicas' URLs, comma-separated (redacted unless
/// `show_password`), as `DATABASE_REPLICA_URLS` takes them.
async fn replica_urls(
    aws: &Aws,
    replicas: &[String],
    sslrootcert: &str,
    show_password: bool,
) -> anyhow::Result<ExitCode> {
    let mut urls = Vec::with_capacity(replicas.len());
    for id in replicas {
        let url = cruddur_db_aws::replica_url(aws, id, sslrootcert).await?;
        urls.push(if show_password {
            url.url.expose().to_owned()
        } else {
            url.url.to_string()
        });
    }
    println!("{}", urls.join(","));
    Ok(ExitCode::SUCCESS)
}
