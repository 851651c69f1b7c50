//! Human durations for the config file: `"500ms"`, `"30s"`, `"15m"`, `"2h"`, `"30d"`, and
//! sums such as `"1h30m"`.

use std::time::Duration;

/// Parses a duration string; the error says what was wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration (use e.g. \"30s\", \"15m\", \"2h\", \"30d\")".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "'{text}' is not a duration (use e.g. \"30s\", \"15m\", \"2h\")"
            ));
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("'{text}': number too large"))?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let unit_millis: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("'{text}': missing unit (ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "'{text}': unknown unit '{other}' (ms, s, m, h or d)"
                ));
            }
        };
        let millis = number
            .checked_mul(unit_millis)
            .ok_or_else(|| format!("'{text}': duration too large"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| format!("'{text}': duration too large"))?;
        rest = tail;
    }
    Ok(total)
}

/// Formats a duration the way the config writes it (used in docs and `check-config` output).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_unit_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for bad in ["", "30", "s", "30x", "-5s", "1.5h", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("30x").unwrap_err().contains("unknown unit"));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
