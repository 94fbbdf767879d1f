//! Fault-injecting Transport wrapper: the catalogue of transport-level faults (delay, timeouts,
//! reset, truncated body, wrong content type) and the rules that arm them.
//!
//! Protocol faults (bad signatures, error codes, duplicate notifications) belong to the
//! simulator, not here: this layer only breaks the pipe.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method};

use super::{HttpRequest, HttpResponse, Transport, TransportError};
use crate::sleeper::Sleeper;

/// A transport-level fault. Each has a stable snake_case [`name`](Self::name) and a one-line
/// [`description`](Self::describe); [`catalogue`](Self::catalogue) lists them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFault {
    /// Hold the request `ms` before delivering it. If `ms` reaches the caller's timeout, the
    /// caller times out at its deadline, and the request lands at that deadline anyway.
    Delay { ms: u64 },
    /// The request never reaches the server; the caller times out at its deadline.
    TimeoutBeforeDelivery,
    /// The request reaches the server, whose answer is lost; the caller times out at its deadline.
    TimeoutAfterDelivery,
    /// The connection is reset before the request reaches the server.
    Reset,
    /// The server's answer arrives cut after `keep_bytes` bytes.
    TruncatedBody { keep_bytes: usize },
    /// The server's answer arrives with this Content-Type (removed if not a valid header value).
    WrongContentType(String),
}

const DELAY: &str = "delay";
const TIMEOUT_BEFORE_DELIVERY: &str = "timeout_before_delivery";
const TIMEOUT_AFTER_DELIVERY: &str = "timeout_after_delivery";
const RESET: &str = "reset";
const TRUNCATED_BODY: &str = "truncated_body";
const WRONG_CONTENT_TYPE: &str = "wrong_content_type";

const DELAY_DOC: &str =
    "request held for a while before delivery; a timeout if it reaches the caller's deadline";
const TIMEOUT_BEFORE_DELIVERY_DOC: &str =
    "request lost on the way; the caller times out and the server never sees it";
const TIMEOUT_AFTER_DELIVERY_DOC: &str =
    "server processes the request but the answer is lost; the caller times out";
const RESET_DOC: &str = "connection reset before the request reaches the server";
const TRUNCATED_BODY_DOC: &str = "response body cut short after a number of bytes";
const WRONG_CONTENT_TYPE_DOC: &str = "response delivered with a wrong Content-Type header";

const CATALOGUE: &[(&str, &str)] = &[
    (DELAY, DELAY_DOC),
    (TIMEOUT_BEFORE_DELIVERY, TIMEOUT_BEFORE_DELIVERY_DOC),
    (TIMEOUT_AFTER_DELIVERY, TIMEOUT_AFTER_DELIVERY_DOC),
    (RESET, RESET_DOC),
    (TRUNCATED_BODY, TRUNCATED_BODY_DOC),
    (WRONG_CONTENT_TYPE, WRONG_CONTENT_TYPE_DOC),
];

impl TransportFault {
    /// The stable snake_case name scenarios and reports use.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delay { .. } => DELAY,
            Self::TimeoutBeforeDelivery => TIMEOUT_BEFORE_DELIVERY,
            Self::TimeoutAfterDelivery => TIMEOUT_AFTER_DELIVERY,
            Self::Reset => RESET,
            Self::TruncatedBody { .. } => TRUNCATED_BODY,
            Self::WrongContentType(_) => WRONG_CONTENT_TYPE,
        }
    }

    /// A one-line description of what the fault does.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Delay { .. } => DELAY_DOC,
            Self::TimeoutBeforeDelivery => TIMEOUT_BEFORE_DELIVERY_DOC,
            Self::TimeoutAfterDelivery => TIMEOUT_AFTER_DELIVERY_DOC,
            Self::Reset => RESET_DOC,
            Self::TruncatedBody { .. } => TRUNCATED_BODY_DOC,
            Self::WrongContentType(_) => WRONG_CONTENT_TYPE_DOC,
        }
    }

    /// Every transport fault as `(name, description)`.
    pub fn catalogue() -> &'static [(&'static str, &'static str)] {
        CATALOGUE
    }
}

/// Which exchanges a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultMatcher {
    /// Matches absolute request URIs starting with this string (empty: every request).
    pub url_prefix: String,
    /// Matches only this method when set.
    pub method: Option<Method>,
    /// Matches only URIs containing this string when set (an API's path, or Alipay's
    /// `method=alipay.trade.query` in the query).
    pub url_contains: Option<String>,
}

impl FaultMatcher {
    fn matches(&self, method: &Method, url: &str) -> bool {
        url.starts_with(&self.url_prefix)
            && self.method.as_ref().is_none_or(|only| only == method)
            && self
                .url_contains
                .as_ref()
                .is_none_or(|needle| url.contains(needle.as_str()))
    }
}

/// An armed fault: what to break, where, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub matcher: FaultMatcher,
    pub fault: TransportFault,
    /// `Some(n)`: the next `n` matching exchanges, then the rule is spent and removed.
    /// `None`: every matching exchange until disarmed.
    pub times: Option<u32>,
}

impl FaultRule {
    /// Faults the next matching exchange only.
    pub fn once(url_prefix: impl Into<String>, fault: TransportFault) -> Self {
        Self::times(url_prefix, fault, 1)
    }

    /// Faults the next `times` matching exchanges.
    pub fn times(url_prefix: impl Into<String>, fault: TransportFault, times: u32) -> Self {
        Self {
            matcher: FaultMatcher {
                url_prefix: url_prefix.into(),
                method: None,
                url_contains: None,
            },
            fault,
            times: Some(times),
        }
    }

    /// Faults every matching exchange until disarmed.
    pub fn always(url_prefix: impl Into<String>, fault: TransportFault) -> Self {
        Self {
            times: None,
            ..Self::once(url_prefix, fault)
        }
    }

    /// Restricts the rule to URIs containing `needle`.
    #[must_use]
    pub fn containing(mut self, needle: impl Into<String>) -> Self {
        self.matcher.url_contains = Some(needle.into());
        self
    }

    /// Restricts the rule to one HTTP method.
    #[must_use]
    pub fn for_method(mut self, method: Method) -> Self {
        self.matcher.method = Some(method);
        self
    }
}

/// Identifies an armed rule, for [`FaultyTransport::disarm`] and the fault log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultRuleId(u64);

/// One exchange that a fault hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    pub rule: FaultRuleId,
    pub method: Method,
    pub url: String,
    /// The fault's catalogue name.
    pub fault: &'static str,
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<(FaultRuleId, FaultRule)>,
    next_id: u64,
    log: Vec<FaultRecord>,
}

/// Wraps a Transport and breaks exchanges according to armed [`FaultRule`]s.
///
/// Rules are tried in the order they were armed; the first matching one fires, so an
/// exchange suffers at most one fault. Waiting (delays and timeouts) goes through the
/// [`Sleeper`]: real time in the sandbox, the virtual clock in simulation, where a timeout
/// costs exactly the caller's deadline in virtual time. Cloning yields another handle to the
/// same rules and log.
#[derive(Debug, Clone)]
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    sleeper: Arc<dyn Sleeper>,
    state: Arc<Mutex<FaultState>>,
}

impl FaultyTransport {
    /// Wraps `inner`; nothing is faulted until a rule is armed.
    pub fn new(inner: Arc<dyn Transport>, sleeper: Arc<dyn Sleeper>) -> Self {
        Self {
            inner,
            sleeper,
            state: Arc::new(Mutex::new(FaultState::default())),
        }
    }

    /// Arms a rule (after those already armed).
    pub fn arm(&self, rule: FaultRule) -> FaultRuleId {
        let mut state = self.lock();
        let id = FaultRuleId(state.next_id);
        state.next_id = state.next_id.saturating_add(1);
        state.rules.push((id, rule));
        id
    }

    /// Removes a rule; false if it was spent or never armed.
    pub fn disarm(&self, id: FaultRuleId) -> bool {
        let mut state = self.lock();
        let before = state.rules.len();
        state.rules.retain(|(armed, _)| *armed != id);
        state.rules.len() != before
    }

    /// Removes every rule (the log is kept).
    pub fn disarm_all(&self) {
        self.lock().rules.clear();
    }

    /// The rules still armed, in the order they are tried.
    pub fn armed(&self) -> Vec<(FaultRuleId, FaultRule)> {
        self.lock().rules.clone()
    }

    /// Every exchange faulted so far, oldest first.
    pub fn faulted(&self) -> Vec<FaultRecord> {
        self.lock().log.clone()
    }

    /// Returns and clears the fault log.
    pub fn take_faulted(&self) -> Vec<FaultRecord> {
        std::mem::take(&mut self.lock().log)
    }

    /// Picks the fault for this exchange, if any, counts it against its rule and logs it.
    fn select(&self, method: &Method, url: &str) -> Option<TransportFault> {
        let mut state = self.lock();
        let position = state
            .rules
            .iter()
            .position(|(_, rule)| rule.times != Some(0) && rule.matcher.matches(method, url))?;
        let (id, fault, spent) = {
            let (id, rule) = state.rules.get_mut(position)?;
            if let Some(remaining) = rule.times.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
            (*id, rule.fault.clone(), rule.times == Some(0))
        };
        if spent {
            state.rules.remove(position);
        }
        state.log.push(FaultRecord {
            rule: id,
            method: method.clone(),
            url: url.to_owned(),
            fault: fault.name(),
        });
        Some(fault)
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // Critical sections are plain Vec updates; a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers the request and reports whether it reached the server; the answer is dropped.
    async fn deliver_and_lose_answer(&self, request: HttpRequest, timeout_ms: u64) -> bool {
        match self.inner.send(request, timeout_ms).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "faulted exchange failed in the inner transport too");
                false
            }
        }
    }
}

#[async_trait::async_trait]
impl Transport for FaultyTransport {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        let url = request.uri().to_string();
        let Some(fault) = self.select(request.method(), &url) else {
            return self.inner.send(request, timeout_ms).await;
        };
        tracing::info!(fault = fault.name(), method = %request.method(), %url, "injecting transport fault");
        match fault {
            TransportFault::Delay { ms } if ms < timeout_ms => {
                self.sleeper.sleep_ms(ms).await;
                let remaining_ms = timeout_ms - ms;
                self.inner.send(request, remaining_ms).await
            }
            TransportFault::Delay { .. } => {
                self.sleeper.sleep_ms(timeout_ms).await;
                let delivered = self.deliver_and_lose_answer(request, timeout_ms).await;
                Err(TransportError::Timeout {
                    after_ms: timeout_ms,
                    delivered,
                })
            }
            TransportFault::TimeoutBeforeDelivery => {
                self.sleeper.sleep_ms(timeout_ms).await;
                Err(TransportError::Timeout {
                    after_ms: timeout_ms,
                    delivered: false,
                })
            }
            TransportFault::TimeoutAfterDelivery => {
                let delivered = self.deliver_and_lose_answer(request, timeout_ms).await;
                self.sleeper.sleep_ms(timeout_ms).await;
                Err(TransportError::Timeout {
                    after_ms: timeout_ms,
                    delivered,
                })
            }
            TransportFault::Reset => Err(TransportError::ConnectionReset),
            TransportFault::TruncatedBody { keep_bytes } => {
                let response = self.inner.send(request, timeout_ms).await?;
                let (mut parts, body) = response.into_parts();
                let body = body.slice(..keep_bytes.min(body.len()));
                // A stale Content-Length would let a client reject the length mismatch before
                // its parser ever sees the broken bytes, which is what this fault exercises.
                parts.headers.remove(CONTENT_LENGTH);
                Ok(http::Response::from_parts(parts, body))
            }
            TransportFault::WrongContentType(content_type) => {
                let mut response = self.inner.send(request, timeout_ms).await?;
                match HeaderValue::from_str(&content_type) {
                    Ok(value) => {
                        response.headers_mut().insert(CONTENT_TYPE, value);
                    }
                    Err(_) => {
                        tracing::warn!(%content_type, "not a header value; removing Content-Type instead");
                        response.headers_mut().remove(CONTENT_TYPE);
                    }
                }
                Ok(response)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, VirtualClock};
    use crate::sleeper::VirtualSleeper;
    use crate::transport::InProcessTransport;
    use axum::routing::{get, post};
    use axum::Router;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BASE: &str = "http://channel.local";

    struct Fixture {
        clock: VirtualClock,
        calls: Arc<AtomicUsize>,
        served_at: Arc<Mutex<Vec<i64>>>,
        faulty: FaultyTransport,
    }

    fn fixture() -> Fixture {
        let clock = VirtualClock::new(0);
        let calls = Arc::new(AtomicUsize::new(0));
        let served_at = Arc::new(Mutex::new(Vec::new()));
        let (counter, served, server_clock) = (calls.clone(), served_at.clone(), clock.clone());
        let handler = move || {
            let (counter, served, server_clock) =
                (counter.clone(), served.clone(), server_clock.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                served.lock().unwrap().push(server_clock.now_ms());
                (
                    [(CONTENT_TYPE, "application/json")],
                    r#"{"code":"SUCCESS"}"#,
                )
            }
        };
        let router = Router::new()
            .route("/pay", post(handler.clone()))
            .route("/query", get(handler));
        let in_process = InProcessTransport::new();
        in_process.register(BASE, router);
        let faulty = FaultyTransport::new(
            Arc::new(in_process),
            Arc::new(VirtualSleeper(clock.clone())),
        );
        Fixture {
            clock,
            calls,
            served_at,
            faulty,
        }
    }

    async fn pay(transport: &FaultyTransport) -> Result<HttpResponse, TransportError> {
        let request = http::Request::post(format!("{BASE}/pay"))
            .body(Bytes::new())
            .unwrap();
        transport.send(request, 5_000).await
    }

    async fn query(transport: &FaultyTransport) -> Result<HttpResponse, TransportError> {
        let request = http::Request::get(format!("{BASE}/query"))
            .body(Bytes::new())
            .unwrap();
        transport.send(request, 5_000).await
    }

    #[tokio::test]
    async fn unfaulted_exchanges_pass_through() {
        let f = fixture();
        let response = pay(&f.faulty).await.unwrap();
        assert_eq!(response.body().as_ref(), br#"{"code":"SUCCESS"}"#);
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        assert!(f.faulty.faulted().is_empty());
    }

    #[tokio::test]
    async fn a_containing_rule_faults_only_matching_uris() {
        let f = fixture();
        f.faulty
            .arm(FaultRule::once(BASE, TransportFault::Reset).containing("/query"));
        assert!(pay(&f.faulty).await.is_ok());
        assert_eq!(
            query(&f.faulty).await.unwrap_err(),
            TransportError::ConnectionReset
        );
        assert!(query(&f.faulty).await.is_ok());
        assert_eq!(f.faulty.faulted().len(), 1);
    }

    #[tokio::test]
    async fn reset_and_timeout_before_delivery_never_reach_the_server() {
        let f = fixture();
        f.faulty.arm(FaultRule::once(BASE, TransportFault::Reset));
        assert_eq!(
            pay(&f.faulty).await.unwrap_err(),
            TransportError::ConnectionReset
        );
        assert_eq!(f.clock.now_ms(), 0, "a reset is immediate");

        f.faulty
            .arm(FaultRule::once(BASE, TransportFault::TimeoutBeforeDelivery));
        assert_eq!(
            pay(&f.faulty).await.unwrap_err(),
            TransportError::Timeout {
                after_ms: 5_000,
                delivered: false
            }
        );
        assert_eq!(
            f.clock.now_ms(),
            5_000,
            "the deadline passed in virtual time"
        );
        assert_eq!(f.calls.load(Ordering::SeqCst), 0);

        // Both rules were single-shot: the next exchange goes through.
        assert!(pay(&f.faulty).await.is_ok());
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        let log: Vec<_> = f
            .faulty
            .faulted()
            .iter()
            .map(|r| (r.fault, r.url.clone()))
            .collect();
        assert_eq!(
            log,
            [
                ("reset", format!("{BASE}/pay")),
                ("timeout_before_delivery", format!("{BASE}/pay"))
            ]
        );
    }

    #[tokio::test]
    async fn timeout_after_delivery_reaches_the_server_and_loses_the_answer() {
        let f = fixture();
        f.faulty
            .arm(FaultRule::once(BASE, TransportFault::TimeoutAfterDelivery));
        assert_eq!(
            pay(&f.faulty).await.unwrap_err(),
            TransportError::Timeout {
                after_ms: 5_000,
                delivered: true
            }
        );
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            *f.served_at.lock().unwrap(),
            [0],
            "served before the deadline"
        );
        assert_eq!(f.clock.now_ms(), 5_000);
    }

    #[tokio::test]
    async fn truncated_body_and_wrong_content_type_alter_the_answer() {
        let f = fixture();
        f.faulty.arm(FaultRule::once(
            BASE,
            TransportFault::TruncatedBody { keep_bytes: 5 },
        ));
        let response = pay(&f.faulty).await.unwrap();
        assert_eq!(response.body().as_ref(), br#"{"cod"#);
        assert!(response.headers().get(CONTENT_LENGTH).is_none());

        f.faulty.arm(FaultRule::once(
            BASE,
            TransportFault::TruncatedBody { keep_bytes: 1_000 },
        ));
        assert_eq!(
            pay(&f.faulty).await.unwrap().body().len(),
            18,
            "shorter bodies are kept whole"
        );

        f.faulty.arm(FaultRule::once(
            BASE,
            TransportFault::WrongContentType("text/html".into()),
        ));
        let response = pay(&f.faulty).await.unwrap();
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
        assert_eq!(response.body().as_ref(), br#"{"code":"SUCCESS"}"#);

        f.faulty.arm(FaultRule::once(
            BASE,
            TransportFault::WrongContentType("bad\nvalue".into()),
        ));
        assert!(pay(&f.faulty)
            .await
            .unwrap()
            .headers()
            .get(CONTENT_TYPE)
            .is_none());
    }

    #[tokio::test]
    async fn delay_advances_the_virtual_clock_and_becomes_a_timeout_at_the_deadline() {
        let f = fixture();
        f.faulty
            .arm(FaultRule::once(BASE, TransportFault::Delay { ms: 1_200 }));
        assert!(pay(&f.faulty).await.is_ok());
        assert_eq!(f.clock.now_ms(), 1_200);

        f.faulty
            .arm(FaultRule::once(BASE, TransportFault::Delay { ms: 9_000 }));
        assert_eq!(
            pay(&f.faulty).await.unwrap_err(),
            TransportError::Timeout {
                after_ms: 5_000,
                delivered: true
            }
        );
        assert_eq!(f.clock.now_ms(), 6_200);
        assert_eq!(
            *f.served_at.lock().unwrap(),
            [1_200, 6_200],
            "late request lands at the deadline"
        );
    }

    #[tokio::test]
    async fn rules_match_prefix_and_method_and_count_down() {
        let f = fixture();
        let posts = f
            .faulty
            .arm(FaultRule::always(BASE, TransportFault::Reset).for_method(Method::POST));
        f.faulty.arm(FaultRule::times(
            format!("{BASE}/query"),
            TransportFault::Reset,
            2,
        ));
        f.faulty.arm(FaultRule::always(
            "http://elsewhere.local",
            TransportFault::TimeoutBeforeDelivery,
        ));

        for _ in 0..3 {
            assert_eq!(
                pay(&f.faulty).await.unwrap_err(),
                TransportError::ConnectionReset
            );
        }
        assert!(query(&f.faulty).await.is_err());
        assert!(query(&f.faulty).await.is_err());
        assert!(query(&f.faulty).await.is_ok(), "the two-shot rule is spent");
        assert_eq!(f.faulty.armed().len(), 2);

        assert!(f.faulty.disarm(posts));
        assert!(!f.faulty.disarm(posts));
        assert!(pay(&f.faulty).await.is_ok());
        assert_eq!(f.faulty.take_faulted().len(), 5);
        assert!(f.faulty.faulted().is_empty());
        f.faulty.disarm_all();
        assert!(f.faulty.armed().is_empty());

        // times: Some(0) never fires.
        f.faulty
            .arm(FaultRule::times(BASE, TransportFault::Reset, 0));
        assert!(pay(&f.faulty).await.is_ok());
    }

    #[test]
    fn every_fault_is_in_the_catalogue_with_a_unique_name() {
        let all = [
            TransportFault::Delay { ms: 1 },
            TransportFault::TimeoutBeforeDelivery,
            TransportFault::TimeoutAfterDelivery,
            TransportFault::Reset,
            TransportFault::TruncatedBody { keep_bytes: 1 },
            TransportFault::WrongContentType("text/plain".into()),
        ];
        let catalogue = TransportFault::catalogue();
        assert_eq!(catalogue.len(), all.len());
        for fault in &all {
            assert!(
                catalogue.contains(&(fault.name(), fault.describe())),
                "{fault:?}"
            );
        }
        for (name, doc) in catalogue {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(!doc.is_empty() && !doc.contains('\n'));
            assert_eq!(
                catalogue.iter().filter(|(other, _)| other == name).count(),
                1
            );
        }
    }
}
