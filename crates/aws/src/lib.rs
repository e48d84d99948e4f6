#![doc = include_str!("../README.md")]

pub mod address;
pub mod audit;
pub mod ec2;
pub mod error;
pub mod fix;
mod http;
pub mod json_api;
pub mod proxy;
pub mod rds;
pub mod replica;
pub mod scp;
pub mod variables;

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use address::{parse_single_address, single_address_cidr};
pub use audit::{
    AuditOptions, AutoFix, Fix, FixPart, Operation, Outcome, Practice, PracticeResult, audit,
};
pub use ec2::{Ec2Client, IngressRule, SecurityGroupRule};
pub use error::{Error, Remedy, Result};
pub use fix::{Applied, apply_fix};
pub use json_api::JsonApiClient;
pub use proxy::{CreatedProxy, ProxyOptions, ProxyStatus, create_proxy, proxies_of};
pub use rds::{
    AllowIp, AllowIpOutcome, CreateOptions, CreatedInstance, DeleteOptions, DeletedInstance,
    InstanceStatus, ProductionUrl, Snapshot, allow_ip, create_instance, create_snapshot,
    delete_instance, instance_status, production_url,
};
pub use replica::{CreatedReplica, ReplicaOptions, create_replica, replica_url};

/// Where to find AWS; every field falls back to the standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// The region (default: `AWS_REGION`, then the profile's `region`).
    pub region: Option<String>,
    /// One endpoint for every service, e.g. `http://127.0.0.1:5000` for a
    /// local emulator (default: `AWS_ENDPOINT_URL`, then the profile's
    /// `endpoint_url`, then each service's regional endpoint).
    pub endpoint_url: Option<String>,
    /// The shared-config profile (default: `AWS_PROFILE`, then `default`).
    pub profile: Option<String>,
    /// The EC2 endpoint when [`endpoint_url`](Self::endpoint_url) is unset
    /// (the caller's `AWS_ENDPOINT_URL_EC2`, as the SDK honours
    /// `AWS_ENDPOINT_URL_<SERVICE>` for the other services).
    pub ec2_endpoint_url: Option<String>,
}

/// Clients for the services the RDS operations use.
#[derive(Debug, Clone)]
pub struct Aws {
    /// The region every client talks to.
    pub region: String,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// Secrets Manager (the managed master password).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// CloudTrail (audit).
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    /// GuardDuty (audit).
    pub guardduty: aws_sdk_guardduty::Client,
    /// EC2 security groups, signed by hand.
    pub ec2: Ec2Client,
    /// CloudWatch (audit: whether the instance is used).
    pub cloudwatch: JsonApiClient,
    /// Organizations (audit: the SCPs that apply to the instance's
    /// account). Readable only from the organization's management account
    /// or a delegated administrator: see
    /// [`JsonApiClient::with_credentials`].
    pub organizations: JsonApiClient,
    http: http::HttpClient,
}

impl Aws {
    /// Loads region and credentials from the standard chain, with `options`
    /// taking precedence.
    pub async fn from_env(options: &AwsOptions) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let ec2_endpoint = options
            .endpoint_url
            .clone()
            .or_else(|| options.ec2_endpoint_url.clone());
        Self::build(&config, ec2_endpoint)
    }

    /// Clients for an already loaded SDK configuration (its region,
    /// credentials and endpoint URL).
    pub fn from_sdk_config(config: &SdkConfig) -> Result<Self> {
        Self::build(config, None)
    }

    fn build(config: &SdkConfig, ec2_endpoint: Option<String>) -> Result<Self> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or(Error::NoRegion)?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            Error::Config("no credentials provider in the AWS configuration".into())
        })?;
        let endpoint = config.endpoint_url().map(str::to_owned);
        let ec2_endpoint = ec2_endpoint
            .or_else(|| endpoint.clone())
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let http = http::HttpClient::new()?;
        Ok(Self {
            cloudwatch: JsonApiClient::cloudwatch(
                endpoint.clone(),
                &region,
                credentials.clone(),
                http.clone(),
            ),
            organizations: JsonApiClient::organizations(
                endpoint,
                credentials.clone(),
                http.clone(),
            ),
            rds: aws_sdk_rds::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            cloudtrail: aws_sdk_cloudtrail::Client::new(config),
            guardduty: aws_sdk_guardduty::Client::new(config),
            ec2: Ec2Client::new(ec2_endpoint, region.clone(), credentials, http.clone()),
            http,
            region,
        })
    }

    /// Asks `endpoint` (which answers with the caller's address as plain
    /// text, like `https://checkip.amazonaws.com`) for this machine's public
    /// address, and validates it with [`parse_single_address`].
    pub async fn public_ip(&self, endpoint: &str) -> Result<std::net::IpAddr> {
        let body = self.http.get_text(endpoint).await?;
        parse_single_address(body.trim()).map_err(|e| match e {
            Error::InvalidInput {
                input,
                reason,
                remedy,
                ..
            } => Error::InvalidInput {
                what: "answer of the IP endpoint",
                input,
                reason,
                remedy,
            },
            other => other,
        })
    }
}

/// Turns an SDK error into [`Error::Aws`] with the service's code and message.
pub(crate) fn sdk_error<E>(operation: &str, err: E) -> Error
where
    E: aws_sdk_rds::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = match err.message() {
        Some(m) => m.to_owned(),
        None => aws_sdk_rds::error::DisplayErrorContext(&err).to_string(),
    };
    Error::Api {
        operation: operation.to_owned(),
        code,
        message,
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's flags that AWS's own CLI does not have (its `--region`
    /// and `--group-id` may appear in an `aws ...` fix).
    const OUR_FLAGS: [&str; 11] = [
        "identifier",
        "rule-id",
        "allowed-regions",
        "idle-days",
        "organizations-profile",
        "write-env",
        "confirm",
        "replica",
        "source",
        "ip",
        "security-group-id",
    ];

    /// What in `text` names one of the CLI's commands or flags, if
    /// anything. A flag counts only as a whole word: `--source` is not in
    /// `--source-region`.
    fn names_the_cli(text: &str) -> Option<String> {
        for command in [concat!("cruddur-db", " "), concat!("`rds", " ")] {
            if text.contains(command) {
                return Some(command.to_owned());
            }
        }
        OUR_FLAGS.iter().find_map(|flag| {
            let flag = format!("--{flag}");
            text.match_indices(&flag)
                .any(|(at, _)| {
                    let before = text[..at].chars().next_back();
                    let after = text[at + flag.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '-')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '-')
                })
                .then_some(flag)
        })
    }

    /// Every line of the crate's code outside comments: the messages, the
    /// fixes' words and the errors' reasons are all in string literals
    /// there, so none of them may name the CLI; the steps that are the
    /// CLI's are values ([`Remedy`], [`Operation`]) for it to word.
    #[test]
    fn no_message_names_a_cli_command() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src];
        let mut found = Vec::new();
        let mut read = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    files.push(entry.unwrap().path());
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            read += 1;
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                if let Some(what) = names_the_cli(line) {
                    found.push(format!("{}:{}: {what}: {line}", path.display(), n + 1));
                }
            }
        }
        assert!(read > 5, "the sources were read");
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn the_toolkits_own_words_name_no_command() {
        let id = || "db-1".to_owned();
        let operations = [
            Operation::Snapshot { identifier: id() },
            Operation::Delete { identifier: id() },
            Operation::AllowIp {
                group_id: "sg-1".into(),
                rule_id: "sgr-1".into(),
            },
            Operation::ScpTemplate { identifier: id() },
            Operation::NameAllowedRegions,
            Operation::ShorterIdleWindow,
            Operation::OrganizationsCredentials,
            Operation::StoreUrlAgain,
        ];
        let fixes = [
            AutoFix::CreateSnapshot { identifier: id() },
            AutoFix::EnableGuardDuty,
            AutoFix::EnableDeletionProtection { identifier: id() },
            AutoFix::EnableMultiAz { identifier: id() },
            AutoFix::EnableRotation {
                secret_arn: "arn:aws:secretsmanager:us-east-1:1:secret:s".into(),
            },
        ];
        let words = operations
            .iter()
            .map(ToString::to_string)
            .chain(fixes.iter().map(ToString::to_string))
            .chain([Error::NoRegion.to_string()]);
        for text in words {
            assert!(!text.is_empty());
            assert_eq!(names_the_cli(&text), None, "{text}");
            assert!(!text.contains("--region"), "{text}");
        }
        // The detector of the test itself: it finds what it looks for.
        for named in [
            concat!("run cruddur-db", " rds snapshot"),
            concat!("choose one with -", "-rule-id (x)"),
            concat!("or pass -", "-source db"),
        ] {
            assert!(names_the_cli(named).is_some(), "{named}");
        }
        assert_eq!(
            names_the_cli("aws rds copy-db-snapshot --source-region x"),
            None
        );
        assert_eq!(Error::NoRegion.remedy(), Some(&Remedy::NameARegion));
    }
}
