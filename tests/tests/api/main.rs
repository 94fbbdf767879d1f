//! The end-to-end API suite: the gateway's Router driven without a socket (`oneshot`), wired
//! to the test-only fake channel of `e2e::fake_channel` on a virtual clock, plus one test over
//! a real socket. One integration-test binary for the package.

// `cfg(test)` is always on here; it marks the modules as test code so clippy.toml's
// allow-unwrap/expect/panic/indexing-in-tests covers their helpers too.
#[cfg(test)]
mod alerts;
#[cfg(test)]
mod docs;
#[cfg(test)]
mod errors;
#[cfg(test)]
mod idempotency;
#[cfg(test)]
mod lifecycle;
#[cfg(test)]
mod socket;
#[cfg(test)]
mod support;
