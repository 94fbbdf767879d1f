//! Helpers for the WeChat Pay suite: assertions on replies, the few compound steps most tests
//! repeat (create an order, read it, read the ledger, read the mock's trade, its exchanges and
//! notification attempts), all through the gateway's HTTP API and the simulator's control plane
//! of a [`WechatpaySim`].

use e2e::wechatpay_sim::{
    open_notification, Delivery, OpenedNotification, WechatpaySim, GATEWAY_URL, T0,
};
use http::StatusCode;
use serde_json::{json, Value};

#[path = "../common/gateway.rs"]
mod gateway;
pub use gateway::*;

pub const CLEARING: &str = "channel_clearing:wechatpay:CNY";
pub const PAYABLE: &str = "merchant_payable:mch_sandbox:CNY";
pub const SUSPENSE: &str = "suspense:wechatpay:CNY";
/// The query of an order by out_trade_no (the gateway's poll), as the mock names it.
pub const QUERY: &str = "pay.transactions.out-trade-no";
/// The refund request, as the mock names it.
pub const REFUND: &str = "refund.domestic.refunds";
/// What the gateway answers a notification it refuses (WeChat then re-sends).
pub const REFUSAL: &str = r#"{"code":"FAIL","message":"失败"}"#;

/// A `POST /v1/orders` body for a WeChat Pay Native (QR) payment.
pub fn qr_body(amount: &str) -> Value {
    json!({
        "channel": "wechatpay",
        "method": "qr",
        "amount": amount,
        "subject": "wechatpay e2e order",
    })
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

/// `GET /v1/refunds/{id}`: the refund with its history.
pub async fn refund_detail(sim: &WechatpaySim, id: &str) -> Value {
    sim.gateway_get(&format!("/v1/refunds/{id}"))
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
