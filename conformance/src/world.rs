//! The run's world: one virtual clock, one scheduler, one in-process transport (behind the
//! fault-injecting wrapper and a recorder) that carries both directions — gateway → channel
//! calls and channel → gateway notifications — and the seam through which the system under
//! test is built ([`SystemUnderTest`]). The runner never links the gateway: it receives its
//! `Router` and talks HTTP to it (design note §3).

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use determinism::{
    Clock, FaultyTransport, HttpRequest, HttpResponse, Scheduler, Transport, TransportError,
    UnixMillis, VirtualClock,
};

use crate::parse::Scenario;

/// The gateway's base URL in the transport; channels notify `<this>/notify/<channel>`.
pub const GATEWAY_URL: &str = "http://gateway.test";
/// The simulator's base URL in the transport (every mock channel, one Router).
pub const SIMULATOR_URL: &str = "http://channels.test";

/// What the system under test is built on.
#[derive(Clone)]
pub struct WorldParts {
    /// The scenario's seed: fixes every id, nonce and token of both sides.
    pub seed: u64,
    /// The gateway's clock (the run's virtual clock).
    pub clock: Arc<dyn Clock>,
    /// The channels' clock: the same, or skewed by `setup.channel_clock_skew`.
    pub channel_clock: Arc<dyn Clock>,
    /// The run's one scheduler, on the unskewed clock.
    pub scheduler: Scheduler,
    /// Both directions' transport (faults and recording included).
    pub transport: Arc<dyn Transport>,
    pub gateway_url: &'static str,
    pub simulator_url: &'static str,
}

/// The two Routers the runner drives.
#[derive(Clone)]
pub struct Routers {
    /// The merchant-facing gateway API (`/v1/…`, `/notify/{channel}`).
    pub gateway: Router,
    /// Every mock channel and the control plane (`/_paysim/…`).
    pub simulator: Router,
}

/// Builds the system under test for one scenario: the `paysim` binary implements it with the
/// real gateway and the real mock channels.
#[async_trait::async_trait]
pub trait SystemUnderTest: Send + Sync {
    async fn build(&self, parts: WorldParts, scenario: &Scenario) -> anyhow::Result<Routers>;
}

/// Who sent an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The gateway called a channel.
    Request,
    /// A channel notified the gateway.
    Notification,
}

/// One exchange that crossed the transport, as the sender saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exchange {
    pub started_ms: UnixMillis,
    pub ended_ms: UnixMillis,
    pub direction: Direction,
    pub method: String,
    /// A short name: the Alipay method, the WeChat Pay path, or `/notify/<channel>`.
    pub target: String,
    /// The HTTP status, or the transport error.
    pub outcome: String,
    /// A short excerpt of the answer body (notifications: the gateway's acknowledgement).
    pub reply: String,
    /// Transport faults injected into it.
    pub faults: Vec<String>,
}

/// Records every exchange passing through, with the faults the wrapper injected.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: FaultyTransport,
    clock: VirtualClock,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl Recorder {
    pub fn new(inner: FaultyTransport, clock: VirtualClock) -> Self {
        Recorder {
            inner,
            clock,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The fault wrapper, to arm rules on.
    pub fn faults(&self) -> &FaultyTransport {
        &self.inner
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

const REPLY_EXCERPT: usize = 60;

/// The short name of a request URI.
pub fn target_of(uri: &http::Uri) -> String {
    let path = uri.path();
    if path.ends_with("/gateway.do") {
        if let Some(method) = uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "method")
                .map(|(_, value)| value.into_owned())
        }) {
            return method;
        }
    }
    path.to_owned()
}

#[async_trait::async_trait]
impl Transport for Recorder {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        let started_ms = self.clock.now_ms();
        let uri = request.uri().to_string();
        let direction = if uri.starts_with(GATEWAY_URL) {
            Direction::Notification
        } else {
            Direction::Request
        };
        let method = request.method().to_string();
        let target = target_of(request.uri());
        let faults_before = self.inner.faulted().len();
        let result = self.inner.send(request, timeout_ms).await;
        let faults = self
            .inner
            .faulted()
            .into_iter()
            .skip(faults_before)
            .filter(|record| record.url == uri)
            .map(|record| record.fault.to_owned())
            .collect();
        let (outcome, reply) = match &result {
            Ok(response) => {
                let body = String::from_utf8_lossy(response.body());
                let mut reply: String = body.chars().take(REPLY_EXCERPT).collect();
                if body.chars().count() > REPLY_EXCERPT {
                    reply.push('…');
                }
                (response.status().as_u16().to_string(), reply)
            }
            Err(error) => (error.to_string(), String::new()),
        };
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Exchange {
                started_ms,
                ended_ms: self.clock.now_ms(),
                direction,
                method,
                target,
                outcome,
                reply,
                faults,
            });
        result
    }
}
