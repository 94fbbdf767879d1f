//! The payment core: orders, refunds, the double-entry ledger, the durable store (SQLite and
//! PostgreSQL), the sans-IO channel-adapter interface, scheduled jobs and the gateway HTTP API.
//! Depends on the `determinism` seam only. See `ARCHITECTURE.md` at the repository root.

pub mod api;
pub mod channel;
pub mod channels;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod model;
pub mod money;
pub mod service;
pub mod state;
pub mod store;

pub use api::app;
pub use service::{
    Gateway, GatewayConfig, GatewayParts, LatePaymentPolicy, PlantedBug, PlantedBugs,
};
