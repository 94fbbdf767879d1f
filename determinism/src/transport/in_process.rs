//! In-process transport for simulation: a registry from base URL to axum `Router`, so an
//! exchange is a function call into the peer's Router instead of a socket.

use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Uri};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{HttpRequest, HttpResponse, Transport, TransportError};

/// A registered base: `scheme://authority` (lowercased) plus a path prefix without a
/// trailing slash (empty for the root).
#[derive(Debug, Clone)]
struct Route {
    origin: String,
    path_prefix: String,
    router: Router,
}

impl Route {
    /// The request path relative to this route, if the route covers it. A prefix matches
    /// whole segments only: `/alipay` covers `/alipay` and `/alipay/x`, not `/alipay2`.
    fn relative_path<'p>(&self, origin: &str, path: &'p str) -> Option<&'p str> {
        if origin != self.origin {
            return None;
        }
        let rest = path.strip_prefix(self.path_prefix.as_str())?;
        if rest.is_empty() || rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }
}

/// Routes each request to the axum `Router` registered for the longest matching base URL.
/// Cloning yields another handle to the same registry.
///
/// The timeout is not enforced: the Router runs to completion inside the caller's task, and
/// a real-time deadline would make simulation depend on the machine's speed. Timeouts in
/// simulation are virtual and injected by [`super::FaultyTransport`].
#[derive(Debug, Clone, Default)]
pub struct InProcessTransport {
    routes: Arc<RwLock<Vec<Route>>>,
}

impl InProcessTransport {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `router` for `base_url` (`scheme://authority` plus an optional path prefix),
    /// replacing any Router already registered there. A base URL that is not absolute can
    /// never match; it is logged, and requests to it end in [`TransportError::NoRoute`].
    /// Use [`Self::try_register`] to get the error instead.
    pub fn register(&self, base_url: &str, router: Router) {
        if let Err(error) = self.try_register(base_url, router) {
            tracing::error!(%error, base_url, "in-process route not registered");
        }
    }

    /// Like [`Self::register`], but rejects a base URL that is not absolute.
    pub fn try_register(&self, base_url: &str, router: Router) -> Result<(), TransportError> {
        let (origin, path_prefix) = split_base(base_url)?;
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        routes.retain(|route| !(route.origin == origin && route.path_prefix == path_prefix));
        routes.push(Route {
            origin,
            path_prefix,
            router,
        });
        Ok(())
    }

    /// Removes the Router registered for exactly `base_url` (a peer going away). Returns
    /// whether one was registered.
    pub fn unregister(&self, base_url: &str) -> bool {
        let Ok((origin, path_prefix)) = split_base(base_url) else {
            return false;
        };
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let before = routes.len();
        routes.retain(|route| !(route.origin == origin && route.path_prefix == path_prefix));
        routes.len() != before
    }

    /// The registered base URLs, normalised, in registration order.
    pub fn base_urls(&self) -> Vec<String> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes
            .iter()
            .map(|route| format!("{}{}", route.origin, route.path_prefix))
            .collect()
    }

    /// The Router for the longest registered base covering `uri`, and the URI rewritten
    /// relative to that base.
    fn resolve(&self, uri: &Uri) -> Result<(Router, Uri, HeaderValue), TransportError> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(TransportError::InvalidRequest(format!(
                "request URI must be absolute: {uri}"
            )));
        };
        let origin = format!("{}://{}", scheme.as_str(), authority.as_str()).to_ascii_lowercase();
        let path = uri.path();
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let (route, relative) = routes
            .iter()
            .filter_map(|route| route.relative_path(&origin, path).map(|rest| (route, rest)))
            .max_by_key(|(route, _)| route.path_prefix.len())
            .ok_or_else(|| TransportError::NoRoute(uri.to_string()))?;
        let relative = if relative.is_empty() { "/" } else { relative };
        let path_and_query = match uri.query() {
            Some(query) => format!("{relative}?{query}"),
            None => relative.to_owned(),
        };
        let path_and_query = PathAndQuery::try_from(path_and_query)
            .map_err(|error| TransportError::InvalidRequest(error.to_string()))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|error| TransportError::InvalidRequest(error.to_string()))?;
        Ok((route.router.clone(), Uri::from(path_and_query), host))
    }
}

/// Splits a base URL into its lowercased origin and its path prefix without trailing slash.
fn split_base(base_url: &str) -> Result<(String, String), TransportError> {
    let uri: Uri = base_url.parse().map_err(|error| {
        TransportError::InvalidRequest(format!("base URL {base_url:?}: {error}"))
    })?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(TransportError::InvalidRequest(format!(
            "base URL {base_url:?} must be absolute (scheme://host[:port][/prefix])"
        )));
    };
    let origin = format!("{}://{}", scheme.as_str(), authority.as_str()).to_ascii_lowercase();
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    Ok((origin, path_prefix))
}

#[async_trait::async_trait]
impl Transport for InProcessTransport {
    async fn send(
        &self,
        request: HttpRequest,
        _timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        let (router, relative_uri, host) = self.resolve(request.uri())?;
        let (mut parts, body) = request.into_parts();
        parts.uri = relative_uri;
        // The Router sees what a server behind the socket would: a relative URI and the Host.
        parts.headers.insert(HOST, host);
        let request = http::Request::from_parts(parts, axum::body::Body::from(body));
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| TransportError::Io(error.to_string()))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::OriginalUri;
    use axum::routing::any;
    use bytes::Bytes;

    fn echo(name: &'static str) -> Router {
        Router::new().fallback(any(
            move |OriginalUri(uri): OriginalUri, headers: http::HeaderMap, body: Bytes| async move {
                let host = headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                format!(
                    "{name} {uri} host={host} body={}",
                    String::from_utf8_lossy(&body)
                )
            },
        ))
    }

    async fn call(transport: &InProcessTransport, uri: &str) -> Result<String, TransportError> {
        let request = http::Request::post(uri)
            .body(Bytes::from_static(b"hi"))
            .unwrap();
        let response = transport.send(request, 1_000).await?;
        Ok(String::from_utf8(response.into_body().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn routes_by_longest_base_url_and_rewrites_the_uri() {
        let transport = InProcessTransport::new();
        transport.register("http://gateway.local:8080", echo("root"));
        transport.register("http://gateway.local:8080/alipay/", echo("alipay"));
        transport.register("http://gateway.local:8080/alipay/v2", echo("alipay-v2"));
        transport.register("http://other.local", echo("other"));

        let check = [
            (
                "http://gateway.local:8080/orders?id=1",
                "root /orders?id=1 host=gateway.local:8080 body=hi",
            ),
            (
                "http://gateway.local:8080/alipay/gateway.do?a=b",
                "alipay /gateway.do?a=b host=gateway.local:8080 body=hi",
            ),
            (
                "http://gateway.local:8080/alipay",
                "alipay / host=gateway.local:8080 body=hi",
            ),
            (
                "http://gateway.local:8080/alipay2",
                "root /alipay2 host=gateway.local:8080 body=hi",
            ),
            (
                "http://gateway.local:8080/alipay/v2/x",
                "alipay-v2 /x host=gateway.local:8080 body=hi",
            ),
            (
                "HTTP://Other.Local/notify",
                "other /notify host=Other.Local body=hi",
            ),
        ];
        for (uri, expected) in check {
            assert_eq!(call(&transport, uri).await.unwrap(), expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn unknown_bases_and_relative_uris_are_errors() {
        let transport = InProcessTransport::new();
        transport.register("http://a.local/prefix", echo("a"));
        assert_eq!(
            call(&transport, "http://b.local/x").await,
            Err(TransportError::NoRoute("http://b.local/x".into()))
        );
        assert!(matches!(
            call(&transport, "http://a.local/other").await,
            Err(TransportError::NoRoute(_))
        ));
        assert!(matches!(
            call(&transport, "https://a.local/prefix").await,
            Err(TransportError::NoRoute(_))
        ));
        assert!(matches!(
            call(&transport, "/prefix/x").await,
            Err(TransportError::InvalidRequest(_))
        ));
        assert!(transport.try_register("not a url", echo("x")).is_err());
        assert!(transport.try_register("/relative", echo("x")).is_err());
    }

    #[tokio::test]
    async fn re_registering_replaces_and_unregister_removes() {
        let transport = InProcessTransport::new();
        let handle = transport.clone();
        transport.register("http://a.local", echo("first"));
        handle.register("http://a.local/", echo("second"));
        assert_eq!(transport.base_urls(), ["http://a.local"]);
        assert!(call(&transport, "http://a.local/")
            .await
            .unwrap()
            .starts_with("second"));
        assert!(transport.unregister("http://a.local"));
        assert!(!transport.unregister("http://a.local"));
        assert!(matches!(
            call(&handle, "http://a.local/").await,
            Err(TransportError::NoRoute(_))
        ));
    }
}
