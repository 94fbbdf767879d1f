//! The end-to-end WeChat Pay suite: the gateway with the **real** WeChat Pay APIv3 adapter
//! against the **real** mock WeChat Pay server of the simulator, in one simulation
//! (`e2e::wechatpay_sim`): one virtual clock, one scheduler, seeded entropy, one in-process
//! transport carrying both the gateway → WeChat Pay calls and the WeChat Pay → gateway
//! notifications. The gateway is driven only through its HTTP API, the buyer only through the
//! simulator's control plane.

// `cfg(test)` is always on here; it marks the modules as test code so clippy.toml's
// allow-unwrap/expect/panic/indexing-in-tests covers their helpers too.
#[cfg(test)]
mod barcode;
#[cfg(test)]
mod certificates;
mod close;
#[cfg(test)]
mod determinism;
#[cfg(test)]
mod faults;
#[cfg(test)]
mod notifications;
#[cfg(test)]
mod payment;
#[cfg(test)]
mod refunds;
#[cfg(test)]
mod support;
