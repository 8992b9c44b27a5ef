//! OTLP trace export: a `tracing` layer that turns this crate's spans into OpenTelemetry
//! spans, and a background task that posts them in batches to a collector as OTLP/HTTP with
//! JSON bodies (`POST <endpoint>/v1/traces`).
//!
//! - A trace starts at an HTTP request (the request context's span, which carries
//!   `http.method` and `http.route`): it continues the caller's trace when the request has a
//!   valid W3C `traceparent`, else starts a new one. Spans opened inside it (`create_customer`,
//!   `store.insert`, …) are its children. Spans outside any request (the relay's polling)
//!   start no trace: they would be thousands of one-span traces a minute.
//! - The sampler decides once per trace, at its root (see [`Sampler`]).
//! - Nothing here can slow a request: finished spans go into a bounded queue; when it is
//!   full (no collector, or one too slow) spans are dropped and counted, never waited for.
//!
//! Hand-written rather than the OpenTelemetry SDK: the SDK, its OTLP exporter and the
//! tracing bridge are three version-locked crates with a protobuf/gRPC stack behind them,
//! for what is here a span record, a queue and one POST a second. The cost is that only
//! `http://` collectors are reached (no TLS); the usual deployment exports to an agent or
//! collector beside the service, which forwards over TLS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::{OtlpConfig, Sampler};

/// Finished spans waiting for export; beyond this they are dropped.
const QUEUE: usize = 8192;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How often a partial batch is sent.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long one export (connect, send, answer) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last export.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// OTLP span kinds.
const KIND_INTERNAL: u8 = 1;
const KIND_SERVER: u8 = 2;
/// OTLP status codes.
const STATUS_ERROR: u8 = 2;

/// The trace export layer and the exporter that its spans go to.
pub(crate) fn pipeline(config: OtlpConfig) -> (OtlpLayer, TraceExporter) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let layer = OtlpLayer {
        queue: sender,
        sampler: config.sampler,
        dropped: dropped.clone(),
    };
    let exporter = TraceExporter {
        receiver,
        config,
        dropped,
    };
    (layer, exporter)
}

/// The spans the layer sees: this crate's, at any level (independent of `RUST_LOG`).
pub(crate) fn spans_of_this_crate() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata| metadata.is_span() && metadata.target().starts_with("customer_service"))
}

/// A W3C trace context: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub parent_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` header; `None` if it is not a valid one (then a request
    /// starts a new trace, as the W3C recommendation says).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        // Version 00 has exactly four parts; later versions may append more.
        if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let parent_id = u64::from_str_radix(parent, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(TraceParent {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }
}

impl Sampler {
    /// Whether a trace with this id is kept by the ratio: its low 64 bits below the
    /// ratio's share of the range, so every service that sees the id decides alike.
    fn keeps(&self, trace_id: u128) -> bool {
        if self.ratio >= 1.0 {
            return true;
        }
        let bound = (self.ratio * u64::MAX as f64) as u64;
        (trace_id as u64) < bound
    }

    fn decide(&self, remote: Option<TraceParent>, trace_id: u128) -> bool {
        match remote {
            Some(parent) if self.parent_based => parent.sampled,
            _ => self.keeps(trace_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum AttributeValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl AttributeValue {
    fn to_otlp(&self) -> Value {
        match self {
            AttributeValue::Str(s) => json!({ "stringValue": s }),
            // OTLP/JSON writes 64-bit integers as strings.
            AttributeValue::Int(i) => json!({ "intValue": i.to_string() }),
            AttributeValue::Bool(b) => json!({ "boolValue": b }),
            AttributeValue::Double(d) => json!({ "doubleValue": d }),
        }
    }
}

/// The fields of a span, as OTLP attributes.
#[derive(Default)]
struct Fields {
    attributes: Vec<(&'static str, AttributeValue)>,
    traceparent: Option<String>,
}

impl Fields {
    fn set(&mut self, field: &Field, value: AttributeValue) {
        let name = match field.name() {
            "traceparent" => {
                if let AttributeValue::Str(s) = value {
                    self.traceparent = Some(s);
                }
                return;
            }
            // The request span's names, as OpenTelemetry's HTTP conventions spell them.
            "http.method" => "http.request.method",
            name => name,
        };
        match self.attributes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => *slot = value,
            None => self.attributes.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find_map(|(n, v)| (*n == name).then_some(v))
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, AttributeValue::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, AttributeValue::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.set(field, AttributeValue::Int(value)),
            Err(_) => self.set(field, AttributeValue::Str(value.to_string())),
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, AttributeValue::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, AttributeValue::Double(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, AttributeValue::Str(format!("{value:?}")));
    }
}

/// What the layer keeps in a span's extensions while it is open.
struct SpanState {
    trace_id: u128,
    span_id: u64,
    parent_id: Option<u64>,
    sampled: bool,
    server: bool,
    start: SystemTime,
    fields: Fields,
}

/// A span ready for export.
#[derive(Debug)]
pub(crate) struct FinishedSpan {
    trace_id: u128,
    span_id: u64,
    parent_id: Option<u64>,
    name: String,
    kind: u8,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(&'static str, AttributeValue)>,
    error: bool,
}

pub(crate) struct OtlpLayer {
    queue: mpsc::Sender<FinishedSpan>,
    sampler: Sampler,
    dropped: Arc<AtomicU64>,
}

fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let inherited = span.parent().and_then(|parent| {
            parent
                .extensions()
                .get::<SpanState>()
                .map(|p| (p.trace_id, p.span_id, p.sampled))
        });
        // A span of an unsampled trace keeps only its ids (for its children).
        let mut fields = Fields::default();
        if inherited.is_none_or(|(_, _, sampled)| sampled) {
            attrs.record(&mut fields);
        }
        let server = fields.get("http.route").is_some();
        let (trace_id, parent_id, sampled) = match inherited {
            Some((trace_id, parent_id, sampled)) => (trace_id, Some(parent_id), sampled),
            None => {
                let remote = fields.traceparent.as_deref().and_then(TraceParent::parse);
                let trace_id = remote.map_or_else(|| fastrand::u128(1..), |r| r.trace_id);
                // Only requests start traces.
                let sampled = server && self.sampler.decide(remote, trace_id);
                (trace_id, remote.map(|r| r.parent_id), sampled)
            }
        };
        span.extensions_mut().insert(SpanState {
            trace_id,
            span_id: new_span_id(),
            parent_id,
            sampled,
            server,
            start: SystemTime::now(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(state) = extensions.get_mut::<SpanState>() {
            if state.sampled {
                values.record(&mut state.fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else {
            return;
        };
        if !state.sampled {
            return;
        }
        let status = match state.fields.get("http.response.status_code") {
            Some(AttributeValue::Int(status)) => Some(*status),
            _ => None,
        };
        let name = match (
            state.server,
            state.fields.get("http.request.method"),
            state.fields.get("http.route"),
        ) {
            (true, Some(AttributeValue::Str(method)), Some(AttributeValue::Str(route))) => {
                format!("{method} {route}")
            }
            _ => span.name().to_owned(),
        };
        let finished = FinishedSpan {
            trace_id: state.trace_id,
            span_id: state.span_id,
            parent_id: state.parent_id,
            name,
            kind: if state.server {
                KIND_SERVER
            } else {
                KIND_INTERNAL
            },
            start: state.start,
            end: SystemTime::now(),
            attributes: state.fields.attributes,
            error: status.is_some_and(|s| s >= 500),
        };
        if self.queue.try_send(finished).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Receives finished spans; [`TraceExporter::start`] posts them from a task.
pub struct TraceExporter {
    receiver: mpsc::Receiver<FinishedSpan>,
    config: OtlpConfig,
    dropped: Arc<AtomicU64>,
}

/// The export task; [`RunningExporter::shutdown`] sends what is left and stops it.
pub struct RunningExporter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TraceExporter {
    /// Starts exporting (call inside the async runtime).
    pub fn start(self) -> RunningExporter {
        let (stop, stopped) = oneshot::channel();
        tracing::info!(
            collector = %self.config.authority,
            path = %self.config.path,
            "exporting traces over OTLP/HTTP"
        );
        RunningExporter {
            stop,
            task: tokio::spawn(self.run(stopped)),
        }
    }

    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                span = self.receiver.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() < BATCH {
                            continue;
                        }
                    }
                    None => break,
                },
                _ = ticks.tick() => {}
                _ = &mut stopped => break,
            }
            self.export(&mut batch, &mut failing).await;
        }
        while let Ok(span) = self.receiver.try_recv() {
            batch.push(span);
        }
        // Each export takes up to BATCH spans off `batch`, sent or not.
        while !batch.is_empty() {
            self.export(&mut batch, &mut failing).await;
        }
    }

    /// Sends up to [`BATCH`] spans of `batch`; on failure they are dropped (and counted).
    async fn export(&self, batch: &mut Vec<FinishedSpan>, failing: &mut bool) {
        if batch.is_empty() {
            return;
        }
        let spans: Vec<FinishedSpan> = batch.drain(..batch.len().min(BATCH)).collect();
        let body = encode(&self.config, &spans);
        let result = tokio::time::timeout(EXPORT_TIMEOUT, post(&self.config, &body)).await;
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        match result {
            Ok(Ok(())) => {
                if *failing {
                    tracing::info!("trace export works again");
                }
                *failing = false;
                if dropped > 0 {
                    tracing::warn!(spans = dropped, "trace export fell behind; spans dropped");
                }
            }
            Ok(Err(error)) => {
                if !*failing {
                    tracing::warn!(%error, spans = spans.len() as u64 + dropped, "trace export failed; spans dropped until it works again");
                }
                *failing = true;
            }
            Err(_) => {
                if !*failing {
                    tracing::warn!(
                        spans = spans.len() as u64 + dropped,
                        "trace export timed out; spans dropped until it works again"
                    );
                }
                *failing = true;
            }
        }
    }
}

impl RunningExporter {
    /// Exports the spans still queued (for up to 3 s), then stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, self.task).await;
    }
}

fn unix_nanos(at: SystemTime) -> String {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// The OTLP/JSON `ExportTraceServiceRequest` of `spans`: ids in lowercase hex, 64-bit
/// numbers as strings, enums as numbers.
fn encode(config: &OtlpConfig, spans: &[FinishedSpan]) -> Vec<u8> {
    let attribute =
        |key: &str, value: &AttributeValue| json!({"key": key, "value": value.to_otlp()});
    let spans: Vec<Value> = spans
        .iter()
        .map(|span| {
            let mut encoded = json!({
                "traceId": format!("{:032x}", span.trace_id),
                "spanId": format!("{:016x}", span.span_id),
                "name": span.name,
                "kind": span.kind,
                "startTimeUnixNano": unix_nanos(span.start),
                "endTimeUnixNano": unix_nanos(span.end),
                "attributes": span.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
            });
            if let Some(parent) = span.parent_id {
                encoded["parentSpanId"] = json!(format!("{parent:016x}"));
            }
            if span.error {
                encoded["status"] = json!({ "code": STATUS_ERROR });
            }
            encoded
        })
        .collect();
    let resource = [
        attribute(
            "service.name",
            &AttributeValue::Str(config.service_name.clone()),
        ),
        attribute(
            "service.version",
            &AttributeValue::Str(env!("CARGO_PKG_VERSION").to_owned()),
        ),
    ];
    let request = json!({"resourceSpans": [{
        "resource": {"attributes": resource},
        "scopeSpans": [{
            "scope": {"name": "customer-service", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]});
    serde_json::to_vec(&request).unwrap_or_default()
}

/// One HTTP/1.1 POST on a new connection; `Ok` for a 2xx answer.
async fn post(config: &OtlpConfig, body: &[u8]) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(&config.authority)
        .await
        .map_err(|e| format!("connecting to the collector: {e}"))?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        config.path,
        config.authority,
        body.len()
    );
    for (name, value) in &config.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    // Only the status line matters.
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("the collector's answer is not HTTP")?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_parsed_strictly() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceParent::parse(valid),
            Some(TraceParent {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                parent_id: 0x00f067aa0ba902b7,
                sampled: true,
            })
        );
        assert!(
            !TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .sampled
        );
        // A later version may carry more parts.
        assert!(TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )
        .is_some());
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn samplers_keep_their_share_and_follow_the_caller_when_parent_based() {
        let half = Sampler {
            parent_based: false,
            ratio: 0.5,
        };
        let kept = (0..10_000u128)
            .filter(|n| half.keeps(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept}");
        let never = Sampler {
            parent_based: true,
            ratio: 0.0,
        };
        let always = Sampler {
            parent_based: true,
            ratio: 1.0,
        };
        let caller = |sampled| {
            Some(TraceParent {
                trace_id: 7,
                parent_id: 9,
                sampled,
            })
        };
        assert!(!never.decide(None, u128::MAX));
        assert!(always.decide(None, u128::MAX));
        assert!(never.decide(caller(true), 7), "the caller's decision wins");
        assert!(!always.decide(caller(false), 7));
        let ratio_only = Sampler {
            parent_based: false,
            ratio: 1.0,
        };
        assert!(ratio_only.decide(caller(false), 7));
    }

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let config = OtlpConfig {
            authority: "c:4318".into(),
            path: "/v1/traces".into(),
            headers: Vec::new(),
            service_name: "svc".into(),
            sampler: Sampler {
                parent_based: true,
                ratio: 1.0,
            },
        };
        let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let span = FinishedSpan {
            trace_id: 0xabc,
            span_id: 0x12,
            parent_id: Some(0x34),
            name: "GET /x".into(),
            kind: KIND_SERVER,
            start: at,
            end: at + Duration::from_millis(2),
            attributes: vec![
                ("http.response.status_code", AttributeValue::Int(503)),
                ("ok", AttributeValue::Bool(true)),
            ],
            error: true,
        };
        let encoded: Value = serde_json::from_slice(&encode(&config, &[span])).unwrap();
        let resource = &encoded["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "svc"}})
        );
        assert_eq!(
            resource["scopeSpans"][0]["spans"][0],
            json!({
                "traceId": "00000000000000000000000000000abc",
                "spanId": "0000000000000012",
                "parentSpanId": "0000000000000034",
                "name": "GET /x",
                "kind": 2,
                "startTimeUnixNano": "1700000000123456789",
                "endTimeUnixNano": "1700000000125456789",
                "attributes": [
                    {"key": "http.response.status_code", "value": {"intValue": "503"}},
                    {"key": "ok", "value": {"boolValue": true}},
                ],
                "status": {"code": 2},
            })
        );
    }
}
