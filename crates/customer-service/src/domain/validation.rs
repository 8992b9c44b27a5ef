//! Validation failures, collected per field so a client sees every problem at once.

use std::fmt;

/// Failures of the domain's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input broke one or more rules; becomes 400 with `fieldErrors`.
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
}

/// Messages per field, in the order they were found. Nested fields are dotted
/// (`address.city`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, Vec<String>)>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A single failure of `field`.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    /// Records `message` against `field` (once: repeats are dropped).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let message = message.into();
        match self.0.iter_mut().find(|(name, _)| *name == field) {
            Some((_, messages)) if messages.contains(&message) => {}
            Some((_, messages)) => messages.push(message),
            None => self.0.push((field, vec![message])),
        }
    }

    /// Keeps the first `n` fields' messages; how many fields were dropped.
    pub fn keep_first(&mut self, n: usize) -> usize {
        let dropped = self.0.len().saturating_sub(n);
        self.0.truncate(n);
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(field, messages)` in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(f, m)| (f.as_str(), m.as_slice()))
    }

    /// Messages of one field (empty if it has none).
    pub fn of(&self, field: &str) -> &[String] {
        self.0
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&[])
    }

    /// `Ok(value)` if nothing was recorded, else the failures.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, DomainError> {
        if self.is_empty() {
            Ok(value())
        } else {
            Err(DomainError::Validation(self))
        }
    }
}

impl fmt::Display for FieldErrors {
    /// All messages joined with ", " (the error body's `message`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (_, messages) in &self.0 {
            for message in messages {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(message)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties, Unicode 15.1): characters
/// a renderer shows as nothing. Every bidirectional control ([`is_bidi_control`]) is one.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// The characters that reorder displayed text (Unicode's `Bidi_Control` property).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{61C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Length in characters (Unicode scalar values), the unit of every length rule.
pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_grouped_by_field_and_joined_in_order() {
        let mut errors = FieldErrors::new();
        errors.add("email", "email must be an email");
        errors.add("firstName", "firstName must be a string");
        errors.add("email", "email must be an email");
        errors.add("email", "other");
        assert_eq!(errors.of("email"), ["email must be an email", "other"]);
        assert_eq!(
            errors.to_string(),
            "email must be an email, other, firstName must be a string"
        );
    }
}
