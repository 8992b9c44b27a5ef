//! OTLP trace export: the binary, with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a receiver
//! this test runs, sends each request's spans over OTLP — HTTP/protobuf or gRPC — continuing
//! the caller's W3C trace. The receivers decode what arrives with the OTLP protobuf types.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::own_server::ServiceProcess;
use crate::test_app::{fresh_database, minimal, Backend};

/// One export as a receiver got it: the `x-tenant` header (or gRPC metadata), decoded body.
type Export = (Option<String>, ExportTraceServiceRequest);

/// What a receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

impl Received {
    fn push(&self, tenant: Option<&str>, request: ExportTraceServiceRequest) {
        self.0
            .lock()
            .unwrap()
            .push((tenant.map(str::to_owned), request));
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, request)| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }
}

/// An OTLP/HTTP receiver on a free port: decodes each protobuf body, answers 200.
async fn http_receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    let request = ExportTraceServiceRequest::decode(body).expect("protobuf");
                    let tenant = headers.get("x-tenant").and_then(|v| v.to_str().ok());
                    received.push(tenant, request);
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

struct GrpcReceiver(Received);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.push(tenant.as_deref(), request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port.
async fn grpc_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });
    (format!("http://{address}"), received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue::StringValue(value.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_http_protobuf() {
    let (endpoint, received) = http_receiver().await;
    exports_request_spans_continuing_the_callers_trace("http/protobuf", endpoint, received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_grpc() {
    let (endpoint, received) = grpc_receiver().await;
    exports_request_spans_continuing_the_callers_trace("grpc", endpoint, received).await;
}

async fn exports_request_spans_continuing_the_callers_trace(
    protocol: &str,
    endpoint: String,
    received: Received,
) {
    let (database_url, _dir) = fresh_database(Backend::Sqlite).await;
    let service = ServiceProcess::start(&[
        ("DATABASE_URL", database_url),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test".to_owned(),
        ),
    ])
    .await;
    let client = reqwest::Client::new();

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let created = client
        .post(service.url("/api/v1/customers"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&minimal("traced@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let answered_trace = created.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let found = client
        .get(service.url("/api/v1/customers/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    // The caller decided not to sample this one: a parent-based sampler follows it.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let skipped = client
        .get(service.url("/api/v1/customers/count"))
        .header("traceparent", format!("00-{unsampled}-b7ad6b7169203331-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), 200);
    let skipped_trace = skipped.headers()["traceparent"].to_str().unwrap();
    assert!(
        skipped_trace.starts_with(&format!("00-{unsampled}-")) && skipped_trace.ends_with("-00"),
        "the caller's trace, still unsampled: {skipped_trace}"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let exported = loop {
        let exported = received.spans();
        let servers = exported
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        if servers >= 2 {
            break exported;
        }
        assert!(
            Instant::now() < deadline,
            "no request spans within 15 s: {exported:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let named = |name: &str| {
        exported
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {exported:?}"))
    };

    let post = named("POST /api/v1/customers");
    assert_eq!(post.kind, SpanKind::Server as i32);
    assert_eq!(hex(&post.trace_id), trace);
    assert_eq!(hex(&post.parent_span_id), caller);
    assert_eq!(
        answered_trace,
        format!("00-{trace}-{}-01", hex(&post.span_id)),
        "the answer names the request's span"
    );
    assert_eq!(
        attribute(&post.attributes, "http.request.method"),
        text("POST").as_ref()
    );
    assert_eq!(
        attribute(&post.attributes, "http.route"),
        text("/api/v1/customers").as_ref()
    );
    assert_eq!(
        attribute(&post.attributes, "http.response.status_code"),
        Some(&AnyValue::IntValue(201))
    );
    assert!(attribute(&post.attributes, "correlation_id").is_some());
    assert!(
        post.status.as_ref().is_none_or(|s| s.code == 0),
        "a 201 is no error: {:?}",
        post.status
    );
    assert!(
        post.start_time_unix_nano < post.end_time_unix_nano
            && post.end_time_unix_nano - post.start_time_unix_nano < 10_000_000_000,
        "{post:?}"
    );

    // The application's spans are its children, in the same trace.
    let create = named("create_customer");
    assert_eq!(hex(&create.trace_id), trace);
    assert_eq!(create.parent_span_id, post.span_id);
    assert_eq!(create.kind, SpanKind::Internal as i32);
    let insert = named("store.insert");
    assert_eq!(hex(&insert.trace_id), trace);
    assert_eq!(insert.parent_span_id, create.span_id);

    // Without a traceparent a request starts its own trace.
    let get = named("GET /api/v1/customers/{id}");
    assert_ne!(hex(&get.trace_id), trace);
    assert_eq!(get.trace_id.len(), 16);
    assert!(get.parent_span_id.is_empty());

    assert!(
        exported.iter().all(|s| hex(&s.trace_id) != unsampled),
        "the unsampled trace was exported: {exported:?}"
    );
    for (tenant, request) in received.0.lock().unwrap().iter() {
        assert_eq!(
            tenant.as_deref(),
            Some("blue"),
            "OTEL_EXPORTER_OTLP_HEADERS"
        );
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(
            attribute(&resource.attributes, "service.name"),
            text("customer-service").as_ref()
        );
        assert_eq!(
            attribute(&resource.attributes, "deployment.environment"),
            text("test").as_ref()
        );
        assert!(
            !format!("{request:?}").contains("traced@example.com"),
            "personal data in a span: {request:?}"
        );
    }
    drop(service);
}
