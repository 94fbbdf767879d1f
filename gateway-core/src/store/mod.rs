//! The durable store: one implementation of the payment core's persistence, written once over
//! a narrow driver interface, with two drivers — SQLite (a file for the sandbox, in memory for
//! tests) and PostgreSQL (several gateway processes sharing one database).
//!
//! Every write goes through [`Store::commit`]: a [`Change`] — the order/refund rows, their
//! history rows, the ledger entry, the idempotency record, an alert — commits in one
//! transaction or not at all (architecture invariant 7). Concurrency control is by
//! compare-and-set on row versions and by unique keys (idempotency key, ledger business key,
//! history event key), so two processes sharing PostgreSQL can neither double-book nor
//! over-refund: the loser of a race sees [`CommitOutcome::VersionConflict`] and re-reads.

pub mod db;
pub mod postgres;
mod schema;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use determinism::UnixMillis;

use crate::ids::{AlertId, EntryId, MerchantId, OrderId, RefundId};
use crate::ledger::{
    Account, AccountBalance, EntryKind, JournalEntry, LedgerSnapshot, Posting, Side,
};
use crate::model::{Alert, EntityKind, Merchant, Order, Refund, RefundKind, Transition};
use crate::money::{Currency, Money};
use crate::state::{Channel, OrderState, PaymentMethod, RefundState};
use db::{Backend, Database, DbError, Row, SqlValue, Tx, TxMode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored row does not decode into the domain: the data was changed behind paysim's back.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

fn corrupt(table: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { table, detail }
}

/// A claim on an `Idempotency-Key`, inserted in the same transaction as the work it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub merchant_id: MerchantId,
    /// What the key guards, e.g. `create_order` or `create_refund:ord_…`.
    pub scope: String,
    pub key: String,
    /// SHA-256 of the canonical request body.
    pub request_hash: String,
    /// The resource the request creates.
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub resource_id: Option<String>,
    /// The response replayed to retries, once the first request finished.
    pub response: Option<(u16, String)>,
}

/// A new history row; the store assigns its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransition {
    pub entity: EntityKind,
    pub entity_id: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub event_key: String,
    pub source: String,
    pub at_ms: UnixMillis,
}

/// Everything one state change writes. Updates carry the version they were computed from.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub idempotency: Option<IdempotencyClaim>,
    pub insert_order: Option<Order>,
    /// The new order value; its `version` must be the stored version + 1.
    pub update_order: Option<Order>,
    pub insert_refund: Option<Refund>,
    /// The new refund value; its `version` must be the stored version + 1.
    pub update_refund: Option<Refund>,
    pub transitions: Vec<NewTransition>,
    pub entry: Option<JournalEntry>,
    pub alert: Option<Alert>,
}

/// How a commit ended. Anything but `Committed` rolled the whole change back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The idempotency key was already claimed.
    IdempotencyExists(IdempotencyRecord),
    /// Someone else changed the order or refund first: re-read and decide again.
    VersionConflict,
    /// The ledger already holds an entry with this business key: the event was booked.
    AlreadyBooked,
    /// The entity already recorded this event.
    EventReplayed,
    /// The entry would drive an account that forbids it below zero (I9).
    NegativeBalance {
        account: String,
        balance_minor: i64,
    },
}

/// How many times a transaction that lost to a concurrent one (SQLITE_BUSY, deadlock) is
/// retried before the error is returned.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<dyn Database>,
}

const ORDER_COLUMNS: &str = "id, merchant_id, channel, method, method_params, amount_minor, currency, subject, state, \
     refunded_minor, refund_reserved_minor, fee_minor, channel_trade_no, buyer_action, expires_at_ms, \
     created_at_ms, updated_at_ms, paid_at_ms, version";
const REFUND_COLUMNS: &str =
    "id, order_id, merchant_id, channel, amount_minor, currency, reason, state, \
     fee_refund_minor, channel_refund_no, created_at_ms, updated_at_ms, version, kind";
const TRANSITION_COLUMNS: &str =
    "seq, entity, entity_id, from_state, to_state, event_key, source, at_ms";

impl Store {
    pub fn new(db: Arc<dyn Database>) -> Self {
        Store { db }
    }

    /// Opens and migrates the database a URL names: `postgres://…` / `postgresql://…`,
    /// `sqlite::memory:`, or `sqlite://path` / a plain file path.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::new(Arc::new(
                postgres::PostgresDatabase::connect(url, None, 16).await?,
            ))
        } else if url == "sqlite::memory:" {
            Store::new(Arc::new(sqlite::SqliteDatabase::open_in_memory()?))
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            Store::new(Arc::new(sqlite::SqliteDatabase::open_file(Path::new(
                path,
            ))?))
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn database(&self) -> &Arc<dyn Database> {
        &self.db
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Applies pending migrations. Safe to run from several processes at once on PostgreSQL
    /// (an advisory lock serialises them).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let backend = self.db.backend();
        let lock = match backend {
            Backend::Postgres => "SELECT pg_advisory_xact_lock(727100);",
            Backend::Sqlite => "",
        };
        let begin = match backend {
            Backend::Postgres => "BEGIN;",
            Backend::Sqlite => "BEGIN IMMEDIATE;",
        };
        self.db
            .batch(&format!(
                "{begin} {lock} CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY); COMMIT;"
            ))
            .await?;
        for (version, sql) in schema::MIGRATIONS {
            if self.migration_applied(*version).await? {
                continue;
            }
            let script = format!(
                "{begin} {lock} {} INSERT INTO schema_migrations (version) VALUES ({version}); COMMIT;",
                schema::render(sql, backend)
            );
            if let Err(error) = self.db.batch(&script).await {
                // Another process may have applied it between our check and our lock.
                if backend == Backend::Sqlite {
                    let _ = self.db.batch("ROLLBACK").await;
                }
                if !self.migration_applied(*version).await? {
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    async fn migration_applied(&self, version: i64) -> Result<bool, StoreError> {
        let rows = self
            .read(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .query(
                            "SELECT version FROM schema_migrations WHERE version = $1",
                            &[version.into()],
                        )
                        .await?)
                })
            })
            .await?;
        Ok(!rows.is_empty())
    }

    /// Runs read-only work in one snapshot transaction.
    async fn read<T: Send>(
        &self,
        work: impl for<'a> FnOnce(&'a mut dyn Tx) -> determinism::BoxFuture<'a, Result<T, StoreError>>
            + Send,
    ) -> Result<T, StoreError> {
        let mut tx = self.db.begin(TxMode::Snapshot).await?;
        let result = work(tx.as_mut()).await;
        match result {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(error) => {
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }

    // ---------------------------------------------------------------- writes

    pub async fn ensure_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let mut tx = self.db.begin(TxMode::Write).await?;
        tx.execute(
            "INSERT INTO merchants (id, name, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &[merchant.id.as_str().into(), merchant.name.as_str().into(), merchant.created_at_ms.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Commits a change atomically, retrying transactions that lost a lock race.
    pub async fn commit(&self, change: &Change) -> Result<CommitOutcome, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.db.begin(TxMode::Write).await?;
            match apply(tx.as_mut(), change).await {
                Ok(CommitOutcome::Committed) => match tx.commit().await {
                    Ok(()) => return Ok(CommitOutcome::Committed),
                    Err(DbError::Conflict(_)) if attempt <= CONFLICT_RETRIES => continue,
                    Err(error) => return Err(error.into()),
                },
                Ok(other) => {
                    tx.rollback().await?;
                    return Ok(other);
                }
                Err(StoreError::Db(DbError::Conflict(_))) if attempt <= CONFLICT_RETRIES => {
                    let _ = tx.rollback().await;
                    continue;
                }
                Err(error) => {
                    let _ = tx.rollback().await;
                    return Err(error);
                }
            }
        }
    }

    /// Stores the response replayed to retries of an idempotent request.
    pub async fn finish_idempotency(
        &self,
        merchant_id: &MerchantId,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin(TxMode::Write).await?;
        tx.execute(
            "UPDATE idempotency_keys SET response_status = $1, response_body = $2 \
             WHERE merchant_id = $3 AND scope = $4 AND idem_key = $5 AND response_status IS NULL",
            &[
                i64::from(status).into(),
                body.into(),
                merchant_id.as_str().into(),
                scope.into(),
                key.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a finished response for a key that guarded no write (a refused request), unless
    /// the key is already taken; returns the record that holds.
    pub async fn record_idempotent_response(
        &self,
        claim: &IdempotencyClaim,
        status: u16,
        body: &str,
        now_ms: UnixMillis,
    ) -> Result<IdempotencyRecord, StoreError> {
        let mut tx = self.db.begin(TxMode::Write).await?;
        tx.execute(
            "INSERT INTO idempotency_keys (merchant_id, scope, idem_key, request_hash, resource_id, response_status, response_body, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (merchant_id, scope, idem_key) DO NOTHING",
            &[
                claim.merchant_id.as_str().into(),
                claim.scope.as_str().into(),
                claim.key.as_str().into(),
                claim.request_hash.as_str().into(),
                claim.resource_id.clone().into(),
                i64::from(status).into(),
                body.into(),
                now_ms.into(),
            ],
        )
        .await?;
        let record =
            load_idempotency(tx.as_mut(), &claim.merchant_id, &claim.scope, &claim.key).await?;
        tx.commit().await?;
        record.ok_or_else(|| StoreError::Corrupt {
            table: "idempotency_keys",
            detail: "record vanished".to_owned(),
        })
    }

    // ---------------------------------------------------------------- reads

    pub async fn get_merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT id, name, created_at_ms FROM merchants WHERE id = $1",
                        &[id.into()],
                    )
                    .await?;
                rows.first()
                    .map(|row| {
                        Ok(Merchant {
                            id: MerchantId::parse(row.str(0)?)
                                .map_err(|e| corrupt("merchants")(e.to_string()))?,
                            name: row.str(1)?.to_owned(),
                            created_at_ms: row.i64(2)?,
                        })
                    })
                    .transpose()
            })
        })
        .await
    }

    pub async fn get_order(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| Box::pin(async move { load_order(tx, &id).await }))
            .await
    }

    pub async fn get_refund(&self, id: &RefundId) -> Result<Option<Refund>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1"),
                        &[id.into()],
                    )
                    .await?;
                rows.first().map(refund_from_row).transpose()
            })
        })
        .await
    }

    pub async fn refunds_for_order(&self, id: &OrderId) -> Result<Vec<Refund>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE order_id = $1 ORDER BY created_at_ms, id"),
                        &[id.into()],
                    )
                    .await?;
                rows.iter().map(refund_from_row).collect()
            })
        })
        .await
    }

    pub async fn history(
        &self,
        entity: EntityKind,
        id: &str,
    ) -> Result<Vec<Transition>, StoreError> {
        let id = id.to_owned();
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!("SELECT {TRANSITION_COLUMNS} FROM transitions WHERE entity = $1 AND entity_id = $2 ORDER BY seq"),
                        &[entity.as_str().into(), id.into()],
                    )
                    .await?;
                rows.iter().map(transition_from_row).collect()
            })
        })
        .await
    }

    pub async fn get_idempotency(
        &self,
        merchant_id: &MerchantId,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (merchant_id, scope, key) = (merchant_id.clone(), scope.to_owned(), key.to_owned());
        self.read(move |tx| {
            Box::pin(async move { load_idempotency(tx, &merchant_id, &scope, &key).await })
        })
        .await
    }

    /// Orders still waiting for the buyer (created or paying), oldest first.
    pub async fn open_orders(&self, limit: i64) -> Result<Vec<Order>, StoreError> {
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT {ORDER_COLUMNS} FROM orders WHERE state IN ('created', 'paying') \
                             ORDER BY expires_at_ms, id LIMIT $1"
                        ),
                        &[limit.into()],
                    )
                    .await?;
                rows.iter().map(order_from_row).collect()
            })
        })
        .await
    }

    /// Pending refunds, oldest first: the scheduler asks the channel about them.
    pub async fn pending_refunds(&self, limit: i64) -> Result<Vec<Refund>, StoreError> {
        self.read(move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE state = 'pending' ORDER BY created_at_ms, id LIMIT $1"),
                        &[limit.into()],
                    )
                    .await?;
                rows.iter().map(refund_from_row).collect()
            })
        })
        .await
    }

    /// Every account with its balance derived from postings and the stored balance beside it.
    pub async fn account_balances(&self) -> Result<Vec<AccountBalance>, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                let derived = tx
                    .query(
                        "SELECT account, side, CAST(SUM(amount_minor) AS BIGINT) FROM postings GROUP BY account, side ORDER BY account, side",
                        &[],
                    )
                    .await?;
                let cached = tx.query("SELECT account, balance_minor FROM account_balances", &[]).await?;
                let mut balances: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                for row in &derived {
                    let code = row.str(0)?.to_owned();
                    let account = Account::parse(&code).ok_or_else(|| corrupt("postings")(format!("unknown account {code}")))?;
                    let side = Side::parse(row.str(1)?).ok_or_else(|| corrupt("postings")("unknown side".to_owned()))?;
                    let posting = Posting { account, side, amount_minor: row.i64(2)? };
                    balances.entry(code).or_insert((0, 0)).0 += posting.signed_effect();
                }
                for row in &cached {
                    balances.entry(row.str(0)?.to_owned()).or_insert((0, 0)).1 = row.i64(1)?;
                }
                balances
                    .into_iter()
                    .map(|(code, (balance_minor, cached_balance_minor))| {
                        let account = Account::parse(&code)
                            .ok_or_else(|| corrupt("account_balances")(format!("unknown account {code}")))?;
                        Ok(AccountBalance { account, balance_minor, cached_balance_minor })
                    })
                    .collect()
            })
        })
        .await
    }

    pub async fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                let rows = tx
                    .query("SELECT id, kind, subject_id, message, at_ms FROM alerts ORDER BY at_ms, id", &[])
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Alert {
                            id: AlertId::parse(row.str(0)?).map_err(|e| corrupt("alerts")(e.to_string()))?,
                            kind: row.str(1)?.to_owned(),
                            subject_id: row.str(2)?.to_owned(),
                            message: row.str(3)?.to_owned(),
                            at_ms: row.i64(4)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    /// One consistent read of everything `ledger::verify` checks.
    pub async fn ledger_snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        self.read(|tx| {
            Box::pin(async move {
                let entry_rows = tx
                    .query("SELECT id, business_key, kind, order_id, refund_id, at_ms FROM journal_entries ORDER BY at_ms, id", &[])
                    .await?;
                let posting_rows = tx
                    .query("SELECT entry_id, account, side, amount_minor, currency FROM postings ORDER BY seq", &[])
                    .await?;
                let mut postings: BTreeMap<String, Vec<Posting>> = BTreeMap::new();
                for row in &posting_rows {
                    let code = row.str(1)?;
                    let account = Account::parse(code).ok_or_else(|| corrupt("postings")(format!("unknown account {code}")))?;
                    let side = Side::parse(row.str(2)?).ok_or_else(|| corrupt("postings")("unknown side".to_owned()))?;
                    postings
                        .entry(row.str(0)?.to_owned())
                        .or_default()
                        .push(Posting { account, side, amount_minor: row.i64(3)? });
                }
                let mut entries = Vec::with_capacity(entry_rows.len());
                for row in &entry_rows {
                    let id = row.str(0)?.to_owned();
                    entries.push(JournalEntry {
                        id: EntryId::parse(&id).map_err(|e| corrupt("journal_entries")(e.to_string()))?,
                        business_key: row.str(1)?.to_owned(),
                        kind: EntryKind::parse(row.str(2)?)
                            .ok_or_else(|| corrupt("journal_entries")("unknown kind".to_owned()))?,
                        order_id: OrderId::parse(row.str(3)?).map_err(|e| corrupt("journal_entries")(e.to_string()))?,
                        refund_id: row
                            .opt_str(4)?
                            .map(RefundId::parse)
                            .transpose()
                            .map_err(|e| corrupt("journal_entries")(e.to_string()))?,
                        at_ms: row.i64(5)?,
                        postings: postings.remove(&id).unwrap_or_default(),
                    });
                }
                let cached_balances = tx
                    .query("SELECT account, balance_minor FROM account_balances", &[])
                    .await?
                    .iter()
                    .map(|row| Ok((row.str(0)?.to_owned(), row.i64(1)?)))
                    .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
                let orders = tx
                    .query(&format!("SELECT {ORDER_COLUMNS} FROM orders ORDER BY id"), &[])
                    .await?
                    .iter()
                    .map(order_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let refunds = tx
                    .query(&format!("SELECT {REFUND_COLUMNS} FROM refunds ORDER BY id"), &[])
                    .await?
                    .iter()
                    .map(refund_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let transitions = tx
                    .query(&format!("SELECT {TRANSITION_COLUMNS} FROM transitions ORDER BY seq"), &[])
                    .await?
                    .iter()
                    .map(transition_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(LedgerSnapshot { entries, cached_balances, orders, refunds, transitions })
            })
        })
        .await
    }
}

// -------------------------------------------------------------------- the write path

async fn apply(tx: &mut dyn Tx, change: &Change) -> Result<CommitOutcome, StoreError> {
    if let Some(claim) = &change.idempotency {
        let inserted = tx
            .execute(
                "INSERT INTO idempotency_keys (merchant_id, scope, idem_key, request_hash, resource_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, scope, idem_key) DO NOTHING",
                &[
                    claim.merchant_id.as_str().into(),
                    claim.scope.as_str().into(),
                    claim.key.as_str().into(),
                    claim.request_hash.as_str().into(),
                    claim.resource_id.clone().into(),
                    change_time(change).into(),
                ],
            )
            .await?;
        if inserted == 0 {
            let existing = load_idempotency(tx, &claim.merchant_id, &claim.scope, &claim.key)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "idempotency_keys",
                    detail: "conflicting key not found".to_owned(),
                })?;
            return Ok(CommitOutcome::IdempotencyExists(existing));
        }
    }
    if let Some(order) = &change.insert_order {
        tx.execute(
            &format!("INSERT INTO orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"),
            &order_params(order)?,
        )
        .await?;
    }
    if let Some(order) = &change.update_order {
        let mut params = order_params(order)?;
        params.push((order.version - 1).into());
        let updated = tx
            .execute(
                "UPDATE orders SET merchant_id = $2, channel = $3, method = $4, method_params = $5, amount_minor = $6, \
                 currency = $7, subject = $8, state = $9, refunded_minor = $10, refund_reserved_minor = $11, fee_minor = $12, \
                 channel_trade_no = $13, buyer_action = $14, expires_at_ms = $15, created_at_ms = $16, updated_at_ms = $17, \
                 paid_at_ms = $18, version = $19 WHERE id = $1 AND version = $20",
                &params,
            )
            .await?;
        if updated == 0 {
            return Ok(CommitOutcome::VersionConflict);
        }
    }
    if let Some(refund) = &change.insert_refund {
        tx.execute(
            &format!("INSERT INTO refunds ({REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"),
            &refund_params(refund),
        )
        .await?;
    }
    if let Some(refund) = &change.update_refund {
        let mut params = refund_params(refund);
        params.push((refund.version - 1).into());
        let updated = tx
            .execute(
                "UPDATE refunds SET order_id = $2, merchant_id = $3, channel = $4, amount_minor = $5, currency = $6, \
                 reason = $7, state = $8, fee_refund_minor = $9, channel_refund_no = $10, created_at_ms = $11, \
                 updated_at_ms = $12, version = $13, kind = $14 WHERE id = $1 AND version = $15",
                &params,
            )
            .await?;
        if updated == 0 {
            return Ok(CommitOutcome::VersionConflict);
        }
    }
    if let Some(entry) = &change.entry {
        if let Some(outcome) = book(tx, entry).await? {
            return Ok(outcome);
        }
    }
    for row in &change.transitions {
        let inserted = tx
            .execute(
                "INSERT INTO transitions (entity, entity_id, from_state, to_state, event_key, source, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (entity, entity_id, event_key) DO NOTHING",
                &[
                    row.entity.as_str().into(),
                    row.entity_id.as_str().into(),
                    row.from_state.clone().into(),
                    row.to_state.as_str().into(),
                    row.event_key.as_str().into(),
                    row.source.as_str().into(),
                    row.at_ms.into(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(CommitOutcome::EventReplayed);
        }
    }
    if let Some(alert) = &change.alert {
        tx.execute(
            "INSERT INTO alerts (id, kind, subject_id, message, at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, subject_id) DO NOTHING",
            &[
                alert.id.as_str().into(),
                alert.kind.as_str().into(),
                alert.subject_id.as_str().into(),
                alert.message.as_str().into(),
                alert.at_ms.into(),
            ],
        )
        .await?;
    }
    Ok(CommitOutcome::Committed)
}

fn change_time(change: &Change) -> UnixMillis {
    change
        .transitions
        .first()
        .map(|t| t.at_ms)
        .or_else(|| change.insert_order.as_ref().map(|o| o.created_at_ms))
        .or_else(|| change.insert_refund.as_ref().map(|r| r.created_at_ms))
        .unwrap_or(0)
}

/// Books a journal entry: refuses a duplicate business key and a balance below zero.
async fn book(tx: &mut dyn Tx, entry: &JournalEntry) -> Result<Option<CommitOutcome>, StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO journal_entries (id, business_key, kind, order_id, refund_id, at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (business_key) DO NOTHING",
            &[
                entry.id.as_str().into(),
                entry.business_key.as_str().into(),
                entry.kind.as_str().into(),
                entry.order_id.as_str().into(),
                entry.refund_id.as_ref().map(|r| r.as_str().to_owned()).into(),
                entry.at_ms.into(),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(Some(CommitOutcome::AlreadyBooked));
    }
    // Net effect per account, applied in account order so concurrent writers lock balance rows
    // in the same order (no deadlocks on PostgreSQL).
    let mut effects: BTreeMap<String, i64> = BTreeMap::new();
    for posting in &entry.postings {
        tx.execute(
            "INSERT INTO postings (entry_id, account, side, amount_minor, currency) VALUES ($1, $2, $3, $4, $5)",
            &[
                entry.id.as_str().into(),
                posting.account.code().into(),
                posting.side.as_str().into(),
                posting.amount_minor.into(),
                posting.account.currency.code().into(),
            ],
        )
        .await?;
        *effects.entry(posting.account.code()).or_insert(0) += posting.signed_effect();
    }
    for (code, delta) in effects {
        let rows = tx
            .query(
                "INSERT INTO account_balances (account, balance_minor) VALUES ($1, $2) \
                 ON CONFLICT (account) DO UPDATE SET balance_minor = account_balances.balance_minor + excluded.balance_minor \
                 RETURNING balance_minor",
                &[code.as_str().into(), delta.into()],
            )
            .await?;
        let balance = rows.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0);
        let forbids = Account::parse(&code).is_none_or(|a| a.kind.forbids_negative());
        if forbids && balance < 0 {
            return Ok(Some(CommitOutcome::NegativeBalance {
                account: code,
                balance_minor: balance,
            }));
        }
    }
    Ok(None)
}

async fn load_order(tx: &mut dyn Tx, id: &str) -> Result<Option<Order>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
            &[id.into()],
        )
        .await?;
    rows.first().map(order_from_row).transpose()
}

async fn load_idempotency(
    tx: &mut dyn Tx,
    merchant_id: &MerchantId,
    scope: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let rows = tx
        .query(
            "SELECT request_hash, resource_id, response_status, response_body FROM idempotency_keys \
             WHERE merchant_id = $1 AND scope = $2 AND idem_key = $3",
            &[merchant_id.as_str().into(), scope.into(), key.into()],
        )
        .await?;
    rows.first()
        .map(|row| {
            let response = match (row.opt_i64(2)?, row.opt_str(3)?) {
                (Some(status), Some(body)) => Some((
                    u16::try_from(status)
                        .map_err(|e| corrupt("idempotency_keys")(e.to_string()))?,
                    body.to_owned(),
                )),
                _ => None,
            };
            Ok(IdempotencyRecord {
                request_hash: row.str(0)?.to_owned(),
                resource_id: row.opt_str(1)?.map(str::to_owned),
                response,
            })
        })
        .transpose()
}

// -------------------------------------------------------------------- row mapping

fn order_params(order: &Order) -> Result<Vec<SqlValue>, StoreError> {
    let params = serde_json::to_string(&order.method_params)
        .map_err(|e| corrupt("orders")(e.to_string()))?;
    let action = order
        .buyer_action
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| corrupt("orders")(e.to_string()))?;
    Ok(vec![
        order.id.as_str().into(),
        order.merchant_id.as_str().into(),
        order.channel.as_str().into(),
        order.method.as_str().into(),
        params.into(),
        order.amount.minor().into(),
        order.amount.currency().code().into(),
        order.subject.as_str().into(),
        order.state.as_str().into(),
        order.refunded_minor.into(),
        order.refund_reserved_minor.into(),
        order.fee_minor.into(),
        order.channel_trade_no.clone().into(),
        action.into(),
        order.expires_at_ms.into(),
        order.created_at_ms.into(),
        order.updated_at_ms.into(),
        order.paid_at_ms.into(),
        order.version.into(),
    ])
}

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    let bad = corrupt("orders");
    let currency: Currency = row
        .str(6)?
        .parse()
        .map_err(|e: crate::money::MoneyError| bad(e.to_string()))?;
    Ok(Order {
        id: OrderId::parse(row.str(0)?).map_err(|e| bad(e.to_string()))?,
        merchant_id: MerchantId::parse(row.str(1)?).map_err(|e| bad(e.to_string()))?,
        channel: Channel::parse(row.str(2)?).ok_or_else(|| bad("unknown channel".to_owned()))?,
        method: PaymentMethod::parse(row.str(3)?)
            .ok_or_else(|| bad("unknown method".to_owned()))?,
        method_params: serde_json::from_str(row.str(4)?).map_err(|e| bad(e.to_string()))?,
        amount: Money::from_minor(row.i64(5)?, currency),
        subject: row.str(7)?.to_owned(),
        state: OrderState::parse(row.str(8)?)
            .ok_or_else(|| bad(format!("unknown state {:?}", row.str(8))))?,
        refunded_minor: row.i64(9)?,
        refund_reserved_minor: row.i64(10)?,
        fee_minor: row.i64(11)?,
        channel_trade_no: row.opt_str(12)?.map(str::to_owned),
        buyer_action: row
            .opt_str(13)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        expires_at_ms: row.i64(14)?,
        created_at_ms: row.i64(15)?,
        updated_at_ms: row.i64(16)?,
        paid_at_ms: row.opt_i64(17)?,
        version: row.i64(18)?,
    })
}

fn refund_params(refund: &Refund) -> Vec<SqlValue> {
    vec![
        refund.id.as_str().into(),
        refund.order_id.as_str().into(),
        refund.merchant_id.as_str().into(),
        refund.channel.as_str().into(),
        refund.amount.minor().into(),
        refund.amount.currency().code().into(),
        refund.reason.clone().into(),
        refund.state.as_str().into(),
        refund.fee_refund_minor.into(),
        refund.channel_refund_no.clone().into(),
        refund.created_at_ms.into(),
        refund.updated_at_ms.into(),
        refund.version.into(),
        refund.kind.as_str().into(),
    ]
}

fn refund_from_row(row: &Row) -> Result<Refund, StoreError> {
    let bad = corrupt("refunds");
    let currency: Currency = row
        .str(5)?
        .parse()
        .map_err(|e: crate::money::MoneyError| bad(e.to_string()))?;
    Ok(Refund {
        id: RefundId::parse(row.str(0)?).map_err(|e| bad(e.to_string()))?,
        order_id: OrderId::parse(row.str(1)?).map_err(|e| bad(e.to_string()))?,
        kind: RefundKind::parse(row.str(13)?)
            .ok_or_else(|| bad(format!("unknown refund kind {:?}", row.str(13))))?,
        merchant_id: MerchantId::parse(row.str(2)?).map_err(|e| bad(e.to_string()))?,
        channel: Channel::parse(row.str(3)?).ok_or_else(|| bad("unknown channel".to_owned()))?,
        amount: Money::from_minor(row.i64(4)?, currency),
        reason: row.opt_str(6)?.map(str::to_owned),
        state: RefundState::parse(row.str(7)?).ok_or_else(|| bad("unknown state".to_owned()))?,
        fee_refund_minor: row.i64(8)?,
        channel_refund_no: row.opt_str(9)?.map(str::to_owned),
        created_at_ms: row.i64(10)?,
        updated_at_ms: row.i64(11)?,
        version: row.i64(12)?,
    })
}

fn transition_from_row(row: &Row) -> Result<Transition, StoreError> {
    let bad = corrupt("transitions");
    Ok(Transition {
        seq: row.i64(0)?,
        entity: EntityKind::parse(row.str(1)?).ok_or_else(|| bad("unknown entity".to_owned()))?,
        entity_id: row.str(2)?.to_owned(),
        from_state: row.opt_str(3)?.map(str::to_owned),
        to_state: row.str(4)?.to_owned(),
        event_key: row.str(5)?.to_owned(),
        source: row.str(6)?.to_owned(),
        at_ms: row.i64(7)?,
    })
}
