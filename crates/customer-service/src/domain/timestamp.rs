//! Instants at millisecond precision: what is stored is exactly what is published.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Timelike, Utc};

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
        // chrono's fields, written here two digits at a time: every answer carries two or
        // three of these, and chrono's formatter (a `fmt::Write` call per field) cost ~2 %
        // of a GET by id (callgrind, bench/NOTES.md). `format("…")` cost more, parsing its
        // pattern on every call. Years outside 0–9999 (only a corrupted stored value) are
        // chrono's to write, with a sign.
        let at = self.datetime();
        let Some(year) = u32::try_from(at.year()).ok().filter(|year| *year <= 9999) else {
            return at.to_rfc3339_opts(SecondsFormat::Millis, true);
        };
        let two = |value: u32| [b'0' + (value / 10 % 10) as u8, b'0' + (value % 10) as u8];
        let millis = at.timestamp_subsec_millis();
        let [y1, y2] = two(year / 100);
        let [y3, y4] = two(year % 100);
        let [mo1, mo2] = two(at.month());
        let [d1, d2] = two(at.day());
        let [h1, h2] = two(at.hour());
        let [mi1, mi2] = two(at.minute());
        let [s1, s2] = two(at.second());
        let [ms2, ms3] = two(millis % 100);
        let ms1 = b'0' + (millis / 100 % 10) as u8;
        let text = [
            y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2, b'T', h1, h2, b':', mi1, mi2, b':', s1,
            s2, b'.', ms1, ms2, ms3, b'Z',
        ];
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
        // Every field at both ends of its range, leap days, instants before the epoch, and
        // years chrono writes with a sign.
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
