//! The channel adapters: one sans-IO module per channel implementing
//! [`crate::channel::ChannelAdapter`], each shaped `channels/<name>.rs` (build requests, parse
//! responses, verify notifications) plus `channels/<name>/wire.rs` (serde structs and
//! conversions).

pub mod alipay;
pub mod wechatpay;
