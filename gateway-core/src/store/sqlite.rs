//! SQLite driver (rusqlite: about 5 µs a statement against sqlx's 57 µs on these machines,
//! design note §7). One connection behind an async mutex: SQLite has one writer anyway, and
//! `BEGIN IMMEDIATE` plus a busy timeout serialises several processes sharing a file.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::db::{
    numbered_placeholders_for_sqlite, Backend, Database, DbError, Row, SqlValue, Tx, TxMode,
};

#[derive(Debug, Clone)]
pub struct SqliteDatabase {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteDatabase {
    /// A file database in WAL mode with `synchronous=FULL`: a committed payment survives a
    /// power cut.
    pub fn open_file(path: &Path) -> Result<Self, DbError> {
        let connection = Connection::open(path)
            .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
            )
            .map_err(map_error)?;
        Ok(SqliteDatabase::over(connection))
    }

    /// A private in-memory database: tests and simulation runs.
    pub fn open_in_memory() -> Result<Self, DbError> {
        let connection = Connection::open_in_memory().map_err(map_error)?;
        connection
            .execute_batch("PRAGMA foreign_keys=ON;")
            .map_err(map_error)?;
        Ok(SqliteDatabase::over(connection))
    }

    fn over(connection: Connection) -> SqliteDatabase {
        // Every statement the store runs stays prepared: rusqlite's default cache of 16 is
        // smaller than the store's set of statements, so it would re-prepare them in turn.
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        SqliteDatabase {
            connection: Arc::new(Mutex::new(connection)),
        }
    }
}

/// Room for every distinct statement of the store (a few dozen) with a margin.
const STATEMENT_CACHE: usize = 128;

fn map_error(error: rusqlite::Error) -> DbError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation
                if matches!(
                    failure.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                DbError::UniqueViolation(error.to_string())
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                DbError::Conflict(error.to_string())
            }
            ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure => DbError::Unavailable(error.to_string()),
            _ => DbError::Other(error.to_string()),
        },
        _ => DbError::Other(error.to_string()),
    }
}

fn to_sql(value: &SqlValue) -> Value {
    match value {
        SqlValue::Int(Some(v)) => Value::Integer(*v),
        SqlValue::Text(Some(v)) => Value::Text(v.clone()),
        SqlValue::Int(None) | SqlValue::Text(None) => Value::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> Result<SqlValue, DbError> {
    match value {
        ValueRef::Null => Ok(SqlValue::Int(None)),
        ValueRef::Integer(v) => Ok(SqlValue::Int(Some(v))),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(|s| SqlValue::Text(Some(s.to_owned())))
            .map_err(|e| DbError::Decode(e.to_string())),
        ValueRef::Real(v) => Err(DbError::Decode(format!(
            "unexpected REAL {v}: paysim stores no floats"
        ))),
        ValueRef::Blob(_) => Err(DbError::Decode("unexpected BLOB".to_owned())),
    }
}

pub struct SqliteTx {
    guard: Option<OwnedMutexGuard<Connection>>,
}

impl SqliteTx {
    fn connection(&self) -> Result<&Connection, DbError> {
        self.guard
            .as_deref()
            .ok_or_else(|| DbError::Other("transaction already finished".to_owned()))
    }

    fn finish(&mut self, sql: &str) -> Result<(), DbError> {
        let guard = self
            .guard
            .take()
            .ok_or_else(|| DbError::Other("transaction already finished".to_owned()))?;
        run_cached(&guard, sql)
    }
}

/// Runs a statement without parameters or rows (`BEGIN …`, `COMMIT`, `ROLLBACK`) through the
/// statement cache: every transaction runs two of them, and preparing them anew each time
/// is measurable.
fn run_cached(connection: &Connection, sql: &str) -> Result<(), DbError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(|_| ())
        .map_err(map_error)
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            // Dropped mid-transaction (an error path or a cancelled request): roll back before
            // the connection is used again.
            if let Err(error) = run_cached(&guard, "ROLLBACK") {
                tracing::error!(%error, "sqlite rollback on drop failed");
            }
        }
    }
}

#[async_trait]
impl Tx for SqliteTx {
    async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare_cached(&numbered_placeholders_for_sqlite(sql))
            .map_err(map_error)?;
        let values: Vec<Value> = params.iter().map(to_sql).collect();
        let changed = statement
            .execute(rusqlite::params_from_iter(values))
            .map_err(map_error)?;
        Ok(changed as u64)
    }

    async fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, DbError> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare_cached(&numbered_placeholders_for_sqlite(sql))
            .map_err(map_error)?;
        let width = statement.column_count();
        let values: Vec<Value> = params.iter().map(to_sql).collect();
        let mut rows = statement
            .query(rusqlite::params_from_iter(values))
            .map_err(map_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_error)? {
            let mut columns = Vec::with_capacity(width);
            for index in 0..width {
                columns.push(from_sql(row.get_ref(index).map_err(map_error)?)?);
            }
            out.push(Row(columns));
        }
        Ok(out)
    }

    async fn commit(mut self: Box<Self>) -> Result<(), DbError> {
        self.finish("COMMIT")
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), DbError> {
        self.finish("ROLLBACK")
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn begin(&self, mode: TxMode) -> Result<Box<dyn Tx>, DbError> {
        let guard = Arc::clone(&self.connection).lock_owned().await;
        let begin = match mode {
            TxMode::Write => "BEGIN IMMEDIATE",
            TxMode::Snapshot => "BEGIN DEFERRED",
        };
        run_cached(&guard, begin)?;
        Ok(Box::new(SqliteTx { guard: Some(guard) }))
    }

    async fn batch(&self, sql: &str) -> Result<(), DbError> {
        let guard = self.connection.lock().await;
        guard.execute_batch(sql).map_err(map_error)
    }
}
