//! Instants at millisecond precision: what is stored is exactly what is published.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Truncates a date-time to the millisecond.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Timestamp(at.timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    fn datetime(self) -> DateTime<Utc> {
        // Every i64 millisecond count this service produces (a clock reading) is in range;
        // the epoch is a harmless fallback for a corrupted stored value.
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    /// ISO-8601 with exactly three fraction digits and `Z`: `2026-01-01T10:00:00.000Z`.
    pub fn to_iso(self) -> String {
        // Computed and written digit by digit: every answer carries two or three of these,
        // and chrono's formatter (a `fmt::Write` call per field) cost ~800 instructions
        // each, 3 % of a GET by id (callgrind, bench/NOTES.md). The calendar arithmetic is
        // Howard Hinnant's `civil_from_days`. Years outside 0–9999 (only a corrupted stored
        // value) take chrono's path, which writes them with a sign.
        const DAY_MS: i64 = 86_400_000;
        let (days, ms) = (self.0.div_euclid(DAY_MS), self.0.rem_euclid(DAY_MS));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        if !(0..=9999).contains(&year) {
            return self.datetime().to_rfc3339_opts(SecondsFormat::Millis, true);
        }
        let mut text = *b"0000-00-00T00:00:00.000Z";
        for (at, width, value) in [
            (0, 4, year),
            (5, 2, month),
            (8, 2, day),
            (11, 2, ms / 3_600_000),
            (14, 2, ms / 60_000 % 60),
            (17, 2, ms / 1000 % 60),
            (20, 3, ms % 1000),
        ] {
            let mut value = value;
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        // ASCII digits and separators: always UTF-8.
        std::str::from_utf8(&text)
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// The UTC calendar date of this instant.
    pub fn date(self) -> NaiveDate {
        self.datetime().date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_three_fraction_digits_and_z() {
        assert_eq!(
            Timestamp::from_millis(0).to_iso(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_729_267_200_123).to_iso(),
            "2024-10-18T16:00:00.123Z"
        );
    }

    #[test]
    fn writes_what_chrono_writes_over_the_whole_range() {
        // Every field at both ends of its range, leap days and seconds before the epoch,
        // and years chrono writes with a sign.
        let chrono = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        };
        let mut samples = vec![
            -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
            -62_167_219_200_001, // one millisecond before: year -1
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            253_402_300_800_000, // +10000-01-01
            -1,
            951_782_400_000, // 2000-02-29
            1_709_251_199_999,
        ];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(x.rem_euclid(300_000_000_000_000) - 65_000_000_000_000);
        }
        for ms in samples {
            assert_eq!(Timestamp::from_millis(ms).to_iso(), chrono(ms), "{ms}");
        }
    }

    #[test]
    fn truncates_to_the_millisecond() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T10:00:00.123987Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Timestamp::from_datetime(at).to_iso(),
            "2026-01-01T10:00:00.123Z"
        );
    }
}
