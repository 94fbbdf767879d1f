//! End-to-end test support: a test-only fake channel with its adapter ([`fake_channel`]) and
//! a gateway wired for simulation around it ([`harness`]); and, for every suite of this
//! package, the real channel adapters wired to the real mock channels in one simulation
//! ([`sim`], shared by [`alipay_sim`] and [`wechatpay_sim`]).

pub mod alipay_sim;
pub mod fake_channel;
pub mod harness;
pub mod multi_sim;
pub mod property;
pub mod sim;
pub mod wechatpay_sim;
