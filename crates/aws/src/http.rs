//! The one small HTTP client used outside the SDK: signed calls to the few
//! services reached without an SDK crate (EC2's Query API, the JSON APIs of
//! CloudWatch and Organizations) and the "what is my IP" lookup of
//! `allow-ip --ip auto`.
//!
//! It is built from the crates the SDK already compiles (hyper, rustls with
//! aws-lc-rs, the system's root certificates), so it adds nothing to the build.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};

/// How long one request may take, connection included: 30 seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Responses larger than this are refused (1 MiB); no answer we read is near it.
const MAX_BODY_BYTES: usize = 1 << 20;

/// An HTTP/1.1 client for `http://` and `https://` URLs.
#[derive(Clone)]
pub(crate) struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

/// A response: status code and body text.
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
}

impl HttpClient {
    /// A client that trusts the system's root certificates.
    pub(crate) fn new() -> Result<Self> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| Error::Config(format!("cannot load the system's root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends `request` and reads the whole body, within [`REQUEST_TIMEOUT`].
    pub(crate) async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Response> {
        let target = request.uri().to_string();
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|e| {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                message
            })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if body.len() > MAX_BODY_BYTES {
                return Err(format!("response larger than {MAX_BODY_BYTES} bytes"));
            }
            Ok(Response {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(message)) => Err(Error::Api {
                source: None,
                operation: format!("request to {target}"),
                code: None,
                message,
            }),
            Err(_) => Err(Error::Api {
                source: None,
                operation: format!("request to {target}"),
                code: None,
                message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            }),
        }
    }

    /// `POST body` to `uri` with `headers`, signed with SigV4 for `service`
    /// in `region` with `credentials`. Any answer is returned; a transport
    /// failure is an [`Error::Api`] naming `operation`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one signed request, each part named"
    )]
    pub(crate) async fn signed_post(
        &self,
        operation: &str,
        credentials: &SharedCredentialsProvider,
        region: &str,
        service: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<Response> {
        let credentials = credentials
            .provide_credentials()
            .await
            .map_err(|e| Error::Config(format!("no AWS credentials for {service}: {e}")))?;
        let identity: Identity = credentials.into();
        let signing_params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::Config(format!("cannot sign the {service} request: {e}")))?
            .into();
        let invalid = |reason: String| Error::InvalidInput {
            what: "endpoint",
            input: uri.chars().take(80).collect(),
            reason,
            remedy: None,
        };
        let signable = SignableRequest::new(
            "POST",
            uri,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| invalid(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &signing_params)
            .map_err(|e| Error::Config(format!("cannot sign the {service} request: {e}")))?
            .into_parts();
        let mut request = http::Request::post(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| invalid(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        self.send(request).await.map_err(|e| match e {
            Error::Api {
                message,
                code,
                source,
                ..
            } => Error::Api {
                source,
                operation: operation.to_owned(),
                code,
                message,
            },
            other => other,
        })
    }

    /// `GET url`, returning the body of a 2xx answer.
    pub(crate) async fn get_text(&self, url: &str) -> Result<String> {
        let request = http::Request::get(url)
            .header(
                "user-agent",
                concat!("cruddur-db/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::InvalidInput {
                what: "URL",
                input: url.chars().take(80).collect(),
                reason: e.to_string(),
                remedy: None,
            })?;
        let response = self.send(request).await?;
        if !(200..300).contains(&response.status) {
            return Err(Error::Api {
                source: None,
                operation: format!("GET {url}"),
                code: Some(response.status.to_string()),
                message: response.body.chars().take(200).collect(),
            });
        }
        Ok(response.body)
    }
}
