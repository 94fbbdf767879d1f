//! Refunds end to end: WeChat Pay answers every refund `PROCESSING` and settles it 5 s later
//! (a scheduled event of the mock). Two partial refunds — one settled by its `REFUND.SUCCESS`
//! notification, one (notification lost) by the gateway's refund poll — then a refund past
//! what remains, refused by the gateway before the channel. A refund WeChat Pay reports
//! `ABNORMAL` parks the money in suspense with an alert; one it `CLOSED` releases its
//! reservation. A `REFUND.SUCCESS` reporting another amount must not book the refund as a plain
//! success (fails today: the gateway ignores the notification's `amount.refund`).

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, arm, assert_acknowledged, assert_balances, attempt_lines, balances, channel_refunds,
    create_qr_order, exchange_lines, history, id_of, opened, order, refund, refund_detail, trade,
    verify_ok, Expect, CLEARING, PAYABLE, SUSPENSE,
};
use e2e::wechatpay_sim::{WechatpaySim, MCHID};

/// A paid Native order of `amount`; returns its id.
async fn paid_order(sim: &WechatpaySim, amount: &str) -> String {
    let id = id_of(&create_qr_order(sim, amount).await);
    act(sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(sim, &id).await["state"], "paid");
    id
}

#[tokio::test]
async fn two_partial_refunds_settle_asynchronously_then_an_over_refund_is_refused() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = paid_order(&sim, "100.00").await;
    let transaction_id = trade(&sim, &id).await["trade_no"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first refund: PROCESSING at WeChat Pay, pending at the gateway, amount reserved.
    sim.advance_ms(60_000).await;
    let first = refund(&sim, &id, &json!({"amount": "30.00", "reason": "one item"}))
        .await
        .expect(StatusCode::CREATED);
    let first_id = id_of(&first);
    assert_eq!(first["state"], "pending", "{first}");
    assert_eq!(first["channel_refund_no"], json!(null));
    let at_channel = channel_refunds(&sim).await;
    assert_eq!(at_channel.len(), 1);
    assert_eq!(at_channel[0]["state"], "PROCESSING");
    assert_eq!(at_channel[0]["out_request_no"], first_id.as_str());
    let reserved = order(&sim, &id).await;
    assert_eq!(reserved["state"], "paid");
    assert_eq!(reserved["refund_reserved_amount"], "30.00");
    assert_balances(
        &balances(&sim).await,
        &[(CLEARING, 10000), (PAYABLE, 10000)],
    );

    // 5 s later the mock settles it and notifies REFUND.SUCCESS: booked from the notification.
    sim.advance_ms(5_000).await;
    let first_done = refund_detail(&sim, &first_id).await;
    assert_eq!(first_done["state"], "succeeded", "{first_done}");
    assert_eq!(
        history(&first_done),
        [
            "∅→pending created api",
            "pending→succeeded succeeded notification",
        ]
    );
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_acknowledged(&deliveries[1]);
    let notification = opened(&deliveries[1]);
    assert_eq!(notification.envelope["event_type"], "REFUND.SUCCESS");
    assert_eq!(notification.envelope["resource"]["original_type"], "refund");
    for (field, value) in [
        ("/mchid", json!(MCHID)),
        ("/out_trade_no", json!(id)),
        ("/transaction_id", json!(transaction_id)),
        ("/out_refund_no", json!(first_id)),
        ("/refund_status", json!("SUCCESS")),
        ("/success_time", json!("2026-01-01T08:01:05+08:00")),
        ("/amount/refund", json!(3000)),
        ("/amount/total", json!(10000)),
    ] {
        assert_eq!(
            notification.resource.pointer(field),
            Some(&value),
            "{field}"
        );
    }
    let refund_id_at_channel = notification.resource["refund_id"].as_str().unwrap();
    assert!(
        refund_id_at_channel.starts_with("50") && refund_id_at_channel.len() == 29,
        "a WeChat Pay refund_id: {refund_id_at_channel}"
    );
    assert_eq!(first_done["channel_refund_no"], refund_id_at_channel);
    assert_balances(&balances(&sim).await, &[(CLEARING, 7000), (PAYABLE, 7000)]);
    verify_ok(&sim).await;

    // The second refund's notification is lost: the refund poll (creation + 10 s) settles it.
    sim.advance_ms(55_000).await;
    arm(&sim, "notify", "drop_notification", 1, json!({})).await;
    let second = refund(&sim, &id, &json!({"amount": "50.00"}))
        .await
        .expect(StatusCode::CREATED);
    let second_id = id_of(&second);
    assert_eq!(second["state"], "pending", "{second}");
    // 100 − 30 refunded − 50 reserved: 20.01 is refused while the second is still pending.
    refund(&sim, &id, &json!({"amount": "20.01"}))
        .await
        .expect_error(StatusCode::CONFLICT, "refund_exceeds_refundable");
    sim.advance_ms(5_000).await;
    assert_eq!(
        refund_detail(&sim, &second_id).await["state"],
        "pending",
        "settled at WeChat Pay, but the notification was dropped"
    );
    sim.advance_ms(5_000).await;
    let second_done = refund_detail(&sim, &second_id).await;
    assert_eq!(second_done["state"], "succeeded", "{second_done}");
    assert_eq!(
        history(&second_done)[1..],
        ["pending→succeeded succeeded query"]
    );
    assert_eq!(second_done["updated_at"], crate::support::at(130_000));

    // The notification's retry 15 s after the dropped attempt is a harmless duplicate.
    sim.advance_ms(10_000).await;
    let settled = trade(&sim, &id).await;
    assert_eq!(settled["state"], "REFUND");
    assert_eq!(settled["refunded_amount"], "80.00");
    assert_eq!(
        attempt_lines(&settled),
        [
            "ntf_1 TRANSACTION.SUCCESS #1 +0 204 \"\" accepted=true fault=-",
            "ntf_2 REFUND.SUCCESS #1 +65000 204 \"\" accepted=true fault=-",
            "ntf_3 REFUND.SUCCESS #1 +125000 null \"\" accepted=false fault=drop_notification",
            "ntf_3 REFUND.SUCCESS #2 +140000 204 \"\" accepted=true fault=-",
        ]
    );
    let at_channel: Vec<(String, String, String)> = channel_refunds(&sim)
        .await
        .iter()
        .map(|r| {
            (
                r["out_request_no"].as_str().unwrap().to_owned(),
                r["amount"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        at_channel,
        [
            (first_id.clone(), "30.00".into(), "SUCCESS".into()),
            (second_id.clone(), "50.00".into(), "SUCCESS".into()),
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
            format!("paid→partially_refunded refund:{first_id} notification"),
            format!("partially_refunded→partially_refunded refund:{second_id} query"),
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    let report = verify_ok(&sim).await;
    assert_eq!(
        (report["entries"].as_i64(), report["refunds"].as_i64()),
        (Some(3), Some(2))
    );

    // 20.00 remain: 30.00 is refused with 409 by the gateway, and WeChat Pay is not asked.
    let calls_before = exchange_lines(&sim).await;
    assert_eq!(
        calls_before,
        [
            "+0 pay.transactions.native 200",
            "+60000 refund.domestic.refunds 200",
            "+120000 refund.domestic.refunds 200",
            "+130000 refund.domestic.refunds.query 200",
        ]
    );
    let over = refund(&sim, &id, &json!({"amount": "30.00"})).await;
    let body = over.expect_error(StatusCode::CONFLICT, "refund_exceeds_refundable");
    assert_eq!(body["field"], "amount", "{body}");
    assert_eq!(exchange_lines(&sim).await, calls_before);
    assert_eq!(channel_refunds(&sim).await.len(), 2);
    let after = order(&sim, &id).await;
    assert_eq!(after["refunded_amount"], "80.00");
    assert_eq!(after["refund_reserved_amount"], "0.00");
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;
}

/// `refund_abnormal`: WeChat Pay reports the refund ABNORMAL (the buyer's account cannot take
/// it). The gateway parks the money in suspense and raises an alert; the ledger verifies.
/// `refund_closed`: the refund is CLOSED; its reservation is released and the amount is
/// refundable again.
#[tokio::test]
async fn an_abnormal_refund_goes_to_suspense_and_a_closed_one_releases_its_reservation() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = paid_order(&sim, "10.00").await;

    arm(&sim, "refund", "refund_abnormal", 1, json!({})).await;
    let abnormal = refund(&sim, &id, &json!({"amount": "4.00"}))
        .await
        .expect(StatusCode::CREATED);
    let abnormal_id = id_of(&abnormal);
    assert_eq!(abnormal["state"], "pending", "{abnormal}");
    sim.advance_ms(5_000).await;

    let parked = refund_detail(&sim, &abnormal_id).await;
    assert_eq!(parked["state"], "abnormal", "{parked}");
    assert_eq!(
        history(&parked),
        [
            "∅→pending created api",
            "pending→abnormal abnormal notification",
        ]
    );
    let notification = opened(sim.deliveries().last().unwrap());
    assert_eq!(notification.envelope["event_type"], "REFUND.ABNORMAL");
    assert_eq!(notification.resource["refund_status"], "ABNORMAL");
    assert_acknowledged(sim.deliveries().last().unwrap());
    let alerts = sim.gateway.store().alerts().await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "refund_abnormal");
    assert_eq!(alerts[0].subject_id, abnormal_id);
    assert_balances(
        &balances(&sim).await,
        &[(CLEARING, 1000), (PAYABLE, 600), (SUSPENSE, 400)],
    );
    verify_ok(&sim).await;
    let detail = order(&sim, &id).await;
    assert_eq!(detail["state"], "paid", "{detail}");
    assert_eq!(detail["refunded_amount"], "0.00");
    assert_eq!(
        detail["refund_reserved_amount"], "4.00",
        "still held against the order"
    );

    // The refund poll at +10 s finds nothing pending and does not ask WeChat Pay.
    sim.advance_ms(60_000).await;
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+0 refund.domestic.refunds 200",
        ]
    );

    // A refund WeChat Pay closes: failed, its reservation released, no entry.
    arm(&sim, "refund", "refund_closed", 1, json!({})).await;
    let closed = refund(&sim, &id, &json!({"amount": "3.00"}))
        .await
        .expect(StatusCode::CREATED);
    let closed_id = id_of(&closed);
    assert_eq!(closed["state"], "pending");
    assert_eq!(order(&sim, &id).await["refund_reserved_amount"], "7.00");
    sim.advance_ms(5_000).await;
    let failed = refund_detail(&sim, &closed_id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(
        history(&failed)[1..],
        ["pending→failed failed notification"]
    );
    assert_eq!(
        opened(sim.deliveries().last().unwrap()).envelope["event_type"],
        "REFUND.CLOSED"
    );
    let released = order(&sim, &id).await;
    assert_eq!(released["refund_reserved_amount"], "4.00", "3.00 released");
    assert_eq!(released["state"], "paid");
    assert_balances(
        &balances(&sim).await,
        &[(CLEARING, 1000), (PAYABLE, 600), (SUSPENSE, 400)],
    );
    verify_ok(&sim).await;

    let states: Vec<(String, String)> = channel_refunds(&sim)
        .await
        .iter()
        .map(|r| {
            (
                r["out_request_no"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (abnormal_id.clone(), "ABNORMAL".to_owned()),
            (closed_id.clone(), "CLOSED".to_owned()),
        ]
    );

    // What remains (the abnormal 4.00 still counts against the order) is refundable, exactly.
    refund(&sim, &id, &json!({"amount": "6.01"}))
        .await
        .expect_error(StatusCode::CONFLICT, "refund_exceeds_refundable");
    let rest = refund(&sim, &id, &json!({"amount": "6.00"}))
        .await
        .expect(StatusCode::CREATED);
    sim.advance_ms(5_000).await;
    assert_eq!(
        refund_detail(&sim, &id_of(&rest)).await["state"],
        "succeeded"
    );
    // The channel paid out 6.00; the abnormal 4.00 waits in suspense (and in clearing) for an
    // operator.
    assert_balances(&balances(&sim).await, &[(CLEARING, 400), (SUSPENSE, 400)]);
    let done = order(&sim, &id).await;
    assert_eq!(done["state"], "partially_refunded", "{done}");
    assert_eq!(done["refunded_amount"], "6.00");
    assert_eq!(done["refund_reserved_amount"], "4.00");
    let report = verify_ok(&sim).await;
    assert_eq!(report["refunds"], 3, "{report}");
}

/// A `REFUND.SUCCESS` whose resource reports another refunded amount (re-encrypted and signed
/// again: WeChat Pay itself seems to say 0.01 was refunded for a refund of 30.00). The report is
/// not taken on its word — neither booked as the refund's success nor parked: the gateway asks
/// the channel (refund query) and applies its answer, here the 30.00 actually refunded. (An
/// answer that itself reports another amount is `Abnormal`: parked in suspense with an alert —
/// the adapter's rule for refund and refund-query answers.)
#[tokio::test]
async fn a_refund_notification_with_another_amount_is_confirmed_by_a_query() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = paid_order(&sim, "100.00").await;
    arm(
        &sim,
        "notify",
        "tampered_notification_amount",
        1,
        json!({"amount": 1, "resign": true}),
    )
    .await;
    let requested = refund(&sim, &id, &json!({"amount": "30.00"}))
        .await
        .expect(StatusCode::CREATED);
    let refund_id = id_of(&requested);
    sim.advance_ms(5_000).await;

    let delivery = sim.deliveries().last().unwrap().clone();
    let notification = opened(&delivery);
    assert_eq!(notification.envelope["event_type"], "REFUND.SUCCESS");
    assert_eq!(notification.resource["out_refund_no"], refund_id.as_str());
    assert_eq!(
        notification.resource["amount"]["refund"], 1,
        "the channel reports 0.01 refunded"
    );

    // The gateway asked the channel about the refund after the mismatched report …
    let exchanges = sim
        .control_get("/_paysim/wechatpay/exchanges")
        .await
        .unwrap()
        .json()
        .unwrap();
    let apis: Vec<&str> = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["api"].as_str())
        .collect();
    let query_at = apis
        .iter()
        .rposition(|api| *api == "refund.domestic.refunds.query")
        .expect("a refund query after the mismatched report");
    let create_at = apis
        .iter()
        .rposition(|api| *api == "refund.domestic.refunds")
        .unwrap();
    assert!(query_at > create_at, "{apis:?}");

    // … and booked what the channel answered: 30.00 refunded, never 0.01, nothing parked.
    let detail = refund_detail(&sim, &refund_id).await;
    assert_eq!(detail["state"], "succeeded", "{detail}");
    assert_eq!(detail["amount"], "30.00", "{detail}");
    let alerts = sim.gateway.store().alerts().await.unwrap();
    assert!(
        alerts.iter().all(|alert| alert.subject_id != refund_id),
        "nothing to alert an operator about: {alerts:?}"
    );
    assert_balances(
        &balances(&sim).await,
        &[(CLEARING, 7000), (PAYABLE, 7000), (SUSPENSE, 0)],
    );
    verify_ok(&sim).await;
}
