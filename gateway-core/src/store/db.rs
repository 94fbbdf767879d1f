//! The narrow driver interface the store is written against: a transaction that executes and
//! queries SQL with `$1`-style placeholders over integer and text values. The store's logic is
//! written once over it; `sqlite.rs` and `postgres.rs` are thin drivers.

use std::fmt;

use async_trait::async_trait;

/// A bound parameter or a result column. paysim stores only integers and text (money in
/// minor units, times in Unix milliseconds, JSON as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(Some(v))
    }
}
impl From<Option<i64>> for SqlValue {
    fn from(v: Option<i64>) -> Self {
        SqlValue::Int(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(Some(v.to_owned()))
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(Some(v))
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        SqlValue::Text(v)
    }
}
impl From<Option<&str>> for SqlValue {
    fn from(v: Option<&str>) -> Self {
        SqlValue::Text(v.map(str::to_owned))
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    fn column(&self, index: usize) -> Result<&SqlValue, DbError> {
        self.0
            .get(index)
            .ok_or_else(|| DbError::Decode(format!("column {index} missing")))
    }

    pub fn opt_i64(&self, index: usize) -> Result<Option<i64>, DbError> {
        match self.column(index)? {
            SqlValue::Int(v) => Ok(*v),
            SqlValue::Text(None) => Ok(None),
            SqlValue::Text(Some(t)) => Err(DbError::Decode(format!(
                "column {index}: expected an integer, found text {t:?}"
            ))),
        }
    }

    pub fn i64(&self, index: usize) -> Result<i64, DbError> {
        self.opt_i64(index)?
            .ok_or_else(|| DbError::Decode(format!("column {index}: unexpected NULL")))
    }

    pub fn opt_str(&self, index: usize) -> Result<Option<&str>, DbError> {
        match self.column(index)? {
            SqlValue::Text(v) => Ok(v.as_deref()),
            SqlValue::Int(None) => Ok(None),
            SqlValue::Int(Some(i)) => Err(DbError::Decode(format!(
                "column {index}: expected text, found integer {i}"
            ))),
        }
    }

    pub fn str(&self, index: usize) -> Result<&str, DbError> {
        self.opt_str(index)?
            .ok_or_else(|| DbError::Decode(format!("column {index}: unexpected NULL")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or the connection broke.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique or primary-key constraint refused the write.
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    /// Another transaction got in the way (SQLITE_BUSY, serialization failure, deadlock):
    /// retrying the whole transaction is safe.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Other(String),
    #[error("cannot decode row: {0}")]
    Decode(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Takes the write lock up front (SQLite `BEGIN IMMEDIATE`), read committed on PostgreSQL.
    Write,
    /// One consistent snapshot for multi-table reads (`REPEATABLE READ READ ONLY`).
    Snapshot,
}

/// An open transaction. Dropping it without `commit` rolls it back (the drivers make sure the
/// connection never returns to use mid-transaction).
#[async_trait]
pub trait Tx: Send {
    async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError>;
    async fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, DbError>;
    async fn commit(self: Box<Self>) -> Result<(), DbError>;
    async fn rollback(self: Box<Self>) -> Result<(), DbError>;
}

#[async_trait]
pub trait Database: Send + Sync + fmt::Debug {
    fn backend(&self) -> Backend;
    async fn begin(&self, mode: TxMode) -> Result<Box<dyn Tx>, DbError>;
    /// Runs DDL (several statements) outside any transaction bookkeeping of the store.
    async fn batch(&self, sql: &str) -> Result<(), DbError>;
}

/// Rewrites `$1`-style placeholders into SQLite's `?1` form (identical meaning: numbered
/// parameters). `$` never appears inside paysim's SQL string literals.
pub fn numbered_placeholders_for_sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}
