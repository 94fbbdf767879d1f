//! The small value languages of scenario files: durations (`90s`, `2h30m`, `-6m`), amounts
//! (`"25.00"`, exact, in minor units) and relative times in reports.

/// Parses a duration: one or more `<integer><unit>` parts, unit `ms`, `s`, `m`, `h` or `d`,
/// with an optional leading sign (`+6m`, `-30s`). Returns milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let (sign, body) = match trimmed.as_bytes().first() {
        Some(b'-') => (-1, trimmed.get(1..).unwrap_or("")),
        Some(b'+') => (1, trimmed.get(1..).unwrap_or("")),
        _ => (1, trimmed),
    };
    let invalid = || {
        format!(
            "`{text}` is not a duration; write e.g. `500ms`, `30s`, `15m`, `2h`, `1d` or `1h30m`"
        )
    };
    if body.is_empty() {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (number, after) = rest.split_at(digits);
        let number: i64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let factor: i64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        total = number
            .checked_mul(factor)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        rest = after;
    }
    Ok(sign * total)
}

/// Formats milliseconds as the shortest duration [`parse_duration`] reads back (`2h30m`).
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    }
    let mut rest = ms.unsigned_abs();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

/// A timeline offset: `+1h02m03.004s`-style, fixed width enough to line up.
pub fn format_offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let ms = ms.unsigned_abs();
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1_000 % 60;
    let millis = ms % 1_000;
    format!("{sign}{hours:02}:{minutes:02}:{seconds:02}.{millis:03}")
}

/// Parses a decimal amount in major units with at most two decimals (`"25"`, `"25.5"`,
/// `"0.01"`) into minor units. Signs, exponents, separators and blanks are refused.
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let invalid =
        || format!("`{text}` is not an amount; write e.g. \"25.00\" (at most two decimals)");
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(invalid());
    }
    if fraction.len() > 2 {
        return Err(format!(
            "`{text}` has more than two decimals; amounts are exact to the fen"
        ));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("`{text}` is too large an amount"))?;
    let mut cents = 0;
    for (position, digit) in fraction.bytes().enumerate() {
        let value = i64::from(digit - b'0');
        cents += if position == 0 { value * 10 } else { value };
    }
    whole
        .checked_mul(100)
        .and_then(|minor| minor.checked_add(cents))
        .ok_or_else(|| format!("`{text}` is too large an amount"))
}

/// Minor units as a two-decimal amount (`2500` → `"25.00"`).
pub fn format_amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format_round_trip() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("+6m"), Ok(360_000));
        assert_eq!(parse_duration("-6m"), Ok(-360_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        for bad in ["", "5", "h", "5x", "1.5h", "-", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for ms in [0, 1, 999, 1_000, 61_000, 5_400_000, 90_061_001, -360_000] {
            assert_eq!(parse_duration(&format_duration(ms)), Ok(ms));
        }
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(parse_amount("25.00"), Ok(2_500));
        assert_eq!(parse_amount("25.5"), Ok(2_550));
        assert_eq!(parse_amount("0.01"), Ok(1));
        assert_eq!(parse_amount("7"), Ok(700));
        for bad in ["", "-1", "1.001", "1e3", "1,000", " 1", "1.", ".5", "abc"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
        assert!(parse_amount("99999999999999999999").is_err());
        assert_eq!(format_amount(2_550), "25.50");
        assert_eq!(format_amount(-1), "-0.01");
    }

    #[test]
    fn offsets_line_up() {
        assert_eq!(format_offset(0), "+00:00:00.000");
        assert_eq!(format_offset(90_061_001), "+25:01:01.001");
    }
}
