//! E-mail addresses: trimmed, lower-cased, checked against the contract's pattern.

use super::validation::char_len;

/// A syntactically valid e-mail address, trimmed and lower-cased: the form stored and
/// compared, so uniqueness is case-insensitive by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// The contract's message for every e-mail failure (the original's class-validator text).
pub const EMAIL_MESSAGE: &str = "email must be an email";

/// RFC 5321's limit on a forward path.
const MAX_EMAIL_CHARS: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Email, &'static str> {
        let email = raw.trim().to_lowercase();
        if char_len(&email) <= MAX_EMAIL_CHARS && matches_pattern(&email) {
            Ok(Email(email))
        } else {
            Err(EMAIL_MESSAGE)
        }
    }

    /// Lower-cases and trims `raw` without validating it: the lookup key for a route
    /// parameter, where an invalid address simply matches nothing.
    pub fn normalize_for_lookup(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    /// A value read back from the store, which only ever holds parsed addresses.
    pub fn from_stored(stored: String) -> Email {
        Email(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `^[^\s@]+@[^\s@]+\.[^\s@]+$`, without a regex engine: exactly one `@`, no whitespace
/// (nor control characters, which no mail system accepts and PostgreSQL cannot store as NUL),
/// a non-empty local part, and a domain with a dot that has characters on both sides.
fn matches_pattern(s: &str) -> bool {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty() || domain.contains('@') {
        return false;
    }
    domain
        .char_indices()
        .any(|(i, c)| c == '.' && i > 0 && i + 1 < domain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  John.Doe@Example.COM ").unwrap().as_str(),
            "john.doe@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "plain",
            "a\u{0}@b.co",
            "@b.co",
            "a@",
            "a@b",
            "a@.co",
            "a@b.",
            "a b@c.co",
            "a@b@c.co",
            "a@b .co",
        ] {
            assert_eq!(Email::parse(bad), Err(EMAIL_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn the_pattern_accepts_what_the_original_accepted() {
        for good in [
            "a@b.co",
            "x@a.b.c",
            "first.last+tag@sub.example.org",
            "ü@例え.jp",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn an_email_of_254_characters_is_accepted_and_255_rejected() {
        let domain = "@example.com";
        let at_limit = format!("{}{domain}", "a".repeat(254 - domain.len()));
        assert!(Email::parse(&at_limit).is_ok());
        let over = format!("a{at_limit}");
        assert!(Email::parse(&over).is_err());
    }
}
