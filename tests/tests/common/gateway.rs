//! Gateway-side helpers shared by the channel suites (included with `#[path]` by each suite's
//! `support.rs`): reply assertions, idempotency keys, and the order, refund, ledger and
//! control-plane reads every test repeats, generic over the simulated channel.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use determinism::format_rfc3339;
use e2e::sim::{Reply, Sim, SimChannel, T0};
use http::StatusCode;
use serde_json::{json, Value};

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
    format!("e2e-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn id_of(view: &Value) -> String {
    view["id"].as_str().unwrap().to_owned()
}

pub async fn create_order_with<C: SimChannel>(sim: &Sim<C>, body: &Value) -> Reply {
    sim.gateway_post("/v1/orders", Some(&key()), body)
        .await
        .unwrap()
}

/// `GET /v1/orders/{id}`: the order with its refunds and history.
pub async fn order<C: SimChannel>(sim: &Sim<C>, id: &str) -> Value {
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

pub async fn refund<C: SimChannel>(sim: &Sim<C>, order_id: &str, body: &Value) -> Reply {
    sim.gateway_post(
        &format!("/v1/orders/{order_id}/refunds"),
        Some(&key()),
        body,
    )
    .await
    .unwrap()
}

pub async fn close<C: SimChannel>(sim: &Sim<C>, order_id: &str) -> Reply {
    sim.gateway_post(&format!("/v1/orders/{order_id}/close"), None, &json!({}))
        .await
        .unwrap()
}

/// Ledger balances (minor units) by account code.
pub async fn balances<C: SimChannel>(sim: &Sim<C>) -> BTreeMap<String, i64> {
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
pub async fn verify_ok<C: SimChannel>(sim: &Sim<C>) -> Value {
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
pub async fn trade<C: SimChannel>(sim: &Sim<C>, out_trade_no: &str) -> Value {
    sim.trade(out_trade_no)
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// A buyer action that must succeed; returns the trade afterwards.
pub async fn act<C: SimChannel>(sim: &Sim<C>, out_trade_no: &str, action: &str) -> Value {
    sim.buyer_action(out_trade_no, action)
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// Arms a fault; returns the armed fault.
pub async fn arm<C: SimChannel>(
    sim: &Sim<C>,
    target: &str,
    fault: &str,
    times: u32,
    params: Value,
) -> Value {
    let armed = sim
        .arm_fault(target, fault, times, params)
        .await
        .unwrap()
        .expect(StatusCode::CREATED);
    assert_eq!(armed["fault"], fault, "{armed}");
    armed
}
