//! The records the payment core keeps: merchants, orders, refunds, transition history and
//! alerts. Plain data; behaviour lives in `state`, `ledger` and `service`.

use determinism::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::ids::{AlertId, MerchantId, OrderId, RefundId};
use crate::money::Money;
use crate::state::{Channel, OrderState, PaymentMethod, RefundState};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    pub created_at_ms: UnixMillis,
}

/// Parameters a payment method needs; which are required depends on the method and channel
/// (the adapter validates). Unknown fields are refused at the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodParams {
    /// Where the cashier sends the buyer back after paying (page / wap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// The buyer's payment code scanned by the merchant (barcode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
    /// The buyer's WeChat `openid` (jsapi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// The buyer's IP address (WeChat H5 / wap requires it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub method: PaymentMethod,
    pub method_params: MethodParams,
    pub amount: Money,
    pub subject: String,
    pub state: OrderState,
    /// Sum of succeeded refunds, minor units.
    pub refunded_minor: i64,
    /// Sum of pending and abnormal refunds, minor units: reserved against the ceiling.
    pub refund_reserved_minor: i64,
    /// Channel fee charged to the merchant at capture, minor units.
    pub fee_minor: i64,
    pub channel_trade_no: Option<String>,
    /// What the buyer needs to pay (QR content, cashier URL, order string …), as returned by
    /// the channel adapter.
    pub buyer_action: Option<serde_json::Value>,
    pub expires_at_ms: UnixMillis,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub paid_at_ms: Option<UnixMillis>,
    /// Row version for compare-and-set updates.
    pub version: i64,
}

impl Order {
    /// Money still refundable: amount − succeeded − reserved.
    pub fn refundable_minor(&self) -> i64 {
        self.amount.minor() - self.refunded_minor - self.refund_reserved_minor
    }
}

/// Who asked for a refund, which decides what it touches.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    /// Requested by the merchant through the API: reserved against the order's refundable
    /// ceiling, moves the order's refund counters and state, and takes the money (less its fee
    /// share) back from the merchant's payable.
    #[default]
    Merchant,
    /// Created by the gateway under `LatePaymentPolicy::Refund` for money paid after the order
    /// was closed or failed: returns that money from suspense, never touches the order row
    /// (which stays closed) nor the merchant's payable.
    LatePayment,
}

impl RefundKind {
    pub const ALL: [RefundKind; 2] = [RefundKind::Merchant, RefundKind::LatePayment];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundKind::Merchant => "merchant",
            RefundKind::LatePayment => "late_payment",
        }
    }

    pub fn parse(text: &str) -> Option<RefundKind> {
        RefundKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: RefundId,
    pub order_id: OrderId,
    pub kind: RefundKind,
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub amount: Money,
    pub reason: Option<String>,
    pub state: RefundState,
    /// The share of the order's channel fee returned to the merchant with this refund, fixed
    /// when the refund first leaves the merchant's payable (succeeded or parked as abnormal).
    pub fee_refund_minor: i64,
    pub channel_refund_no: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Order,
    Refund,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Order => "order",
            EntityKind::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<EntityKind> {
        match text {
            "order" => Some(EntityKind::Order),
            "refund" => Some(EntityKind::Refund),
            _ => None,
        }
    }
}

/// One row of the append-only transition history. `from_state` is `None` for the creation
/// row. `event_key` names the business event that caused the move (`payment`, `close`,
/// `refund:rfd_…`); one entity never records the same event twice (I8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub seq: i64,
    pub entity: EntityKind,
    pub entity_id: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub event_key: String,
    /// Where the news came from: `api`, `notification`, `query`, `expiry`, …
    pub source: String,
    pub at_ms: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub kind: String,
    pub subject_id: String,
    pub message: String,
    pub at_ms: UnixMillis,
}
