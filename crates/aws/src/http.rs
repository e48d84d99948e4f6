//! The one small HTTP client used outside the SDK: signed EC2 Query API calls
//! and the "what is my IP" lookup of `allow-ip --ip auto`.
//!
//! It is built from the crates the SDK already compiles (hyper, rustls with
//! aws-lc-rs, the system's root certificates), so it adds nothing to the build.

use std::time::Duration;

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
