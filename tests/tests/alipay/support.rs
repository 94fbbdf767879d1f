//! Helpers for the Alipay suite: assertions on replies, the few compound steps most tests repeat
//! (create an order, read it, read the ledger, read the simulator's trade), all through the
//! gateway's HTTP API and the simulator's control plane of an [`AlipaySim`].

use e2e::alipay_sim::{AlipaySim, ALIPAY_URL, GATEWAY_URL, T0};
use http::StatusCode;
use serde_json::{json, Value};

#[path = "../common/gateway.rs"]
mod gateway;
pub use gateway::*;

pub const CLEARING: &str = "channel_clearing:alipay:CNY";
pub const PAYABLE: &str = "merchant_payable:mch_sandbox:CNY";
pub const SUSPENSE: &str = "suspense:alipay:CNY";

/// A `POST /v1/orders` body for an Alipay QR (precreate) payment.
pub fn qr_body(amount: &str) -> Value {
    json!({
        "channel": "alipay",
        "method": "qr",
        "amount": amount,
        "subject": "alipay e2e order",
    })
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
