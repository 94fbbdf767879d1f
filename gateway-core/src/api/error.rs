//! The gateway API's error contract: one JSON shape `{code, message}` (plus `field` or
//! `order_id` where they help), stable codes in [`ErrorCode`], and the one `IntoResponse` that
//! maps service errors onto them. Internal details are logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::{RefundRefusal, ServiceError};

/// Every error code the gateway API returns. The README's error table lists the same codes;
/// a test keeps the two in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    UnsupportedMediaType,
    PayloadTooLarge,
    InvalidField,
    UnknownField,
    MissingIdempotencyKey,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    IdempotencyKeyInProgress,
    UnknownChannel,
    ChannelNotConfigured,
    MethodNotSupported,
    UnknownMerchant,
    OrderNotFound,
    RefundNotFound,
    OrderNotClosable,
    OrderNeedsReview,
    RefundNotAllowed,
    RefundExceedsRefundable,
    ChannelRejected,
    ChannelUnavailable,
    ConcurrentUpdate,
    NotFound,
    MethodNotAllowed,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::MalformedJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidField,
        ErrorCode::UnknownField,
        ErrorCode::MissingIdempotencyKey,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInProgress,
        ErrorCode::UnknownChannel,
        ErrorCode::ChannelNotConfigured,
        ErrorCode::MethodNotSupported,
        ErrorCode::UnknownMerchant,
        ErrorCode::OrderNotFound,
        ErrorCode::RefundNotFound,
        ErrorCode::OrderNotClosable,
        ErrorCode::OrderNeedsReview,
        ErrorCode::RefundNotAllowed,
        ErrorCode::RefundExceedsRefundable,
        ErrorCode::ChannelRejected,
        ErrorCode::ChannelUnavailable,
        ErrorCode::ConcurrentUpdate,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::MissingIdempotencyKey => "missing_idempotency_key",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::ChannelNotConfigured => "channel_not_configured",
            ErrorCode::MethodNotSupported => "method_not_supported",
            ErrorCode::UnknownMerchant => "unknown_merchant",
            ErrorCode::OrderNotFound => "order_not_found",
            ErrorCode::RefundNotFound => "refund_not_found",
            ErrorCode::OrderNotClosable => "order_not_closable",
            ErrorCode::OrderNeedsReview => "order_needs_review",
            ErrorCode::RefundNotAllowed => "refund_not_allowed",
            ErrorCode::RefundExceedsRefundable => "refund_exceeds_refundable",
            ErrorCode::ChannelRejected => "channel_rejected",
            ErrorCode::ChannelUnavailable => "channel_unavailable",
            ErrorCode::ConcurrentUpdate => "concurrent_update",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InternalError => "internal_error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedJson
            | ErrorCode::InvalidField
            | ErrorCode::UnknownField
            | ErrorCode::MissingIdempotencyKey
            | ErrorCode::InvalidIdempotencyKey
            | ErrorCode::UnknownChannel => StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::IdempotencyKeyReused
            | ErrorCode::IdempotencyKeyInProgress
            | ErrorCode::OrderNotClosable
            | ErrorCode::OrderNeedsReview
            | ErrorCode::RefundNotAllowed
            | ErrorCode::RefundExceedsRefundable
            | ErrorCode::ConcurrentUpdate => StatusCode::CONFLICT,
            ErrorCode::ChannelNotConfigured
            | ErrorCode::MethodNotSupported
            | ErrorCode::UnknownMerchant
            | ErrorCode::ChannelRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::OrderNotFound | ErrorCode::RefundNotFound | ErrorCode::NotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::ChannelUnavailable => StatusCode::BAD_GATEWAY,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// One line for the documentation table.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "the body is not valid JSON, or not a JSON object",
            ErrorCode::UnsupportedMediaType => "the body is not `application/json`",
            ErrorCode::PayloadTooLarge => "the body exceeds 64 KiB",
            ErrorCode::InvalidField => {
                "a field is missing or its value is invalid; `field` names it"
            }
            ErrorCode::UnknownField => {
                "the body carries a field the endpoint does not know; `field` names it"
            }
            ErrorCode::MissingIdempotencyKey => {
                "the `Idempotency-Key` header is required on this endpoint"
            }
            ErrorCode::InvalidIdempotencyKey => {
                "the `Idempotency-Key` is empty, longer than 255 characters or not printable ASCII"
            }
            ErrorCode::IdempotencyKeyReused => {
                "the `Idempotency-Key` was used before with a different body"
            }
            ErrorCode::IdempotencyKeyInProgress => {
                "the first request with this `Idempotency-Key` is still running; retry"
            }
            ErrorCode::UnknownChannel => "`channel` is not alipay, wechatpay or unionpay",
            ErrorCode::ChannelNotConfigured => {
                "the channel exists but this gateway has no adapter for it configured"
            }
            ErrorCode::MethodNotSupported => "the channel does not offer this payment method",
            ErrorCode::UnknownMerchant => "`merchant_id` names no merchant",
            ErrorCode::OrderNotFound => "no order with this id",
            ErrorCode::RefundNotFound => "no refund with this id",
            ErrorCode::OrderNotClosable => {
                "the order is paid, refunded or failed and cannot be closed"
            }
            ErrorCode::OrderNeedsReview => {
                "the channel reports a payment that does not match the order; an alert awaits an operator"
            }
            ErrorCode::RefundNotAllowed => {
                "the order has no captured payment, or the currency differs"
            }
            ErrorCode::RefundExceedsRefundable => {
                "the amount exceeds what remains refundable (paid − refunded − pending)"
            }
            ErrorCode::ChannelRejected => {
                "the channel refused the request (a prepay refused: the order is stored as failed). A payment or refund the channel declines (a payment code refused, a refund refused for lack of balance) is not an error: it is answered with state `failed`"
            }
            ErrorCode::ChannelUnavailable => {
                "the channel did not answer; the outcome is unknown and the scheduler will query it"
            }
            ErrorCode::ConcurrentUpdate => "too many concurrent updates of the same order; retry",
            ErrorCode::NotFound => "no such route",
            ErrorCode::MethodNotAllowed => "the route exists but not for this HTTP method",
            ErrorCode::InternalError => "an internal error; details are in the gateway log",
        }
    }
}

/// The error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, for `invalid_field` and `unknown_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The order the error concerns, when one was created (channel errors after creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            body: ErrorBody {
                code,
                message: message.into(),
                field: None,
                order_id: None,
            },
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut error = ApiError::new(
            ErrorCode::InvalidField,
            format!("{field}: {}", message.into()),
        );
        error.body.field = Some(field.to_owned());
        error
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.body.field = Some(field.to_owned());
        self
    }

    pub fn with_order(mut self, order_id: &str) -> Self {
        self.body.order_id = Some(order_id.to_owned());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.body.code.status()
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::Invalid { field, message } => ApiError::field(field, message),
            ServiceError::ChannelNotConfigured(_) => {
                ApiError::new(ErrorCode::ChannelNotConfigured, message).with_field("channel")
            }
            ServiceError::MethodNotSupported { .. } => {
                ApiError::new(ErrorCode::MethodNotSupported, message).with_field("method")
            }
            ServiceError::UnknownMerchant(_) => {
                ApiError::new(ErrorCode::UnknownMerchant, message).with_field("merchant_id")
            }
            ServiceError::OrderNotFound(_) => ApiError::new(ErrorCode::OrderNotFound, message),
            ServiceError::RefundNotFound(_) => ApiError::new(ErrorCode::RefundNotFound, message),
            ServiceError::IdempotencyKeyReused => {
                ApiError::new(ErrorCode::IdempotencyKeyReused, message)
            }
            ServiceError::IdempotencyInProgress => {
                ApiError::new(ErrorCode::IdempotencyKeyInProgress, message)
            }
            ServiceError::NotClosable(_) => ApiError::new(ErrorCode::OrderNotClosable, message),
            ServiceError::NeedsReview(_) => ApiError::new(ErrorCode::OrderNeedsReview, message),
            ServiceError::RefundRefused(refusal) => match refusal {
                RefundRefusal::NotCaptured { .. } | RefundRefusal::CurrencyMismatch { .. } => {
                    ApiError::new(ErrorCode::RefundNotAllowed, message)
                }
                RefundRefusal::ExceedsRefundable { .. } => {
                    ApiError::new(ErrorCode::RefundExceedsRefundable, message).with_field("amount")
                }
            },
            ServiceError::ChannelRejected(_) => ApiError::new(ErrorCode::ChannelRejected, message),
            ServiceError::ChannelUnavailable(_) => {
                ApiError::new(ErrorCode::ChannelUnavailable, message)
            }
            ServiceError::Contention(_) => ApiError::new(ErrorCode::ConcurrentUpdate, message),
            ServiceError::Store(store) => {
                tracing::error!(error = %store, "store failure");
                ApiError::new(
                    ErrorCode::InternalError,
                    "internal error; see the gateway log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.body)).into_response()
    }
}
