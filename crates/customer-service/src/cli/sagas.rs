//! `customer-service sagas …`: list sagas, and an operator's retry or cancel. The command
//! writes through the database like the service does (compare-and-set on the saga, its
//! events in the same transaction); the running service's relay publishes the requests.

use anyhow::Context;
use clap::Subcommand;

use crate::application::{self, Clock, SagaActionError, SystemClock};
use crate::config::Config;
use crate::domain::saga::{Saga, SagaState, StepState};
use crate::startup::{connect_existing_store, saga_definitions};

#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// List sagas, newest first: state, deadline, each participant's state.
    List {
        /// Only sagas in this state.
        #[arg(long, value_parser = ["open", "failed", "completed", "cancelled"])]
        state: Option<String>,
        /// At most this many (1–10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Ask every participant that has not confirmed again (with a new request token), and
    /// give the saga a new deadline (ERASURE_DEADLINE from now). For an open or failed saga.
    Retry {
        /// The saga's id.
        id: i64,
    },
    /// End an open or failed saga as cancelled; answers to it are refused from then on.
    Cancel {
        /// The saga's id.
        id: i64,
        /// Why (kept in the saga's record).
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
    },
}

pub async fn run(config: Config, command: SagasCommand) -> anyhow::Result<()> {
    let store = connect_existing_store(&config).await?;
    let now = SystemClock.now();
    let result = match command {
        SagasCommand::List { state, limit } => list(&store, state.as_deref(), limit).await,
        SagasCommand::Retry { id } => {
            let sagas = saga_definitions(&config);
            match application::retry_saga(&store, &sagas, id, now).await {
                Ok(saga) => {
                    let asked: Vec<&str> = saga
                        .steps
                        .iter()
                        .filter(|s| s.state == StepState::Requested)
                        .map(|s| s.name.as_str())
                        .collect();
                    println!(
                        "saga {id}: asked {} again; new deadline {}",
                        asked.join(", "),
                        saga.deadline.to_iso()
                    );
                    Ok(())
                }
                Err(error @ SagaActionError::UnknownKind { .. }) => Err(anyhow::Error::new(error)
                    .context("set ERASURE_PARTICIPANTS (and REDIS_URL) as the service has them")),
                Err(error) => Err(error.into()),
            }
        }
        SagasCommand::Cancel { id, reason } => {
            let reason = reason.trim();
            if reason.is_empty() {
                Err(anyhow::anyhow!("--reason must not be empty"))
            } else {
                application::cancel_saga(&store, id, reason, now)
                    .await
                    .map(|_| println!("saga {id} cancelled"))
                    .map_err(anyhow::Error::new)
            }
        }
    };
    store.close().await;
    result
}

async fn list(
    store: &crate::store::SqlStore,
    state: Option<&str>,
    limit: i64,
) -> anyhow::Result<()> {
    let state = match state {
        None => None,
        Some(raw) => Some(SagaState::parse(raw).ok_or_else(|| {
            anyhow::anyhow!("--state must be one of open, failed, completed, cancelled")
        })?),
    };
    if !(1..=10_000).contains(&limit) {
        anyhow::bail!("--limit must be from 1 to 10000");
    }
    let page = application::list_sagas(store, state, None, limit)
        .await
        .context("reading the sagas")?;
    if page.sagas.is_empty() {
        println!("no sagas");
        return Ok(());
    }
    println!(
        "{:>6}  {:<8} {:>9}  {:<9}  {:<24}  participants",
        "id", "kind", "customer", "state", "deadline"
    );
    for saga in &page.sagas {
        println!(
            "{:>6}  {:<8} {:>9}  {:<9}  {:<24}  {}{}",
            saga.id,
            saga.kind,
            saga.subject_id,
            saga.state.as_str(),
            saga.deadline.to_iso(),
            participants(saga),
            saga.reason
                .as_deref()
                .map_or_else(String::new, |r| format!("  ({r})")),
        );
    }
    if page.next_before.is_some() {
        println!("… more: raise --limit");
    }
    Ok(())
}

/// `billing confirmed, email requested ×3`.
fn participants(saga: &Saga) -> String {
    saga.steps
        .iter()
        .map(|step| {
            if step.state == StepState::Requested && step.attempts > 1 {
                format!("{} requested ×{}", step.name, step.attempts)
            } else {
                format!("{} {}", step.name, step.state.as_str())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
