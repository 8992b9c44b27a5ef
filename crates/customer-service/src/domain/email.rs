//! E-mail addresses: trimmed, lower-cased, NFC-normalised, checked against the contract's
//! pattern; invisible and bidirectional-control characters refused; and the skeleton by
//! which two addresses that look alike are one customer's.
//!
//! # Look-alikes
//! `jos\u{e9}@…` and `jose\u{301}@…` are one address (NFC makes them equal), and so are
//! `alice@…` and `\u{430}lice@…` (Cyrillic а) or `\u{ff41}lice@…` (fullwidth): their
//! [`Email::skeleton`]s are equal, and the store keeps one customer per skeleton. The skeleton
//! is UTS #39's (NFD, every character mapped to its confusable prototype, NFD) with one
//! departure: ASCII characters stay as they are. UTS #39 also maps ASCII to ASCII (`1` and
//! `I` to `l`, `rn` to `m`, `cl` to `d`, `vv` to `w`), which would make `john1@…` and
//! `johnl@…`, or `kern@…` and `kem@…`, one customer: different mailboxes of different
//! people, common among a million customers, that mail systems have always told apart. What
//! the skeleton catches is the spoof only Unicode makes possible: a non-ASCII character
//! posing as another.
//!
//! Characters that show nothing or reorder the text (Unicode's `Default_Ignorable_Code_Point`,
//! which holds every bidirectional control: zero-width space, soft hyphen, joiners, variation
//! selectors, tags) are refused outright: `al\u{200b}ice@…` is not an address anyone types.

use unicode_normalization::UnicodeNormalization;

use super::validation::{char_len, is_default_ignorable};

/// A syntactically valid e-mail address, trimmed, lower-cased and in NFC: the form stored
/// and compared, so uniqueness is case-insensitive by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// The contract's message for every e-mail failure (the original's class-validator text).
pub const EMAIL_MESSAGE: &str = "email must be an email";

/// RFC 5321's limit on a forward path.
const MAX_EMAIL_CHARS: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Email, &'static str> {
        let email = Email::normalize_for_lookup(raw);
        if char_len(&email) <= MAX_EMAIL_CHARS
            && matches_pattern(&email)
            && !email.chars().any(is_default_ignorable)
        {
            Ok(Email(email))
        } else {
            Err(EMAIL_MESSAGE)
        }
    }

    /// Trims, lower-cases and NFC-normalises `raw` without validating it: the lookup form of
    /// a route parameter, where an invalid address simply matches nothing.
    pub fn normalize_for_lookup(raw: &str) -> String {
        raw.trim().to_lowercase().nfc().collect()
    }

    /// The form by which two addresses are one customer's (see the module's docs): equal for
    /// look-alikes, distinct for addresses that differ in their ASCII characters.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }

    /// A value read back from the store, which only ever holds parsed addresses.
    pub fn from_stored(stored: String) -> Email {
        Email(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// [`Email::skeleton`] of any text (an address as typed into a lookup, normalised first).
pub fn skeleton(email: &str) -> String {
    let mut skeleton = String::with_capacity(email.len());
    for c in email.nfd() {
        if c.is_ascii() {
            skeleton.push(c);
        } else {
            let mut one = [0u8; 4];
            skeleton.extend(unicode_security::skeleton(c.encode_utf8(&mut one)));
        }
    }
    // A prototype may be a capital (`\u{2160}`, roman numeral one, maps to `l`; others to
    // `I` or `O`), and the addresses it is compared with are lower-cased.
    skeleton.to_lowercase()
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
    fn an_email_is_stored_in_nfc() {
        let composed = Email::parse("jos\u{e9}@example.com").unwrap();
        let decomposed = Email::parse("JOSE\u{301}@example.com").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.as_str(), "jos\u{e9}@example.com");
    }

    #[test]
    fn invisible_and_bidirectional_characters_are_refused() {
        for bad in [
            "al\u{200b}ice@example.com",  // zero-width space
            "al\u{ad}ice@example.com",    // soft hyphen
            "al\u{200d}ice@example.com",  // zero-width joiner
            "alice\u{feff}@example.com",  // byte-order mark
            "\u{202e}alice@example.com",  // right-to-left override
            "alice@exa\u{2066}mple.com",  // left-to-right isolate
            "alice\u{fe0f}@example.com",  // variation selector
            "alice\u{e0041}@example.com", // tag
        ] {
            assert_eq!(Email::parse(bad), Err(EMAIL_MESSAGE), "{bad:?}");
        }
    }

    #[test]
    fn look_alikes_share_a_skeleton_and_ascii_addresses_keep_their_own() {
        let skeleton = |e: &str| Email::parse(e).unwrap().skeleton();
        let alice = skeleton("alice@example.com");
        assert_eq!(alice, "alice@example.com");
        for look_alike in [
            "\u{430}lice@example.com",  // Cyrillic a
            "\u{ff41}lice@example.com", // fullwidth a
            "alic\u{435}@example.com",  // Cyrillic e
            "alice@\u{435}xample.com",  // in the domain too
            "\u{251}lice@example.com",  // Latin alpha
        ] {
            assert_eq!(skeleton(look_alike), alice, "{look_alike:?}");
        }
        assert_eq!(
            skeleton("jos\u{e9}@example.com"),
            skeleton("jose\u{301}@example.com")
        );
        // Distinct ASCII addresses stay distinct, look-alike or not.
        for (a, b) in [
            ("john1@example.com", "johnl@example.com"),
            ("kern@example.com", "kem@example.com"),
            ("clan@example.com", "dan@example.com"),
            ("o0@example.com", "oo@example.com"),
        ] {
            assert_ne!(skeleton(a), skeleton(b), "{a} {b}");
        }
        assert_ne!(skeleton("bob@example.com"), alice);
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
