//! Payments end to end: a QR (precreate) order paid by the buyer at the mock gateway and
//! settled by its signed notification; the same notification five times over; a barcode payment
//! waiting for the buyer's confirmation (10003) settled by the gateway's poll.

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, arm, assert_balances, at, attempt_lines, balances, create_order_with, create_qr_order,
    exchange_lines, history, id_of, order, trade, verify_ok, Expect, CLEARING, PAYABLE,
};
use e2e::alipay_sim::{AlipaySim, APP_ID, SELLER_ID};

#[tokio::test]
async fn qr_order_is_paid_by_the_mock_gateways_notification() {
    let sim = AlipaySim::new().await.unwrap();
    let created = create_qr_order(&sim, "88.88").await;
    let id = id_of(&created);
    assert_eq!(created["amount_minor"], 8888);
    assert_eq!(created["channel_trade_no"], json!(null));
    assert_eq!(created["expires_at"], at(30 * 60_000));

    // The mock gateway holds a QR code nobody has scanned: not a trade at Alipay yet.
    let qr = trade(&sim, &id).await;
    assert_eq!(qr["state"], "AWAITING_SCAN");
    assert_eq!(qr["exists_at_channel"], false);
    assert_eq!(qr["product"], "precreate");
    assert_eq!(qr["app_id"], APP_ID);
    assert_eq!(qr["merchant_id"], SELLER_ID);
    assert_eq!(qr["amount"], "88.88");
    assert_eq!(
        qr["expires_at"],
        at(30 * 60_000),
        "the QR code lapses at the order's time_expire"
    );
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 alipay.trade.precreate 10000"]
    );

    // The buyer scans and pays a second later; the notification goes out when time is driven.
    sim.advance_ms(1_000).await;
    let paid_trade = act(&sim, &id, "pay").await;
    assert_eq!(paid_trade["state"], "TRADE_SUCCESS");
    assert_eq!(paid_trade["notifications"][0]["state"], "pending");
    assert_eq!(order(&sim, &id).await["state"], "paying");
    sim.run_due().await;

    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    let trade_no = paid_trade["trade_no"].as_str().unwrap();
    assert_eq!(trade_no.len(), 28, "an Alipay trade number: {trade_no}");
    assert_eq!(paid["channel_trade_no"], trade_no);
    assert_eq!(
        paid["paid_at"],
        at(1_000),
        "gmt_payment of the notification"
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

    // What crossed the wire: one signed trade_status_sync, acknowledged with `success`.
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(
        (delivery.path.as_str(), delivery.status, &delivery.reply[..]),
        ("/notify/alipay", StatusCode::OK, &b"success"[..])
    );
    for (field, value) in [
        ("notify_type", "trade_status_sync"),
        ("trade_status", "TRADE_SUCCESS"),
        ("out_trade_no", id.as_str()),
        ("trade_no", trade_no),
        ("total_amount", "88.88"),
        ("app_id", APP_ID),
        ("seller_id", SELLER_ID),
        ("sign_type", "RSA2"),
    ] {
        assert_eq!(delivery.field(field).as_deref(), Some(value), "{field}");
    }
    let settled = trade(&sim, &id).await;
    assert_eq!(settled["notifications"][0]["state"], "acknowledged");
    assert_eq!(
        attempt_lines(&settled),
        ["ntf_1 payment #1 +1000 200 \"success\" accepted=true fault=-"]
    );

    // Nothing more happens: the polls find the order paid and do not ask the channel.
    sim.advance_ms(3_600_000).await;
    let later = order(&sim, &id).await;
    assert_eq!(later, paid);
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 alipay.trade.precreate 10000"]
    );
    assert_eq!(sim.deliveries().len(), 1);
    verify_ok(&sim).await;
}

#[tokio::test]
async fn five_copies_of_the_notification_capture_once() {
    let sim = AlipaySim::new().await.unwrap();
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
    let first_body = &deliveries[0].body;
    for delivery in &deliveries {
        assert_eq!(&delivery.body, first_body, "byte-identical copies");
        assert_eq!(&delivery.reply[..], b"success", "each copy is acknowledged");
    }
    let settled = trade(&sim, &id).await;
    assert_eq!(settled["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(settled["notifications"][0]["state"], "acknowledged");
    assert_eq!(
        attempt_lines(&settled),
        vec!["ntf_1 payment #1 +0 200 \"success\" accepted=true fault=duplicate_notification"; 5]
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
}

/// `auth_code` ending in 0003: the mock answers 10003 and waits for the buyer's confirmation.
/// The confirmation's notification is lost; the gateway's poll settles the order, and the
/// notification's retry four minutes later is a harmless duplicate.
#[tokio::test]
async fn barcode_waiting_for_the_buyer_is_settled_by_the_poll() {
    let sim = AlipaySim::new().await.unwrap();
    let created = create_order_with(
        &sim,
        &json!({
            "channel": "alipay",
            "method": "barcode",
            "method_params": {"auth_code": "2800000000000003"},
            "amount": "12.00",
            "subject": "barcode e2e",
        }),
    )
    .await
    .expect(StatusCode::CREATED);
    let id = id_of(&created);
    assert_eq!(created["state"], "paying", "10003 leaves the payment open");
    let waiting = trade(&sim, &id).await;
    assert_eq!(waiting["product"], "barcode");
    assert_eq!(waiting["state"], "WAIT_BUYER_PAY");
    assert_eq!(
        created["buyer_action"],
        json!({"type": "barcode", "trade_no": waiting["trade_no"]})
    );
    assert_eq!(exchange_lines(&sim).await, ["+0 alipay.trade.pay 10003"]);

    // The first poll finds the buyer still deciding.
    sim.advance_ms(5_000).await;
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert_eq!(
        exchange_lines(&sim).await[1..],
        ["+5000 alipay.trade.query 10000"]
    );

    // The buyer confirms at +7 s; the notification of it is lost.
    arm(&sim, "notify", "drop_notification", 1, json!({})).await;
    sim.advance_ms(2_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(&sim, &id).await["state"], "paying");
    assert!(sim.deliveries().is_empty());

    // The next poll (well within 20 s) finds the payment.
    sim.advance_ms(13_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["channel_trade_no"], waiting["trade_no"]);
    assert_eq!(paid["paid_at"], at(7_000), "send_pay_date of the query");
    assert_eq!(
        history(&paid),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→paid payment query",
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 1200), (PAYABLE, 1200)]);
    verify_ok(&sim).await;

    // The mock re-sends 4 minutes after the lost attempt: acknowledged, nothing changes.
    sim.advance_ms(4 * 60_000).await;
    let settled = trade(&sim, &id).await;
    assert_eq!(
        attempt_lines(&settled),
        [
            "ntf_1 payment #1 +7000 null \"\" accepted=false fault=drop_notification",
            "ntf_1 payment #2 +247000 200 \"success\" accepted=true fault=-",
        ]
    );
    assert_eq!(order(&sim, &id).await, paid);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// The buyer never confirms a barcode payment: after the last barcode query the gateway cancels
/// it at the channel (`alipay.trade.cancel`, `action=close`) instead of waiting for expiry.
#[tokio::test]
async fn barcode_never_confirmed_is_cancelled_after_the_last_query() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(
        &create_order_with(
            &sim,
            &json!({
                "channel": "alipay",
                "method": "barcode",
                "method_params": {"auth_code": "2800000000000003"},
                "amount": "12.00",
                "subject": "barcode e2e",
            }),
        )
        .await
        .expect(StatusCode::CREATED),
    );
    sim.advance_ms(60_000).await;

    let cancelled = order(&sim, &id).await;
    assert_eq!(cancelled["state"], "closed", "{cancelled}");
    assert_eq!(
        history(&cancelled)[2..],
        ["paying→closed closed barcode_timeout"]
    );
    assert_eq!(cancelled["history"][2]["at"], at(25_000));
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 alipay.trade.pay 10003",
            "+5000 alipay.trade.query 10000",
            "+10000 alipay.trade.query 10000",
            "+15000 alipay.trade.query 10000",
            "+20000 alipay.trade.query 10000",
            "+25000 alipay.trade.query 10000",
            "+25000 alipay.trade.cancel 10000",
        ]
    );
    let at_channel = trade(&sim, &id).await;
    assert_eq!(at_channel["state"], "TRADE_CLOSED");
    assert_eq!(at_channel["closed_at"], cancelled["history"][2]["at"]);
    sim.buyer_action(&id, "pay")
        .await
        .unwrap()
        .expect_error(StatusCode::CONFLICT, "invalid_action");
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}
