//! PostgreSQL driver (tokio-postgres with a deadpool pool): the scale-out path where several
//! gateway processes share one database. Concurrency safety comes from the store's
//! compare-and-set updates and unique keys under READ COMMITTED.

use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use super::db::{Backend, Database, DbError, Row, SqlValue, Tx, TxMode};

#[derive(Clone)]
pub struct PostgresDatabase {
    pool: Pool,
    description: String,
}

impl std::fmt::Debug for PostgresDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDatabase")
            .field("target", &self.description)
            .finish()
    }
}

impl PostgresDatabase {
    /// Connects lazily through a pool of `max_connections`. `schema`, when given, is created if
    /// missing and used as the search path (tests isolate themselves this way).
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        max_connections: usize,
    ) -> Result<Self, DbError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| DbError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(schema) = schema {
            if !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(DbError::Other(format!("invalid schema name {schema:?}")));
            }
            config.options(format!("-c search_path={schema}"));
        }
        let description = format!(
            "{:?}/{}",
            config.get_hosts(),
            config.get_dbname().unwrap_or("")
        );
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        let database = PostgresDatabase { pool, description };
        if let Some(schema) = schema {
            database
                .batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        Ok(database)
    }
}

fn map_error(error: tokio_postgres::Error) -> DbError {
    match error.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            DbError::UniqueViolation(error.to_string())
        }
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            DbError::Conflict(error.to_string())
        }
        Some(_) => DbError::Other(db_message(&error)),
        None => DbError::Unavailable(error.to_string()),
    }
}

fn db_message(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(
        || error.to_string(),
        |db| format!("{}: {}", db.code().code(), db.message()),
    )
}

fn pool_error(error: deadpool_postgres::PoolError) -> DbError {
    DbError::Unavailable(format!("cannot get a PostgreSQL connection: {error}"))
}

fn decode(row: &tokio_postgres::Row) -> Result<Row, DbError> {
    let mut columns = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => SqlValue::Int(
                row.try_get::<_, Option<i64>>(index)
                    .map_err(|e| DbError::Decode(e.to_string()))?,
            ),
            Type::INT4 => SqlValue::Int(
                row.try_get::<_, Option<i32>>(index)
                    .map_err(|e| DbError::Decode(e.to_string()))?
                    .map(i64::from),
            ),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => SqlValue::Text(
                row.try_get::<_, Option<String>>(index)
                    .map_err(|e| DbError::Decode(e.to_string()))?,
            ),
            ref other => {
                return Err(DbError::Decode(format!(
                    "column {} has unsupported type {other}",
                    column.name()
                )))
            }
        };
        columns.push(value);
    }
    Ok(Row(columns))
}

fn bind(params: &[SqlValue]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                SqlValue::Int(v) => Box::new(*v),
                SqlValue::Text(v) => Box::new(v.clone()),
            }
        })
        .collect()
}

pub struct PostgresTx {
    client: Option<Object>,
}

impl PostgresTx {
    fn client(&self) -> Result<&Object, DbError> {
        self.client
            .as_ref()
            .ok_or_else(|| DbError::Other("transaction already finished".to_owned()))
    }
}

impl Drop for PostgresTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Dropped mid-transaction: detach the connection from the pool and close it, so
            // the server rolls back and nobody reuses a connection inside a transaction.
            drop(Object::take(client));
        }
    }
}

#[async_trait]
impl Tx for PostgresTx {
    async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError> {
        let client = self.client()?;
        let statement = client.prepare_cached(sql).await.map_err(map_error)?;
        let owned = bind(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        client.execute(&statement, &refs).await.map_err(map_error)
    }

    async fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, DbError> {
        let client = self.client()?;
        let statement = client.prepare_cached(sql).await.map_err(map_error)?;
        let owned = bind(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&statement, &refs).await.map_err(map_error)?;
        rows.iter().map(decode).collect()
    }

    async fn commit(mut self: Box<Self>) -> Result<(), DbError> {
        self.finish("COMMIT").await
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), DbError> {
        self.finish("ROLLBACK").await
    }
}

impl PostgresTx {
    /// Ends the transaction; a connection whose COMMIT or ROLLBACK failed is closed rather than
    /// returned to the pool in an unknown state.
    async fn finish(&mut self, sql: &str) -> Result<(), DbError> {
        let client = self
            .client
            .take()
            .ok_or_else(|| DbError::Other("transaction already finished".to_owned()))?;
        match client.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(error) => {
                drop(Object::take(client));
                Err(map_error(error))
            }
        }
    }
}

#[async_trait]
impl Database for PostgresDatabase {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn begin(&self, mode: TxMode) -> Result<Box<dyn Tx>, DbError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let begin = match mode {
            TxMode::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
            TxMode::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        client.batch_execute(begin).await.map_err(map_error)?;
        Ok(Box::new(PostgresTx {
            client: Some(client),
        }))
    }

    async fn batch(&self, sql: &str) -> Result<(), DbError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        match client.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // A failed multi-statement batch may leave the session inside an aborted
                // transaction: never hand that connection out again.
                drop(Object::take(client));
                Err(map_error(error))
            }
        }
    }
}
