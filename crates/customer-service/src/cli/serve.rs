//! `customer-service serve` (the default): run the HTTP service until SIGINT or SIGTERM.

use anyhow::Context;

use crate::config::Config;
use crate::startup::App;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // One line a reader can take in; every setting at debug level (RUST_LOG=debug).
    tracing::info!(
        database = %crate::store::describe_url(&config.database.url),
        port = config.http.port,
        redis = config.redis.is_some(),
        nats = config.nats.is_some(),
        read_models = config.read_models,
        "starting customer-service"
    );
    tracing::debug!(config = ?config, "settings");
    // Each connection is a descriptor: thousands of SSE clients need more than the usual
    // default soft limit of 1,024.
    match crate::http::raise_open_file_limit() {
        Some(limit) if limit < config.http.max_connections as u64 + 256 => tracing::warn!(
            open_files = limit,
            http.max_connections = config.http.max_connections,
            "the open-file limit is below HTTP_MAX_CONNECTIONS: raise the hard limit (ulimit -Hn)"
        ),
        Some(_) => {}
        None => tracing::warn!("could not read or raise the open-file limit"),
    }
    let app = App::build(&config).await?;
    app.run_until_stopped(shutdown_signal())
        .await
        .context("server stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
