//! The instance's background workers, under one supervisor (issue #30).
//!
//! Every task that runs beside the HTTP server — the relay, its lease, the orchestrator, the
//! read models, the replica watch, the live log of the SSE streams, the start-up probes — is
//! spawned here with a name and a [`Lifetime`]. A worker meant to run until stop that ends
//! before stop was signalled, by returning or by panicking, is a failed instance: it is
//! logged with its name, `/readyz` answers 503 naming it at once (the platform stops routing
//! requests here), and after [`FAILURE_DRAIN`] the instance stops as on SIGTERM, finishing
//! the requests in flight; `App::run_until_stopped` then returns [`WorkerFailed`] and `serve`
//! exits non-zero, so the platform restarts it. Restarting the process rather than the task:
//! a task that died left its state (a lease, a cursor, a half-read batch) in a shape only a
//! fresh start is known to handle, and a restart is what every orchestrator already does
//! well and reports. Workers that end by design (the start-up probes, the e-mail keys'
//! back-fill) are [`Lifetime::MayEnd`]; a panic of one is logged and fails nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};

/// How long a failed instance reports not ready before it stops: long enough for a
/// readiness probe (Kubernetes: every 10 s by default, failing after 3; a load balancer's
/// health check: seconds) to take it out of rotation, short enough that it is restarted
/// soon. Requests keep being served meanwhile.
pub const FAILURE_DRAIN: Duration = Duration::from_secs(5);

/// Whether a worker may end before the instance stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Runs until stop is signalled; ending earlier fails the instance.
    UntilStop,
    /// Does its job and ends (or ends at once where it has nothing to do).
    MayEnd,
}

/// The first worker that failed, for `/readyz`.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    failed: Mutex<Option<&'static str>>,
}

impl WorkerHealth {
    /// The name of the worker that failed, if one did.
    pub fn failed(&self) -> Option<&'static str> {
        self.failed.lock().ok().and_then(|failed| *failed)
    }

    /// Records `name` unless a worker already failed; whether it was the first.
    fn fail(&self, name: &'static str) -> bool {
        match self.failed.lock() {
            Ok(mut failed) if failed.is_none() => {
                *failed = Some(name);
                true
            }
            _ => false,
        }
    }
}

/// What `run_until_stopped` returns when a worker failed.
#[derive(Debug, thiserror::Error)]
#[error("the {worker} worker {how} before the instance was stopped")]
pub struct WorkerFailed {
    pub worker: &'static str,
    /// "panicked" or "ended".
    pub how: &'static str,
}

/// The workers of one instance.
pub struct Workers {
    tasks: JoinSet<()>,
    names: HashMap<Id, (&'static str, Lifetime)>,
    health: Arc<WorkerHealth>,
    /// Test hook: the worker of this name panics as it starts (see `Config::fail_worker`).
    fail: Option<String>,
}

impl Workers {
    pub fn new(health: Arc<WorkerHealth>, fail: Option<String>) -> Workers {
        Workers {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            health,
            fail,
        }
    }

    /// Runs `work` as the worker `name`.
    pub fn spawn(
        &mut self,
        name: &'static str,
        lifetime: Lifetime,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let fail = self.fail.as_deref() == Some(name);
        let handle = self.tasks.spawn(async move {
            if fail {
                panic!("test hook: the {name} worker fails (CUSTOMER_SERVICE_FAIL_WORKER)");
            }
            work.await;
        });
        self.names.insert(handle.id(), (name, lifetime));
    }

    /// Joins the workers as they end, until every one has (after `stop`). The first that
    /// fails (see the module's doc) makes `/readyz` answer 503 at once and sends `stop`
    /// after `drain`; it is the error returned.
    pub async fn supervise(
        mut self,
        stop: Arc<watch::Sender<bool>>,
        drain: Duration,
    ) -> Result<(), WorkerFailed> {
        let mut failure = None;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            let (id, panic) = match joined {
                Ok((id, ())) => (id, None),
                Err(error) => {
                    let id = error.id();
                    let panic = error
                        .try_into_panic()
                        .ok()
                        .map(|payload| panic_message(payload.as_ref()));
                    (id, panic)
                }
            };
            let Some((name, lifetime)) = self.names.remove(&id) else {
                continue;
            };
            let stopping = *stop.borrow();
            let how = match (&panic, lifetime) {
                (Some(message), Lifetime::UntilStop) => {
                    tracing::error!(worker = name, panic = %message, "a worker panicked");
                    "panicked"
                }
                (Some(message), Lifetime::MayEnd) => {
                    tracing::error!(worker = name, panic = %message, "a worker panicked");
                    continue;
                }
                (None, Lifetime::UntilStop) if !stopping => {
                    tracing::error!(
                        worker = name,
                        "a worker ended before the instance was stopped"
                    );
                    "ended"
                }
                (None, _) => {
                    tracing::debug!(worker = name, "worker ended");
                    continue;
                }
            };
            if stopping || !self.health.fail(name) {
                continue;
            }
            tracing::error!(
                worker = name,
                drain_secs = drain.as_secs_f64(),
                "not ready from now on; stopping after the drain, to be restarted"
            );
            failure = Some(WorkerFailed { worker: name, how });
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(drain).await;
                stop.send_replace(true);
            });
        }
        failure.map_or(Ok(()), Err)
    }
}

/// A panic's message, when it is text.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not text)".to_owned())
}

/// Returns once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs `work` until `shutdown` turns true (for workers that do not watch it themselves).
pub async fn until_stopped(work: impl Future<Output = ()>, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        () = work => {}
        () = stopped(&mut shutdown) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(fail: Option<&str>) -> (Workers, Arc<WorkerHealth>, Arc<watch::Sender<bool>>) {
        let health = Arc::new(WorkerHealth::default());
        let workers = Workers::new(health.clone(), fail.map(str::to_owned));
        (workers, health, Arc::new(watch::channel(false).0))
    }

    fn forever(stop: &Arc<watch::Sender<bool>>) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = stop.subscribe();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }

    #[tokio::test]
    async fn workers_that_end_at_stop_or_by_design_fail_nothing() {
        let (mut workers, health, stop) = setup(None);
        workers.spawn("relay", Lifetime::UntilStop, forever(&stop));
        workers.spawn("probe", Lifetime::MayEnd, async {});
        workers.spawn("panicky probe", Lifetime::MayEnd, async { panic!("boom") });
        let supervised = tokio::spawn(workers.supervise(stop.clone(), Duration::ZERO));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(health.failed(), None);
        assert!(!*stop.borrow());
        stop.send_replace(true);
        assert!(supervised.await.unwrap().is_ok());
        assert_eq!(health.failed(), None);
    }

    #[tokio::test]
    async fn a_worker_that_ends_early_fails_the_instance_and_stops_it_after_the_drain() {
        let (mut workers, health, stop) = setup(None);
        workers.spawn("relay", Lifetime::UntilStop, forever(&stop));
        workers.spawn("lease", Lifetime::UntilStop, async {});
        let supervised = tokio::spawn(workers.supervise(stop.clone(), Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(health.failed(), Some("lease"));
        assert!(!*stop.borrow(), "stopped before the drain");
        let failed = supervised.await.unwrap().unwrap_err();
        assert!(*stop.borrow());
        assert_eq!(
            failed.to_string(),
            "the lease worker ended before the instance was stopped"
        );
    }

    #[tokio::test]
    async fn the_test_hook_makes_the_named_worker_panic() {
        let (mut workers, health, stop) = setup(Some("orchestrator"));
        workers.spawn("relay", Lifetime::UntilStop, forever(&stop));
        workers.spawn("orchestrator", Lifetime::UntilStop, forever(&stop));
        let failed = workers
            .supervise(stop.clone(), Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(health.failed(), Some("orchestrator"));
        assert_eq!(failed.how, "panicked");
        assert_eq!(
            failed.to_string(),
            "the orchestrator worker panicked before the instance was stopped"
        );
    }
}
