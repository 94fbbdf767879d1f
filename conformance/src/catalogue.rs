//! What scenarios may name: channels, payment methods, states, buyer actions, and the fault
//! catalogue of the engine — the simulator's protocol faults, the transport's faults and the
//! clock's skew — each with one line of documentation.
//!
//! The order and refund states are the gateway API's public contract (its OpenAPI document);
//! the runner learns nothing else about the gateway.

use determinism::TransportFault;
use simulator::faults::{FaultKind, FaultScope};

/// Channels that exist (UnionPay joins with its issue).
pub const CHANNELS: [&str; 2] = ["alipay", "wechatpay"];

/// The payment methods of each channel's gateway adapter.
pub fn methods(channel: &str) -> &'static [&'static str] {
    match channel {
        "alipay" => &["qr", "page", "wap", "app", "barcode"],
        "wechatpay" => &["qr", "wap", "app", "barcode", "jsapi"],
        _ => &[],
    }
}

/// `state` of an order in the gateway API.
pub const ORDER_STATES: [&str; 7] = [
    "created",
    "paying",
    "paid",
    "partially_refunded",
    "refunded",
    "closed",
    "failed",
];

/// `state` of a refund in the gateway API.
pub const REFUND_STATES: [&str; 4] = ["pending", "succeeded", "failed", "abnormal"];

/// Buyer actions: `open` (the runner opens the order's cashier URL, app order string or QR
/// code as the buyer's browser or app would), then the control plane's own.
pub const BUYER_ACTIONS: [&str; 5] = ["open", "scan", "pay", "fail", "abandon"];

/// Notification events of the control plane's views.
pub const NOTIFICATION_EVENTS: [&str; 3] = ["payment", "refund", "close"];

/// Delivery states of a notification.
pub const NOTIFICATION_STATES: [&str; 3] = ["pending", "acknowledged", "given_up"];

/// Ledger account kinds (`<kind>:<owner>:<currency>`).
pub const ACCOUNT_KINDS: [&str; 4] = [
    "channel_clearing",
    "channel_fees",
    "merchant_payable",
    "suspense",
];

/// Request-fault targets of a channel that are not APIs.
pub const SPECIAL_TARGETS: [&str; 3] = ["notify", "refund", "*"];

/// The APIs of a channel (request-fault targets and `api` in exchanges).
pub fn apis(channel: &str) -> &'static [&'static str] {
    match channel {
        "alipay" => &simulator::alipay::METHODS,
        "wechatpay" => &simulator::wechatpay::APIS,
        _ => &[],
    }
}

/// How a transport fault finds a channel API's requests: a substring of the request URI and,
/// where the path alone is ambiguous, the HTTP method.
pub fn api_matcher(channel: &str, api: &str) -> Option<(String, Option<http::Method>)> {
    match channel {
        "alipay" => apis("alipay")
            .contains(&api)
            .then(|| (format!("method={api}"), None)),
        "wechatpay" => {
            let (needle, method) = match api {
                "pay.transactions.native" => ("/v3/pay/transactions/native", None),
                "pay.transactions.jsapi" => ("/v3/pay/transactions/jsapi", None),
                "pay.transactions.app" => ("/v3/pay/transactions/app", None),
                "pay.transactions.h5" => ("/v3/pay/transactions/h5", None),
                "pay.transactions.codepay" => ("/v3/pay/transactions/codepay", None),
                "pay.transactions.reverse" => ("/reverse", Some(http::Method::POST)),
                "pay.transactions.id" => ("/v3/pay/transactions/id/", Some(http::Method::GET)),
                "pay.transactions.out-trade-no" => (
                    "/v3/pay/transactions/out-trade-no/",
                    Some(http::Method::GET),
                ),
                "pay.transactions.close" => ("/close", Some(http::Method::POST)),
                "refund.domestic.refunds" => {
                    ("/v3/refund/domestic/refunds", Some(http::Method::POST))
                }
                "refund.domestic.refunds.query" => {
                    ("/v3/refund/domestic/refunds/", Some(http::Method::GET))
                }
                "bill.tradebill" => ("/v3/bill/tradebill", None),
                "billdownload.file" => ("/v3/billdownload/file", None),
                "certificates" => ("/v3/certificates", None),
                _ => return None,
            };
            Some((needle.to_owned(), method))
        }
        _ => None,
    }
}

/// Where a catalogue fault acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Armed at a mock channel (`fault` step).
    Protocol,
    /// Injected into the in-process transport (`transport_fault` step).
    Transport,
    /// The channels' clock (`setup.channel_clock_skew`).
    Clock,
}

/// One fault of the engine's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FaultEntry {
    pub name: String,
    pub layer: Layer,
    pub doc: String,
}

/// The transport faults a scenario names, beyond `determinism`'s: `random_delay` is a `delay`
/// drawn from the scenario's seed between `delay` and `max_delay`.
pub const RANDOM_DELAY: &str = "random_delay";
/// The clock entry of the catalogue.
pub const CLOCK_SKEW: &str = "channel_clock_skew";

/// Every transport fault name a `transport_fault` step accepts.
pub fn transport_fault_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = TransportFault::catalogue()
        .iter()
        .map(|(name, _)| *name)
        .collect();
    names.push(RANDOM_DELAY);
    names
}

/// The whole catalogue, protocol faults first.
pub fn faults() -> Vec<FaultEntry> {
    let mut entries: Vec<FaultEntry> = FaultKind::ALL
        .iter()
        .map(|kind| FaultEntry {
            name: kind.name().to_owned(),
            layer: Layer::Protocol,
            doc: kind.doc().to_owned(),
        })
        .collect();
    entries.extend(
        TransportFault::catalogue()
            .iter()
            .map(|(name, doc)| FaultEntry {
                name: (*name).to_owned(),
                layer: Layer::Transport,
                doc: (*doc).to_owned(),
            }),
    );
    entries.push(FaultEntry {
        name: RANDOM_DELAY.to_owned(),
        layer: Layer::Transport,
        doc: "a delay drawn from the scenario's seed between `delay` and `max_delay`".to_owned(),
    });
    entries.push(FaultEntry {
        name: CLOCK_SKEW.to_owned(),
        layer: Layer::Clock,
        doc: "the channels' clock runs ahead of (or behind) the gateway's by a fixed offset"
            .to_owned(),
    });
    entries
}

/// Whether a protocol fault is armed on requests of an API (rather than `notify`/`refund`).
pub fn protocol_scope(name: &str) -> Option<FaultScope> {
    FaultKind::from_name(name).map(FaultKind::scope)
}
