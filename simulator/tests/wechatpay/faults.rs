//! The protocol faults added to the catalogue, as a WeChat Pay merchant sees them on the wire:
//! unsigned / unknown-serial / malformed answers, 5xx statuses, and delayed, reordered,
//! replayed and contradicting notifications.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    decrypt, header, received, receiver, signature_verifies, verify_platform, Harness, MCHID,
    MINUTE, PUB_KEY_ID, SECOND, T0,
};

fn envelope(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

async fn notifications(h: &Harness, out_trade_no: &str) -> Value {
    let (_, trade) = h
        .control(
            Method::GET,
            &format!("/_paysim/wechatpay/trades/{out_trade_no}"),
            None,
        )
        .await;
    trade["notifications"].clone()
}

#[tokio::test]
async fn unsigned_unknown_serial_malformed_and_5xx_answers() {
    let h = Harness::new();

    h.arm(json!({"target": "pay.transactions.native", "fault": "unsigned_response"}))
        .await;
    let unsigned = h.native("WIRE_001", 1).await;
    assert_eq!(unsigned.status, StatusCode::OK);
    assert!(unsigned.json()["code_url"].is_string(), "executed");
    assert!(unsigned.headers.get("wechatpay-signature").is_none());
    for name in [
        "wechatpay-serial",
        "wechatpay-nonce",
        "wechatpay-timestamp",
        "wechatpay-signature-type",
        "request-id",
    ] {
        assert!(unsigned.headers.get(name).is_some(), "{name} stays");
    }

    // Correctly signed by the platform key, but under a key id the merchant never saw.
    h.arm(json!({"target": "*", "fault": "unknown_serial"}))
        .await;
    let unknown = h.native("WIRE_002", 1).await;
    let serial = header(&unknown.headers, "wechatpay-serial");
    assert!(
        serial.starts_with("PUB_KEY_ID_") && serial != PUB_KEY_ID,
        "{serial}"
    );
    let message = format!(
        "{}\n{}\n{}\n",
        header(&unknown.headers, "wechatpay-timestamp"),
        header(&unknown.headers, "wechatpay-nonce"),
        unknown.text
    );
    assert!(verify_platform(
        message.as_bytes(),
        header(&unknown.headers, "wechatpay-signature")
    ));
    h.arm(json!({"target": "*", "fault": "unknown_serial", "params": {"serial": "PUB_KEY_ID_42"}}))
        .await;
    let named = h.native("WIRE_002", 1).await;
    assert_eq!(header(&named.headers, "wechatpay-serial"), "PUB_KEY_ID_42");

    // Executed (default), then answered with a body that is not JSON.
    h.arm(json!({"target": "pay.transactions.native", "fault": "malformed_body"}))
        .await;
    let malformed = h.native("WIRE_003", 1).await;
    assert_eq!(malformed.status, StatusCode::OK);
    assert_eq!(
        header(&malformed.headers, "content-type"),
        "application/json; charset=utf-8"
    );
    assert!(
        malformed.text.starts_with("{\"code_url\""),
        "{}",
        malformed.text
    );
    assert!(serde_json::from_str::<Value>(&malformed.text).is_err());
    assert_eq!(
        h.query("WIRE_003").await["trade_state"],
        "NOTPAY",
        "executed"
    );
    h.arm(
        json!({"target": "pay.transactions.native", "fault": "malformed_body",
                 "params": {"executed": false}}),
    )
    .await;
    let malformed = h.native("WIRE_004", 1).await;
    assert!(serde_json::from_str::<Value>(&malformed.text).is_err());
    let missing = h
        .get(&format!(
            "/v3/pay/transactions/out-trade-no/WIRE_004?mchid={MCHID}"
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "not executed");

    h.arm(json!({"target": "*", "fault": "http_500", "params": {"status": 503}}))
        .await;
    let unavailable = h.native("WIRE_005", 1).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(unavailable.text.starts_with("503 Service Unavailable"));
    for params in [json!({"status": 404}), json!({"status": "502"})] {
        let (status, body) = h
            .control(
                Method::POST,
                "/_paysim/wechatpay/faults",
                Some(json!({"target": "*", "fault": "http_500", "params": params})),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_params"))
        );
    }

    // WeChat Pay never notifies while answering a request: the fault is refused.
    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/wechatpay/faults",
            Some(json!({"target": "*", "fault": "notify_before_response"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_fault"))
    );
}

#[tokio::test]
async fn delay_notification_holds_the_attempt_and_the_schedule_follows_it() {
    let h = Harness::new();
    let inbox = receiver(&h, 1);
    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/wechatpay/faults",
            Some(json!({"target": "notify", "fault": "delay_notification"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_params"))
    );
    h.arm(json!({"target": "notify", "fault": "delay_notification",
                 "params": {"delay_ms": 2 * 3_600_000}}))
        .await;
    h.paid_order("DELAY_01", 100).await;
    // The merchant hears of the payment 2 h late.
    h.run_until(T0 + 2 * 3_600_000 - SECOND).await;
    assert!(received(&inbox).is_empty());
    let view = notifications(&h, "DELAY_01").await;
    assert_eq!(view[0]["state"], "pending");
    assert_eq!(view[0]["next_attempt_at"], "2026-11-25T12:00:00.000Z");
    h.run_until(T0 + 3 * 3_600_000).await;
    let times: Vec<i64> = received(&inbox).iter().map(|r| r.at_ms - T0).collect();
    // Attempt 1 at +2 h (refused by the receiver), attempt 2 15 s after it.
    assert_eq!(times, [2 * 3_600_000, 2 * 3_600_000 + 15 * SECOND]);
    let view = notifications(&h, "DELAY_01").await;
    assert_eq!(view[0]["attempts"][0]["fault"], "delay_notification");
    assert_eq!(view[0]["attempts"][1]["fault"], Value::Null);
    assert_eq!(view[0]["state"], "acknowledged");
}

#[tokio::test]
async fn out_of_order_notification_lets_the_refund_overtake_the_payment() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    h.arm(json!({"target": "notify", "fault": "out_of_order_notification"}))
        .await;
    h.paid_order("ORDER_R1", 100).await;
    assert_eq!(h.refund("RF1", 30, 100).await.status, StatusCode::OK);
    h.run_until(T0 + MINUTE).await;
    let got = received(&inbox);
    let order: Vec<(&str, i64)> = got
        .iter()
        .map(|r| (r.path.as_str(), r.at_ms - T0))
        .collect();
    // The refund settles 5 s later; the payment notification goes right after it.
    assert_eq!(
        order,
        [("/refund-notify", 5 * SECOND), ("/notify", 5 * SECOND)]
    );
    assert_eq!(envelope(&got[1].body)["event_type"], "TRANSACTION.SUCCESS");
    assert!(got.iter().all(|r| signature_verifies(&r.headers, &r.body)));
    let view = notifications(&h, "ORDER_R1").await;
    assert_eq!(view[0]["attempts"][0]["fault"], "out_of_order_notification");

    // Nothing follows: sent when max_hold_ms runs out.
    h.arm(
        json!({"target": "notify", "fault": "out_of_order_notification",
                 "params": {"max_hold_ms": 600_000}}),
    )
    .await;
    h.paid_order("LONELY_01", 100).await;
    h.run_until(T0 + 30 * MINUTE).await;
    let last = received(&inbox).pop().unwrap();
    assert_eq!(last.at_ms, T0 + MINUTE + 10 * MINUTE);
    assert_eq!(h.scheduler.next_due_ms(), None, "nothing left behind");
}

#[tokio::test]
async fn replay_notification_resends_the_oldest_copy_byte_for_byte() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    // Nothing was ever sent: behaves like no fault, but fires.
    h.arm(json!({"target": "notify", "fault": "replay_notification"}))
        .await;
    h.paid_order("REPLAY_01", 100).await;
    h.run_until(T0 + MINUTE).await;
    assert_eq!(received(&inbox).len(), 1);
    let (_, faults) = h
        .control(Method::GET, "/_paysim/wechatpay/faults", None)
        .await;
    assert_eq!(faults["faults"][0]["fired"], 1);

    h.run_until(T0 + 10 * MINUTE).await;
    h.arm(json!({"target": "notify", "fault": "replay_notification"}))
        .await;
    h.paid_order("REPLAY_02", 200).await;
    h.run_until(T0 + 11 * MINUTE).await;
    let got = received(&inbox);
    assert_eq!(got.len(), 3);
    // The replay: REPLAY_01's notification as first sent, headers and body unchanged
    // (so its timestamp is 10 minutes old), then REPLAY_02's own.
    assert_eq!(got[1].body, got[0].body);
    assert_eq!(got[1].headers, got[0].headers);
    assert_eq!(got[1].at_ms, T0 + 10 * MINUTE);
    assert_eq!(
        decrypt(&envelope(&got[2].body)["resource"])["out_trade_no"],
        "REPLAY_02"
    );
    let replayed = notifications(&h, "REPLAY_01").await;
    let attempts = replayed[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1]["fault"], "replay_notification");
    assert_eq!(
        notifications(&h, "REPLAY_02").await[0]["attempts"][0]["fault"],
        "replay_notification"
    );
}

#[tokio::test]
async fn conflicting_status_notification_contradicts_the_order_but_verifies() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    h.arm(json!({"target": "notify", "fault": "conflicting_status_notification"}))
        .await;
    h.paid_order("CONFLICT_01", 100).await;
    h.run_until(T0 + MINUTE).await;
    let got = received(&inbox);
    assert!(signature_verifies(&got[0].headers, &got[0].body));
    let body = envelope(&got[0].body);
    assert_eq!(body["event_type"], "TRANSACTION.SUCCESS");
    let plain = decrypt(&body["resource"]);
    assert_eq!(plain["trade_state"], "CLOSED");
    assert_eq!(plain["amount"]["total"], 100);
    assert_eq!(h.query("CONFLICT_01").await["trade_state"], "SUCCESS");

    h.arm(
        json!({"target": "notify", "fault": "conflicting_status_notification",
                 "params": {"status": "PAYERROR"}}),
    )
    .await;
    h.paid_order("CONFLICT_02", 100).await;
    h.run_until(T0 + 2 * MINUTE).await;
    let got = received(&inbox);
    let plain = decrypt(&envelope(&got[1].body)["resource"]);
    assert_eq!(plain["trade_state"], "PAYERROR");
    let view = notifications(&h, "CONFLICT_02").await;
    assert_eq!(view[0]["status"], "TRANSACTION.SUCCESS");
    assert_eq!(
        view[0]["attempts"][0]["fault"],
        "conflicting_status_notification"
    );
}
