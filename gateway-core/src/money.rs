//! Exact money: integer minor units plus currency, checked arithmetic, and one converter per
//! channel wire format (yuan decimal strings such as `"88.88"`, integer fen).
//!
//! Floats never touch an amount. Decimal strings are parsed with `rust_decimal` after a strict
//! grammar check, because `rust_decimal` alone accepts forms no channel sends (`1_000`, `+1`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The currencies paysim books. All three channels settle in CNY; the others exist so the
/// ledger's per-currency balancing (I1) is exercised. Every listed currency has two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    Cny,
    Hkd,
    Usd,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::Cny, Currency::Hkd, Currency::Usd];

    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Hkd => "HKD",
            Currency::Usd => "USD",
        }
    }

    /// Decimal places of the minor unit.
    pub fn exponent(self) -> u32 {
        match self {
            Currency::Cny | Currency::Hkd | Currency::Usd => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or_else(|| MoneyError::UnknownCurrency(s.to_owned()))
    }
}

/// Why an amount was refused. The message names the problem so it can go straight into an
/// API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} is not a plain decimal number such as \"88.88\"")]
    Malformed(String),
    #[error("{0:?} has more than two decimal places")]
    TooManyDecimals(String),
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} is too large (at most 100000000000.00)")]
    Overflow(String),
    #[error("must be greater than zero")]
    NotPositive,
    #[error("currency {0:?} is not supported (supported: CNY, HKD, USD)")]
    UnknownCurrency(String),
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("arithmetic overflow")]
    ArithmeticOverflow,
}

/// The largest amount paysim accepts in one order or refund: 10^13 minor units (100 billion
/// yuan), far above any channel's per-transaction limit, and small enough that sums of many
/// amounts stay far inside `i64`.
pub const MAX_AMOUNT_MINOR: i64 = 10_000_000_000_000;

/// An amount of money: integer minor units (fen for CNY) and its currency. The field is
/// private; arithmetic is checked and refuses to mix currencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    /// A strictly positive amount no larger than [`MAX_AMOUNT_MINOR`]: what an order or refund
    /// may carry.
    pub fn positive(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if minor > MAX_AMOUNT_MINOR {
            return Err(MoneyError::Overflow(minor.to_string()));
        }
        Ok(Money { minor, currency })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_zero(self) -> bool {
        self.minor == 0
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::ArithmeticOverflow)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::ArithmeticOverflow)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }

    /// `self × rate_bps / 10_000`, rounded half-up to the minor unit: the fee on an amount at a
    /// rate in basis points.
    pub fn fee_at_bps(self, rate_bps: u32) -> Result<Money, MoneyError> {
        let product = i128::from(self.minor)
            .checked_mul(i128::from(rate_bps))
            .ok_or(MoneyError::ArithmeticOverflow)?;
        let rounded = (product + 5_000) / 10_000;
        let minor = i64::try_from(rounded).map_err(|_| MoneyError::ArithmeticOverflow)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", yuan::format(*self), self.currency)
    }
}

/// Major-unit decimal strings with at most two decimals: Alipay's `total_amount` (`"88.88"`),
/// the gateway API's `amount`.
pub mod yuan {
    use super::*;

    /// Parses a plain decimal string: digits, optionally a point and one or two digits. No
    /// sign, exponent, separators or whitespace. Zero parses (callers that need a positive
    /// amount use [`parse_positive`]).
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        if let Some(rest) = text.strip_prefix('-') {
            if is_plain_decimal(rest) {
                return Err(MoneyError::Negative(text.to_owned()));
            }
            return Err(MoneyError::Malformed(text.to_owned()));
        }
        if !is_plain_decimal(text) {
            return Err(MoneyError::Malformed(text.to_owned()));
        }
        let decimals = text.split_once('.').map_or(0, |(_, frac)| frac.len());
        if decimals > currency.exponent() as usize {
            return Err(MoneyError::TooManyDecimals(text.to_owned()));
        }
        // 28 significant digits is rust_decimal's limit; anything that long overflows anyway.
        let integer_digits = text.split('.').next().map_or(0, str::len);
        if integer_digits > 20 {
            return Err(MoneyError::Overflow(text.to_owned()));
        }
        let mut value =
            Decimal::from_str(text).map_err(|_| MoneyError::Malformed(text.to_owned()))?;
        value.rescale(currency.exponent());
        let mantissa = value.mantissa();
        let minor = i64::try_from(mantissa).map_err(|_| MoneyError::Overflow(text.to_owned()))?;
        if minor > MAX_AMOUNT_MINOR {
            return Err(MoneyError::Overflow(text.to_owned()));
        }
        Ok(Money::from_minor(minor, currency))
    }

    /// [`parse`], then refuses zero.
    pub fn parse_positive(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let money = parse(text, currency)?;
        if money.minor() <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(money)
    }

    /// Always two decimals: `8888` → `"88.88"`, `1` → `"0.01"`, `-150` → `"-1.50"`.
    pub fn format(money: Money) -> String {
        let minor = money.minor();
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    fn is_plain_decimal(text: &str) -> bool {
        let (int, frac) = match text.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(int) && frac.is_none_or(digits)
    }
}

/// Integer minor units on the wire: WeChat Pay's `amount.total`, UnionPay's `txnAmt`
/// (`"8888"` as a string there).
pub mod fen {
    use super::*;

    /// A JSON integer. Negative values and values above [`MAX_AMOUNT_MINOR`] are refused.
    pub fn from_i64(value: i64, currency: Currency) -> Result<Money, MoneyError> {
        if value < 0 {
            return Err(MoneyError::Negative(value.to_string()));
        }
        if value > MAX_AMOUNT_MINOR {
            return Err(MoneyError::Overflow(value.to_string()));
        }
        Ok(Money::from_minor(value, currency))
    }

    /// A string of digits, such as UnionPay's `txnAmt`. No sign, no leading `+`, no spaces.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        if let Some(rest) = text.strip_prefix('-') {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MoneyError::Negative(text.to_owned()));
            }
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Malformed(text.to_owned()));
        }
        let value: i64 = text
            .parse()
            .map_err(|_| MoneyError::Overflow(text.to_owned()))?;
        from_i64(value, currency)
    }

    pub fn to_i64(money: Money) -> i64 {
        money.minor()
    }

    pub fn format(money: Money) -> String {
        money.minor().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cny(text: &str) -> Result<i64, MoneyError> {
        yuan::parse(text, Currency::Cny).map(Money::minor)
    }

    #[test]
    fn yuan_accepts_plain_decimals() {
        assert_eq!(cny("88.88"), Ok(8888));
        assert_eq!(cny("0.01"), Ok(1));
        assert_eq!(cny("1"), Ok(100));
        assert_eq!(cny("1.5"), Ok(150));
        assert_eq!(cny("0"), Ok(0));
        assert_eq!(cny("007.10"), Ok(710));
    }

    #[test]
    fn yuan_rejects_junk_with_named_reason() {
        assert!(matches!(cny(""), Err(MoneyError::Empty)));
        assert!(matches!(cny("-1"), Err(MoneyError::Negative(_))));
        assert!(matches!(cny("1.001"), Err(MoneyError::TooManyDecimals(_))));
        assert!(matches!(cny("abc"), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny("1e5"), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny("1_000"), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny("+1"), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny(" 1"), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny("1."), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny(".5"), Err(MoneyError::Malformed(_))));
        assert!(matches!(cny("--1"), Err(MoneyError::Malformed(_))));
        assert!(matches!(
            cny("123456789012345678901234567890"),
            Err(MoneyError::Overflow(_))
        ));
        assert!(matches!(
            cny("100000000000.01"),
            Err(MoneyError::Overflow(_))
        ));
        assert!(matches!(
            yuan::parse_positive("0.00", Currency::Cny),
            Err(MoneyError::NotPositive)
        ));
    }

    #[test]
    fn fen_parses_digit_strings_only() {
        assert_eq!(
            fen::parse("8888", Currency::Cny).map(Money::minor),
            Ok(8888)
        );
        assert!(matches!(
            fen::parse("-1", Currency::Cny),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            fen::parse("1.0", Currency::Cny),
            Err(MoneyError::Malformed(_))
        ));
        assert!(matches!(
            fen::parse("", Currency::Cny),
            Err(MoneyError::Empty)
        ));
        assert!(matches!(
            fen::parse("99999999999999999999999", Currency::Cny),
            Err(MoneyError::Overflow(_))
        ));
        assert!(matches!(
            fen::from_i64(-5, Currency::Cny),
            Err(MoneyError::Negative(_))
        ));
    }

    #[test]
    fn arithmetic_is_checked_and_single_currency() {
        let a = Money::from_minor(i64::MAX, Currency::Cny);
        let b = Money::from_minor(1, Currency::Cny);
        assert_eq!(a.checked_add(b), Err(MoneyError::ArithmeticOverflow));
        let usd = Money::from_minor(1, Currency::Usd);
        assert_eq!(
            b.checked_add(usd),
            Err(MoneyError::CurrencyMismatch(Currency::Cny, Currency::Usd))
        );
        assert_eq!(
            Money::from_minor(10_000, Currency::Cny)
                .fee_at_bps(60)
                .map(Money::minor),
            Ok(60)
        );
        assert_eq!(
            Money::from_minor(83, Currency::Cny)
                .fee_at_bps(60)
                .map(Money::minor),
            Ok(0)
        );
        assert_eq!(
            Money::from_minor(84, Currency::Cny)
                .fee_at_bps(60)
                .map(Money::minor),
            Ok(1)
        );
    }

    proptest! {
        #[test]
        fn yuan_round_trips(minor in 0..=MAX_AMOUNT_MINOR) {
            let money = Money::from_minor(minor, Currency::Cny);
            let text = yuan::format(money);
            prop_assert_eq!(yuan::parse(&text, Currency::Cny), Ok(money));
        }

        #[test]
        fn fen_round_trips(minor in 0..=MAX_AMOUNT_MINOR) {
            let money = Money::from_minor(minor, Currency::Cny);
            prop_assert_eq!(fen::parse(&fen::format(money), Currency::Cny), Ok(money));
        }

        #[test]
        fn yuan_never_panics_and_accepts_only_the_grammar(text in "\\PC{0,40}") {
            let strict = regex_like_plain(&text);
            if let Ok(money) = yuan::parse(&text, Currency::Cny) {
                prop_assert!(strict, "accepted {:?}", text);
                prop_assert!(money.minor() >= 0 && money.minor() <= MAX_AMOUNT_MINOR);
            }
        }

        #[test]
        fn yuan_rejects_three_decimals(int in 0u64..1_000_000, frac in 0u32..1000) {
            let text = format!("{int}.{frac:03}");
            prop_assert!(matches!(yuan::parse(&text, Currency::Cny), Err(MoneyError::TooManyDecimals(_))));
        }
    }

    /// The accepted grammar, written independently of the parser: `\d+(\.\d{1,2})?`.
    fn regex_like_plain(text: &str) -> bool {
        let mut parts = text.splitn(2, '.');
        let int = parts.next().unwrap_or("");
        let frac = parts.next();
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        digits(int) && frac.is_none_or(|f| digits(f) && f.len() <= 2)
    }
}
