//! The application layer's error: domain failures plus what only a use case can know.

use crate::domain::DomainError;

use super::ports::StoreError;

/// Why a use case failed. `http/error.rs` maps each variant to one status.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// Invalid input (400).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No customer with that id or e-mail (404).
    #[error("customer not found")]
    NotFound,
    /// The e-mail belongs to another customer (409).
    #[error("email already exists")]
    EmailTaken,
    /// The Idempotency-Key's request created a customer that was erased since (410): its
    /// retry must not create the person again.
    #[error("the customer this request created was erased")]
    IdempotentCustomerErased,
    /// The Idempotency-Key was used before with a different request (422).
    #[error("idempotency key reused for a different request")]
    IdempotencyConflict,
    /// `If-Match` named a version that is not the current one (412).
    #[error("customer version does not match the precondition")]
    VersionMismatch,
    /// The database is down or overloaded (503).
    #[error("database unavailable")]
    Unavailable(#[source] StoreError),
    /// A bug or corrupted data (500).
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ApplicationError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => ApplicationError::EmailTaken,
            // Reaches here only if the key's record vanished between conflict and re-read
            // (it expired): worth retrying.
            StoreError::IdempotencyKeyTaken => ApplicationError::Unavailable(error),
            // A version conflict reaches here only when a write lost every retry to
            // concurrent writers of one customer: an overload worth retrying, not a bug.
            StoreError::Unavailable(_) | StoreError::VersionConflict => {
                ApplicationError::Unavailable(error)
            }
            StoreError::Other(_) | StoreError::Fenced => ApplicationError::Internal(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_map_to_meanings() {
        assert!(matches!(
            ApplicationError::from(StoreError::EmailTaken),
            ApplicationError::EmailTaken
        ));
        assert!(matches!(
            ApplicationError::from(StoreError::VersionConflict),
            ApplicationError::Unavailable(_)
        ));
        assert!(matches!(
            ApplicationError::from(StoreError::Other("corrupt".into())),
            ApplicationError::Internal(_)
        ));
    }
}
