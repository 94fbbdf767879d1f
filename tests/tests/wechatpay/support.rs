//! Helpers for the WeChat Pay suite: assertions on replies, the few compound steps most tests
//! repeat (create an order, read it, read the ledger, read the mock's trade, its exchanges and
//! notification attempts), all through the gateway's HTTP API and the simulator's control plane
//! of a [`WechatpaySim`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use determinism::format_rfc3339;
use e2e::wechatpay_sim::{
    open_notification, Delivery, OpenedNotification, Reply, WechatpaySim, GATEWAY_URL, T0,
};
use http::StatusCode;
use serde_json::{json, Value};

pub const CLEARING: &str = "channel_clearing:wechatpay:CNY";
pub const PAYABLE: &str = "merchant_payable:mch_sandbox:CNY";
pub const SUSPENSE: &str = "suspense:wechatpay:CNY";
/// The query of an order by out_trade_no (the gateway's poll), as the mock names it.
pub const QUERY: &str = "pay.transactions.out-trade-no";
/// The refund request, as the mock names it.
pub const REFUND: &str = "refund.domestic.refunds";
/// What the gateway answers a notification it refuses (WeChat then re-sends).
pub const REFUSAL: &str = r#"{"code":"FAIL","message":"失败"}"#;

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
    format!("wechatpay-e2e-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn id_of(view: &Value) -> String {
    view["id"].as_str().unwrap().to_owned()
}

/// A `POST /v1/orders` body for a WeChat Pay Native (QR) payment.
pub fn qr_body(amount: &str) -> Value {
    json!({
        "channel": "wechatpay",
        "method": "qr",
        "amount": amount,
        "subject": "wechatpay e2e order",
    })
}

pub async fn create_order_with(sim: &WechatpaySim, body: &Value) -> Reply {
    sim.gateway_post("/v1/orders", Some(&key()), body)
        .await
        .unwrap()
}

/// Creates a Native order, asserts it is `paying` with a `weixin://` code URL of the mock;
/// returns the order view.
pub async fn create_qr_order(sim: &WechatpaySim, amount: &str) -> Value {
    let created = create_order_with(sim, &qr_body(amount))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["state"], "paying", "{created}");
    assert_eq!(created["buyer_action"]["type"], "qr_code", "{created}");
    let code_url = created["buyer_action"]["code_url"].as_str().unwrap();
    assert!(
        code_url.starts_with("weixin://wxpay/bizpayurl?pr="),
        "the code URL is the mock's: {code_url}"
    );
    created
}

/// `GET /v1/orders/{id}`: the order with its refunds and history.
pub async fn order(sim: &WechatpaySim, id: &str) -> Value {
    sim.gateway_get(&format!("/v1/orders/{id}"))
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// `GET /v1/refunds/{id}`: the refund with its history.
pub async fn refund_detail(sim: &WechatpaySim, id: &str) -> Value {
    sim.gateway_get(&format!("/v1/refunds/{id}"))
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// A history (order or refund) as `from→to event source` lines.
pub fn history(detail: &Value) -> Vec<String> {
    detail["history"]
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

pub async fn refund(sim: &WechatpaySim, order_id: &str, body: &Value) -> Reply {
    sim.gateway_post(
        &format!("/v1/orders/{order_id}/refunds"),
        Some(&key()),
        body,
    )
    .await
    .unwrap()
}

pub async fn close(sim: &WechatpaySim, order_id: &str) -> Reply {
    sim.gateway_post(&format!("/v1/orders/{order_id}/close"), None, &json!({}))
        .await
        .unwrap()
}

/// Ledger balances (minor units) by account code.
pub async fn balances(sim: &WechatpaySim) -> BTreeMap<String, i64> {
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
pub async fn verify_ok(sim: &WechatpaySim) -> Value {
    let report = sim
        .gateway_get("/v1/ledger/verify")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    assert_eq!(report["ok"], true, "ledger violations: {report:#}");
    assert!(report["violations"].as_array().unwrap().is_empty());
    report
}

/// The mock's `TradeView` of an order.
pub async fn trade(sim: &WechatpaySim, out_trade_no: &str) -> Value {
    sim.trade(out_trade_no)
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// The mock's refunds, oldest first.
pub async fn channel_refunds(sim: &WechatpaySim) -> Vec<Value> {
    sim.control_get("/_paysim/wechatpay/refunds")
        .await
        .unwrap()
        .expect(StatusCode::OK)["refunds"]
        .as_array()
        .unwrap()
        .clone()
}

/// A buyer action that must succeed; returns the trade afterwards.
pub async fn act(sim: &WechatpaySim, out_trade_no: &str, action: &str) -> Value {
    sim.buyer_action(out_trade_no, action)
        .await
        .unwrap()
        .expect(StatusCode::OK)
}

/// Arms a fault; returns the armed fault.
pub async fn arm(
    sim: &WechatpaySim,
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

/// Every request the mock received, each checked to carry a valid merchant signature (the
/// adapter signs every request, and the mock verifies it over the raw bytes).
pub async fn exchanges(sim: &WechatpaySim) -> Vec<Value> {
    let exchanges = sim
        .control_get("/_paysim/wechatpay/exchanges")
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

/// One exchange as `+offset_ms api http_status[ code][ fault=…]`, for compact assertions.
pub fn exchange_line(exchange: &Value) -> String {
    let offset = exchange["at_ms"].as_i64().unwrap() - T0;
    let mut line = format!(
        "+{offset} {} {}",
        exchange["api"].as_str().unwrap_or("?"),
        exchange["http_status"]
    );
    if let Some(code) = exchange["code"].as_str() {
        line.push(' ');
        line.push_str(code);
    }
    if let Some(fault) = exchange["fault"].as_str() {
        line.push_str(" fault=");
        line.push_str(fault);
    }
    line
}

pub async fn exchange_lines(sim: &WechatpaySim) -> Vec<String> {
    exchanges(sim).await.iter().map(exchange_line).collect()
}

/// The notification attempts of a trade (its refunds' included) as
/// `ntf event_type #attempt +offset_ms status body accepted fault`.
pub fn attempt_lines(trade: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for notification in trade["notifications"].as_array().unwrap() {
        assert_eq!(
            notification["url"],
            format!("{GATEWAY_URL}/notify/wechatpay"),
            "the adapter gave the mock the gateway's notify URL"
        );
        for attempt in notification["attempts"].as_array().unwrap() {
            lines.push(format!(
                "{} {} #{} +{} {} {:?} accepted={} fault={}",
                notification["id"].as_str().unwrap(),
                notification["status"].as_str().unwrap(),
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

/// A delivery as the mock's signed, encrypted notification: the headers name the WeChat Pay
/// public key, and the resource opens with the APIv3 key.
#[track_caller]
pub fn opened(delivery: &Delivery) -> OpenedNotification {
    assert_eq!(delivery.path, "/notify/wechatpay");
    assert_eq!(
        delivery.header("wechatpay-serial"),
        Some(e2e::wechatpay_sim::PUBLIC_KEY_ID)
    );
    assert_eq!(
        delivery.header("wechatpay-signature-type"),
        Some("WECHATPAY2-SHA256-RSA2048")
    );
    for header in [
        "wechatpay-timestamp",
        "wechatpay-nonce",
        "wechatpay-signature",
    ] {
        assert!(
            delivery.header(header).is_some_and(|v| !v.is_empty()),
            "{header}"
        );
    }
    open_notification(&delivery.body).unwrap()
}

/// The gateway acknowledged a delivery the WeChat Pay way: 204, no body.
#[track_caller]
pub fn assert_acknowledged(delivery: &Delivery) {
    assert_eq!(
        (delivery.status, &delivery.reply[..]),
        (StatusCode::NO_CONTENT, &b""[..]),
        "acknowledged"
    );
}

/// The gateway refused a delivery the WeChat Pay way: 500 `{"code":"FAIL",…}`.
#[track_caller]
pub fn assert_refused(delivery: &Delivery) {
    assert_eq!(
        (delivery.status, String::from_utf8_lossy(&delivery.reply)),
        (StatusCode::INTERNAL_SERVER_ERROR, REFUSAL.into()),
        "refused"
    );
}
