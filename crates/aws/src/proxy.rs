//! RDS Proxy in front of the instance: a transaction pooler run by AWS,
//! created with secure defaults, and the proxies an audit checks.
//!
//! [`create_proxy`] makes a proxy that requires TLS from its clients,
//! authenticates to the instance with the instance's managed master-user
//! secret (Secrets Manager), asks clients for IAM authentication when the
//! instance does, sits in the instance's subnets and security groups, and
//! has the instance as its one target. The data layer runs behind it with
//! `CRUDDUR_POOLER=transaction`.

use aws_sdk_rds::types::{
    AuthScheme, ClientPasswordAuthType, DbInstance, DbProxy, EngineFamily, IamAuthMode,
    UserAuthConfig,
};

use crate::error::{Error, Remedy, Result};
use crate::rds::{ENGINE, describe_instance, invalid, is_not_found, validate_identifier};
use crate::{Aws, sdk_error};

/// The name a proxy of `instance` gets by default: `<instance>-proxy`.
pub fn default_proxy_name(instance: &str) -> String {
    format!("{instance}-proxy")
}

/// What [`create_proxy`] creates. Everything else is the instance's: its
/// subnets, security groups, secret and authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// The instance the proxy pools connections to; it must be a
    /// PostgreSQL instance whose master password Secrets Manager manages,
    /// and not a read replica.
    pub instance: String,
    /// The proxy's name (default [`default_proxy_name`] of the instance).
    pub name: Option<String>,
    /// The IAM role the proxy assumes to read the instance's secret
    /// (`arn:aws:iam::ACCOUNT:role/NAME`, allowed
    /// `secretsmanager:GetSecretValue` on it); RDS requires one.
    pub role_arn: String,
}

impl ProxyOptions {
    /// The proxy's name.
    pub fn proxy_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| default_proxy_name(&self.instance))
    }

    /// Checks every value that can be checked before asking AWS.
    pub fn validate(&self) -> Result<()> {
        validate_identifier("instance identifier", &self.instance, 63)?;
        validate_identifier("proxy name", &self.proxy_name(), 63)?;
        let role = &self.role_arn;
        let parts: Vec<&str> = role.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && !parts[4].is_empty()
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5]
                .strip_prefix("role/")
                .is_some_and(|n| !n.is_empty());
        if !ok {
            return Err(invalid(
                "IAM role ARN",
                role,
                "expected arn:aws:iam::ACCOUNT:role/NAME, a role the proxy assumes to read \
                 the instance's secret",
            ));
        }
        Ok(())
    }
}

/// The result of [`create_proxy`]: the proxy as read back after its
/// creation, each of its settings checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedProxy {
    /// The proxy's name.
    pub name: String,
    /// The host name clients connect to, once RDS reports it.
    pub endpoint: Option<String>,
    /// The instance it targets.
    pub target: String,
    /// The secret the proxy authenticates with (the instance's managed one).
    pub secret_arn: String,
    /// Whether clients must authenticate with IAM (as the instance does).
    pub iam_auth: bool,
    /// The subnets it is placed in (the instance's).
    pub subnet_ids: Vec<String>,
    /// Its security groups (the instance's).
    pub security_group_ids: Vec<String>,
    /// Whether it requires TLS from clients (always, once checked).
    pub require_tls: bool,
}

fn refused(name: &str, reason: String, remedy: Option<Remedy>) -> Error {
    Error::Refused {
        action: format!("create the proxy `{name}`"),
        reason,
        remedy,
    }
}

/// Creates an RDS Proxy for `options.instance`: engine family PostgreSQL,
/// TLS required, authentication through the instance's managed
/// master-user secret (clients authenticate with IAM when the instance has
/// IAM database authentication, else with SCRAM-SHA-256), the instance's
/// subnets and security groups, and the instance registered as its target.
/// Refused, with nothing created, when the instance is missing, not
/// PostgreSQL, a read replica, without a managed secret or without subnets.
/// The proxy is read back and its TLS requirement checked.
pub async fn create_proxy(aws: &Aws, options: &ProxyOptions) -> Result<CreatedProxy> {
    options.validate()?;
    let name = options.proxy_name();
    let db = describe_instance(aws, &options.instance)
        .await
        .map_err(|e| {
            if is_not_found(&e) {
                refused(
                    &name,
                    format!(
                        "there is no instance `{}` in {}",
                        options.instance, aws.region
                    ),
                    Some(Remedy::CreateInstance {
                        identifier: options.instance.clone(),
                    }),
                )
            } else {
                e
            }
        })?;
    let plan = plan(&db, &name)?;

    let auth = UserAuthConfig::builder()
        .auth_scheme(AuthScheme::Secrets)
        .secret_arn(&plan.secret_arn)
        .iam_auth(if plan.iam_auth {
            IamAuthMode::Required
        } else {
            IamAuthMode::Disabled
        })
        .set_client_password_auth_type(
            (!plan.iam_auth).then_some(ClientPasswordAuthType::PostgresScramSha256),
        )
        .description(format!("master user of {}", options.instance))
        .build();
    aws.rds
        .create_db_proxy()
        .db_proxy_name(&name)
        .engine_family(EngineFamily::Postgresql)
        .auth(auth)
        .role_arn(&options.role_arn)
        .set_vpc_subnet_ids(Some(plan.subnet_ids.clone()))
        .set_vpc_security_group_ids(Some(plan.security_group_ids.clone()))
        .require_tls(true)
        .send()
        .await
        .map_err(|e| sdk_error("CreateDBProxy", e))?;
    aws.rds
        .register_db_proxy_targets()
        .db_proxy_name(&name)
        .db_instance_identifiers(&options.instance)
        .send()
        .await
        .map_err(|e| sdk_error("RegisterDBProxyTargets", e))?;

    let proxy = describe_proxy(aws, &name).await?;
    let require_tls = proxy.require_tls().unwrap_or(false);
    if !require_tls {
        return Err(Error::Incomplete {
            what: format!("the proxy `{name}`"),
            problems: vec!["it does not require TLS".into()],
            remedy: Remedy::Audit {
                identifier: options.instance.clone(),
            },
        });
    }
    Ok(CreatedProxy {
        endpoint: proxy.endpoint().map(str::to_owned),
        name,
        target: options.instance.clone(),
        secret_arn: plan.secret_arn,
        iam_auth: plan.iam_auth,
        subnet_ids: proxy.vpc_subnet_ids().to_vec(),
        security_group_ids: proxy.vpc_security_group_ids().to_vec(),
        require_tls,
    })
}

/// What the proxy takes from the instance.
#[derive(Debug)]
struct Plan {
    secret_arn: String,
    iam_auth: bool,
    subnet_ids: Vec<String>,
    security_group_ids: Vec<String>,
}

/// Reads from the instance what its proxy needs, refusing an instance a
/// proxy cannot serve safely.
fn plan(db: &DbInstance, name: &str) -> Result<Plan> {
    let id = db.db_instance_identifier().unwrap_or_default();
    let engine = db.engine().unwrap_or_default();
    if engine != ENGINE {
        return Err(refused(
            name,
            format!("`{id}` runs {engine}, and this proxy is for PostgreSQL"),
            None,
        ));
    }
    if let Some(source) = db.read_replica_source_db_instance_identifier() {
        return Err(refused(
            name,
            format!(
                "`{id}` is a read replica of `{source}`; a proxy targets the instance that \
                 takes writes"
            ),
            Some(Remedy::ProxyThePrimary {
                identifier: source.to_owned(),
            }),
        ));
    }
    let Some(secret_arn) = db
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .map(str::to_owned)
    else {
        return Err(refused(
            name,
            format!(
                "the master password of `{id}` is not managed by Secrets Manager, and the \
                 proxy authenticates with that secret: aws rds modify-db-instance \
                 --db-instance-identifier {id} --manage-master-user-password \
                 --apply-immediately"
            ),
            Some(Remedy::Audit {
                identifier: id.to_owned(),
            }),
        ));
    };
    let subnet_ids: Vec<String> = db
        .db_subnet_group()
        .map(|g| {
            g.subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if subnet_ids.is_empty() {
        return Err(refused(
            name,
            format!(
                "RDS reports no subnets for `{id}` (no DB subnet group), and the proxy is \
                 placed in the instance's"
            ),
            None,
        ));
    }
    let security_group_ids = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
        .collect();
    Ok(Plan {
        secret_arn,
        iam_auth: db.iam_database_authentication_enabled().unwrap_or(false),
        subnet_ids,
        security_group_ids,
    })
}

async fn describe_proxy(aws: &Aws, name: &str) -> Result<DbProxy> {
    let output = aws
        .rds
        .describe_db_proxies()
        .db_proxy_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeDBProxies", e))?;
    output
        .db_proxies()
        .first()
        .cloned()
        .ok_or_else(|| Error::Api {
            operation: "DescribeDBProxies".into(),
            code: None,
            message: format!("the answer describes no proxy `{name}`"),
            source: None,
        })
}

/// A proxy as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyStatus {
    /// The proxy's name.
    pub name: String,
    /// Whether it requires TLS from clients (`RequireTLS`; absent is false).
    pub require_tls: bool,
}

/// Every PostgreSQL proxy that has `instance` among its targets, sorted by
/// name.
pub async fn proxies_of(aws: &Aws, instance: &str) -> Result<Vec<ProxyStatus>> {
    let mut proxies = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .rds
            .describe_db_proxies()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBProxies", e))?;
        proxies.extend(page.db_proxies().iter().cloned());
        match page.marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for proxy in proxies {
        if proxy.engine_family() != Some("POSTGRESQL") {
            continue;
        }
        let Some(name) = proxy.db_proxy_name() else {
            continue;
        };
        let targets = aws
            .rds
            .describe_db_proxy_targets()
            .db_proxy_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBProxyTargets", e))?;
        let serves = targets
            .targets()
            .iter()
            .any(|t| t.rds_resource_id() == Some(instance));
        if serves {
            out.push(ProxyStatus {
                name: name.to_owned(),
                require_tls: proxy.require_tls().unwrap_or(false),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(role: &str) -> ProxyOptions {
        ProxyOptions {
            instance: "cruddur-db-instance".into(),
            name: None,
            role_arn: role.into(),
        }
    }

    #[test]
    fn the_default_name_is_the_instance_s_and_a_role_arn_is_required() {
        let ok = options("arn:aws:iam::123456789012:role/cruddur-proxy");
        ok.validate().unwrap();
        assert_eq!(ok.proxy_name(), "cruddur-db-instance-proxy");
        for role in [
            "",
            "cruddur-proxy",
            "arn:aws:iam::123456789012:user/someone",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:secretsmanager::123456789012:role/x",
            "arn:aws:iam::12345678901x:role/x",
        ] {
            let err = options(role).validate().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput { what, .. } if *what == "IAM role ARN"),
                "{role}: {err}"
            );
        }
        let bad_name = ProxyOptions {
            name: Some("1-proxy".into()),
            ..ok.clone()
        };
        assert!(bad_name.validate().is_err());
        let long_instance = ProxyOptions {
            instance: format!("a{}", "b".repeat(57)),
            ..ok
        };
        assert!(
            long_instance.validate().is_err(),
            "the default name would pass 63 characters"
        );
    }
}
