//! The HTTP Transport seam: a request in, a response out. Both directions (gateway → channel
//! calls, channel → gateway notifications) go through it, so simulation can swap real
//! sockets for in-process calls and inject transport faults in one place.

mod faulty;
mod in_process;
mod reqwest_transport;

use std::sync::Arc;

pub use faulty::{
    FaultMatcher, FaultRecord, FaultRule, FaultRuleId, FaultyTransport, TransportFault,
};
pub use in_process::InProcessTransport;
pub use reqwest_transport::ReqwestTransport;

/// A request with an absolute URI (`http://host:port/path?query`) and a complete body.
pub type HttpRequest = http::Request<bytes::Bytes>;
/// A response with its complete body.
pub type HttpResponse = http::Response<bytes::Bytes>;

/// Why an exchange produced no response. HTTP error statuses are responses, not errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No response within the deadline. `delivered` is true only when the request is known
    /// to have reached the server; a real socket often cannot tell and reports false, so a
    /// caller must always treat a timeout as an unknown outcome (and query).
    #[error("timed out after {after_ms} ms (request delivered: {delivered})")]
    Timeout { after_ms: u64, delivered: bool },
    /// The peer reset the connection before a response arrived.
    #[error("connection reset by peer")]
    ConnectionReset,
    /// The connection could not be established (refused, DNS, TLS handshake).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// In-process transport: no Router is registered for the request's base URL.
    #[error("no route registered for {0}")]
    NoRoute(String),
    /// The request cannot be sent as given (relative URI, bad header, unsupported version).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Any other I/O failure while sending or receiving.
    #[error("transport I/O error: {0}")]
    Io(String),
}

/// Sends one HTTP exchange. Implementations: [`ReqwestTransport`] (real sockets),
/// [`InProcessTransport`] (simulation) and [`FaultyTransport`] (a fault-injecting wrapper).
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends `request` and waits at most `timeout_ms` for the whole response.
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError>;
}

#[async_trait::async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        (**self).send(request, timeout_ms).await
    }
}
