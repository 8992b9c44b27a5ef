//! Which reads may go to a read replica (`DATABASE_READ_URL`): the read scope
//! (`application::read_scope`) the request context runs each request in. Get, list, search,
//! `/active`, `/count`, `/email/:email`, history and the events API may; every other route —
//! and a request with `Cache-Control: no-cache` — reads the primary (and, replica or not,
//! does not take a cached total).

use axum::extract::{MatchedPath, Request};
use axum::http::header::CACHE_CONTROL;
use axum::http::Method;

use crate::application::ReadScope;

/// The read scope of a request, by its route (the full template, `/api/v1` included).
pub(super) fn scope_of(request: &Request) -> Option<ReadScope> {
    if request.method() != Method::GET {
        return None;
    }
    let route = request.extensions().get::<MatchedPath>()?.as_str();
    let no_cache = request
        .headers()
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"));
    // The segment after `customers/` (the template said there is one).
    let after_customers = || {
        let rest = request.uri().path().strip_prefix("/api/v1/customers/")?;
        rest.split('/').next()
    };
    let scope = match route {
        "/api/v1/customers/{id}" | "/api/v1/customers/{id}/history" => {
            // An id the handler will refuse reads nothing.
            ReadScope::Customer(after_customers()?.parse().ok()?)
        }
        "/api/v1/customers/email/{email}" => ReadScope::Email(
            request
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        "/api/v1/customers"
        | "/api/v1/customers/active"
        | "/api/v1/customers/count"
        | "/api/v1/events" => ReadScope::Any,
        _ => return None,
    };
    Some(if no_cache { ReadScope::Primary } else { scope })
}
