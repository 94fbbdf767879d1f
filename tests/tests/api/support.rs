//! Request helpers for the API suite: build a request, send it through the Router, read the
//! reply; plus the few compound steps (create an order, pay it, read the ledger) most tests
//! repeat.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use e2e::harness::TestGateway;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A reply read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "reply ({}) is not JSON: {e}: {:?}",
                self.status,
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Asserts the status and returns the JSON body; a mismatch shows the body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.json()
    }

    /// Asserts an error reply: status, `code`, and `field` when given (absent when `None`).
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str, field: Option<&str>) -> Value {
        let body = self.expect(status);
        assert_eq!(body["code"], code, "body: {body}");
        assert_eq!(body["field"].as_str(), field, "body: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error says what is wrong: {body}"
        );
        // Field errors say `field: problem`; other codes carry the field in `field` only.
        if let (Some(field), "invalid_field" | "unknown_field") = (field, code) {
            assert!(
                body["message"].as_str().unwrap().contains(field),
                "the message names the field {field}: {body}"
            );
        }
        assert_eq!(
            self.headers[http::header::CONTENT_TYPE],
            "application/json",
            "error bodies are JSON"
        );
        body
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        bytes: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// `POST uri` with a JSON content type and, when given, an `Idempotency-Key`.
pub async fn post(app: &Router, uri: &str, key: Option<&str>, body: impl Into<Body>) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    send(app, request.body(body.into()).unwrap()).await
}

/// A fresh idempotency key.
pub fn key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("e2e-key-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A valid `POST /v1/orders` body for a QR payment at the fake channel (as `alipay`).
pub fn order_body(amount: &str) -> Value {
    json!({
        "channel": "alipay",
        "method": "qr",
        "amount": amount,
        "subject": "e2e test order",
    })
}

pub async fn create_order_with(t: &TestGateway, body: &Value) -> Reply {
    post(&t.app, "/v1/orders", Some(&key()), body.to_string()).await
}

/// Creates a QR order and asserts it is `paying`; returns the order view.
pub async fn create_order(t: &TestGateway, amount: &str) -> Value {
    let order = create_order_with(t, &order_body(amount))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(order["state"], "paying", "{order}");
    order
}

/// `GET /v1/orders/{id}`: the order with its refunds and history.
pub async fn order(t: &TestGateway, id: &str) -> Value {
    get(&t.app, &format!("/v1/orders/{id}"))
        .await
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

/// Delivers a notification the fake channel built to the gateway's Router.
pub async fn deliver(t: &TestGateway, notification: Option<determinism::HttpRequest>) -> Reply {
    let notification = notification.expect("the fake channel knows the trade");
    let (parts, body) = notification.into_parts();
    assert_eq!(
        parts.uri.to_string(),
        format!("{}/notify/alipay", e2e::harness::GATEWAY_URL),
        "the adapter gave the channel the gateway's notify URL"
    );
    let request = Request::from_parts(parts, Body::from(body));
    send(&t.app, request).await
}

/// Pays an order at the fake channel and delivers the notification; asserts it was accepted.
pub async fn pay(t: &TestGateway, order_id: &str) -> Value {
    assert!(
        t.fake.pay(order_id),
        "the fake channel is waiting for payment"
    );
    let ack = deliver(t, t.fake.payment_notification(order_id)).await;
    assert_eq!(
        (ack.status, ack.text().as_str()),
        (StatusCode::OK, "success")
    );
    let paid = order(t, order_id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    paid
}

pub async fn refund(t: &TestGateway, order_id: &str, key: &str, body: &Value) -> Reply {
    post(
        &t.app,
        &format!("/v1/orders/{order_id}/refunds"),
        Some(key),
        body.to_string(),
    )
    .await
}

/// Ledger balances (minor units) by account code; accounts without postings are absent.
pub async fn balances(t: &TestGateway) -> BTreeMap<String, i64> {
    get(&t.app, "/v1/ledger/accounts")
        .await
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

/// `GET /v1/ledger/verify`, asserted clean; returns the report.
pub async fn verify_ok(t: &TestGateway) -> Value {
    let report = get(&t.app, "/v1/ledger/verify")
        .await
        .expect(StatusCode::OK);
    assert_eq!(report["ok"], true, "ledger violations: {report:#}");
    assert!(report["violations"].as_array().unwrap().is_empty());
    report
}

pub const CLEARING: &str = "channel_clearing:alipay:CNY";
pub const PAYABLE: &str = "merchant_payable:mch_sandbox:CNY";
pub const FEES: &str = "channel_fees:alipay:CNY";
pub const SUSPENSE: &str = "suspense:alipay:CNY";

/// Expected balances, as `[(account, minor)]`, accounts not listed being zero or absent.
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
