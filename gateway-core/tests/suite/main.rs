//! gateway-core's one integration-test binary: the store suite, run on SQLite and — when
//! `PAYSIM_TEST_DATABASE_URL` names a server — on PostgreSQL, and the ledger property tests.

// `cfg(test)` is always on here; it marks the modules as test code so clippy.toml's
// allow-unwrap/expect/panic/indexing-in-tests covers their helpers too.
#[cfg(test)]
mod ledger_props;
#[cfg(test)]
mod store;
#[cfg(test)]
mod support;
