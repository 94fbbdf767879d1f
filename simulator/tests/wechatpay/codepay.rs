//! The payment-code flow: `codepay` outcomes scripted by the `auth_code`, USERPAYING resolved
//! by buyer actions, and `reverse` (撤销) to REVOKED.

use super::*;

const PAID_CODE: &str = "134567890123450000";
const PAYING_CODE: &str = "134567890123450003";
const FAILED_CODE: &str = "134567890123454004";
const POOR_CODE: &str = "134567890123454001";

impl Harness {
    async fn codepay(&self, out_trade_no: &str, auth_code: &str, total: i64) -> Response {
        self.post(
            "/v3/pay/transactions/codepay",
            &json!({"appid": APPID, "mchid": MCHID, "description": "Image形象店-深圳腾大-QQ公仔",
                    "out_trade_no": out_trade_no, "payer": {"auth_code": auth_code},
                    "amount": {"total": total, "currency": "CNY"},
                    "scene_info": {"device_id": "POS1",
                                   "store_info": {"out_id": "SZ001"}}}),
        )
        .await
    }

    async fn reverse(&self, out_trade_no: &str) -> Response {
        self.post(
            &format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/reverse"),
            &json!({"appid": APPID, "mchid": MCHID}),
        )
        .await
    }
}

#[tokio::test]
async fn codepay_outcomes_follow_the_auth_code() {
    let h = Harness::new();

    let paid = h.codepay("CODE_0001", PAID_CODE, 100).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
    assert!(paid.verifies());
    let transaction = paid.json();
    assert_eq!(transaction["trade_state"], "SUCCESS");
    assert_eq!(transaction["trade_type"], "MICROPAY");
    assert_eq!(transaction["out_trade_no"], "CODE_0001");
    assert_eq!(transaction["amount"]["payer_total"], 100);
    assert_eq!(transaction["transaction_id"].as_str().unwrap().len(), 28);
    assert!(transaction["payer"]["openid"].is_string());
    assert_eq!(h.query("CODE_0001").await["trade_state"], "SUCCESS");
    // An identical repeat answers the order as it stands; another code needs another number.
    let again = h.codepay("CODE_0001", PAID_CODE, 100).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.json()["transaction_id"],
        transaction["transaction_id"]
    );
    let other = h.codepay("CODE_0001", PAYING_CODE, 100).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.json()["code"], "INVALID_REQUEST");

    let paying = h.codepay("CODE_0002", PAYING_CODE, 100).await;
    assert_eq!(paying.status, StatusCode::ACCEPTED, "{}", paying.text);
    assert!(paying.verifies(), "the 202 is signed");
    assert_eq!(paying.json()["code"], "USER_PAYING");
    let pending = h.query("CODE_0002").await;
    assert_eq!(pending["trade_state"], "USERPAYING");
    assert!(pending.get("transaction_id").is_none());

    let failed = h.codepay("CODE_0003", FAILED_CODE, 100).await;
    assert_eq!(failed.status, StatusCode::FORBIDDEN);
    assert_eq!(failed.json()["code"], "TRADE_ERROR");
    assert!(failed.verifies());
    assert_eq!(h.query("CODE_0003").await["trade_state"], "PAYERROR");

    let poor = h.codepay("CODE_0004", POOR_CODE, 100).await;
    assert_eq!(poor.status, StatusCode::FORBIDDEN);
    assert_eq!(poor.json()["code"], "NOT_ENOUGH");
    assert_eq!(h.query("CODE_0004").await["trade_state"], "PAYERROR");

    let invalid = h.codepay("CODE_0005", "284567890123450000", 100).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.json()["code"], "PARAM_ERROR");
    let missing = h
        .get(&format!(
            "/v3/pay/transactions/out-trade-no/CODE_0005?mchid={MCHID}"
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "no order created");

    let used = h.native("NATIVE_001", 1).await;
    assert_eq!(used.status, StatusCode::OK);
    let clash = h.codepay("NATIVE_001", PAID_CODE, 1).await;
    assert_eq!(clash.json()["code"], "OUT_TRADE_NO_USED");

    let (_, view) = h
        .control(Method::GET, "/_paysim/wechatpay/trades/CODE_0002", None)
        .await;
    assert_eq!(view["product"], "codepay");
    assert_eq!(view["state"], "USERPAYING");
}

#[tokio::test]
async fn user_paying_resolves_by_buyer_pay_or_fail() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    assert_eq!(
        h.codepay("CODE_PAY_1", PAYING_CODE, 250).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.action("CODE_PAY_1", "scan").await.0,
        StatusCode::CONFLICT,
        "the code was already scanned"
    );
    h.clock.advance_ms(20 * SECOND);
    let (status, view) = h.action("CODE_PAY_1", "pay").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "SUCCESS");
    let paid = h.query("CODE_PAY_1").await;
    assert_eq!(paid["trade_state"], "SUCCESS");
    assert_eq!(paid["trade_type"], "MICROPAY");
    assert_eq!(paid["success_time"], "2026-11-25T18:00:20+08:00");
    // The repeat of the codepay call now answers the paid order.
    let again = h.codepay("CODE_PAY_1", PAYING_CODE, 250).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["trade_state"], "SUCCESS");
    // The payment-code flow has no notify_url and no payment notification: merchants poll.
    h.run_until(T0 + 10 * MINUTE).await;
    assert!(received(&inbox).is_empty());
    let (_, view) = h
        .control(Method::GET, "/_paysim/wechatpay/trades/CODE_PAY_1", None)
        .await;
    assert_eq!(view["notifications"], json!([]));

    assert_eq!(
        h.codepay("CODE_FAIL_1", PAYING_CODE, 250).await.status,
        StatusCode::ACCEPTED
    );
    let (status, view) = h.action("CODE_FAIL_1", "fail").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "PAYERROR");
    assert_eq!(h.query("CODE_FAIL_1").await["trade_state"], "PAYERROR");
    assert_eq!(h.action("CODE_FAIL_1", "pay").await.0, StatusCode::CONFLICT);
    let again = h.codepay("CODE_FAIL_1", PAYING_CODE, 250).await;
    assert_eq!(again.json()["code"], "TRADE_ERROR");
}

#[tokio::test]
async fn reverse_revokes_unpaid_failed_and_paying_orders() {
    let h = Harness::new();
    h.codepay("REV_0001", PAYING_CODE, 100).await;
    let reversed = h.reverse("REV_0001").await;
    assert_eq!(reversed.status, StatusCode::OK, "{}", reversed.text);
    assert!(reversed.verifies());
    assert_eq!(
        reversed.json(),
        json!({"appid": APPID, "mchid": MCHID, "out_trade_no": "REV_0001"})
    );
    let revoked = h.query("REV_0001").await;
    assert_eq!(revoked["trade_state"], "REVOKED");
    assert_eq!(revoked["trade_state_desc"], "订单已撤销");
    assert_eq!(h.action("REV_0001", "pay").await.0, StatusCode::CONFLICT);
    assert_eq!(
        h.reverse("REV_0001").await.status,
        StatusCode::OK,
        "repeatable"
    );
    assert_eq!(
        h.codepay("REV_0001", PAYING_CODE, 100).await.json()["code"],
        "ORDER_CLOSED"
    );

    h.codepay("REV_0002", FAILED_CODE, 100).await;
    assert_eq!(h.reverse("REV_0002").await.status, StatusCode::OK);
    assert_eq!(h.query("REV_0002").await["trade_state"], "REVOKED");

    h.native("REV_0003", 100).await;
    assert_eq!(h.reverse("REV_0003").await.status, StatusCode::OK);
    assert_eq!(h.query("REV_0003").await["trade_state"], "REVOKED");

    h.native("REV_0004", 100).await;
    let closed = h
        .post(
            "/v3/pay/transactions/out-trade-no/REV_0004/close",
            &json!({"mchid": MCHID}),
        )
        .await;
    assert_eq!(closed.status, StatusCode::NO_CONTENT);
    assert_eq!(h.reverse("REV_0004").await.json()["code"], "ORDER_CLOSED");

    let missing = h.reverse("REV_NOPE").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["code"], "ORDER_NOT_EXIST");

    let no_appid = h
        .post(
            "/v3/pay/transactions/out-trade-no/REV_0002/reverse",
            &json!({"mchid": MCHID}),
        )
        .await;
    assert_eq!(no_appid.json()["code"], "PARAM_ERROR");
}

#[tokio::test]
async fn reverse_of_a_paid_order_returns_the_money_within_seven_days() {
    let h = Harness::new();
    h.codepay("REV_PAID_1", PAID_CODE, 300).await;
    let reversed = h.reverse("REV_PAID_1").await;
    assert_eq!(reversed.status, StatusCode::OK, "{}", reversed.text);
    let revoked = h.query("REV_PAID_1").await;
    assert_eq!(revoked["trade_state"], "REVOKED");
    assert!(revoked["transaction_id"].is_string(), "it was paid");
    let refund = h
        .post(
            "/v3/refund/domestic/refunds",
            &json!({"out_trade_no": "REV_PAID_1", "out_refund_no": "RF_REV_1",
                    "amount": {"refund": 100, "total": 300, "currency": "CNY"}}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::NOT_FOUND, "{}", refund.text);
    assert_eq!(refund.json()["code"], "RESOURCE_NOT_EXISTS");

    // Once a refund is requested the order is REFUND: reverse is refused.
    h.codepay("REV_PAID_2", PAID_CODE, 300).await;
    let refund = h
        .post(
            "/v3/refund/domestic/refunds",
            &json!({"out_trade_no": "REV_PAID_2", "out_refund_no": "RF_REV_2",
                    "amount": {"refund": 100, "total": 300, "currency": "CNY"}}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::OK, "{}", refund.text);
    let refused = h.reverse("REV_PAID_2").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.json()["code"], "INVALID_REQUEST");
    assert_eq!(h.query("REV_PAID_2").await["trade_state"], "REFUND");

    // Older than 7 days: refused (use the refund API).
    h.codepay("REV_PAID_3", PAID_CODE, 300).await;
    h.clock.advance_ms(8 * 24 * 60 * MINUTE);
    let late = h.reverse("REV_PAID_3").await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert_eq!(late.json()["code"], "INVALID_REQUEST");
    assert_eq!(h.query("REV_PAID_3").await["trade_state"], "SUCCESS");
}

#[tokio::test]
async fn codepay_and_reverse_are_fault_targets() {
    let h = Harness::new();
    let (_, channels) = h.control(Method::GET, "/_paysim/channels", None).await;
    let targets = channels["channels"][0]["fault_targets"].as_array().unwrap();
    assert!(targets.contains(&json!("pay.transactions.codepay")));
    assert!(targets.contains(&json!("pay.transactions.reverse")));

    h.arm(
        json!({"target": "pay.transactions.codepay", "fault": "system_error",
                 "params": {"executed": true}}),
    )
    .await;
    let unknown = h.codepay("FAULT_CP_1", PAID_CODE, 1).await;
    assert_eq!(unknown.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.query("FAULT_CP_1").await["trade_state"], "SUCCESS");

    h.arm(
        json!({"target": "pay.transactions.reverse", "fault": "error_code",
                 "params": {"code": "SYSTEM_ERROR"}}),
    )
    .await;
    let failed = h.reverse("FAULT_CP_1").await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        h.query("FAULT_CP_1").await["trade_state"],
        "SUCCESS",
        "not executed"
    );
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/wechatpay/exchanges", None)
        .await;
    assert!(exchanges["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["api"] == "pay.transactions.reverse" && e["fault"] == "error_code"));
}
