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
        // Not `format("…")`: that parses its pattern on every call (3 % of a list request's CPU).
        self.datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
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
