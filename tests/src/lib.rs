//! End-to-end test support: a test-only fake channel with its adapter ([`fake_channel`]) and
//! a gateway wired for simulation around it ([`harness`]), for every suite of this package.

pub mod fake_channel;
pub mod harness;
