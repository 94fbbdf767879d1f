//! The sans-IO channel-adapter interface and the one executor that does I/O for it.
//!
//! An adapter builds request *values*, parses response *values* and verifies notifications; it
//! never touches a socket, the clock or a random generator (the executor hands it `now` and a
//! nonce). The executor sends what it builds through the `determinism::Transport` seam —
//! reqwest in the sandbox, an in-process call into the simulator's Router in simulation — so
//! the same adapter code runs in both (architecture invariant 2).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use determinism::{HttpRequest, HttpResponse, Transport, TransportError, UnixMillis};

use crate::ids::{OrderId, RefundId};
use crate::model::{Order, Refund};
use crate::money::Money;
use crate::state::{Channel, PaymentMethod};

/// What an adapter may read besides the order: the time and a fresh nonce from the seam.
#[derive(Debug, Clone)]
pub struct AdapterContext {
    pub now_ms: UnixMillis,
    /// 32 random characters from the seam's entropy, for channels that sign a nonce.
    pub nonce: String,
    /// Where the channel should send notifications for this gateway (`…/notify/<channel>`).
    pub notify_url: String,
}

/// The channel's view of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The channel knows the order; the buyer has not paid.
    Pending,
    Paid {
        channel_trade_no: String,
        amount: Money,
        paid_at_ms: Option<UnixMillis>,
    },
    /// Closed or cancelled at the channel.
    Closed,
    Failed {
        reason: String,
    },
    /// The channel has never seen the order (e.g. a QR code nobody scanned yet).
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStatus {
    Pending,
    Succeeded { channel_refund_no: Option<String> },
    Failed { reason: String },
    Abnormal { reason: String },
}

/// What creating an order at the channel produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// What the buyer needs: QR content, cashier URL, order string, prepay id with the
    /// client-side signature … (design note §11). Returned to the merchant as is.
    pub buyer_action: serde_json::Value,
    /// Barcode payments may settle at once.
    pub status: PaymentStatus,
}

/// The first step of creating an order: some methods need a call (precreate, prepay), others
/// are built locally (a signed cashier URL or order string).
#[derive(Debug)]
pub enum CreatePlan {
    Call(HttpRequest),
    Local(Created),
}

/// A verified notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Payment {
        order_id: OrderId,
        status: PaymentStatus,
    },
    Refund {
        refund_id: RefundId,
        status: RefundStatus,
        /// The amount the channel says this refund moved, when the notification states it
        /// (WeChat Pay `amount.refund`); the service checks it against the refund.
        reported_amount: Option<crate::money::Money>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The response or notification signature does not verify, or the key is unknown. Fail
    /// closed: the payload is not trusted; the order is settled by a query instead.
    #[error("signature rejected: {0}")]
    Signature(String),
    /// The answer or notification names a key id / serial this adapter does not hold. The
    /// service refreshes the channel's keys once ([`ChannelAdapter::build_key_refresh`]) and
    /// retries; if the key is still unknown it fails closed exactly like `Signature`.
    #[error("unknown signing key: {0}")]
    UnknownKey(String),
    /// The channel refused the request with a business error.
    #[error("channel refused: {code}: {message}")]
    Rejected { code: String, message: String },
    /// The outcome is unknown (timeout, 5xx, a system-busy code): query before deciding.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// A response that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The order or refund cannot be expressed for this channel (method parameters missing …).
    #[error("invalid for this channel: {0}")]
    Invalid(String),
}

impl From<TransportError> for AdapterError {
    fn from(error: TransportError) -> Self {
        AdapterError::Unknown(error.to_string())
    }
}

/// One channel's protocol, as pure functions over request and response values.
pub trait ChannelAdapter: Send + Sync + fmt::Debug {
    fn channel(&self) -> Channel;
    fn supports(&self, method: PaymentMethod) -> bool;

    fn plan_create(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<CreatePlan, AdapterError>;
    fn parse_create(&self, order: &Order, response: HttpResponse) -> Result<Created, AdapterError>;

    fn build_query(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError>;
    fn parse_query(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError>;

    /// Close (or cancel) an unpaid order at the channel. `Ok(Closed)` when it is closed,
    /// `Ok(NotFound)` when the channel never saw it (nothing to close), `Ok(Paid…)` when the
    /// answer carries the payment, and `Ok(Pending)` when the channel refused because the trade
    /// moved on (e.g. Alipay `ACQ.TRADE_HAS_SUCCESS`): the service then queries for the truth.
    fn build_close(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError>;
    fn parse_close(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError>;

    fn build_refund(
        &self,
        order: &Order,
        refund: &Refund,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError>;
    fn parse_refund(
        &self,
        order: &Order,
        refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError>;

    fn build_refund_query(
        &self,
        order: &Order,
        refund: &Refund,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError>;
    fn parse_refund_query(
        &self,
        order: &Order,
        refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError>;

    /// Verifies a notification's signature (and decrypts it where the channel encrypts) and
    /// says what it reports.
    fn verify_notification(
        &self,
        request: &HttpRequest,
        now_ms: UnixMillis,
    ) -> Result<Notification, AdapterError>;

    /// The channel's acknowledgement dialect: what to answer when the notification was
    /// processed (`accepted`) or must be re-sent.
    fn acknowledge(&self, accepted: bool) -> HttpResponse;

    /// A request that fetches the channel's current verifying keys (WeChat Pay
    /// `GET /v3/certificates`), or `None` when the channel has no such call. The service sends
    /// it once when a parse or verification reported [`AdapterError::UnknownKey`].
    fn build_key_refresh(
        &self,
        _context: &AdapterContext,
    ) -> Option<Result<HttpRequest, AdapterError>> {
        None
    }

    /// Verifies the answer to [`ChannelAdapter::build_key_refresh`] and learns the keys it
    /// carries.
    fn apply_key_refresh(&self, _response: HttpResponse) -> Result<(), AdapterError> {
        Err(AdapterError::Protocol("no key refresh".into()))
    }
}

/// The configured adapters, one per channel. A channel without an adapter is refused at the
/// API with `channel_not_configured`, never faked.
#[derive(Debug, Clone, Default)]
pub struct Adapters {
    by_channel: BTreeMap<Channel, Arc<dyn ChannelAdapter>>,
}

impl Adapters {
    pub fn new() -> Self {
        Adapters::default()
    }

    pub fn with(mut self, adapter: Arc<dyn ChannelAdapter>) -> Self {
        self.by_channel.insert(adapter.channel(), adapter);
        self
    }

    pub fn get(&self, channel: Channel) -> Option<&Arc<dyn ChannelAdapter>> {
        self.by_channel.get(&channel)
    }

    pub fn configured(&self) -> Vec<Channel> {
        self.by_channel.keys().copied().collect()
    }
}

/// Does the I/O adapters describe: one place that sends, with the call timeout.
#[derive(Debug, Clone)]
pub struct Executor {
    transport: Arc<dyn Transport>,
    timeout_ms: u64,
}

impl Executor {
    pub fn new(transport: Arc<dyn Transport>, timeout_ms: u64) -> Self {
        Executor {
            transport,
            timeout_ms,
        }
    }

    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, AdapterError> {
        let target = request.uri().to_string();
        match self.transport.send(request, self.timeout_ms).await {
            Ok(response) => Ok(response),
            Err(error) => {
                tracing::warn!(%target, %error, "channel call failed; outcome unknown");
                Err(error.into())
            }
        }
    }
}
