//! First and last names: trimmed, 2 to 100 characters.

use super::validation::char_len;

/// A trimmed name of 2–100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

const MIN_NAME_CHARS: usize = 2;
const MAX_NAME_CHARS: usize = 100;

impl PersonName {
    /// `label` is how the message names the field: "First name" or "Last name".
    pub fn parse(raw: &str, label: &str) -> Result<PersonName, String> {
        let name = raw.trim();
        let len = char_len(name);
        if name.chars().any(char::is_control) {
            // Control characters have no place in a name, and PostgreSQL cannot store NUL.
            Err(format!("{label} must not contain control characters"))
        } else if len < MIN_NAME_CHARS {
            Err(format!(
                "{label} must be at least {MIN_NAME_CHARS} characters"
            ))
        } else if len > MAX_NAME_CHARS {
            Err(format!(
                "{label} must not exceed {MAX_NAME_CHARS} characters"
            ))
        } else {
            Ok(PersonName(name.to_owned()))
        }
    }

    pub fn from_stored(stored: String) -> PersonName {
        PersonName(stored)
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
    fn a_name_is_trimmed() {
        assert_eq!(
            PersonName::parse("  Jo ", "First name").unwrap().as_str(),
            "Jo"
        );
    }

    #[test]
    fn two_characters_after_trimming_is_the_minimum() {
        assert_eq!(
            PersonName::parse(" J ", "First name"),
            Err("First name must be at least 2 characters".into())
        );
        assert!(PersonName::parse("Jo", "First name").is_ok());
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_eq!(
            PersonName::parse("Jo\u{0}hn", "First name"),
            Err("First name must not contain control characters".into())
        );
    }

    #[test]
    fn one_hundred_characters_is_the_maximum() {
        assert!(PersonName::parse(&"é".repeat(100), "Last name").is_ok());
        assert_eq!(
            PersonName::parse(&"é".repeat(101), "Last name"),
            Err("Last name must not exceed 100 characters".into())
        );
    }
}
