//! `ledger::verify` catches what it claims: a healthy store verifies clean; each corruption,
//! made with raw SQL behind the store's back (or, where the schema forbids it, on a hand-built
//! snapshot), is reported with the expected invariant as the first violation and the expected
//! subject.

use determinism::SeededEntropy;
use gateway_core::ids::{EntryId, MerchantId};
use gateway_core::ledger::{self, derive_balances, Account, Invariant, LedgerSnapshot};
use gateway_core::model::{EntityKind, Order, Refund};
use gateway_core::money::Currency;
use gateway_core::state::Channel;

use crate::support::*;

on_each_backend!(
    healthy_store_verifies,
    catches_unbalanced_entry_i1,
    catches_drifted_balance_i2,
    catches_duplicate_capture_i3,
    catches_over_refund_i4,
    catches_terminal_state_left_i5,
    catches_broken_conservation_i6,
    catches_replays_i8,
    catches_negative_balance_i9,
    healthy_late_payment_refund_verifies,
    catches_late_refund_exceeding_the_late_payment_i4,
    catches_late_refund_without_a_late_payment_i4,
);

/// Order `a` (10 000, fee 60) paid and partially refunded (3 000 succeeded); order `b` (5 000)
/// closed unpaid, then paid late (suspense).
struct Healthy {
    merchant: MerchantId,
    a: Order,
    capture: EntryId,
    refund: Refund,
    b: Order,
    clearing: String,
    payable: String,
    fees: String,
}

async fn healthy(db: &TestDb) -> Healthy {
    let store = &db.store;
    let ids = SeededEntropy::new(10);
    let merchant = merchant_id("verify");
    ensure_merchant(store, &merchant).await;
    let a = new_order(&ids, &merchant, Channel::Alipay, cny(10_000), T0);
    commit_ok(store, &create(&a)).await;
    let (a, change) = pay(&ids, &a, 60, T0 + 1_000);
    let capture = change.entry.as_ref().unwrap().id.clone();
    commit_ok(store, &change).await;
    let (a, refund, change) = request_refund(&ids, &a, 3_000, T0 + 2_000);
    commit_ok(store, &change).await;
    let (a, refund, change) = refund_succeeded(&ids, &a, &refund, T0 + 3_000);
    commit_ok(store, &change).await;
    let b = new_order(&ids, &merchant, Channel::Alipay, cny(5_000), T0 + 4_000);
    commit_ok(store, &create(&b)).await;
    let (b, change) = close(&b, T0 + 5_000);
    commit_ok(store, &change).await;
    commit_ok(store, &late_payment(&ids, &b, T0 + 6_000)).await;
    assert_verifies(store).await;
    Healthy {
        clearing: Account::channel_clearing(Channel::Alipay, Currency::Cny).code(),
        payable: Account::merchant_payable(&merchant, Currency::Cny).code(),
        fees: Account::channel_fees(Channel::Alipay, Currency::Cny).code(),
        merchant,
        a,
        capture,
        refund,
        b,
    }
}

/// Builds the healthy store, corrupts it with `sql`, and expects `invariant` first, naming
/// `subject`.
async fn check(db: TestDb, invariant: Invariant, corrupt: fn(&Healthy) -> (Vec<String>, String)) {
    let healthy = healthy(&db).await;
    let (sql, subject) = corrupt(&healthy);
    db.tamper(&sql).await;
    let snapshot = db.store.ledger_snapshot().await.unwrap();
    expect_first(&snapshot, invariant, &subject);
}

fn expect_first(snapshot: &LedgerSnapshot, invariant: Invariant, subject: &str) {
    let report = ledger::verify(snapshot);
    assert!(!report.ok, "verify missed a {invariant:?} corruption");
    let first = report.first_violation.clone().unwrap();
    assert_eq!(
        (first.invariant, first.subject.as_str()),
        (invariant, subject),
        "first violation; all: {:#?}",
        report.violations
    );
}

const T: i64 = T0 + 100_000;

async fn healthy_store_verifies(db: TestDb) {
    let healthy = healthy(&db).await;
    let report = ledger::verify(&db.store.ledger_snapshot().await.unwrap());
    assert!(report.ok, "{:#?}", report.violations);
    assert_eq!(
        (report.entries, report.orders, report.refunds),
        (3, 2, 1),
        "capture + refund + late payment; orders a, b; one refund"
    );
    assert_eq!(healthy.refund.order_id, healthy.a.id);
}

async fn catches_unbalanced_entry_i1(db: TestDb) {
    check(db, Invariant::I1, |h| {
        let sql = format!(
            "UPDATE postings SET amount_minor = amount_minor + 1 WHERE entry_id = '{}' AND account = '{}'",
            h.capture, h.clearing
        );
        (vec![sql], h.capture.to_string())
    })
    .await;
}

async fn catches_drifted_balance_i2(db: TestDb) {
    check(db, Invariant::I2, |h| {
        let sql = format!(
            "UPDATE account_balances SET balance_minor = balance_minor + 5 WHERE account = '{}'",
            h.fees
        );
        (vec![sql], h.fees.clone())
    })
    .await;
}

/// A second capture for order `a` under another business key, balanced, with the stored
/// balances moved along so I2 stays clean. (I6 fires too — the payable grew — but later.)
async fn catches_duplicate_capture_i3(db: TestDb) {
    check(db, Invariant::I3, |h| {
        let sql = vec![
            format!(
                "INSERT INTO journal_entries (id, business_key, kind, order_id, refund_id, at_ms) \
                 VALUES ('je_dupcapture', 'capture:{}:again', 'capture', '{}', NULL, {T})",
                h.a.id, h.a.id
            ),
            format!(
                "INSERT INTO postings (entry_id, account, side, amount_minor, currency) VALUES \
                 ('je_dupcapture', '{}', 'debit', 10000, 'CNY'), ('je_dupcapture', '{}', 'credit', 10000, 'CNY')",
                h.clearing, h.payable
            ),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor + 10000 WHERE account IN ('{}', '{}')",
                h.clearing, h.payable
            ),
        ];
        (sql, h.a.id.to_string())
    })
    .await;
}

/// A second succeeded refund of 8 000 on order `a` (3 000 already refunded of 10 000), complete
/// with its history, its refund entry and moved balances, so I1–I3 and I5 stay clean and the
/// first violation is I4. I6 stays clean too (the payable fell by exactly the refund); I9 also
/// fires, later: the over-refund drives the merchant payable negative.
async fn catches_over_refund_i4(db: TestDb) {
    check(db, Invariant::I4, |h| {
        let sql = vec![
            format!(
                "INSERT INTO refunds (id, order_id, kind, merchant_id, channel, amount_minor, currency, reason, state, \
                 fee_refund_minor, channel_refund_no, created_at_ms, updated_at_ms, version) VALUES \
                 ('rfd_over', '{}', 'merchant', '{}', 'alipay', 8000, 'CNY', NULL, 'succeeded', 0, 'chr_over', {T}, {T}, 2)",
                h.a.id, h.merchant
            ),
            format!(
                "INSERT INTO transitions (entity, entity_id, from_state, to_state, event_key, source, at_ms) VALUES \
                 ('refund', 'rfd_over', NULL, 'pending', 'created', 'tamper', {T}), \
                 ('refund', 'rfd_over', 'pending', 'succeeded', 'succeeded', 'tamper', {T})"
            ),
            format!(
                "INSERT INTO journal_entries (id, business_key, kind, order_id, refund_id, at_ms) \
                 VALUES ('je_over', 'refund:rfd_over', 'refund', '{}', 'rfd_over', {T})",
                h.a.id
            ),
            format!(
                "INSERT INTO postings (entry_id, account, side, amount_minor, currency) VALUES \
                 ('je_over', '{}', 'debit', 8000, 'CNY'), ('je_over', '{}', 'credit', 8000, 'CNY')",
                h.payable, h.clearing
            ),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor - 8000 WHERE account IN ('{}', '{}')",
                h.payable, h.clearing
            ),
        ];
        (sql, h.a.id.to_string())
    })
    .await;
}

/// Closed order `b` set back to paying, with a history row closed → paying.
async fn catches_terminal_state_left_i5(db: TestDb) {
    check(db, Invariant::I5, |h| {
        let sql = vec![
            format!(
                "UPDATE orders SET state = 'paying', version = version + 1 WHERE id = '{}'",
                h.b.id
            ),
            format!(
                "INSERT INTO transitions (entity, entity_id, from_state, to_state, event_key, source, at_ms) \
                 VALUES ('order', '{}', 'closed', 'paying', 'reopen', 'tamper', {T})",
                h.b.id
            ),
        ];
        (sql, h.b.id.to_string())
    })
    .await;
}

/// The fee handed back to the merchant by an entry no business event explains: balanced
/// (I1), balances moved along (I2), a kind I3 does not count — only conservation breaks.
async fn catches_broken_conservation_i6(db: TestDb) {
    check(db, Invariant::I6, |h| {
        let sql = vec![
            format!(
                "INSERT INTO journal_entries (id, business_key, kind, order_id, refund_id, at_ms) \
                 VALUES ('je_gift', 'gift:{}', 'refund_reversal', '{}', NULL, {T})",
                h.a.id, h.a.id
            ),
            format!(
                "INSERT INTO postings (entry_id, account, side, amount_minor, currency) VALUES \
                 ('je_gift', '{}', 'debit', 60, 'CNY'), ('je_gift', '{}', 'credit', 60, 'CNY')",
                h.fees, h.payable
            ),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor - 60 WHERE account = '{}'",
                h.fees
            ),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor + 60 WHERE account = '{}'",
                h.payable
            ),
        ];
        (sql, h.payable.clone())
    })
    .await;
}

/// A fee of 8 000 on order `a` instead of 60, consistently in the order row, both fee-leg
/// postings and the stored balances: everything adds up (I1–I6) but the merchant payable is
/// 10 000 − 8 000 − 3 000 = −1 000.
async fn catches_negative_balance_i9(db: TestDb) {
    check(db, Invariant::I9, |h| {
        let sql = vec![
            format!(
                "UPDATE postings SET amount_minor = 8000 WHERE entry_id = '{}' \
                 AND (account = '{}' OR (account = '{}' AND side = 'debit'))",
                h.capture, h.fees, h.payable
            ),
            format!("UPDATE orders SET fee_minor = 8000 WHERE id = '{}'", h.a.id),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor - 7940 WHERE account = '{}'",
                h.payable
            ),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor + 7940 WHERE account = '{}'",
                h.fees
            ),
        ];
        (sql, h.payable.clone())
    })
    .await;
}

/// The schema's unique keys make a replay impossible to store (history event keys, ledger
/// business keys), so I8 is checked on snapshots read from the store and then doctored.
async fn catches_replays_i8(db: TestDb) {
    let h = healthy(&db).await;
    let pristine = db.store.ledger_snapshot().await.unwrap();

    // The refund's order event recorded twice, as a legal partially_refunded → partially_refunded
    // move so the history chain (I5) stays clean.
    let mut snapshot = pristine.clone();
    let last = snapshot
        .transitions
        .iter()
        .rfind(|t| t.entity == EntityKind::Order && t.entity_id == h.a.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(last.event_key, format!("refund:{}", h.refund.id));
    let mut again = last.clone();
    again.from_state = Some(last.to_state.clone());
    again.seq = snapshot.transitions.iter().map(|t| t.seq).max().unwrap() + 1;
    snapshot.transitions.push(again);
    expect_first(&snapshot, Invariant::I8, h.a.id.as_str());

    // The late payment booked twice (same business key, another entry id), stored balances
    // following the postings so I2 stays clean; I3 does not count late payments.
    let mut snapshot = pristine.clone();
    let mut twice = snapshot
        .entries
        .iter()
        .find(|e| e.business_key == format!("late_payment:{}", h.b.id))
        .cloned()
        .unwrap();
    twice.id = EntryId::parse("je_replayed").unwrap();
    snapshot.entries.push(twice);
    snapshot.cached_balances = derive_balances(&snapshot.entries)
        .into_iter()
        .map(|(account, balance)| (account.code(), balance))
        .collect();
    expect_first(&snapshot, Invariant::I8, "je_replayed");
}

/// Order `c` (4 000) closed, then paid late under the `refund` policy: the late payment and its
/// automatic refund in one change, then the refund succeeds. Suspense is back to zero, the
/// order untouched (still closed, no refund counters), the merchant's payable untouched.
async fn healthy_late_payment_refund_verifies(db: TestDb) {
    let h = healthy(&db).await;
    let store = &db.store;
    let ids = SeededEntropy::new(11);
    let c = new_order(&ids, &h.merchant, Channel::Alipay, cny(4_000), T);
    commit_ok(store, &create(&c)).await;
    let (c, change) = close(&c, T + 1_000);
    commit_ok(store, &change).await;
    let (refund, change) = late_payment_refunded(&ids, &c, T + 2_000);
    commit_ok(store, &change).await;
    assert_eq!(
        store.get_refund(&refund.id).await.unwrap(),
        Some(refund.clone())
    );
    assert_verifies(store).await;
    let (done, change) = late_refund_succeeded(&ids, &refund, T + 3_000);
    commit_ok(store, &change).await;
    assert_eq!(store.get_refund(&refund.id).await.unwrap(), Some(done));
    assert_eq!(store.get_order(&c.id).await.unwrap(), Some(c.clone()));
    assert_verifies(store).await;
    let report = ledger::verify(&store.ledger_snapshot().await.unwrap());
    assert_eq!((report.entries, report.orders, report.refunds), (5, 3, 2));
    // a: 10 000 − 3 000 refunded; b: 5 000 in suspense; c: in and out again.
    let clearing = Account::channel_clearing(Channel::Alipay, Currency::Cny);
    let suspense = Account::suspense(Channel::Alipay, Currency::Cny);
    let balances = derive_balances(&store.ledger_snapshot().await.unwrap().entries);
    assert_eq!(balances.get(&clearing), Some(&12_000));
    assert_eq!(balances.get(&suspense), Some(&5_000));
}

/// A late-payment refund of 6 000 succeeded on order `b`, which was paid 5 000 late — complete
/// with history, its entry out of suspense and moved balances, so I1–I3 stay clean; I9 fires
/// later (suspense −1 000).
async fn catches_late_refund_exceeding_the_late_payment_i4(db: TestDb) {
    check(db, Invariant::I4, |h| {
        let suspense = Account::suspense(Channel::Alipay, Currency::Cny).code();
        let sql = vec![
            format!(
                "INSERT INTO refunds (id, order_id, kind, merchant_id, channel, amount_minor, currency, reason, state, \
                 fee_refund_minor, channel_refund_no, created_at_ms, updated_at_ms, version) VALUES \
                 ('rfd_late', '{}', 'late_payment', '{}', 'alipay', 6000, 'CNY', NULL, 'succeeded', 0, 'chr_late', {T}, {T}, 2)",
                h.b.id, h.merchant
            ),
            format!(
                "INSERT INTO transitions (entity, entity_id, from_state, to_state, event_key, source, at_ms) VALUES \
                 ('refund', 'rfd_late', NULL, 'pending', 'created', 'tamper', {T}), \
                 ('refund', 'rfd_late', 'pending', 'succeeded', 'succeeded', 'tamper', {T})"
            ),
            format!(
                "INSERT INTO journal_entries (id, business_key, kind, order_id, refund_id, at_ms) \
                 VALUES ('je_late', 'refund:rfd_late', 'refund', '{}', 'rfd_late', {T})",
                h.b.id
            ),
            format!(
                "INSERT INTO postings (entry_id, account, side, amount_minor, currency) VALUES \
                 ('je_late', '{suspense}', 'debit', 6000, 'CNY'), ('je_late', '{}', 'credit', 6000, 'CNY')",
                h.clearing
            ),
            format!(
                "UPDATE account_balances SET balance_minor = balance_minor - 6000 WHERE account IN ('{suspense}', '{}')",
                h.clearing
            ),
        ];
        (sql, "rfd_late".to_owned())
    })
    .await;
}

/// A pending late-payment refund on order `a`, which was paid in time (no late payment).
async fn catches_late_refund_without_a_late_payment_i4(db: TestDb) {
    check(db, Invariant::I4, |h| {
        let sql = vec![
            format!(
                "INSERT INTO refunds (id, order_id, kind, merchant_id, channel, amount_minor, currency, reason, state, \
                 fee_refund_minor, channel_refund_no, created_at_ms, updated_at_ms, version) VALUES \
                 ('rfd_stray', '{}', 'late_payment', '{}', 'alipay', 1000, 'CNY', NULL, 'pending', 0, NULL, {T}, {T}, 1)",
                h.a.id, h.merchant
            ),
            format!(
                "INSERT INTO transitions (entity, entity_id, from_state, to_state, event_key, source, at_ms) VALUES \
                 ('refund', 'rfd_stray', NULL, 'pending', 'created', 'tamper', {T})"
            ),
        ];
        (sql, "rfd_stray".to_owned())
    })
    .await;
}
