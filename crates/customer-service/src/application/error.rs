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
            StoreError::Unavailable(_) => ApplicationError::Unavailable(error),
            StoreError::VersionConflict | StoreError::Other(_) => ApplicationError::Internal(error),
        }
    }
}
