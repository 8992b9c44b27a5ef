//! Where a read may be served from (issue #18, read replicas). The HTTP routes that may read
//! a replica run their use case inside [`reading`] with what they read; everything else —
//! the reads a write decides on, the relay, the read models, the sagas, the tools — runs
//! outside any scope and reads the primary. The store looks the scope up (`current`) when it
//! picks a connection: a replica only for a scope that allows one, and only while the replica
//! is up, not lagging, and has replayed this instance's last write of that customer.

use std::future::Future;

tokio::task_local! {
    static READ_SCOPE: ReadScope;
}

/// What a read is about, for the choice between the primary and a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    /// One customer by id: a replica once it has this instance's writes of the customer.
    Customer(i64),
    /// One customer by (normalised) e-mail: likewise, by its e-mail.
    Email(String),
    /// Lists, counts, the event log: a replica, lagging by at most its allowed lag.
    Any,
    /// The client asked for the primary (`Cache-Control: no-cache`).
    Primary,
}

/// Runs `read` with `scope` as the scope of its reads.
pub async fn reading<F: Future>(scope: ReadScope, read: F) -> F::Output {
    READ_SCOPE.scope(scope, read).await
}

/// The scope of the running read, if any.
pub fn current() -> Option<ReadScope> {
    READ_SCOPE.try_with(Clone::clone).ok()
}
