//! Leadership: exactly one instance publishes at a time, and a leader that stops responding
//! is replaced within seconds.
//!
//! On PostgreSQL a [`LeaseKeeper`] holds the `relay_lease` row (see `store/lease.rs`): a
//! heartbeat task renews it every third of its time to live, on its own connection, whatever
//! the relay is doing (a sink outage keeps the lease). The relay publishes only while the
//! lease is valid by this process's own clock — measured from when the last renewal was
//! *sent*, so it lapses here before the database can give it to another instance — and under
//! the lease's epoch, which fences it: the Redis script and the mark refuse an epoch that has
//! been superseded, so a leader frozen mid-batch that wakes up after a takeover publishes and
//! marks nothing. SQLite is single-process: always the leader, unfenced.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::application::RelayLease;

/// Who may publish (and run the sagas: the orchestrator shares the relay's lease).
#[derive(Clone)]
pub enum Leadership {
    /// The only possible publisher (SQLite).
    Sole,
    /// Whoever holds the shared lease.
    Lease(Arc<LeaseKeeper>),
}

impl Leadership {
    /// `Some(fence)` while this instance may publish: the epoch to fence with (none for
    /// [`Leadership::Sole`]).
    pub fn term(&self) -> Option<Option<i64>> {
        match self {
            Leadership::Sole => Some(None),
            Leadership::Lease(keeper) => keeper.current().map(Some),
        }
    }

    /// Waits up to `at_most` for leadership to change.
    pub async fn changed(&self, at_most: Duration) {
        if let Leadership::Lease(keeper) = self {
            let _ = tokio::time::timeout(at_most, keeper.changed.notified()).await;
        } else {
            tokio::time::sleep(at_most).await;
        }
    }

    /// This instance was fenced: it lost the lease without noticing yet.
    pub fn lost(&self) {
        if let Leadership::Lease(keeper) = self {
            keeper.drop_lease("a newer leader fenced this one off");
        }
    }

    /// Gives the lease up, if held (at shutdown, after the last batch).
    pub async fn release(&self) {
        if let Leadership::Lease(keeper) = self {
            keeper.release().await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// By this process's monotonic clock.
    valid_until: Instant,
}

/// Keeps (or keeps trying to take) the relay lease.
pub struct LeaseKeeper {
    lease: Arc<dyn RelayLease>,
    ttl: Duration,
    /// How often a non-leader tries to take the lease.
    retry: Duration,
    held: Mutex<Option<Held>>,
    /// Notified when this instance becomes leader.
    changed: Notify,
}

impl LeaseKeeper {
    pub fn new(lease: Arc<dyn RelayLease>, ttl: Duration, retry: Duration) -> LeaseKeeper {
        LeaseKeeper {
            lease,
            ttl,
            retry,
            held: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    /// The epoch of a lease that is valid now.
    pub fn current(&self) -> Option<i64> {
        let held = (*self.held.lock().ok()?)?;
        (Instant::now() < held.valid_until).then_some(held.epoch)
    }

    fn held(&self) -> Option<Held> {
        self.held.lock().ok().and_then(|held| *held)
    }

    fn set(&self, held: Option<Held>) {
        if let Ok(mut slot) = self.held.lock() {
            *slot = held;
        }
    }

    fn drop_lease(&self, why: &str) {
        if self.held().is_some() {
            tracing::warn!(reason = why, "lost the relay leader lease");
            self.set(None);
        }
    }

    /// The heartbeat: renews the lease while held, tries to take it otherwise, until
    /// `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let attempt_timeout = self.ttl / 3;
        let mut failing = false;
        while !*stop.borrow() {
            let sent = Instant::now();
            let valid_until = sent + self.ttl.mul_f64(0.9);
            match self.held() {
                Some(held) => {
                    match tokio::time::timeout(
                        attempt_timeout,
                        self.lease.renew(held.epoch, self.ttl),
                    )
                    .await
                    {
                        Ok(Ok(true)) => {
                            failing = false;
                            self.set(Some(Held {
                                epoch: held.epoch,
                                valid_until,
                            }));
                        }
                        Ok(Ok(false)) => self.drop_lease("another instance took it over"),
                        failed => {
                            if !failing {
                                tracing::warn!(
                                    timed_out = failed.is_err(),
                                    "renewing the relay leader lease failed; retrying"
                                );
                                failing = true;
                            }
                            if failed.is_err() {
                                self.lease.abandon_connection().await;
                            }
                            if Instant::now() >= held.valid_until {
                                self.drop_lease("it could not be renewed in time");
                            }
                        }
                    }
                }
                None => {
                    match tokio::time::timeout(attempt_timeout, self.lease.try_acquire(self.ttl))
                        .await
                    {
                        Ok(Ok(Some(epoch))) => {
                            tracing::info!(relay.epoch = epoch, "became the relay leader");
                            self.set(Some(Held { epoch, valid_until }));
                            self.changed.notify_waiters();
                        }
                        Ok(Ok(None)) | Ok(Err(_)) => {}
                        Err(_) => self.lease.abandon_connection().await,
                    }
                }
            }
            let pause = if self.held().is_some() {
                self.ttl / 3
            } else {
                self.retry
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn release(&self) {
        if let Some(held) = self.held() {
            self.set(None);
            let _ = tokio::time::timeout(self.ttl / 3, self.lease.release(held.epoch)).await;
        }
    }
}
