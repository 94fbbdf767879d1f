//! The protocol faults added to the catalogue, as an Alipay merchant sees them on the wire:
//! unsigned and malformed answers, 5xx statuses, and delayed, reordered, replayed,
//! contradicting and early notifications.

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Router;
use determinism::Clock;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{field, notification_verifies, receiver, Harness, MERCHANT, MINUTE, T0};

const NOTIFY: (&str, &str) = ("notify_url", "http://merchant.local/notify");

async fn notifications(h: &Harness, out_trade_no: &str) -> Value {
    let (_, trade) = h
        .control(
            Method::GET,
            &format!("/_paysim/alipay/trades/{out_trade_no}"),
            None,
        )
        .await;
    trade["notifications"].clone()
}

async fn arm_refused(h: &Harness, spec: Value) -> (StatusCode, String) {
    let (status, body) = h
        .control(Method::POST, "/_paysim/alipay/faults", Some(spec))
        .await;
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn barcode_pay(h: &Harness, out_trade_no: &str, amount: &str) -> Value {
    let biz = json!({"out_trade_no": out_trade_no, "scene": "bar_code",
                     "auth_code": "281234567890125678", "total_amount": amount, "subject": "s"});
    h.call("alipay.trade.pay", biz, &[NOTIFY]).await
}

#[tokio::test]
async fn unsigned_malformed_and_5xx_answers() {
    let h = Harness::new();
    let biz =
        |no: &str| json!({"out_trade_no": no, "total_amount": "1.00", "subject": "s"}).to_string();

    h.arm(json!({"target": "alipay.trade.precreate", "fault": "unsigned_response"}))
        .await;
    let (status, text) = h
        .send(h.client.post("alipay.trade.precreate", &biz("WIRE_1"), &[]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("\"sign\""), "{text}");
    let whole: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(whole.as_object().unwrap().len(), 1, "only the node: {text}");
    assert_eq!(whole["alipay_trade_precreate_response"]["code"], "10000");

    // Executed (default), then answered with a body that is not JSON.
    h.arm(json!({"target": "alipay.trade.create", "fault": "malformed_body"}))
        .await;
    let (status, text) = h
        .send(h.client.post("alipay.trade.create", &biz("WIRE_2"), &[]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.starts_with("{\"alipay_trade_create_response\":{"),
        "{text}"
    );
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(h.query("WIRE_2").await["trade_status"], "WAIT_BUYER_PAY");
    h.arm(json!({"target": "*", "fault": "malformed_body", "params": {"executed": false}}))
        .await;
    let request = h.client.post("alipay.trade.create", &biz("WIRE_3"), &[]);
    let response = tower::ServiceExt::oneshot(simulator::app(h.sim.clone()), request)
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json;charset=utf-8"
    );
    assert_eq!(h.query("WIRE_3").await["sub_code"], "ACQ.TRADE_NOT_EXIST");

    h.arm(json!({"target": "alipay.trade.query", "fault": "http_500", "params": {"status": 502}}))
        .await;
    let (status, text) = h
        .send(
            h.client
                .post("alipay.trade.query", r#"{"out_trade_no":"WIRE_2"}"#, &[]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(text, "502 Bad Gateway (paysim fault http_500)");
    assert_eq!(
        arm_refused(
            &h,
            json!({"target": "*", "fault": "http_500", "params": {"status": 600}})
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_params".to_owned())
    );
    // unknown_serial needs certificate mode (tests in cert.rs).
    assert_eq!(
        arm_refused(&h, json!({"target": "*", "fault": "unknown_serial"})).await,
        (StatusCode::BAD_REQUEST, "unsupported_fault".to_owned())
    );
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    let faults: Vec<&str> = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["fault"].as_str())
        .collect();
    assert_eq!(
        faults,
        [
            "unsigned_response",
            "malformed_body",
            "malformed_body",
            "http_500"
        ]
    );
}

#[tokio::test]
async fn delay_notification_arrives_after_the_trade_closed() {
    let h = Harness::new();
    let received = receiver(&h, 1);
    assert_eq!(
        arm_refused(
            &h,
            json!({"target": "notify", "fault": "delay_notification",
                               "params": {"delay_ms": 0}})
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_params".to_owned())
    );
    h.arm(json!({"target": "notify", "fault": "delay_notification",
                 "params": {"delay_ms": 3 * 3_600_000}}))
        .await;
    barcode_pay(&h, "LATE_1", "5.00").await;
    h.call(
        "alipay.trade.refund",
        json!({"out_trade_no": "LATE_1", "refund_amount": "5.00"}),
        &[],
    )
    .await;
    assert_eq!(h.query("LATE_1").await["trade_status"], "TRADE_CLOSED");
    // (A full refund of a barcode trade is not notified: it closes the trade.)
    h.run_until(T0 + 3 * 3_600_000 - 1).await;
    assert!(received.lock().unwrap().is_empty());
    let view = notifications(&h, "LATE_1").await;
    assert_eq!(view[0]["state"], "pending");
    assert_eq!(view[0]["next_attempt_at"], "2026-11-25T13:00:00.000Z");

    h.run_until(T0 + 4 * 3_600_000).await;
    let all = received.lock().unwrap().clone();
    let times: Vec<i64> = all.iter().map(|(at, _)| at - T0).collect();
    // Sent 3 h late, after the close; refused once; retried 4 min after it was sent.
    assert_eq!(times, [3 * 3_600_000, 3 * 3_600_000 + 4 * MINUTE]);
    let late = &all[0].1;
    assert_eq!(field(late, "trade_status"), Some("TRADE_SUCCESS"));
    assert!(notification_verifies(late));
    let view = notifications(&h, "LATE_1").await;
    assert_eq!(view[0]["attempts"][0]["fault"], "delay_notification");
    assert_eq!(view[0]["attempts"][1]["fault"], Value::Null);
    assert_eq!(view[0]["state"], "acknowledged");
}

#[tokio::test]
async fn out_of_order_notification_sends_the_refund_first() {
    let h = Harness::new();
    let received = receiver(&h, 0);
    h.arm(json!({"target": "notify", "fault": "out_of_order_notification"}))
        .await;
    barcode_pay(&h, "OOO_1", "9.00").await;
    h.call(
        "alipay.trade.refund",
        json!({"out_trade_no": "OOO_1", "refund_amount": "1.00", "out_request_no": "R1"}),
        &[],
    )
    .await;
    h.run_until(T0 + MINUTE).await;
    let got = received.lock().unwrap().clone();
    let order: Vec<(i64, Option<&str>)> = got
        .iter()
        .map(|(at, p)| (at - T0, field(p, "refund_fee")))
        .collect();
    assert_eq!(
        order,
        [(0, Some("1.00")), (0, None)],
        "refund, then payment"
    );
    assert!(got.iter().all(|(_, p)| notification_verifies(p)));
    let view = notifications(&h, "OOO_1").await;
    assert_eq!(view[0]["attempts"][0]["fault"], "out_of_order_notification");
    assert_eq!(view[0]["state"], "acknowledged");
    assert_eq!(
        h.scheduler.next_due_ms(),
        None,
        "the fallback release was cancelled"
    );

    // No refund follows: the payment notification goes out after max_hold_ms.
    h.arm(
        json!({"target": "notify", "fault": "out_of_order_notification",
                 "params": {"max_hold_ms": 120_000}}),
    )
    .await;
    barcode_pay(&h, "OOO_2", "9.00").await;
    h.run_until(T0 + 10 * MINUTE).await;
    let (at, last) = received.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (at, field(&last, "out_trade_no")),
        (T0 + 3 * MINUTE, Some("OOO_2"))
    );
}

#[tokio::test]
async fn replay_notification_resends_the_oldest_copy_byte_for_byte() {
    let h = Harness::new();
    // Raw bodies, to compare bytes.
    let raw: Arc<Mutex<Vec<(i64, axum::body::Bytes)>>> = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&raw);
    let clock = h.clock.clone();
    h.transport.register(
        MERCHANT,
        Router::new().route(
            "/notify",
            post(move |body: axum::body::Bytes| {
                let log = Arc::clone(&log);
                let clock = clock.clone();
                async move {
                    log.lock().unwrap().push((clock.now_ms(), body));
                    "success"
                }
            }),
        ),
    );
    h.arm(json!({"target": "notify", "fault": "replay_notification"}))
        .await;
    barcode_pay(&h, "RP_1", "2.00").await;
    h.run_until(T0 + MINUTE).await;
    assert_eq!(
        raw.lock().unwrap().len(),
        1,
        "nothing to replay yet: no fault"
    );
    let (_, faults) = h.control(Method::GET, "/_paysim/alipay/faults", None).await;
    assert_eq!(faults["faults"][0]["fired"], 1);

    h.run_until(T0 + 30 * MINUTE).await;
    h.arm(json!({"target": "notify", "fault": "replay_notification"}))
        .await;
    barcode_pay(&h, "RP_2", "3.00").await;
    h.run_until(T0 + 31 * MINUTE).await;
    let got = raw.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].1, got[0].1, "RP_1's notification, byte for byte");
    assert_eq!(got[1].0, T0 + 30 * MINUTE);
    let own: Vec<(String, String)> = form_urlencoded::parse(&got[2].1).into_owned().collect();
    assert_eq!(field(&own, "out_trade_no"), Some("RP_2"));
    let replayed = notifications(&h, "RP_1").await;
    assert_eq!(replayed[0]["attempts"][1]["fault"], "replay_notification");
    assert_eq!(
        notifications(&h, "RP_2").await[0]["attempts"][0]["fault"],
        "replay_notification"
    );
}

#[tokio::test]
async fn conflicting_status_notification_is_signed_but_contradicts_the_trade() {
    let h = Harness::new();
    let received = receiver(&h, 0);
    h.arm(json!({"target": "notify", "fault": "conflicting_status_notification"}))
        .await;
    barcode_pay(&h, "CF_1", "4.00").await;
    h.run_until(T0 + MINUTE).await;
    let (_, pairs) = received.lock().unwrap()[0].clone();
    assert!(notification_verifies(&pairs));
    assert_eq!(field(&pairs, "trade_status"), Some("TRADE_CLOSED"));
    assert_eq!(field(&pairs, "total_amount"), Some("4.00"));
    assert_eq!(h.query("CF_1").await["trade_status"], "TRADE_SUCCESS");
    let view = notifications(&h, "CF_1").await;
    assert_eq!(view[0]["status"], "TRADE_SUCCESS");
    assert_eq!(
        view[0]["attempts"][0]["fault"],
        "conflicting_status_notification"
    );
}

#[tokio::test]
async fn notify_before_response_delivers_the_notification_first() {
    let h = Harness::new();
    let received = receiver(&h, 0);
    assert_eq!(
        arm_refused(
            &h,
            json!({"target": "alipay.trade.query", "fault": "notify_before_response"})
        )
        .await,
        (StatusCode::BAD_REQUEST, "invalid_target".to_owned())
    );
    // Without the fault the notification waits for the scheduler.
    barcode_pay(&h, "NB_0", "1.00").await;
    assert!(received.lock().unwrap().is_empty());
    h.run_until(T0 + MINUTE).await;
    assert_eq!(received.lock().unwrap().len(), 1);

    h.arm(json!({"target": "alipay.trade.pay", "fault": "notify_before_response"}))
        .await;
    let node = barcode_pay(&h, "NB_1", "1.00").await;
    assert_eq!(node["code"], "10000");
    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 2, "delivered while the request was answered");
        assert_eq!(field(&got[1].1, "out_trade_no"), Some("NB_1"));
        assert!(notification_verifies(&got[1].1));
    }
    h.run_until(T0 + 2 * MINUTE).await;
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "not sent again by the scheduler"
    );
    let view = notifications(&h, "NB_1").await;
    assert_eq!(view[0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(view[0]["state"], "acknowledged");
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    let last = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["fault"], "notify_before_response");
}
