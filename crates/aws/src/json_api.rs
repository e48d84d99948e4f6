//! CloudWatch and Organizations through their JSON APIs, signed with
//! `aws-sigv4`, for the few calls the audit makes (the idle check's
//! `GetMetricStatistics`; the SCP check's `ListParents`,
//! `ListPoliciesForTarget`, `DescribePolicy`, `DescribeOrganization`).
//!
//! An SDK crate per service would do the same for minutes of build time
//! each; a call here is a JSON object in and a JSON object out.

use aws_credential_types::provider::SharedCredentialsProvider;
use serde_json::Value;

use super::http::HttpClient;
use crate::error::{Error, Result};

/// A client for one service's JSON API (`X-Amz-Target: PREFIX.Operation`).
#[derive(Clone)]
pub struct JsonApiClient {
    endpoint: String,
    signing_region: String,
    service: &'static str,
    target_prefix: &'static str,
    content_type: &'static str,
    credentials: SharedCredentialsProvider,
    http: HttpClient,
}

impl std::fmt::Debug for JsonApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonApiClient")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("signing_region", &self.signing_region)
            .finish_non_exhaustive()
    }
}

impl JsonApiClient {
    /// CloudWatch (JSON 1.0, signing name `monitoring`) in `region`, at
    /// `endpoint` or `https://monitoring.REGION.amazonaws.com`.
    pub(crate) fn cloudwatch(
        endpoint: Option<String>,
        region: &str,
        credentials: SharedCredentialsProvider,
        http: HttpClient,
    ) -> Self {
        Self {
            endpoint: endpoint
                .unwrap_or_else(|| format!("https://monitoring.{region}.amazonaws.com")),
            signing_region: region.to_owned(),
            service: "monitoring",
            target_prefix: "GraniteServiceVersion20100801",
            content_type: "application/x-amz-json-1.0",
            credentials,
            http,
        }
    }

    /// Organizations (JSON 1.1), a global service signed for us-east-1, at
    /// `endpoint` or `https://organizations.us-east-1.amazonaws.com` (the
    /// commercial partition's).
    pub(crate) fn organizations(
        endpoint: Option<String>,
        credentials: SharedCredentialsProvider,
        http: HttpClient,
    ) -> Self {
        Self {
            endpoint: endpoint
                .unwrap_or_else(|| "https://organizations.us-east-1.amazonaws.com".to_owned()),
            signing_region: "us-east-1".to_owned(),
            service: "organizations",
            target_prefix: "AWSOrganizationsV20161128",
            content_type: "application/x-amz-json-1.1",
            credentials,
            http,
        }
    }

    /// The same service with other credentials, e.g. the organization's
    /// management account's for Organizations.
    pub fn with_credentials(&self, credentials: SharedCredentialsProvider) -> Self {
        Self {
            credentials,
            ..self.clone()
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `operation` with `input` and returns the answer's JSON; an
    /// error answer is an [`Error::Api`] with the service's code and message.
    pub async fn call(&self, operation: &str, input: &Value) -> Result<Value> {
        let uri = format!("{}/", self.endpoint.trim_end_matches('/'));
        let target = format!("{}.{operation}", self.target_prefix);
        let response = self
            .http
            .signed_post(
                operation,
                &self.credentials,
                &self.signing_region,
                self.service,
                &uri,
                &[
                    ("content-type", self.content_type),
                    ("x-amz-target", &target),
                ],
                input.to_string(),
            )
            .await?;
        let body: Option<Value> = serde_json::from_str(&response.body).ok();
        if (200..300).contains(&response.status) {
            return body.ok_or_else(|| Error::Api {
                source: None,
                operation: operation.to_owned(),
                code: None,
                message: format!(
                    "the answer is not JSON: {}",
                    response.body.chars().take(200).collect::<String>()
                ),
            });
        }
        let field = |names: &[&str]| {
            body.as_ref().and_then(|b| {
                names
                    .iter()
                    .find_map(|n| b.get(*n).and_then(Value::as_str))
                    .map(str::to_owned)
            })
        };
        // `__type` may be `namespace#Code`.
        let code = field(&["__type", "code", "Code"])
            .map(|c| c.rsplit('#').next().unwrap_or(&c).to_owned())
            .or(Some(response.status.to_string()));
        Err(Error::Api {
            source: None,
            operation: operation.to_owned(),
            code,
            message: field(&["message", "Message"])
                .unwrap_or_else(|| response.body.chars().take(200).collect()),
        })
    }
}
