//! Closing end to end: the merchant closes a scanned, unpaid trade; the buyer pays a QR code the
//! gateway had closed (the mock never knew the trade, so the code stayed payable) and the money
//! goes to suspense; the scheduler closes expired orders at the channel.

use http::StatusCode;
use serde_json::json;

use crate::support::{
    act, assert_balances, at, attempt_lines, balances, close, create_qr_order,
    create_qr_order_with, exchange_lines, history, id_of, order, qr_body, trade, verify_ok, Expect,
    CLEARING, SUSPENSE,
};
use e2e::alipay_sim::{AlipaySim, Options};
use gateway_core::{GatewayConfig, LatePaymentPolicy};

#[tokio::test]
async fn closing_a_scanned_unpaid_trade_closes_it_at_the_channel() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "45.00").await);
    let scanned = act(&sim, &id, "scan").await;
    assert_eq!(scanned["state"], "WAIT_BUYER_PAY");
    assert_eq!(scanned["exists_at_channel"], true);

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
    assert_eq!(at_channel["state"], "TRADE_CLOSED");
    assert_eq!(at_channel["closed_at"], at(1_000));
    assert_eq!(
        at_channel["notifications"],
        json!([]),
        "face-to-face trades do not notify TRADE_CLOSED"
    );
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 alipay.trade.precreate 10000",
            "+1000 alipay.trade.close 10000",
        ]
    );

    // The buyer can no longer pay; nothing else happens, expiry included.
    let refused = sim.buyer_action(&id, "pay").await.unwrap();
    refused.expect_error(StatusCode::CONFLICT, "invalid_action");
    sim.advance_ms(3_600_000).await;
    assert_eq!(order(&sim, &id).await, detail);
    assert_eq!(exchange_lines(&sim).await.len(), 2);
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}

/// Closing a precreated QR code nobody scanned: the mock answers `ACQ.TRADE_NOT_EXIST` (the
/// trade does not exist at Alipay yet), the gateway closes the order, and the code stays
/// payable. The buyer pays it: the order stays closed and the money waits in suspense.
#[tokio::test]
async fn a_payment_after_the_close_is_booked_to_suspense() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "66.00").await);

    sim.advance_ms(1_000).await;
    let closed = close(&sim, &id).await.expect(StatusCode::OK);
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 alipay.trade.precreate 10000",
            "+1000 alipay.trade.close 40004 ACQ.TRADE_NOT_EXIST",
        ]
    );
    assert_eq!(trade(&sim, &id).await["state"], "AWAITING_SCAN");
    let closed_detail = order(&sim, &id).await;

    sim.advance_ms(1_000).await;
    let paid_trade = act(&sim, &id, "pay").await;
    assert_eq!(paid_trade["state"], "TRADE_SUCCESS");
    sim.run_due().await;

    // The order never reopens: same state, same history, no trade number.
    let after = order(&sim, &id).await;
    assert_eq!(after["state"], "closed");
    assert_eq!(after["channel_trade_no"], json!(null));
    assert_eq!(history(&after), history(&closed_detail));
    assert_eq!(
        history(&after),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→closed closed api",
        ]
    );
    // The default policy holds the money: no refund is created.
    assert_eq!(after["refunds"], json!([]));
    // The money the channel holds is booked once, to suspense.
    assert_balances(&balances(&sim).await, &[(CLEARING, 6600), (SUSPENSE, 6600)]);
    let report = verify_ok(&sim).await;
    assert_eq!(report["entries"], 1, "one late_payment entry");
    // The gateway took responsibility for the money, so it acknowledged the notification.
    assert_eq!(
        attempt_lines(&trade(&sim, &id).await),
        ["ntf_1 payment #1 +2000 200 \"success\" accepted=true fault=-"]
    );

    // Expiry does not touch a closed order, and nothing is booked twice.
    sim.advance_ms(3_600_000).await;
    assert_eq!(order(&sim, &id).await["state"], "closed");
    assert_balances(&balances(&sim).await, &[(CLEARING, 6600), (SUSPENSE, 6600)]);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// A simulation whose gateway refunds late payments automatically
/// (`[gateway] late_payment_policy = "refund"`).
async fn refunding_late_payments() -> AlipaySim {
    AlipaySim::build(Options {
        config: GatewayConfig {
            late_payment_policy: LatePaymentPolicy::Refund,
            ..GatewayConfig::default()
        },
        ..Options::default()
    })
    .await
    .unwrap()
}

/// As above under the `refund` policy: the notification of a payment of a closed order is
/// confirmed first (`alipay.trade.query`: still TRADE_SUCCESS), then the late payment is
/// booked to suspense and, in the same
/// transaction, a refund of kind `late_payment` for the whole amount is created; it is sent
/// to the mock at once (`alipay.trade.refund`), which refunds the trade in full
/// (TRADE_CLOSED). Suspense and clearing are back to zero, and the order stays closed with
/// its refund counters untouched.
#[tokio::test]
async fn a_payment_after_the_close_is_refunded_under_the_refund_policy() {
    let sim = refunding_late_payments().await;
    let id = id_of(&create_qr_order(&sim, "66.00").await);
    sim.advance_ms(1_000).await;
    assert_eq!(
        close(&sim, &id).await.expect(StatusCode::OK)["state"],
        "closed"
    );
    let closed_detail = order(&sim, &id).await;

    sim.advance_ms(1_000).await;
    assert_eq!(act(&sim, &id, "pay").await["state"], "TRADE_SUCCESS");
    sim.run_due().await;

    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 alipay.trade.precreate 10000",
            "+1000 alipay.trade.close 40004 ACQ.TRADE_NOT_EXIST",
            "+2000 alipay.trade.query 10000",
            "+2000 alipay.trade.refund 10000",
        ]
    );
    let at_channel = trade(&sim, &id).await;
    assert_eq!(at_channel["state"], "TRADE_CLOSED", "{at_channel}");
    assert_eq!(at_channel["refunded_amount"], "66.00");

    // The order never reopens and its refund counters are for merchant refunds only.
    let after = order(&sim, &id).await;
    assert_eq!(after["state"], "closed");
    assert_eq!(after["channel_trade_no"], json!(null));
    assert_eq!(after["refunded_amount"], "0.00");
    assert_eq!(after["refund_reserved_amount"], "0.00");
    assert_eq!(history(&after), history(&closed_detail));
    // The refund is listed under the order, as the gateway's own.
    let refunds = after["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{after}");
    let late = &refunds[0];
    assert_eq!(late["kind"], "late_payment");
    assert_eq!(late["state"], "succeeded");
    assert_eq!(late["amount"], "66.00");
    assert_eq!(late["reason"], "automatic refund of a payment after close");
    assert_eq!(late["channel_refund_no"], at_channel["trade_no"]);
    let refund_id = id_of(late);
    let detail = sim
        .gateway_get(&format!("/v1/refunds/{refund_id}"))
        .await
        .unwrap()
        .expect(StatusCode::OK);
    assert_eq!(detail["kind"], "late_payment");
    assert_eq!(detail["order_id"], id.as_str());
    assert_eq!(
        history(&detail),
        [
            "∅→pending created notification",
            "pending→succeeded succeeded refund",
        ]
    );

    // In and out of suspense: nothing is left anywhere, nothing touched the merchant.
    assert_balances(&balances(&sim).await, &[]);
    let report = verify_ok(&sim).await;
    assert_eq!(
        (report["entries"].as_i64(), report["refunds"].as_i64()),
        (Some(2), Some(1)),
        "the late payment and its refund"
    );

    // A face-to-face trade refunded in full is TRADE_CLOSED, which F2F trades do not notify:
    // the payment's notification, acknowledged, stays the only one. The one late check after
    // the original expiry (+30 min + 60 s) finds the trade closed and changes nothing; nothing
    // is refunded twice.
    sim.advance_ms(3_600_000).await;
    assert_eq!(
        attempt_lines(&trade(&sim, &id).await),
        ["ntf_1 payment #1 +2000 200 \"success\" accepted=true fault=-"]
    );
    assert_eq!(
        exchange_lines(&sim).await[4..],
        ["+1860000 alipay.trade.query 10000"]
    );
    assert_eq!(order(&sim, &id).await, after);
    assert_balances(&balances(&sim).await, &[]);
    assert_eq!(verify_ok(&sim).await["entries"], 2);
}

/// Under the `refund` policy, the channel refuses the automatic refund: the refund fails, no
/// entry is booked and the money stays in suspense for an operator.
#[tokio::test]
async fn a_refused_automatic_refund_leaves_the_late_payment_in_suspense() {
    let sim = refunding_late_payments().await;
    let id = id_of(&create_qr_order(&sim, "12.00").await);
    sim.advance_ms(1_000).await;
    close(&sim, &id).await.expect(StatusCode::OK);
    crate::support::arm(
        &sim,
        "alipay.trade.refund",
        "error_code",
        1,
        json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SELLER_BALANCE_NOT_ENOUGH", "sub_msg": "卖家余额不足"}),
    )
    .await;
    sim.advance_ms(1_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;

    assert_eq!(
        exchange_lines(&sim).await[2..],
        [
            "+2000 alipay.trade.query 10000",
            "+2000 alipay.trade.refund 40004 ACQ.SELLER_BALANCE_NOT_ENOUGH fault=error_code"
        ]
    );
    let after = order(&sim, &id).await;
    assert_eq!(after["state"], "closed");
    assert_eq!(after["refunds"][0]["kind"], "late_payment");
    assert_eq!(after["refunds"][0]["state"], "failed", "{after}");
    assert_eq!(trade(&sim, &id).await["state"], "TRADE_SUCCESS");
    assert_balances(&balances(&sim).await, &[(CLEARING, 1200), (SUSPENSE, 1200)]);
    let report = verify_ok(&sim).await;
    assert_eq!(report["entries"], 1, "the late payment only");

    // Nothing retries a failed refund behind the operator's back: the late check after the
    // original expiry finds the payment again, which is booked already and refunds nothing.
    sim.advance_ms(3_600_000).await;
    assert_eq!(order(&sim, &id).await, after);
    assert_eq!(
        exchange_lines(&sim).await[4..],
        ["+1860000 alipay.trade.query 10000"]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 1200), (SUSPENSE, 1200)]);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// Two orders expire at +10 min: one scanned (a trade at Alipay), one not. The scheduler
/// closes both at the channel at their expiry.
#[tokio::test]
async fn expired_orders_are_closed_at_the_channel_by_the_scheduler() {
    let sim = AlipaySim::new().await.unwrap();
    let mut body = qr_body("9.90");
    body["expires_in_seconds"] = json!(600);
    let scanned = id_of(&create_qr_order_with(&sim, &body).await);
    let unscanned = id_of(&create_qr_order_with(&sim, &body).await);
    act(&sim, &scanned, "scan").await;

    sim.advance_ms(600_000 - 1).await;
    assert_eq!(order(&sim, &scanned).await["state"], "paying");
    assert_eq!(order(&sim, &unscanned).await["state"], "paying");
    assert_eq!(trade(&sim, &scanned).await["state"], "WAIT_BUYER_PAY");

    sim.advance_ms(1).await;
    for id in [&scanned, &unscanned] {
        let expired = order(&sim, id).await;
        assert_eq!(expired["state"], "closed", "{expired}");
        assert_eq!(
            history(&expired)[2..],
            ["paying→closed closed expiry"],
            "{expired}"
        );
        assert_eq!(expired["history"][2]["at"], at(600_000));
    }
    let closes: Vec<String> = exchange_lines(&sim)
        .await
        .into_iter()
        .filter(|line| line.contains("alipay.trade.close"))
        .collect();
    assert_eq!(
        closes,
        [
            "+600000 alipay.trade.close 10000",
            "+600000 alipay.trade.close 40004 ACQ.TRADE_NOT_EXIST",
        ]
    );
    let closed_trade = trade(&sim, &scanned).await;
    assert_eq!(closed_trade["state"], "TRADE_CLOSED");
    assert_eq!(closed_trade["closed_at"], at(600_000));
    assert_eq!(trade(&sim, &unscanned).await["state"], "QR_EXPIRED");

    // Neither can be paid any more.
    for id in [&scanned, &unscanned] {
        sim.buyer_action(id, "pay")
            .await
            .unwrap()
            .expect_error(StatusCode::CONFLICT, "invalid_action");
    }
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}

/// The buyer paid but the notification was lost; the merchant then tries to close. The mock
/// refuses the close (the trade is paid), the gateway asks for the truth, books the payment
/// and refuses the close.
#[tokio::test]
async fn closing_an_order_the_buyer_already_paid_books_the_payment_instead() {
    let sim = AlipaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "18.00").await);
    crate::support::arm(&sim, "notify", "drop_notification", 1, json!({})).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(&sim, &id).await["state"], "paying");

    sim.advance_ms(1_000).await;
    let refused = close(&sim, &id).await;
    let body = refused.expect_error(StatusCode::CONFLICT, "order_not_closable");
    assert!(body["message"].as_str().unwrap().contains("paid"), "{body}");
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["paid_at"], at(0));
    assert_eq!(history(&paid)[2..], ["paying→paid payment api"]);
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 alipay.trade.precreate 10000",
            "+1000 alipay.trade.close 40004 ACQ.TRADE_STATUS_ERROR",
            "+1000 alipay.trade.query 10000",
        ]
    );
    assert_eq!(trade(&sim, &id).await["state"], "TRADE_SUCCESS");
    assert_balances(
        &balances(&sim).await,
        &[(CLEARING, 1800), (crate::support::PAYABLE, 1800)],
    );
    verify_ok(&sim).await;

    // The notification's retry is a duplicate.
    sim.advance_ms(4 * 60_000).await;
    assert_eq!(order(&sim, &id).await, paid);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// As above, but every notification of the late payment is lost: the gateway's one query just
/// after the order's original expiry still finds the money and books it to suspense.
#[tokio::test]
async fn a_late_payment_whose_notifications_are_lost_is_found_after_the_original_expiry() {
    let sim = AlipaySim::new().await.unwrap();
    let mut body = qr_body("12.00");
    body["expires_in_seconds"] = json!(600);
    let id = id_of(&create_qr_order_with(&sim, &body).await);

    sim.advance_ms(1_000).await;
    close(&sim, &id).await.expect(StatusCode::OK);
    // All eight attempts of Alipay's schedule are dropped.
    crate::support::arm(&sim, "notify", "drop_notification", 8, json!({})).await;
    sim.advance_ms(1_000).await;
    assert_eq!(act(&sim, &id, "pay").await["state"], "TRADE_SUCCESS");
    sim.run_due().await;
    assert_balances(&balances(&sim).await, &[]);

    // Just after the original expiry (+600 s) plus the late-check delay, one query books it.
    sim.advance_ms(600_000 + 60_000).await;
    let after = order(&sim, &id).await;
    assert_eq!(after["state"], "closed", "{after}");
    assert_balances(&balances(&sim).await, &[(CLEARING, 1200), (SUSPENSE, 1200)]);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
    let queries = exchange_lines(&sim)
        .await
        .into_iter()
        .filter(|line| line.contains("alipay.trade.query"))
        .count();
    assert_eq!(queries, 1, "exactly one late check");
}
