//! Closing end to end: the merchant closes an unpaid order (WeChat Pay answers a signed 204);
//! the scheduler closes an expired one at the channel; closing an order the buyer already paid
//! (notification lost) is refused by WeChat Pay, and the gateway books the payment instead.

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, arm, assert_balances, at, balances, close, create_qr_order, exchange_lines, history,
    id_of, order, trade, verify_ok, Expect, CLEARING, PAYABLE,
};
use e2e::wechatpay_sim::WechatpaySim;

#[tokio::test]
async fn closing_an_unpaid_order_closes_it_at_the_channel() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "45.00").await);
    assert_eq!(act(&sim, &id, "scan").await["state"], "NOTPAY");

    sim.advance_ms(1_000).await;
    let closed = close(&sim, &id).await.expect(StatusCode::OK);
    assert_eq!(closed["state"], "closed", "{closed}");
    let detail = order(&sim, &id).await;
    assert_eq!(
        history(&detail),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→closed closed api",
        ]
    );
    let at_channel = trade(&sim, &id).await;
    assert_eq!(at_channel["state"], "CLOSED");
    assert_eq!(at_channel["closed_at"], at(1_000));
    assert_eq!(at_channel["expires_at"], json!(null), "no expiry pending");
    assert_eq!(
        at_channel["notifications"],
        json!([]),
        "basic payments notify only on success"
    );
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+1000 pay.transactions.close 204",
        ]
    );

    // Closing again is a no-op at the gateway (no second call).
    assert_eq!(
        close(&sim, &id).await.expect(StatusCode::OK)["state"],
        "closed"
    );
    assert_eq!(exchange_lines(&sim).await.len(), 2);

    // The buyer can no longer pay; nothing else happens, expiry included.
    sim.buyer_action(&id, "pay")
        .await
        .unwrap()
        .expect_error(StatusCode::CONFLICT, "invalid_action");
    sim.advance_ms(3_600_000).await;
    assert_eq!(order(&sim, &id).await, detail);
    assert_eq!(exchange_lines(&sim).await.len(), 2);
    assert!(sim.deliveries().is_empty());
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}

/// Nobody pays: the gateway polls on its schedule (each NOTPAY), then its expiry job closes the
/// order at WeChat Pay at `expires_at`.
#[tokio::test]
async fn an_expired_order_is_closed_at_the_channel_by_the_scheduler() {
    let sim = WechatpaySim::new().await.unwrap();
    let created = create_qr_order(&sim, "12.34").await;
    let id = id_of(&created);
    assert_eq!(created["expires_at"], at(30 * 60_000));

    sim.advance_ms(30 * 60_000 - 1).await;
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert_eq!(trade(&sim, &id).await["state"], "NOTPAY");
    sim.advance_ms(1).await;

    let expired = order(&sim, &id).await;
    assert_eq!(expired["state"], "closed", "{expired}");
    assert_eq!(history(&expired)[2..], ["paying→closed closed expiry"]);
    assert_eq!(expired["history"][2]["at"], at(30 * 60_000));
    let at_channel = trade(&sim, &id).await;
    assert_eq!(at_channel["state"], "CLOSED");
    assert_eq!(at_channel["closed_at"], at(30 * 60_000));

    // The default schedule: 5 s, 30 s, 2 min, 10 min, 20 min; the close at expiry comes
    // before the poll that would fall at 30 min.
    let polls: Vec<String> = [5, 30, 120, 600, 1200]
        .iter()
        .map(|s| format!("+{} pay.transactions.out-trade-no 200", s * 1000))
        .collect();
    let mut expected = vec!["+0 pay.transactions.native 200".to_owned()];
    expected.extend(polls);
    expected.push("+1800000 pay.transactions.close 204".to_owned());
    assert_eq!(exchange_lines(&sim).await, expected);

    // Closed on both sides: the buyer cannot pay, and nothing more is asked.
    sim.buyer_action(&id, "pay")
        .await
        .unwrap()
        .expect_error(StatusCode::CONFLICT, "invalid_action");
    sim.advance_ms(3_600_000).await;
    assert_eq!(exchange_lines(&sim).await, expected);
    assert_eq!(order(&sim, &id).await, expired);
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}

/// The buyer paid but the notification was lost; the merchant then asks to close. WeChat Pay
/// refuses (`ORDERPAID`), the gateway queries, books the payment and answers 409.
#[tokio::test]
async fn closing_an_order_the_buyer_already_paid_books_the_payment_instead() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "33.00").await);
    arm(&sim, "notify", "drop_notification", 1, json!({})).await;
    sim.advance_ms(2_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(&sim, &id).await["state"], "paying");

    sim.advance_ms(1_000).await;
    close(&sim, &id)
        .await
        .expect_error(StatusCode::CONFLICT, "order_not_closable");
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["paid_at"], at(2_000));
    assert_eq!(history(&paid)[2..], ["paying→paid payment api"]);
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+3000 pay.transactions.close 400 ORDERPAID",
            "+3000 pay.transactions.out-trade-no 200",
        ]
    );
    assert_eq!(trade(&sim, &id).await["state"], "SUCCESS");
    assert_balances(&balances(&sim).await, &[(CLEARING, 3300), (PAYABLE, 3300)]);
    verify_ok(&sim).await;
}
