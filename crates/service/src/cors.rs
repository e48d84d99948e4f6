//! CORS only where it applies: tower-http's [`CorsLayer`] for `OPTIONS`
//! and for requests that carry an `Origin` header (every cross-origin
//! request and preflight does); for the rest, the two headers the layer
//! would have added to their responses, made once: its `Vary` and
//! `Access-Control-Expose-Headers`.
//!
//! A request without `Origin` is given no other CORS header by
//! tower-http's layer, but the layer still builds, for each request, a
//! header map with its `Vary` value joined anew, clones its configuration
//! into the response future and copies the map into the response: about
//! 5,000 instructions, a twelfth of a feed request. Clients that send no
//! `Origin` (other services, mobile apps, same-origin page loads, load
//! generators) skip all of it here, with the same response headers.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use pin_project_lite::pin_project;
use tower_http::cors::{Cors, CorsLayer};
use tower_layer::Layer;
use tower_service::Service;

/// What tower-http's layer puts in `Vary` by default, on every response.
const VARY: &str = "origin, access-control-request-method, access-control-request-headers";

/// `cors` for `OPTIONS` and requests with an `Origin` header; the headers
/// it gives every response for the rest.
#[derive(Clone)]
pub(crate) struct OriginCorsLayer {
    cors: CorsLayer,
    plain: Arc<HeaderMap>,
}

impl OriginCorsLayer {
    /// `cors` (with its default `Vary`, and no exposed headers of its own)
    /// exposing `exposed` ([`CorsLayer::expose_headers`]): given here once,
    /// for both paths.
    pub(crate) fn new(cors: CorsLayer, exposed: &[HeaderName]) -> Self {
        let cors = cors.expose_headers(exposed.to_vec());
        let mut plain = HeaderMap::new();
        plain.insert(header::VARY, HeaderValue::from_static(VARY));
        if !exposed.is_empty() {
            let names: Vec<&str> = exposed.iter().map(HeaderName::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&names.join(",")) {
                plain.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
            }
        }
        Self {
            cors,
            plain: Arc::new(plain),
        }
    }
}

impl<S: Clone> Layer<S> for OriginCorsLayer {
    type Service = OriginCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginCors {
            cors: self.cors.layer(inner.clone()),
            inner,
            plain: Arc::clone(&self.plain),
        }
    }
}

/// [`OriginCorsLayer`]'s service.
#[derive(Clone)]
pub(crate) struct OriginCors<S> {
    cors: Cors<S>,
    inner: S,
    plain: Arc<HeaderMap>,
}

impl<S, B, R> Service<Request<B>> for OriginCors<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    // tower-http's preflight answers have an empty (default) body.
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = OriginCorsFuture<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both wrap the same service; each must be ready for its call.
        match self.cors.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.inner.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN) {
            OriginCorsFuture::Cors {
                future: self.cors.call(request),
            }
        } else {
            OriginCorsFuture::Plain {
                future: self.inner.call(request),
                headers: Arc::clone(&self.plain),
            }
        }
    }
}

pin_project! {
    /// The response of [`OriginCors`]: tower-http's, or the inner one's
    /// with `headers` added.
    #[project = Projected]
    pub(crate) enum OriginCorsFuture<C, P> {
        Cors { #[pin] future: C },
        Plain { #[pin] future: P, headers: Arc<HeaderMap> },
    }
}

impl<C, P, R, E> Future for OriginCorsFuture<C, P>
where
    C: Future<Output = Result<Response<R>, E>>,
    P: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Cors { future } => future.poll(cx),
            Projected::Plain { future, headers } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                // Appended, as tower-http's layer does.
                let answer = response.headers_mut();
                for (name, value) in headers.iter() {
                    answer.append(name, value.clone());
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    const ORIGIN: &str = "http://localhost:3000";
    const EXPOSED: &str = "x-write-token";

    fn cors() -> CorsLayer {
        CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list([
                HeaderValue::from_static(ORIGIN),
            ]))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE])
    }

    fn router() -> axum::Router {
        axum::Router::new().route(
            "/",
            axum::routing::get(|| async { "page" }).post(|| async { "posted" }),
        )
    }

    /// The answers of this layer and of tower-http's alone to `request`.
    async fn both(request: impl Fn() -> Request<Body>) -> (Response<Body>, Response<Body>) {
        let ours = OriginCorsLayer::new(cors(), &[HeaderName::from_static(EXPOSED)])
            .layer(router())
            .call(request())
            .await
            .unwrap();
        let theirs = cors()
            .expose_headers([HeaderName::from_static(EXPOSED)])
            .layer(router())
            .call(request())
            .await
            .unwrap();
        (ours, theirs)
    }

    /// A `method` request for `/`, from `origin`; an `OPTIONS` one asks
    /// for `POST`.
    fn request(method: Method, origin: Option<&str>) -> Request<Body> {
        let mut request = Request::builder().method(method.clone()).uri("/");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        if method == Method::OPTIONS {
            request = request.header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        request.body(Body::empty()).unwrap()
    }

    fn headers(response: &Response<Body>) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != header::CONTENT_LENGTH && *name != header::CONTENT_TYPE)
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        all.sort();
        all
    }

    #[tokio::test]
    async fn every_response_has_the_headers_tower_https_layer_gives_it() {
        // What, the method, the Origin header.
        let requests = [
            ("GET without Origin", Method::GET, None),
            ("POST without Origin", Method::POST, None),
            ("GET from the allowed origin", Method::GET, Some(ORIGIN)),
            (
                "GET from another origin",
                Method::GET,
                Some("https://evil.example"),
            ),
            ("OPTIONS without Origin", Method::OPTIONS, None),
        ];
        for (what, method, origin) in requests {
            let (ours, theirs) = both(|| request(method.clone(), origin)).await;
            assert_eq!(ours.status(), theirs.status(), "{what}");
            assert_eq!(headers(&ours), headers(&theirs), "{what}");
            assert!(ours.headers().contains_key(header::VARY), "{what}");
        }
        let (ours, _) = both(|| {
            Request::get("/")
                .header(header::ORIGIN, ORIGIN)
                .body(Body::empty())
                .unwrap()
        })
        .await;
        assert_eq!(
            ours.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(&HeaderValue::from_static(ORIGIN))
        );
    }
}
