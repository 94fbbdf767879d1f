//! Order and refund state machines: closed enums, one transition function each, exhaustive
//! matches, and terminal-state monotonicity (ledger invariant I5).
//!
//! ```text
//! order:  created ──► paying ──► paid ──► partially_refunded ──► refunded
//!            │  └────────┴──► closed | failed        └──────────────┘
//!            └──────────────► paid
//! refund: pending ──► succeeded | failed | abnormal;  abnormal ──► succeeded | failed
//! ```
//! Business outcomes are values: a transition that does not apply is a [`Refusal`], a replay
//! of the state an entity is already in is [`Step::Unchanged`].

use serde::{Deserialize, Serialize};

/// A payment channel paysim knows. Whether it is *configured* (has an adapter) is a separate
/// question answered by the gateway's adapter registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Alipay,
    Wechatpay,
    Unionpay,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Alipay, Channel::Wechatpay, Channel::Unionpay];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Alipay => "alipay",
            Channel::Wechatpay => "wechatpay",
            Channel::Unionpay => "unionpay",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the buyer pays. Which methods a channel offers is the adapter's to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethod {
    /// A QR code the buyer scans (Alipay precreate, WeChat Native).
    Qr,
    /// A desktop cashier page (Alipay page pay, UnionPay front consume).
    Page,
    /// A mobile-web cashier page (Alipay wap pay, WeChat H5).
    Wap,
    /// An order string or prepay id handed to the channel's app SDK.
    App,
    /// The merchant scans the buyer's code (`auth_code`).
    Barcode,
    /// In-app browser / mini program payment for a known `openid` (WeChat JSAPI).
    Jsapi,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 6] = [
        PaymentMethod::Qr,
        PaymentMethod::Page,
        PaymentMethod::Wap,
        PaymentMethod::App,
        PaymentMethod::Barcode,
        PaymentMethod::Jsapi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Qr => "qr",
            PaymentMethod::Page => "page",
            PaymentMethod::Wap => "wap",
            PaymentMethod::App => "app",
            PaymentMethod::Barcode => "barcode",
            PaymentMethod::Jsapi => "jsapi",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentMethod> {
        PaymentMethod::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Stored; the channel has not (yet) acknowledged it.
    Created,
    /// The channel knows the order; the buyer has not paid yet.
    Paying,
    Paid,
    PartiallyRefunded,
    /// Fully refunded: terminal.
    Refunded,
    /// Closed unpaid (merchant close or expiry): terminal.
    Closed,
    /// Payment failed at the channel: terminal.
    Failed,
}

impl OrderState {
    pub const ALL: [OrderState; 7] = [
        OrderState::Created,
        OrderState::Paying,
        OrderState::Paid,
        OrderState::PartiallyRefunded,
        OrderState::Refunded,
        OrderState::Closed,
        OrderState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Paying => "paying",
            OrderState::Paid => "paid",
            OrderState::PartiallyRefunded => "partially_refunded",
            OrderState::Refunded => "refunded",
            OrderState::Closed => "closed",
            OrderState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<OrderState> {
        OrderState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        match self {
            OrderState::Refunded | OrderState::Closed | OrderState::Failed => true,
            OrderState::Created
            | OrderState::Paying
            | OrderState::Paid
            | OrderState::PartiallyRefunded => false,
        }
    }

    /// The buyer's money has been captured (whatever has been refunded since).
    pub fn is_captured(self) -> bool {
        match self {
            OrderState::Paid | OrderState::PartiallyRefunded | OrderState::Refunded => true,
            OrderState::Created | OrderState::Paying | OrderState::Closed | OrderState::Failed => {
                false
            }
        }
    }

    /// Still waiting for the buyer: the scheduler queries and expires these.
    pub fn is_open(self) -> bool {
        match self {
            OrderState::Created | OrderState::Paying => true,
            OrderState::Paid
            | OrderState::PartiallyRefunded
            | OrderState::Refunded
            | OrderState::Closed
            | OrderState::Failed => false,
        }
    }

    /// Whether `from → to` is a legal edge of the machine. The history check of I5 uses this.
    pub fn edge_allowed(from: OrderState, to: OrderState) -> bool {
        use OrderState as S;
        match from {
            S::Created => matches!(to, S::Paying | S::Paid | S::Closed | S::Failed),
            S::Paying => matches!(to, S::Paid | S::Closed | S::Failed),
            S::Paid => matches!(to, S::PartiallyRefunded | S::Refunded),
            S::PartiallyRefunded => matches!(to, S::PartiallyRefunded | S::Refunded),
            S::Refunded | S::Closed | S::Failed => false,
        }
    }
}

/// Something that happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The channel accepted the order (QR issued, prepay id returned, cashier opened).
    ChannelAccepted,
    /// The channel reports the buyer paid (notification or query).
    PaymentSucceeded,
    /// The channel reports the payment failed for good.
    PaymentFailed,
    /// Closed unpaid: merchant request or expiry, after the channel agreed.
    Closed,
    /// A refund succeeded; `refunded_after_minor` is the order's succeeded-refund total
    /// including this one, `amount_minor` the order amount.
    RefundSucceeded {
        refunded_after_minor: i64,
        amount_minor: i64,
    },
}

/// Why an event does not apply to an order's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The order reached a terminal state; it never leaves it (I5).
    Terminal,
    /// Closing or failing an order whose money is already captured.
    AlreadyCaptured,
    /// A refund on an order that was never captured.
    NotCaptured,
    /// A refund total above the order amount (I4).
    OverRefund,
}

/// The result of applying an event: a move, a replay that changes nothing (I8), or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<S> {
    Moved { from: S, to: S },
    Unchanged(S),
    Refused(Refusal),
}

/// The one transition function of the order machine.
pub fn order_step(state: OrderState, event: OrderEvent) -> Step<OrderState> {
    use OrderEvent as E;
    use OrderState as S;
    let moved = |to| Step::Moved { from: state, to };
    match (state, event) {
        (S::Created, E::ChannelAccepted) => moved(S::Paying),
        (S::Paying | S::Paid | S::PartiallyRefunded | S::Refunded, E::ChannelAccepted) => {
            Step::Unchanged(state)
        }
        (S::Closed | S::Failed, E::ChannelAccepted) => Step::Unchanged(state),

        (S::Created | S::Paying, E::PaymentSucceeded) => moved(S::Paid),
        (S::Paid | S::PartiallyRefunded | S::Refunded, E::PaymentSucceeded) => {
            Step::Unchanged(state)
        }
        // A success after close or failure is money without an open order: the caller books
        // it to suspense; the order never reopens.
        (S::Closed | S::Failed, E::PaymentSucceeded) => Step::Refused(Refusal::Terminal),

        (S::Created | S::Paying, E::PaymentFailed) => moved(S::Failed),
        (S::Failed, E::PaymentFailed) => Step::Unchanged(state),
        (S::Closed, E::PaymentFailed) => Step::Unchanged(state),
        (S::Paid | S::PartiallyRefunded | S::Refunded, E::PaymentFailed) => {
            Step::Refused(Refusal::AlreadyCaptured)
        }

        (S::Created | S::Paying, E::Closed) => moved(S::Closed),
        (S::Closed, E::Closed) => Step::Unchanged(state),
        (S::Failed, E::Closed) => Step::Refused(Refusal::Terminal),
        (S::Paid | S::PartiallyRefunded | S::Refunded, E::Closed) => {
            Step::Refused(Refusal::AlreadyCaptured)
        }

        (
            S::Paid | S::PartiallyRefunded,
            E::RefundSucceeded {
                refunded_after_minor,
                amount_minor,
            },
        ) => {
            if refunded_after_minor > amount_minor {
                Step::Refused(Refusal::OverRefund)
            } else if refunded_after_minor == amount_minor {
                moved(S::Refunded)
            } else {
                moved(S::PartiallyRefunded)
            }
        }
        (S::Refunded, E::RefundSucceeded { .. }) => Step::Refused(Refusal::Terminal),
        (S::Created | S::Paying | S::Closed | S::Failed, E::RefundSucceeded { .. }) => {
            Step::Refused(Refusal::NotCaptured)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Sent (or about to be sent) to the channel; its amount is reserved against the order.
    Pending,
    Succeeded,
    Failed,
    /// The channel could not complete it (e.g. the buyer's card was closed); the money sits in
    /// suspense and an alert is raised until an operator resolves it.
    Abnormal,
}

impl RefundState {
    pub const ALL: [RefundState; 4] = [
        RefundState::Pending,
        RefundState::Succeeded,
        RefundState::Failed,
        RefundState::Abnormal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Pending => "pending",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
            RefundState::Abnormal => "abnormal",
        }
    }

    pub fn parse(text: &str) -> Option<RefundState> {
        RefundState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        match self {
            RefundState::Succeeded | RefundState::Failed => true,
            RefundState::Pending | RefundState::Abnormal => false,
        }
    }

    /// Counts against the order's refundable ceiling: pending and abnormal reserve, succeeded
    /// consumes.
    pub fn holds_money(self) -> bool {
        match self {
            RefundState::Pending | RefundState::Succeeded | RefundState::Abnormal => true,
            RefundState::Failed => false,
        }
    }

    pub fn edge_allowed(from: RefundState, to: RefundState) -> bool {
        use RefundState as R;
        match from {
            R::Pending => matches!(to, R::Succeeded | R::Failed | R::Abnormal),
            R::Abnormal => matches!(to, R::Succeeded | R::Failed),
            R::Succeeded | R::Failed => false,
        }
    }
}

/// What the channel says about a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundEvent {
    Succeeded,
    Failed,
    Abnormal,
}

/// The one transition function of the refund machine.
pub fn refund_step(state: RefundState, event: RefundEvent) -> Step<RefundState> {
    use RefundEvent as E;
    use RefundState as R;
    let moved = |to| Step::Moved { from: state, to };
    match (state, event) {
        (R::Pending, E::Succeeded) => moved(R::Succeeded),
        (R::Pending, E::Failed) => moved(R::Failed),
        (R::Pending, E::Abnormal) => moved(R::Abnormal),
        (R::Abnormal, E::Succeeded) => moved(R::Succeeded),
        (R::Abnormal, E::Failed) => moved(R::Failed),
        (R::Abnormal, E::Abnormal) => Step::Unchanged(state),
        (R::Succeeded, E::Succeeded) | (R::Failed, E::Failed) => Step::Unchanged(state),
        (R::Succeeded, E::Failed | E::Abnormal) | (R::Failed, E::Succeeded | E::Abnormal) => {
            Step::Refused(Refusal::Terminal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_EVENTS: [OrderEvent; 6] = [
        OrderEvent::ChannelAccepted,
        OrderEvent::PaymentSucceeded,
        OrderEvent::PaymentFailed,
        OrderEvent::Closed,
        OrderEvent::RefundSucceeded {
            refunded_after_minor: 50,
            amount_minor: 100,
        },
        OrderEvent::RefundSucceeded {
            refunded_after_minor: 100,
            amount_minor: 100,
        },
    ];

    #[test]
    fn every_move_is_an_allowed_edge_and_terminal_states_never_move() {
        for state in OrderState::ALL {
            for event in ORDER_EVENTS {
                match order_step(state, event) {
                    Step::Moved { from, to } => {
                        assert_eq!(from, state);
                        assert!(!state.is_terminal(), "{state:?} moved on {event:?}");
                        assert!(OrderState::edge_allowed(from, to), "{from:?}->{to:?}");
                    }
                    Step::Unchanged(s) => assert_eq!(s, state),
                    Step::Refused(_) => {}
                }
            }
        }
        for state in RefundState::ALL {
            for event in [
                RefundEvent::Succeeded,
                RefundEvent::Failed,
                RefundEvent::Abnormal,
            ] {
                if let Step::Moved { from, to } = refund_step(state, event) {
                    assert!(!state.is_terminal());
                    assert!(RefundState::edge_allowed(from, to));
                }
            }
        }
    }

    #[test]
    fn late_success_after_close_is_refused_not_reopened() {
        assert_eq!(
            order_step(OrderState::Closed, OrderEvent::PaymentSucceeded),
            Step::Refused(Refusal::Terminal)
        );
        assert_eq!(
            order_step(OrderState::Paid, OrderEvent::PaymentSucceeded),
            Step::Unchanged(OrderState::Paid)
        );
    }

    #[test]
    fn refund_totals_pick_the_target_state() {
        let partial = OrderEvent::RefundSucceeded {
            refunded_after_minor: 30,
            amount_minor: 100,
        };
        let full = OrderEvent::RefundSucceeded {
            refunded_after_minor: 100,
            amount_minor: 100,
        };
        let over = OrderEvent::RefundSucceeded {
            refunded_after_minor: 101,
            amount_minor: 100,
        };
        assert!(matches!(
            order_step(OrderState::Paid, partial),
            Step::Moved {
                to: OrderState::PartiallyRefunded,
                ..
            }
        ));
        assert!(matches!(
            order_step(OrderState::PartiallyRefunded, full),
            Step::Moved {
                to: OrderState::Refunded,
                ..
            }
        ));
        assert_eq!(
            order_step(OrderState::Paid, over),
            Step::Refused(Refusal::OverRefund)
        );
        assert_eq!(
            order_step(OrderState::Paying, partial),
            Step::Refused(Refusal::NotCaptured)
        );
    }
}
