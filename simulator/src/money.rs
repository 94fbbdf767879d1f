//! Amounts in integer minor units (fen) and the simulator's own converter to and from yuan
//! decimal strings. Written here, not shared with the gateway, on purpose (crate docs).

/// Why a yuan string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YuanError {
    /// Not `digits[.d[d]]`: signs, exponents, separators, spaces, more than two decimals.
    Malformed,
    /// Too large to represent.
    Overflow,
}

/// Parses `"88.88"`, `"1"`, `"0.5"` into fen. Accepts at most two decimals and nothing else
/// (no sign, exponent, grouping or whitespace), so the value is exactly what was sent.
pub fn parse_yuan(text: &str) -> Result<i64, YuanError> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(YuanError::Malformed);
    }
    let fraction_fen = match fraction {
        None => 0,
        Some(digits)
            if (1..=2).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let value: i64 = digits.parse().map_err(|_| YuanError::Malformed)?;
            if digits.len() == 1 {
                value * 10
            } else {
                value
            }
        }
        Some(_) => return Err(YuanError::Malformed),
    };
    // Leading zeros are harmless; an absurd number of digits is an overflow, not a crash.
    let whole_yuan: i64 = whole.parse().map_err(|_| YuanError::Overflow)?;
    whole_yuan
        .checked_mul(100)
        .and_then(|fen| fen.checked_add(fraction_fen))
        .ok_or(YuanError::Overflow)
}

/// Formats fen as a two-decimal yuan string (`8888` → `"88.88"`, `0` → `"0.00"`).
pub fn format_yuan(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_yuan_strings() {
        let cases: &[(&str, Result<i64, YuanError>)] = &[
            ("88.88", Ok(8_888)),
            ("1", Ok(100)),
            ("0.5", Ok(50)),
            ("0.01", Ok(1)),
            ("007.10", Ok(710)),
            ("100000000", Ok(10_000_000_000)),
            ("1.234", Err(YuanError::Malformed)),
            ("-1.00", Err(YuanError::Malformed)),
            ("+1", Err(YuanError::Malformed)),
            ("1e2", Err(YuanError::Malformed)),
            ("1,000", Err(YuanError::Malformed)),
            (" 1", Err(YuanError::Malformed)),
            ("1.", Err(YuanError::Malformed)),
            (".5", Err(YuanError::Malformed)),
            ("", Err(YuanError::Malformed)),
            ("99999999999999999999999", Err(YuanError::Overflow)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_yuan(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn formats_two_decimals() {
        assert_eq!(format_yuan(8_888), "88.88");
        assert_eq!(format_yuan(0), "0.00");
        assert_eq!(format_yuan(5), "0.05");
        assert_eq!(format_yuan(-150), "-1.50");
    }
}
