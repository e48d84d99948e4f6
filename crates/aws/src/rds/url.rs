//! The connection URL: the instance's endpoint with the master
//! credentials from its managed secret.

use cruddur_db::DatabaseUrl;

use super::{DEFAULT_PORT, InstanceStatus, instance_status};
use crate::error::{Error, Remedy, Result};
use crate::{Aws, sdk_error};

/// The production connection URL and where its parts came from.
#[derive(Debug, Clone)]
pub struct ProductionUrl {
    /// The URL; its `Display` hides the password.
    pub url: DatabaseUrl,
    /// The instance whose endpoint the URL names.
    pub identifier: String,
    /// The secret the credentials came from.
    pub secret_arn: String,
    /// For a read replica, its source, whose secret and database it uses.
    pub replica_of: Option<String>,
}

#[derive(serde::Deserialize)]
struct MasterSecret {
    username: String,
    password: String,
}

/// Builds `postgresql://USER:PASSWORD@ENDPOINT:PORT/DB?sslmode=verify-full&sslrootcert=...`
/// from the instance's endpoint and its Secrets Manager master secret
/// (`{"username", "password"}`). `sslrootcert` is the path of the RDS CA
/// bundle (`global-bundle.pem`), written into the URL as given. A read
/// replica is refused: its URL is [`replica_url`](crate::replica::replica_url).
pub async fn production_url(
    aws: &Aws,
    identifier: &str,
    sslrootcert: &str,
) -> Result<ProductionUrl> {
    let status = instance_status(aws, identifier).await?;
    if let Some(source) = &status.replica_of {
        return Err(Error::Refused {
            action: format!("build a primary URL for `{identifier}`"),
            reason: format!(
                "it is a read replica of `{source}`, whose credentials it shares, and has a \
                 replica's URL"
            ),
            remedy: Some(Remedy::ReplicaUrl {
                identifier: identifier.to_owned(),
            }),
        });
    }
    url_with_credentials_of(aws, &status, &status, sslrootcert).await
}

/// The URL of `endpoint`'s address with the master credentials and the
/// database of `owner` (the same instance, or a replica's source).
pub(crate) async fn url_with_credentials_of(
    aws: &Aws,
    endpoint: &InstanceStatus,
    owner: &InstanceStatus,
    sslrootcert: &str,
) -> Result<ProductionUrl> {
    let identifier = &endpoint.identifier;
    let host = endpoint.endpoint.clone().ok_or_else(|| Error::Api {
        source: None,
        operation: "DescribeDBInstances".into(),
        code: None,
        message: format!(
            "instance `{identifier}` is {} and has no endpoint yet; retry when it is available",
            endpoint.status
        ),
    })?;
    let port = endpoint.port.unwrap_or(i32::from(DEFAULT_PORT));
    let secret_arn = owner
        .master_user_secret_arn
        .clone()
        .ok_or_else(|| Error::Refused {
            action: format!("build a URL for `{identifier}`"),
            reason: format!(
                "the master password of `{}` is not managed by Secrets Manager; turn that on \
                 with `aws rds modify-db-instance --db-instance-identifier {} \
                 --manage-master-user-password --apply-immediately`",
                owner.identifier, owner.identifier
            ),
            remedy: None,
        })?;
    let secret = master_secret(aws, &secret_arn).await?;
    let database = owner.db_name.clone().unwrap_or_else(|| "postgres".into());
    let port = port.to_string();
    let url = DatabaseUrl::from_params(&[
        ("host", &host),
        ("port", &port),
        ("user", &secret.username),
        ("password", &secret.password),
        ("dbname", &database),
        ("sslmode", "verify-full"),
        ("sslrootcert", sslrootcert),
    ])?;
    Ok(ProductionUrl {
        url,
        identifier: identifier.clone(),
        secret_arn,
        replica_of: (endpoint.identifier != owner.identifier).then(|| owner.identifier.clone()),
    })
}

async fn master_secret(aws: &Aws, secret_arn: &str) -> Result<MasterSecret> {
    let value = aws
        .secrets
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| sdk_error("GetSecretValue", e))?;
    let text = value.secret_string().ok_or_else(|| Error::Api {
        source: None,
        operation: "GetSecretValue".into(),
        code: None,
        message: format!("secret {secret_arn} has no string value"),
    })?;
    // The parse error is not shown: it could quote the secret.
    serde_json::from_str(text).map_err(|_| Error::Api {
        source: None,
        operation: "GetSecretValue".into(),
        code: None,
        message: format!("secret {secret_arn} is not JSON with `username` and `password`"),
    })
}
