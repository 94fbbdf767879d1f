//! The store suite: every test is written once over a `TestDb` and runs on SQLite in memory and,
//! when `PAYSIM_TEST_DATABASE_URL` is set, on PostgreSQL (its own schema per test; tests of two
//! gateway processes use two pools over that schema). Plus a SQLite file test.

use std::collections::BTreeMap;
use std::sync::Arc;

use determinism::SeededEntropy;
use gateway_core::ids::{EntryId, OrderId, RefundId};
use gateway_core::ledger::{entries, Account};
use gateway_core::model::{EntityKind, MethodParams, Order, Refund};
use gateway_core::money::Currency;
use gateway_core::state::{Channel, OrderState, PaymentMethod, RefundState};
use gateway_core::store::{Change, CommitOutcome, IdempotencyClaim, IdempotencyRecord, Store};
use tokio::sync::Barrier;

use crate::support::*;

/// Generates one `#[tokio::test]` per body, each running the body on every backend.
macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        mod backends {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::support::on_each_backend(stringify!($test), super::$test).await;
                }
            )*
        }
    };
}

mod verify;

on_each_backend!(
    round_trips,
    one_order_per_idempotency_key_under_50_concurrent_creates,
    compare_and_set_lets_one_of_two_updates_win,
    ledger_booking_is_exactly_once_and_never_negative,
    concurrent_refunds_never_exceed_the_amount_paid,
);

/// Asserts every account's balance derived from postings equals the stored one, and both equal
/// `expected` (accounts not listed must be absent or zero).
pub async fn assert_balances(store: &Store, expected: &[(&Account, i64)]) {
    let balances = store.account_balances().await.unwrap();
    for balance in &balances {
        assert_eq!(
            balance.balance_minor, balance.cached_balance_minor,
            "derived and stored balance of {} differ",
            balance.account
        );
    }
    let actual: BTreeMap<String, i64> = balances
        .iter()
        .filter(|b| b.balance_minor != 0)
        .map(|b| (b.account.code(), b.balance_minor))
        .collect();
    let expected: BTreeMap<String, i64> = expected
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(a, v)| (a.code(), *v))
        .collect();
    assert_eq!(actual, expected, "account balances");
}

fn claim(order: &Order, key: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        merchant_id: order.merchant_id.clone(),
        scope: "create_order".to_owned(),
        key: key.to_owned(),
        request_hash: "9f".repeat(32),
        resource_id: Some(order.id.to_string()),
    }
}

async fn round_trips(db: TestDb) {
    let store = &db.store;
    let ids = SeededEntropy::new(1);
    let merchant = merchant_id("roundtrip");
    ensure_merchant(store, &merchant).await;
    ensure_merchant(store, &merchant).await; // idempotent
    let stored_merchant = store.get_merchant(&merchant).await.unwrap().unwrap();
    assert_eq!(stored_merchant.id, merchant);
    assert_eq!(stored_merchant.created_at_ms, T0);

    // Every optional field filled, text that needs escaping, JSON both ways.
    let mut order = new_order(&ids, &merchant, Channel::Wechatpay, cny(8_888), T0);
    order.method = PaymentMethod::Jsapi;
    order.method_params = MethodParams {
        openid: Some("o_buyer'; DROP TABLE orders; --".to_owned()),
        client_ip: Some("203.0.113.7".to_owned()),
        ..MethodParams::default()
    };
    order.buyer_action =
        Some(serde_json::json!({"prepay_id": "wx_1", "nested": {"n": 1, "ok": true}}));
    order.subject = "咖啡 ☕ \"quoted\" 'single' $1".to_owned();
    let create_claim = claim(&order, "key-1");
    commit_ok(
        store,
        &Change {
            idempotency: Some(create_claim.clone()),
            ..create(&order)
        },
    )
    .await;
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(order.clone())
    );
    let missing = OrderId::parse("ord_missing").unwrap();
    assert_eq!(store.get_order(&missing).await.unwrap(), None);

    let history = store
        .history(EntityKind::Order, order.id.as_str())
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(
        (
            history[0].from_state.as_deref(),
            history[0].to_state.as_str(),
            history[0].event_key.as_str(),
            history[0].at_ms,
        ),
        (None, "created", "created", T0)
    );

    let record = IdempotencyRecord {
        request_hash: create_claim.request_hash.clone(),
        resource_id: Some(order.id.to_string()),
        response: None,
    };
    let lookup = || store.get_idempotency(&merchant, "create_order", "key-1");
    assert_eq!(lookup().await.unwrap(), Some(record.clone()));
    store
        .finish_idempotency(&merchant, "create_order", "key-1", 201, "{\"id\":1}")
        .await
        .unwrap();
    assert_eq!(
        lookup().await.unwrap(),
        Some(IdempotencyRecord {
            response: Some((201, "{\"id\":1}".to_owned())),
            ..record
        })
    );
    assert_eq!(store.open_orders(10).await.unwrap(), vec![order.clone()]);

    let (paid, change) = pay(&ids, &order, 53, T0 + 1_000);
    commit_ok(store, &change).await;
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(paid.clone())
    );
    assert_eq!(store.open_orders(10).await.unwrap(), vec![]);

    // Refund insert, then update.
    let (reserved, refund, change) = request_refund(&ids, &paid, 1_000, T0 + 2_000);
    commit_ok(store, &change).await;
    assert_eq!(
        store.get_refund(&refund.id).await.unwrap(),
        Some(refund.clone())
    );
    assert_eq!(
        store.refunds_for_order(&order.id).await.unwrap(),
        vec![refund.clone()]
    );
    assert_eq!(
        store.pending_refunds(10).await.unwrap(),
        vec![refund.clone()]
    );
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(reserved.clone())
    );

    let (refunded, done, change) = refund_succeeded(&ids, &reserved, &refund, T0 + 3_000);
    commit_ok(store, &change).await;
    assert_eq!(
        store.get_refund(&refund.id).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(
        done.channel_refund_no
            .as_deref()
            .map(|s| s.starts_with("chr_")),
        Some(true)
    );
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(refunded.clone())
    );
    assert_eq!(refunded.state, OrderState::PartiallyRefunded);
    assert_eq!(store.pending_refunds(10).await.unwrap(), vec![]);
    let states = |rows: Vec<gateway_core::model::Transition>| {
        rows.into_iter()
            .map(|t| (t.from_state, t.to_state))
            .collect::<Vec<_>>()
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        states(
            store
                .history(EntityKind::Refund, refund.id.as_str())
                .await
                .unwrap()
        ),
        vec![
            (None, "pending".to_owned()),
            (some("pending"), "succeeded".to_owned())
        ]
    );
    assert_eq!(
        states(
            store
                .history(EntityKind::Order, order.id.as_str())
                .await
                .unwrap()
        ),
        vec![
            (None, "created".to_owned()),
            (some("created"), "paid".to_owned()),
            (some("paid"), "partially_refunded".to_owned()),
        ]
    );
    assert_verifies(store).await;
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test races 50 concurrent requests as separate tasks"
)]
async fn one_order_per_idempotency_key_under_50_concurrent_creates(db: TestDb) {
    let ids = SeededEntropy::new(2);
    let merchant = merchant_id("idem");
    ensure_merchant(&db.store, &merchant).await;
    let second = db.second_process().await;
    let orders: Vec<Order> = (0..50)
        .map(|_| new_order(&ids, &merchant, Channel::Alipay, cny(1_999), T0))
        .collect();
    let start = Arc::new(Barrier::new(orders.len()));
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let store = [&db.store, &second][i % 2].clone();
            let change = Change {
                idempotency: Some(claim(order, "same-key")),
                ..create(order)
            };
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.commit(&change).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let winners: Vec<usize> = (0..outcomes.len())
        .filter(|&i| outcomes[i] == CommitOutcome::Committed)
        .collect();
    assert_eq!(winners.len(), 1, "outcomes: {outcomes:#?}");
    let winner = &orders[winners[0]];
    for outcome in outcomes.iter().filter(|o| **o != CommitOutcome::Committed) {
        assert_eq!(
            outcome,
            &CommitOutcome::IdempotencyExists(IdempotencyRecord {
                request_hash: "9f".repeat(32),
                resource_id: Some(winner.id.to_string()),
                response: None,
            })
        );
    }
    let snapshot = db.store.ledger_snapshot().await.unwrap();
    let stored: Vec<&OrderId> = snapshot.orders.iter().map(|o| &o.id).collect();
    assert_eq!(stored, vec![&winner.id]);
    assert_eq!(snapshot.transitions.len(), 1, "{:#?}", snapshot.transitions);
    assert_eq!(
        db.store.get_order(&winner.id).await.unwrap().as_ref(),
        Some(winner)
    );
}

async fn compare_and_set_lets_one_of_two_updates_win(db: TestDb) {
    let ids = SeededEntropy::new(3);
    let merchant = merchant_id("cas");
    ensure_merchant(&db.store, &merchant).await;
    let second = db.second_process().await;

    // Order: close (one process) races pay (the other), both computed from version 1.
    let order = new_order(&ids, &merchant, Channel::Unionpay, cny(700), T0);
    commit_ok(&db.store, &create(&order)).await;
    let (closed, close_change) = close(&order, T0 + 1);
    let (paid, pay_change) = pay(&ids, &order, 7, T0 + 1);
    let (closing, paying) =
        tokio::join!(db.store.commit(&close_change), second.commit(&pay_change));
    let (closing, paying) = (closing.unwrap(), paying.unwrap());
    let expected = match (&closing, &paying) {
        (CommitOutcome::Committed, CommitOutcome::VersionConflict) => closed,
        (CommitOutcome::VersionConflict, CommitOutcome::Committed) => paid,
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert_eq!(
        db.store.get_order(&order.id).await.unwrap(),
        Some(expected.clone())
    );
    let snapshot = db.store.ledger_snapshot().await.unwrap();
    assert_eq!(
        snapshot.entries.len(),
        usize::from(expected.state == OrderState::Paid),
        "the loser's capture entry must not be booked"
    );
    assert_eq!(snapshot.transitions.len(), 2, "{:#?}", snapshot.transitions);
    // The loser re-reads and finds its update stale again: still a conflict.
    let loser = if expected.state == OrderState::Paid {
        &close_change
    } else {
        &pay_change
    };
    assert_eq!(
        db.store.commit(loser).await.unwrap(),
        CommitOutcome::VersionConflict
    );

    // Refund: two outcomes for the same pending refund, computed from its version 1.
    let order = new_order(&ids, &merchant, Channel::Unionpay, cny(900), T0);
    commit_ok(&db.store, &create(&order)).await;
    let (order, change) = pay(&ids, &order, 0, T0 + 2);
    commit_ok(&db.store, &change).await;
    let (order, refund, change) = request_refund(&ids, &order, 400, T0 + 3);
    commit_ok(&db.store, &change).await;
    let (_, _, succeeded) = refund_succeeded(&ids, &order, &refund, T0 + 4);
    let (parked, abnormal) = refund_abnormal(&ids, &refund, T0 + 4);
    let (first, late) = tokio::join!(second.commit(&succeeded), db.store.commit(&abnormal));
    let (first, late) = (first.unwrap(), late.unwrap());
    let winner = match (&first, &late) {
        (CommitOutcome::Committed, CommitOutcome::VersionConflict) => RefundState::Succeeded,
        (CommitOutcome::VersionConflict, CommitOutcome::Committed) => RefundState::Abnormal,
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    let stored = db.store.get_refund(&refund.id).await.unwrap().unwrap();
    assert_eq!(stored.state, winner);
    assert_eq!(stored.version, 2);
    if winner == RefundState::Abnormal {
        assert_eq!(stored, parked);
    }
    // The first order's capture if paying won, the second's, and the winning refund outcome's.
    assert_eq!(
        db.store.ledger_snapshot().await.unwrap().entries.len(),
        usize::from(expected.state == OrderState::Paid) + 2
    );
    assert_verifies(&db.store).await;
}

async fn ledger_booking_is_exactly_once_and_never_negative(db: TestDb) {
    let store = &db.store;
    let ids = SeededEntropy::new(4);
    let merchant = merchant_id("ledger");
    ensure_merchant(store, &merchant).await;
    let clearing = Account::channel_clearing(Channel::Alipay, Currency::Cny);
    let payable = Account::merchant_payable(&merchant, Currency::Cny);
    let fees = Account::channel_fees(Channel::Alipay, Currency::Cny);
    let suspense = Account::suspense(Channel::Alipay, Currency::Cny);

    let order = new_order(&ids, &merchant, Channel::Alipay, cny(10_000), T0);
    commit_ok(store, &create(&order)).await;
    let (paid, change) = pay(&ids, &order, 60, T0 + 1_000);
    let capture = change.entry.clone().unwrap();
    commit_ok(store, &change).await;
    let after_capture = [(&clearing, 10_000), (&payable, 9_940), (&fees, 60)];
    assert_balances(store, &after_capture).await;

    // I8: the same business event booked again — with another entry id, alongside an order
    // update — is refused as a whole.
    let mut touched = paid.clone();
    touched.version += 1;
    touched.updated_at_ms += 1;
    let replay = Change {
        update_order: Some(touched),
        entry: Some(entries::capture(
            EntryId::generate(&ids),
            &paid,
            cny(60),
            T0 + 5_000,
        )),
        ..Change::default()
    };
    assert_eq!(
        replay.entry.as_ref().unwrap().business_key,
        capture.business_key
    );
    assert_eq!(
        store.commit(&replay).await.unwrap(),
        CommitOutcome::AlreadyBooked
    );
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(paid.clone())
    );
    assert_eq!(
        store.ledger_snapshot().await.unwrap().entries,
        vec![capture.clone()]
    );
    assert_balances(store, &after_capture).await;

    // I9: a full refund would take the payable below zero (the fee was withheld): refused,
    // and nothing of the change is written.
    let (reserved, refund, change) = request_refund(&ids, &paid, 10_000, T0 + 6_000);
    commit_ok(store, &change).await;
    let (_, _, too_much) = refund_succeeded(&ids, &reserved, &refund, T0 + 7_000);
    assert_eq!(
        store.commit(&too_much).await.unwrap(),
        CommitOutcome::NegativeBalance {
            account: payable.code(),
            balance_minor: -60,
        }
    );
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(reserved.clone())
    );
    assert_eq!(
        store.get_refund(&refund.id).await.unwrap(),
        Some(refund.clone())
    );
    assert_eq!(
        store
            .history(EntityKind::Refund, refund.id.as_str())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_balances(store, &after_capture).await;

    // I8: a change whose history row repeats an event the refund already recorded is refused
    // as a whole, including the (otherwise new) entry it carries.
    let (_, _, mut replayed) = refund_failed(&ids, &reserved, &refund, T0 + 8_000);
    replayed.transitions[0].event_key = "created".to_owned();
    replayed.entry = Some(entries::late_payment(
        EntryId::generate(&ids),
        &paid,
        T0 + 8_000,
    ));
    assert_eq!(
        store.commit(&replayed).await.unwrap(),
        CommitOutcome::EventReplayed
    );
    assert_eq!(
        store.get_order(&order.id).await.unwrap(),
        Some(reserved.clone())
    );
    assert_eq!(
        store.get_refund(&refund.id).await.unwrap(),
        Some(refund.clone())
    );
    assert_eq!(
        store.ledger_snapshot().await.unwrap().entries,
        vec![capture.clone()]
    );
    assert_balances(store, &after_capture).await;

    // The refund fails for real; a late payment on another, closed order goes to suspense.
    let (_, _, failed) = refund_failed(&ids, &reserved, &refund, T0 + 9_000);
    commit_ok(store, &failed).await;
    let other = new_order(&ids, &merchant, Channel::Alipay, cny(2_500), T0);
    commit_ok(store, &create(&other)).await;
    let (other, change) = close(&other, T0 + 10_000);
    commit_ok(store, &change).await;
    commit_ok(store, &late_payment(&ids, &other, T0 + 11_000)).await;
    assert_eq!(
        store
            .commit(&late_payment(&ids, &other, T0 + 12_000))
            .await
            .unwrap(),
        CommitOutcome::AlreadyBooked
    );
    assert_eq!(store.alerts().await.unwrap().len(), 1);
    assert_balances(
        store,
        &[
            (&clearing, 12_500),
            (&payable, 9_940),
            (&fees, 60),
            (&suspense, 2_500),
        ],
    )
    .await;
    assert_verifies(store).await;
}

/// The refund path of the gateway at store level: read, check the ceiling, reserve by
/// compare-and-set, re-read on conflict. `None` when refused. Every racer waits at `start`
/// after its first read, so all of them commit from the same version at least once — on
/// SQLite too, where one connection would otherwise let the tasks run one after another.
async fn reserve_refund(
    store: &Store,
    id: &OrderId,
    amount: i64,
    seed: u64,
    start: &Barrier,
) -> Option<Refund> {
    let ids = SeededEntropy::new(seed);
    for attempt in 0..200 {
        let order = store.get_order(id).await.unwrap().unwrap();
        if attempt == 0 {
            start.wait().await;
        }
        let captured = matches!(
            order.state,
            OrderState::Paid | OrderState::PartiallyRefunded
        );
        if !captured || order.refundable_minor() < amount {
            return None;
        }
        let (_, refund, change) = request_refund(&ids, &order, amount, T0 + 2_000);
        match store.commit(&change).await.unwrap() {
            CommitOutcome::Committed => return Some(refund),
            CommitOutcome::VersionConflict => continue,
            other => panic!("reserving a refund: {other:?}"),
        }
    }
    panic!("no progress reserving a refund after 200 attempts");
}

/// Applies a refund success by compare-and-set, re-reading on conflict (racers line up at
/// `start` as in [`reserve_refund`]).
async fn settle_refund(store: &Store, id: &RefundId, seed: u64, start: &Barrier) {
    let ids = SeededEntropy::new(seed);
    for attempt in 0..200 {
        let refund = store.get_refund(id).await.unwrap().unwrap();
        let order = store.get_order(&refund.order_id).await.unwrap().unwrap();
        if attempt == 0 {
            start.wait().await;
        }
        let (_, _, change) = refund_succeeded(&ids, &order, &refund, T0 + 3_000);
        match store.commit(&change).await.unwrap() {
            CommitOutcome::Committed => return,
            CommitOutcome::VersionConflict => continue,
            other => panic!("settling a refund: {other:?}"),
        }
    }
    panic!("no progress settling a refund after 200 attempts");
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test races concurrent refund requests as separate tasks"
)]
async fn concurrent_refunds_never_exceed_the_amount_paid(db: TestDb) {
    let ids = SeededEntropy::new(5);
    let merchant = merchant_id("refunds");
    ensure_merchant(&db.store, &merchant).await;
    let second = db.second_process().await;
    let order = new_order(&ids, &merchant, Channel::Wechatpay, cny(10_000), T0);
    commit_ok(&db.store, &create(&order)).await;
    let (paid, change) = pay(&ids, &order, 60, T0 + 1_000);
    commit_ok(&db.store, &change).await;

    // Half the racers on each process.
    let pick = |i: u64| [&db.store, &second][usize::from(i % 2 == 1)].clone();
    let start = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20_u64)
        .map(|i| {
            let (store, id, start) = (pick(i), paid.id.clone(), Arc::clone(&start));
            tokio::spawn(async move { reserve_refund(&store, &id, 3_000, 100 + i, &start).await })
        })
        .collect();
    let mut reserved = Vec::new();
    for task in tasks {
        if let Some(refund) = task.await.unwrap() {
            reserved.push(refund);
        }
    }
    let stored = db.store.get_order(&paid.id).await.unwrap().unwrap();
    assert!(
        stored.refund_reserved_minor + stored.refunded_minor <= stored.amount.minor(),
        "over-reserved: {stored:#?}"
    );
    // At most 3 × 30 % fit; exactly 3 because every refusal saw less than 30 % left.
    assert_eq!(reserved.len(), 3, "{reserved:#?}");
    assert_eq!(stored.refund_reserved_minor, 9_000);
    assert_eq!(db.store.refunds_for_order(&paid.id).await.unwrap().len(), 3);
    assert_verifies(&db.store).await;

    // The three complete concurrently too.
    let start = Arc::new(Barrier::new(reserved.len()));
    let tasks: Vec<_> = reserved
        .iter()
        .zip(0_u64..)
        .map(|(refund, i)| {
            let (store, id, start) = (pick(i), refund.id.clone(), Arc::clone(&start));
            tokio::spawn(async move { settle_refund(&store, &id, 200 + i, &start).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored = db.store.get_order(&paid.id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.state,
            stored.refunded_minor,
            stored.refund_reserved_minor
        ),
        (OrderState::PartiallyRefunded, 9_000, 0)
    );
    assert_balances(
        &db.store,
        &[
            (
                &Account::channel_clearing(Channel::Wechatpay, Currency::Cny),
                1_000,
            ),
            (&Account::merchant_payable(&merchant, Currency::Cny), 940),
            (
                &Account::channel_fees(Channel::Wechatpay, Currency::Cny),
                60,
            ),
        ],
    )
    .await;
    assert_verifies(&db.store).await;
}

#[tokio::test]
async fn orders_survive_reopening_a_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("paysim-store-{}", unique_name()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("paysim.db").display());
    let ids = SeededEntropy::new(6);
    let merchant = merchant_id("file");
    let paid = {
        let store = Store::open(&url).await.unwrap();
        ensure_merchant(&store, &merchant).await;
        let order = new_order(&ids, &merchant, Channel::Alipay, cny(4_200), T0);
        commit_ok(&store, &create(&order)).await;
        let (paid, change) = pay(&ids, &order, 25, T0 + 1_000);
        commit_ok(&store, &change).await;
        paid
    };
    // Reopening migrates again (a no-op) and finds everything.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.get_order(&paid.id).await.unwrap(), Some(paid.clone()));
    assert_eq!(
        store
            .history(EntityKind::Order, paid.id.as_str())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_balances(
        &store,
        &[
            (
                &Account::channel_clearing(Channel::Alipay, Currency::Cny),
                4_200,
            ),
            (&Account::merchant_payable(&merchant, Currency::Cny), 4_175),
            (&Account::channel_fees(Channel::Alipay, Currency::Cny), 25),
        ],
    )
    .await;
    assert_verifies(&store).await;
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
