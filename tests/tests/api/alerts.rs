//! `GET /v1/alerts`: the alerts the gateway raised, newest last, read through the API.

use e2e::harness::TestGateway;
use http::StatusCode;

use crate::support::{create_order, deliver, get, post};

fn id_of(view: &serde_json::Value) -> String {
    view["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn alerts_are_listed_newest_last_with_kind_subject_message_and_time() {
    let t = TestGateway::new().await.unwrap();
    let empty = get(&t.app, "/v1/alerts").await.expect(StatusCode::OK);
    assert_eq!(empty, serde_json::json!([]));

    // A payment of the wrong amount: alert `amount_mismatch` at T0.
    let first = id_of(&create_order(&t, "50.00").await);
    assert!(t.fake.pay_with_amount(&first, "0.01"));
    deliver(&t, t.fake.payment_notification(&first)).await;

    // A minute later, money after close: alert `late_payment`.
    t.advance_ms(60_000).await;
    let second = id_of(&create_order(&t, "42.00").await);
    post(&t.app, &format!("/v1/orders/{second}/close"), None, "")
        .await
        .expect(StatusCode::OK);
    assert!(t.fake.pay_after_close(&second));
    deliver(&t, t.fake.payment_notification(&second)).await;

    let alerts = get(&t.app, "/v1/alerts").await.expect(StatusCode::OK);
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "amount_mismatch");
    assert_eq!(alerts[0]["subject"], first.as_str());
    assert!(alerts[0]["message"].as_str().unwrap().contains("0.01"));
    assert_eq!(alerts[0]["created_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(alerts[1]["kind"], "late_payment");
    assert_eq!(alerts[1]["subject"], second.as_str());
    assert!(alerts[1]["message"].as_str().unwrap().contains("42.00"));
    assert_eq!(alerts[1]["created_at"], "2026-01-01T00:01:00.000Z");
    assert!(alerts[1]["id"].as_str().unwrap().starts_with("alt_"));
    assert_eq!(
        alerts[1]["created_at_ms"].as_i64().unwrap() - alerts[0]["created_at_ms"].as_i64().unwrap(),
        60_000
    );
    // The same list as the store's.
    let stored = t.gateway.store().alerts().await.unwrap();
    assert_eq!(
        stored.iter().map(|a| a.id.to_string()).collect::<Vec<_>>(),
        alerts
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );
}
