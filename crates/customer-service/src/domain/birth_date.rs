//! Dates of birth: an ISO date or date-time, stored as its UTC calendar date, at least
//! 13 years before today.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

/// A date of birth of someone at least 13 years old today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthDate(NaiveDate);

pub const BIRTH_DATE_FORMAT_MESSAGE: &str = "dateOfBirth must be a valid ISO 8601 date string";
pub const BIRTH_DATE_AGE_MESSAGE: &str =
    "Date of birth must be a valid date and customer must be at least 13 years old";
const MIN_AGE_YEARS: i32 = 13;

impl BirthDate {
    /// Parses `YYYY-MM-DD`, an RFC 3339 date-time (converted to UTC) or a date-time without
    /// offset (taken as UTC), then checks the age against `today`.
    pub fn parse(raw: &str, today: NaiveDate) -> Result<BirthDate, &'static str> {
        let date = parse_iso_date(raw.trim()).ok_or(BIRTH_DATE_FORMAT_MESSAGE)?;
        if date > today || age_on(date, today) < MIN_AGE_YEARS {
            return Err(BIRTH_DATE_AGE_MESSAGE);
        }
        Ok(BirthDate(date))
    }

    /// The latest date of birth `parse` accepts on `today`, as (year, month, day): today's
    /// month and day 13 years ago (which on 29 February may not be a date: any date up to it
    /// is accepted, in order).
    pub fn latest_on(today: NaiveDate) -> (i32, u32, u32) {
        (today.year() - MIN_AGE_YEARS, today.month(), today.day())
    }

    /// A stored `YYYY-MM-DD`; `None` if the stored text is not one.
    pub fn from_stored(stored: &str) -> Option<BirthDate> {
        stored.parse::<NaiveDate>().ok().map(BirthDate)
    }

    /// `YYYY-MM-DD`.
    pub fn to_iso(self) -> String {
        self.0.to_string()
    }
}

/// Whole years from `born` to `today`; the birthday counts from its own day on.
fn age_on(born: NaiveDate, today: NaiveDate) -> i32 {
    let had_birthday = (today.month(), today.day()) >= (born.month(), born.day());
    today.year() - born.year() - i32::from(!had_birthday)
}

fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    // chrono's %Y also takes signed and 5-digit years; ISO 8601 here means four digits.
    let prefix = s.get(..10)?;
    let shape_ok = prefix.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    if s.len() == 10 {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Some(at.naive_utc().date());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(s, format).ok())
        .map(|at| at.date())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_latest_accepted_date_is_today_13_years_ago() {
        let today = day("2026-12-07");
        assert_eq!(BirthDate::latest_on(today), (2013, 12, 7));
        assert!(BirthDate::parse("2013-12-07", today).is_ok());
        assert!(BirthDate::parse("2013-12-08", today).is_err());
        let leap = day("2028-02-29");
        assert_eq!(BirthDate::latest_on(leap), (2015, 2, 29));
        assert!(BirthDate::parse("2015-02-28", leap).is_ok());
        assert!(BirthDate::parse("2015-03-01", leap).is_err());
    }

    #[test]
    fn a_plain_date_is_kept() {
        let d = BirthDate::parse("1990-01-15", day("2026-11-27")).unwrap();
        assert_eq!(d.to_iso(), "1990-01-15");
    }

    #[test]
    fn a_datetime_is_stored_as_its_utc_date() {
        let today = day("2026-11-27");
        let d = BirthDate::parse("1990-01-15T23:30:00-02:00", today).unwrap();
        assert_eq!(d.to_iso(), "1990-01-16");
        let d = BirthDate::parse("1990-01-15T00:00:00.000Z", today).unwrap();
        assert_eq!(d.to_iso(), "1990-01-15");
        let d = BirthDate::parse("1990-01-15T08:00", today).unwrap();
        assert_eq!(d.to_iso(), "1990-01-15");
    }

    #[test]
    fn thirteen_years_old_today_is_accepted_and_one_day_younger_is_not() {
        let today = day("2026-11-27");
        assert!(BirthDate::parse("2013-11-27", today).is_ok());
        assert_eq!(
            BirthDate::parse("2013-11-28", today),
            Err(BIRTH_DATE_AGE_MESSAGE)
        );
    }

    #[test]
    fn a_date_in_the_future_is_rejected() {
        assert_eq!(
            BirthDate::parse("2030-01-01", day("2026-11-27")),
            Err(BIRTH_DATE_AGE_MESSAGE)
        );
    }

    #[test]
    fn a_leap_day_birthday_turns_thirteen_on_the_first_of_march() {
        let born = "2012-02-29";
        assert!(BirthDate::parse(born, day("2025-02-28")).is_err());
        assert!(BirthDate::parse(born, day("2025-03-01")).is_ok());
    }

    #[test]
    fn non_iso_strings_are_rejected() {
        let today = day("2026-11-27");
        for bad in [
            "",
            "15/01/1990",
            "1990-13-01",
            "1990-02-30",
            "+1990-01-15",
            "1990-1-15",
            "yesterday",
            "1990-01-15Tnoon",
        ] {
            assert_eq!(
                BirthDate::parse(bad, today),
                Err(BIRTH_DATE_FORMAT_MESSAGE),
                "{bad:?}"
            );
        }
    }
}
