//! Typed identifiers with a prefix (`ord_…`, `rfd_…`, `mch_…`, `je_…`), generated from the
//! determinism seam's entropy so a seed fixes every id of a run.

use std::fmt;

use determinism::{Entropy, EntropyExt};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} id {value:?} is invalid: expected `{prefix}` followed by 1 to 60 of [0-9A-Za-z_-]")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

/// Length of the random part of generated ids: 24 base-36 characters ≈ 124 bits.
const RANDOM_LEN: usize = 24;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate(entropy: &dyn Entropy) -> Self {
                $name(format!("{}{}", $prefix, entropy.token(RANDOM_LEN)))
            }

            pub fn parse(value: &str) -> Result<Self, IdError> {
                let valid = value.strip_prefix($prefix).is_some_and(|rest| {
                    !rest.is_empty()
                        && rest.len() <= 60
                        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                });
                if valid {
                    Ok($name(value.to_owned()))
                } else {
                    Err(IdError { kind: $kind, prefix: $prefix, value: value.to_owned() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

typed_id!(
    /// A gateway order; also the `out_trade_no` sent to the channel (28 characters fits every
    /// channel's limit).
    OrderId, "ord_", "order"
);
typed_id!(
    /// A refund; also the channel's `out_request_no` / `out_refund_no`.
    RefundId, "rfd_", "refund"
);
typed_id!(
    /// A merchant of the gateway.
    MerchantId, "mch_", "merchant"
);
typed_id!(
    /// A ledger journal entry.
    EntryId, "je_", "journal entry"
);
typed_id!(
    /// An alert raised for an operator (abnormal refund, late payment after close, …).
    AlertId, "alt_", "alert"
);

/// The merchant every sandbox has from its first start.
pub fn sandbox_merchant() -> MerchantId {
    MerchantId("mch_sandbox".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use determinism::SeededEntropy;

    #[test]
    fn generated_ids_parse_and_are_seeded() {
        let a = OrderId::generate(&SeededEntropy::new(7));
        let b = OrderId::generate(&SeededEntropy::new(7));
        assert_eq!(a, b);
        assert_eq!(OrderId::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.as_str().len(), 4 + RANDOM_LEN);
    }

    #[test]
    fn parse_refuses_wrong_prefix_and_junk() {
        assert!(OrderId::parse("rfd_abc").is_err());
        assert!(OrderId::parse("ord_").is_err());
        assert!(OrderId::parse("ord_a b").is_err());
        assert!(OrderId::parse(&format!("ord_{}", "a".repeat(61))).is_err());
        assert!(MerchantId::parse("mch_sandbox").is_ok());
    }
}
