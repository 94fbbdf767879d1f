//! The payment service: creates, closes and refunds orders, applies what channels report
//! (notifications and queries), and books every state change with its ledger entry and
//! history row in one store transaction.
//!
//! Each operation follows the same loop: read the current row, decide with the state
//! machine's one transition function, commit the resulting [`Change`] with compare-and-set,
//! and on a version conflict read again. Replays (the same notification twice, a query after
//! a notification) decide `Unchanged` or hit a unique key, and change nothing (I8).

use std::collections::BTreeMap;
use std::sync::Arc;

use determinism::{Clock, Entropy, EntropyExt, Scheduler, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::channel::{
    AdapterContext, AdapterError, Adapters, ChannelAdapter, CreatePlan, Executor, PaymentStatus,
    RefundStatus,
};
use crate::ids::{AlertId, EntryId, MerchantId, OrderId, RefundId};
use crate::ledger::entries;
use crate::model::{Alert, EntityKind, Merchant, MethodParams, Order, Refund, RefundKind};
use crate::money::Money;
use crate::state::{
    order_step, refund_step, Channel, OrderEvent, OrderState, PaymentMethod, RefundEvent,
    RefundState, Refusal, Step,
};
use crate::store::{Change, CommitOutcome, IdempotencyClaim, NewTransition, Store, StoreError};

/// How many times an operation re-reads after losing a compare-and-set race before giving up
/// with `concurrent_update`.
const CAS_ATTEMPTS: usize = 32;

/// The reason recorded on the automatic refund of a payment after close.
pub const LATE_PAYMENT_REFUND_REASON: &str = "automatic refund of a payment after close";

/// What the gateway does with money a channel reports paid for an order that is already
/// closed or failed (design note §11). Either way the order never reopens, the money is first
/// booked to suspense and an alert is raised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePaymentPolicy {
    /// The money stays in suspense for an operator's review.
    #[default]
    Hold,
    /// The buyer is refunded automatically: a refund of kind `late_payment` for the whole
    /// amount is created with the late payment and sent to the channel; its success moves the
    /// money out of suspense.
    Refund,
}

impl LatePaymentPolicy {
    pub const ALL: [LatePaymentPolicy; 2] = [LatePaymentPolicy::Hold, LatePaymentPolicy::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            LatePaymentPolicy::Hold => "hold",
            LatePaymentPolicy::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<LatePaymentPolicy> {
        LatePaymentPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// A known bug that can be planted in the gateway at run time, so the property suite can show
/// that it finds each one (`tests/tests/proptest/planted.rs`). Never read from configuration:
/// the only way to plant one is [`Gateway::plant_bugs`], which nothing but tests calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedBug {
    /// Every verified payment notification is booked, even a replay of a payment already
    /// captured (a second capture entry under a per-notification key).
    NotificationDedupOff,
    /// A refund above what remains refundable is not refused; it is reserved and sent.
    RefundCeilingOff,
    /// A verified notification is acknowledged to the channel whatever becomes of applying it
    /// (the acknowledgement is decided before the commit), so a refused one is never re-sent.
    AckBeforeCommit,
    /// A payment reported after the order was closed reopens it as paid (captured) instead of
    /// being booked to suspense.
    ReopenOnLateSuccess,
    /// The order amount given in yuan is read as if it were fen (×100).
    YuanFenSlip,
    /// A channel's "closed" trade state is mapped to the order's `failed`.
    WrongStateMapping,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 6] = [
        PlantedBug::NotificationDedupOff,
        PlantedBug::RefundCeilingOff,
        PlantedBug::AckBeforeCommit,
        PlantedBug::ReopenOnLateSuccess,
        PlantedBug::YuanFenSlip,
        PlantedBug::WrongStateMapping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PlantedBug::NotificationDedupOff => "notification_dedup_off",
            PlantedBug::RefundCeilingOff => "refund_ceiling_off",
            PlantedBug::AckBeforeCommit => "ack_before_commit",
            PlantedBug::ReopenOnLateSuccess => "reopen_on_late_success",
            PlantedBug::YuanFenSlip => "yuan_fen_slip",
            PlantedBug::WrongStateMapping => "wrong_state_mapping",
        }
    }

    fn bit(self) -> u8 {
        match self {
            PlantedBug::NotificationDedupOff => 1,
            PlantedBug::RefundCeilingOff => 1 << 1,
            PlantedBug::AckBeforeCommit => 1 << 2,
            PlantedBug::ReopenOnLateSuccess => 1 << 3,
            PlantedBug::YuanFenSlip => 1 << 4,
            PlantedBug::WrongStateMapping => 1 << 5,
        }
    }
}

/// The set of planted bugs of a gateway: empty unless a test plants some.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PlantedBugs(u8);

impl PlantedBugs {
    pub const NONE: PlantedBugs = PlantedBugs(0);

    pub fn only(bug: PlantedBug) -> PlantedBugs {
        PlantedBugs(bug.bit())
    }

    #[must_use]
    pub fn with(self, bug: PlantedBug) -> PlantedBugs {
        PlantedBugs(self.0 | bug.bit())
    }

    pub fn has(self, bug: PlantedBug) -> bool {
        self.0 & bug.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Validated gateway settings (built from the CLI's config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayConfig {
    /// The gateway's own public base URL; channel notifications go to `<base>/notify/<channel>`.
    pub public_base_url: String,
    /// Channel fee charged to the merchant at capture, in basis points (0 by default).
    pub fee_bps: BTreeMap<Channel, u32>,
    /// Expiry of an order that does not name one.
    pub default_expiry_ms: i64,
    /// Timeout of one channel call.
    pub channel_timeout_ms: u64,
    /// When, after creation, an order still paying is queried at its channel (补单); the last
    /// interval then repeats until the order settles or expires. The default, 5 s, 30 s, 2, 10
    /// and 20 minutes, then every 10 minutes, asks early (Alipay's F2F flow queries 5 s after
    /// the precreate; WeChat Pay asks for a query when no notification came within a minute)
    /// and then backs off: polls are the safety net for lost notifications and the only news of
    /// a trade the channel closed or failed, not the way results normally arrive — five
    /// queries for an order left unpaid for 30 minutes.
    pub poll_schedule_ms: Vec<i64>,
    /// When, after creation, a barcode payment still waiting for the buyer's confirmation is
    /// queried; after the last query it is cancelled (Alipay's F2F practice: five queries five
    /// seconds apart, then cancel).
    pub barcode_poll_schedule_ms: Vec<i64>,
    /// What happens to a payment reported after the order was closed or failed.
    #[serde(default)]
    pub late_payment_policy: LatePaymentPolicy,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            fee_bps: BTreeMap::new(),
            default_expiry_ms: 30 * 60 * 1000,
            channel_timeout_ms: 10_000,
            poll_schedule_ms: vec![5_000, 30_000, 120_000, 600_000, 1_200_000],
            barcode_poll_schedule_ms: vec![5_000, 10_000, 15_000, 20_000, 25_000],
            late_payment_policy: LatePaymentPolicy::Hold,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("channel {0} is not configured on this gateway")]
    ChannelNotConfigured(Channel),
    #[error("channel {channel} does not offer payment method {method}")]
    MethodNotSupported {
        channel: &'static str,
        method: &'static str,
    },
    #[error("merchant {0} does not exist")]
    UnknownMerchant(String),
    #[error("order {0} does not exist")]
    OrderNotFound(String),
    #[error("refund {0} does not exist")]
    RefundNotFound(String),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInProgress,
    #[error("order is {0} and cannot be closed")]
    NotClosable(&'static str),
    #[error("refund refused: {0}")]
    RefundRefused(RefundRefusal),
    #[error("the channel did not answer in time or failed; the outcome is unknown and will be settled by a query: {0}")]
    ChannelUnavailable(String),
    #[error("the channel refused: {0}")]
    ChannelRejected(String),
    #[error("the order needs an operator's review: {0}")]
    NeedsReview(String),
    #[error("too many concurrent updates of {0}; retry")]
    Contention(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a refund is refused: a business outcome, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RefundRefusal {
    #[error("the order is {state} and has no captured payment to refund")]
    NotCaptured { state: &'static str },
    #[error("the refund currency {requested} differs from the order currency {order}")]
    CurrencyMismatch { requested: String, order: String },
    #[error("{requested} requested but only {refundable} remain refundable")]
    ExceedsRefundable { requested: Money, refundable: Money },
}

/// The result of an idempotent create: fresh work, or the stored response of the first request.
#[derive(Debug, Clone, PartialEq)]
pub enum Idempotent<T> {
    Fresh(T),
    Replay { status: u16, body: String },
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub method: PaymentMethod,
    pub method_params: MethodParams,
    pub amount: Money,
    pub subject: String,
    pub expires_at_ms: UnixMillis,
}

/// The caller's idempotency key and the hash of its canonical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyInput {
    pub key: String,
    pub request_hash: String,
}

/// The outcome of creating an order: the stored order, and the channel error when the channel
/// could not be reached (the order then waits for the scheduler's query).
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedOrder {
    pub order: Order,
    pub channel_error: Option<ServiceError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreatedRefund {
    pub refund: Refund,
    pub channel_error: Option<ServiceError>,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    adapters: Adapters,
    executor: Executor,
    scheduler: Scheduler,
    config: GatewayConfig,
    /// Bugs planted by a test ([`Gateway::plant_bugs`]); empty otherwise.
    planted: std::sync::atomic::AtomicU8,
}

/// The payment service. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("backend", &self.inner.store.backend())
            .field("channels", &self.inner.adapters.configured())
            .finish()
    }
}

/// Everything the gateway is built from.
#[derive(Debug, Clone)]
pub struct GatewayParts {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub adapters: Adapters,
    pub transport: Arc<dyn determinism::Transport>,
    pub scheduler: Scheduler,
    pub config: GatewayConfig,
}

impl Gateway {
    /// Builds the service and makes sure the sandbox merchant exists.
    pub async fn new(parts: GatewayParts) -> Result<Gateway, ServiceError> {
        let executor = Executor::new(parts.transport, parts.config.channel_timeout_ms);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                store: parts.store,
                clock: parts.clock,
                entropy: parts.entropy,
                adapters: parts.adapters,
                executor,
                scheduler: parts.scheduler,
                config: parts.config,
                planted: std::sync::atomic::AtomicU8::new(0),
            }),
        };
        let now = gateway.now_ms();
        gateway
            .inner
            .store
            .ensure_merchant(&Merchant {
                id: crate::ids::sandbox_merchant(),
                name: "Sandbox merchant".to_owned(),
                created_at_ms: now,
            })
            .await?;
        Ok(gateway)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// Plants known bugs in this gateway (the property suite's proof that it finds them).
    /// A run-time switch for tests only: no configuration file or flag reaches it.
    pub fn plant_bugs(&self, bugs: PlantedBugs) {
        if !bugs.is_empty() {
            tracing::warn!(?bugs, "planting known bugs in this gateway (test only)");
        }
        self.inner
            .planted
            .store(bugs.0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a bug is planted (see [`PlantedBug`]).
    pub fn planted(&self, bug: PlantedBug) -> bool {
        PlantedBugs(
            self.inner
                .planted
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .has(bug)
    }
    pub fn adapters(&self) -> &Adapters {
        &self.inner.adapters
    }
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }
    pub fn now_ms(&self) -> UnixMillis {
        self.inner.clock.now_ms()
    }
    pub fn entropy(&self) -> &Arc<dyn Entropy> {
        &self.inner.entropy
    }

    fn context(&self, channel: Channel) -> AdapterContext {
        AdapterContext {
            now_ms: self.now_ms(),
            nonce: self.inner.entropy.token(32),
            notify_url: format!(
                "{}/notify/{}",
                self.inner.config.public_base_url.trim_end_matches('/'),
                channel.as_str()
            ),
        }
    }

    fn adapter(&self, channel: Channel) -> Result<Arc<dyn ChannelAdapter>, ServiceError> {
        self.inner
            .adapters
            .get(channel)
            .cloned()
            .ok_or(ServiceError::ChannelNotConfigured(channel))
    }

    fn fee_for(&self, order: &Order) -> Result<Money, ServiceError> {
        let bps = self
            .inner
            .config
            .fee_bps
            .get(&order.channel)
            .copied()
            .unwrap_or(0);
        order
            .amount
            .fee_at_bps(bps)
            .map_err(|e| ServiceError::Invalid {
                field: "fee",
                message: e.to_string(),
            })
    }

    fn transition(
        &self,
        entity: EntityKind,
        id: &str,
        from: Option<&str>,
        to: &str,
        event_key: &str,
        source: &str,
    ) -> NewTransition {
        NewTransition {
            entity,
            entity_id: id.to_owned(),
            from_state: from.map(str::to_owned),
            to_state: to.to_owned(),
            event_key: event_key.to_owned(),
            source: source.to_owned(),
            at_ms: self.now_ms(),
        }
    }

    fn alert(&self, kind: &str, subject: &str, message: String) -> Alert {
        tracing::warn!(kind, subject, %message, "alert raised");
        Alert {
            id: AlertId::generate(self.inner.entropy.as_ref()),
            kind: kind.to_owned(),
            subject_id: subject.to_owned(),
            message,
            at_ms: self.now_ms(),
        }
    }

    /// Raises an alert for an operator on its own (not as part of a state change).
    pub async fn raise_alert(
        &self,
        kind: &str,
        subject: &str,
        message: String,
    ) -> Result<(), ServiceError> {
        let change = Change {
            alert: Some(self.alert(kind, subject, message)),
            ..Change::default()
        };
        self.inner.store.commit(&change).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ orders

    pub async fn get_order(&self, id: &OrderId) -> Result<Order, ServiceError> {
        self.inner
            .store
            .get_order(id)
            .await?
            .ok_or_else(|| ServiceError::OrderNotFound(id.to_string()))
    }

    pub async fn get_refund(&self, id: &RefundId) -> Result<Refund, ServiceError> {
        self.inner
            .store
            .get_refund(id)
            .await?
            .ok_or_else(|| ServiceError::RefundNotFound(id.to_string()))
    }

    /// Stores the order (with its idempotency claim), then asks the channel for what the buyer
    /// needs. Refuses channels without an adapter before storing anything.
    pub async fn create_order(
        &self,
        request: NewOrder,
        idempotency: IdempotencyInput,
    ) -> Result<Idempotent<CreatedOrder>, ServiceError> {
        let adapter = self.adapter(request.channel)?;
        if !adapter.supports(request.method) {
            return Err(ServiceError::MethodNotSupported {
                channel: request.channel.as_str(),
                method: request.method.as_str(),
            });
        }
        if self
            .inner
            .store
            .get_merchant(&request.merchant_id)
            .await?
            .is_none()
        {
            return Err(ServiceError::UnknownMerchant(
                request.merchant_id.to_string(),
            ));
        }
        let now = self.now_ms();
        let order = Order {
            id: OrderId::generate(self.inner.entropy.as_ref()),
            merchant_id: request.merchant_id.clone(),
            channel: request.channel,
            method: request.method,
            method_params: request.method_params,
            amount: request.amount,
            subject: request.subject,
            state: OrderState::Created,
            refunded_minor: 0,
            refund_reserved_minor: 0,
            fee_minor: 0,
            channel_trade_no: None,
            buyer_action: None,
            expires_at_ms: request.expires_at_ms,
            created_at_ms: now,
            updated_at_ms: now,
            paid_at_ms: None,
            version: 1,
        };
        // The adapter checks the method's parameters before anything is stored: a request it
        // cannot express is refused like any other bad field, leaving no order behind.
        let plan = adapter
            .plan_create(&order, &self.context(order.channel))
            .map_err(|e| self.adapter_error(e))?;
        let change = Change {
            idempotency: Some(IdempotencyClaim {
                merchant_id: request.merchant_id,
                scope: "create_order".to_owned(),
                key: idempotency.key,
                request_hash: idempotency.request_hash.clone(),
                resource_id: Some(order.id.to_string()),
            }),
            insert_order: Some(order.clone()),
            transitions: vec![self.transition(
                EntityKind::Order,
                order.id.as_str(),
                None,
                OrderState::Created.as_str(),
                "created",
                "api",
            )],
            ..Change::default()
        };
        match self.inner.store.commit(&change).await? {
            CommitOutcome::Committed => {}
            CommitOutcome::IdempotencyExists(record) => {
                if record.request_hash != idempotency.request_hash {
                    return Err(ServiceError::IdempotencyKeyReused);
                }
                return match record.response {
                    Some((status, body)) => Ok(Idempotent::Replay { status, body }),
                    None => Err(ServiceError::IdempotencyInProgress),
                };
            }
            other => {
                return Err(ServiceError::Store(StoreError::Corrupt {
                    table: "orders",
                    detail: format!("unexpected outcome creating an order: {other:?}"),
                }))
            }
        }
        crate::jobs::schedule_order_followups(self, &order);

        let channel_error = self
            .open_at_channel(adapter.as_ref(), &order, plan)
            .await
            .err();
        let order = self.get_order(&order.id).await?;
        Ok(Idempotent::Fresh(CreatedOrder {
            order,
            channel_error,
        }))
    }

    async fn open_at_channel(
        &self,
        adapter: &dyn ChannelAdapter,
        order: &Order,
        plan: CreatePlan,
    ) -> Result<(), ServiceError> {
        let created = match plan {
            CreatePlan::Local(created) => created,
            CreatePlan::Call(request) => {
                let response = self
                    .inner
                    .executor
                    .send(request)
                    .await
                    .map_err(|e| self.adapter_error(e))?;
                match self
                    .parse_answer(order.channel, response, |r| adapter.parse_create(order, r))
                    .await
                {
                    Ok(created) => created,
                    Err(AdapterError::Rejected { code, message }) => {
                        self.apply_payment(
                            &order.id,
                            PaymentStatus::Failed {
                                reason: format!("{code}: {message}"),
                            },
                            "create",
                        )
                        .await?;
                        return Err(ServiceError::ChannelRejected(format!("{code}: {message}")));
                    }
                    Err(error) => return Err(self.adapter_error(error)),
                }
            }
        };
        self.record_buyer_action(&order.id, created.buyer_action)
            .await?;
        match created.status {
            PaymentStatus::Pending | PaymentStatus::NotFound => Ok(()),
            other => self
                .apply_payment(&order.id, other, "create")
                .await
                .map(|_| ()),
        }
    }

    fn adapter_error(&self, error: AdapterError) -> ServiceError {
        match error {
            AdapterError::Rejected { code, message } => {
                ServiceError::ChannelRejected(format!("{code}: {message}"))
            }
            AdapterError::Invalid(message) => ServiceError::Invalid {
                field: "method_params",
                message,
            },
            AdapterError::Unknown(message)
            | AdapterError::Protocol(message)
            | AdapterError::Signature(message)
            | AdapterError::UnknownKey(message) => ServiceError::ChannelUnavailable(message),
        }
    }

    /// The channel accepted the order: keep what the buyer needs and move created → paying.
    async fn record_buyer_action(
        &self,
        id: &OrderId,
        action: serde_json::Value,
    ) -> Result<(), ServiceError> {
        for _ in 0..CAS_ATTEMPTS {
            let order = self.get_order(id).await?;
            let mut next = order.clone();
            next.buyer_action = Some(action.clone());
            next.version += 1;
            next.updated_at_ms = self.now_ms();
            let mut transitions = Vec::new();
            if let Step::Moved { from, to } = order_step(order.state, OrderEvent::ChannelAccepted) {
                next.state = to;
                transitions.push(self.transition(
                    EntityKind::Order,
                    id.as_str(),
                    Some(from.as_str()),
                    to.as_str(),
                    "accepted",
                    "create",
                ));
            }
            match self
                .inner
                .store
                .commit(&Change {
                    update_order: Some(next),
                    transitions,
                    ..Change::default()
                })
                .await?
            {
                CommitOutcome::Committed | CommitOutcome::EventReplayed => return Ok(()),
                CommitOutcome::VersionConflict => continue,
                other => return Err(unexpected(other)),
            }
        }
        Err(ServiceError::Contention(id.to_string()))
    }

    /// Applies what the channel reports about a payment (a verified notification, a query, the
    /// answer to a create or close). Returns the order as it stands afterwards.
    pub async fn apply_payment(
        &self,
        id: &OrderId,
        status: PaymentStatus,
        source: &str,
    ) -> Result<Order, ServiceError> {
        for _ in 0..CAS_ATTEMPTS {
            let order = self.get_order(id).await?;
            let now = self.now_ms();
            let mut late_refund = None;
            let (event, paid) = match &status {
                PaymentStatus::Pending => (OrderEvent::ChannelAccepted, None),
                PaymentStatus::Paid {
                    channel_trade_no,
                    amount,
                    paid_at_ms,
                } => {
                    if *amount != order.amount {
                        // Fail closed: a report whose amount differs from the order is never
                        // captured and never acknowledged (a notification is answered with the
                        // channel's failure, so it is re-sent); an operator looks at the alert.
                        let message = format!(
                            "channel reports {} paid for an order of {} ({source})",
                            amount, order.amount
                        );
                        let alert = self.alert("amount_mismatch", id.as_str(), message.clone());
                        let change = Change {
                            alert: Some(alert),
                            ..Change::default()
                        };
                        self.inner.store.commit(&change).await?;
                        return Err(ServiceError::NeedsReview(message));
                    }
                    (
                        OrderEvent::PaymentSucceeded,
                        Some((channel_trade_no.clone(), paid_at_ms.unwrap_or(now))),
                    )
                }
                // Planted bug `WrongStateMapping`: the channel's closed read as failed.
                PaymentStatus::Closed if self.planted(PlantedBug::WrongStateMapping) => {
                    (OrderEvent::PaymentFailed, None)
                }
                PaymentStatus::Closed => (OrderEvent::Closed, None),
                PaymentStatus::Failed { .. } => (OrderEvent::PaymentFailed, None),
                PaymentStatus::NotFound => return Ok(order),
            };
            let mut step = order_step(order.state, event);
            if paid.is_some()
                && order.state == OrderState::Closed
                && self.planted(PlantedBug::ReopenOnLateSuccess)
            {
                // Planted bug `ReopenOnLateSuccess`: a success after close reopens the order.
                step = Step::Moved {
                    from: order.state,
                    to: OrderState::Paid,
                };
            }
            let change = match step {
                Step::Unchanged(_)
                    if paid.is_some()
                        && source == "notification"
                        && order.state.is_captured()
                        && self.planted(PlantedBug::NotificationDedupOff) =>
                {
                    // Planted bug `NotificationDedupOff`: a replayed success notification is
                    // booked again, under a key of its own.
                    let fee = Money::from_minor(order.fee_minor, order.amount.currency());
                    let mut entry = entries::capture(
                        EntryId::generate(self.inner.entropy.as_ref()),
                        &order,
                        fee,
                        now,
                    );
                    entry.business_key = format!("{}:{}", entry.business_key, entry.id);
                    Change {
                        entry: Some(entry),
                        ..Change::default()
                    }
                }
                Step::Unchanged(_) => return Ok(order),
                Step::Refused(Refusal::Terminal) if paid.is_some() => {
                    // Money arrived for an order that is closed or failed: it never reopens;
                    // the money is booked to suspense and handled by the configured policy
                    // (design note §11): held for an operator, or refunded to the buyer by a
                    // refund created in this same transaction and sent once it commits.
                    let entry = entries::late_payment(
                        EntryId::generate(self.inner.entropy.as_ref()),
                        &order,
                        now,
                    );
                    let refund = (self.inner.config.late_payment_policy
                        == LatePaymentPolicy::Refund
                        && self.inner.adapters.get(order.channel).is_some())
                    .then(|| self.late_payment_refund(&order, now));
                    let handling = if refund.is_some() {
                        "refunding it automatically"
                    } else {
                        "held in suspense"
                    };
                    let alert = self.alert(
                        "late_payment",
                        id.as_str(),
                        format!(
                            "{} paid after the order was {}; {handling} ({source})",
                            order.amount,
                            order.state.as_str()
                        ),
                    );
                    let transitions = refund
                        .iter()
                        .map(|refund| {
                            self.transition(
                                EntityKind::Refund,
                                refund.id.as_str(),
                                None,
                                RefundState::Pending.as_str(),
                                "created",
                                source,
                            )
                        })
                        .collect();
                    late_refund = refund.clone();
                    Change {
                        insert_refund: refund,
                        transitions,
                        entry: Some(entry),
                        alert: Some(alert),
                        ..Change::default()
                    }
                }
                Step::Refused(refusal) => {
                    tracing::info!(order = %id, ?refusal, ?status, source, "channel report does not apply");
                    return Ok(order);
                }
                Step::Moved { from, to } => {
                    let mut next = order.clone();
                    next.state = to;
                    next.version += 1;
                    next.updated_at_ms = now;
                    let mut entry = None;
                    if let Some((trade_no, paid_at)) = &paid {
                        next.channel_trade_no = Some(trade_no.clone());
                        next.paid_at_ms = Some(*paid_at);
                        next.fee_minor = self.fee_for(&order)?.minor();
                        let fee = Money::from_minor(next.fee_minor, order.amount.currency());
                        entry = Some(entries::capture(
                            EntryId::generate(self.inner.entropy.as_ref()),
                            &next,
                            fee,
                            now,
                        ));
                    }
                    let event_key = match event {
                        OrderEvent::ChannelAccepted => "accepted",
                        OrderEvent::PaymentSucceeded => "payment",
                        OrderEvent::PaymentFailed => "failed",
                        OrderEvent::Closed => "closed",
                        OrderEvent::RefundSucceeded { .. } => "refund",
                    };
                    Change {
                        update_order: Some(next),
                        transitions: vec![self.transition(
                            EntityKind::Order,
                            id.as_str(),
                            Some(from.as_str()),
                            to.as_str(),
                            event_key,
                            source,
                        )],
                        entry,
                        ..Change::default()
                    }
                }
            };
            match self.inner.store.commit(&change).await? {
                CommitOutcome::Committed => {
                    if let Some(refund) = late_refund {
                        self.send_late_payment_refund(&order, &refund).await;
                    }
                    return self.get_order(id).await;
                }
                CommitOutcome::AlreadyBooked | CommitOutcome::EventReplayed => {
                    return self.get_order(id).await;
                }
                CommitOutcome::VersionConflict => continue,
                other => return Err(unexpected(other)),
            }
        }
        Err(ServiceError::Contention(id.to_string()))
    }

    /// The automatic refund of a late payment (`LatePaymentPolicy::Refund`): the whole amount,
    /// pending, of kind `late_payment`. It reserves nothing on the order, which stays closed.
    fn late_payment_refund(&self, order: &Order, now: UnixMillis) -> Refund {
        Refund {
            id: RefundId::generate(self.inner.entropy.as_ref()),
            order_id: order.id.clone(),
            kind: RefundKind::LatePayment,
            merchant_id: order.merchant_id.clone(),
            channel: order.channel,
            amount: order.amount,
            reason: Some(LATE_PAYMENT_REFUND_REASON.to_owned()),
            state: RefundState::Pending,
            fee_refund_minor: 0,
            channel_refund_no: None,
            created_at_ms: now,
            updated_at_ms: now,
            version: 1,
        }
    }

    /// Sends a committed late-payment refund to the channel and schedules its queries. The
    /// late payment itself is booked whatever happens here, so a failure is only logged: the
    /// refund stays pending and its polls settle it.
    async fn send_late_payment_refund(&self, order: &Order, refund: &Refund) {
        crate::jobs::schedule_refund_followups(self, refund);
        if let Err(error) = self.send_refund(order, refund).await {
            tracing::warn!(order = %order.id, refund = %refund.id, %error,
                "sending the automatic refund of a late payment failed; its polls settle it");
        }
    }

    /// Closes an unpaid order, at the channel first. Closing a closed order is a no-op; a
    /// channel that reports the order paid wins (the payment is booked and the close refused).
    pub async fn close_order(&self, id: &OrderId, source: &str) -> Result<Order, ServiceError> {
        let order = self.get_order(id).await?;
        match order.state {
            OrderState::Closed => return Ok(order),
            OrderState::Created | OrderState::Paying => {}
            OrderState::Paid
            | OrderState::PartiallyRefunded
            | OrderState::Refunded
            | OrderState::Failed => return Err(ServiceError::NotClosable(order.state.as_str())),
        }
        let mut never_seen = false;
        let status = match self.inner.adapters.get(order.channel) {
            Some(adapter) => {
                let request = adapter.build_close(&order, &self.context(order.channel));
                match self
                    .exchange(order.channel, request, |r| adapter.parse_close(&order, r))
                    .await?
                {
                    PaymentStatus::NotFound => {
                        never_seen = true;
                        PaymentStatus::Closed
                    }
                    // The channel would not close: ask what happened (paid in the meantime).
                    PaymentStatus::Pending => {
                        let request = adapter.build_query(&order, &self.context(order.channel));
                        self.exchange(order.channel, request, |r| adapter.parse_query(&order, r))
                            .await?
                    }
                    other => other,
                }
            }
            // No adapter (the channel was unconfigured since): nothing to close remotely.
            None => PaymentStatus::Closed,
        };
        // A payment of another amount comes back as `NeedsReview` (alert raised): retrying the
        // close would not change the answer.
        let after = self.apply_payment(id, status, source).await?;
        if never_seen && after.state == OrderState::Closed && self.now_ms() < order.expires_at_ms {
            // The channel had not seen the order (an unscanned QR code), so nothing was closed
            // there and the buyer can still pay until the original expiry: look once more then,
            // so a payment whose notifications are lost still reaches suspense.
            crate::jobs::schedule_late_check(self, &order);
        }
        match after.state {
            OrderState::Closed => Ok(after),
            OrderState::Created | OrderState::Paying => Err(ServiceError::ChannelUnavailable(
                "the channel did not confirm the close".to_owned(),
            )),
            state => Err(ServiceError::NotClosable(state.as_str())),
        }
    }

    /// Applies a payment report from a notification. A report that an order's trade closed
    /// or failed is not taken on its word while the order is still open: the channel is
    /// queried and its answer applied, so a signed but conflicting notification (a
    /// `TRADE_CLOSED` for a trade that was paid) never gives up an order whose money moved.
    /// Likewise a payment of an order already closed or failed is booked as a late payment
    /// only if the channel still says paid: a trade paid and then returned to the buyer (a
    /// cancel or reverse of a paid payment-code trade) leaves nothing to book. Any other
    /// report applies as it is.
    pub async fn apply_payment_report(
        &self,
        id: &OrderId,
        status: PaymentStatus,
    ) -> Result<Order, ServiceError> {
        let order = self.get_order(id).await?;
        let confirm = match &status {
            PaymentStatus::Closed | PaymentStatus::Failed { .. } => order.state.is_open(),
            // A payment of a closed order would be booked as a late payment, but the trade
            // may have been paid and returned since: an Alipay cancel of a paid trade refunds
            // the buyer, a WeChat Pay reverse too, while the payment's notification is still
            // being re-sent. The channel's answer now says which (a report of another amount
            // is refused as it stands, with its alert).
            PaymentStatus::Paid { amount, .. } => {
                *amount == order.amount
                    && matches!(order.state, OrderState::Closed | OrderState::Failed)
            }
            PaymentStatus::Pending | PaymentStatus::NotFound => false,
        };
        if confirm {
            tracing::info!(order = %id, state = order.state.as_str(), "a notification reports what the order's state does not expect; confirming with a query");
            return self.query_order(id, "notification").await;
        }
        self.apply_payment(id, status, "notification").await
    }

    /// Asks the channel about an open order and applies the answer (补单).
    pub async fn query_order(&self, id: &OrderId, source: &str) -> Result<Order, ServiceError> {
        let order = self.get_order(id).await?;
        let adapter = self.adapter(order.channel)?;
        let request = adapter.build_query(&order, &self.context(order.channel));
        let status = self
            .exchange(order.channel, request, |r| adapter.parse_query(&order, r))
            .await?;
        self.apply_payment(id, status, source).await
    }

    /// Sends one request an adapter built and parses the answer; every adapter failure becomes
    /// the service error it stands for.
    async fn exchange<T>(
        &self,
        channel: Channel,
        request: Result<determinism::HttpRequest, AdapterError>,
        parse: impl Fn(determinism::HttpResponse) -> Result<T, AdapterError>,
    ) -> Result<T, ServiceError> {
        let request = request.map_err(|e| self.adapter_error(e))?;
        let response = self
            .inner
            .executor
            .send(request)
            .await
            .map_err(|e| self.adapter_error(e))?;
        self.parse_answer(channel, response, parse)
            .await
            .map_err(|e| self.adapter_error(e))
    }

    /// Parses an answer; when the adapter does not hold the key it names
    /// ([`AdapterError::UnknownKey`]), refreshes the channel's keys once and parses the same
    /// bytes again. Still unknown (or the refresh failed): the error stands (fail closed).
    async fn parse_answer<T>(
        &self,
        channel: Channel,
        response: determinism::HttpResponse,
        parse: impl Fn(determinism::HttpResponse) -> Result<T, AdapterError>,
    ) -> Result<T, AdapterError> {
        match parse(copy_response(&response)) {
            Err(AdapterError::UnknownKey(message)) => {
                if let Err(error) = self.refresh_channel_keys(channel).await {
                    tracing::warn!(%error, channel = channel.as_str(), "key refresh failed");
                    return Err(AdapterError::UnknownKey(message));
                }
                parse(response)
            }
            other => other,
        }
    }

    /// Fetches the channel's current verifying keys (WeChat Pay platform certificates) through
    /// the executor and hands them to the adapter, which verifies and learns them. Called once
    /// per answer or notification that names an unknown key.
    pub async fn refresh_channel_keys(&self, channel: Channel) -> Result<(), ServiceError> {
        let adapter = self.adapter(channel)?;
        let Some(request) = adapter.build_key_refresh(&self.context(channel)) else {
            return Err(ServiceError::ChannelUnavailable(format!(
                "channel {} has no key refresh",
                channel.as_str()
            )));
        };
        let request = request.map_err(|e| self.adapter_error(e))?;
        let response = self
            .inner
            .executor
            .send(request)
            .await
            .map_err(|e| self.adapter_error(e))?;
        adapter
            .apply_key_refresh(response)
            .map_err(|e| self.adapter_error(e))?;
        tracing::info!(channel = channel.as_str(), "channel keys refreshed");
        Ok(())
    }

    // ------------------------------------------------------------------ refunds

    /// Reserves the amount against the order's ceiling (pending + succeeded ≤ paid) and sends
    /// the refund to the channel. A refusal is a value ([`RefundRefusal`]), checked before
    /// anything is written.
    pub async fn create_refund(
        &self,
        order_id: &OrderId,
        amount: Money,
        reason: Option<String>,
        idempotency: IdempotencyInput,
    ) -> Result<Idempotent<CreatedRefund>, ServiceError> {
        let scope = format!("create_refund:{order_id}");
        let refund_id = RefundId::generate(self.inner.entropy.as_ref());
        let mut created = None;
        for _ in 0..CAS_ATTEMPTS {
            let order = self.get_order(order_id).await?;
            let adapter_present = self.inner.adapters.get(order.channel).is_some();
            let refusal = refund_refusal(&order, amount).filter(|refusal| {
                // Planted bug `RefundCeilingOff`: the ceiling is not enforced.
                !(matches!(refusal, RefundRefusal::ExceedsRefundable { .. })
                    && self.planted(PlantedBug::RefundCeilingOff))
            });
            if let Some(refusal) = refusal {
                // A retry of a request that already succeeded must replay, not be refused by
                // the reservation it made itself.
                if let Some(record) = self
                    .inner
                    .store
                    .get_idempotency(&order.merchant_id, &scope, &idempotency.key)
                    .await?
                {
                    return replay(record, &idempotency);
                }
                return Err(ServiceError::RefundRefused(refusal));
            }
            if !adapter_present {
                return Err(ServiceError::ChannelNotConfigured(order.channel));
            }
            let now = self.now_ms();
            let refund = Refund {
                id: refund_id.clone(),
                order_id: order.id.clone(),
                merchant_id: order.merchant_id.clone(),
                channel: order.channel,
                amount,
                kind: RefundKind::Merchant,
                reason: reason.clone(),
                state: RefundState::Pending,
                fee_refund_minor: 0,
                channel_refund_no: None,
                created_at_ms: now,
                updated_at_ms: now,
                version: 1,
            };
            let mut next = order.clone();
            next.refund_reserved_minor += amount.minor();
            next.version += 1;
            next.updated_at_ms = now;
            let change = Change {
                idempotency: Some(IdempotencyClaim {
                    merchant_id: order.merchant_id.clone(),
                    scope: scope.clone(),
                    key: idempotency.key.clone(),
                    request_hash: idempotency.request_hash.clone(),
                    resource_id: Some(refund_id.to_string()),
                }),
                update_order: Some(next),
                insert_refund: Some(refund.clone()),
                transitions: vec![self.transition(
                    EntityKind::Refund,
                    refund_id.as_str(),
                    None,
                    RefundState::Pending.as_str(),
                    "created",
                    "api",
                )],
                ..Change::default()
            };
            match self.inner.store.commit(&change).await? {
                CommitOutcome::Committed => {
                    created = Some((order, refund));
                    break;
                }
                CommitOutcome::IdempotencyExists(record) => return replay(record, &idempotency),
                CommitOutcome::VersionConflict => continue,
                other => return Err(unexpected(other)),
            }
        }
        let Some((order, refund)) = created else {
            return Err(ServiceError::Contention(order_id.to_string()));
        };
        crate::jobs::schedule_refund_followups(self, &refund);
        let channel_error = self.send_refund(&order, &refund).await.err();
        let refund = self.get_refund(&refund.id).await?;
        Ok(Idempotent::Fresh(CreatedRefund {
            refund,
            channel_error,
        }))
    }

    async fn send_refund(&self, order: &Order, refund: &Refund) -> Result<Refund, ServiceError> {
        let adapter = self.adapter(order.channel)?;
        let request = adapter.build_refund(order, refund, &self.context(order.channel));
        // A refund the channel refuses outright has failed; its reservation is released.
        let status = self
            .exchange(order.channel, request, |r| {
                match adapter.parse_refund(order, refund, r) {
                    Err(AdapterError::Rejected { code, message }) => Ok(RefundStatus::Failed {
                        reason: format!("{code}: {message}"),
                    }),
                    other => other,
                }
            })
            .await?;
        self.apply_refund(&refund.id, status, "refund").await
    }

    /// Asks the channel about a pending refund and applies the answer.
    pub async fn query_refund(&self, id: &RefundId, source: &str) -> Result<Refund, ServiceError> {
        let refund = self.get_refund(id).await?;
        let order = self.get_order(&refund.order_id).await?;
        let adapter = self.adapter(order.channel)?;
        let request = adapter.build_refund_query(&order, &refund, &self.context(order.channel));
        let status = match self
            .exchange(order.channel, request, |r| {
                adapter.parse_refund_query(&order, &refund, r)
            })
            .await
        {
            // The channel refuses to tell (it does not know the refund: the request was lost
            // on the way). Send it again under the same refund id, which the channel treats
            // as the same refund; a refusal then fails it and releases the reservation.
            Err(ServiceError::ChannelRejected(reason)) if refund.state == RefundState::Pending => {
                tracing::info!(refund = %id, %reason, "refund unknown to the channel; sending it again");
                return self.send_refund(&order, &refund).await;
            }
            other => other?,
        };
        self.apply_refund(id, status, source).await
    }

    /// Applies a refund report that states the amount moved (a notification). A success for
    /// another amount than the refund's is not taken on its word while the refund is pending:
    /// the channel is queried and its answer applied (abnormal if the query too reports
    /// another amount, exactly as adapters map it) — so a signed notification whose amount
    /// was altered never parks a refund the channel executed as asked. For a refund already
    /// settled such a report is abnormal and contradicts the final state (logged, unchanged).
    pub async fn apply_refund_report(
        &self,
        id: &RefundId,
        status: RefundStatus,
        reported_amount: Option<Money>,
        source: &str,
    ) -> Result<Refund, ServiceError> {
        let status = match (&status, reported_amount) {
            (RefundStatus::Succeeded { .. }, Some(reported)) => {
                let refund = self.get_refund(id).await?;
                if reported == refund.amount {
                    status
                } else if refund.state == RefundState::Pending {
                    tracing::info!(refund = %id, %reported, "refund reported for another amount; confirming with a query");
                    return self.query_refund(id, source).await;
                } else {
                    RefundStatus::Abnormal {
                        reason: format!(
                            "the channel reports {reported} refunded for a refund of {}",
                            refund.amount
                        ),
                    }
                }
            }
            _ => status,
        };
        self.apply_refund(id, status, source).await
    }

    /// Applies what the channel reports about a refund: success books it and consumes the
    /// reservation, failure releases it, abnormal parks the money in suspense with an alert.
    /// The automatic refund of a late payment touches neither the order nor the merchant's
    /// payable: success moves the money out of suspense; failure and abnormal leave it there
    /// (no entry) and raise an alert.
    pub async fn apply_refund(
        &self,
        id: &RefundId,
        status: RefundStatus,
        source: &str,
    ) -> Result<Refund, ServiceError> {
        for _ in 0..CAS_ATTEMPTS {
            let refund = self.get_refund(id).await?;
            let now = self.now_ms();
            let (event, channel_refund_no) = match &status {
                RefundStatus::Pending => return Ok(refund),
                RefundStatus::Succeeded { channel_refund_no } => {
                    (RefundEvent::Succeeded, channel_refund_no.clone())
                }
                RefundStatus::Failed { .. } => (RefundEvent::Failed, None),
                RefundStatus::Abnormal { .. } => (RefundEvent::Abnormal, None),
            };
            let (from, to) = match refund_step(refund.state, event) {
                Step::Moved { from, to } => (from, to),
                Step::Unchanged(_) => return Ok(refund),
                Step::Refused(refusal) => {
                    tracing::warn!(refund = %id, ?refusal, ?status, source, "refund report contradicts a final state");
                    return Ok(refund);
                }
            };
            let mut next_refund = refund.clone();
            next_refund.state = to;
            next_refund.version += 1;
            next_refund.updated_at_ms = now;
            if channel_refund_no.is_some() {
                next_refund.channel_refund_no = channel_refund_no;
            }
            let transition = self.transition(
                EntityKind::Refund,
                id.as_str(),
                Some(from.as_str()),
                to.as_str(),
                to.as_str(),
                source,
            );
            let change = match refund.kind {
                RefundKind::Merchant => {
                    self.merchant_refund_change(&refund, next_refund, (from, to), transition, now)
                        .await?
                }
                RefundKind::LatePayment => self.late_payment_refund_change(
                    &refund,
                    next_refund,
                    to,
                    transition,
                    &status,
                    now,
                ),
            };
            match self.inner.store.commit(&change).await? {
                CommitOutcome::Committed
                | CommitOutcome::AlreadyBooked
                | CommitOutcome::EventReplayed => return self.get_refund(id).await,
                CommitOutcome::VersionConflict => continue,
                other => return Err(unexpected(other)),
            }
        }
        Err(ServiceError::Contention(id.to_string()))
    }

    /// The change a merchant refund's move `from → to` commits: the refund row, the order's
    /// counters and state (compare-and-set on the order), the ledger entry, an alert.
    async fn merchant_refund_change(
        &self,
        refund: &Refund,
        mut next_refund: Refund,
        (from, to): (RefundState, RefundState),
        transition: NewTransition,
        now: UnixMillis,
    ) -> Result<Change, ServiceError> {
        let id = &refund.id;
        let source = transition.source.clone();
        let order = self.get_order(&refund.order_id).await?;
        let amount = refund.amount.minor();
        if from == RefundState::Pending
            && matches!(to, RefundState::Succeeded | RefundState::Abnormal)
        {
            // The money leaves the merchant's payable now: fix the fee share it takes back.
            // (A stale read of the siblings is caught by the order's version check below.)
            // Late-payment refunds are no siblings: they never touched the payable.
            let siblings = self.inner.store.refunds_for_order(&order.id).await?;
            let taken: Vec<&Refund> = siblings
                .iter()
                .filter(|r| {
                    r.id != refund.id
                        && r.kind == RefundKind::Merchant
                        && matches!(r.state, RefundState::Succeeded | RefundState::Abnormal)
                })
                .collect();
            let before = taken.iter().map(|r| r.amount.minor()).sum();
            let returned = taken.iter().map(|r| r.fee_refund_minor).sum();
            next_refund.fee_refund_minor = crate::ledger::fee_share(
                order.fee_minor,
                order.amount.minor(),
                before,
                returned,
                amount,
            );
        }
        let mut next_order = order.clone();
        next_order.version += 1;
        next_order.updated_at_ms = now;
        let entropy = self.inner.entropy.as_ref();
        let mut transitions = vec![transition];
        let mut alert = None;
        let entry = match to {
            RefundState::Succeeded => {
                next_order.refund_reserved_minor -= amount;
                next_order.refunded_minor += amount;
                let event = OrderEvent::RefundSucceeded {
                    refunded_after_minor: next_order.refunded_minor,
                    amount_minor: order.amount.minor(),
                };
                match order_step(order.state, event) {
                    Step::Moved {
                        from: order_from,
                        to: order_to,
                    } => {
                        next_order.state = order_to;
                        transitions.push(self.transition(
                            EntityKind::Order,
                            order.id.as_str(),
                            Some(order_from.as_str()),
                            order_to.as_str(),
                            &format!("refund:{id}"),
                            &source,
                        ));
                    }
                    Step::Unchanged(_) | Step::Refused(_) => {
                        return Err(ServiceError::Store(StoreError::Corrupt {
                            table: "orders",
                            detail: format!(
                                "refund {id} succeeded on order {} in state {}",
                                order.id,
                                order.state.as_str()
                            ),
                        }))
                    }
                }
                Some(entries::refund(
                    EntryId::generate(entropy),
                    &next_refund,
                    from == RefundState::Abnormal,
                    now,
                ))
            }
            RefundState::Failed => {
                next_order.refund_reserved_minor -= amount;
                (from == RefundState::Abnormal).then(|| {
                    entries::refund_reversal(EntryId::generate(entropy), &next_refund, now)
                })
            }
            RefundState::Abnormal => {
                alert = Some(self.alert(
                    "refund_abnormal",
                    id.as_str(),
                    format!(
                        "refund of {} is abnormal at the channel; parked in suspense",
                        refund.amount
                    ),
                ));
                Some(entries::refund_parked(
                    EntryId::generate(entropy),
                    &next_refund,
                    now,
                ))
            }
            RefundState::Pending => None,
        };
        Ok(Change {
            update_order: Some(next_order),
            update_refund: Some(next_refund),
            transitions,
            entry,
            alert,
            ..Change::default()
        })
    }

    /// The change a late-payment refund's move to `to` commits: the refund row only
    /// (compare-and-set on the refund; the order is not touched), and on success the entry
    /// that takes the money out of suspense. Failed or abnormal, the money is still in
    /// suspense: no entry, an alert for an operator.
    fn late_payment_refund_change(
        &self,
        refund: &Refund,
        next_refund: Refund,
        to: RefundState,
        transition: NewTransition,
        status: &RefundStatus,
        now: UnixMillis,
    ) -> Change {
        let (entry, alert) = match to {
            RefundState::Succeeded => (
                Some(entries::refund(
                    EntryId::generate(self.inner.entropy.as_ref()),
                    &next_refund,
                    true,
                    now,
                )),
                None,
            ),
            RefundState::Failed | RefundState::Abnormal => {
                let why = match status {
                    RefundStatus::Failed { reason } | RefundStatus::Abnormal { reason } => {
                        reason.as_str()
                    }
                    RefundStatus::Pending | RefundStatus::Succeeded { .. } => "",
                };
                let kind = if to == RefundState::Failed {
                    "late_payment_refund_failed"
                } else {
                    "late_payment_refund_abnormal"
                };
                let alert = self.alert(
                    kind,
                    refund.id.as_str(),
                    format!(
                        "the automatic refund of {} paid late on order {} is {} ({why}); the money stays in suspense",
                        refund.amount,
                        refund.order_id,
                        to.as_str()
                    ),
                );
                (None, Some(alert))
            }
            RefundState::Pending => (None, None),
        };
        Change {
            update_refund: Some(next_refund),
            transitions: vec![transition],
            entry,
            alert,
            ..Change::default()
        }
    }
}

/// The refusal precedence of a refund request, or `None` when it may proceed.
pub fn refund_refusal(order: &Order, amount: Money) -> Option<RefundRefusal> {
    if !matches!(
        order.state,
        OrderState::Paid | OrderState::PartiallyRefunded
    ) {
        return Some(RefundRefusal::NotCaptured {
            state: order.state.as_str(),
        });
    }
    if amount.currency() != order.amount.currency() {
        return Some(RefundRefusal::CurrencyMismatch {
            requested: amount.currency().to_string(),
            order: order.amount.currency().to_string(),
        });
    }
    // The order's counters only count merchant refunds: a late-payment refund never reserves
    // against them (and its order is closed or failed, so refused above anyway).
    let refundable = order.refundable_minor();
    if amount.minor() > refundable {
        return Some(RefundRefusal::ExceedsRefundable {
            requested: amount,
            refundable: Money::from_minor(refundable, order.amount.currency()),
        });
    }
    None
}

fn replay<T>(
    record: crate::store::IdempotencyRecord,
    idempotency: &IdempotencyInput,
) -> Result<Idempotent<T>, ServiceError> {
    if record.request_hash != idempotency.request_hash {
        return Err(ServiceError::IdempotencyKeyReused);
    }
    match record.response {
        Some((status, body)) => Ok(Idempotent::Replay { status, body }),
        None => Err(ServiceError::IdempotencyInProgress),
    }
}

/// A copy of an answer (status, version, headers, body; the body is shared, not copied), so
/// the same bytes can be parsed again after a key refresh.
fn copy_response(response: &determinism::HttpResponse) -> determinism::HttpResponse {
    let mut copy = http::Response::new(response.body().clone());
    *copy.status_mut() = response.status();
    *copy.version_mut() = response.version();
    *copy.headers_mut() = response.headers().clone();
    copy
}

fn unexpected(outcome: CommitOutcome) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt {
        table: "ledger",
        detail: format!("unexpected commit outcome {outcome:?}"),
    })
}
