//! Translating sqlx errors into [`StoreError`] meanings, so no layer above sees the driver.

use sqlx::error::ErrorKind;

use crate::application::StoreError;

/// PostgreSQL SQLSTATEs that mean "the server cannot serve right now": connection
/// exceptions (class 08), shutdowns (57P0x), too many connections, and the transient
/// serialization and deadlock failures.
fn is_transient_postgres(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || matches!(code, "53300" | "40001" | "40P01")
}

/// SQLite primary result codes for a locked database (BUSY = 5, LOCKED = 6); extended codes
/// carry the primary one in their low byte.
fn is_transient_sqlite(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

/// MySQL error numbers that mean "try again": a lock wait timeout (1205), a deadlock (1213;
/// also SQLSTATE 40001, caught above), too many connections (1040), the server shutting
/// down (1053) or read-only (1290, 1836: a replica or a failover in progress).
fn is_transient_mysql(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some_and(|e| matches!(e.number(), 1040 | 1053 | 1205 | 1213 | 1290 | 1836))
}

/// Any sqlx error: connection trouble is `Unavailable`, the rest `Other`.
pub(super) fn classify(error: sqlx::Error) -> StoreError {
    let transient = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            db.code()
                .is_some_and(|code| is_transient_postgres(&code) || is_transient_sqlite(&code))
                || is_transient_mysql(db.as_ref())
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Other(Box::new(error))
    }
}

/// An error of a statement that writes the customers row, whose only unique key besides the
/// primary key is the e-mail.
pub(super) fn classify_customer_write(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
            StoreError::EmailTaken
        }
        _ => classify(error),
    }
}

/// An error claiming an idempotency key: its primary key taken means another request has
/// (or is storing) it.
pub(super) fn classify_idempotency_claim(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
            StoreError::IdempotencyKeyTaken
        }
        _ => classify(error),
    }
}

/// An error appending an event: a taken (customer, sequence) pair means a concurrent write
/// already used that number. PostgreSQL names the constraint; SQLite names the columns;
/// MySQL names the index in its message.
pub(super) fn classify_append(error: sqlx::Error) -> StoreError {
    let sequence_taken = match &error {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
            db.constraint() == Some("customer_events_sequence_key")
                || db.message().contains("customer_events.sequence")
                || db.message().contains("'customer_events_sequence_key'")
        }
        _ => false,
    };
    if sequence_taken {
        StoreError::VersionConflict
    } else {
        classify(error)
    }
}
