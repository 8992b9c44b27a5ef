//! The OpenAPI document, generated from the handlers' annotations, and Swagger UI (assets
//! vendored into the binary).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

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
    tags((name = "customers", description = "Customer records: every change publishes an event"),
         (name = "events", description = "The event log, live events and the event catalog"),
         (name = "sagas", description = "Changes other services must make too (GDPR erasure), tracked until each confirmed"),
         (name = "health", description = "Probes, health, live status and metrics"))
)]
struct ApiDoc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", ApiDoc::openapi()))
}
