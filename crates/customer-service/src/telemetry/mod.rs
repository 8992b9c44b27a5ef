//! Logging and tracing: one subscriber with a log layer (JSON or human-readable, filtered by
//! `RUST_LOG`) and, when an OTLP endpoint is configured, trace export on the OpenTelemetry SDK:
//! `tracing-opentelemetry` turns the request spans and their children into OpenTelemetry
//! spans, and the SDK's batch processor hands them to its OTLP exporter (HTTP/protobuf,
//! HTTP/JSON or gRPC, TLS for `https://` endpoints).
//!
//! - A trace starts at an HTTP request (the request context's span): it continues the
//!   caller's trace when the request has a valid W3C `traceparent`, else starts a new one,
//!   and the answer carries the request span's own `traceparent`. Spans opened inside it
//!   (`create_customer`, `store.insert`, …) are its children. Spans outside any request (the
//!   relay's polling) start no trace: they would be thousands of one-span traces a minute.
//! - The sampler decides once per trace, at its root (`OTEL_TRACES_SAMPLER`).
//! - Nothing here can slow a request: the batch processor queues finished spans in a bounded
//!   queue and exports them from its own thread; when the queue is full (no collector, or one
//!   too slow) spans are dropped, never waited for.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, OtlpConfig, OtlpProtocol};

/// Finished spans waiting for export; beyond this they are dropped.
const QUEUE: usize = 8192;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How often a partial batch is sent.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long one export (connect, send, answer) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The running trace export; [`TraceExport::shutdown`] sends what is left.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Flushes the queued spans and stops the exporter. Blocks (at most the export timeout):
    /// call it outside the async runtime, before the runtime is dropped.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("customer-service: trace export did not shut down cleanly: {error}");
        }
    }
}

/// Installs the global subscriber writing logs to `writer`, with ANSI colours if `colour`
/// (a terminal). Call once, from `main` (or a test
/// that wants logs), inside the async runtime's context (the gRPC exporter's channel is
/// spawned on it). With `export_traces` and an OTLP endpoint configured, exports request
/// traces and returns the export to shut down at exit.
pub fn init<W>(
    config: &LogConfig,
    export_traces: bool,
    colour: bool,
    writer: W,
) -> anyhow::Result<Option<TraceExport>>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|e| anyhow::anyhow!("invalid RUST_LOG {:?}: {e}", config.filter))?;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colour);
    let logs = match config.format {
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => logs.boxed(),
    };
    let (traces, export) = match config.otlp.as_ref().filter(|_| export_traces) {
        Some(otlp) => {
            let provider = provider(otlp)?;
            let tracer = provider.tracer("customer-service");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_filter(request_spans());
            (Some(layer), Some(TraceExport { provider }))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(export)
}

/// The spans exported: this crate's request spans (at any level, whatever `RUST_LOG` says)
/// and the spans opened inside one. A span's parent is the current span when it is created;
/// with this per-layer filter, "current" means the innermost span this filter let through.
fn request_spans<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    dynamic_filter_fn(|metadata, context| {
        metadata.is_span()
            && metadata.target().starts_with("customer_service")
            && (metadata.name() == "request" || context.lookup_current().is_some())
    })
}

fn provider(config: &OtlpConfig) -> anyhow::Result<SdkTracerProvider> {
    // reqwest and tonic use rustls; ring is the one provider built in (as for Redis).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => {
            // The configuration checked the names and values: none is skipped here.
            let headers = config
                .headers
                .iter()
                .filter_map(|(key, value)| {
                    Some((
                        axum::http::HeaderName::from_bytes(key.as_bytes()).ok()?,
                        axum::http::HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect();
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&config.endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .with_metadata(metadata);
            if config.endpoint.starts_with("https://") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_native_roots(),
                );
            }
            builder.build()
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => SpanExporter::builder()
            .with_http()
            .with_protocol(if config.protocol == OtlpProtocol::HttpJson {
                opentelemetry_otlp::Protocol::HttpJson
            } else {
                opentelemetry_otlp::Protocol::HttpBinary
            })
            .with_endpoint(&config.endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(config.headers.iter().cloned().collect::<HashMap<_, _>>())
            .build(),
    }
    .map_err(|e| anyhow::anyhow!("setting up OTLP trace export: {e}"))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(QUEUE)
                .with_max_export_batch_size(BATCH)
                .with_scheduled_delay(INTERVAL)
                .build(),
        )
        .build();
    let ratio = config.sampler.ratio;
    let root = if ratio >= 1.0 {
        Sampler::AlwaysOn
    } else if ratio <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(ratio)
    };
    let sampler = if config.sampler.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    };
    let resource = Resource::builder_empty()
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(key, value)| opentelemetry::KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

/// The W3C trace context of a request's `traceparent` (and `tracestate`), if valid.
pub fn caller_context(headers: &axum::http::HeaderMap) -> Option<opentelemetry::Context> {
    headers.get("traceparent")?;
    let context =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    context.span().span_context().is_valid().then_some(context)
}

/// Sets the caller's context as the span's parent (if trace export is on: else no-op).
pub fn continue_trace(span: &tracing::Span, caller: opentelemetry::Context) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let _ = span.set_parent(caller);
}

/// Writes the span's own `traceparent` into the answer's headers (if it is exported).
pub fn answer_trace(span: &tracing::Span, headers: &mut axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new()
            .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    }
}
