//! `customer-service projections …`: the read models' state, and rebuilds carried out by the
//! running service (the command asks through the database, so it works from any host that
//! reaches it).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;

use crate::application::{self, Clock, ReadModels, SystemClock};
use crate::config::Config;
use crate::startup::connect_existing_store;
use crate::store::{SqlStore, READ_MODELS};

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// List the read models: serving generation, log position, lag, rebuild under way.
    #[command(alias = "list")]
    Status,
    /// Rebuild a read model from position 0 beside the serving copy, which keeps answering
    /// until the new one has caught up (blue/green). Carried out by the running service;
    /// this command waits for it.
    Rebuild {
        /// The read model (`stats`).
        model: String,
        /// How long to wait for the rebuild, in seconds (it goes on if this gives up).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
}

pub async fn run(config: Config, command: ProjectionsCommand) -> anyhow::Result<()> {
    let store = connect_existing_store(&config).await?;
    let result = match command {
        ProjectionsCommand::Status => status(&store).await,
        ProjectionsCommand::Rebuild { model, wait } => {
            rebuild(&store, &model, Duration::from_secs(wait)).await
        }
    };
    store.close().await;
    result
}

async fn status(store: &SqlStore) -> anyhow::Result<()> {
    let states = application::projection_states(store, store, SystemClock.now())
        .await
        .context("reading the read models' state")?;
    if states.is_empty() {
        println!("no read model has started yet: the service starts them when it runs");
        return Ok(());
    }
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}  rebuild",
        "model", "generation", "position", "behind", "lag ms"
    );
    for (state, lag) in states {
        let rebuild = match (state.rebuild, state.rebuild_requested) {
            (Some((generation, position)), _) => {
                format!("generation {generation} at position {position}")
            }
            (None, true) => "requested".to_owned(),
            (None, false) => "-".to_owned(),
        };
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>10}  {rebuild}",
            state.model, state.generation, state.position, lag.events, lag.ms
        );
    }
    Ok(())
}

/// How often the wait looks at the rebuild's progress.
const PROGRESS: Duration = Duration::from_millis(500);
/// How long a request may wait for a running service to pick it up before the command says
/// that none seems to run.
const PICK_UP: Duration = Duration::from_secs(15);

async fn rebuild(store: &SqlStore, model: &str, wait: Duration) -> anyhow::Result<()> {
    if !READ_MODELS.contains(&model) {
        anyhow::bail!(
            "there is no read model {model:?}; the read models are: {}",
            READ_MODELS.join(", ")
        );
    }
    let before = application::projection_states(store, store, SystemClock.now())
        .await
        .context("reading the read models' state")?
        .into_iter()
        .find(|(state, _)| state.model == model)
        .map(|(state, _)| state.generation);
    let Some(before) = before else {
        anyhow::bail!(
            "read model {model} has not started yet: start the service, which builds it from \
             the event log on its own"
        );
    };
    if !store
        .request_rebuild(model)
        .await
        .context("asking for the rebuild")?
    {
        anyhow::bail!("read model {model} is not registered in this database");
    }
    println!("rebuild of {model} requested (serving: generation {before})");
    let started = Instant::now();
    let mut reported = None;
    loop {
        tokio::time::sleep(PROGRESS).await;
        let state = application::projection_states(store, store, SystemClock.now())
            .await
            .context("reading the rebuild's progress")?
            .into_iter()
            .find(|(state, _)| state.model == model);
        let Some((state, lag)) = state else { continue };
        if state.generation != before && state.rebuild.is_none() {
            println!(
                "{model} rebuilt: generation {} serves, at position {}",
                state.generation, state.position
            );
            return Ok(());
        }
        if let Some((generation, position)) = state.rebuild {
            if reported != Some(position) {
                println!(
                    "generation {generation}: position {position} of {}",
                    lag.position + lag.events
                );
                reported = Some(position);
            }
        } else if state.rebuild_requested && started.elapsed() > PICK_UP {
            println!(
                "no running service has picked the request up in {} s; the next one to start \
                 (or to look) will carry it out",
                PICK_UP.as_secs()
            );
            return Ok(());
        }
        if started.elapsed() > wait {
            println!(
                "still rebuilding after {} s; it goes on in the service (see `projections status`)",
                wait.as_secs()
            );
            return Ok(());
        }
    }
}
