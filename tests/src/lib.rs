//! End-to-end test support: a test-only fake channel with its adapter ([`fake_channel`]) and
//! a gateway wired for simulation around it ([`harness`]); and the real Alipay adapter wired to
//! the real mock Alipay gateway in one simulation ([`alipay_sim`]), for every suite of this
//! package.

pub mod alipay_sim;
pub mod fake_channel;
pub mod harness;
