//! The operations of the property suite, their proptest strategies and their rendering as a
//! readable script (what a shrunk failure prints).

use std::fmt;

use proptest::prelude::*;

/// A channel of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ch {
    Alipay,
    Wechatpay,
}

impl Ch {
    pub const ALL: [Ch; 2] = [Ch::Alipay, Ch::Wechatpay];

    pub fn name(self) -> &'static str {
        match self {
            Ch::Alipay => "alipay",
            Ch::Wechatpay => "wechatpay",
        }
    }
}

/// How the buyer pays. Alipay offers `qr` and `barcode` here (its page, wap and app trades
/// only come into existence through the cashier or the wallet); WeChat Pay all five.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Qr,
    Jsapi,
    App,
    Wap,
    /// A payment code that pays at once.
    BarcodeOk,
    /// A payment code the channel declines.
    BarcodeFail,
}

impl Method {
    pub fn is_barcode(self) -> bool {
        matches!(self, Method::BarcodeOk | Method::BarcodeFail)
    }

    pub fn api_name(self) -> &'static str {
        match self {
            Method::Qr => "qr",
            Method::Jsapi => "jsapi",
            Method::App => "app",
            Method::Wap => "wap",
            Method::BarcodeOk | Method::BarcodeFail => "barcode",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buyer {
    Pay,
    Fail,
    Abandon,
    Scan,
}

impl Buyer {
    pub fn name(self) -> &'static str {
        match self {
            Buyer::Pay => "pay",
            Buyer::Fail => "fail",
            Buyer::Abandon => "abandon",
            Buyer::Scan => "scan",
        }
    }
}

/// How much of an order a refund asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Portion {
    /// This percentage of the order amount (at least one fen).
    Part(u8),
    /// What the model believes remains.
    Rest,
    /// One fen more than the whole amount: always above the ceiling.
    Over,
}

/// A protocol fault armed on the simulator's control plane, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolFault {
    BadResponseSignature,
    ErrorCode,
    SystemError {
        executed: bool,
    },
    /// An HTTP 5xx (`status` 500–599) instead of a protocol answer.
    Http500 {
        executed: bool,
        status: u16,
    },
    /// The answer, processed normally, carries no signature.
    UnsignedResponse,
    /// HTTP 200 whose body is cut mid-object plus garbage.
    MalformedBody {
        executed: bool,
    },
    DuplicateNotification {
        copies: u8,
    },
    ForgedNotification,
    TamperedNotificationAmount {
        resign: bool,
    },
    DropNotification,
    /// The next notification attempt is held `delay_ms`, then sent.
    DelayNotification {
        delay_ms: u32,
    },
    /// The next notification attempt is held until a later one of the same trade went out
    /// (at most `max_hold_ms`).
    OutOfOrderNotification {
        max_hold_ms: u32,
    },
    /// The oldest notification ever sent is re-sent verbatim before the next attempt.
    ReplayNotification,
    /// The next attempt reports the trade (refund) closed, correctly signed, whatever it is.
    ConflictingStatusNotification,
    /// WeChat Pay only: the answer names a platform key the gateway never saw.
    UnknownSerial,
    /// Alipay only: the notification a request queues is delivered before its answer.
    NotifyBeforeResponse,
    /// WeChat Pay only.
    SigntestResponse,
    /// WeChat Pay only.
    RefundAbnormal,
    /// WeChat Pay only.
    RefundClosed,
}

impl ProtocolFault {
    pub fn name(self) -> &'static str {
        match self {
            ProtocolFault::BadResponseSignature => "bad_response_signature",
            ProtocolFault::ErrorCode => "error_code",
            ProtocolFault::SystemError { .. } => "system_error",
            ProtocolFault::Http500 { .. } => "http_500",
            ProtocolFault::DuplicateNotification { .. } => "duplicate_notification",
            ProtocolFault::ForgedNotification => "forged_notification",
            ProtocolFault::TamperedNotificationAmount { .. } => "tampered_notification_amount",
            ProtocolFault::DropNotification => "drop_notification",
            ProtocolFault::UnsignedResponse => "unsigned_response",
            ProtocolFault::MalformedBody { .. } => "malformed_body",
            ProtocolFault::DelayNotification { .. } => "delay_notification",
            ProtocolFault::OutOfOrderNotification { .. } => "out_of_order_notification",
            ProtocolFault::ReplayNotification => "replay_notification",
            ProtocolFault::ConflictingStatusNotification => "conflicting_status_notification",
            ProtocolFault::UnknownSerial => "unknown_serial",
            ProtocolFault::NotifyBeforeResponse => "notify_before_response",
            ProtocolFault::SigntestResponse => "signtest_response",
            ProtocolFault::RefundAbnormal => "refund_abnormal",
            ProtocolFault::RefundClosed => "refund_closed",
        }
    }

    /// Whether the fault acts on a notification (rather than a request or a refund outcome).
    pub fn on_notification(self) -> bool {
        self.target() == "notify"
    }

    /// The control plane's target: `*` for request faults, `notify`, `refund`.
    pub fn target(self) -> &'static str {
        match self {
            ProtocolFault::DuplicateNotification { .. }
            | ProtocolFault::ForgedNotification
            | ProtocolFault::TamperedNotificationAmount { .. }
            | ProtocolFault::DropNotification
            | ProtocolFault::DelayNotification { .. }
            | ProtocolFault::OutOfOrderNotification { .. }
            | ProtocolFault::ReplayNotification
            | ProtocolFault::ConflictingStatusNotification => "notify",
            ProtocolFault::RefundAbnormal | ProtocolFault::RefundClosed => "refund",
            ProtocolFault::BadResponseSignature
            | ProtocolFault::ErrorCode
            | ProtocolFault::SystemError { .. }
            | ProtocolFault::Http500 { .. }
            | ProtocolFault::UnsignedResponse
            | ProtocolFault::MalformedBody { .. }
            | ProtocolFault::UnknownSerial
            | ProtocolFault::NotifyBeforeResponse
            | ProtocolFault::SigntestResponse => "*",
        }
    }

    /// The fault's control-plane params; `ch` picks the channel's spelling of a status.
    pub fn params(self, ch: Ch) -> serde_json::Value {
        match self {
            ProtocolFault::SystemError { executed } | ProtocolFault::MalformedBody { executed } => {
                serde_json::json!({ "executed": executed })
            }
            ProtocolFault::Http500 { executed, status } => {
                serde_json::json!({ "executed": executed, "status": status })
            }
            ProtocolFault::DelayNotification { delay_ms } => {
                serde_json::json!({ "delay_ms": delay_ms })
            }
            ProtocolFault::OutOfOrderNotification { max_hold_ms } => {
                serde_json::json!({ "max_hold_ms": max_hold_ms })
            }
            // Closed, never success: a correctly signed success for a trade nobody paid is the
            // channel itself lying about money, which no merchant can detect; a closure report
            // for a paid trade is what the gateway must not take on its word.
            ProtocolFault::ConflictingStatusNotification => match ch {
                Ch::Alipay => serde_json::json!({ "status": "TRADE_CLOSED" }),
                Ch::Wechatpay => serde_json::json!({ "status": "CLOSED" }),
            },
            ProtocolFault::UnknownSerial => {
                serde_json::json!({ "serial": "PUB_KEY_ID_0114232134912410000000000099" })
            }
            ProtocolFault::DuplicateNotification { copies } => {
                serde_json::json!({ "copies": copies })
            }
            ProtocolFault::TamperedNotificationAmount { resign } => {
                serde_json::json!({ "resign": resign })
            }
            _ => serde_json::json!({}),
        }
    }
}

/// A transport fault on the gateway's next call to a channel (`determinism::FaultyTransport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    TimeoutBeforeDelivery,
    TimeoutAfterDelivery,
    Reset,
    Delay { ms: u32 },
    TruncatedBody,
    WrongContentType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create {
        ch: Ch,
        method: Method,
        amount_minor: i64,
    },
    Buyer {
        order: u8,
        action: Buyer,
    },
    Close {
        order: u8,
    },
    /// A refund of the `order`-th order last seen captured (modulo their count), or of the
    /// `order`-th order when none is.
    Refund {
        order: u8,
        portion: Portion,
    },
    Query {
        order: u8,
    },
    Advance {
        ms: i64,
    },
    Protocol {
        ch: Ch,
        fault: ProtocolFault,
    },
    Net {
        ch: Ch,
        fault: NetFault,
    },
    /// Disarm every fault, let 26 h of virtual time pass, check agreement with the channels.
    Quiesce,
}

/// One generated case: the run's seed, the simulator's clock skew and the operations.
#[derive(Clone, PartialEq, Eq)]
pub struct Case {
    pub seed: u64,
    pub skew_ms: i64,
    pub ops: Vec<Op>,
}

fn yuan(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create {
                ch,
                method,
                amount_minor,
            } => write!(
                f,
                "create {} {:?} {}",
                ch.name(),
                method,
                yuan(*amount_minor)
            ),
            Op::Buyer { order, action } => write!(f, "buyer {} order#{order}", action.name()),
            Op::Close { order } => write!(f, "close order#{order}"),
            Op::Refund { order, portion } => write!(f, "refund order#{order} {portion:?}"),
            Op::Query { order } => write!(f, "query order#{order}"),
            Op::Advance { ms } => write!(f, "advance {ms} ms"),
            Op::Protocol { ch, fault } => write!(
                f,
                "fault {} {} -> {} {}",
                ch.name(),
                fault.name(),
                fault.target(),
                fault.params(*ch)
            ),
            Op::Net { ch, fault } => write!(f, "net-fault {} {fault:?}", ch.name()),
            Op::Quiesce => write!(f, "quiesce"),
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "script (seed {}, simulator clock skew {} ms, {} ops; order#n is the n-th created order, modulo the count; a refund's, the n-th of those seen paid, if any):",
            self.seed,
            self.skew_ms,
            self.ops.len()
        )?;
        for (n, op) in self.ops.iter().enumerate() {
            writeln!(f, "  {:>2}. {op}", n + 1)?;
        }
        Ok(())
    }
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 1i64..=10_000,
        2 => 10_001i64..=1_000_000,
        1 => 1_000_001i64..=100_000_000,
    ]
}

fn method_for(ch: Ch) -> BoxedStrategy<Method> {
    match ch {
        Ch::Alipay => prop_oneof![
            6 => Just(Method::Qr),
            1 => Just(Method::BarcodeOk),
            1 => Just(Method::BarcodeFail),
        ]
        .boxed(),
        Ch::Wechatpay => prop_oneof![
            3 => Just(Method::Qr),
            1 => Just(Method::Jsapi),
            1 => Just(Method::App),
            1 => Just(Method::Wap),
            1 => Just(Method::BarcodeOk),
            1 => Just(Method::BarcodeFail),
        ]
        .boxed(),
    }
}

fn channel() -> impl Strategy<Value = Ch> {
    prop_oneof![Just(Ch::Alipay), Just(Ch::Wechatpay)]
}

fn create() -> impl Strategy<Value = Op> {
    channel()
        .prop_flat_map(|ch| (Just(ch), method_for(ch), amount()))
        .prop_map(|(ch, method, amount_minor)| Op::Create {
            ch,
            method,
            amount_minor,
        })
}

fn buyer() -> impl Strategy<Value = Buyer> {
    prop_oneof![
        6 => Just(Buyer::Pay),
        1 => Just(Buyer::Fail),
        1 => Just(Buyer::Abandon),
        1 => Just(Buyer::Scan),
    ]
}

fn portion() -> impl Strategy<Value = Portion> {
    prop_oneof![
        3 => (1u8..=99).prop_map(Portion::Part),
        2 => Just(Portion::Rest),
        1 => Just(Portion::Over),
    ]
}

fn protocol_fault(ch: Ch) -> BoxedStrategy<ProtocolFault> {
    let request = prop_oneof![
        Just(ProtocolFault::BadResponseSignature),
        Just(ProtocolFault::UnsignedResponse),
        Just(ProtocolFault::ErrorCode),
        any::<bool>().prop_map(|executed| ProtocolFault::SystemError { executed }),
        (
            any::<bool>(),
            prop_oneof![Just(500u16), Just(502), Just(503), Just(504)]
        )
            .prop_map(|(executed, status)| ProtocolFault::Http500 { executed, status }),
        any::<bool>().prop_map(|executed| ProtocolFault::MalformedBody { executed }),
    ];
    let notification = prop_oneof![
        (2u8..=3).prop_map(|copies| ProtocolFault::DuplicateNotification { copies }),
        Just(ProtocolFault::ForgedNotification),
        any::<bool>().prop_map(|resign| ProtocolFault::TamperedNotificationAmount { resign }),
        Just(ProtocolFault::DropNotification),
        // Past the order's expiry at most two hours: inside the quiescence's 26 h.
        prop_oneof![
            Just(2_000u32),
            Just(60_000),
            Just(1_900_000),
            Just(7_200_000)
        ]
        .prop_map(|delay_ms| ProtocolFault::DelayNotification { delay_ms }),
        prop_oneof![Just(60_000u32), Just(3_600_000)]
            .prop_map(|max_hold_ms| ProtocolFault::OutOfOrderNotification { max_hold_ms }),
        Just(ProtocolFault::ReplayNotification),
        Just(ProtocolFault::ConflictingStatusNotification),
    ];
    match ch {
        Ch::Alipay => prop_oneof![
            6 => request,
            8 => notification,
            1 => Just(ProtocolFault::NotifyBeforeResponse),
        ]
        .boxed(),
        Ch::Wechatpay => prop_oneof![
            6 => request,
            8 => notification,
            1 => Just(ProtocolFault::UnknownSerial),
            1 => Just(ProtocolFault::SigntestResponse),
            1 => Just(ProtocolFault::RefundAbnormal),
            1 => Just(ProtocolFault::RefundClosed),
        ]
        .boxed(),
    }
}

fn net_fault() -> impl Strategy<Value = NetFault> {
    prop_oneof![
        Just(NetFault::TimeoutBeforeDelivery),
        Just(NetFault::TimeoutAfterDelivery),
        Just(NetFault::Reset),
        prop_oneof![Just(500u32), Just(3_000), Just(15_000)].prop_map(|ms| NetFault::Delay { ms }),
        Just(NetFault::TruncatedBody),
        Just(NetFault::WrongContentType),
    ]
}

fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(1_000i64),
        Just(5_000),
        Just(20_000),
        Just(60_000),
        Just(300_000),
        Just(1_800_000),
        Just(7_200_000),
    ]
}

/// One operation, with the mix the suite runs (see the README's property-suite section).
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => create(),
        7 => (any::<u8>(), buyer()).prop_map(|(order, action)| Op::Buyer { order, action }),
        2 => any::<u8>().prop_map(|order| Op::Close { order }),
        5 => (any::<u8>(), portion()).prop_map(|(order, portion)| Op::Refund { order, portion }),
        2 => any::<u8>().prop_map(|order| Op::Query { order }),
        3 => advance().prop_map(|ms| Op::Advance { ms }),
        3 => channel()
            .prop_flat_map(|ch| (Just(ch), protocol_fault(ch)))
            .prop_map(|(ch, fault)| Op::Protocol { ch, fault }),
        1 => (channel(), net_fault()).prop_map(|(ch, fault)| Op::Net { ch, fault }),
        1 => Just(Op::Quiesce),
    ]
}

fn skew() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        1 => Just(-1_000i64),
        1 => Just(1_000i64),
        1 => Just(-30_000i64),
        1 => Just(30_000i64),
        1 => Just(-90_000i64),
        1 => Just(90_000i64),
    ]
}

/// A case of up to `max_ops` operations.
pub fn case(max_ops: usize) -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        skew(),
        proptest::collection::vec(op(), 1..=max_ops.max(1)),
    )
        .prop_map(|(seed, skew_ms, ops)| Case { seed, skew_ms, ops })
}
