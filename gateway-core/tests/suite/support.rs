//! Test support: fresh migrated stores for each backend, and builders for the `Change` of each
//! business step (create, pay, close, late payment, refund requested / succeeded / abnormal /
//! failed) so every test books the same shapes the gateway does.

use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};

use determinism::{Entropy, EntropyExt, OsEntropy, SeededEntropy, UnixMillis};
use gateway_core::ids::{AlertId, EntryId, MerchantId, OrderId, RefundId};
use gateway_core::ledger::{self, entries};
use gateway_core::model::{Alert, EntityKind, Merchant, MethodParams, Order, Refund, RefundKind};
use gateway_core::money::{Currency, Money};
use gateway_core::state::{Channel, OrderState, PaymentMethod, RefundState};
use gateway_core::store::db::{Backend, TxMode};
use gateway_core::store::postgres::PostgresDatabase;
use gateway_core::store::sqlite::SqliteDatabase;
use gateway_core::store::{Change, CommitOutcome, NewTransition, Store};

pub const DATABASE_URL_VAR: &str = "PAYSIM_TEST_DATABASE_URL";

/// 2026-01-01T00:00:00Z: business time of every fixture.
pub const T0: UnixMillis = 1_767_225_600_000;

// ------------------------------------------------------------------ backends

/// A fresh, migrated store, and how to reach the same database from a second "process".
#[derive(Clone)]
pub struct TestDb {
    pub store: Store,
    postgres: Option<PostgresTarget>,
}

#[derive(Clone)]
struct PostgresTarget {
    url: String,
    schema: String,
}

impl TestDb {
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// The same database as a second gateway process sees it: on PostgreSQL a separate pool
    /// over the same schema; on SQLite in memory the one database (there is only one
    /// connection to it, as in a single sandbox process).
    pub async fn second_process(&self) -> Store {
        match &self.postgres {
            None => self.store.clone(),
            Some(target) => Store::new(Arc::new(
                PostgresDatabase::connect(&target.url, Some(&target.schema), 8)
                    .await
                    .unwrap_or_else(|e| panic!("second pool on {}: {e}", target.schema)),
            )),
        }
    }

    /// Runs raw SQL in one write transaction: how the corruption tests tamper with the data
    /// behind the store's back.
    pub async fn tamper(&self, statements: &[String]) {
        let mut tx = self.store.database().begin(TxMode::Write).await.unwrap();
        for sql in statements {
            tx.execute(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("tampering with {sql:?}: {e}"));
        }
        tx.commit().await.unwrap();
    }
}

/// The PostgreSQL URL, when the environment names one. Says once, on the real stderr (not the
/// captured test output), when PostgreSQL is skipped.
pub fn postgres_url() -> Option<String> {
    static SKIP_NOTICE: Once = Once::new();
    let url = std::env::var(DATABASE_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        SKIP_NOTICE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL store suite skipped: {DATABASE_URL_VAR} not set"
            );
        });
    }
    url
}

pub async fn sqlite_in_memory() -> TestDb {
    let store = Store::new(Arc::new(SqliteDatabase::open_in_memory().unwrap()));
    store.migrate().await.unwrap();
    TestDb {
        store,
        postgres: None,
    }
}

/// A name unique across test processes sharing one server or temp dir: process id, a counter
/// and a random token from a seeded generator whose seed is printed (only names depend on it).
pub fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static NAMES: OnceLock<SeededEntropy> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let seed = OsEntropy.next_u64();
        println!("store suite schema names SEED={seed}");
        SeededEntropy::new(seed)
    });
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        names.token(8)
    )
}

/// A fresh schema on the server `url` names, migrated. An unreachable server fails the test:
/// a set URL is a promise that PostgreSQL is there.
pub async fn postgres(url: &str) -> TestDb {
    let schema = unique_name();
    let database = PostgresDatabase::connect(url, Some(&schema), 8)
        .await
        .unwrap_or_else(|e| {
            panic!("{DATABASE_URL_VAR}={url} is set but PostgreSQL cannot be used: {e}")
        });
    let store = Store::new(Arc::new(database));
    if let Err(error) = store.migrate().await {
        let _ = store
            .database()
            .batch(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
        panic!("migrating PostgreSQL schema {schema}: {error}");
    }
    TestDb {
        store,
        postgres: Some(PostgresTarget {
            url: url.to_owned(),
            schema,
        }),
    }
}

/// Runs `test` on a fresh SQLite in-memory store and, when configured, on a fresh PostgreSQL
/// schema. Each run is a task of its own so a failure can be re-raised naming the backend; the
/// PostgreSQL schema is dropped afterwards, pass or fail (best effort).
#[allow(
    clippy::disallowed_methods,
    reason = "the test body runs as a task so its panic can be caught and attributed to a backend"
)]
pub async fn on_each_backend<F, Fut>(name: &str, test: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut targets = vec![None];
    if let Some(url) = postgres_url() {
        targets.push(Some(url));
    }
    for target in targets {
        let db = match &target {
            None => sqlite_in_memory().await,
            Some(url) => postgres(url).await,
        };
        let backend = db.backend();
        let cleanup = db.clone();
        let outcome = tokio::spawn(test(db)).await;
        if let Some(pg) = &cleanup.postgres {
            let _ = cleanup
                .store
                .database()
                .batch(&format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema))
                .await;
        }
        if let Err(error) = outcome {
            let message = if error.is_panic() {
                let payload = error.into_panic();
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "non-string panic".to_owned())
            } else {
                error.to_string()
            };
            panic!("store test `{name}` failed on {backend}: {message}");
        }
    }
}

// ------------------------------------------------------------------ fixtures

pub fn merchant_id(name: &str) -> MerchantId {
    MerchantId::parse(&format!("mch_{name}")).unwrap()
}

pub async fn ensure_merchant(store: &Store, id: &MerchantId) {
    store
        .ensure_merchant(&Merchant {
            id: id.clone(),
            name: format!("merchant {id}"),
            created_at_ms: T0,
        })
        .await
        .unwrap();
}

/// Commits and insists on `Committed`.
pub async fn commit_ok(store: &Store, change: &Change) {
    let outcome = store.commit(change).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Committed, "committing {change:#?}");
}

pub fn new_order(
    ids: &dyn Entropy,
    merchant: &MerchantId,
    channel: Channel,
    amount: Money,
    at_ms: UnixMillis,
) -> Order {
    Order {
        id: OrderId::generate(ids),
        merchant_id: merchant.clone(),
        channel,
        method: PaymentMethod::Qr,
        method_params: MethodParams::default(),
        amount,
        subject: "suite order".to_owned(),
        state: OrderState::Created,
        refunded_minor: 0,
        refund_reserved_minor: 0,
        fee_minor: 0,
        channel_trade_no: None,
        buyer_action: None,
        expires_at_ms: at_ms + 15 * 60 * 1000,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        paid_at_ms: None,
        version: 1,
    }
}

pub fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::Cny)
}

pub fn history_row(
    entity: EntityKind,
    id: &str,
    from: Option<&str>,
    to: &str,
    event_key: &str,
    at_ms: UnixMillis,
) -> NewTransition {
    NewTransition {
        entity,
        entity_id: id.to_owned(),
        from_state: from.map(str::to_owned),
        to_state: to.to_owned(),
        event_key: event_key.to_owned(),
        source: "suite".to_owned(),
        at_ms,
    }
}

fn order_row(order: &Order, to: OrderState, event_key: &str, at_ms: UnixMillis) -> NewTransition {
    history_row(
        EntityKind::Order,
        order.id.as_str(),
        Some(order.state.as_str()),
        to.as_str(),
        event_key,
        at_ms,
    )
}

fn refund_row(
    refund: &Refund,
    to: RefundState,
    event_key: &str,
    at_ms: UnixMillis,
) -> NewTransition {
    history_row(
        EntityKind::Refund,
        refund.id.as_str(),
        Some(refund.state.as_str()),
        to.as_str(),
        event_key,
        at_ms,
    )
}

fn next_order(order: &Order, at_ms: UnixMillis) -> Order {
    let mut next = order.clone();
    next.version += 1;
    next.updated_at_ms = at_ms;
    next
}

fn next_refund(refund: &Refund, at_ms: UnixMillis) -> Refund {
    let mut next = refund.clone();
    next.version += 1;
    next.updated_at_ms = at_ms;
    next
}

/// The order row and its creation history row.
pub fn create(order: &Order) -> Change {
    Change {
        insert_order: Some(order.clone()),
        transitions: vec![history_row(
            EntityKind::Order,
            order.id.as_str(),
            None,
            OrderState::Created.as_str(),
            "created",
            order.created_at_ms,
        )],
        ..Change::default()
    }
}

/// The buyer paid: created → paid with its capture entry.
pub fn pay(ids: &dyn Entropy, order: &Order, fee_minor: i64, at_ms: UnixMillis) -> (Order, Change) {
    let mut paid = next_order(order, at_ms);
    paid.state = OrderState::Paid;
    paid.fee_minor = fee_minor;
    paid.paid_at_ms = Some(at_ms);
    paid.channel_trade_no = Some(format!("trade_{}", order.id));
    let fee = Money::from_minor(fee_minor, order.amount.currency());
    let change = Change {
        update_order: Some(paid.clone()),
        transitions: vec![order_row(order, OrderState::Paid, "payment", at_ms)],
        entry: Some(entries::capture(EntryId::generate(ids), &paid, fee, at_ms)),
        ..Change::default()
    };
    (paid, change)
}

/// Closed unpaid: created → closed.
pub fn close(order: &Order, at_ms: UnixMillis) -> (Order, Change) {
    let mut closed = next_order(order, at_ms);
    closed.state = OrderState::Closed;
    let change = Change {
        update_order: Some(closed.clone()),
        transitions: vec![order_row(order, OrderState::Closed, "closed", at_ms)],
        ..Change::default()
    };
    (closed, change)
}

/// Money arrived for a closed order: booked to suspense, an alert raised, the order untouched.
pub fn late_payment(ids: &dyn Entropy, order: &Order, at_ms: UnixMillis) -> Change {
    Change {
        entry: Some(entries::late_payment(EntryId::generate(ids), order, at_ms)),
        alert: Some(Alert {
            id: AlertId::generate(ids),
            kind: "late_payment".to_owned(),
            subject_id: order.id.to_string(),
            message: "paid after close".to_owned(),
            at_ms,
        }),
        ..Change::default()
    }
}

/// Money arrived for a closed order under the `refund` policy: the late payment as above, and
/// in the same change the automatic refund of the whole amount (kind `late_payment`, pending,
/// with its creation row); the order is untouched.
pub fn late_payment_refunded(
    ids: &dyn Entropy,
    order: &Order,
    at_ms: UnixMillis,
) -> (Refund, Change) {
    let refund = Refund {
        id: RefundId::generate(ids),
        order_id: order.id.clone(),
        kind: RefundKind::LatePayment,
        merchant_id: order.merchant_id.clone(),
        channel: order.channel,
        amount: order.amount,
        reason: Some("automatic refund of a payment after close".to_owned()),
        state: RefundState::Pending,
        fee_refund_minor: 0,
        channel_refund_no: None,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        version: 1,
    };
    let mut change = late_payment(ids, order, at_ms);
    change.insert_refund = Some(refund.clone());
    change.transitions.push(history_row(
        EntityKind::Refund,
        refund.id.as_str(),
        None,
        RefundState::Pending.as_str(),
        "created",
        at_ms,
    ));
    (refund, change)
}

/// The channel completed a late payment's automatic refund: the money leaves suspense; only
/// the refund row moves.
pub fn late_refund_succeeded(
    ids: &dyn Entropy,
    refund: &Refund,
    at_ms: UnixMillis,
) -> (Refund, Change) {
    let mut done = next_refund(refund, at_ms);
    done.state = RefundState::Succeeded;
    done.channel_refund_no = Some(format!("chr_{}", refund.id));
    let change = Change {
        update_refund: Some(done.clone()),
        transitions: vec![refund_row(
            refund,
            RefundState::Succeeded,
            "succeeded",
            at_ms,
        )],
        entry: Some(entries::refund(EntryId::generate(ids), &done, true, at_ms)),
        ..Change::default()
    };
    (done, change)
}

/// A refund requested: its amount reserved on the order, the refund row pending.
pub fn request_refund(
    ids: &dyn Entropy,
    order: &Order,
    amount_minor: i64,
    at_ms: UnixMillis,
) -> (Order, Refund, Change) {
    let refund = Refund {
        id: RefundId::generate(ids),
        order_id: order.id.clone(),
        kind: RefundKind::Merchant,
        merchant_id: order.merchant_id.clone(),
        channel: order.channel,
        amount: Money::from_minor(amount_minor, order.amount.currency()),
        reason: Some("suite refund".to_owned()),
        state: RefundState::Pending,
        // The store suite books refunds without a fee share (the service computes shares;
        // the e2e suite covers them), so a full refund of a fee-bearing order meets I9.
        fee_refund_minor: 0,
        channel_refund_no: None,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        version: 1,
    };
    let mut reserved = next_order(order, at_ms);
    reserved.refund_reserved_minor += amount_minor;
    let change = Change {
        update_order: Some(reserved.clone()),
        insert_refund: Some(refund.clone()),
        transitions: vec![history_row(
            EntityKind::Refund,
            refund.id.as_str(),
            None,
            RefundState::Pending.as_str(),
            "created",
            at_ms,
        )],
        ..Change::default()
    };
    (reserved, refund, change)
}

/// The channel completed a pending or abnormal refund.
pub fn refund_succeeded(
    ids: &dyn Entropy,
    order: &Order,
    refund: &Refund,
    at_ms: UnixMillis,
) -> (Order, Refund, Change) {
    let amount = refund.amount.minor();
    let mut done = next_refund(refund, at_ms);
    done.state = RefundState::Succeeded;
    done.channel_refund_no = Some(format!("chr_{}", refund.id));
    let mut updated = next_order(order, at_ms);
    updated.refund_reserved_minor -= amount;
    updated.refunded_minor += amount;
    updated.state = if updated.refunded_minor == order.amount.minor() {
        OrderState::Refunded
    } else {
        OrderState::PartiallyRefunded
    };
    let from_suspense = refund.state == RefundState::Abnormal;
    let change = Change {
        update_order: Some(updated.clone()),
        update_refund: Some(done.clone()),
        transitions: vec![
            refund_row(refund, RefundState::Succeeded, "succeeded", at_ms),
            order_row(
                order,
                updated.state,
                &format!("refund:{}", refund.id),
                at_ms,
            ),
        ],
        entry: Some(entries::refund(
            EntryId::generate(ids),
            &done,
            from_suspense,
            at_ms,
        )),
        ..Change::default()
    };
    (updated, done, change)
}

/// The channel could not complete a pending refund: the money is parked in suspense.
pub fn refund_abnormal(ids: &dyn Entropy, refund: &Refund, at_ms: UnixMillis) -> (Refund, Change) {
    let mut parked = next_refund(refund, at_ms);
    parked.state = RefundState::Abnormal;
    let change = Change {
        update_refund: Some(parked.clone()),
        transitions: vec![refund_row(refund, RefundState::Abnormal, "abnormal", at_ms)],
        entry: Some(entries::refund_parked(
            EntryId::generate(ids),
            &parked,
            at_ms,
        )),
        alert: Some(Alert {
            id: AlertId::generate(ids),
            kind: "refund_abnormal".to_owned(),
            subject_id: refund.id.to_string(),
            message: "refund parked in suspense".to_owned(),
            at_ms,
        }),
        ..Change::default()
    };
    (parked, change)
}

/// A pending or abnormal refund failed for good: the reservation is released, and parked
/// money goes back to the merchant.
pub fn refund_failed(
    ids: &dyn Entropy,
    order: &Order,
    refund: &Refund,
    at_ms: UnixMillis,
) -> (Order, Refund, Change) {
    let mut failed = next_refund(refund, at_ms);
    failed.state = RefundState::Failed;
    let mut released = next_order(order, at_ms);
    released.refund_reserved_minor -= refund.amount.minor();
    let entry = (refund.state == RefundState::Abnormal)
        .then(|| entries::refund_reversal(EntryId::generate(ids), &failed, at_ms));
    let change = Change {
        update_order: Some(released.clone()),
        update_refund: Some(failed.clone()),
        transitions: vec![refund_row(refund, RefundState::Failed, "failed", at_ms)],
        entry,
        ..Change::default()
    };
    (released, failed, change)
}

/// Asserts the ledger of `store` verifies clean, printing every violation otherwise.
pub async fn assert_verifies(store: &Store) {
    let snapshot = store.ledger_snapshot().await.unwrap();
    let report = ledger::verify(&snapshot);
    assert!(
        report.ok,
        "ledger verify found violations: {:#?}",
        report.violations
    );
}
