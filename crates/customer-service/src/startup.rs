//! [`App`]: connect, migrate, bind, serve — the one start-up path shared by `main` and the
//! tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::application::SystemClock;
use crate::config::Config;
use crate::http::{self, AppState, RouterOptions};
use crate::store::{SqlStore, StoreOptions};

/// A built application: database connected and migrated, listener bound.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    store: Arc<SqlStore>,
}

/// Connects to the configured database (without migrating).
pub async fn connect_store(config: &Config) -> anyhow::Result<SqlStore> {
    let options = StoreOptions {
        url: config.database.url.clone(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
    };
    SqlStore::connect(&options)
        .await
        .context("connecting to the database (DATABASE_URL)")
}

impl App {
    /// Connects the store, applies pending migrations and binds `HOST:PORT` (port 0: any
    /// free port).
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        let started_at = Instant::now();
        let store = Arc::new(connect_store(config).await?);
        store
            .migrate()
            .await
            .context("applying database migrations")?;
        let address = SocketAddr::new(config.http.host, config.http.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} (PORT / HOST)"))?;
        let state = AppState {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            started_at,
        };
        let options = RouterOptions {
            cors_origins: config.http.cors_origins.clone(),
            request_timeout: config.http.request_timeout,
            body_limit_bytes: config.http.body_limit_bytes,
        };
        Ok(App {
            listener,
            router: http::router(state, &options),
            store,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// The store, for tests and CLI commands that inspect the event log.
    pub fn store(&self) -> Arc<SqlStore> {
        self.store.clone()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (each is
    /// bounded by the request timeout) and closes the database pools.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        self.store.close().await;
        served
    }
}
