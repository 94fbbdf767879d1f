//! A seed fixes the whole history: a Native payment (its first notification refused, so it is
//! retried) and a refund, run twice with one seed, yield the same order, transaction, refund
//! and notification ids, the same notification times and the same bytes on the wire
//! (encrypted resources and signatures included); another seed yields other ids at the same
//! times.

use serde_json::{json, Value};

use crate::support::{act, arm, create_qr_order, exchanges, id_of, order, refund, trade, Expect};
use e2e::wechatpay_sim::{WechatpaySim, T0};
use http::StatusCode;

/// One notification as it reached the gateway.
#[derive(Debug, PartialEq)]
struct Wire {
    at_ms: i64,
    /// `Wechatpay-Timestamp`, `-Nonce`, `-Signature` and `Request-ID`.
    signed_headers: Vec<Option<String>>,
    body: String,
    status: u16,
    reply: String,
}

/// Everything observable of one run of the scenario.
#[derive(Debug, PartialEq)]
struct Transcript {
    order_id: String,
    transaction_id: String,
    refund_id: String,
    notify_ids: Vec<String>,
    notification_times_ms: Vec<i64>,
    wire: Vec<Wire>,
    order: Value,
    trade: Value,
    exchanges: Value,
}

async fn payment_and_refund(seed: u64) -> Transcript {
    let sim = WechatpaySim::with_seed(seed).await.unwrap();
    let id = id_of(&create_qr_order(&sim, "88.88").await);
    arm(&sim, "notify", "forged_notification", 1, json!({})).await;
    sim.advance_ms(1_500).await;
    act(&sim, &id, "pay").await;
    sim.advance_ms(20_000).await;
    let refund_id = id_of(
        &refund(&sim, &id, &json!({"amount": "8.88"}))
            .await
            .expect(StatusCode::CREATED),
    );
    sim.advance_ms(600_000).await;

    let order = order(&sim, &id).await;
    assert_eq!(order["state"], "partially_refunded", "SEED={seed}: {order}");
    assert_eq!(order["refunds"][0]["id"], refund_id.as_str());
    let trade = trade(&sim, &id).await;
    let notifications = trade["notifications"].as_array().unwrap();
    Transcript {
        order_id: id,
        transaction_id: trade["trade_no"].as_str().unwrap().to_owned(),
        refund_id: order["refunds"][0]["channel_refund_no"]
            .as_str()
            .unwrap()
            .to_owned(),
        notify_ids: notifications
            .iter()
            .map(|n| n["notify_id"].as_str().unwrap().to_owned())
            .collect(),
        notification_times_ms: notifications
            .iter()
            .flat_map(|n| n["attempts"].as_array().unwrap().iter())
            .map(|a| a["at_ms"].as_i64().unwrap() - T0)
            .collect(),
        wire: sim
            .deliveries()
            .iter()
            .map(|d| Wire {
                at_ms: d.at_ms - T0,
                signed_headers: [
                    "wechatpay-timestamp",
                    "wechatpay-nonce",
                    "wechatpay-signature",
                    "request-id",
                ]
                .iter()
                .map(|h| d.header(h).map(str::to_owned))
                .collect(),
                body: String::from_utf8(d.body.to_vec()).unwrap(),
                status: d.status.as_u16(),
                reply: String::from_utf8(d.reply.to_vec()).unwrap(),
            })
            .collect(),
        order,
        trade: trade.clone(),
        exchanges: json!(exchanges(&sim).await),
    }
}

#[tokio::test]
async fn the_same_seed_replays_the_same_history() {
    let seed = 42;
    let first = payment_and_refund(seed).await;
    let second = payment_and_refund(seed).await;
    assert_eq!(
        first, second,
        "SEED={seed} repro: cargo test -p e2e --test wechatpay determinism"
    );
    // Payment: refused at +1.5 s (forged), accepted on the retry 15 s later; the refund's
    // notification when the mock settles it, 5 s after the request at +21.5 s.
    assert_eq!(first.notification_times_ms, [1_500, 16_500, 26_500]);
    assert_eq!(
        first
            .wire
            .iter()
            .map(|wire| (wire.at_ms, wire.status))
            .collect::<Vec<_>>(),
        [(1_500, 500), (16_500, 204), (26_500, 204)]
    );
    assert_eq!(
        first.wire[0].body, first.wire[1].body,
        "a retry re-sends the same envelope"
    );
    assert_ne!(
        first.wire[0].signed_headers, first.wire[1].signed_headers,
        "signed afresh"
    );

    let other = payment_and_refund(seed + 1).await;
    assert_ne!(other.order_id, first.order_id, "another seed, other ids");
    assert_ne!(other.transaction_id, first.transaction_id);
    assert_ne!(other.refund_id, first.refund_id);
    assert_ne!(other.notify_ids, first.notify_ids);
    assert_ne!(other.wire, first.wire);
    assert_eq!(
        other.notification_times_ms, first.notification_times_ms,
        "times come from the virtual clock, not the seed"
    );
}
