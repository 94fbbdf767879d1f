//! The payment core: orders, refunds, the double-entry ledger, the durable store (SQLite and
//! PostgreSQL), the sans-IO channel-adapter interface, scheduled jobs and the gateway HTTP API.
//! Depends on the `determinism` seam only. See `ARCHITECTURE.md` at the repository root.

pub mod ids;
pub mod ledger;
pub mod model;
pub mod money;
pub mod state;
pub mod store;
