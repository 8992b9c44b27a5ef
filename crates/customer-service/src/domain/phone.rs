//! Phone numbers: the contract's loose format with at least ten digits.

use super::validation::char_len;

/// A phone number as the customer wrote it (trimmed), e.g. `+1-555-010-0100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

pub const PHONE_MESSAGE: &str = "Phone number format is invalid";
const MIN_PHONE_DIGITS: usize = 10;
const MAX_PHONE_CHARS: usize = 32;

impl Phone {
    /// `^\+?[\d\s\-()]+$`, at least 10 digits, at most 32 characters.
    pub fn parse(raw: &str) -> Result<Phone, &'static str> {
        let phone = raw.trim();
        let body = phone.strip_prefix('+').unwrap_or(phone);
        let well_formed = !body.is_empty()
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_whitespace() || matches!(c, '-' | '(' | ')'));
        let digits = body.chars().filter(char::is_ascii_digit).count();
        if well_formed && digits >= MIN_PHONE_DIGITS && char_len(phone) <= MAX_PHONE_CHARS {
            Ok(Phone(phone.to_owned()))
        } else {
            Err(PHONE_MESSAGE)
        }
    }

    pub fn from_stored(stored: String) -> Phone {
        Phone(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_ten_digits_is_enough_and_nine_is_not() {
        assert!(Phone::parse("5550100100").is_ok());
        assert_eq!(Phone::parse("555010010"), Err(PHONE_MESSAGE));
    }

    #[test]
    fn separators_and_a_leading_plus_are_allowed() {
        assert_eq!(
            Phone::parse("+1 (555) 010-0100").unwrap().as_str(),
            "+1 (555) 010-0100"
        );
    }

    #[test]
    fn other_characters_and_a_plus_inside_are_rejected() {
        for bad in [
            "555-010-0100 ext 1",
            "1+5550100100",
            "++15550100100",
            "+",
            "five5501001000",
        ] {
            assert_eq!(Phone::parse(bad), Err(PHONE_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn thirty_two_characters_is_the_maximum() {
        let at_limit = format!("{}{}", "5".repeat(10), "-".repeat(22));
        assert_eq!(at_limit.len(), 32);
        assert!(Phone::parse(&at_limit).is_ok());
        assert_eq!(Phone::parse(&format!("{at_limit}-")), Err(PHONE_MESSAGE));
    }
}
