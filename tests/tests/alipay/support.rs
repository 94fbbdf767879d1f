//! Helpers for the Alipay suite: assertions on replies, the few compound steps most tests repeat
//! (create an order, read it, read the ledger, read the simulator's trade), all through the
//! gateway's HTTP API and the simulator's control plane of an [`AlipaySim`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use determinism::format_rfc3339;
use e2e::alipay_sim::{AlipaySim, Reply, ALIPAY_URL, GATEWAY_URL, T0};
use http::StatusCode;
use serde_json::{json, Value};

pub const CLEARING: &str = "channel_clearing:alipay:CNY";
pub const PAYABLE: &str = "merchant_payable:mch_sandbox:CNY";
pub const SUSPENSE: &str = "suspense:alipay:CNY";

/// `T0 + offset_ms` as the APIs write it.
pub fn at(offset_ms: i64) -> String {
    format_rfc3339(T0 + offset_ms)
}

/// Assertions on a [`Reply`]; a mismatch shows the body.
pub trait Expect {
    fn expect(&self, status: StatusCode) -> Value;
    fn expect_error(&self, status: StatusCode, code: &str) -> Value;
}

impl Expect for Reply {
    #[track_caller]
    fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.json().unwrap()
    }

    #[track_caller]
    fn expect_error(&self, status: StatusCode, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["code"], code, "body: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error says what is wrong: {body}"
        );
        body
    }
}

/// A fresh idempotency key.
pub fn key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("alipay-e2e-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn id_of(view: &Value) -> String {
    view["id"].as_str().unwrap().to_owned()
}

/// A `POST /v1/orders` body for an Alipay QR (precreate) payment.
pub fn qr_body(amount: &str) -> Value {
    json!({
        "channel": "alipay",
        "method": "qr",
        "amount": amount,
        "subject": "alipay e2e order",
    })
}

pub async fn create_order_with(sim: &AlipaySim, body: &Value) -> Reply {
    sim.gateway_post("/v1/orders", Some(&key()), body)
        .await
        .unwrap()
}

/// Creates a QR order, asserts it is `paying` with a QR code of the mock gateway; returns the
/// order view.
pub async fn create_qr_order_with(sim: &AlipaySim, body: &Value) -> Value {
    let created = create_order_with(sim, body)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["state"], "paying", "{created}");
    assert_eq!(created["buyer_action"]["type"], "qr_code", "{created}");
    let qr = created["buyer_action"]["qr_code"].as_str().unwrap();
    assert!(
        qr.starts_with(&format!("{ALIPAY_URL}/alipay/qr/")),
        "the QR code is the mock gateway's: {qr}"
    );
    created
}

pub async fn create_qr_order(sim: &AlipaySim, amount: &str) -> Value {
    create_qr_order_with(sim, &qr_body(amount)).await
}

/// `GET /v1/orders/{id}`: the order with its refunds and history.
pub async fn order(sim: &AlipaySim, id: &str) -> Value {
    sim.gateway_get(&format!("/v1/orders/{id}"))
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// An order's history as `from→to event source` lines.
pub fn history(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}→{} {} {}",
                t["from_state"].as_str().unwrap_or("∅"),
                t["to_state"].as_str().unwrap(),
                t["event"].as_str().unwrap(),
                t["source"].as_str().unwrap()
            )
        })
        .collect()
}

pub async fn refund(sim: &AlipaySim, order_id: &str, body: &Value) -> Reply {
    sim.gateway_post(
        &format!("/v1/orders/{order_id}/refunds"),
        Some(&key()),
        body,
    )
    .await
    .unwrap()
}

pub async fn close(sim: &AlipaySim, order_id: &str) -> Reply {
    sim.gateway_post(&format!("/v1/orders/{order_id}/close"), None, &json!({}))
        .await
        .unwrap()
}

/// Ledger balances (minor units) by account code.
pub async fn balances(sim: &AlipaySim) -> BTreeMap<String, i64> {
    sim.gateway_get("/v1/ledger/accounts")
        .await
        .unwrap()
        .expect(StatusCode::OK)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap().to_owned(),
                a["balance_minor"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Expected balances, accounts not listed being zero or absent.
#[track_caller]
pub fn assert_balances(actual: &BTreeMap<String, i64>, expected: &[(&str, i64)]) {
    let nonzero: BTreeMap<String, i64> = actual
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let expected: BTreeMap<String, i64> = expected
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    assert_eq!(nonzero, expected, "ledger balances (all: {actual:?})");
}

/// `GET /v1/ledger/verify`, asserted clean; returns the report.
pub async fn verify_ok(sim: &AlipaySim) -> Value {
    let report = sim
        .gateway_get("/v1/ledger/verify")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    assert_eq!(report["ok"], true, "ledger violations: {report:#}");
    assert!(report["violations"].as_array().unwrap().is_empty());
    report
}

/// The simulator's `TradeView` of an order.
pub async fn trade(sim: &AlipaySim, out_trade_no: &str) -> Value {
    sim.trade(out_trade_no)
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// A buyer action that must succeed; returns the trade afterwards.
pub async fn act(sim: &AlipaySim, out_trade_no: &str, action: &str) -> Value {
    sim.buyer_action(out_trade_no, action)
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// Arms a fault; returns the armed fault.
pub async fn arm(sim: &AlipaySim, target: &str, fault: &str, times: u32, params: Value) -> Value {
    let armed = sim
        .arm_fault(target, fault, times, params)
        .await
        .unwrap()
        .expect(StatusCode::CREATED);
    assert_eq!(armed["fault"], fault, "{armed}");
    armed
}

/// Every request the mock gateway received, as `api out_trade_no → code[/sub_code]` lines,
/// with the time offset from T0 in ms and the signature verdict checked to be valid.
pub async fn exchanges(sim: &AlipaySim) -> Vec<Value> {
    let exchanges = sim
        .control_get("/_paysim/alipay/exchanges")
        .await
        .unwrap()
        .expect(StatusCode::OK)["exchanges"]
        .as_array()
        .unwrap()
        .clone();
    for exchange in &exchanges {
        assert_eq!(
            exchange["signature"]["verdict"], "valid",
            "the adapter signs every request so the mock verifies it: {exchange}"
        );
    }
    exchanges
}

/// One exchange as `+offset_ms api code[ sub_code]`, for compact assertions.
pub fn exchange_line(exchange: &Value) -> String {
    let offset = exchange["at_ms"].as_i64().unwrap() - T0;
    let mut line = format!(
        "+{offset} {} {}",
        exchange["api"].as_str().unwrap_or("?"),
        exchange["code"].as_str().unwrap_or("?")
    );
    if let Some(sub_code) = exchange["sub_code"].as_str() {
        line.push(' ');
        line.push_str(sub_code);
    }
    if let Some(fault) = exchange["fault"].as_str() {
        line.push_str(" fault=");
        line.push_str(fault);
    }
    line
}

pub async fn exchange_lines(sim: &AlipaySim) -> Vec<String> {
    exchanges(sim).await.iter().map(exchange_line).collect()
}

/// The notification attempts of a trade as `ntf attempt +offset_ms status body accepted fault`.
pub fn attempt_lines(trade: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for notification in trade["notifications"].as_array().unwrap() {
        assert_eq!(
            notification["url"],
            format!("{GATEWAY_URL}/notify/alipay"),
            "the adapter gave the mock gateway the gateway's notify URL"
        );
        for attempt in notification["attempts"].as_array().unwrap() {
            lines.push(format!(
                "{} {} #{} +{} {} {:?} accepted={} fault={}",
                notification["id"].as_str().unwrap(),
                notification["event"].as_str().unwrap(),
                attempt["attempt"],
                attempt["at_ms"].as_i64().unwrap() - T0,
                attempt["http_status"],
                attempt["body_excerpt"].as_str().unwrap(),
                attempt["accepted"],
                attempt["fault"].as_str().unwrap_or("-"),
            ));
        }
    }
    lines
}
