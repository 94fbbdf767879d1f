//! Payments end to end: a Native (QR) order paid by the buyer at the mock and settled by its
//! signed, AES-256-GCM-encrypted `TRANSACTION.SUCCESS` notification; the same notification five
//! times over, booked once.

use serde_json::json;

use crate::support::{
    act, arm, assert_acknowledged, assert_balances, at, attempt_lines, balances, create_qr_order,
    exchange_lines, history, id_of, opened, order, trade, verify_ok, CLEARING, PAYABLE,
};
use e2e::wechatpay_sim::{WechatpaySim, APPID, MCHID};

#[tokio::test]
async fn native_order_is_paid_by_the_encrypted_notification() {
    let sim = WechatpaySim::new().await.unwrap();
    let created = create_qr_order(&sim, "88.88").await;
    let id = id_of(&created);
    assert_eq!(created["amount_minor"], 8888);
    assert_eq!(created["channel_trade_no"], json!(null));
    assert_eq!(created["expires_at"], at(30 * 60_000));

    // Prepay creates the order at WeChat Pay: NOTPAY until the buyer pays.
    let unpaid = trade(&sim, &id).await;
    assert_eq!(unpaid["state"], "NOTPAY");
    assert_eq!(unpaid["exists_at_channel"], true);
    assert_eq!(unpaid["product"], "native");
    assert_eq!(unpaid["app_id"], APPID);
    assert_eq!(unpaid["merchant_id"], MCHID);
    assert_eq!(unpaid["amount"], "88.88");
    assert_eq!(unpaid["trade_no"], json!(null));
    assert_eq!(
        unpaid["expires_at"],
        at(30 * 60_000),
        "time_expire is the order's expiry"
    );
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 pay.transactions.native 200"]
    );

    // The buyer scans (nothing changes) and pays a second later; the notification goes out
    // when time is driven.
    assert_eq!(act(&sim, &id, "scan").await["state"], "NOTPAY");
    sim.advance_ms(1_000).await;
    let paid_trade = act(&sim, &id, "pay").await;
    assert_eq!(paid_trade["state"], "SUCCESS");
    assert_eq!(paid_trade["notifications"][0]["state"], "pending");
    assert_eq!(order(&sim, &id).await["state"], "paying");
    sim.run_due().await;

    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    let transaction_id = paid_trade["trade_no"].as_str().unwrap();
    assert_eq!(
        transaction_id.len(),
        28,
        "a transaction_id: {transaction_id}"
    );
    assert!(transaction_id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(paid["channel_trade_no"], transaction_id);
    assert_eq!(
        paid["paid_at"],
        at(1_000),
        "success_time of the notification"
    );
    assert_eq!(
        history(&paid),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→paid payment notification",
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 8888), (PAYABLE, 8888)]);
    let report = verify_ok(&sim).await;
    assert_eq!(
        (report["orders"].as_i64(), report["entries"].as_i64()),
        (Some(1), Some(1))
    );

    // What crossed the wire: one signed envelope whose resource opens with the APIv3 key,
    // acknowledged with 204.
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_acknowledged(&deliveries[0]);
    let notification = opened(&deliveries[0]);
    let envelope = &notification.envelope;
    assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(envelope["resource_type"], "encrypt-resource");
    assert_eq!(envelope["resource"]["original_type"], "transaction");
    assert_eq!(envelope["resource"]["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(envelope["resource"]["associated_data"], "transaction");
    assert_eq!(envelope["create_time"], "2026-01-01T08:00:01+08:00");
    let transaction = &notification.resource;
    for (field, value) in [
        ("/mchid", json!(MCHID)),
        ("/appid", json!(APPID)),
        ("/out_trade_no", json!(id)),
        ("/transaction_id", json!(transaction_id)),
        ("/trade_state", json!("SUCCESS")),
        ("/trade_type", json!("NATIVE")),
        ("/success_time", json!("2026-01-01T08:00:01+08:00")),
        ("/amount/total", json!(8888)),
        ("/amount/currency", json!("CNY")),
    ] {
        assert_eq!(transaction.pointer(field), Some(&value), "{field}");
    }
    let settled = trade(&sim, &id).await;
    assert_eq!(settled["notifications"][0]["state"], "acknowledged");
    assert_eq!(settled["notifications"][0]["notify_id"], envelope["id"]);
    assert_eq!(
        attempt_lines(&settled),
        ["ntf_1 TRANSACTION.SUCCESS #1 +1000 204 \"\" accepted=true fault=-"]
    );

    // Nothing more happens: the polls find the order paid and do not ask the channel.
    sim.advance_ms(3_600_000).await;
    assert_eq!(order(&sim, &id).await, paid);
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 pay.transactions.native 200"]
    );
    assert_eq!(sim.deliveries().len(), 1);
    verify_ok(&sim).await;
}

#[tokio::test]
async fn five_copies_of_the_notification_capture_once() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "50.00").await);
    arm(
        &sim,
        "notify",
        "duplicate_notification",
        1,
        json!({"copies": 5}),
    )
    .await;

    act(&sim, &id, "pay").await;
    sim.run_due().await;

    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 5, "five copies reached the gateway");
    for delivery in &deliveries {
        assert_eq!(delivery.body, deliveries[0].body, "byte-identical copies");
        for header in [
            "wechatpay-timestamp",
            "wechatpay-nonce",
            "wechatpay-signature",
        ] {
            assert_eq!(
                delivery.header(header),
                deliveries[0].header(header),
                "identically signed: {header}"
            );
        }
        assert_acknowledged(delivery);
    }
    let settled = trade(&sim, &id).await;
    assert_eq!(settled["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(settled["notifications"][0]["state"], "acknowledged");
    assert_eq!(
        attempt_lines(&settled),
        vec![
            "ntf_1 TRANSACTION.SUCCESS #1 +0 204 \"\" accepted=true fault=duplicate_notification";
            5
        ]
    );

    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid");
    let payments = history(&paid)
        .into_iter()
        .filter(|line| line.contains(" payment "))
        .count();
    assert_eq!(payments, 1, "one payment row: {:?}", history(&paid));
    assert_balances(&balances(&sim).await, &[(CLEARING, 5000), (PAYABLE, 5000)]);
    assert_eq!(
        verify_ok(&sim).await["entries"],
        1,
        "exactly one capture entry"
    );
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 pay.transactions.native 200"]
    );
}
