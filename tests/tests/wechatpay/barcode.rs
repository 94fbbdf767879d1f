//! Payment-code (付款码) payments end to end: codepay answered `USER_PAYING`, the gateway's
//! barcode polls, and either the buyer confirming (settled by a query — the flow has no
//! notification) or never confirming (reversed after the last poll).

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{
    act, assert_balances, balances, create_order_with, exchange_lines, history, id_of, order,
    trade, verify_ok, Expect, CLEARING, PAYABLE,
};
use e2e::wechatpay_sim::WechatpaySim;

fn barcode_body(auth_code: &str) -> Value {
    json!({
        "channel": "wechatpay",
        "method": "barcode",
        "amount": "12.34",
        "subject": "payment code",
        "method_params": {"auth_code": auth_code},
    })
}

#[tokio::test]
async fn a_buyer_who_confirms_is_settled_by_the_barcode_poll() {
    let sim = WechatpaySim::new().await.unwrap();
    // An auth code ending 0003: the mock answers 202 USER_PAYING.
    let created = create_order_with(&sim, &barcode_body("134567890123450003"))
        .await
        .expect(StatusCode::CREATED);
    let id = id_of(&created);
    assert_eq!(created["state"], "paying", "{created}");
    assert_eq!(trade(&sim, &id).await["state"], "USERPAYING");

    // The buyer confirms on the phone; the +5 s poll finds SUCCESS.
    sim.advance_ms(2_000).await;
    act(&sim, &id, "pay").await;
    sim.advance_ms(3_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(history(&paid)[2..], ["paying→paid payment query"]);
    assert_balances(&balances(&sim).await, &[(CLEARING, 1234), (PAYABLE, 1234)]);
    verify_ok(&sim).await;
    let lines = exchange_lines(&sim).await;
    assert!(
        lines.iter().any(|l| l.contains("pay.transactions.codepay")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("reverse")), "{lines:?}");
}

#[tokio::test]
async fn a_buyer_who_never_confirms_is_reversed_after_the_last_poll() {
    let sim = WechatpaySim::new().await.unwrap();
    let created = create_order_with(&sim, &barcode_body("134567890123450003"))
        .await
        .expect(StatusCode::CREATED);
    let id = id_of(&created);

    // Polls at 5, 10, 15, 20 and 25 s see USERPAYING; then the order is reversed.
    sim.advance_ms(25_000).await;
    let closed = order(&sim, &id).await;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(
        history(&closed)[2..],
        ["paying→closed closed barcode_timeout"]
    );
    assert_eq!(trade(&sim, &id).await["state"], "REVOKED");
    let lines = exchange_lines(&sim).await;
    assert!(
        lines.iter().any(|l| l.contains("pay.transactions.reverse")),
        "{lines:?}"
    );
    assert_balances(&balances(&sim).await, &[]);
    verify_ok(&sim).await;
}
