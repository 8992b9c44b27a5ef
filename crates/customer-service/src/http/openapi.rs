//! The OpenAPI document, generated from the handlers' annotations, and Swagger UI (assets
//! vendored into the binary).

use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use customer_events::EventType;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::domain::saga::SagaState;

use super::bodies::TextRules;
use super::{catalog, customers, dashboard, events, health, metrics, sagas, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "customer-service", description = "Customer records, and an event for everything that happens to them. Every answer is wrapped in `{data, message, statusCode, timestamp, success}`; every error has `message`, `statusCode`, `error`, `timestamp`, `path` and, for invalid input, `fieldErrors`."),
    paths(
        customers::create_customer,
        customers::list_customers,
        customers::list_active_customers,
        customers::count_customers,
        customers::customer_stats,
        customers::get_customer_by_email,
        customers::get_customer,
        customers::customer_history,
        customers::update_customer,
        customers::delete_customer,
        sagas::customer_erasure,
        sagas::list_sagas,
        customers::liveness,
        health::health,
        health::livez,
        health::readyz,
        dashboard::status_stream,
        metrics::metrics,
        events::list_events,
        events::stream_events,
        events::event_rates,
        catalog::event_catalog,
        catalog::asyncapi,
    ),
    modifiers(&LayerAnswers, &ClosedSets, &ServerSentEvents, &CustomerLinks),
    tags((name = "customers", description = "Customer records: every change publishes an event"),
         (name = "events", description = "The event log, live events and the event catalog"),
         (name = "sagas", description = "Changes other services must make too (GDPR erasure), tracked until each confirmed"),
         (name = "health", description = "Probes, health, live status and metrics"))
)]
struct ApiDoc;

/// The answers the layers around the handlers give (see `with_layers`), added to every
/// operation they can happen on, so that the document lists every status a route can answer:
/// 503 (the time limit, the database gone), 401 (authentication, when configured) and 429
/// (the write rate limit, when configured).
struct LayerAnswers;

impl Modify for LayerAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (false, item.get.as_mut()),
                (false, item.head.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (write, operation) in operations {
                let Some(operation) = operation else { continue };
                add(
                    operation,
                    "503",
                    "Unavailable: the database did not answer, or the request took longer than `REQUEST_TIMEOUT_SECS`",
                );
                if write {
                    add(operation, "401", "With authentication configured (`AUTH_JWT_SECRET` or `AUTH_JWT_PUBLIC_KEY_FILE`): no bearer token, or not a valid one");
                    add(operation, "429", "With `RATE_LIMIT_WRITES_PER_MINUTE` set: this client's writes are over the limit; `Retry-After` says when to try again");
                } else if !super::auth::is_open_read(path) {
                    add(operation, "401", "With authentication configured and `AUTH_PROTECT_READS=true`: no bearer token, or not a valid one");
                }
            }
        }
    }
}

/// Query parameters that take one of a closed set of values get it as their `enum`, from the
/// domain's own lists (any other value is a 400).
struct ClosedSets;

impl Modify for ClosedSets {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let event_types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let saga_states: Vec<&str> = SagaState::ALL.iter().map(|s| s.as_str()).collect();
        let sets: [(&str, &str, &[&str]); 3] = [
            ("/api/v1/events", "type", &event_types),
            ("/api/v1/events/stream", "type", &event_types),
            ("/api/v1/sagas", "state", &saga_states),
        ];
        for (path, name, values) in sets {
            let parameters = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut())
                .and_then(|operation| operation.parameters.as_mut());
            for parameter in parameters.into_iter().flatten() {
                let RefOr::T(parameter) = parameter else {
                    continue;
                };
                if parameter.name == name && parameter.parameter_in == ParameterIn::Query {
                    let schema = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(values.iter().copied()))
                        .build();
                    parameter.schema = Some(schema.into());
                }
            }
        }
    }
}

/// A `text/event-stream` answer's schema describes one event, as OpenAPI 3.2's `itemSchema`
/// does and as schemathesis reads it: `event`, `id`, and `data`, the JSON text of the
/// documented body (`contentSchema`).
struct ServerSentEvents;

impl Modify for ServerSentEvents {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let content = item
                .get
                .as_mut()
                .and_then(|operation| operation.responses.responses.get_mut("200"))
                .and_then(|response| match response {
                    RefOr::T(response) => response.content.get_mut("text/event-stream"),
                    RefOr::Ref(_) => None,
                });
            let Some(RefOr::T(content)) = content else {
                continue;
            };
            let string = || ObjectBuilder::new().schema_type(Type::String);
            let data = string()
                .description(Some("The event's JSON text"))
                .content_media_type("application/json")
                .content_schema(content.schema.take());
            let event = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("event", string().description(Some("The event's name")))
                .property(
                    "id",
                    string().description(Some("The event's id (a log position)")),
                )
                .property("data", data)
                .required("data")
                .build();
            content.schema = Some(event.into());
        }
    }
}

/// The links between the customer operations: the id that a create, read or update answers,
/// to the operations on that customer, with its version (`ETag`) as the `If-Match` of the
/// writes where the answer carries one. Deliberately none to the customer's history: it
/// outlives the customer (a deleted customer's history still answers 200), and a link from
/// a create would let a client (or schemathesis) take it for part of the customer.
struct CustomerLinks;

impl Modify for CustomerLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let from_body = "$response.body#/data/id";
        let from_path = "$request.path.id";
        // (path, operation, status, where the id is, whether the answer has an ETag: a read
        // with `asOf` has none)
        type Source = (
            &'static str,
            fn(&mut PathItem) -> Option<&mut Operation>,
            &'static str,
            &'static str,
            bool,
        );
        let sources: [Source; 3] = [
            (
                "/api/v1/customers",
                |item| item.post.as_mut(),
                "201",
                from_body,
                true,
            ),
            (
                "/api/v1/customers/{id}",
                |item| item.get.as_mut(),
                "200",
                from_path,
                false,
            ),
            (
                "/api/v1/customers/{id}",
                |item| item.patch.as_mut(),
                "200",
                from_path,
                true,
            ),
        ];
        let targets = [
            ("GetCustomer", "get_customer", false),
            ("UpdateCustomer", "update_customer", true),
            ("DeleteCustomer", "delete_customer", true),
        ];
        for (path, operation, status, id, etag) in sources {
            let response = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(operation)
                .and_then(|operation| operation.responses.responses.get_mut(status));
            let Some(RefOr::T(response)) = response else {
                continue;
            };
            for (name, operation_id, write) in targets {
                let mut link = LinkBuilder::new()
                    .operation_id(operation_id)
                    .parameter("id", id);
                if write && etag {
                    link = link.parameter("header.If-Match", "$response.header.ETag");
                }
                response.links.insert(name.to_owned(), link.build().into());
            }
        }
    }
}

/// Adds the contract's error body as the answer `status` of `operation`, unless the operation
/// documents that status itself.
fn add(operation: &mut Operation, status: &str, description: &str) {
    let responses = &mut operation.responses.responses;
    if !responses.contains_key(status) {
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        responses.insert(status.to_owned(), response.into());
    }
}

const DOCUMENT_PATH: &str = "/api/docs/openapi.json";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(DOCUMENT_PATH, get(document))
        .merge(SwaggerUi::new("/api/docs").config(Config::from(DOCUMENT_PATH)))
}

/// The document as JSON, built on the first request of each (UTC) day: the date-of-birth
/// rule is a pattern of the dates old enough today ([`TextRules`]).
async fn document(State(state): State<AppState>) -> Response {
    static BUILT: Mutex<Option<(NaiveDate, Bytes)>> = Mutex::new(None);
    let today = state.clock.now().date();
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let json = match &*built {
        Some((day, json)) if *day == today => json.clone(),
        _ => {
            let mut openapi = ApiDoc::openapi();
            TextRules { today }.modify(&mut openapi);
            let json = Bytes::from(openapi.to_json().unwrap_or_default());
            *built = Some((today, json.clone()));
            json
        }
    };
    drop(built);
    ([(CONTENT_TYPE, "application/json")], json).into_response()
}
