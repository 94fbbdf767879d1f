//! One test over a real socket: the same Router served by axum on 127.0.0.1, called with
//! reqwest. Business time is still the virtual clock; only the merchant-facing hop is real.

use std::future::IntoFuture;

use e2e::harness::TestGateway;
use serde_json::Value;

use crate::support::order_body;

#[tokio::test]
async fn the_api_works_over_a_real_socket() {
    let t = TestGateway::new().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    #[allow(
        clippy::disallowed_methods,
        reason = "the test's HTTP server runs beside the test body; it does no business work"
    )]
    let server = tokio::spawn(axum::serve(listener, t.app.clone()).into_future());

    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/v1/orders"))
        .header("content-type", "application/json")
        .header("idempotency-key", "socket-1")
        .body(order_body("66.00").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let created: Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["state"], "paying");

    let fetched = client
        .get(format!("{base}/v1/orders/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), reqwest::StatusCode::OK);
    let fetched: Value = serde_json::from_str(&fetched.text().await.unwrap()).unwrap();
    assert_eq!(fetched["id"], id);
    assert_eq!(fetched["amount"], "66.00");
    assert_eq!(fetched["history"].as_array().unwrap().len(), 2);

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let health: Value = serde_json::from_str(&health.text().await.unwrap()).unwrap();
    assert_eq!(health["status"], "ok");

    let missing = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers()["content-type"],
        "application/json",
        "the 404 is JSON over the wire too"
    );
    server.abort();
}
