//! The property suite: random operation sequences with faults across both channels, run
//! against the whole stack ([`crate::multi_sim::MultiSim`]: real gateway core, real mock
//! channels, real store, on the virtual clock, through the same HTTP handlers and adapters as
//! production), compared after every step with an independent reference model
//! ([`model`]), with the ledger invariants checked after every step (`GET /v1/ledger/verify`)
//! and agreement with the channels (I7, clearing vs settlements) at every quiescence.
//!
//! [`run_suite`] drives proptest: a failing case is shrunk to a minimal script (printed by
//! [`ops::Case`]'s `Debug`) and its seed persisted to `proptest-regressions/`.

#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a broken assumption here is a failing test"
)]

pub mod model;
pub mod ops;
pub mod scenario;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use determinism::{FaultRule, TransportFault};
use gateway_core::PlantedBugs;
use http::StatusCode;
use proptest::test_runner::{
    Config, FailurePersistence, FileFailurePersistence, PersistedSeed, RngSeed, TestCaseError,
    TestError, TestRunner,
};
use serde_json::{json, Value};

use crate::multi_sim::{MultiOptions, MultiSim, StoreKind, ALIPAY_PREFIX, WECHATPAY_PREFIX};
use model::{Chan, Gw, MOrder, MRefund, Model, Rs, REFUND_POLLS_MS};
use ops::{Buyer, Case, Ch, Method, NetFault, Op, Portion};
use scenario::{StepHint, Trace};

/// Order expiry used by every created order.
const EXPIRY_S: i64 = 1_800;
/// How much virtual time a quiescence lets pass: past WeChat Pay's 24 h 4 min retry schedule.
const QUIESCE_MS: i64 = 26 * 3_600_000;

/// What found a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The gateway's answer or state is outside what the reference model allows.
    Model,
    /// `GET /v1/ledger/verify` reported a violation (I1–I6, I8, I9).
    Invariant,
    /// At quiescence the gateway disagrees with the simulator (I7, clearing vs settlements).
    Agreement,
    /// The harness itself could not do what it meant to.
    Harness,
}

impl FailureKind {
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Model => "MODEL",
            FailureKind::Invariant => "INVARIANT",
            FailureKind::Agreement => "AGREEMENT",
            FailureKind::Harness => "HARNESS",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub step: usize,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] step {}: {}",
            self.kind.name(),
            self.step,
            self.message
        )
    }
}

/// What one case did.
#[derive(Debug, Clone, Default)]
pub struct CaseStats {
    pub ops: usize,
    /// Operations that reached a channel: a buyer action at its cashier, or any operation
    /// during which at least one HTTP exchange crossed between the gateway and a channel (a
    /// call, its retry, a poll, a notification); arming a fault or moving the clock alone does
    /// not count.
    pub channel_ops: usize,
    pub mix: BTreeMap<&'static str, usize>,
    /// Of each kind, how many reached a channel.
    pub reached_mix: BTreeMap<&'static str, usize>,
}

impl CaseStats {
    pub fn add(&mut self, other: &CaseStats) {
        self.ops += other.ops;
        self.channel_ops += other.channel_ops;
        for (name, count) in &other.mix {
            *self.mix.entry(name).or_insert(0) += count;
        }
        for (name, count) in &other.reached_mix {
            *self.reached_mix.entry(name).or_insert(0) += count;
        }
    }
}

/// How a case runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub store: StoreKind,
    pub planted: PlantedBugs,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            store: StoreKind::SqliteMemory,
            planted: PlantedBugs::NONE,
        }
    }
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Create { .. } => "create",
        Op::Buyer { .. } => "buyer",
        Op::Close { .. } => "close",
        Op::Refund { .. } => "refund",
        Op::Query { .. } => "query",
        Op::Advance { .. } => "advance",
        Op::Protocol { .. } => "protocol_fault",
        Op::Net { .. } => "transport_fault",
        Op::Quiesce => "quiesce",
    }
}

struct Runner {
    sim: MultiSim,
    model: Model,
    step: usize,
    armed: BTreeMap<Ch, bool>,
    notify_faults: BTreeSet<Ch>,
    /// What the model pinned for each operation so far (the scenario rendering's input).
    hints: Vec<StepHint>,
}

fn fail(kind: FailureKind, step: usize, message: String) -> Failure {
    Failure {
        kind,
        step,
        message,
    }
}

fn set<T: fmt::Debug>(items: &BTreeSet<T>) -> String {
    format!("{items:?}")
}

/// Civil date (y, m, d) of a count of days since 1970-01-01.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Runner {
    fn err(&self, kind: FailureKind, message: String) -> Failure {
        fail(kind, self.step, message)
    }

    fn harness<E: fmt::Display>(&self, what: &str) -> impl Fn(E) -> Failure + '_ {
        let what = what.to_owned();
        move |e| self.err(FailureKind::Harness, format!("{what}: {e}"))
    }

    fn now(&self) -> i64 {
        self.sim.now_ms()
    }

    async fn get_json(&self, path: &str, gateway: bool) -> Result<(StatusCode, Value), Failure> {
        let reply = if gateway {
            self.sim.gateway_get(path).await
        } else {
            self.sim.control_get(path).await
        }
        .map_err(self.harness(path))?;
        let body = reply.json().unwrap_or(Value::Null);
        Ok((reply.status, body))
    }

    async fn faults_armed(&self, ch: Ch) -> Result<bool, Failure> {
        let (_, body) = self
            .get_json(&format!("/_paysim/{}/faults", ch.name()), false)
            .await?;
        let protocol = body["faults"]
            .as_array()
            .is_some_and(|faults| faults.iter().any(|f| f["remaining"].as_i64() != Some(0)));
        let prefix = match ch {
            Ch::Alipay => ALIPAY_PREFIX,
            Ch::Wechatpay => WECHATPAY_PREFIX,
        };
        let transport = self
            .sim
            .faulty
            .armed()
            .iter()
            .any(|(_, rule)| rule.matcher.url_prefix == prefix);
        Ok(protocol || transport)
    }

    fn disturb(&mut self, ch: Ch) {
        for order in self.model.orders_on(ch) {
            order.disturbed = true;
            for refund in &mut order.refunds {
                refund.disturbed = true;
            }
        }
    }

    fn pick(&self, index: u8) -> Option<usize> {
        if self.model.orders.is_empty() {
            None
        } else {
            Some(usize::from(index) % self.model.orders.len())
        }
    }

    /// A refund's order: the `index`-th (modulo their count) of the orders last seen captured,
    /// so most refunds reach a channel; the `index`-th of all orders when none is captured (a
    /// refund of an unpaid order, refused).
    fn pick_refund(&self, index: u8) -> Option<usize> {
        let captured: Vec<usize> = (0..self.model.orders.len())
            .filter(|i| self.model.orders[*i].last_seen.is_some_and(Gw::captured))
            .collect();
        if captured.is_empty() {
            self.pick(index)
        } else {
            Some(captured[usize::from(index) % captured.len()])
        }
    }

    /// Reads an order through the API and checks it against the model; learns the refunds the
    /// model had not heard of (a refund whose answer was lost).
    async fn check_order(&mut self, index: usize) -> Result<Value, Failure> {
        let id = self.model.orders[index].id.clone();
        let (status, body) = self.get_json(&format!("/v1/orders/{id}"), true).await?;
        if status != StatusCode::OK {
            return Err(self.err(
                FailureKind::Model,
                format!("GET /v1/orders/{id} answered {status}: {body}"),
            ));
        }
        let now = self.now();
        let skew = self.model.skew_ms;
        let order = &self.model.orders[index];
        if body["amount_minor"].as_i64() != Some(order.amount) {
            return Err(self.err(
                FailureKind::Model,
                format!(
                    "order {id} has amount_minor {} but {} was ordered",
                    body["amount_minor"], order.amount
                ),
            ));
        }
        let state = body["state"].as_str().and_then(Gw::parse).ok_or_else(|| {
            self.err(FailureKind::Harness, format!("order without state: {body}"))
        })?;
        let allowed = order.allowed(now, skew);
        if !allowed.contains(&state) {
            return Err(self.err(
                FailureKind::Model,
                format!(
                    "order {id} ({} {:?}, {}) is {} but the model allows {} (last seen {:?}, channel {:?}, disturbed {})",
                    order.ch.name(),
                    order.method,
                    order.amount,
                    state.name(),
                    set(&allowed.iter().map(|s| s.name()).collect()),
                    order.last_seen.map(Gw::name),
                    order.chan,
                    order.disturbed
                ),
            ));
        }
        let order = &mut self.model.orders[index];
        order.last_seen = Some(state);
        if state.captured() {
            order.chan = BTreeSet::from([Chan::Paid]);
        }
        let refunds = body["refunds"].as_array().cloned().unwrap_or_default();
        for refund in refunds {
            if refund["kind"] != "merchant" {
                continue;
            }
            let rid = refund["id"].as_str().unwrap_or_default().to_owned();
            let rstate = refund["state"].as_str().and_then(Rs::parse);
            let Some(rstate) = rstate else {
                return Err(self.err(
                    FailureKind::Harness,
                    format!("refund without state: {refund}"),
                ));
            };
            let order = &mut self.model.orders[index];
            let position = order.refunds.iter().position(|r| r.id == rid);
            let position = match position {
                Some(position) => position,
                None => {
                    order.refunds.push(MRefund {
                        id: rid.clone(),
                        amount: refund["amount_minor"].as_i64().unwrap_or(0),
                        outcome: Rs::ALL.into_iter().collect(),
                        settle_at: now,
                        last_seen: None,
                        disturbed: true,
                    });
                    order.refunds.len() - 1
                }
            };
            let allowed = order.refunds[position].allowed(now);
            if !allowed.contains(&rstate) {
                return Err(self.err(
                    FailureKind::Model,
                    format!(
                        "refund {rid} of order {id} is {} but the model allows {}",
                        rstate.name(),
                        set(&allowed.iter().map(|s| s.name()).collect())
                    ),
                ));
            }
            order.refunds[position].last_seen = Some(rstate);
        }
        Ok(body)
    }

    async fn check_all(&mut self) -> Result<(), Failure> {
        for index in 0..self.model.orders.len() {
            self.check_order(index).await?;
        }
        Ok(())
    }

    async fn verify(&self) -> Result<(), Failure> {
        let (_, report) = self.get_json("/v1/ledger/verify", true).await?;
        if report["ok"] != true {
            return Err(self.err(
                FailureKind::Invariant,
                format!("ledger violation: {}", report["first_violation"]),
            ));
        }
        Ok(())
    }

    /// Fail closed: no forged or tampered payment notification is ever acknowledged.
    async fn check_acknowledgements(&self, ch: Ch) -> Result<(), Failure> {
        let (_, body) = self
            .get_json(&format!("/_paysim/{}/trades", ch.name()), false)
            .await?;
        for trade in body["trades"].as_array().cloned().unwrap_or_default() {
            for notification in trade["notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if notification["event"] != "payment" {
                    continue;
                }
                for attempt in notification["attempts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let fault = attempt["fault"].as_str().unwrap_or("");
                    if matches!(
                        fault,
                        "forged_notification" | "tampered_notification_amount"
                    ) && attempt["accepted"] == true
                    {
                        return Err(self.err(
                            FailureKind::Model,
                            format!(
                                "the gateway acknowledged a {fault} payment notification of {}: {attempt}",
                                trade["out_trade_no"]
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    async fn step(&mut self, op: &Op, stats: &mut CaseStats) -> Result<(), Failure> {
        let now = self.now();
        let mut touched: Vec<usize> = Vec::new();
        let exchanges_before = self.sim.exchanges();
        self.hints.push(StepHint::default());
        match *op {
            Op::Create {
                ch,
                method,
                amount_minor,
            } => {
                let undisturbed = !self.armed[&ch];
                let hint = self.hints.last_mut().unwrap();
                hint.ran = true;
                if undisturbed && method != Method::BarcodeFail {
                    hint.status = Some(201);
                }
                let params = match (ch, method) {
                    (_, Method::Jsapi) => json!({"openid": "o_proptest_buyer"}),
                    (_, Method::Wap) => json!({"client_ip": "203.0.113.7"}),
                    (Ch::Alipay, Method::BarcodeOk) => json!({"auth_code": "28123456789010000"}),
                    (Ch::Alipay, Method::BarcodeFail) => json!({"auth_code": "28123456789014004"}),
                    (Ch::Wechatpay, Method::BarcodeOk) => {
                        json!({"auth_code": "134567890123450000"})
                    }
                    (Ch::Wechatpay, Method::BarcodeFail) => {
                        json!({"auth_code": "134567890123454004"})
                    }
                    _ => json!({}),
                };
                let body = json!({
                    "channel": ch.name(),
                    "method": method.api_name(),
                    "method_params": params,
                    "amount": format!("{}.{:02}", amount_minor / 100, amount_minor % 100),
                    "subject": "proptest order",
                    "expires_in_seconds": EXPIRY_S,
                });
                let key = format!("pp-{}", self.step);
                let reply = self
                    .sim
                    .gateway_post("/v1/orders", Some(&key), &body)
                    .await
                    .map_err(self.harness("create"))?;
                let answer = reply.json().unwrap_or(Value::Null);
                let id = answer["id"]
                    .as_str()
                    .or_else(|| answer["order_id"].as_str())
                    .map(str::to_owned);
                let expected_state = match method {
                    Method::BarcodeOk => "paid",
                    Method::BarcodeFail => "failed",
                    _ => "paying",
                };
                if undisturbed {
                    let ok_status = match method {
                        Method::BarcodeFail => {
                            reply.status == StatusCode::CREATED
                                || reply.status == StatusCode::UNPROCESSABLE_ENTITY
                        }
                        _ => reply.status == StatusCode::CREATED,
                    };
                    if !ok_status
                        || (reply.status == StatusCode::CREATED
                            && answer["state"] != expected_state)
                    {
                        return Err(self.err(
                            FailureKind::Model,
                            format!(
                                "create {} {:?} answered {} {answer}; the model expects {expected_state}",
                                ch.name(),
                                method,
                                reply.status
                            ),
                        ));
                    }
                }
                let Some(id) = id else {
                    return Err(self.err(
                        FailureKind::Model,
                        format!(
                            "create answered {} without an order id: {answer}",
                            reply.status
                        ),
                    ));
                };
                if reply.status == StatusCode::CREATED
                    && answer["amount_minor"].as_i64() != Some(amount_minor)
                {
                    return Err(self.err(
                        FailureKind::Model,
                        format!(
                            "create of {amount_minor} fen answered amount_minor {}",
                            answer["amount_minor"]
                        ),
                    ));
                }
                let chan = match (undisturbed, ch, method) {
                    (true, _, Method::BarcodeOk) => BTreeSet::from([Chan::Paid]),
                    (true, _, Method::BarcodeFail) => BTreeSet::from([Chan::Failed]),
                    (true, Ch::Alipay, _) => BTreeSet::from([Chan::Qr]),
                    (true, Ch::Wechatpay, _) => BTreeSet::from([Chan::Open]),
                    (false, _, Method::BarcodeOk | Method::BarcodeFail) => {
                        BTreeSet::from([Chan::None, Chan::Paid, Chan::Failed, Chan::Open])
                    }
                    (false, Ch::Alipay, _) => BTreeSet::from([Chan::None, Chan::Qr]),
                    (false, Ch::Wechatpay, _) => BTreeSet::from([Chan::None, Chan::Open]),
                };
                self.model.orders.push(MOrder {
                    id,
                    ch,
                    method,
                    amount: amount_minor,
                    created_at: now,
                    expires_at: now + EXPIRY_S * 1000,
                    chan,
                    news_at: None,
                    settle_at: now,
                    last_seen: None,
                    disturbed: !undisturbed,
                    close_attempted: false,
                    refunds: Vec::new(),
                });
                touched.push(self.model.orders.len() - 1);
            }
            Op::Buyer { order, action } => {
                let Some(index) = self.pick(order) else {
                    return Ok(());
                };
                let (ch, id) = {
                    let o = &self.model.orders[index];
                    (o.ch, o.id.clone())
                };
                let reply = self
                    .sim
                    .buyer_action(ch.name(), &id, action.name())
                    .await
                    .map_err(self.harness("buyer action"))?;
                let skew = self.model.skew_ms;
                let o = &mut self.model.orders[index];
                let was = o.chan.clone();
                let clean_open = !o.disturbed
                    && (was == BTreeSet::from([Chan::Open]) || was == BTreeSet::from([Chan::Qr]))
                    && now < o.expires_at - skew.abs() - 1
                    && !o.close_attempted;
                let hint = self.hints.last_mut().unwrap();
                hint.ran = true;
                if clean_open && matches!(action, Buyer::Pay | Buyer::Fail) {
                    hint.status = Some(200);
                }
                match reply.status {
                    StatusCode::OK => match action {
                        Buyer::Pay => {
                            o.chan = BTreeSet::from([Chan::Paid]);
                            o.news_at = Some(now);
                            if o.method.is_barcode()
                                || o.ch == Ch::Wechatpay && o.method.is_barcode()
                            {
                                o.settle_at = o.next_poll(now) + 1;
                            }
                        }
                        Buyer::Fail => {
                            let failed = if ch == Ch::Alipay {
                                Chan::Closed
                            } else {
                                Chan::Failed
                            };
                            o.chan = BTreeSet::from([failed]);
                            let poll = o.next_poll(now);
                            o.settle_at = if poll < o.expires_at {
                                poll + 1
                            } else {
                                o.expires_at + 1
                            };
                        }
                        Buyer::Scan => {
                            if was.contains(&Chan::Qr) {
                                o.chan.remove(&Chan::Qr);
                                o.chan.insert(Chan::Open);
                            }
                        }
                        Buyer::Abandon => {}
                    },
                    StatusCode::NOT_FOUND => {
                        o.chan = BTreeSet::from([Chan::None]);
                    }
                    _ => {
                        if clean_open && matches!(action, Buyer::Pay | Buyer::Fail) {
                            return Err(self.err(
                                FailureKind::Model,
                                format!(
                                    "the channel refused buyer {} on {id}, open per the model: {}",
                                    action.name(),
                                    reply.text()
                                ),
                            ));
                        }
                        if matches!(action, Buyer::Pay | Buyer::Fail) {
                            o.chan.remove(&Chan::Open);
                            o.chan.remove(&Chan::Qr);
                            if o.chan.is_empty() {
                                o.chan = BTreeSet::from([Chan::Closed, Chan::Failed, Chan::Paid]);
                                o.disturbed = true;
                            }
                        }
                    }
                }
                touched.push(index);
            }
            Op::Close { order } => {
                let Some(index) = self.pick(order) else {
                    return Ok(());
                };
                let skew = self.model.skew_ms;
                let id = self.model.orders[index].id.clone();
                let reply = self
                    .sim
                    .gateway_post(&format!("/v1/orders/{id}/close"), None, &json!({}))
                    .await
                    .map_err(self.harness("close"))?;
                let answer = reply.json().unwrap_or(Value::Null);
                let o = &mut self.model.orders[index];
                let clean_open = !o.disturbed
                    && o.last_seen == Some(Gw::Paying)
                    && (o.chan == BTreeSet::from([Chan::Open])
                        || o.chan == BTreeSet::from([Chan::Qr]))
                    && now < o.expires_at - skew.abs() - 1;
                let hint = self.hints.last_mut().unwrap();
                hint.ran = true;
                if clean_open || o.last_seen == Some(Gw::Closed) {
                    hint.status = Some(200);
                }
                if clean_open && (reply.status != StatusCode::OK || answer["state"] != "closed") {
                    return Err(self.err(
                        FailureKind::Model,
                        format!("close of open order {id} answered {} {answer}; the model expects 200 closed", reply.status),
                    ));
                }
                if o.last_seen == Some(Gw::Closed) && reply.status != StatusCode::OK {
                    return Err(self.err(
                        FailureKind::Model,
                        format!(
                            "close of closed order {id} answered {} {answer}",
                            reply.status
                        ),
                    ));
                }
                if reply.status == StatusCode::OK {
                    if answer["state"] != "closed" {
                        return Err(self.err(
                            FailureKind::Model,
                            format!("close answered 200 with {answer}"),
                        ));
                    }
                    o.last_seen = Some(Gw::Closed);
                    if o.chan.contains(&Chan::Open) {
                        o.chan.remove(&Chan::Open);
                        o.chan.insert(Chan::Closed);
                    }
                }
                o.close_attempted = true;
                touched.push(index);
            }
            Op::Refund { order, portion } => {
                let Some(index) = self.pick_refund(order) else {
                    return Ok(());
                };
                self.hints.last_mut().unwrap().order = Some(index);
                let skew = self.model.skew_ms;
                let (id, ch, amount, allowed, held, disturbed) = {
                    let o = &self.model.orders[index];
                    (
                        o.id.clone(),
                        o.ch,
                        o.amount,
                        o.allowed(now, skew),
                        o.held(now),
                        o.disturbed,
                    )
                };
                let requested = match portion {
                    Portion::Part(pct) => (amount * i64::from(pct) / 100).max(1),
                    Portion::Rest => (amount - held.1).max(1),
                    Portion::Over => amount + 1,
                };
                let reply = self
                    .sim
                    .gateway_post(
                        &format!("/v1/orders/{id}/refunds"),
                        Some(&format!("pp-{}", self.step)),
                        &json!({"amount": format!("{}.{:02}", requested / 100, requested % 100)}),
                    )
                    .await
                    .map_err(self.harness("refund"))?;
                let answer = reply.json().unwrap_or(Value::Null);
                let code = answer["code"].as_str().unwrap_or("");
                let refundable = allowed
                    .iter()
                    .all(|s| matches!(s, Gw::Paid | Gw::PartiallyRefunded));
                let unrefundable = allowed
                    .iter()
                    .all(|s| !matches!(s, Gw::Paid | Gw::PartiallyRefunded));
                let clean =
                    refundable && !disturbed && !self.armed[&ch] && requested <= amount - held.1;
                let hint = self.hints.last_mut().unwrap();
                hint.ran = true;
                hint.amount_minor = Some(requested);
                if unrefundable {
                    hint.status = Some(409);
                    hint.error = Some("refund_not_allowed");
                } else if refundable && requested > amount - held.0 {
                    hint.status = Some(409);
                    hint.error = Some("refund_exceeds_refundable");
                } else if clean {
                    hint.status = Some(201);
                }
                let describe = || {
                    format!(
                        "refund of {requested} on order {id} ({amount}, allowed {}, held {held:?}) answered {} {answer}",
                        set(&allowed.iter().map(|s| s.name()).collect()),
                        reply.status
                    )
                };
                if unrefundable
                    && !(reply.status == StatusCode::CONFLICT && code == "refund_not_allowed")
                {
                    return Err(self.err(
                        FailureKind::Model,
                        format!("{}; expected 409 refund_not_allowed", describe()),
                    ));
                }
                if refundable
                    && requested > amount - held.0
                    && !(reply.status == StatusCode::CONFLICT
                        && code == "refund_exceeds_refundable")
                {
                    return Err(self.err(
                        FailureKind::Model,
                        format!("{}; expected 409 refund_exceeds_refundable", describe()),
                    ));
                }
                if clean {
                    let expected = if ch == Ch::Alipay {
                        "succeeded"
                    } else {
                        "pending"
                    };
                    if reply.status != StatusCode::CREATED || answer["state"] != expected {
                        return Err(self.err(
                            FailureKind::Model,
                            format!("{}; expected 201 {expected}", describe()),
                        ));
                    }
                }
                if reply.status == StatusCode::CREATED {
                    let rid = answer["id"].as_str().unwrap_or_default().to_owned();
                    let disturbed_refund = !clean;
                    let settle_at = if ch == Ch::Alipay {
                        now
                    } else {
                        let ready = 5_000 + skew.max(0);
                        now + REFUND_POLLS_MS
                            .iter()
                            .copied()
                            .find(|o| *o > ready)
                            .unwrap_or(3_600_000)
                            + 1
                    };
                    self.model.orders[index].refunds.push(MRefund {
                        id: rid,
                        amount: requested,
                        outcome: if disturbed_refund {
                            Rs::ALL.into_iter().collect()
                        } else {
                            BTreeSet::from([Rs::Succeeded])
                        },
                        settle_at,
                        last_seen: answer["state"].as_str().and_then(Rs::parse),
                        disturbed: disturbed_refund,
                    });
                }
                touched.push(index);
            }
            Op::Query { order } => {
                let Some(index) = self.pick(order) else {
                    return Ok(());
                };
                let hint = self.hints.last_mut().unwrap();
                hint.ran = true;
                hint.status = Some(200);
                touched.push(index);
            }
            Op::Advance { ms } => {
                self.hints.last_mut().unwrap().ran = true;
                self.sim.advance_ms(ms).await;
                touched.extend(0..self.model.orders.len());
            }
            Op::Protocol { ch, fault } => {
                self.hints.last_mut().unwrap().ran = true;
                if fault.on_notification() {
                    self.notify_faults.insert(ch);
                }
                let reply = self
                    .sim
                    .control_post(
                        &format!("/_paysim/{}/faults", ch.name()),
                        &json!({"target": fault.target(), "fault": fault.name(), "times": 1, "params": fault.params(ch)}),
                    )
                    .await
                    .map_err(self.harness("arming a fault"))?;
                if reply.status != StatusCode::CREATED {
                    return Err(self.err(
                        FailureKind::Harness,
                        format!(
                            "arming {} on {} answered {}: {}",
                            fault.name(),
                            ch.name(),
                            reply.status,
                            reply.text()
                        ),
                    ));
                }
                self.armed.insert(ch, true);
                self.disturb(ch);
            }
            Op::Net { ch, fault } => {
                self.hints.last_mut().unwrap().ran = true;
                let prefix = match ch {
                    Ch::Alipay => ALIPAY_PREFIX,
                    Ch::Wechatpay => WECHATPAY_PREFIX,
                };
                let fault = match fault {
                    NetFault::TimeoutBeforeDelivery => TransportFault::TimeoutBeforeDelivery,
                    NetFault::TimeoutAfterDelivery => TransportFault::TimeoutAfterDelivery,
                    NetFault::Reset => TransportFault::Reset,
                    NetFault::Delay { ms } => TransportFault::Delay { ms: u64::from(ms) },
                    NetFault::TruncatedBody => TransportFault::TruncatedBody { keep_bytes: 12 },
                    NetFault::WrongContentType => {
                        TransportFault::WrongContentType("text/html".into())
                    }
                };
                self.sim.faulty.arm(FaultRule::once(prefix, fault));
                self.armed.insert(ch, true);
                self.disturb(ch);
            }
            Op::Quiesce => {
                self.hints.last_mut().unwrap().ran = true;
                self.quiesce().await?;
            }
        }
        self.sim.run_due().await;
        stats.ops += 1;
        if matches!(op, Op::Buyer { .. }) || self.sim.exchanges() > exchanges_before {
            stats.channel_ops += 1;
            *stats.reached_mix.entry(op_kind(op)).or_insert(0) += 1;
        }
        *stats.mix.entry(op_kind(op)).or_insert(0) += 1;
        for ch in Ch::ALL {
            let armed = self.faults_armed(ch).await?;
            if armed || self.armed[&ch] {
                self.disturb(ch);
            }
            self.armed.insert(ch, armed);
        }
        // The model first, so a bug it can see is reported as the model's finding even when
        // the ledger invariants would flag it too.
        touched.sort_unstable();
        touched.dedup();
        for index in touched {
            self.check_order(index).await?;
        }
        for ch in self.notify_faults.clone() {
            self.check_acknowledgements(ch).await?;
        }
        self.verify().await
    }

    /// Every fault disarmed, 26 h of virtual time, then: each order agrees with its trade at
    /// the channel (I7), clearing balances equal the simulator's settlements, suspense holds
    /// exactly the late payments and parked refunds, and the model collapses onto what it saw.
    async fn quiesce(&mut self) -> Result<(), Failure> {
        for ch in Ch::ALL {
            self.sim
                .gateway_get("/healthz")
                .await
                .map_err(self.harness("healthz"))?;
            let request = http::Request::delete(format!("/_paysim/{}/faults", ch.name()))
                .body(axum::body::Body::empty())
                .map_err(self.harness("disarm"))?;
            tower::ServiceExt::oneshot(self.sim.simulator_app.clone(), request)
                .await
                .map_err(self.harness("disarm"))?;
        }
        self.sim.faulty.disarm_all();
        self.sim.advance_ms(QUIESCE_MS).await;
        let now = self.now();
        self.verify().await?;
        self.check_all().await?;

        let mut late: BTreeMap<Ch, i64> = BTreeMap::new();
        let mut expected_clearing: BTreeMap<Ch, i64> = BTreeMap::new();
        let mut parked: BTreeMap<Ch, i64> = BTreeMap::new();
        for index in 0..self.model.orders.len() {
            let (id, ch, amount) = {
                let o = &self.model.orders[index];
                (o.id.clone(), o.ch, o.amount)
            };
            let (_, order) = self.get_json(&format!("/v1/orders/{id}"), true).await?;
            let state = order["state"]
                .as_str()
                .and_then(Gw::parse)
                .unwrap_or(Gw::Created);
            let (status, trade) = self
                .get_json(&format!("/_paysim/{}/trades/{id}", ch.name()), false)
                .await?;
            let exists = status == StatusCode::OK;
            let trade_state = trade["state"].as_str().unwrap_or("").to_owned();
            let paid = exists && !trade["paid_at"].is_null() && trade_state != "REVOKED";
            let agreement = |message: String| fail(FailureKind::Agreement, self.step, message);
            if exists && trade["amount_minor"].as_i64() != Some(amount) {
                return Err(self.err(
                    FailureKind::Model,
                    format!(
                        "the channel's trade {id} is for {} fen, the order for {amount}",
                        trade["amount_minor"]
                    ),
                ));
            }
            let mut refunded_gw = 0;
            for refund in order["refunds"].as_array().cloned().unwrap_or_default() {
                if refund["kind"] != "merchant" {
                    continue;
                }
                match refund["state"].as_str() {
                    Some("succeeded") => {
                        refunded_gw += refund["amount_minor"].as_i64().unwrap_or(0)
                    }
                    Some("abnormal") => {
                        *parked.entry(ch).or_insert(0) +=
                            refund["amount_minor"].as_i64().unwrap_or(0)
                    }
                    Some("failed") => {}
                    // Pending is never right here: a refund the channel never received is sent
                    // again under the same id when its query finds nothing (both channels).
                    other => {
                        return Err(agreement(format!(
                            "refund {} of {id} is still {other:?} at quiescence",
                            refund["id"]
                        )))
                    }
                }
            }
            if paid {
                let refunded_chan = trade["refunded_minor"].as_i64().unwrap_or(0);
                *expected_clearing.entry(ch).or_insert(0) += amount - refunded_chan;
                if state.captured() {
                    if refunded_chan != refunded_gw {
                        return Err(agreement(format!(
                            "order {id}: the channel refunded {refunded_chan}, the gateway {refunded_gw}"
                        )));
                    }
                } else if matches!(state, Gw::Closed | Gw::Failed) {
                    // A late payment, less what the channel returned on its own (an Alipay
                    // cancel of a paid payment-code trade refunds it in full).
                    *late.entry(ch).or_insert(0) += amount - refunded_chan;
                } else {
                    return Err(agreement(format!(
                        "order {id} is {} but its trade is paid ({trade_state})",
                        state.name()
                    )));
                }
            } else {
                if !matches!(state, Gw::Closed | Gw::Failed) {
                    return Err(agreement(format!(
                        "order {id} is {} but its trade is {} (exists: {exists})",
                        state.name(),
                        if exists {
                            trade_state.as_str()
                        } else {
                            "absent"
                        }
                    )));
                }
                if matches!(
                    trade_state.as_str(),
                    "WAIT_BUYER_PAY" | "NOTPAY" | "USERPAYING"
                ) {
                    return Err(agreement(format!(
                        "order {id} is {} but its trade is still open ({trade_state})",
                        state.name()
                    )));
                }
            }
            let o = &mut self.model.orders[index];
            o.chan = BTreeSet::from([if paid {
                Chan::Paid
            } else if state == Gw::Failed {
                Chan::Failed
            } else {
                Chan::Closed
            }]);
            o.disturbed = false;
            o.news_at = None;
            o.settle_at = now;
            if !state.captured() && paid {
                o.close_attempted = true;
            }
            for refund in &mut o.refunds {
                let seen = refund.last_seen.unwrap_or(Rs::Failed);
                refund.outcome = BTreeSet::from([seen]);
                refund.disturbed = false;
                refund.settle_at = now;
            }
        }

        let (_, accounts) = self.get_json("/v1/ledger/accounts", true).await?;
        let balance = |code: String| -> i64 {
            accounts
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["account"] == code.as_str())
                .and_then(|a| a["balance_minor"].as_i64())
                .unwrap_or(0)
        };
        let first_day = (crate::sim::T0 + 8 * 3_600_000).div_euclid(86_400_000) - 1;
        let last_day = (now + 8 * 3_600_000).div_euclid(86_400_000) + 1;
        for ch in Ch::ALL {
            let clearing = balance(format!("channel_clearing:{}:CNY", ch.name()));
            let suspense = balance(format!("suspense:{}:CNY", ch.name()));
            let model_clearing = expected_clearing.get(&ch).copied().unwrap_or(0);
            if clearing != model_clearing {
                return Err(self.err(
                    FailureKind::Agreement,
                    format!("{} clearing is {clearing}; paid − refunded at the channel is {model_clearing}", ch.name()),
                ));
            }
            // A payment reversed after it went through is paid and refunded in the
            // channel's settlements, so paid − refunded is what the channel kept.
            let mut settled = 0;
            for day in first_day..=last_day {
                let (y, m, d) = civil(day);
                let (_, view) = self
                    .get_json(
                        &format!(
                            "/_paysim/{}/settlements?date={y:04}-{m:02}-{d:02}",
                            ch.name()
                        ),
                        false,
                    )
                    .await?;
                settled += view["paid_minor"].as_i64().unwrap_or(0)
                    - view["refunded_minor"].as_i64().unwrap_or(0);
            }
            if clearing != settled {
                return Err(self.err(
                    FailureKind::Agreement,
                    format!(
                        "{} clearing is {clearing} but the channel settled {settled}",
                        ch.name()
                    ),
                ));
            }
            let expected_suspense =
                late.get(&ch).copied().unwrap_or(0) + parked.get(&ch).copied().unwrap_or(0);
            if suspense != expected_suspense {
                return Err(self.err(
                    FailureKind::Agreement,
                    format!("{} suspense is {suspense}; late payments and parked refunds make {expected_suspense}", ch.name()),
                ));
            }
        }
        Ok(())
    }
}

/// Runs one case against a fresh stack; `Err` names what found the failure.
pub async fn run_case(case: &Case, options: &RunOptions) -> Result<CaseStats, Failure> {
    run_case_traced(case, options).await.0
}

/// [`run_case`], with what the model pinned on the way ([`scenario::to_scenario`]'s input).
pub async fn run_case_traced(
    case: &Case,
    options: &RunOptions,
) -> (Result<CaseStats, Failure>, Trace) {
    let built = MultiSim::build(MultiOptions {
        seed: case.seed,
        skew_ms: case.skew_ms,
        store: options.store.clone(),
        planted: options.planted,
        ..MultiOptions::default()
    })
    .await
    .map_err(|e| {
        fail(
            FailureKind::Harness,
            0,
            format!("building the stack: {e:#}"),
        )
    });
    let sim = match built {
        Ok(sim) => sim,
        Err(failure) => return (Err(failure), Trace::default()),
    };
    let mut runner = Runner {
        sim: sim.clone(),
        model: Model {
            orders: Vec::new(),
            skew_ms: case.skew_ms,
        },
        step: 0,
        armed: Ch::ALL.into_iter().map(|ch| (ch, false)).collect(),
        notify_faults: BTreeSet::new(),
        hints: Vec::new(),
    };
    let mut stats = CaseStats::default();
    let mut result = Ok(());
    for (n, op) in case.ops.iter().enumerate() {
        runner.step = n + 1;
        result = runner.step(op, &mut stats).await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() && case.ops.last() != Some(&Op::Quiesce) {
        runner.step = case.ops.len() + 1;
        result = runner.quiesce().await;
    }
    let now = runner.now();
    let trace = Trace {
        steps: std::mem::take(&mut runner.hints),
        end_states: runner
            .model
            .orders
            .iter()
            .enumerate()
            .filter_map(|(index, order)| {
                let allowed = order.allowed(now, case.skew_ms);
                match allowed.iter().collect::<Vec<_>>().as_slice() {
                    [only] => Some((index, only.name())),
                    _ => None,
                }
            })
            .collect(),
        failed_at: result.as_ref().err().map(|failure| failure.step),
    };
    drop(runner);
    let cleanup = sim.cleanup().await;
    let outcome = match (result, cleanup) {
        (Err(failure), _) => Err(failure),
        (Ok(()), Err(e)) => Err(fail(FailureKind::Harness, 0, format!("cleanup: {e:#}"))),
        (Ok(()), Ok(())) => Ok(stats),
    };
    (outcome, trace)
}

/// How a suite runs.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub cases: u32,
    pub max_ops: usize,
    pub seed: u64,
    pub run: RunOptions,
    /// Where failing seeds are kept (relative to the `tests/` package), if anywhere.
    pub regressions: Option<&'static str>,
    pub max_shrink_iters: u32,
    /// Worker threads sharing the cases (see [`run_suite`]); 1 runs them all on this thread.
    pub workers: usize,
}

/// A failure after shrinking: the minimal script and what found it.
#[derive(Debug, Clone)]
pub struct SuiteFailure {
    pub seed: u64,
    pub minimal: Case,
    pub reason: String,
    /// The minimal script as a scenario file ([`scenario::to_scenario`]); empty when none.
    pub scenario: String,
}

impl SuiteFailure {
    pub fn kind(&self) -> Option<FailureKind> {
        [
            FailureKind::Model,
            FailureKind::Invariant,
            FailureKind::Agreement,
            FailureKind::Harness,
        ]
        .into_iter()
        .find(|k| self.reason.contains(&format!("[{}]", k.name())))
    }
}

impl fmt::Display for SuiteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "property suite failed (PAYSIM_PROPTEST_SEED={}): {}\nminimal failing {:?}",
            self.seed, self.reason, self.minimal
        )?;
        if !self.scenario.is_empty() {
            write!(
                f,
                "as a scenario file (save as scenarios/regressions/proptest-{}.toml):\n{}",
                self.minimal.seed, self.scenario
            )?;
        }
        Ok(())
    }
}

fn no_case() -> Case {
    Case {
        seed: 0,
        skew_ms: 0,
        ops: Vec::new(),
    }
}

/// Cases per batch: the unit of work the workers take from a shared queue.
const BATCH_CASES: u32 = 4;

/// The seed of batch `batch` of a suite seeded `seed`: batch 0 runs on the suite's seed itself.
fn batch_seed(seed: u64, batch: usize) -> u64 {
    seed.wrapping_add((batch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Runs `config.cases` random cases through proptest; on failure shrinks to a minimal script.
///
/// The cases are cut into batches of [`BATCH_CASES`], each run by its own proptest runner
/// seeded from the suite's seed and the batch's number, on its own current-thread runtime
/// (every case still builds its own stack on its own virtual clock, so no state is shared).
/// `config.workers` threads take batches from a queue until none is left, so a slow batch
/// does not hold the others up. Which cases run depends only on the seed and the case count,
/// never on the worker count: a failure reproduces from the printed `PAYSIM_PROPTEST_SEED`
/// (and `PAYSIM_PROPTEST_CASES`) on any machine; when several batches fail, the
/// lowest-numbered one's minimal script is reported.
pub fn run_suite(config: &SuiteConfig) -> Result<CaseStats, SuiteFailure> {
    if let StoreKind::Postgres { url } = &config.run.store {
        probe_store(config, url)?;
    }
    let batches = config.cases.div_ceil(BATCH_CASES) as usize;
    let next = AtomicUsize::new(0);
    let take_batches = || {
        let mut done = Vec::new();
        loop {
            let batch = next.fetch_add(1, Ordering::Relaxed);
            if batch >= batches {
                return done;
            }
            let first = BATCH_CASES * batch as u32;
            let cases = BATCH_CASES.min(config.cases - first);
            done.push((batch, run_batch(config, batch, cases)));
        }
    };
    let workers = config.workers.clamp(1, batches.max(1));
    let mut outcomes = if workers == 1 {
        take_batches()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(take_batches)).collect();
            let mut outcomes = Vec::new();
            for handle in handles {
                match handle.join() {
                    Ok(done) => outcomes.extend(done),
                    Err(_) => outcomes.push((
                        usize::MAX,
                        Err(SuiteFailure {
                            seed: config.seed,
                            minimal: no_case(),
                            reason: "[HARNESS] a worker thread panicked".to_owned(),
                            scenario: String::new(),
                        }),
                    )),
                }
            }
            outcomes
        })
    };
    outcomes.sort_by_key(|(batch, _)| *batch);
    let mut stats = CaseStats::default();
    let mut first: Option<SuiteFailure> = None;
    for (batch, outcome) in outcomes {
        match outcome {
            Ok(done) => stats.add(&done),
            Err(failure) => {
                let failure = SuiteFailure {
                    seed: config.seed,
                    ..failure
                };
                if first.is_none() {
                    first = Some(failure);
                } else {
                    eprintln!("batch {batch} failed too: {failure}");
                }
            }
        }
    }
    first.map_or(Ok(stats), Err)
}

/// Saves failing seeds to the regression file without replaying the ones already there: only
/// batch 0 replays them, once per suite run.
#[derive(Debug, Clone, PartialEq)]
struct SaveOnly(FileFailurePersistence);

impl FailurePersistence for SaveOnly {
    fn load_persisted_failures2(&self, _source_file: Option<&'static str>) -> Vec<PersistedSeed> {
        Vec::new()
    }

    fn save_persisted_failure2(
        &mut self,
        source_file: Option<&'static str>,
        seed: PersistedSeed,
        shrunken_value: &dyn fmt::Debug,
    ) {
        self.0
            .save_persisted_failure2(source_file, seed, shrunken_value);
    }

    fn box_clone(&self) -> Box<dyn FailurePersistence> {
        Box::new(self.clone())
    }

    fn eq(&self, other: &dyn FailurePersistence) -> bool {
        other.as_any().downcast_ref::<SaveOnly>() == Some(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Fails the suite at once, without shrinking or recording a regression seed, when the
/// PostgreSQL server it names cannot be used: that is the environment, not a case.
fn probe_store(config: &SuiteConfig, url: &str) -> Result<(), SuiteFailure> {
    let unusable = |reason: String| SuiteFailure {
        seed: config.seed,
        minimal: no_case(),
        reason: format!("[HARNESS] {reason}"),
        scenario: String::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unusable(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let sim = MultiSim::build(MultiOptions {
            store: StoreKind::Postgres {
                url: url.to_owned(),
            },
            ..MultiOptions::default()
        })
        .await
        .map_err(|e| unusable(format!("{e:#}")))?;
        sim.cleanup().await.map_err(|e| unusable(format!("{e:#}")))
    })
}

/// One proptest runner over `cases` cases seeded `seed`, on this thread.
fn run_batch(config: &SuiteConfig, batch: usize, cases: u32) -> Result<CaseStats, SuiteFailure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SuiteFailure {
            seed: config.seed,
            minimal: no_case(),
            reason: format!("runtime: {e}"),
            scenario: String::new(),
        })?;
    let proptest_config = Config {
        cases,
        max_shrink_iters: config.max_shrink_iters,
        rng_seed: RngSeed::Fixed(batch_seed(config.seed, batch)),
        failure_persistence: config.regressions.map(|path| {
            let file = FileFailurePersistence::Direct(path);
            if batch == 0 {
                Box::new(file) as Box<dyn FailurePersistence>
            } else {
                Box::new(SaveOnly(file))
            }
        }),
        ..Config::default()
    };
    let mut runner = TestRunner::new(proptest_config);
    let stats = RefCell::new(CaseStats::default());
    let outcome = runner.run(&ops::case(config.max_ops), |case| {
        match runtime.block_on(run_case(&case, &config.run)) {
            Ok(case_stats) => {
                stats.borrow_mut().add(&case_stats);
                Ok(())
            }
            Err(failure) => Err(TestCaseError::fail(failure.to_string())),
        }
    });
    match outcome {
        Ok(()) => Ok(stats.into_inner()),
        Err(TestError::Fail(reason, minimal)) => {
            let mut failure = SuiteFailure {
                seed: config.seed,
                minimal,
                reason: reason.to_string(),
                scenario: String::new(),
            };
            if config.max_shrink_iters > 0 {
                failure = drop_needless_ops(&runtime, &config.run, failure);
            }
            let (_, trace) = runtime.block_on(run_case_traced(&failure.minimal, &config.run));
            let minimal = &failure.minimal;
            failure.scenario =
                scenario::to_scenario(minimal.seed, minimal.skew_ms, &minimal.ops, &trace);
            Err(failure)
        }
        Err(TestError::Abort(reason)) => Err(SuiteFailure {
            seed: config.seed,
            minimal: no_case(),
            reason: format!("aborted: {reason}"),
            scenario: String::new(),
        }),
    }
}

/// A second shrinking pass over proptest's minimal script: proptest removes operations first
/// and simplifies the remaining ones after, never removing again, so a script whose order
/// references (`order#n`, modulo the count) were simplified can keep creates it no longer
/// needs. Drops single operations while the same kind of failure remains, to a fixpoint.
fn drop_needless_ops(
    runtime: &tokio::runtime::Runtime,
    run: &RunOptions,
    failure: SuiteFailure,
) -> SuiteFailure {
    let kind = failure.kind();
    let mut failure = failure;
    let mut index = 0;
    while index < failure.minimal.ops.len() {
        let Some(candidate) = without_op(&failure.minimal, index) else {
            index += 1;
            continue;
        };
        if candidate.ops.is_empty() {
            break;
        }
        match runtime.block_on(run_case(&candidate, run)) {
            Err(found) if Some(found.kind) == kind => {
                failure = SuiteFailure {
                    minimal: candidate,
                    reason: found.to_string(),
                    ..failure
                };
                index = 0;
            }
            _ => index += 1,
        }
    }
    failure
}

/// `case` without its operation at `index`, every later order reference re-pointed at the
/// order it named (a removed create shifts the orders after it down by one); `None` when a
/// later operation names the removed order itself.
fn without_op(case: &Case, index: usize) -> Option<Case> {
    let created_before = |upto: usize| {
        case.ops[..upto]
            .iter()
            .filter(|op| matches!(op, Op::Create { .. }))
            .count()
    };
    let removed = matches!(case.ops[index], Op::Create { .. }).then(|| created_before(index));
    let mut ops = Vec::with_capacity(case.ops.len());
    for (at, op) in case.ops.iter().enumerate() {
        if at == index {
            continue;
        }
        let mut op = *op;
        if let (Some(removed), true) = (removed, at > index) {
            let count = created_before(at);
            let reference = match &mut op {
                Op::Buyer { order, .. }
                | Op::Close { order }
                | Op::Refund { order, .. }
                | Op::Query { order } => Some(order),
                _ => None,
            };
            if let (Some(order), true) = (reference, count > 0) {
                let resolved = usize::from(*order) % count;
                match resolved.cmp(&removed) {
                    std::cmp::Ordering::Equal => return None,
                    std::cmp::Ordering::Greater => *order = u8::try_from(resolved - 1).ok()?,
                    std::cmp::Ordering::Less => *order = u8::try_from(resolved).ok()?,
                }
            }
        }
        ops.push(op);
    }
    Some(Case {
        ops,
        ..case.clone()
    })
}

/// The number of worker threads: `PAYSIM_PROPTEST_WORKERS` when set, else `default` (the cases
/// a seed generates never depend on it, see [`run_suite`]).
pub fn workers_from_env(default: usize) -> usize {
    std::env::var("PAYSIM_PROPTEST_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(default)
}

/// The suite's seed: `PAYSIM_PROPTEST_SEED` when set, else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("PAYSIM_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The number of cases: `PAYSIM_PROPTEST_CASES` when set, else `default`.
pub fn cases_from_env(default: u32) -> u32 {
    std::env::var("PAYSIM_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
