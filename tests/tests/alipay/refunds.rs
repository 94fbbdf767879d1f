//! Refunds end to end: two partial refunds through the gateway's API, each executed by the mock
//! gateway (`alipay.trade.refund`, `fund_change=Y`) and re-notified with the trade's cumulative
//! `refund_fee`; then a refund past what remains, refused by the gateway before the channel.

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, assert_balances, balances, create_qr_order, exchange_lines, history, id_of, order, refund,
    trade, verify_ok, Expect, CLEARING, PAYABLE,
};
use e2e::alipay_sim::AlipaySim;

#[tokio::test]
async fn two_partial_refunds_then_an_over_refund() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "100.00").await);
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(&sim, &id).await["state"], "paid");
    let trade_no = trade(&sim, &id).await["trade_no"]
        .as_str()
        .unwrap()
        .to_owned();

    sim.advance_ms(60_000).await;
    let first = refund(&sim, &id, &json!({"amount": "30.00", "reason": "one item"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(first["channel_refund_no"], trade_no.as_str());
    sim.run_due().await;
    assert_eq!(trade(&sim, &id).await["refunded_amount"], "30.00");

    sim.advance_ms(60_000).await;
    let second = refund(&sim, &id, &json!({"amount": "50.00"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(second["state"], "succeeded", "{second}");
    sim.run_due().await;

    // The mock gateway executed both, under the gateway's refund ids.
    let at_channel = trade(&sim, &id).await;
    assert_eq!(
        at_channel["state"], "TRADE_SUCCESS",
        "partly refunded stays TRADE_SUCCESS"
    );
    assert_eq!(at_channel["refunded_amount"], "80.00");
    assert_eq!(at_channel["refunded_minor"], 8000);
    let refunds = sim
        .control_get("/_paysim/alipay/refunds")
        .await
        .unwrap()
        .expect(StatusCode::OK);
    let refunds: Vec<(String, String)> = refunds["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "REFUND_SUCCESS");
            assert_eq!(r["out_trade_no"], id.as_str());
            (
                r["out_request_no"].as_str().unwrap().to_owned(),
                r["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refunds,
        [
            (id_of(&first), "30.00".to_owned()),
            (id_of(&second), "50.00".to_owned()),
        ]
    );

    // Each refund was re-notified with the trade's cumulative refund_fee; the gateway
    // recognised the refund by out_biz_no and acknowledged.
    let deliveries = sim.deliveries();
    let refund_notes: Vec<(String, String, String)> = deliveries
        .iter()
        .filter(|d| d.field("refund_fee").is_some())
        .map(|d| {
            assert_eq!(&d.reply[..], b"success");
            assert_eq!(d.field("trade_status").as_deref(), Some("TRADE_SUCCESS"));
            (
                d.field("out_biz_no").unwrap(),
                d.field("refund_fee").unwrap(),
                d.field("total_amount").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refund_notes,
        [
            (id_of(&first), "30.00".into(), "100.00".into()),
            (id_of(&second), "80.00".into(), "100.00".into()),
        ]
    );
    let notifications = at_channel["notifications"].as_array().unwrap();
    let events: Vec<(&str, &str)> = notifications
        .iter()
        .map(|n| (n["event"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("payment", "acknowledged"),
            ("refund", "acknowledged"),
            ("refund", "acknowledged"),
        ]
    );

    let detail = order(&sim, &id).await;
    assert_eq!(detail["state"], "partially_refunded");
    assert_eq!(detail["refunded_amount"], "80.00");
    assert_eq!(detail["refund_reserved_amount"], "0.00");
    assert_eq!(
        history(&detail)[2..],
        [
            "paying→paid payment notification".to_owned(),
            format!("paid→partially_refunded refund:{} refund", id_of(&first)),
            format!(
                "partially_refunded→partially_refunded refund:{} refund",
                id_of(&second)
            ),
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    let report = verify_ok(&sim).await;
    assert_eq!(
        (report["entries"].as_i64(), report["refunds"].as_i64()),
        (Some(3), Some(2))
    );

    // 20.00 remain: 30.00 is refused by the gateway, and the channel is not asked.
    let calls_before = exchange_lines(&sim).await;
    let over = refund(&sim, &id, &json!({"amount": "30.00"})).await;
    let body = over.expect_error(StatusCode::CONFLICT, "refund_exceeds_refundable");
    assert_eq!(body["field"], "amount", "{body}");
    assert_eq!(exchange_lines(&sim).await, calls_before);
    assert_eq!(
        calls_before
            .iter()
            .filter(|line| line.contains("alipay.trade.refund "))
            .count(),
        2
    );
    assert_eq!(trade(&sim, &id).await["refunded_amount"], "80.00");
    let after = order(&sim, &id).await;
    assert_eq!(after["refunded_amount"], "80.00");
    assert_eq!(after["refund_reserved_amount"], "0.00");
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;
}

/// The mock executes a refund but answers "system busy" (outcome unknown): the gateway keeps the
/// refund pending with its reservation, answers 502 with the order id, and settles it from what
/// the channel reports next (the refund's notification, else the refund query).
#[tokio::test]
async fn a_refund_whose_outcome_is_unknown_is_settled_afterwards() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "10.00").await);
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    crate::support::arm(
        &sim,
        "alipay.trade.refund",
        "system_error",
        1,
        json!({"executed": true}),
    )
    .await;

    let reply = refund(&sim, &id, &json!({"amount": "4.00"})).await;
    let body = reply.expect_error(StatusCode::BAD_GATEWAY, "channel_unavailable");
    assert_eq!(body["order_id"], id.as_str(), "{body}");
    let reserved = order(&sim, &id).await;
    assert_eq!(reserved["refund_reserved_amount"], "4.00", "{reserved}");
    assert_eq!(reserved["refunds"][0]["state"], "pending");
    assert_eq!(
        trade(&sim, &id).await["refunded_amount"],
        "4.00",
        "executed"
    );

    // 6.00 remain refundable while 4.00 is reserved: 6.01 is refused.
    refund(&sim, &id, &json!({"amount": "6.01"}))
        .await
        .expect_error(StatusCode::CONFLICT, "refund_exceeds_refundable");

    sim.advance_ms(60_000).await;
    let settled = order(&sim, &id).await;
    assert_eq!(settled["refunds"][0]["state"], "succeeded", "{settled}");
    assert_eq!(settled["state"], "partially_refunded");
    assert_eq!(settled["refunded_amount"], "4.00");
    assert_eq!(settled["refund_reserved_amount"], "0.00");
    assert_balances(&balances(&sim).await, &[(CLEARING, 600), (PAYABLE, 600)]);
    let report = verify_ok(&sim).await;
    assert_eq!(report["entries"], 2, "one capture, one refund");

    // The rest can still be refunded, exactly.
    refund(&sim, &id, &json!({"amount": "6.00"}))
        .await
        .expect(StatusCode::CREATED);
    sim.run_due().await;
    let done = order(&sim, &id).await;
    assert_eq!(done["state"], "refunded");
    let at_channel = trade(&sim, &id).await;
    assert_eq!(at_channel["refunded_amount"], "10.00");
    assert_eq!(at_channel["state"], "TRADE_CLOSED", "fully refunded");
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}
