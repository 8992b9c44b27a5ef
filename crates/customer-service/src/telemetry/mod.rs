//! Logging and tracing setup: one subscriber with a log layer (JSON or human-readable,
//! filtered by `RUST_LOG`) and, when an OTLP endpoint is configured, a trace export layer
//! with its own filter (the request spans and their children, whatever `RUST_LOG` says).

mod otlp;

pub use otlp::{RunningExporter, TraceExporter, TraceParent};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber writing logs to `writer`. Call once, from `main` (or a
/// test that wants logs). With trace export configured, returns the exporter, to be started
/// inside the async runtime ([`TraceExporter::start`]).
pub fn init<W>(config: &LogConfig, writer: W) -> anyhow::Result<Option<TraceExporter>>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|e| anyhow::anyhow!("invalid RUST_LOG {:?}: {e}", config.filter))?;
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs = match config.format {
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => logs.boxed(),
    };
    let (traces, exporter) = match &config.otlp {
        Some(otlp) => {
            let (layer, exporter) = otlp::pipeline(otlp.clone());
            (
                Some(layer.with_filter(otlp::spans_of_this_crate())),
                Some(exporter),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(exporter)
}
