//! `Idempotency-Key`: the same key with the same body replays the first response byte for byte
//! (and does no work); the same key with another body is refused; key order and whitespace do
//! not make a body different.

use e2e::harness::TestGateway;
use http::StatusCode;
use serde_json::json;

use crate::support::{create_order, key, order_body, pay, post, refund, verify_ok};

#[tokio::test]
async fn same_key_same_body_replays_the_first_response() {
    let t = TestGateway::new().await.unwrap();
    let key = key();
    let body = order_body("12.34").to_string();
    let first = post(&t.app, "/v1/orders", Some(&key), body.clone()).await;
    let created = first.expect(StatusCode::CREATED);

    // Later, after the order moved on, the retry still gets the first answer.
    t.advance_ms(1_000).await;
    let second = post(&t.app, "/v1/orders", Some(&key), body).await;
    assert_eq!(second.status, first.status);
    assert_eq!(second.bytes, first.bytes, "the replay is byte-identical");

    let creates: Vec<_> = t
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("create"))
        .collect();
    assert_eq!(
        creates,
        [format!("create {}", created["id"].as_str().unwrap())]
    );
    assert_eq!(verify_ok(&t).await["orders"], 1);
}

#[tokio::test]
async fn key_order_and_whitespace_do_not_make_another_body() {
    let t = TestGateway::new().await.unwrap();
    let key = key();
    let compact = r#"{"channel":"alipay","method":"qr","amount":"5.00","subject":"s","method_params":{"auth_code":null,"return_url":"https://shop.example/back"}}"#;
    let reordered = "{\n  \"subject\": \"s\",\n  \"method_params\": { \"return_url\": \"https://shop.example/back\", \"auth_code\": null },\n  \"amount\" : \"5.00\",\t\"method\":\"qr\", \"channel\":\"alipay\"\n}";
    let first = post(&t.app, "/v1/orders", Some(&key), compact).await;
    first.expect(StatusCode::CREATED);
    let second = post(&t.app, "/v1/orders", Some(&key), reordered).await;
    assert_eq!((second.status, &second.bytes), (first.status, &first.bytes));
    assert_eq!(verify_ok(&t).await["orders"], 1);
}

#[tokio::test]
async fn same_key_other_body_is_refused() {
    let t = TestGateway::new().await.unwrap();
    let key = key();
    post(
        &t.app,
        "/v1/orders",
        Some(&key),
        order_body("5.00").to_string(),
    )
    .await
    .expect(StatusCode::CREATED);
    for other in [
        order_body("5.01"),
        json!({"channel": "alipay", "method": "qr", "amount": "5.00", "subject": "another"}),
        // "5" and "5.00" are the same money but not the same request.
        json!({"channel": "alipay", "method": "qr", "amount": "5", "subject": "e2e test order"}),
    ] {
        let reply = post(&t.app, "/v1/orders", Some(&key), other.to_string()).await;
        let error = reply.expect_error(StatusCode::CONFLICT, "idempotency_key_reused", None);
        insta::assert_json_snapshot!("key_reused", error);
    }
    assert_eq!(verify_ok(&t).await["orders"], 1);
}

#[tokio::test]
async fn different_keys_create_different_orders() {
    let t = TestGateway::new().await.unwrap();
    let a = create_order(&t, "5.00").await;
    let b = create_order(&t, "5.00").await;
    assert_ne!(a["id"], b["id"]);
    assert_eq!(verify_ok(&t).await["orders"], 2);
}

/// A channel failure is an answer too: the retry with the same key replays it rather than
/// creating a second order (the first one is being followed up by the scheduler).
#[tokio::test]
async fn a_channel_failure_is_replayed_not_retried_as_a_new_order() {
    let t = TestGateway::new().await.unwrap();
    let key = key();
    let body = order_body("7.00").to_string();
    t.fake.fail_next_calls(1);
    let first = post(&t.app, "/v1/orders", Some(&key), body.clone()).await;
    let error = first.expect_error(StatusCode::BAD_GATEWAY, "channel_unavailable", None);
    assert!(error["order_id"].as_str().unwrap().starts_with("ord_"));
    let second = post(&t.app, "/v1/orders", Some(&key), body).await;
    assert_eq!((second.status, &second.bytes), (first.status, &first.bytes));
    assert_eq!(verify_ok(&t).await["orders"], 1);
}

#[tokio::test]
async fn refunds_are_idempotent_per_order_and_key() {
    let t = TestGateway::new().await.unwrap();
    let order = create_order(&t, "10.00").await;
    let id = order["id"].as_str().unwrap();
    pay(&t, id).await;

    let key = key();
    let body = json!({"amount": "3.00", "reason": "damaged"});
    let first = refund(&t, id, &key, &body).await;
    first.expect(StatusCode::CREATED);
    let reordered = json!({"reason": "damaged", "amount": "3.00"});
    let second = refund(&t, id, &key, &reordered).await;
    assert_eq!((second.status, &second.bytes), (first.status, &first.bytes));

    let other = refund(&t, id, &key, &json!({"amount": "4.00"})).await;
    other.expect_error(StatusCode::CONFLICT, "idempotency_key_reused", None);

    let detail = crate::support::order(&t, id).await;
    assert_eq!(detail["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(detail["refunded_amount"], "3.00");
    let refunds: Vec<_> = t
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("refund "))
        .collect();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    verify_ok(&t).await;
}
