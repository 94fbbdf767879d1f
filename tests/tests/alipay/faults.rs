//! Protocol faults of the mock gateway against the real adapter, which fails closed: a forged
//! notification is refused (and the poll's query settles the order); a precreate answer with a
//! bad signature is never trusted, so the order gets no QR code.

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, arm, assert_balances, at, attempt_lines, balances, create_order_with, create_qr_order,
    exchange_lines, history, id_of, order, qr_body, trade, verify_ok, Expect, CLEARING, PAYABLE,
};
use e2e::alipay_sim::AlipaySim;

#[tokio::test]
async fn a_forged_notification_is_refused_and_the_poll_settles_the_order() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "20.00").await);
    arm(&sim, "notify", "forged_notification", 1, json!({})).await;

    sim.advance_ms(1_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;

    // Refused in Alipay's dialect, so the mock will re-send; nothing trusted, nothing booked.
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].status, &deliveries[0].reply[..]),
        (StatusCode::OK, &b"failure"[..])
    );
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert_balances(&balances(&sim).await, &[]);
    let pending = trade(&sim, &id).await;
    assert_eq!(
        attempt_lines(&pending),
        ["ntf_1 payment #1 +1000 200 \"failure\" accepted=false fault=forged_notification"]
    );
    assert_eq!(pending["notifications"][0]["state"], "pending");
    assert_eq!(
        pending["notifications"][0]["next_attempt_at"],
        at(1_000 + 4 * 60_000)
    );

    // The first poll (creation + 5 s) asks the channel and books the payment.
    sim.advance_ms(4_000).await;
    let settled = order(&sim, &id).await;
    assert_eq!(settled["state"], "paid", "{settled}");
    assert_eq!(settled["paid_at"], at(1_000));
    assert_eq!(
        history(&settled),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→paid payment query",
        ]
    );
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 alipay.trade.precreate 10000",
            "+5000 alipay.trade.query 10000",
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;

    // The genuine re-send is acknowledged as a duplicate.
    sim.advance_ms(4 * 60_000).await;
    let acknowledged = trade(&sim, &id).await;
    assert_eq!(
        attempt_lines(&acknowledged),
        [
            "ntf_1 payment #1 +1000 200 \"failure\" accepted=false fault=forged_notification",
            "ntf_1 payment #2 +241000 200 \"success\" accepted=true fault=-",
        ]
    );
    assert_eq!(acknowledged["notifications"][0]["state"], "acknowledged");
    assert_eq!(order(&sim, &id).await, settled);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

#[tokio::test]
async fn a_precreate_answer_with_a_bad_signature_is_not_trusted() {
    let sim = AlipaySim::new().await.unwrap();
    arm(
        &sim,
        "alipay.trade.precreate",
        "bad_response_signature",
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

    // Fail closed: the QR code in the unverifiable answer is never handed out.
    let detail = order(&sim, &id).await;
    assert_eq!(detail["state"], "created", "{detail}");
    assert_eq!(detail["buyer_action"], json!(null));
    assert_eq!(history(&detail), ["∅→created created api"]);
    // The mock did process the request (the fault only spoils the signature).
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 alipay.trade.precreate 10000 fault=bad_response_signature"]
    );
    assert_eq!(trade(&sim, &id).await["state"], "AWAITING_SCAN");
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;

    // The order never becomes payable through the gateway and closes at its expiry.
    sim.advance_ms(30 * 60_000).await;
    let expired = order(&sim, &id).await;
    assert_eq!(expired["state"], "closed", "{expired}");
    assert_eq!(expired["buyer_action"], json!(null));
    assert_eq!(
        history(&expired),
        ["∅→created created api", "created→closed closed expiry"]
    );
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}

/// A notification whose amount was changed and signed again (the channel itself reports another
/// amount): never captured at that amount; the poll's query books the true amount.
#[tokio::test]
async fn a_notification_with_another_amount_is_never_captured() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "20.00").await);
    arm(
        &sim,
        "notify",
        "tampered_notification_amount",
        1,
        json!({"amount": "0.01", "resign": true}),
    )
    .await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;

    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].field("total_amount").as_deref(), Some("0.01"));
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert_balances(&balances(&sim).await, &[]);

    sim.advance_ms(5_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["amount"], "20.00");
    assert_eq!(history(&paid)[2..], ["paying→paid payment query"]);
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;
    // Fail closed: the tampered attempt is refused (`failure`), so the channel re-sends; the
    // genuine re-send 4 minutes later is acknowledged and changes nothing.
    let lines = attempt_lines(&trade(&sim, &id).await);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\"failure\" accepted=false"), "{lines:?}");
    assert!(
        lines[0].ends_with("fault=tampered_notification_amount"),
        "{lines:?}"
    );
    sim.advance_ms(4 * 60_000).await;
    let lines = attempt_lines(&trade(&sim, &id).await);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("\"success\" accepted=true"), "{lines:?}");
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;
}
