//! The protocol fault catalogue and the board of armed faults, shared by every mock channel.
//!
//! **Faults are a catalogue** (design note §4.10): each has a name and one doc line, and is
//! armed through the control plane for a target (an API method, `notify`, or `*`) and a number
//! of times. Transport faults (reset, delay, truncated body …) are not here: they belong to
//! the Transport wrapper in `determinism`. These are the faults only a channel can commit.

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::control::ControlError;

/// Where a fault acts: on the answer to a merchant's request, or on a notification attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultScope {
    Request,
    Notification,
    /// The outcome of an accepted refund (channels whose refunds settle asynchronously).
    Refund,
}

/// Every protocol fault a mock channel can commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    BadResponseSignature,
    UnsignedResponse,
    ErrorCode,
    SystemError,
    #[serde(rename = "http_500")]
    Http500,
    MalformedBody,
    DuplicateNotification,
    ForgedNotification,
    TamperedNotificationAmount,
    DropNotification,
    DelayNotification,
    OutOfOrderNotification,
    ReplayNotification,
    ConflictingStatusNotification,
    UnknownSerial,
    NotifyBeforeResponse,
    SigntestResponse,
    RefundAbnormal,
    RefundClosed,
}

impl FaultKind {
    /// The whole catalogue, in documentation order.
    pub const ALL: [FaultKind; 19] = [
        FaultKind::BadResponseSignature,
        FaultKind::UnsignedResponse,
        FaultKind::ErrorCode,
        FaultKind::SystemError,
        FaultKind::Http500,
        FaultKind::MalformedBody,
        FaultKind::DuplicateNotification,
        FaultKind::ForgedNotification,
        FaultKind::TamperedNotificationAmount,
        FaultKind::DropNotification,
        FaultKind::DelayNotification,
        FaultKind::OutOfOrderNotification,
        FaultKind::ReplayNotification,
        FaultKind::ConflictingStatusNotification,
        FaultKind::UnknownSerial,
        FaultKind::NotifyBeforeResponse,
        FaultKind::SigntestResponse,
        FaultKind::RefundAbnormal,
        FaultKind::RefundClosed,
    ];

    /// The faults every channel supports; the rest are channel-specific (see each doc line).
    pub const COMMON: [FaultKind; 14] = [
        FaultKind::BadResponseSignature,
        FaultKind::UnsignedResponse,
        FaultKind::ErrorCode,
        FaultKind::SystemError,
        FaultKind::Http500,
        FaultKind::MalformedBody,
        FaultKind::DuplicateNotification,
        FaultKind::ForgedNotification,
        FaultKind::TamperedNotificationAmount,
        FaultKind::DropNotification,
        FaultKind::DelayNotification,
        FaultKind::OutOfOrderNotification,
        FaultKind::ReplayNotification,
        FaultKind::ConflictingStatusNotification,
    ];

    /// The name used on the control plane.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BadResponseSignature => "bad_response_signature",
            FaultKind::UnsignedResponse => "unsigned_response",
            FaultKind::ErrorCode => "error_code",
            FaultKind::SystemError => "system_error",
            FaultKind::Http500 => "http_500",
            FaultKind::MalformedBody => "malformed_body",
            FaultKind::DuplicateNotification => "duplicate_notification",
            FaultKind::ForgedNotification => "forged_notification",
            FaultKind::TamperedNotificationAmount => "tampered_notification_amount",
            FaultKind::DropNotification => "drop_notification",
            FaultKind::DelayNotification => "delay_notification",
            FaultKind::OutOfOrderNotification => "out_of_order_notification",
            FaultKind::ReplayNotification => "replay_notification",
            FaultKind::ConflictingStatusNotification => "conflicting_status_notification",
            FaultKind::UnknownSerial => "unknown_serial",
            FaultKind::NotifyBeforeResponse => "notify_before_response",
            FaultKind::SigntestResponse => "signtest_response",
            FaultKind::RefundAbnormal => "refund_abnormal",
            FaultKind::RefundClosed => "refund_closed",
        }
    }

    /// One line saying what the fault does.
    pub fn doc(self) -> &'static str {
        match self {
            FaultKind::BadResponseSignature => {
                "The request is processed normally but the response carries a signature that does not verify."
            }
            FaultKind::UnsignedResponse => {
                "The request is processed normally but the answer carries no signature (Alipay: no sign field; WeChat Pay: no Wechatpay-Signature header)."
            }
            FaultKind::ErrorCode => {
                "Answer the channel's error with params code/msg/sub_code/sub_msg (default 40004 ACQ.SYSTEM_ERROR) without executing; params.executed=true executes first."
            }
            FaultKind::SystemError => {
                "Answer 'system busy, outcome unknown' (Alipay 20000 ACQ.SYSTEM_ERROR) without executing; params.executed=true executes first."
            }
            FaultKind::Http500 => {
                "Answer HTTP params.status (500-599, default 500) with a plain-text body instead of a protocol response; params.executed=true executes first."
            }
            FaultKind::MalformedBody => {
                "Answer HTTP 200 with the channel's JSON content type but a body that is not JSON (cut mid-object plus garbage); params.executed (default true) executes first."
            }
            FaultKind::DuplicateNotification => {
                "Send a notification attempt params.copies times (default 2) back to back."
            }
            FaultKind::ForgedNotification => {
                "Send a notification attempt signed with a key that is not the channel's."
            }
            FaultKind::TamperedNotificationAmount => {
                "Change the amount of a notification attempt after signing it (params.resign=true signs the changed amount correctly; params.amount sets it)."
            }
            FaultKind::DropNotification => {
                "Lose a notification attempt: nothing is sent, the retry schedule goes on."
            }
            FaultKind::DelayNotification => {
                "Hold a notification attempt params.delay_ms (required, at most 7 days) before sending it; the retry schedule continues from when it is sent."
            }
            FaultKind::OutOfOrderNotification => {
                "Hold a notification attempt until the trade's next notification has been sent, then send it; at most params.max_hold_ms (default 1 h)."
            }
            FaultKind::ReplayNotification => {
                "Before the attempt, re-send byte for byte the oldest notification already sent to the merchant (the same trade's if any); then send the attempt."
            }
            FaultKind::ConflictingStatusNotification => {
                "Send a correctly signed attempt whose status contradicts the trade's (params.status; default closed when paid, success otherwise); the trade does not change."
            }
            FaultKind::UnknownSerial => {
                "Process the request and sign the answer correctly, but name a key the merchant never saw (WeChat Pay Wechatpay-Serial; Alipay alipay_cert_sn, certificate mode only); params.serial sets it."
            }
            FaultKind::NotifyBeforeResponse => {
                "Alipay only (trade.pay, refund, close, cancel): deliver the first attempt of the notification the request queues before answering the request."
            }
            FaultKind::SigntestResponse => {
                "WeChat Pay only: process the request, but put a WECHATPAY/SIGNTEST/ signature (never verifies) in Wechatpay-Signature."
            }
            FaultKind::RefundAbnormal => {
                "WeChat Pay only (target refund): the next accepted refund ends ABNORMAL instead of SUCCESS (REFUND.ABNORMAL notification)."
            }
            FaultKind::RefundClosed => {
                "WeChat Pay only (target refund): the next accepted refund ends CLOSED instead of SUCCESS (REFUND.CLOSED notification)."
            }
        }
    }

    /// Whether the fault acts on requests or on notification attempts.
    pub fn scope(self) -> FaultScope {
        match self {
            FaultKind::BadResponseSignature
            | FaultKind::UnsignedResponse
            | FaultKind::ErrorCode
            | FaultKind::SystemError
            | FaultKind::Http500
            | FaultKind::MalformedBody
            | FaultKind::UnknownSerial
            | FaultKind::NotifyBeforeResponse
            | FaultKind::SigntestResponse => FaultScope::Request,
            FaultKind::RefundAbnormal | FaultKind::RefundClosed => FaultScope::Refund,
            FaultKind::DuplicateNotification
            | FaultKind::ForgedNotification
            | FaultKind::TamperedNotificationAmount
            | FaultKind::DropNotification
            | FaultKind::DelayNotification
            | FaultKind::OutOfOrderNotification
            | FaultKind::ReplayNotification
            | FaultKind::ConflictingStatusNotification => FaultScope::Notification,
        }
    }

    /// The fault called `name`, if it is in the catalogue.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// The target that matches every request or every notification.
pub const ANY_TARGET: &str = "*";
/// The target of notification faults.
pub const NOTIFY_TARGET: &str = "notify";
/// The target of refund-outcome faults.
pub const REFUND_TARGET: &str = "refund";

/// A request to arm a fault (`POST /_paysim/{channel}/faults`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// An API method of the channel, `notify`, or `*`.
    pub target: String,
    /// A name from the catalogue.
    pub fault: String,
    /// How many requests or notification attempts it affects (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Fault-specific parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
}

fn one() -> u32 {
    1
}

/// An armed fault as shown on the control plane.
#[derive(Debug, Clone, Serialize)]
pub struct ArmedFault {
    pub id: u64,
    pub target: String,
    pub fault: FaultKind,
    /// How many more times it fires.
    pub remaining: u32,
    /// How many times it has fired.
    pub fired: u32,
    pub params: Map<String, Value>,
}

/// A fault that fired for one request or notification attempt.
#[derive(Debug, Clone)]
pub struct FiredFault {
    pub kind: FaultKind,
    pub params: Map<String, Value>,
}

impl FiredFault {
    /// A string parameter, if given as a string (or as a number, written as JSON).
    pub fn param_str(&self, name: &str) -> Option<String> {
        match self.params.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => None,
        }
    }

    /// A boolean parameter (false when absent or not a boolean).
    pub fn param_bool(&self, name: &str) -> bool {
        matches!(self.params.get(name), Some(Value::Bool(true)))
    }

    /// A boolean parameter, `default` when absent or not a boolean.
    pub fn param_bool_or(&self, name: &str, default: bool) -> bool {
        match self.params.get(name) {
            Some(Value::Bool(value)) => *value,
            _ => default,
        }
    }

    /// A non-negative integer parameter.
    pub fn param_u64(&self, name: &str) -> Option<u64> {
        self.params.get(name).and_then(Value::as_u64)
    }
}

/// `malformed_body`: the first half of a JSON answer (which starts with `{`, so the result
/// never closes) followed by bytes that are not JSON.
pub(crate) fn malformed(text: &str) -> String {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}<!-- paysim fault malformed_body -->",
        text.get(..cut.max(1)).unwrap_or(text)
    )
}

/// The longest `delay_notification` / `out_of_order_notification` hold: 7 days.
pub const MAX_HOLD_MS: u64 = 7 * 24 * 3_600_000;
/// How long `out_of_order_notification` waits for the next notification by default: 1 h.
pub const DEFAULT_MAX_HOLD_MS: u64 = 3_600_000;

/// Checks the parameters the catalogue constrains (the others are read leniently).
fn check_params(kind: FaultKind, params: &Map<String, Value>) -> Result<(), ControlError> {
    let invalid = |message: String| ControlError::bad_request("invalid_params", message);
    let integer = |name: &str, low: u64, high: u64, required: bool| match params.get(name) {
        None if !required => Ok(()),
        None => Err(invalid(format!(
            "fault {} needs params.{name} (an integer from {low} to {high})",
            kind.name()
        ))),
        Some(value) => match value.as_u64() {
            Some(n) if (low..=high).contains(&n) => Ok(()),
            _ => Err(invalid(format!(
                "params.{name} of fault {} must be an integer from {low} to {high}, got {value}",
                kind.name()
            ))),
        },
    };
    match kind {
        FaultKind::Http500 => integer("status", 500, 599, false),
        FaultKind::DelayNotification => integer("delay_ms", 1, MAX_HOLD_MS, true),
        FaultKind::OutOfOrderNotification => integer("max_hold_ms", 1, MAX_HOLD_MS, false),
        FaultKind::ConflictingStatusNotification | FaultKind::UnknownSerial => {
            let name = if kind == FaultKind::UnknownSerial {
                "serial"
            } else {
                "status"
            };
            match params.get(name) {
                None => Ok(()),
                Some(Value::String(text)) if !text.is_empty() && text.is_ascii() => Ok(()),
                Some(value) => Err(invalid(format!(
                    "params.{name} of fault {} must be a non-empty ASCII string, got {value}",
                    kind.name()
                ))),
            }
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Default)]
struct Board {
    armed: Vec<ArmedFault>,
    next_id: u64,
}

/// The faults armed on one channel, consumed first-armed-first.
#[derive(Debug)]
pub struct FaultBoard {
    board: Mutex<Board>,
    /// The kinds this channel can commit; arming another is refused.
    supported: Vec<FaultKind>,
    /// Request faults that only some API methods can commit (besides `*`).
    restricted: Vec<(FaultKind, Vec<&'static str>)>,
}

impl Default for FaultBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultBoard {
    /// An empty board for a channel supporting the common faults ([`FaultKind::COMMON`]).
    pub fn new() -> Self {
        Self::supporting(&FaultKind::COMMON)
    }

    /// An empty board for a channel supporting exactly `kinds`.
    pub fn supporting(kinds: &[FaultKind]) -> Self {
        Self {
            board: Mutex::new(Board::default()),
            supported: kinds.to_vec(),
            restricted: Vec::new(),
        }
    }

    /// Limits the explicit targets of the request fault `kind` to `targets` (`*` stays
    /// allowed: it fires on the next request, whichever it is).
    pub fn restrict_targets(mut self, kind: FaultKind, targets: &[&'static str]) -> Self {
        self.restricted.push((kind, targets.to_vec()));
        self
    }

    /// Arms `spec` after checking its fault name and that its target suits the fault's
    /// scope (`request_targets` are the channel's API methods).
    pub fn arm(
        &self,
        spec: FaultSpec,
        request_targets: &[&str],
    ) -> Result<ArmedFault, ControlError> {
        let kind = FaultKind::from_name(&spec.fault).ok_or_else(|| {
            ControlError::bad_request(
                "unknown_fault",
                format!(
                    "no fault named {:?}; see GET /_paysim/faults/catalogue",
                    spec.fault
                ),
            )
        })?;
        if !self.supported.contains(&kind) {
            return Err(ControlError::bad_request(
                "unsupported_fault",
                format!("this channel cannot commit fault {}", kind.name()),
            ));
        }
        let target_ok = spec.target == ANY_TARGET
            || match kind.scope() {
                FaultScope::Notification => spec.target == NOTIFY_TARGET,
                FaultScope::Refund => spec.target == REFUND_TARGET,
                FaultScope::Request => self
                    .restricted_targets(kind)
                    .unwrap_or(request_targets)
                    .contains(&spec.target.as_str()),
            };
        if !target_ok {
            let expected = match kind.scope() {
                FaultScope::Notification => format!("{NOTIFY_TARGET:?} or \"*\""),
                FaultScope::Refund => format!("{REFUND_TARGET:?} or \"*\""),
                FaultScope::Request => format!(
                    "\"*\" or one of {:?}",
                    self.restricted_targets(kind).unwrap_or(request_targets)
                ),
            };
            return Err(ControlError::bad_request(
                "invalid_target",
                format!(
                    "fault {} cannot target {:?}; expected {expected}",
                    kind.name(),
                    spec.target
                ),
            ));
        }
        if spec.times == 0 {
            return Err(ControlError::bad_request(
                "invalid_times",
                "times must be at least 1",
            ));
        }
        check_params(kind, &spec.params)?;
        let mut board = self.lock();
        board.next_id = board.next_id.saturating_add(1);
        let armed = ArmedFault {
            id: board.next_id,
            target: spec.target,
            fault: kind,
            remaining: spec.times,
            fired: 0,
            params: spec.params,
        };
        board.armed.push(armed.clone());
        Ok(armed)
    }

    fn restricted_targets(&self, kind: FaultKind) -> Option<&[&'static str]> {
        self.restricted
            .iter()
            .find(|(restricted, _)| *restricted == kind)
            .map(|(_, targets)| targets.as_slice())
    }

    /// The armed faults (including spent ones, with `remaining` 0), in arming order.
    pub fn list(&self) -> Vec<ArmedFault> {
        self.lock().armed.clone()
    }

    /// Disarms everything. Returns how many entries were removed.
    pub fn clear(&self) -> usize {
        let mut board = self.lock();
        let count = board.armed.len();
        board.armed.clear();
        count
    }

    /// Takes one shot of the first live request fault matching `method`.
    pub fn take_for_request(&self, method: &str) -> Option<FiredFault> {
        self.take(FaultScope::Request, method)
    }

    /// Takes one shot of the first live notification fault.
    pub fn take_for_notification(&self) -> Option<FiredFault> {
        self.take(FaultScope::Notification, NOTIFY_TARGET)
    }

    /// Takes one shot of the first live refund-outcome fault.
    pub fn take_for_refund(&self) -> Option<FiredFault> {
        self.take(FaultScope::Refund, REFUND_TARGET)
    }

    fn take(&self, scope: FaultScope, target: &str) -> Option<FiredFault> {
        let mut board = self.lock();
        let armed = board.armed.iter_mut().find(|armed| {
            armed.remaining > 0
                && armed.fault.scope() == scope
                && (armed.target == ANY_TARGET || armed.target == target)
        })?;
        armed.remaining -= 1;
        armed.fired = armed.fired.saturating_add(1);
        Some(FiredFault {
            kind: armed.fault,
            params: armed.params.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // Each critical section is a few vector operations; a poisoned board is consistent.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(target: &str, fault: &str, times: u32) -> FaultSpec {
        FaultSpec {
            target: target.into(),
            fault: fault.into(),
            times,
            params: Map::new(),
        }
    }

    #[test]
    fn catalogue_names_round_trip_and_have_docs() {
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
            assert!(!kind.doc().is_empty());
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.name());
        }
        assert_eq!(FaultKind::from_name("nope"), None);
    }

    #[test]
    fn arms_checks_targets_and_consumes_in_order() {
        let board = FaultBoard::new();
        let targets = ["alipay.trade.query"];
        assert!(board.arm(spec("notify", "http_500", 1), &targets).is_err());
        assert!(board
            .arm(spec("alipay.trade.query", "drop_notification", 1), &targets)
            .is_err());
        assert!(board.arm(spec("x.y", "http_500", 1), &targets).is_err());
        assert!(board.arm(spec("*", "nope", 1), &targets).is_err());
        assert!(board.arm(spec("*", "http_500", 0), &targets).is_err());
        assert!(
            board
                .arm(spec("*", "signtest_response", 1), &targets)
                .is_err(),
            "channel-specific faults need a board that supports them"
        );

        board
            .arm(spec("alipay.trade.query", "http_500", 2), &targets)
            .unwrap();
        board.arm(spec("*", "system_error", 1), &targets).unwrap();
        board
            .arm(spec("notify", "drop_notification", 1), &targets)
            .unwrap();

        let kinds: Vec<_> = (0..4)
            .map(|_| board.take_for_request("alipay.trade.query").map(|f| f.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(FaultKind::Http500),
                Some(FaultKind::Http500),
                Some(FaultKind::SystemError),
                None
            ]
        );
        assert_eq!(
            board.take_for_notification().map(|f| f.kind),
            Some(FaultKind::DropNotification)
        );
        assert!(board.take_for_notification().is_none());
        assert_eq!(board.list().len(), 3);
        assert_eq!(board.clear(), 3);
        assert!(board.list().is_empty());
    }

    #[test]
    fn catalogue_order_and_common_faults() {
        assert_eq!(FaultKind::COMMON, FaultKind::ALL[..14]);
        let scopes: Vec<FaultScope> = FaultKind::ALL.iter().map(|k| k.scope()).collect();
        assert!(scopes[..6].iter().all(|s| *s == FaultScope::Request));
        assert!(scopes[6..14].iter().all(|s| *s == FaultScope::Notification));
    }

    #[test]
    fn params_are_checked_when_arming() {
        let board = FaultBoard::supporting(&FaultKind::ALL)
            .restrict_targets(FaultKind::NotifyBeforeResponse, &["a.pay"]);
        let targets = ["a.pay", "a.query"];
        let with = |target: &str, fault: &str, params: Value| FaultSpec {
            params: params.as_object().cloned().unwrap_or_default(),
            ..spec(target, fault, 1)
        };
        let code = |result: Result<ArmedFault, ControlError>| result.err().map(|e| e.code);
        let cases = [
            (
                with("*", "http_500", json!({"status": 499})),
                Some("invalid_params"),
            ),
            (with("*", "http_500", json!({"status": 504})), None),
            (
                with("notify", "delay_notification", json!({})),
                Some("invalid_params"),
            ),
            (
                with(
                    "notify",
                    "delay_notification",
                    json!({"delay_ms": MAX_HOLD_MS + 1}),
                ),
                Some("invalid_params"),
            ),
            (
                with("notify", "delay_notification", json!({"delay_ms": 1})),
                None,
            ),
            (
                with(
                    "notify",
                    "out_of_order_notification",
                    json!({"max_hold_ms": -5}),
                ),
                Some("invalid_params"),
            ),
            (
                with(
                    "notify",
                    "conflicting_status_notification",
                    json!({"status": 7}),
                ),
                Some("invalid_params"),
            ),
            (
                with("a.query", "notify_before_response", json!({})),
                Some("invalid_target"),
            ),
            (with("a.pay", "notify_before_response", json!({})), None),
            (with("*", "notify_before_response", json!({})), None),
        ];
        for (spec, expected) in cases {
            let name = format!("{} {:?}", spec.fault, spec.params);
            assert_eq!(
                code(board.arm(spec, &targets)).as_deref(),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn malformed_text_is_never_json() {
        for text in [
            r#"{"a":{"code":"10000","msg":"Success"},"sign":"xyz"}"#,
            "{}",
            "{\"中文\":1}",
        ] {
            let cut = malformed(text);
            assert!(serde_json::from_str::<Value>(&cut).is_err(), "{cut}");
        }
    }

    #[test]
    fn refund_faults_have_their_own_target() {
        let board = FaultBoard::supporting(&FaultKind::ALL);
        let targets = ["refund.create"];
        assert!(board
            .arm(spec("refund.create", "refund_abnormal", 1), &targets)
            .is_err());
        board
            .arm(spec("refund", "refund_closed", 1), &targets)
            .unwrap();
        board
            .arm(spec("*", "refund_abnormal", 1), &targets)
            .unwrap();
        assert!(board.take_for_request("refund.create").is_none());
        assert_eq!(
            board.take_for_refund().map(|f| f.kind),
            Some(FaultKind::RefundClosed)
        );
        assert_eq!(
            board.take_for_refund().map(|f| f.kind),
            Some(FaultKind::RefundAbnormal)
        );
    }
}
