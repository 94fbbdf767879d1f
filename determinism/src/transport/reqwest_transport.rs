//! Real-socket transport (sandbox, integrator mode, production) on a reqwest client.

use std::error::Error as _;
use std::time::Duration;

use super::{HttpRequest, HttpResponse, Transport, TransportError};

/// Sends exchanges over real sockets. Redirects are never followed: a payment protocol that
/// answers with a redirect is telling the caller something, and following it silently would
/// hide that. Cheap to clone (reqwest's client is a shared pool).
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A transport on a fresh client with redirects disabled. Fails only if the TLS backend
    /// cannot be initialised.
    pub fn new() -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| TransportError::Io(describe(&error)))?;
        Ok(Self { client })
    }

    /// A transport on a client configured by the caller (proxies, root certificates, …).
    /// The caller is responsible for its redirect policy.
    pub fn from_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl Transport for ReqwestTransport {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        let mut request = reqwest::Request::try_from(request)
            .map_err(|error| TransportError::InvalidRequest(describe(&error)))?;
        // One deadline for the whole exchange, headers and body included.
        *request.timeout_mut() = Some(Duration::from_millis(timeout_ms));
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|error| map_error(&error, timeout_ms, false))?;
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        // Headers arrived, so the request certainly reached the server.
        let body = response
            .bytes()
            .await
            .map_err(|error| map_error(&error, timeout_ms, true))?;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.version_mut() = version;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

fn map_error(error: &reqwest::Error, timeout_ms: u64, delivered: bool) -> TransportError {
    if error.is_timeout() {
        TransportError::Timeout {
            after_ms: timeout_ms,
            delivered,
        }
    } else if error.is_builder() {
        TransportError::InvalidRequest(describe(error))
    } else if is_connection_reset(error) {
        TransportError::ConnectionReset
    } else if error.is_connect() {
        TransportError::Connect(describe(error))
    } else {
        TransportError::Io(describe(error))
    }
}

fn is_connection_reset(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// reqwest's own message is terse ("error sending request"); the causes say what happened.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
