//! Strict reading of JSON request bodies: every error names its field, unknown fields are
//! refused, and numbers are never read through floats.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};

/// A JSON object being read field by field; `finish` refuses whatever was not read.
pub struct Fields {
    object: Map<String, Value>,
    /// Each top-level member's JSON text as sent, so numbers are read from their digits,
    /// never through an `f64`.
    raw: BTreeMap<String, Box<RawValue>>,
}

impl Fields {
    pub fn parse(body: &[u8]) -> Result<Fields, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        match value {
            Value::Object(object) => Ok(Fields {
                object,
                raw: serde_json::from_slice(body).unwrap_or_default(),
            }),
            other => Err(ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body must be a JSON object, not {}", kind(&other)),
            )),
        }
    }

    fn take(&mut self, field: &str) -> Option<Value> {
        match self.object.remove(field) {
            Some(Value::Null) | None => None,
            Some(value) => Some(value),
        }
    }

    pub fn opt_str(&mut self, field: &str, max_len: usize) -> Result<Option<String>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.chars().count() > max_len {
                    Err(ApiError::field(
                        field,
                        format!("must be at most {max_len} characters"),
                    ))
                } else {
                    Ok(Some(s))
                }
            }
            Some(other) => Err(ApiError::field(
                field,
                format!("must be a string, not {}", kind(&other)),
            )),
        }
    }

    pub fn req_str(&mut self, field: &str, max_len: usize) -> Result<String, ApiError> {
        match self.opt_str(field, max_len)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(ApiError::field(field, "must not be empty")),
            None => Err(ApiError::field(field, "is required")),
        }
    }

    pub fn opt_i64(&mut self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::field(field, format!("must be an integer, not {n}"))),
            Some(other) => Err(ApiError::field(
                field,
                format!("must be an integer, not {}", kind(&other)),
            )),
        }
    }

    /// A decimal amount given as a string (`"88.88"`, preferred) or a JSON number. A number is
    /// read from its shortest decimal form, so `1.001` stays `1.001` and is refused for its
    /// third decimal rather than rounded.
    pub fn req_amount_text(&mut self, field: &str) -> Result<String, ApiError> {
        match self.take(field) {
            None => Err(ApiError::field(
                field,
                "is required (a decimal string such as \"88.88\")",
            )),
            Some(Value::String(s)) => Ok(s),
            Some(Value::Number(n)) => Ok(self
                .raw
                .get(field)
                .map_or_else(|| n.to_string(), |raw| raw.get().to_owned())),
            Some(other) => Err(ApiError::field(
                field,
                format!(
                    "must be a decimal string such as \"88.88\", not {}",
                    kind(&other)
                ),
            )),
        }
    }

    pub fn opt_object(&mut self, field: &str) -> Result<Option<Value>, ApiError> {
        match self.take(field) {
            None => Ok(None),
            Some(value @ Value::Object(_)) => Ok(Some(value)),
            Some(other) => Err(ApiError::field(
                field,
                format!("must be an object, not {}", kind(&other)),
            )),
        }
    }

    /// Refuses any field not read.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.object.keys().next() {
            None => Ok(()),
            Some(field) => Err(ApiError::new(
                ErrorCode::UnknownField,
                format!("unknown field {field:?}"),
            )
            .with_field(field)),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
