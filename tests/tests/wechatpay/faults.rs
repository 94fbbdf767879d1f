//! Protocol faults of the mock against the real adapter, which fails closed: a forged
//! notification is refused and a query answer carrying a `WECHATPAY/SIGNTEST/…` signature is
//! never trusted, so the order waits for a later genuine answer; a prepay answer that does not
//! verify yields no code URL; a notification whose amount was changed is never captured.

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, arm, assert_acknowledged, assert_balances, assert_refused, at, attempt_lines, balances,
    create_order_with, create_qr_order, exchange_lines, history, id_of, opened, order, qr_body,
    trade, verify_ok, Expect, CLEARING, PAYABLE, QUERY, REFUND,
};
use e2e::wechatpay_sim::WechatpaySim;

#[tokio::test]
async fn a_forged_notification_and_a_signtest_answer_are_refused_until_a_genuine_answer() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "20.00").await);
    arm(&sim, "notify", "forged_notification", 2, json!({})).await;
    arm(&sim, QUERY, "signtest_response", 1, json!({})).await;

    sim.advance_ms(1_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;

    // The forged notification decrypts fine (the resource is genuine) but its signature is not
    // WeChat Pay's: refused with 500, so the mock will re-send; nothing trusted or booked.
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_refused(&deliveries[0]);
    assert_eq!(
        opened(&deliveries[0]).resource["trade_state"],
        "SUCCESS",
        "the refusal is about the signature, not the content"
    );
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert_balances(&balances(&sim).await, &[]);
    let pending = trade(&sim, &id).await;
    assert_eq!(
        attempt_lines(&pending),
        [format!(
            "ntf_1 TRANSACTION.SUCCESS #1 +1000 500 {:?} accepted=false fault=forged_notification",
            crate::support::REFUSAL
        )]
    );
    assert_eq!(
        pending["notifications"][0]["next_attempt_at"],
        at(16_000),
        "re-sent 15 s later"
    );

    // The first poll (+5 s) gets the truth (SUCCESS) under a signature-test signature: not
    // trusted, the order stays paying.
    sim.advance_ms(4_000).await;
    let still = order(&sim, &id).await;
    assert_eq!(still["state"], "paying", "{still}");
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;

    // The re-send (+16 s) is forged too: refused again.
    sim.advance_ms(11_000).await;
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_refused(&deliveries[1]);
    assert_eq!(order(&sim, &id).await["state"], "paying");

    // The second poll (+30 s) gets a genuine answer and books the payment.
    sim.advance_ms(14_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["paid_at"], at(1_000));
    assert_eq!(
        history(&paid),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→paid payment query",
        ]
    );
    assert_eq!(paid["history"][2]["at"], at(30_000));
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+5000 pay.transactions.out-trade-no 200 fault=signtest_response",
            "+30000 pay.transactions.out-trade-no 200",
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;

    // The genuine re-send at +31 s is acknowledged as a duplicate; nothing changes.
    sim.advance_ms(1_000).await;
    let acknowledged = trade(&sim, &id).await;
    assert_eq!(acknowledged["notifications"][0]["state"], "acknowledged");
    assert_eq!(
        attempt_lines(&acknowledged)[2..],
        ["ntf_1 TRANSACTION.SUCCESS #3 +31000 204 \"\" accepted=true fault=-"]
    );
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert_acknowledged(&deliveries[2]);
    assert_eq!(deliveries[2].body, deliveries[0].body, "the same envelope");
    assert_eq!(order(&sim, &id).await, paid);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// A Native prepay answered under a signature-test signature: the code URL in it is never
/// handed out; the order never becomes payable through the gateway and closes at expiry.
#[tokio::test]
async fn a_prepay_answer_with_a_signtest_signature_is_not_trusted() {
    let sim = WechatpaySim::new().await.unwrap();
    arm(
        &sim,
        "pay.transactions.native",
        "signtest_response",
        1,
        json!({}),
    )
    .await;

    let reply = create_order_with(&sim, &qr_body("30.00")).await;
    let body = reply.expect_error(StatusCode::BAD_GATEWAY, "channel_unavailable");
    let id = body["order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the error names the stored order: {body}"))
        .to_owned();
    let detail = order(&sim, &id).await;
    assert_eq!(detail["state"], "created", "{detail}");
    assert_eq!(detail["buyer_action"], json!(null));
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 pay.transactions.native 200 fault=signtest_response"]
    );
    assert_eq!(
        trade(&sim, &id).await["state"],
        "NOTPAY",
        "the mock did create the order"
    );
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;

    // The first poll finds the order at WeChat Pay (NOTPAY, under a genuine signature): the
    // channel has accepted it, but the code URL of the untrusted answer is still never shown.
    sim.advance_ms(5_000).await;
    let accepted = order(&sim, &id).await;
    assert_eq!(accepted["state"], "paying", "{accepted}");
    assert_eq!(accepted["buyer_action"], json!(null));

    sim.advance_ms(30 * 60_000 - 5_000).await;
    let expired = order(&sim, &id).await;
    assert_eq!(expired["state"], "closed", "{expired}");
    assert_eq!(expired["buyer_action"], json!(null));
    assert_eq!(
        history(&expired),
        [
            "∅→created created api",
            "created→paying accepted query",
            "paying→closed closed expiry",
        ]
    );
    let at_channel = trade(&sim, &id).await;
    assert_eq!(at_channel["state"], "CLOSED", "closed at the channel too");
    assert_eq!(at_channel["closed_at"], at(30 * 60_000));
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}

/// A notification whose resource was re-encrypted with another amount and signed again: the
/// channel itself seems to report 0.01 paid. Never captured at that amount (refused, alert);
/// the poll's query books the true amount.
#[tokio::test]
async fn a_notification_with_another_amount_is_never_captured() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "20.00").await);
    arm(
        &sim,
        "notify",
        "tampered_notification_amount",
        1,
        json!({"amount": 1, "resign": true}),
    )
    .await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;

    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(opened(&deliveries[0]).resource["amount"]["total"], 1);
    assert_refused(&deliveries[0]);
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert_balances(&balances(&sim).await, &[]);
    let alerts = sim.gateway.store().alerts().await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "amount_mismatch");
    assert_eq!(alerts[0].subject_id, id);

    sim.advance_ms(5_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["amount"], "20.00");
    assert_eq!(history(&paid)[2..], ["paying→paid payment query"]);
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;

    // The genuine re-send 15 s after the first attempt is acknowledged and changes nothing.
    sim.advance_ms(10_000).await;
    let lines = attempt_lines(&trade(&sim, &id).await);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with("accepted=false fault=tampered_notification_amount"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "ntf_1 TRANSACTION.SUCCESS #2 +15000 204 \"\" accepted=true fault=-"
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// A refund answer under a signature-test signature: WeChat Pay did take the refund, but the
/// gateway cannot trust the answer. The refund stays pending with its reservation (502 with
/// the order id), and the `REFUND.SUCCESS` notification settles it.
#[tokio::test]
async fn a_refund_answer_with_a_signtest_signature_leaves_the_refund_pending() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "10.00").await);
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    arm(&sim, REFUND, "signtest_response", 1, json!({})).await;

    let reply = crate::support::refund(&sim, &id, &json!({"amount": "4.00"})).await;
    let body = reply.expect_error(StatusCode::BAD_GATEWAY, "channel_unavailable");
    assert_eq!(body["order_id"], id.as_str(), "{body}");
    let reserved = order(&sim, &id).await;
    assert_eq!(reserved["refunds"][0]["state"], "pending", "{reserved}");
    assert_eq!(reserved["refund_reserved_amount"], "4.00");
    assert_balances(&balances(&sim).await, &[(CLEARING, 1000), (PAYABLE, 1000)]);

    sim.advance_ms(5_000).await;
    let settled = order(&sim, &id).await;
    assert_eq!(settled["refunds"][0]["state"], "succeeded", "{settled}");
    assert_eq!(settled["state"], "partially_refunded");
    assert_eq!(settled["refund_reserved_amount"], "0.00");
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+0 refund.domestic.refunds 200 fault=signtest_response",
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 600), (PAYABLE, 600)]);
    assert_eq!(verify_ok(&sim).await["entries"], 2);
}
