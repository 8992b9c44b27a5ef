//! The contract's timestamps (`2026-01-01T10:00:00.000Z`) as Unix milliseconds, without a
//! date-time dependency (the crate keeps none, see the crate docs).

/// Unix milliseconds of a UTC timestamp `YYYY-MM-DDTHH:MM:SS[.fff…]Z`; `None` for anything
/// else.
pub fn iso_to_unix_ms(iso: &str) -> Option<i64> {
    let bytes = iso.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let text = iso.get(range)?;
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let rest = iso.get(19..)?;
    let fraction = rest.strip_suffix('Z')?;
    let millis = match fraction.strip_prefix('.') {
        None if fraction.is_empty() => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let first3: String = digits.chars().chain("000".chars()).take(3).collect();
            first3.parse::<i64>().ok()?
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_timestamps_read_as_unix_milliseconds() {
        assert_eq!(iso_to_unix_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            iso_to_unix_ms("2026-01-01T10:00:00.000Z"),
            Some(1_767_261_600_000)
        );
        assert_eq!(
            iso_to_unix_ms("2024-02-29T23:59:59.999Z"),
            Some(1_709_251_199_999)
        );
        assert_eq!(
            iso_to_unix_ms("2024-02-29T23:59:59Z"),
            Some(1_709_251_199_000)
        );
        assert_eq!(
            iso_to_unix_ms("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(iso_to_unix_ms("1969-12-31T23:59:59.000Z"), Some(-1000));
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T10:00:00.000",
            "2026-13-01T10:00:00Z",
            "x026-01-01T10:00:00Z",
        ] {
            assert_eq!(iso_to_unix_ms(bad), None, "{bad}");
        }
    }
}
