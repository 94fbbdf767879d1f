//! The scenario file format, as types. `SCENARIOS.md` at the repository's `scenarios/` folder
//! documents every construct with an example; `scenario.schema.json` gives editors completion.
//!
//! A file is one scenario: `name`, `description`, `seed`, `tags`, a `[setup]` table and a list
//! of `[[step]]` tables. Each step carries exactly one action key (`create_order`, `close`,
//! `refund`, `query`, `buyer`, `fault`, `transport_fault`, `advance`, `wait_until`,
//! `expect`) and optionally an `id` (so a later `expect.response.<id>` can name it) and a
//! `note`. Names that a later step refers to (`order = "o1"`, `refund = "r1"`) are aliases
//! the scenario gives; the runner maps them to the ids the gateway assigned.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string with the byte span it came from.
pub type Text = Spanned<String>;

/// `[setup]`: what the system under test is built with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// The channels wired for this scenario (default: every channel that exists).
    #[serde(default)]
    pub channels: Vec<Text>,
    /// The merchant orders are created for when a step names none (default `mch_sandbox`).
    pub merchant: Option<String>,
    /// Where the virtual clock starts (RFC 3339; default 2026-01-01T00:00:00Z).
    pub start: Option<Text>,
    /// How far the channels' clock is ahead of the gateway's (`+6m`) or behind (`-6m`).
    pub channel_clock_skew: Option<Text>,
    /// Gateway settings, the keys of `paysim.toml`'s `[gateway]` section.
    #[serde(default)]
    pub gateway: GatewayOverrides,
    /// Channel fees in basis points, as `paysim.toml`'s `[fees]` (`alipay = 60`).
    #[serde(default)]
    pub fees: BTreeMap<Text, u32>,
    /// WeChat Pay: how the mock names its signing key (`public_key`, `platform_certificate`)
    /// and whether the gateway is given the public key (`public_key`) or downloads
    /// certificates (`certificates`).
    pub wechatpay_keys: Option<Text>,
    /// Alipay: public-key mode (`public_key`, default) or public-key-certificate mode
    /// (`certificates`: `app_cert_sn`, `alipay_root_cert_sn`, `alipay_cert_sn`).
    pub alipay_keys: Option<Text>,
}

/// Overrides of the gateway's configuration.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayOverrides {
    pub default_expiry_seconds: Option<i64>,
    pub channel_timeout_ms: Option<u64>,
    pub poll_schedule_seconds: Option<Vec<i64>>,
    pub barcode_poll_schedule_seconds: Option<Vec<i64>>,
    /// `hold` or `refund`.
    pub late_payment_policy: Option<String>,
}

/// One `[[step]]` table as written: every action key is optional here; the loader checks that
/// exactly one is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub id: Option<Text>,
    pub note: Option<String>,
    pub create_order: Option<CreateOrder>,
    pub close: Option<Close>,
    pub refund: Option<Refund>,
    pub query: Option<Query>,
    pub buyer: Option<Buyer>,
    pub fault: Option<Fault>,
    pub transport_fault: Option<TransportFaultStep>,
    pub advance: Option<Text>,
    pub wait_until: Option<WaitUntil>,
    pub expect: Option<Expect>,
}

/// What the gateway must answer to a merchant action; without it any 2xx passes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The expected HTTP status.
    pub status: Option<u16>,
    /// The expected error `code` of the body.
    pub error: Option<String>,
}

/// `create_order = { order = "o1", channel = "alipay", method = "qr", amount = "25.00" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// The alias later steps use.
    pub order: Text,
    pub channel: Text,
    pub method: Text,
    pub amount: Text,
    pub currency: Option<String>,
    pub subject: Option<String>,
    pub merchant: Option<String>,
    /// Order expiry from now (`15m`); the gateway's default otherwise.
    pub expires_in: Option<Text>,
    pub auth_code: Option<String>,
    pub openid: Option<String>,
    pub client_ip: Option<String>,
    pub return_url: Option<String>,
    /// Sent as `Idempotency-Key`; a fresh one per step otherwise.
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `close = { order = "o1" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Close {
    pub order: Text,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// `refund = { order = "o1", refund = "r1", amount = "10.00" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    pub order: Text,
    /// The alias later steps use (optional).
    pub refund: Option<Text>,
    pub amount: Text,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// `query = { order = "o1" }` or `query = { refund = "r1" }`: the merchant reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub order: Option<Text>,
    pub refund: Option<Text>,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// `buyer = { order = "o1", action = "pay" }`: the buyer at the channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buyer {
    pub order: Text,
    /// `scan`, `pay`, `fail` or `abandon`.
    pub action: Text,
    /// The control plane's expected status (200; 409 when the action does not fit the trade).
    pub status: Option<u16>,
}

/// `fault = { channel = "alipay", target = "alipay.trade.query", name = "system_error", times = 2 }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Defaults to the scenario's only channel.
    pub channel: Option<Text>,
    /// An API of the channel, `notify`, `refund` or `*`.
    pub target: Text,
    pub name: Text,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub params: toml::Table,
}

fn one() -> u32 {
    1
}

/// `transport_fault = { channel = "alipay", api = "alipay.trade.query", fault = "timeout_after_delivery" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportFaultStep {
    /// Defaults to the scenario's only channel.
    pub channel: Option<Text>,
    /// `request` (gateway → channel, default) or `notification` (channel → gateway).
    pub direction: Option<Text>,
    /// Only this API of the channel (requests only); every request otherwise.
    pub api: Option<Text>,
    pub fault: Text,
    #[serde(default = "one")]
    pub times: u32,
    /// `delay`: how long (`3s`); with `max_delay`, a seeded random delay in between.
    pub delay: Option<Text>,
    pub max_delay: Option<Text>,
    /// `truncated_body`: bytes kept (default 10).
    pub keep_bytes: Option<usize>,
    /// `wrong_content_type`: the Content-Type sent (default `text/html`).
    pub content_type: Option<String>,
}

/// `wait_until = { order = "o1", state = "paid", within = "10m" }`: runs events until the
/// condition holds, failing when `within` passes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitUntil {
    pub order: Option<Text>,
    pub refund: Option<Text>,
    pub state: Text,
    pub within: Text,
}

/// `[step.expect]`: checks at this point of the run. Several kinds may share one step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Orders by alias: `expect.order.o1 = { state = "paid" }`.
    #[serde(default)]
    pub order: BTreeMap<Text, OrderExpect>,
    /// Refunds by alias.
    #[serde(default)]
    pub refund: BTreeMap<Text, RefundExpect>,
    /// The channel's trade of an order, read from the simulator's control plane.
    #[serde(default)]
    pub trade: BTreeMap<Text, TradeExpect>,
    /// Ledger balances by account code (`channel_clearing:alipay:CNY = "25.00"`); accounts
    /// not named are not checked, a named account absent from the ledger counts as 0.00.
    #[serde(default)]
    pub ledger: BTreeMap<Text, Text>,
    /// Whether `GET /v1/ledger/verify` reports every invariant holding.
    pub ledger_verified: Option<bool>,
    /// The notifications of an order's trade, from the control plane.
    #[serde(default)]
    pub notifications: BTreeMap<Text, NotificationsExpect>,
    /// Exchanges the gateway made with a channel (what reached the mock).
    #[serde(default)]
    pub exchanges: Vec<ExchangesExpect>,
    /// The answer an earlier step got, by the step's `id`.
    #[serde(default)]
    pub response: BTreeMap<Text, Answer>,
    /// Alerts raised by the gateway so far, by kind: `alerts.late_payment = 1`.
    #[serde(default)]
    pub alerts: BTreeMap<Text, usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderExpect {
    pub state: Option<Text>,
    /// What has been refunded (`"10.00"`).
    pub refunded: Option<Text>,
    /// The fee charged (`"0.15"`).
    pub fee: Option<Text>,
    /// How many refunds the order has (any state).
    pub refunds: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundExpect {
    pub state: Option<Text>,
    pub amount: Option<Text>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeExpect {
    /// The channel's own state name (`TRADE_SUCCESS`, `SUCCESS`, `CLOSED` …).
    pub state: Option<String>,
    pub refunded: Option<Text>,
    /// Whether the trade exists at the channel (`false`: never created, or QR never scanned).
    pub exists: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsExpect {
    /// Only notifications of this event (`payment`, `refund`, `close`).
    pub event: Option<Text>,
    /// How many notifications (of that event).
    pub count: Option<usize>,
    /// The state every one of them is in: `acknowledged`, `pending` or `given_up`.
    pub state: Option<Text>,
    /// Total attempts over those notifications (a duplicated attempt counts once).
    pub attempts: Option<usize>,
    /// Attempt times of the first matching notification, relative to its first attempt.
    pub schedule: Option<Vec<Text>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangesExpect {
    /// Defaults to the scenario's only channel.
    pub channel: Option<Text>,
    /// Only exchanges about this order.
    pub order: Option<Text>,
    /// An API name (`alipay.trade.query`); with `count`/`min`/`max`.
    pub api: Option<Text>,
    pub count: Option<usize>,
    pub min: Option<usize>,
    pub max: Option<usize>,
    /// These APIs occur in this order (other exchanges may come between).
    pub sequence: Option<Vec<Text>>,
}
