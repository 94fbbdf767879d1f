//! Platform certificates: the adapter configured without the WeChat Pay public key learns the
//! mock's platform certificate from `GET /v3/certificates` the first time an answer names it
//! (exactly one fetch), and keeps verifying with it; in the switching mode the configured
//! public key is enough; a notification under a key the certificates do not carry is refused
//! after one fetch, and the query settles the order.

use serde_json::json;

use crate::support::{
    act, arm, assert_balances, assert_refused, balances, create_qr_order, exchange_lines, history,
    id_of, order, verify_ok, CLEARING, PAYABLE,
};
use e2e::wechatpay_sim::{Options, Setup, WechatpaySigningMode, WechatpaySim};

async fn sim(signing_mode: WechatpaySigningMode, adapter_public_key: bool) -> WechatpaySim {
    WechatpaySim::build_with(
        Options::default(),
        Setup {
            signing_mode,
            adapter_public_key,
        },
    )
    .await
    .unwrap()
}

/// Pays at the mock a second after creation with the first notification forged (refused), so
/// the gateway's first poll (creation + 5 s) settles the order by a query.
async fn pay_and_settle_by_query(sim: &WechatpaySim, id: &str) {
    arm(sim, "notify", "forged_notification", 1, json!({})).await;
    sim.advance_ms(1_000).await;
    act(sim, id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(sim, id).await["state"], "paying");
    sim.advance_ms(4_000).await;
    let paid = order(sim, id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(
        history(&paid),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→paid payment query",
        ]
    );
    assert_balances(&balances(sim).await, &[(CLEARING, 3000), (PAYABLE, 3000)]);
    verify_ok(sim).await;
}

#[tokio::test]
async fn platform_certificate_mode_fetches_the_certificate_once() {
    let sim = sim(WechatpaySigningMode::PlatformCertificate, false).await;
    let id = id_of(&create_qr_order(&sim, "30.00").await);
    assert_eq!(
        exchange_lines(&sim).await,
        ["+0 pay.transactions.native 200", "+0 certificates 200"],
        "the prepay answer names an unknown serial: one certificates fetch, then accepted"
    );
    pay_and_settle_by_query(&sim, &id).await;
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+0 certificates 200",
            "+5000 pay.transactions.out-trade-no 200",
        ]
    );

    // A later notification (the retry of the forged one) verifies with the learnt
    // certificate: no further fetch.
    sim.advance_ms(60_000).await;
    assert_eq!(
        exchange_lines(&sim)
            .await
            .iter()
            .filter(|line| line.contains("certificates"))
            .count(),
        1
    );
    let deliveries = sim.deliveries();
    assert!(deliveries.len() >= 2, "{deliveries:?}");
    assert_eq!(
        deliveries.last().unwrap().status,
        204,
        "the re-sent notification is accepted"
    );
}

#[tokio::test]
async fn switching_mode_works_with_the_public_key() {
    let sim = sim(WechatpaySigningMode::Switching, true).await;
    let id = id_of(&create_qr_order(&sim, "30.00").await);
    pay_and_settle_by_query(&sim, &id).await;
    sim.advance_ms(60_000).await;
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+5000 pay.transactions.out-trade-no 200",
        ],
        "answers follow the request's public key id: no certificates needed"
    );
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.last().unwrap().status, 204);
}

/// Switching mode, the adapter without the public key: answers are signed under the
/// certificate (learnt once), but notifications name the public key id, which no certificate
/// carries. Each notification triggers one certificates fetch, is still unknown, and is
/// refused (fail closed); the query settles the order.
#[tokio::test]
async fn a_notification_under_a_key_no_certificate_carries_is_refused_after_one_fetch() {
    let sim = sim(WechatpaySigningMode::Switching, false).await;
    let id = id_of(&create_qr_order(&sim, "30.00").await);
    sim.advance_ms(1_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(&sim, &id).await["state"], "paying", "nothing trusted");
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_refused(&deliveries[0]);
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+0 certificates 200",
            "+1000 certificates 200",
        ],
        "one fetch for the prepay answer, one for the notification"
    );

    sim.advance_ms(4_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(
        history(&paid).last().map(String::as_str),
        Some("paying→paid payment query")
    );
    verify_ok(&sim).await;
}
