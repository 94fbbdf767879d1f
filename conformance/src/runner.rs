//! Runs one scenario: builds the world, hands it to the system under test, executes each step
//! through HTTP (the gateway's API, the simulator's control plane) and the transport's fault
//! rules, lets the scheduler run what falls due — the clock jumps from event to event — and
//! checks expectations. The result is a verdict, the failures with expected vs actual, and a
//! timeline that is byte-identical for the same file and seed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use determinism::{
    run_virtual_until, Clock, EntropyExt, FaultRule, FaultyTransport, InProcessTransport,
    Scheduler, SeededEntropy, SkewedClock, TransportFault, VirtualClock, VirtualSleeper,
};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::catalogue;
use crate::model::{Answer, Expect, NotificationsExpect, TransportFaultStep};
use crate::parse::{Action, Advance, Scenario, Step, DEFAULT_MERCHANT, IDLE_LIMIT_MS};
use crate::text::{format_amount, format_duration, format_offset, parse_amount, parse_duration};
use crate::world::{
    Direction, Exchange, Recorder, SystemUnderTest, WorldParts, GATEWAY_URL, SIMULATOR_URL,
};

/// The entropy stream of the runner's own draws (random delays), apart from both sides'.
const RUNNER_STREAM: u64 = 3;
/// Largest body read from either Router.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// An expectation did not hold.
    Fail,
    /// The run could not be carried out (the system under test did not build).
    Error,
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// 1-based step number (0: the checks at the end of the run).
    pub step: usize,
    pub line: usize,
    pub column: usize,
    /// What was checked: `order o1 state`, `ledger channel_clearing:alipay:CNY` …
    pub check: String,
    pub expected: String,
    pub actual: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Milliseconds since the scenario's start.
    pub at_ms: i64,
    pub text: String,
}

/// The outcome of one scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub file: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// Expectations evaluated.
    pub checks: usize,
    pub failures: Vec<Failure>,
    /// Virtual time the run covered.
    pub simulated_ms: i64,
    /// Set when the verdict is `error`.
    pub error: Option<String>,
    pub timeline: Vec<TimelineEntry>,
}

impl ScenarioReport {
    /// The timeline as text, one entry a line: what two runs must agree on byte for byte.
    pub fn timeline_text(&self) -> String {
        let mut out = String::new();
        for entry in &self.timeline {
            out.push_str(&format_offset(entry.at_ms));
            out.push(' ');
            out.push_str(&entry.text);
            out.push('\n');
        }
        out
    }

    /// The command that repeats this run.
    pub fn repro(&self) -> String {
        format!("paysim scenario run {} --seed {}", self.file, self.seed)
    }
}

/// Runs `scenario` (with `seed` instead of the file's when given) against `sut`.
pub async fn run(
    scenario: &Scenario,
    sut: &dyn SystemUnderTest,
    seed: Option<u64>,
) -> ScenarioReport {
    let seed = seed.unwrap_or(scenario.seed);
    let clock = VirtualClock::new(scenario.start_ms);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let scheduler = Scheduler::new(Arc::clone(&shared));
    let in_process = InProcessTransport::new();
    let faulty = FaultyTransport::new(
        Arc::new(in_process.clone()),
        Arc::new(VirtualSleeper(clock.clone())),
    );
    let recorder = Recorder::new(faulty, clock.clone());
    let channel_clock: Arc<dyn Clock> = if scenario.channel_clock_skew_ms == 0 {
        Arc::clone(&shared)
    } else {
        Arc::new(SkewedClock::new(
            Arc::clone(&shared),
            scenario.channel_clock_skew_ms,
        ))
    };
    let parts = WorldParts {
        seed,
        clock: shared,
        channel_clock,
        scheduler: scheduler.clone(),
        transport: Arc::new(recorder.clone()),
        gateway_url: GATEWAY_URL,
        simulator_url: SIMULATOR_URL,
    };
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: scenario.file.clone(),
        seed,
        verdict: Verdict::Pass,
        checks: 0,
        failures: Vec::new(),
        simulated_ms: 0,
        error: None,
        timeline: Vec::new(),
    };
    let routers = match sut.build(parts, scenario).await {
        Ok(routers) => routers,
        Err(error) => {
            report.verdict = Verdict::Error;
            report.error = Some(format!("the system under test did not build: {error:#}"));
            return report;
        }
    };
    for (url, router) in [
        (SIMULATOR_URL, &routers.simulator),
        (GATEWAY_URL, &routers.gateway),
    ] {
        if let Err(error) = in_process.try_register(url, router.clone()) {
            report.verdict = Verdict::Error;
            report.error = Some(format!("registering {url}: {error}"));
            return report;
        }
    }
    let mut run = Run {
        scenario,
        start_ms: scenario.start_ms,
        clock,
        scheduler,
        recorder,
        gateway: routers.gateway,
        simulator: routers.simulator,
        entropy: SeededEntropy::with_stream(seed, RUNNER_STREAM),
        orders: BTreeMap::new(),
        refunds: BTreeMap::new(),
        responses: BTreeMap::new(),
        exchanges_seen: 0,
        focus: None,
        report,
    };
    for step in &scenario.steps {
        run.step(step).await;
    }
    run.final_checks().await;
    let mut report = run.report;
    report.simulated_ms = run.clock.now_ms().saturating_sub(run.start_ms);
    if !report.failures.is_empty() {
        report.verdict = Verdict::Fail;
    }
    report
}

/// An order the scenario created.
#[derive(Debug, Clone)]
struct OrderRef {
    id: String,
    channel: String,
}

/// An HTTP answer read to the end.
struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Reply {
    fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    /// `201` or `409 refund_exceeds_refundable`.
    fn summary(&self) -> String {
        match self.code() {
            Some(code) if !self.status.is_success() => format!("{} {code}", self.status.as_u16()),
            _ => self.status.as_u16().to_string(),
        }
    }
}

struct Run<'a> {
    scenario: &'a Scenario,
    start_ms: i64,
    clock: VirtualClock,
    scheduler: Scheduler,
    recorder: Recorder,
    gateway: Router,
    simulator: Router,
    entropy: SeededEntropy,
    orders: BTreeMap<String, OrderRef>,
    refunds: BTreeMap<String, String>,
    /// (status, error code) of each step with an id.
    responses: BTreeMap<String, (u16, Option<String>)>,
    exchanges_seen: usize,
    /// Where the expectation being checked is written (line, column), when known.
    focus: Option<(usize, usize)>,
    report: ScenarioReport,
}

async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Reply {
                status: parts.status,
                body: Value::Null,
                text: format!("<body unreadable: {error}>"),
            }
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status: parts.status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    }
}

fn request(
    method: Method,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    match builder.body(body) {
        Ok(request) => request,
        // Paths are built from ids the gateway issued; a broken one is answered 404 below.
        Err(_) => Request::new(Body::empty()),
    }
}

/// An amount as the API writes it (`"25.00"`), from what the scenario wrote (`"25"`).
fn normalize_amount(text: &str) -> String {
    match text.strip_prefix('-') {
        Some(positive) => {
            parse_amount(positive).map_or_else(|_| text.to_owned(), |m| format_amount(-m))
        }
        None => parse_amount(text).map_or_else(|_| text.to_owned(), format_amount),
    }
}

fn quoted(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(absent)".to_owned(),
        Some(Value::String(text)) => format!("{text:?}"),
        Some(other) => other.to_string(),
    }
}

impl Run<'_> {
    fn now_offset(&self) -> i64 {
        self.clock.now_ms().saturating_sub(self.start_ms)
    }

    fn log(&mut self, text: impl Into<String>) {
        let at_ms = self.now_offset();
        self.report.timeline.push(TimelineEntry {
            at_ms,
            text: text.into(),
        });
    }

    fn fail(
        &mut self,
        step: &Step,
        check: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) {
        let (line, column) = self.focus.unwrap_or((step.line, step.column));
        let failure = Failure {
            step: step.number,
            line,
            column,
            check: check.into(),
            expected: expected.into(),
            actual: actual.into(),
        };
        self.log(format!(
            "  ✗ {}: expected {}, actual {}",
            failure.check, failure.expected, failure.actual
        ));
        self.report.failures.push(failure);
    }

    /// Counts a check and records its outcome.
    fn check(&mut self, step: &Step, what: String, expected: String, actual: String) {
        self.report.checks += 1;
        if expected == actual {
            self.log(format!("  ✓ {what} = {actual}"));
        } else {
            self.fail(step, what, expected, actual);
        }
    }

    /// Moves new exchanges of the transport into the timeline.
    fn collect_exchanges(&mut self) {
        let exchanges = self.recorder.exchanges();
        let fresh: Vec<Exchange> = exchanges.into_iter().skip(self.exchanges_seen).collect();
        self.exchanges_seen += fresh.len();
        for exchange in fresh {
            let arrow = match exchange.direction {
                Direction::Request => "gateway → channel",
                Direction::Notification => "channel → gateway",
            };
            let faults = if exchange.faults.is_empty() {
                String::new()
            } else {
                format!(" [transport fault: {}]", exchange.faults.join(", "))
            };
            let reply =
                if exchange.direction == Direction::Notification && !exchange.reply.is_empty() {
                    format!(" {:?}", exchange.reply)
                } else {
                    String::new()
                };
            self.report.timeline.push(TimelineEntry {
                at_ms: exchange.started_ms.saturating_sub(self.start_ms),
                text: format!(
                    "    {arrow} {} {} → {}{reply}{faults}",
                    exchange.method, exchange.target, exchange.outcome
                ),
            });
        }
    }

    /// Runs every event due now.
    async fn settle(&mut self) {
        let now = self.clock.now_ms();
        run_virtual_until(&self.scheduler, &self.clock, now).await;
        self.collect_exchanges();
    }

    async fn gateway(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Reply {
        send(&self.gateway, request(method, path, body, key)).await
    }

    async fn control(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        send(&self.simulator, request(method, path, body, None)).await
    }

    /// The channel's trade of an order, from the control plane.
    async fn trade(&self, order: &OrderRef) -> Reply {
        let path = format!("/_paysim/{}/trades/{}", order.channel, order.id);
        self.control(Method::GET, &path, None).await
    }

    fn order_ref(&mut self, step: &Step, alias: &str) -> Option<OrderRef> {
        let found = self.orders.get(alias).cloned();
        if found.is_none() {
            self.fail(
                step,
                format!("order {alias}"),
                "created by an earlier step".to_owned(),
                "its create_order step failed".to_owned(),
            );
        }
        found
    }

    fn refund_id(&mut self, step: &Step, alias: &str) -> Option<String> {
        let found = self.refunds.get(alias).cloned();
        if found.is_none() {
            self.fail(
                step,
                format!("refund {alias}"),
                "requested by an earlier step".to_owned(),
                "its refund step failed".to_owned(),
            );
        }
        found
    }

    /// Checks a gateway answer against the step's inline `status`/`error`, records it under
    /// the step's id, and logs it.
    fn answer(&mut self, step: &Step, what: &str, reply: &Reply, expected: &Answer) {
        if let Some(id) = &step.id {
            self.responses.insert(
                id.clone(),
                (reply.status.as_u16(), reply.code().map(str::to_owned)),
            );
        }
        let detail = match reply.body.get("state").and_then(Value::as_str) {
            Some(state) if reply.status.is_success() => format!(" state={state}"),
            _ => match reply.body.get("message").and_then(Value::as_str) {
                Some(message) if !reply.status.is_success() => format!(" ({message})"),
                _ => String::new(),
            },
        };
        self.log(format!("  ← {}{detail}", reply.summary()));
        self.report.checks += 1;
        let status_ok = match expected.status {
            Some(status) => reply.status.as_u16() == status,
            None => reply.status.is_success(),
        };
        let error_ok = expected
            .error
            .as_deref()
            .is_none_or(|code| reply.code() == Some(code));
        if !(status_ok && error_ok) {
            let expected_text = match (&expected.status, &expected.error) {
                (Some(status), Some(code)) => format!("{status} {code}"),
                (Some(status), None) => status.to_string(),
                (None, Some(code)) => format!("2xx {code}"),
                (None, None) => "2xx".to_owned(),
            };
            let actual = match reply.body.get("message").and_then(Value::as_str) {
                Some(message) => format!("{} ({message})", reply.summary()),
                None => reply.summary(),
            };
            self.fail(step, format!("{what} answer"), expected_text, actual);
        }
    }

    /// Points failures at the expectation written at `span`.
    fn focus_on(&mut self, span: std::ops::Range<usize>) {
        self.focus = Some(self.scenario.position(span.start));
    }

    async fn step(&mut self, step: &Step) {
        self.focus = None;
        let label = match &step.id {
            Some(id) => format!("step {} [{id}] {}", step.number, step.action.keyword()),
            None => format!("step {} {}", step.number, step.action.keyword()),
        };
        self.log(format!("{label}{}", describe(&step.action)));
        match &step.action {
            Action::CreateOrder(create) => {
                let mut params = serde_json::Map::new();
                let mut put = |key: &str, value: Option<&String>| {
                    if let Some(value) = value {
                        params.insert(key.to_owned(), json!(value));
                    }
                };
                let default_ip = (create.channel.get_ref() == "wechatpay"
                    && create.method.get_ref() == "wap")
                    .then(|| "203.0.113.7".to_owned());
                let default_openid = (create.method.get_ref() == "jsapi")
                    .then(|| "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".to_owned());
                put("auth_code", create.auth_code.as_ref());
                put("openid", create.openid.as_ref().or(default_openid.as_ref()));
                put(
                    "client_ip",
                    create.client_ip.as_ref().or(default_ip.as_ref()),
                );
                put("return_url", create.return_url.as_ref());
                let mut body = serde_json::Map::new();
                body.insert(
                    "merchant_id".into(),
                    json!(create
                        .merchant
                        .clone()
                        .or_else(|| self.scenario.setup.merchant.clone())
                        .unwrap_or_else(|| DEFAULT_MERCHANT.to_owned())),
                );
                body.insert("channel".into(), json!(create.channel.get_ref()));
                body.insert("method".into(), json!(create.method.get_ref()));
                body.insert("amount".into(), json!(create.amount.get_ref()));
                body.insert(
                    "subject".into(),
                    json!(create
                        .subject
                        .clone()
                        .unwrap_or_else(|| format!("scenario order {}", create.order.get_ref()))),
                );
                if !params.is_empty() {
                    body.insert("method_params".into(), Value::Object(params));
                }
                if let Some(currency) = &create.currency {
                    body.insert("currency".into(), json!(currency));
                }
                if let Some(expires) = &create.expires_in {
                    let seconds = parse_duration(expires.get_ref()).unwrap_or(0) / 1_000;
                    body.insert("expires_in_seconds".into(), json!(seconds));
                }
                let body = Value::Object(body);
                let key = create
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| format!("scenario-step-{}", step.number));
                let reply = self
                    .gateway(Method::POST, "/v1/orders", Some(&body), Some(&key))
                    .await;
                self.collect_exchanges();
                // A 502 (outcome unknown) still names the order the gateway stored.
                let id = if reply.status.is_success() {
                    reply.body.get("id")
                } else {
                    reply.body.get("order_id")
                };
                {
                    if let Some(id) = id.and_then(Value::as_str) {
                        self.orders.insert(
                            create.order.get_ref().clone(),
                            OrderRef {
                                id: id.to_owned(),
                                channel: create.channel.get_ref().clone(),
                            },
                        );
                        self.log(format!("  order {} = {id}", create.order.get_ref()));
                    }
                }
                self.collect_exchanges();
                self.answer(
                    step,
                    &format!("create_order {}", create.order.get_ref()),
                    &reply,
                    &Answer::inline(create.status, create.error.as_ref()),
                );
            }
            Action::Close(close) => {
                if let Some(order) = self.order_ref(step, close.order.get_ref()) {
                    let key = format!("scenario-step-{}", step.number);
                    let reply = self
                        .gateway(
                            Method::POST,
                            &format!("/v1/orders/{}/close", order.id),
                            Some(&json!({})),
                            Some(&key),
                        )
                        .await;
                    self.collect_exchanges();
                    self.answer(
                        step,
                        &format!("close {}", close.order.get_ref()),
                        &reply,
                        &Answer::inline(close.status, close.error.as_ref()),
                    );
                }
            }
            Action::Refund(refund) => {
                if let Some(order) = self.order_ref(step, refund.order.get_ref()) {
                    let mut body = serde_json::Map::new();
                    body.insert("amount".into(), json!(refund.amount.get_ref()));
                    if let Some(reason) = &refund.reason {
                        body.insert("reason".into(), json!(reason));
                    }
                    let body = Value::Object(body);
                    let key = refund
                        .idempotency_key
                        .clone()
                        .unwrap_or_else(|| format!("scenario-step-{}", step.number));
                    let reply = self
                        .gateway(
                            Method::POST,
                            &format!("/v1/orders/{}/refunds", order.id),
                            Some(&body),
                            Some(&key),
                        )
                        .await;
                    if let (Some(alias), true) = (&refund.refund, reply.status.is_success()) {
                        if let Some(id) = reply.body.get("id").and_then(Value::as_str) {
                            self.refunds.insert(alias.get_ref().clone(), id.to_owned());
                            self.log(format!("  refund {} = {id}", alias.get_ref()));
                        }
                    }
                    self.collect_exchanges();
                    let what = format!("refund {}", refund.order.get_ref());
                    self.answer(
                        step,
                        &what,
                        &reply,
                        &Answer::inline(refund.status, refund.error.as_ref()),
                    );
                }
            }
            Action::Query(query) => {
                let path = match (&query.order, &query.refund) {
                    (Some(order), _) => self
                        .order_ref(step, order.get_ref())
                        .map(|o| format!("/v1/orders/{}", o.id)),
                    (None, Some(refund)) => self
                        .refund_id(step, refund.get_ref())
                        .map(|id| format!("/v1/refunds/{id}")),
                    (None, None) => None,
                };
                if let Some(path) = path {
                    let reply = self.gateway(Method::GET, &path, None, None).await;
                    let reply = Reply {
                        body: order_body(reply.body),
                        ..reply
                    };
                    self.collect_exchanges();
                    self.answer(
                        step,
                        "query",
                        &reply,
                        &Answer::inline(query.status, query.error.as_ref()),
                    );
                }
            }
            Action::Buyer(buyer) if buyer.action.get_ref() == "open" => {
                if let Some(order) = self.order_ref(step, buyer.order.get_ref()) {
                    self.open(step, &order, buyer.status.unwrap_or(200)).await;
                }
            }
            Action::Buyer(buyer) => {
                if let Some(order) = self.order_ref(step, buyer.order.get_ref()) {
                    let reply = self
                        .control(
                            Method::POST,
                            &format!("/_paysim/{}/trades/{}/actions", order.channel, order.id),
                            Some(&json!({ "action": buyer.action.get_ref() })),
                        )
                        .await;
                    self.collect_exchanges();
                    let state = reply
                        .body
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned();
                    self.log(format!("  ← {} trade {state}", reply.summary()));
                    self.report.checks += 1;
                    let expected = buyer.status.unwrap_or(200);
                    if reply.status.as_u16() != expected {
                        let message = reply
                            .body
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or(&reply.text)
                            .to_owned();
                        self.fail(
                            step,
                            format!("buyer {} answer", buyer.action.get_ref()),
                            expected.to_string(),
                            format!("{} ({message})", reply.summary()),
                        );
                    }
                }
            }
            Action::Fault(fault) => {
                let channel = fault
                    .channel
                    .as_ref()
                    .map(|c| c.get_ref().clone())
                    .or_else(|| self.scenario.channels.first().cloned())
                    .unwrap_or_default();
                let params = serde_json::to_value(&fault.params).unwrap_or(Value::Null);
                let reply = self.control(
                    Method::POST,
                    &format!("/_paysim/{channel}/faults"),
                    Some(&json!({ "target": fault.target.get_ref(), "fault": fault.name.get_ref(), "times": fault.times, "params": params })),
                ).await;
                if reply.status != StatusCode::CREATED {
                    self.report.checks += 1;
                    let message = reply
                        .body
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or(&reply.text)
                        .to_owned();
                    self.fail(
                        step,
                        format!("arming {}", fault.name.get_ref()),
                        "201".to_owned(),
                        format!("{} ({message})", reply.summary()),
                    );
                }
            }
            Action::TransportFault(fault) => {
                let rule = self.transport_rule(fault);
                self.recorder.faults().arm(rule);
            }
            Action::Advance(Advance::By(ms)) => {
                let until = self.clock.now_ms().saturating_add(*ms);
                run_virtual_until(&self.scheduler, &self.clock, until).await;
                self.collect_exchanges();
            }
            Action::Advance(Advance::UntilIdle) => {
                let limit = self.clock.now_ms().saturating_add(IDLE_LIMIT_MS);
                loop {
                    self.settle().await;
                    match self.scheduler.next_due_ms() {
                        None => break,
                        Some(next) if next > limit => {
                            let pending: Vec<String> = self
                                .scheduler
                                .pending()
                                .into_iter()
                                .take(5)
                                .map(|p| p.label)
                                .collect();
                            self.fail(
                                step,
                                "advance until_idle".to_owned(),
                                format!("idle within {}", format_duration(IDLE_LIMIT_MS)),
                                format!("still pending: {}", pending.join("; ")),
                            );
                            break;
                        }
                        Some(next) => {
                            run_virtual_until(&self.scheduler, &self.clock, next).await;
                        }
                    }
                }
                self.log("  idle");
            }
            Action::WaitUntil(wait) => self.wait_until(step, wait).await,
            Action::Expect(expect) => self.expect(step, expect).await,
        }
        self.settle().await;
    }

    /// The buyer opens what the order's `buyer_action` hands them, as their browser or app
    /// would: a cashier or H5 URL is fetched from the simulator, an Alipay app order string
    /// is handed to the simulated wallet (which opens the trade; `cancel` leaves it unpaid), a
    /// QR code is scanned. JSAPI/App prepay ids need no opening.
    async fn open(&mut self, step: &Step, order: &OrderRef, expected: u16) {
        let reply = self
            .gateway(Method::GET, &format!("/v1/orders/{}", order.id), None, None)
            .await;
        let action = order_body(reply.body)
            .get("buyer_action")
            .cloned()
            .unwrap_or(Value::Null);
        let kind = action
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_owned();
        let reply = match kind.as_str() {
            "redirect" => {
                let url = action
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let path = url.strip_prefix(SIMULATOR_URL).unwrap_or(url).to_owned();
                Some(self.control(Method::GET, &path, None).await)
            }
            "app" if order.channel == "alipay" => {
                let order_string = action
                    .get("order_string")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Some(
                    self.control(
                        Method::POST,
                        "/alipay/wallet/app-pay",
                        Some(&json!({ "order_string": order_string, "action": "cancel" })),
                    )
                    .await,
                )
            }
            "qr_code" => Some(
                self.control(
                    Method::POST,
                    &format!("/_paysim/{}/trades/{}/actions", order.channel, order.id),
                    Some(&json!({ "action": "scan" })),
                )
                .await,
            ),
            _ => None,
        };
        self.collect_exchanges();
        self.report.checks += 1;
        match reply {
            None => self.log(format!("  nothing to open ({kind})")),
            Some(reply) => {
                self.log(format!("  opened {kind} ← {}", reply.summary()));
                if reply.status.as_u16() != expected {
                    let excerpt: String = reply.text.chars().take(120).collect();
                    self.fail(
                        step,
                        format!("buyer open ({kind})"),
                        expected.to_string(),
                        format!("{} ({excerpt})", reply.summary()),
                    );
                }
            }
        }
    }

    fn transport_rule(&mut self, fault: &TransportFaultStep) -> FaultRule {
        let channel = fault
            .channel
            .as_ref()
            .map(|c| c.get_ref().clone())
            .or_else(|| self.scenario.channels.first().cloned())
            .unwrap_or_default();
        let notification = fault
            .direction
            .as_ref()
            .is_some_and(|d| d.get_ref() == "notification");
        let delay = fault
            .delay
            .as_ref()
            .and_then(|d| parse_duration(d.get_ref()).ok())
            .unwrap_or(0);
        let kind = match fault.fault.get_ref().as_str() {
            "delay" => TransportFault::Delay {
                ms: u64::try_from(delay).unwrap_or(0),
            },
            catalogue::RANDOM_DELAY => {
                let high = fault
                    .max_delay
                    .as_ref()
                    .and_then(|d| parse_duration(d.get_ref()).ok())
                    .unwrap_or(delay);
                let span = u64::try_from(high.saturating_sub(delay)).unwrap_or(0);
                let drawn = u64::try_from(delay)
                    .unwrap_or(0)
                    .saturating_add(self.entropy.uniform_below(span.saturating_add(1)));
                self.log(format!(
                    "  random delay drawn: {}",
                    format_duration(i64::try_from(drawn).unwrap_or(i64::MAX))
                ));
                TransportFault::Delay { ms: drawn }
            }
            "timeout_before_delivery" => TransportFault::TimeoutBeforeDelivery,
            "timeout_after_delivery" => TransportFault::TimeoutAfterDelivery,
            "reset" => TransportFault::Reset,
            "truncated_body" => TransportFault::TruncatedBody {
                keep_bytes: fault.keep_bytes.unwrap_or(10),
            },
            _ => TransportFault::WrongContentType(
                fault
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "text/html".to_owned()),
            ),
        };
        if notification {
            return FaultRule::times(format!("{GATEWAY_URL}/notify/{channel}"), kind, fault.times);
        }
        let (needle, method) = match &fault.api {
            Some(api) => catalogue::api_matcher(&channel, api.get_ref()).unwrap_or_default(),
            None => (
                if channel == "alipay" {
                    "/alipay/".to_owned()
                } else {
                    "/v3/".to_owned()
                },
                None,
            ),
        };
        let rule = FaultRule::times(SIMULATOR_URL, kind, fault.times).containing(needle);
        match method {
            Some(method) => rule.for_method(method),
            None => rule,
        }
    }

    /// The state of an order or refund, read from the gateway.
    async fn current_state(&self, path: &str) -> String {
        let reply = self.gateway(Method::GET, path, None, None).await;
        let body = order_body(reply.body);
        body.get("state")
            .and_then(Value::as_str)
            .map_or_else(|| reply.status.as_u16().to_string(), str::to_owned)
    }

    async fn wait_until(&mut self, step: &Step, wait: &crate::model::WaitUntil) {
        let path = match (&wait.order, &wait.refund) {
            (Some(order), _) => self
                .order_ref(step, order.get_ref())
                .map(|o| format!("/v1/orders/{}", o.id)),
            (None, Some(refund)) => self
                .refund_id(step, refund.get_ref())
                .map(|id| format!("/v1/refunds/{id}")),
            (None, None) => None,
        };
        let Some(path) = path else { return };
        let within = parse_duration(wait.within.get_ref()).unwrap_or(0);
        let deadline = self.clock.now_ms().saturating_add(within);
        let wanted = wait.state.get_ref().clone();
        self.report.checks += 1;
        loop {
            self.settle().await;
            let state = self.current_state(&path).await;
            if state == wanted {
                self.log(format!("  ✓ {state}"));
                return;
            }
            match self.scheduler.next_due_ms() {
                Some(next) if next <= deadline => {
                    run_virtual_until(&self.scheduler, &self.clock, next).await;
                }
                _ => {
                    run_virtual_until(&self.scheduler, &self.clock, deadline).await;
                    self.collect_exchanges();
                    let state = self.current_state(&path).await;
                    if state == wanted {
                        self.log(format!("  ✓ {state}"));
                    } else {
                        self.fail(
                            step,
                            format!("state within {}", wait.within.get_ref()),
                            format!("{wanted:?}"),
                            format!("{state:?}"),
                        );
                    }
                    return;
                }
            }
        }
    }

    async fn expect(&mut self, step: &Step, expect: &Expect) {
        for (alias, check) in &expect.order {
            self.focus_on(alias.span());
            let Some(order) = self.order_ref(step, alias.get_ref()) else {
                continue;
            };
            let reply = self
                .gateway(Method::GET, &format!("/v1/orders/{}", order.id), None, None)
                .await;
            let refunds = reply
                .body
                .get("refunds")
                .and_then(Value::as_array)
                .map(Vec::len);
            let body = order_body(reply.body);
            let name = alias.get_ref();
            if let Some(state) = &check.state {
                self.check(
                    step,
                    format!("order {name} state"),
                    format!("{:?}", state.get_ref()),
                    quoted(body.get("state")),
                );
            }
            if let Some(refunded) = &check.refunded {
                self.check(
                    step,
                    format!("order {name} refunded"),
                    format!("{:?}", normalize_amount(refunded.get_ref())),
                    quoted(body.get("refunded_amount")),
                );
            }
            if let Some(fee) = &check.fee {
                self.check(
                    step,
                    format!("order {name} fee"),
                    format!("{:?}", normalize_amount(fee.get_ref())),
                    quoted(body.get("fee_amount")),
                );
            }
            if let Some(count) = check.refunds {
                self.check(
                    step,
                    format!("order {name} refunds"),
                    count.to_string(),
                    refunds.map_or_else(|| "(absent)".to_owned(), |n| n.to_string()),
                );
            }
        }
        for (alias, check) in &expect.refund {
            self.focus_on(alias.span());
            let Some(id) = self.refund_id(step, alias.get_ref()) else {
                continue;
            };
            let reply = self
                .gateway(Method::GET, &format!("/v1/refunds/{id}"), None, None)
                .await;
            let name = alias.get_ref();
            if let Some(state) = &check.state {
                self.check(
                    step,
                    format!("refund {name} state"),
                    format!("{:?}", state.get_ref()),
                    quoted(reply.body.get("state")),
                );
            }
            if let Some(amount) = &check.amount {
                self.check(
                    step,
                    format!("refund {name} amount"),
                    format!("{:?}", normalize_amount(amount.get_ref())),
                    quoted(reply.body.get("amount")),
                );
            }
        }
        for (alias, check) in &expect.trade {
            self.focus_on(alias.span());
            let Some(order) = self.order_ref(step, alias.get_ref()) else {
                continue;
            };
            let reply = self.trade(&order).await;
            let name = alias.get_ref();
            let exists = reply.status.is_success();
            if let Some(state) = &check.state {
                let actual = if exists {
                    quoted(reply.body.get("state"))
                } else {
                    "(no trade)".to_owned()
                };
                self.check(
                    step,
                    format!("trade {name} state"),
                    format!("{state:?}"),
                    actual,
                );
            }
            if let Some(refunded) = &check.refunded {
                self.check(
                    step,
                    format!("trade {name} refunded"),
                    format!("{:?}", normalize_amount(refunded.get_ref())),
                    quoted(reply.body.get("refunded_amount")),
                );
            }
            if let Some(expected) = check.exists {
                let actual = exists
                    && reply
                        .body
                        .get("exists_at_channel")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                self.check(
                    step,
                    format!("trade {name} exists"),
                    expected.to_string(),
                    actual.to_string(),
                );
            }
        }
        if !expect.ledger.is_empty() {
            let reply = self
                .gateway(Method::GET, "/v1/ledger/accounts", None, None)
                .await;
            let balances: BTreeMap<String, String> = reply
                .body
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|account| {
                    Some((
                        account.get("account")?.as_str()?.to_owned(),
                        account.get("balance")?.as_str()?.to_owned(),
                    ))
                })
                .collect();
            for (account, balance) in &expect.ledger {
                self.focus_on(account.span());
                let actual = balances
                    .get(account.get_ref())
                    .cloned()
                    .unwrap_or_else(|| "0.00".to_owned());
                self.check(
                    step,
                    format!("ledger {}", account.get_ref()),
                    normalize_amount(balance.get_ref()),
                    actual,
                );
            }
        }
        if let Some(expected) = expect.ledger_verified {
            self.focus = None;
            let (ok, detail) = self.verify_ledger().await;
            let actual = if ok {
                "true".to_owned()
            } else {
                format!("false ({detail})")
            };
            self.check(
                step,
                "ledger verified".to_owned(),
                expected.to_string(),
                actual,
            );
        }
        for (alias, check) in &expect.notifications {
            self.focus_on(alias.span());
            let Some(order) = self.order_ref(step, alias.get_ref()) else {
                continue;
            };
            let reply = self.trade(&order).await;
            self.check_notifications(step, alias.get_ref(), check, &reply.body);
        }
        for check in &expect.exchanges {
            if let Some(at) = check.api.as_ref().map(toml::Spanned::span).or_else(|| {
                check
                    .sequence
                    .as_ref()
                    .and_then(|s| s.first())
                    .map(toml::Spanned::span)
            }) {
                self.focus_on(at);
            }
            let order = match &check.order {
                Some(alias) => match self.order_ref(step, alias.get_ref()) {
                    Some(order) => Some((alias.get_ref().clone(), order)),
                    None => continue,
                },
                None => None,
            };
            let channel = check
                .channel
                .as_ref()
                .map(|c| c.get_ref().clone())
                .or_else(|| order.as_ref().map(|(_, o)| o.channel.clone()))
                .or_else(|| self.scenario.channels.first().cloned())
                .unwrap_or_default();
            let reply = self
                .control(Method::GET, &format!("/_paysim/{channel}/exchanges"), None)
                .await;
            let apis: Vec<String> = reply
                .body
                .get("exchanges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|exchange| match &order {
                    Some((_, order)) => {
                        exchange.get("out_trade_no").and_then(Value::as_str)
                            == Some(order.id.as_str())
                    }
                    None => true,
                })
                .filter_map(|exchange| {
                    exchange
                        .get("api")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect();
            let scope = order.as_ref().map_or_else(
                || channel.clone(),
                |(alias, _)| format!("{channel} order {alias}"),
            );
            if let Some(api) = &check.api {
                let count = apis.iter().filter(|a| *a == api.get_ref()).count();
                let what = format!("exchanges {scope} {}", api.get_ref());
                if let Some(expected) = check.count {
                    self.check(
                        step,
                        format!("{what} count"),
                        expected.to_string(),
                        count.to_string(),
                    );
                }
                if let Some(min) = check.min {
                    let actual = if count >= min {
                        format!("≥ {min}")
                    } else {
                        count.to_string()
                    };
                    self.check(step, format!("{what} count"), format!("≥ {min}"), actual);
                }
                if let Some(max) = check.max {
                    let actual = if count <= max {
                        format!("≤ {max}")
                    } else {
                        count.to_string()
                    };
                    self.check(step, format!("{what} count"), format!("≤ {max}"), actual);
                }
            }
            if let Some(sequence) = &check.sequence {
                let wanted: Vec<&str> = sequence.iter().map(|s| s.get_ref().as_str()).collect();
                let mut next = wanted.iter().peekable();
                for api in &apis {
                    if next.peek().is_some_and(|w| **w == api.as_str()) {
                        next.next();
                    }
                }
                let expected = wanted.join(" → ");
                let actual = if next.peek().is_none() {
                    expected.clone()
                } else {
                    apis.join(" → ")
                };
                self.check(
                    step,
                    format!("exchanges {scope} sequence"),
                    expected,
                    actual,
                );
            }
        }
        for (id, answer) in &expect.response {
            self.focus_on(id.span());
            let (status, code) = self
                .responses
                .get(id.get_ref())
                .cloned()
                .unwrap_or((0, None));
            if let Some(expected) = answer.status {
                self.check(
                    step,
                    format!("response of {} status", id.get_ref()),
                    expected.to_string(),
                    status.to_string(),
                );
            }
            if let Some(expected) = &answer.error {
                self.check(
                    step,
                    format!("response of {} error", id.get_ref()),
                    expected.clone(),
                    code.unwrap_or_else(|| "(none)".to_owned()),
                );
            }
        }
        if !expect.alerts.is_empty() {
            let reply = self.gateway(Method::GET, "/v1/alerts", None, None).await;
            let list = reply.body.get("alerts").cloned().unwrap_or(reply.body);
            let kinds: Vec<String> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|alert| alert.get("kind").and_then(Value::as_str).map(str::to_owned))
                .collect();
            for (kind, expected) in &expect.alerts {
                self.focus_on(kind.span());
                let count = kinds.iter().filter(|k| *k == kind.get_ref()).count();
                self.check(
                    step,
                    format!("alerts {}", kind.get_ref()),
                    expected.to_string(),
                    count.to_string(),
                );
            }
        }
    }

    fn check_notifications(
        &mut self,
        step: &Step,
        alias: &str,
        check: &NotificationsExpect,
        trade: &Value,
    ) {
        let event = check.event.as_ref().map(|e| e.get_ref().as_str());
        let notifications: Vec<&Value> = trade
            .get("notifications")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|n| event.is_none_or(|e| n.get("event").and_then(Value::as_str) == Some(e)))
            .collect();
        let what = match event {
            Some(event) => format!("notifications {alias} ({event})"),
            None => format!("notifications {alias}"),
        };
        if let Some(count) = check.count {
            self.check(
                step,
                format!("{what} count"),
                count.to_string(),
                notifications.len().to_string(),
            );
        }
        if let Some(state) = &check.state {
            let states: Vec<&str> = notifications
                .iter()
                .filter_map(|n| n.get("state").and_then(Value::as_str))
                .collect();
            let actual = if !states.is_empty() && states.iter().all(|s| *s == state.get_ref()) {
                state.get_ref().clone()
            } else if states.is_empty() {
                "(no notification)".to_owned()
            } else {
                states.join(", ")
            };
            self.check(
                step,
                format!("{what} state"),
                state.get_ref().clone(),
                actual,
            );
        }
        let attempts_of = |n: &Value| -> Vec<i64> {
            let mut seen: Vec<(u64, i64)> = Vec::new();
            for attempt in n
                .get("attempts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let number = attempt.get("attempt").and_then(Value::as_u64).unwrap_or(0);
                let at = attempt.get("at_ms").and_then(Value::as_i64).unwrap_or(0);
                if !seen.iter().any(|(k, _)| *k == number) {
                    seen.push((number, at));
                }
            }
            seen.into_iter().map(|(_, at)| at).collect()
        };
        if let Some(expected) = check.attempts {
            let total: usize = notifications.iter().map(|n| attempts_of(n).len()).sum();
            self.check(
                step,
                format!("{what} attempts"),
                expected.to_string(),
                total.to_string(),
            );
        }
        if let Some(schedule) = &check.schedule {
            let expected: Vec<String> = schedule
                .iter()
                .map(|offset| format_duration(parse_duration(offset.get_ref()).unwrap_or(0)))
                .collect();
            let actual: Vec<String> = notifications
                .first()
                .map(|n| {
                    let times = attempts_of(n);
                    let first = times.first().copied().unwrap_or(0);
                    times
                        .iter()
                        .map(|at| format_duration(at.saturating_sub(first)))
                        .collect()
                })
                .unwrap_or_default();
            self.check(
                step,
                format!("{what} schedule"),
                format!("[{}]", expected.join(", ")),
                format!("[{}]", actual.join(", ")),
            );
        }
    }

    async fn verify_ledger(&self) -> (bool, String) {
        let reply = self
            .gateway(Method::GET, "/v1/ledger/verify", None, None)
            .await;
        let ok = reply
            .body
            .get("ok")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let detail = match reply.body.get("first_violation") {
            Some(Value::Object(violation)) => format!(
                "{}: {} — {}",
                violation
                    .get("invariant")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                violation
                    .get("subject")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                violation
                    .get("detail")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
            ),
            _ => format!("{} {}", reply.status.as_u16(), reply.text),
        };
        (ok, detail)
    }

    /// What every run checks at its end: the ledger invariants.
    async fn final_checks(&mut self) {
        self.settle().await;
        let (ok, detail) = self.verify_ledger().await;
        self.report.checks += 1;
        if ok {
            self.log("end: ledger invariants hold");
        } else {
            let failure = Failure {
                step: 0,
                line: 0,
                column: 0,
                check: "ledger invariants at the end".to_owned(),
                expected: "all hold".to_owned(),
                actual: detail,
            };
            self.log(format!("end: ✗ ledger invariants: {}", failure.actual));
            self.report.failures.push(failure);
        }
    }
}

/// `GET /v1/orders/{id}` answers `{order, refunds, history}`; other reads answer the object.
fn order_body(body: Value) -> Value {
    match body.get("order") {
        Some(order @ Value::Object(_)) => order.clone(),
        _ => body,
    }
}

/// A short description of a step for the timeline.
fn describe(action: &Action) -> String {
    match action {
        Action::CreateOrder(c) => format!(
            " {} {} {} {}",
            c.order.get_ref(),
            c.channel.get_ref(),
            c.method.get_ref(),
            c.amount.get_ref()
        ),
        Action::Close(c) => format!(" {}", c.order.get_ref()),
        Action::Refund(r) => format!(" {} {}", r.order.get_ref(), r.amount.get_ref()),
        Action::Query(q) => format!(
            " {}",
            q.order
                .as_ref()
                .or(q.refund.as_ref())
                .map_or("", |t| t.get_ref().as_str())
        ),
        Action::Buyer(b) => format!(" {} {}", b.order.get_ref(), b.action.get_ref()),
        Action::Fault(f) => format!(
            " {} on {} ×{}",
            f.name.get_ref(),
            f.target.get_ref(),
            f.times
        ),
        Action::TransportFault(f) => format!(
            " {} on {} ×{}",
            f.fault.get_ref(),
            f.api
                .as_ref()
                .map(|a| a.get_ref().clone())
                .or_else(|| f.direction.as_ref().map(|d| d.get_ref().clone()))
                .unwrap_or_else(|| "request".to_owned()),
            f.times
        ),
        Action::Advance(Advance::By(ms)) => format!(" {}", format_duration(*ms)),
        Action::Advance(Advance::UntilIdle) => " until idle".to_owned(),
        Action::WaitUntil(w) => format!(
            " {} {} within {}",
            w.order
                .as_ref()
                .or(w.refund.as_ref())
                .map_or("", |t| t.get_ref().as_str()),
            w.state.get_ref(),
            w.within.get_ref()
        ),
        Action::Expect(_) => String::new(),
    }
}
