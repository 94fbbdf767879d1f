//! The notification retry schedule under the virtual clock: WeChat Pay re-sends a notification
//! the merchant does not acknowledge after 15s, 15s, 30s, 3m, 10m, 20m, 30m, 30m, 30m, 60m, 3h,
//! 3h, 3h, 6h, 6h — 16 attempts over 24h04m — and then gives up. The order does not depend on
//! it: the gateway's poll settles it.

use serde_json::json;

use crate::support::{
    act, arm, assert_acknowledged, assert_balances, assert_refused, at, attempt_lines, balances,
    create_qr_order, exchange_lines, history, id_of, opened, order, trade, verify_ok, CLEARING,
    PAYABLE,
};
use e2e::wechatpay_sim::WechatpaySim;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// The documented delays before attempts 2 to 16.
const RETRY_DELAYS_MS: [i64; 15] = [
    15 * SECOND_MS,
    15 * SECOND_MS,
    30 * SECOND_MS,
    3 * MINUTE_MS,
    10 * MINUTE_MS,
    20 * MINUTE_MS,
    30 * MINUTE_MS,
    30 * MINUTE_MS,
    30 * MINUTE_MS,
    60 * MINUTE_MS,
    3 * HOUR_MS,
    3 * HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    6 * HOUR_MS,
];

/// The offsets (from T0) of the 16 attempts of a notification first sent at `first_ms`.
fn schedule_from(first_ms: i64) -> Vec<i64> {
    let mut offsets = vec![first_ms];
    for delay in RETRY_DELAYS_MS {
        offsets.push(offsets.last().unwrap() + delay);
    }
    offsets
}

#[test]
fn the_schedule_spans_24_hours_and_4_minutes() {
    let offsets = schedule_from(0);
    assert_eq!(offsets.len(), 16);
    assert_eq!(offsets[15], 24 * HOUR_MS + 4 * MINUTE_MS);
}

/// Every attempt is refused (a forged signature each time, `forged_notification` ×16): the mock
/// runs the whole schedule, then stops. The gateway's first poll has long settled the order.
#[tokio::test]
async fn a_refused_notification_runs_the_full_schedule_then_stops() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "20.00").await);
    arm(&sim, "notify", "forged_notification", 16, json!({})).await;

    sim.advance_ms(1_000).await;
    act(&sim, &id, "pay").await;
    sim.run_due().await;
    assert_eq!(order(&sim, &id).await["state"], "paying", "nothing trusted");
    assert_balances(&balances(&sim).await, &[]);

    // The first poll (creation + 5 s) asks WeChat Pay and books the payment.
    sim.advance_ms(4_000).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(paid["paid_at"], at(1_000), "success_time of the query");
    assert_eq!(
        history(&paid),
        [
            "∅→created created api",
            "created→paying accepted create",
            "paying→paid payment query",
        ]
    );
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    verify_ok(&sim).await;

    // A minute before the last attempt: 15 attempts, all refused, the 16th pending.
    let offsets = schedule_from(1_000);
    sim.run_until(e2e::wechatpay_sim::T0 + offsets[15] - MINUTE_MS)
        .await;
    let pending = trade(&sim, &id).await;
    assert_eq!(pending["notifications"][0]["state"], "pending");
    assert_eq!(
        pending["notifications"][0]["next_attempt_at"],
        at(offsets[15])
    );
    assert_eq!(attempt_lines(&pending).len(), 15);

    // The 16th attempt at +24h04m01s is refused too; the mock gives up.
    sim.advance_ms(MINUTE_MS).await;
    let given_up = trade(&sim, &id).await;
    let notification = &given_up["notifications"][0];
    assert_eq!(notification["state"], "given_up");
    assert_eq!(notification["next_attempt_at"], json!(null));
    let expected: Vec<String> = offsets
        .iter()
        .enumerate()
        .map(|(n, offset)| {
            format!(
                "ntf_1 TRANSACTION.SUCCESS #{} +{offset} 500 {:?} accepted=false fault=forged_notification",
                n + 1,
                crate::support::REFUSAL
            )
        })
        .collect();
    assert_eq!(attempt_lines(&given_up), expected);

    // The gateway saw every attempt, at those times, the same envelope each time, and
    // refused each (the signature is not WeChat Pay's).
    let deliveries = sim.deliveries();
    let times: Vec<i64> = deliveries
        .iter()
        .map(|d| d.at_ms - e2e::wechatpay_sim::T0)
        .collect();
    assert_eq!(times, offsets);
    for delivery in &deliveries {
        assert_refused(delivery);
        assert_eq!(delivery.body, deliveries[0].body, "the same envelope bytes");
        assert_eq!(opened(delivery).resource["out_trade_no"], id.as_str());
    }

    // Then nothing: no 17th attempt, no further query, the order and ledger as booked.
    sim.advance_ms(7 * 24 * HOUR_MS).await;
    assert_eq!(sim.deliveries().len(), 16);
    assert_eq!(attempt_lines(&trade(&sim, &id).await).len(), 16);
    assert_eq!(
        exchange_lines(&sim).await,
        [
            "+0 pay.transactions.native 200",
            "+5000 pay.transactions.out-trade-no 200",
        ]
    );
    assert_eq!(order(&sim, &id).await, paid);
    assert_balances(&balances(&sim).await, &[(CLEARING, 2000), (PAYABLE, 2000)]);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}

/// The gateway is unreachable (off the transport) while the notification is retried, and the
/// buyer's payment is settled by the poll meanwhile; once the gateway is back, the next attempt
/// on the schedule is acknowledged and the mock stops re-sending.
#[tokio::test]
async fn an_unreachable_gateway_is_retried_until_it_answers() {
    let sim = WechatpaySim::new().await.unwrap();
    let id = id_of(&create_qr_order(&sim, "7.50").await);
    assert!(sim.disconnect_gateway());

    act(&sim, &id, "pay").await;
    sim.advance_ms(30 * SECOND_MS).await;
    let paid = order(&sim, &id).await;
    assert_eq!(paid["state"], "paid", "{paid}");
    assert_eq!(history(&paid)[2..], ["paying→paid payment query"]);
    assert!(sim.deliveries().is_empty(), "nothing reached the gateway");

    // Attempts at +0, +15 s, +30 s failed in transport; the 4th is due at +60 s.
    let failing = trade(&sim, &id).await;
    let attempts = failing["notifications"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    for attempt in attempts {
        assert_eq!(attempt["http_status"], json!(null), "{attempt}");
        assert_eq!(attempt["accepted"], false);
        assert!(
            attempt["error"].as_str().is_some_and(|e| !e.is_empty()),
            "a transport error: {attempt}"
        );
    }
    assert_eq!(
        failing["notifications"][0]["next_attempt_at"],
        at(60 * SECOND_MS)
    );

    sim.reconnect_gateway().unwrap();
    sim.advance_ms(30 * SECOND_MS).await;
    let acknowledged = trade(&sim, &id).await;
    assert_eq!(acknowledged["notifications"][0]["state"], "acknowledged");
    assert_eq!(
        attempt_lines(&acknowledged)[3..],
        ["ntf_1 TRANSACTION.SUCCESS #4 +60000 204 \"\" accepted=true fault=-"]
    );
    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_acknowledged(&deliveries[0]);

    // A duplicate of a settled payment: acknowledged, nothing booked twice; no more attempts.
    sim.advance_ms(25 * HOUR_MS).await;
    assert_eq!(sim.deliveries().len(), 1);
    assert_eq!(order(&sim, &id).await, paid);
    assert_balances(&balances(&sim).await, &[(CLEARING, 750), (PAYABLE, 750)]);
    assert_eq!(verify_ok(&sim).await["entries"], 1);
}
