//! Migrations, applied in order on start. The SQL is shared by both backends except the
//! auto-increment key, spelled per backend.

use super::db::Backend;

/// `(version, sql)`; `{AUTO_PK}` becomes the backend's auto-increment primary key.
pub const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r"
CREATE TABLE merchants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id),
    channel TEXT NOT NULL,
    method TEXT NOT NULL,
    method_params TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    refund_reserved_minor BIGINT NOT NULL,
    fee_minor BIGINT NOT NULL,
    channel_trade_no TEXT,
    buyer_action TEXT,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    paid_at_ms BIGINT,
    version BIGINT NOT NULL,
    CHECK (refunded_minor >= 0 AND refund_reserved_minor >= 0
           AND refunded_minor + refund_reserved_minor <= amount_minor)
);
CREATE INDEX orders_open ON orders (state, expires_at_ms);
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    -- 'merchant' (through the API) or 'late_payment' (the automatic refund of a payment after close)
    kind TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    reason TEXT,
    state TEXT NOT NULL,
    fee_refund_minor BIGINT NOT NULL CHECK (fee_refund_minor >= 0),
    channel_refund_no TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX refunds_by_order ON refunds (order_id);
CREATE TABLE transitions (
    seq {AUTO_PK},
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    event_key TEXT NOT NULL,
    source TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    UNIQUE (entity, entity_id, event_key)
);
CREATE TABLE idempotency_keys (
    merchant_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    resource_id TEXT,
    response_status BIGINT,
    response_body TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, scope, idem_key)
);
CREATE TABLE journal_entries (
    id TEXT PRIMARY KEY,
    business_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    refund_id TEXT,
    at_ms BIGINT NOT NULL
);
CREATE TABLE postings (
    seq {AUTO_PK},
    entry_id TEXT NOT NULL REFERENCES journal_entries(id),
    account TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL
);
CREATE INDEX postings_by_entry ON postings (entry_id);
CREATE INDEX postings_by_account ON postings (account);
CREATE TABLE account_balances (
    account TEXT PRIMARY KEY,
    balance_minor BIGINT NOT NULL
);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    message TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
-- One alert per kind and subject: a condition reported again (each poll of a trade paid with
-- the wrong amount, say) does not flood the operator.
CREATE UNIQUE INDEX alerts_once ON alerts (kind, subject_id);
",
)];

pub fn render(sql: &str, backend: Backend) -> String {
    let auto_pk = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    sql.replace("{AUTO_PK}", auto_pk)
}
